"""Stage 5: fix BatchNorm1d for 3-D input.

Stage 4's BatchNorm1d averaged over the batch only, keeping 4 (then 2) separate statistics, one
per position. Positions are just more examples of the same feature, so the fix reduces over
dims (0, 1): statistics from 4x (then 2x) more numbers, running stats of shape (1, 1, H).
Same network, same parameter count; only the config flag changes.
"""

from __future__ import annotations

from makemore_wavenet.shared.config import ModelConfig

from ..stage4_hierarchical.model import build_model  # noqa: F401  (the same network)

CONFIG = ModelConfig(block_size=8, n_embd=10, n_hidden=68, bn_reduce_time=True)
