"""Reproduce the lecture's table: train every stage with the full recipe, in parallel processes.

Each stage trains in its own process; the processes share the cores as threads
(stages/parallel.py), so N cores train N stages at once, one thread each.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import torch
from tabulate import tabulate

from makemore_wavenet.shared.config import TrainConfig
from makemore_wavenet.shared.layers import BatchNorm1d

from . import STAGES, count_parameters, get_stage, on_fast_path, recipe, title, train_stage
from .parallel import in_processes, threads_per_process


def stage_config(number: int, given: dict, jobs: int) -> TrainConfig:
    """The stage's recipe with `given` (steps, device, path) in place; a stage the fast path cannot
    train stays on the plain path; several processes on "auto" train on the CPU."""
    if given.get("path", "plain") != "plain" and not on_fast_path(number):
        given = {**given, "path": "plain"}
    config = replace(recipe(number), **given)
    return replace(config, device="cpu") if config.device == "auto" and jobs > 1 else config


def _train_one(number: int, config: TrainConfig, names, runs_dir) -> dict:
    result = train_stage(number, config, names=names, runs_dir=runs_dir, progress=False)
    running_means = [tuple(m.running_mean.shape) for m in result.model.modules() if isinstance(m, BatchNorm1d)]
    return {"stage": number, "params": count_parameters(result.model), "seconds": result.seconds,
            "running_mean": running_means[0], "config": config, **result.metrics}


def reproduce(stages=tuple(STAGES), given: dict | None = None, jobs: int | None = None,
              names=None, runs_dir="runs") -> tuple[list[dict], float]:
    """Train `stages`, each with its recipe and the options in `given` (steps, device, path), in
    parallel, largest first; returns one row per stage and the wall time."""
    jobs = jobs or os.cpu_count() or 1
    order = sorted(stages, key=lambda n: -count_parameters(get_stage(n).build_model(get_stage(n).CONFIG,
                                                                                     device="meta")))
    start = time.perf_counter()
    rows = in_processes(_train_one, [(n, stage_config(n, given or {}, jobs), names, runs_dir) for n in order], jobs,
                        f"{len(order)} stages on {jobs} processes", "stage",
                        done=lambda row: f"stage {row['stage']} val {row['val']:.4f}")
    return sorted(rows, key=lambda r: r["stage"]), time.perf_counter() - start


def results_table(rows: list[dict], tablefmt: str = "github") -> str:
    table = []
    for r in rows:
        lecture = get_stage(r["stage"]).LECTURE
        table.append([r["stage"], title(r["stage"]), f"{r['params']:,}", f"{r['train']:.4f}", f"{r['val']:.4f}",
                      f"{r['test']:.4f}" if "test" in r else "-", recipe_text(r["config"]), f"{r['seconds']:.0f}",
                      f"{lecture['params']:,}", lecture["train"], lecture["val"], f"{r['val'] - lecture['val']:+.4f}",
                      str(r["running_mean"])])
    headers = ["stage", "what", "params", "train", "val", "test", "recipe", "seconds", "lecture params",
               "lecture train", "lecture val", "val - lecture", "BatchNorm running mean"]
    return tabulate(table, headers, tablefmt=tablefmt, disable_numparse=True)


def recipe_text(c: TrainConfig) -> str:
    """'200,000 x 32, SGD lr 0.1 -> 0.01 at 150,000, seed 42, compiled'"""
    return f"{c.describe()}, seed {c.seed}, {c.path}"


def results_markdown(rows: list[dict], wall: float, jobs: int) -> str:
    threads = threads_per_process(jobs)
    return "\n".join([
        "# Reproduction of the lecture's table",
        "",
        "Each stage's recipe: steps x batch size (examples; names from stage 7 on), the optimizer and its "
        f"learning-rate schedule, the seed, the path. torch {torch.__version__}, {jobs} processes of "
        f"{'one thread' if threads == 1 else f'{threads} threads'} each. `seconds` is one stage's training time; all stages took {wall:.0f} s of wall time.",
        "",
        results_table(rows),
        "",
        "Made by `nox -s reproduce`. `BatchNorm running mean` is the shape of the first BatchNorm's running "
        "mean after training: per position in stage 4 (the lecture's bug), shared across positions from "
        "stage 5 on. Stages 7 and 8 go beyond the lecture: their lecture columns are stage 6's, the bar to meet.",
        "",
    ])


def write_results(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
