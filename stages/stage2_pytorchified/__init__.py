"""Stage 2: the same network, "pytorchified"."""

from .model import CONFIG, LECTURE, build_model

__all__ = ["CONFIG", "LECTURE", "build_model"]
