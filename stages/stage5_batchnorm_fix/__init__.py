"""Stage 5: fix BatchNorm1d for 3-D input."""

from .model import CONFIG, LECTURE, build_model

__all__ = ["CONFIG", "LECTURE", "build_model"]
