"""Stage 8: the challenge. Stage 7's convolutions with the WaveNet paper's parts, each switchable.

A block is a dilated causal convolution, its BatchNorm and an activation, as in stage 7, plus:
- gated units: the convolution makes 2H features, and tanh(filter) * sigmoid(gate) keeps H;
- a residual connection: the block's input is added to a 1x1 map of its output, so the signal
  (and the gradient) can skip a block that has nothing to add;
- a skip connection: every block sends a 1x1 map of its output straight to the head, which sums
  them, so the head sees features of every scale, not only the last block's.
With all three off and dilations 1, 2, 4 this is stage 7's model, weight for weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from makemore_wavenet.shared.config import ModelConfig
from makemore_wavenet.shared.data import real_positions
from makemore_wavenet.shared.errors import ConfigError
from makemore_wavenet.shared.layers import (BatchNorm1d, CausalConv1d, Dropout, Embedding, GatedActivation,
                                            Linear, Module, Tanh, less_confident)


@dataclass(frozen=True)
class WaveNetConfig(ModelConfig):
    """A stage-8 model. The context (block_size) is what the dilations see: 1 + their sum."""

    block_size: int = 16
    n_embd: int = 24
    n_hidden: int = 128  # H: the width of every block's output (the residual and skip streams)
    whole_names: bool = True
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    gated: bool = True
    residual: bool = True
    skip: bool = True
    dropout: float = 0.0  # in training, each block's output values are zeroed with this probability

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "dilations", tuple(self.dilations))  # a TOML list, a checkpoint's tuple
        if not self.dilations or min(self.dilations) < 1:
            raise ConfigError(f"dilations must be one or more positive integers, got {self.dilations}")
        if self.block_size != 1 + sum(self.dilations):
            raise ConfigError(f"dilations {self.dilations} see {1 + sum(self.dilations)} characters, so block_size "
                             f"must be {1 + sum(self.dilations)} (got {self.block_size}); leave it out of an entry")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout is a probability below 1, got {self.dropout}")
        if not self.whole_names or not self.bn_reduce_time:
            raise ConfigError("a stage-8 model reads whole names and normalizes over batch and positions")


class Block(Module):
    """(B, T, fan_in) -> (B, T - dilation, H), and the skip output (B, T - dilation, H) or None."""

    def __init__(self, fan_in: int, c: WaveNetConfig, dilation: int, residual: bool, device=None, dtype=None):
        kw, H = dict(device=device, dtype=dtype), c.n_hidden
        width = 2 * H if c.gated else H  # a gated unit halves its input: filter and gate
        self.dilation = dilation
        self.conv = CausalConv1d(fan_in, width, dilation, bias=False, **kw)
        self.norm = BatchNorm1d(width, positions=c.bn_positions, **kw)
        self.act = GatedActivation() if c.gated else Tanh()
        self.dropout = Dropout(c.dropout) if c.dropout else None
        self.residual = Linear(H, H, **kw) if residual else None
        self.skip = Linear(H, H, **kw) if c.skip else None

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor | None]:
        # BEGIN EXERCISE 8.2
        z = self.act(self.norm(self.conv(x), mask=mask))  # (B, T - d, H)
        if self.dropout is not None:
            z = self.dropout(z)
        # output t stands for input position t + d: the residual adds the input from there
        out = z if self.residual is None else x[:, self.dilation:] + self.residual(z)
        skip = None if self.skip is None else self.skip(z)
        return out, skip
        # END EXERCISE 8.2

    def children(self) -> list[Module]:
        return [m for m in (self.conv, self.norm, self.act, self.dropout, self.residual, self.skip) if m is not None]

    def parameters(self) -> list[Tensor]:
        return [p for m in self.children() for p in m.parameters()]


class WaveNet(Module):
    """(B, block_size + L) token ids -> (B, 1 + L, vocab_size): a prediction at every position."""

    def __init__(self, c: WaveNetConfig, device=None, dtype=None):
        kw = dict(device=device, dtype=dtype)
        self.block_size, self.sum_skips = c.block_size, c.skip
        self.embedding = Embedding(c.vocab_size, c.n_embd, **kw)
        # residual connections where they are used: not in the first block, which changes the width
        # (n_embd -> H), nor in the last when the head reads the skips (its output goes nowhere)
        last = len(c.dilations) - 1
        residual = [c.residual and 0 < i and not (c.skip and i == last) for i in range(last + 1)]
        self.blocks = [Block(c.n_embd if i == 0 else c.n_hidden, c, d, residual[i], **kw)
                       for i, d in enumerate(c.dilations)]
        # a sum of skips, or a residual stream, is not squashed yet: a tanh first, as every block's is
        self.squash = Tanh() if c.skip or c.residual else None
        self.head = Linear(c.n_hidden, c.vocab_size, **kw)

    def forward(self, idx: Tensor) -> Tensor:
        # BatchNorm counts the positions that end a real window, as in stage 7: a leading '.' or a letter
        real = real_positions(idx, self.block_size)
        x, seen, skips = self.embedding(idx), 0, []  # (B, T, n_embd)
        for block in self.blocks:
            seen += block.dilation  # output i of this block ends at input position i + seen
            x, skip = block(x, mask=real[:, seen:])  # (B, T - seen, H)
            skips.append(skip)
        if self.sum_skips:  # every block's last positions are the same input positions: align right
            x = torch.stack([s[:, s.shape[1] - x.shape[1]:] for s in skips]).sum(0)  # (B, 1 + L, H)
        if self.squash is not None:
            x = self.squash(x)
        return self.head(x)  # (B, 1 + L, vocab_size)

    def children(self) -> list[Module]:
        return [self.embedding, *self.blocks, *([self.squash] if self.squash else []), self.head]

    def parameters(self) -> list[Tensor]:
        return [p for m in self.children() for p in m.parameters()]


def build_model(config: WaveNetConfig, device=None, dtype=None) -> WaveNet:
    model = WaveNet(config, device=device, dtype=dtype)
    less_confident(model.head)
    return model
