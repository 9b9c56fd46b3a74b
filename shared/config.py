"""The two configs that determine a run: the model's shape and the training recipe.

The defaults are the lecture's recipe; a run is determined by its ModelConfig, TrainConfig and seed.
"""

from __future__ import annotations

import math
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
    # whole names, in training: each BatchNorm takes its batch statistics from this many random
    # real positions of the batch, not all of them (0: all). Stage 6's saw 32 windows a batch, and
    # that noise regularizes; a batch of 32 whole names holds about 228 positions, far less noisy.
    bn_positions: int = 0

    def __post_init__(self):
        if self.bn_positions < 0 or (self.bn_positions and not self.whole_names):
            raise ValueError(f"bn_positions samples the positions of whole names: 0 (all) or a positive count with "
                             f"whole_names=True, got {self.bn_positions} with whole_names={self.whole_names}")


PATHS = ("plain", "fast", "compiled")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine")


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
    # the lecture's plain SGD, or AdamW (torch.optim.AdamW, decoupled weight decay): stage 8 on
    optimizer: str = "sgd"
    weight_decay: float = 0.0  # AdamW only
    # "step": lr, then lr_final after decay_at (the lecture); "cosine": from lr down to lr_final
    schedule: str = "step"
    # after training, set each BatchNorm's running statistics to its statistics over the whole
    # train split (the lecture's "calibrate the batch norm at the end of training", part 3)
    calibrate_batchnorm: bool = False

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be positive, got {self.steps} and {self.batch_size}")
        if self.path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {self.path!r}")
        if not 0.0 <= self.decay_at <= 1.0:
            raise ValueError(f"decay_at is a fraction of the steps, between 0 and 1; got {self.decay_at}")
        if self.optimizer not in OPTIMIZERS or self.schedule not in SCHEDULES:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS} and schedule one of {SCHEDULES}, "
                             f"got {self.optimizer!r} and {self.schedule!r}")
        if self.weight_decay and self.optimizer != "adamw":
            raise ValueError("weight_decay is AdamW's (decoupled from the gradient): set optimizer = \"adamw\"")
        if self.path != "plain" and self.optimizer != "sgd":
            raise ValueError(f"the {self.path} path computes plain SGD only; train {self.optimizer} on path \"plain\"")

    def describe(self) -> str:
        """'200,000 x 32, SGD lr 0.1 -> 0.01 at 150,000' or '60,000 x 16, AdamW lr 0.003 -> 0.0003 cosine, wd 0.1'"""
        decay = f"at {int(self.decay_at * self.steps):,}" if self.schedule == "step" else "cosine"
        wd = f", wd {self.weight_decay:g}" if self.weight_decay else ""
        name = {"sgd": "SGD", "adamw": "AdamW"}[self.optimizer]
        calibrated = ", BatchNorm calibrated" if self.calibrate_batchnorm else ""
        return f"{self.steps:,} x {self.batch_size}, {name} lr {self.lr:g} -> {self.lr_final:g} {decay}{wd}{calibrated}"

    def lr_at(self, step: int) -> float:
        if self.schedule == "cosine":  # half a cosine from lr at step 0 to lr_final at the end
            return self.lr_final + (self.lr - self.lr_final) * 0.5 * (1 + math.cos(math.pi * step / self.steps))
        return self.lr if step < int(self.decay_at * self.steps) else self.lr_final
