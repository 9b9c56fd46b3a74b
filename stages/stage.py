"""What a stage says about itself, in one place: the trainer, reproduce, calibrate and the grader
read it, and nothing else.

A stage is a package `stages/stage<N>_<what>/` whose __init__.py declares `STAGE = Stage(...)`:
the lecture's numbers, its exercises, and which exercise its loss check answers for. Its model
module (model.py unless it names another) holds CONFIG and build_model, and RECIPE when the stage
does not train with the lecture's recipe. The model module is imported on first use, so that one
unfinished stage of the student edition (a stub at module level raises) leaves the others usable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import import_module, resources
from types import ModuleType
from typing import Callable

from makemore_wavenet.shared.config import ModelConfig, TrainConfig
from makemore_wavenet.shared.errors import ConfigError, NotDone
from makemore_wavenet.shared.layers import Module

PACKAGE_NAME = re.compile(r"stage(\d+)_(\w+)")  # stage3_block_size_8: stage 3, "block size 8"


@dataclass(frozen=True)
class Exercise:
    id: str  # "4.1": stage 4, first exercise
    title: str
    task: str  # what the student reads

    @property
    def stage(self) -> int:
        return int(self.id.split(".")[0])


@dataclass(frozen=True)
class Lecture:
    """The lecture's reference numbers for a stage."""

    params: int
    train: float
    val: float


@dataclass(frozen=True)
class Stage:
    package: str  # the package's full name: its __name__
    lecture: Lecture  # beyond the lecture (stages 7 and 8): the `bar` stage's numbers
    exercises: tuple[Exercise, ...] = ()
    # the exercises the stage's model is built from: its own checks and its loss check wait on them
    needs: tuple[str, ...] = ()
    loss_exercise: str = ""  # the exercise the loss check answers for; "" the stage's own row
    config_hint: str = "the stage's CONFIG and the size of the model it builds"
    bar: int = 0  # beyond the lecture: the stage whose model is the bar to meet (0: the lecture's own stage)
    val_promise: float = 0.0  # a val loss the stage's full recipe must reach, whatever the calibration says
    entry_file: str = ""  # the challenge: the loss check trains the submission's entry in this file
    model_module: str = "model"  # the submodule with CONFIG, build_model and (optional) RECIPE

    def __post_init__(self):
        if not PACKAGE_NAME.fullmatch(self.name):
            raise ValueError(f"a stage package is named stage<N>_<what>, got {self.package!r}")
        for ex in self.exercises:
            if ex.stage != self.number:
                raise ValueError(f"stage {self.number} declares exercise {ex.id}, of another stage")
        if self.loss_exercise and self.loss_exercise not in self.needs:
            raise ValueError(f"stage {self.number}'s loss check answers for {self.loss_exercise}: it needs it")

    @property
    def name(self) -> str:
        """The package's (and its folder's) own name: 'stage3_block_size_8'."""
        return self.package.rsplit(".", 1)[-1]

    @property
    def number(self) -> int:
        return int(PACKAGE_NAME.fullmatch(self.name)[1])

    @property
    def title(self) -> str:
        """'block size 8' for stage3_block_size_8."""
        return PACKAGE_NAME.fullmatch(self.name)[2].replace("_", " ")

    @property
    def row(self) -> str:
        """The report row that the stage's own checks (configuration, loss) go in."""
        return self.loss_exercise or f"stage {self.number}"

    def module(self) -> ModuleType:
        return import_module(f"{self.package}.{self.model_module}")

    @property
    def config(self) -> ModelConfig:
        config = self.module().CONFIG
        if isinstance(config, NotDone):  # the student edition's stub of a CONFIG exercise
            raise NotImplementedError(config.message)
        return config

    @property
    def build_model(self) -> Callable[..., Module]:
        return self.module().build_model

    @property
    def recipe(self) -> TrainConfig:
        """The stage's training recipe: the lecture's, unless the stage brings its own RECIPE."""
        return getattr(self.module(), "RECIPE", TrainConfig())

    @property
    def lesson(self) -> str:
        return resources.files(self.package).joinpath("LESSON.md").read_text(encoding="utf-8")

    def load_entry(self, path) -> tuple[ModelConfig, TrainConfig]:
        """The model and recipe in an entry file (the challenge's stage: its `entry` module reads them)."""
        if not self.entry_file:
            raise ConfigError(f"stage {self.number} trains no entries")
        return import_module(f"{self.package}.entry").load_entry(path)
