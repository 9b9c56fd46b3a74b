"""Stage 6: scale the fixed hierarchical network up: n_embd 10 -> 24, n_hidden 68 -> 128."""

from .model import CONFIG, LECTURE, build_model

__all__ = ["CONFIG", "LECTURE", "build_model"]
