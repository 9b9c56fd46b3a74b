"""Stage 1: the baseline MLP (Bengio et al. 2003), as the lecture starts it.

Three characters of context, each looked up in an embedding table C, concatenated, then
Linear (no bias: BatchNorm's beta does its job) -> BatchNorm1d -> Tanh -> Linear to 27 logits.
"""

from __future__ import annotations

import torch

from makemore_wavenet.shared.config import ModelConfig
from makemore_wavenet.shared.layers import (BatchNorm1d, Embedding, Flatten, Linear, Module, Tanh, less_confident,
                                            randn)

CONFIG = ModelConfig(block_size=3, n_embd=10, n_hidden=200)


class MLP(Module):
    """The embedding table is a bare tensor `C`, indexed by hand; the rest is a list of layers."""

    state_names = ("C",)

    def __init__(self, config: ModelConfig, device=None, dtype=None):
        c = config
        self.C = randn(c.vocab_size, c.n_embd, device=device, dtype=dtype)
        self.layers = [
            Linear(c.n_embd * c.block_size, c.n_hidden, bias=False, device=device, dtype=dtype),
            BatchNorm1d(c.n_hidden, device=device, dtype=dtype),
            Tanh(),
            Linear(c.n_hidden, c.vocab_size, device=device, dtype=dtype),
        ]

    def forward(self, ix: torch.Tensor) -> torch.Tensor:
        # BEGIN EXERCISE 1.1
        emb = self.C[ix]  # (B, T, n_embd)
        x = emb.view(emb.shape[0], -1)  # (B, T * n_embd): concatenate the context
        for layer in self.layers:
            x = layer(x)
        return x  # (B, vocab_size)
        # END EXERCISE 1.1

    def children(self) -> list[Module]:
        return self.layers

    def fast_layers(self) -> list[Module]:
        """The same network as layers, for the trainer's fast engine: C is an Embedding's table."""
        table = Embedding.__new__(Embedding)
        table.weight = self.C  # the same tensor: updates reach self.C
        return [table, Flatten(), *self.layers]

    def parameters(self) -> list[torch.Tensor]:
        return [self.C] + [p for layer in self.layers for p in layer.parameters()]


def build_model(config: ModelConfig = CONFIG, device=None, dtype=None) -> MLP:
    model = MLP(config, device=device, dtype=dtype)
    less_confident(model.layers[-1])
    return model
