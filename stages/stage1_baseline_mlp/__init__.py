"""Stage 1: the baseline MLP (Bengio et al. 2003), as the lecture starts it."""

from .model import CONFIG, LECTURE, build_model

__all__ = ["CONFIG", "LECTURE", "build_model"]
