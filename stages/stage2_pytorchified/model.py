"""Stage 2: the same network, "pytorchified".

The hand-indexed table becomes an Embedding layer, the `.view` a Flatten layer, and the list of
layers a Sequential container. The same random numbers are drawn in the same order, so under the
same seed this model trains to exactly the same losses as stage 1.
"""

from __future__ import annotations

from makemore_wavenet.shared.config import ModelConfig
from makemore_wavenet.shared.layers import BatchNorm1d, Embedding, Flatten, Linear, Sequential, Tanh, less_confident

CONFIG = ModelConfig(block_size=3, n_embd=10, n_hidden=200)


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
    less_confident(model.layers[-1])
    return model
