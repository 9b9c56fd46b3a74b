"""Stage 7: the hierarchy of stage 6 as dilated causal convolutions, run at every position of a name.

Stage 6 fuses a window of 8 characters pair by pair: (B, 8, C) -> (B, 4, H) -> (B, 2, H) -> (B, H).
Here each fusion is a causal convolution of kernel 2 with dilation 1, 2, 4, over the whole name:
(B, 8 + L, C) -> (B, 7 + L, H) -> (B, 5 + L, H) -> (B, 1 + L, H) -> (B, 1 + L, 27), one prediction
per position. Same weights, same function of each window; a value two windows share is computed
once, and one step learns from every position of 32 names at once.
"""

from __future__ import annotations

import torch

from makemore_wavenet.shared.config import ModelConfig, TrainConfig
from makemore_wavenet.shared.data import real_positions
from makemore_wavenet.shared.layers import (BatchNorm1d, CausalConv1d, Embedding, Linear, Sequential, Tanh,
                                            less_confident)

# in training, each BatchNorm's statistics come from 32 random positions of the batch, as many
# windows as stage 6's batch holds: that noise is what keeps a model of whole names from fitting
# its training names too closely (LESSON.md). The model itself, and eval mode, are stage 6's.
CONFIG = ModelConfig(block_size=8, n_embd=24, n_hidden=128, bn_reduce_time=True, whole_names=True, bn_positions=32)
# a batch is 32 names, about 228 predictions; 30,000 steps see 6.8 million, stage 6 sees 6.4
RECIPE = TrainConfig(steps=30_000, batch_size=32, lr=0.1, lr_final=0.01, decay_at=0.75, recompute_batchnorm=True)


class CausalWaveNet(Sequential):
    """The layers in order, as a Sequential, with one addition: each BatchNorm's batch statistics
    count only the positions that hold a real window, not the padding after a name's end (a batch
    pads its names to the longest). Input position p ends a real window if it is one of the first
    block_size '.'s or holds a letter; after convolutions of dilations summing to s, output i ends
    at input position i + s."""

    def __init__(self, layers: list, block_size: int):
        super().__init__(layers)
        self.block_size = block_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, block_size + L) -> (B, 1 + L, vocab_size)
        real = real_positions(x, self.block_size)
        seen = 0  # dilations so far: how far right of its output index an output's window ends
        for layer in self.layers:
            seen += getattr(layer, "dilation", 0)
            if isinstance(layer, BatchNorm1d):
                x = layer(x, mask=real[:, seen:])
            else:
                x = layer(x)
        return x


def build_model(config: ModelConfig = CONFIG, device=None, dtype=None) -> Sequential:
    c, kw = config, dict(device=device, dtype=dtype)
    levels = c.levels()  # a window of 8 -> dilations 1, 2, 4

    def convolve(fan_in: int, dilation: int) -> list:  # (B, T, fan_in) -> (B, T - dilation, n_hidden)
        return [CausalConv1d(fan_in, c.n_hidden, dilation, bias=False, **kw),
                BatchNorm1d(c.n_hidden, reduce_time=c.bn_reduce_time, positions=c.bn_positions, **kw), Tanh()]

    model = CausalWaveNet([
        Embedding(c.vocab_size, c.n_embd, **kw),  # (B, 8 + L) -> (B, 8 + L, n_embd)
        *convolve(c.n_embd, 1),  # -> (B, 7 + L, H)
        *[layer for level in range(1, levels) for layer in convolve(c.n_hidden, 2 ** level)],  # -> (B, 1 + L, H)
        Linear(c.n_hidden, c.vocab_size, **kw),  # -> (B, 1 + L, vocab_size)
    ], c.block_size)
    less_confident(model.layers[-1])
    return model


def load_stage6(model: Sequential, state: dict[str, torch.Tensor]) -> Sequential:
    """Load a stage-6 model's state (its `state()` or a checkpoint's "state") into a stage-7 model:
    layer for layer, without stage 6's FlattenConsecutive layers, which hold nothing."""
    tensors = list(state.values())  # in layer order: Embedding, then (Linear, BatchNorm) x 3, Linear
    names = list(model.state())
    if len(tensors) != len(names):
        raise ValueError(f"a stage-6 state has {len(names)} tensors for this model, got {len(tensors)}")
    model.load_state(dict(zip(names, tensors)))
    return model
