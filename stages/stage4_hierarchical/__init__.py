"""Stage 4: the hierarchical, WaveNet-style model."""

from .model import CONFIG, LECTURE, build_model

__all__ = ["CONFIG", "LECTURE", "build_model"]
