"""The six stages of the lecture and two beyond it, one package each, all with the same face.

Each stage package declares its STAGE (stages/stage.py): the one description of it that the rest
of the project reads. Stages are found, not listed: every package `stage<N>_<what>` here is one.
Everything else (training, evaluation, sampling, checkpoints) is shared and lives in
`makemore_wavenet.shared`. `plan` turns a stage, a grading schedule or the user's options, and an
entry file into the model configuration and recipe of a run; the Runtime beside it says where and
how the run computes (seed, device, engine, threads).
"""

from __future__ import annotations

import os
import pkgutil
from dataclasses import dataclass, replace
from importlib import import_module
from pathlib import Path

from makemore_wavenet.shared import checkpoint
from makemore_wavenet.shared.config import ModelConfig, Runtime, TrainConfig
from makemore_wavenet.shared.data import SPLITS, Splits, load_splits
from makemore_wavenet.shared.device import resolve_device
from makemore_wavenet.shared.errors import ConfigError
from makemore_wavenet.shared.fast import layer_list
from makemore_wavenet.shared.layers import Module
from makemore_wavenet.shared.trainer import Run, run, run_seeds

from .parallel import in_processes
from .stage import PACKAGE_NAME, Exercise, Lecture, Stage

RUNS_DIR = Path("runs")
SCHEDULES = ("quick", "full", "challenge")  # how the grader trains a stage: see `plan`
QUICK_FRACTION = 40  # the quick schedule: 1/40 of a recipe's steps

__all__ = ["Exercise", "Lecture", "Plan", "RUNS_DIR", "SCHEDULES", "Stage", "all_stages", "get_stage", "plan",
           "train_stage", "train_under_seeds", "load_model"]


class StageError(ConfigError):
    """A stage number, an entry or a checkpoint that names no stage."""


def all_stages() -> dict[int, Stage]:
    """Every stage package in this package's folder(s), by number."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg and PACKAGE_NAME.fullmatch(info.name):
            stage = getattr(import_module(f"{__name__}.{info.name}"), "STAGE", None)
            if stage is None:
                raise StageError(f"stages/{info.name}/__init__.py declares no STAGE: every stage<N>_<what> "
                                 "package describes itself (stages/stage.py)")
            if stage.number in found:
                raise StageError(f"two packages are stage {stage.number}: {found[stage.number].name} and "
                                 f"{stage.name}; rename or remove one")
            found[stage.number] = stage
    return dict(sorted(found.items()))


def get_stage(number: int) -> Stage:
    stages = all_stages()
    if number not in stages:
        raise StageError(f"there is no stage {number}; the stages are {', '.join(map(str, stages))}")
    return stages[number]


def count_parameters(model: Module) -> int:
    return sum(p.numel() for p in model.parameters())


def on_fast_engine(stage: Stage) -> bool:
    """Whether the trainer's fast engine (shared/fast.py) can train the stage's model: stages 1-6."""
    return layer_list(stage.build_model(stage.config, device="meta")) is not None


@dataclass(frozen=True)
class Plan:
    """What a run of a stage trains: the model's configuration and the recipe."""

    stage: Stage
    model: ModelConfig
    recipe: TrainConfig


def plan(stage: int | Stage, schedule: str = "full", entry: str | Path | None = None,
         options: dict | None = None) -> Plan:
    """The one place a run's model and recipe are decided. The stage's own CONFIG and recipe
    (schedule "full"), or 1/QUICK_FRACTION of its steps ("quick"); an entry file's model and recipe
    instead, where one is given (the challenge's stage: schedule "challenge" needs one); then the
    recipe settings in `options` (the command line's) replace the plan's."""
    stage = get_stage(stage) if isinstance(stage, int) else stage
    if schedule not in SCHEDULES:
        raise StageError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if schedule == "challenge" and entry is None:
        raise StageError("the challenge schedule trains an entry file: give one")
    model, recipe = stage.load_entry(entry) if entry is not None else (stage.config, stage.recipe)
    if schedule == "quick":
        recipe = replace(recipe, steps=recipe.steps // QUICK_FRACTION)
    return Plan(stage, model, replace(recipe, **(options or {})))


def splits_for(model: ModelConfig, names: str | Path | None = None, device=None) -> Splits:
    """The splits as the model reads them: context windows, or whole names (stage 7 on)."""
    return load_splits(model.block_size, path=names, device=device, whole_names=model.whole_names)


def checkpoint_path(number: int, runs_dir: str | Path = RUNS_DIR) -> Path:
    return Path(runs_dir) / f"stage{number}" / "checkpoint.pt"


def train_stage(the_plan: Plan, runtime: Runtime = Runtime(), names: str | Path | None = None,
                runs_dir: str | Path | None = RUNS_DIR, progress: bool = True, **checkpoint_extra) -> Run:
    """Train a plan; checkpoint and loss plot go to runs_dir/stageN/ (None: nowhere)."""
    number = the_plan.stage.number
    out_dir = None if runs_dir is None else checkpoint_path(number, runs_dir).parent
    return run(the_plan.stage.build_model, the_plan.model, the_plan.recipe, splits_for(the_plan.model, names),
               runtime, out_dir=out_dir, name=f"stage {number}", progress=progress, stage=number,
               **checkpoint_extra)


def train_under_seeds(the_plan: Plan, seeds, names: str | Path | None = None, jobs: int | None = None,
                      progress: bool = True, eval_splits: tuple[str, ...] = SPLITS) -> list[dict]:
    """A plan trained under each seed, one row per seed in seed order: {"seed", its eval_splits'
    losses, "seconds"}. At once as one stacked model on the compiled engine, or, where the fast
    engine cannot train the model, one plain run per seed in `jobs` parallel processes (default:
    one per core) that share the cores as threads. No checkpoints."""
    model, name = the_plan.model, f"stage {the_plan.stage.number}"
    if on_fast_engine(the_plan.stage):
        runs = run_seeds(the_plan.stage.build_model, model, the_plan.recipe, splits_for(model, names), list(seeds),
                         engine="compiled", name=name, progress=progress, eval_splits=eval_splits)
        return [{"seed": seed, **r.metrics, "seconds": r.seconds} for seed, r in zip(seeds, runs)]  # the stack's time
    rows = in_processes(_seed_run, [(the_plan, seed, names, eval_splits) for seed in seeds],
                        jobs or os.cpu_count() or 1, f"{name}, {len(seeds)} seeds", "seed", progress=progress,
                        done=lambda row: f"seed {row['seed']} val {row.get('val', 0):.4f}")
    return sorted(rows, key=lambda row: row["seed"])  # in_processes gives them in the order they finished


def _seed_run(the_plan: Plan, seed: int, names, eval_splits: tuple[str, ...]) -> dict:
    result = run(the_plan.stage.build_model, the_plan.model, the_plan.recipe, splits_for(the_plan.model, names),
                 Runtime(seed=seed), progress=False, eval_splits=eval_splits)
    return {"seed": seed, **result.metrics, "seconds": result.seconds}


def load_model(path: str | Path, device: str = "auto") -> tuple[Module, dict]:
    """The trained model in a stage checkpoint, on `device`, in eval mode; and the checkpoint."""
    ckpt = checkpoint.load(path)
    stages = all_stages()
    if ckpt.get("stage") not in stages:
        raise checkpoint.CheckpointError(f"{path} names no known stage (stage={ckpt.get('stage')!r})")
    stage = stages[ckpt["stage"]]
    if isinstance(ckpt["model_config"], dict):  # a stage's own config class
        ckpt["model_config"] = type(stage.config)(**ckpt["model_config"])
    model = stage.build_model(ckpt["model_config"], device=resolve_device(device))
    try:
        model.load_state(ckpt["state"])
    except ValueError as err:  # its tensors do not fit the model its own config builds
        raise checkpoint.CheckpointError(f"{path}: {err}") from err
    return model.eval(), ckpt
