"""What determines a run: the model's shape (ModelConfig), the training recipe (TrainConfig), and
where and how it runs (Runtime: seed, device, engine).

The defaults are the lecture's recipe; a run is determined by its ModelConfig, TrainConfig and
Runtime.seed. The engine and the device change how fast a step is computed, not its math.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .data import VOCAB_SIZE
from .errors import ConfigError


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
            raise ConfigError(f"bn_positions samples the positions of whole names: 0 (all) or a positive count with "
                              f"whole_names=True, got {self.bn_positions} with whole_names={self.whole_names}")

    def levels(self) -> int:
        """How many times a hierarchy halves the context (pairs fused, or dilations doubled): 3 for 8."""
        levels = (self.block_size - 1).bit_length()
        if 2 ** levels != self.block_size:
            raise ConfigError(f"a hierarchy of pairs needs a block_size that is a power of 2, got {self.block_size}")
        return levels


ENGINES = ("plain", "fast", "compiled")
# recipe settings by their former names (checkpoint format 1, entry files of earlier editions)
RENAMED = {"schedule": "lr_schedule", "calibrate_batchnorm": "recompute_batchnorm"}
OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("step", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 200_000
    batch_size: int = 32
    lr: float = 0.1
    lr_final: float = 0.01  # step decay ...
    decay_at: float = 0.75  # ... after this fraction of the steps (step 150,000 of 200,000)
    # the lecture's plain SGD, or AdamW (torch.optim.AdamW, decoupled weight decay): stage 8 on
    optimizer: str = "sgd"
    weight_decay: float = 0.0  # AdamW only
    # "step": lr, then lr_final after decay_at (the lecture); "cosine": from lr down to lr_final
    lr_schedule: str = "step"
    # after training, set each BatchNorm's running statistics to its statistics over the whole
    # train split (the lecture's "calibrate the batch norm at the end of training", part 3)
    recompute_batchnorm: bool = False

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"steps and batch_size must be positive, got {self.steps} and {self.batch_size}")
        if not 0.0 <= self.decay_at <= 1.0:
            raise ConfigError(f"decay_at is a fraction of the steps, between 0 and 1; got {self.decay_at}")
        if self.optimizer not in OPTIMIZERS or self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS} and lr_schedule one of {LR_SCHEDULES}, "
                              f"got {self.optimizer!r} and {self.lr_schedule!r}")
        if self.weight_decay and self.optimizer != "adamw":
            raise ConfigError("weight_decay is AdamW's (decoupled from the gradient): set optimizer = \"adamw\"")

    def describe(self) -> str:
        """'200,000 x 32, SGD lr 0.1 -> 0.01 at 150,000' or '60,000 x 16, AdamW lr 0.003 -> 0.0003 cosine, wd 0.1'"""
        decay = f"at {int(self.decay_at * self.steps):,}" if self.lr_schedule == "step" else "cosine"
        wd = f", wd {self.weight_decay:g}" if self.weight_decay else ""
        name = {"sgd": "SGD", "adamw": "AdamW"}[self.optimizer]
        recomputed = ", BatchNorm recomputed" if self.recompute_batchnorm else ""
        return f"{self.steps:,} x {self.batch_size}, {name} lr {self.lr:g} -> {self.lr_final:g} {decay}{wd}{recomputed}"

    def lr_at(self, step: int) -> float:
        if self.lr_schedule == "cosine":  # half a cosine from lr at step 0 to lr_final at the end
            return self.lr_final + (self.lr - self.lr_final) * 0.5 * (1 + math.cos(math.pi * step / self.steps))
        return self.lr if step < int(self.decay_at * self.steps) else self.lr_final


@dataclass(frozen=True)
class Runtime:
    """Where and how a run computes its steps: none of it changes the recipe's math."""

    seed: int = 42  # torch.manual_seed before the model is built; batches follow from it
    device: str = "auto"  # "auto" picks CUDA when there is one, else the CPU
    # how a step is computed, all the same math: "plain" (autograd, the lessons' code), "fast"
    # (a hand-written backward, shared/fast.py) or "compiled" (that step under torch.compile)
    engine: str = "plain"
    # CPU threads for the run's process; 0 leaves them as they are (torch's default, or what a pool
    # of parallel runs gave each process: stages/parallel.py)
    threads: int = 0

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.threads < 0:
            raise ConfigError(f"threads must be 0 (as they are) or a positive count, got {self.threads}")

    def check(self, recipe: TrainConfig) -> None:
        """The fast and compiled engines compute the lecture's SGD and nothing else."""
        if self.engine != "plain" and recipe.optimizer != "sgd":
            raise ConfigError(f"the {self.engine} engine computes plain SGD only; train {recipe.optimizer} "
                              "on the plain engine")
