"""Stage 6: scale the fixed hierarchical network up: n_embd 10 -> 24, n_hidden 68 -> 128.

76,579 parameters, and the first model of the series to pass val 2.0.
"""

from __future__ import annotations

from makemore_wavenet.shared.config import ModelConfig

from ..stage4_hierarchical.model import build_model  # noqa: F401  (the same network)

# BEGIN EXERCISE 6.1
CONFIG = ModelConfig(block_size=8, n_embd=24, n_hidden=128, bn_reduce_time=True)
# END EXERCISE 6.1
