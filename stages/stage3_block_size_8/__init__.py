"""Stage 3: a longer context. The network is stage 2's flat MLP; only block_size grows, 3 -> 8."""

from .model import CONFIG, LECTURE, build_model

__all__ = ["CONFIG", "LECTURE", "build_model"]
