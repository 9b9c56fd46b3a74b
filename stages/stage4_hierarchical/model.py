"""Stage 4: the hierarchical, WaveNet-style model.

Instead of squashing all 8 characters at once, fuse them two at a time, three times over:
(B, 8, C) -> (B, 4, 2C) -> Linear -> (B, 4, H) -> (B, 2, 2H) -> ... -> (B, 2H) -> (B, H).
The Linear layer works on the last dim, so the positions act as extra batch dimensions.

This stage keeps the lecture's bug on purpose: BatchNorm1d reduces 3-D input over dim 0 only,
so it keeps separate statistics for each position (running mean of shape (1, 4, H)).
"""

from __future__ import annotations

from makemore_wavenet.shared.config import ModelConfig
from makemore_wavenet.shared.layers import (BatchNorm1d, Embedding, FlattenConsecutive, Linear, Sequential,
                                            Tanh, less_confident)

CONFIG = ModelConfig(block_size=8, n_embd=10, n_hidden=68, bn_reduce_time=False)


def build_model(config: ModelConfig = CONFIG, device=None, dtype=None) -> Sequential:
    c, kw = config, dict(device=device, dtype=dtype)

    def fuse_pairs(fan_in: int) -> list:  # (B, T, C) -> (B, T/2, 2C) -> (B, T/2, n_hidden)
        return [FlattenConsecutive(2), Linear(fan_in * 2, c.n_hidden, bias=False, **kw),
                BatchNorm1d(c.n_hidden, reduce_time=c.bn_reduce_time, **kw), Tanh()]

    levels = c.levels()  # 8 positions -> 3 levels of pairs
    # BEGIN EXERCISE 4.2
    model = Sequential([
        Embedding(c.vocab_size, c.n_embd, **kw),  # (B, 8) -> (B, 8, n_embd)
        *fuse_pairs(c.n_embd),  # -> (B, 4, n_hidden)
        *[layer for _ in range(levels - 1) for layer in fuse_pairs(c.n_hidden)],  # -> (B, 2, H) -> (B, H)
        Linear(c.n_hidden, c.vocab_size, **kw),  # -> (B, vocab_size)
    ])
    # END EXERCISE 4.2
    less_confident(model.layers[-1])
    return model
