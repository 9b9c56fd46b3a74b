"""Stage 3: a longer context. The network is stage 2's flat MLP; only block_size grows, 3 -> 8.

All eight embeddings are squashed into the first hidden layer at once: that layer grows from
30 x 200 to 80 x 200 weights, which is where the 10,000 extra parameters go.
"""

from __future__ import annotations

from makemore_wavenet.shared.config import ModelConfig

from ..stage2_pytorchified.model import build_model  # noqa: F401  (the same network)

CONFIG = ModelConfig(block_size=8, n_embd=10, n_hidden=200)
