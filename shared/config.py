"""The two configs that determine a run: the model's shape and the training recipe.

The defaults are the lecture's recipe; a run is determined by its ModelConfig, TrainConfig and seed.
"""

from __future__ import annotations

from dataclasses import dataclass

from .data import VOCAB_SIZE


@dataclass(frozen=True)
class ModelConfig:
    block_size: int  # characters of context
    n_embd: int  # dimensions of a character embedding
    n_hidden: int  # neurons in a hidden layer
    vocab_size: int = VOCAB_SIZE
    # 3-D BatchNorm input: reduce over batch and positions (True, the fix) or batch only (the
    # lecture's stage-4 bug). 2-D input is unaffected.
    bn_reduce_time: bool = True
    # inputs are whole names and the model predicts at every position (stage 7 on), not one
    # window per example: the data comes from data.build_names instead of data.build_dataset
    whole_names: bool = False


PATHS = ("plain", "fast", "compiled")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 200_000
    batch_size: int = 32
    lr: float = 0.1
    lr_final: float = 0.01  # step decay ...
    decay_at: float = 0.75  # ... after this fraction of the steps (step 150,000 of 200,000)
    seed: int = 42  # torch.manual_seed before the model is built; batches follow from it
    device: str = "auto"  # "auto" picks CUDA when there is one, else the CPU
    # how a step is computed, all the same math: "plain" (autograd, the lessons' code), "fast"
    # (a hand-written backward, shared/fast.py) or "compiled" (that step under torch.compile)
    path: str = "plain"

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be positive, got {self.steps} and {self.batch_size}")
        if self.path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {self.path!r}")
        if not 0.0 <= self.decay_at <= 1.0:
            raise ValueError(f"decay_at is a fraction of the steps, between 0 and 1; got {self.decay_at}")

    def lr_at(self, step: int) -> float:
        return self.lr if step < int(self.decay_at * self.steps) else self.lr_final
