"""Checkpoints: the model's tensors, the configs that made it, and what it measured.

Only tensors, numbers and strings are stored, so a checkpoint loads with `weights_only=True`
(no code from the file runs). Format 2 keeps the recipe and the runtime (seed, device, engine)
apart; format 1 kept them in one "train_config", and still loads.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import torch

from .config import RENAMED, ModelConfig, Runtime, TrainConfig
from .errors import UserError
from .layers import Module

FORMAT = 2


class CheckpointError(UserError):
    """A checkpoint is missing, unreadable, or not for this model."""


def save(path: str | Path, model: Module, model_config: ModelConfig, recipe: TrainConfig, runtime: Runtime,
         metrics: dict, losses: torch.Tensor | None = None, **extra) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "format": FORMAT,
        "state": {name: t.detach().cpu() for name, t in model.state().items()},
        "model_config": asdict(model_config),
        "recipe": asdict(recipe),
        "runtime": asdict(runtime),
        "metrics": dict(metrics),
        "losses": None if losses is None else losses.detach().cpu(),
        "torch_version": str(torch.__version__),
        **extra,
    }, path)
    return path


def load(path: str | Path) -> dict:
    """The checkpoint as a dict; its configs as ModelConfig, TrainConfig ("recipe") and Runtime. A
    model config with fields of a stage's own (stage 8's WaveNetConfig) stays a dict:
    `stages.load_model` builds it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if ckpt.get("format") == 1:
            ckpt = _from_format_1(ckpt)
        if ckpt.get("format") != FORMAT:
            raise CheckpointError(f"{path} has checkpoint format {ckpt.get('format')}, expected {FORMAT}")
        if set(ckpt["model_config"]) <= {f.name for f in fields(ModelConfig)}:
            ckpt["model_config"] = ModelConfig(**ckpt["model_config"])
        ckpt["recipe"], ckpt["runtime"] = TrainConfig(**ckpt["recipe"]), Runtime(**ckpt["runtime"])
    except CheckpointError:
        raise
    except Exception as err:  # a truncated file, a pickle of something else, a foreign dict
        raise CheckpointError(f"{path} is not a readable checkpoint: {err}") from err
    return ckpt


def trained_with(ckpt: dict, stage: int, recipe: TrainConfig, seed: int) -> bool:
    """Was this checkpoint (as `load` returns it) made by training `stage` with `recipe` under `seed`?"""
    return ckpt.get("stage") == stage and ckpt["recipe"] == recipe and ckpt["runtime"].seed == seed


def _from_format_1(ckpt: dict) -> dict:
    """Format 1's one "train_config" split into the recipe and the runtime it held."""
    recipe = dict(ckpt.pop("train_config"))
    runtime = {"seed": recipe.pop("seed", 42), "device": recipe.pop("device", "auto"),
               "engine": recipe.pop("path", "plain")}
    recipe = {RENAMED.get(key, key): value for key, value in recipe.items()}
    return {**ckpt, "format": FORMAT, "recipe": recipe, "runtime": runtime}
