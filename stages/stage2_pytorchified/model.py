"""Stage 2: the same network, "pytorchified".

The hand-indexed table becomes an Embedding layer, the `.view` a Flatten layer, and the list of
layers a Sequential container. The same random numbers are drawn in the same order, so under the
same seed this model trains to exactly the same losses as stage 1.
"""

from __future__ import annotations

import torch

from makemore_wavenet.shared.config import ModelConfig
from makemore_wavenet.shared.layers import BatchNorm1d, Embedding, Flatten, Linear, Sequential, Tanh

CONFIG = ModelConfig(block_size=3, n_embd=10, n_hidden=200)
LECTURE = {"params": 12_097, "train": 2.058, "val": 2.105}


def build_model(config: ModelConfig = CONFIG, device=None, dtype=None) -> Sequential:
    c, kw = config, dict(device=device, dtype=dtype)
    model = Sequential([
        Embedding(c.vocab_size, c.n_embd, **kw),  # (B, T) -> (B, T, n_embd)
        Flatten(),  # -> (B, T * n_embd)
        Linear(c.n_embd * c.block_size, c.n_hidden, bias=False, **kw),
        BatchNorm1d(c.n_hidden, **kw),
        Tanh(),
        Linear(c.n_hidden, c.vocab_size, **kw),  # -> (B, vocab_size)
    ])
    with torch.no_grad():
        model.layers[-1].weight *= 0.1  # last layer: make the first predictions less confident
    return model
