"""Stage 7: stage 6's hierarchy as dilated causal convolutions, one prediction at every position."""

from .model import CONFIG, LECTURE, RECIPE, build_model, load_stage6

__all__ = ["CONFIG", "LECTURE", "RECIPE", "build_model", "load_stage6"]
