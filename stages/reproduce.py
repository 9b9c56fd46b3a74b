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

from makemore_wavenet.shared.config import Runtime
from makemore_wavenet.shared.layers import BatchNorm1d

from . import Plan, all_stages, count_parameters, get_stage, on_fast_engine, plan, train_stage
from .parallel import in_processes, threads_per_process


def stage_runtime(stage, runtime: Runtime, jobs: int) -> Runtime:
    """The runtime a stage trains with here: a stage the fast engine cannot train stays on the
    plain one; several processes on "auto" train on the CPU."""
    if runtime.engine != "plain" and not on_fast_engine(stage):
        runtime = replace(runtime, engine="plain")
    return replace(runtime, device="cpu") if runtime.device == "auto" and jobs > 1 else runtime


def _train_one(the_plan: Plan, runtime: Runtime, names, runs_dir) -> dict:
    result = train_stage(the_plan, runtime, names=names, runs_dir=runs_dir, progress=False)
    running_means = [tuple(m.running_mean.shape) for m in result.model.modules() if isinstance(m, BatchNorm1d)]
    return {"stage": the_plan.stage.number, "params": count_parameters(result.model), "seconds": result.seconds,
            "running_mean": running_means[0] if running_means else "-", "recipe": the_plan.recipe,
            "runtime": runtime, **result.metrics}


def reproduce(stages=None, options: dict | None = None, runtime: Runtime = Runtime(), jobs: int | None = None,
              names=None, runs_dir="runs") -> tuple[list[dict], float]:
    """Train `stages` (default: all), each with its recipe and the recipe `options` (steps), in
    parallel, largest first; returns one row per stage and the wall time."""
    jobs = jobs or os.cpu_count() or 1
    plans = [plan(n, options=options) for n in (stages or all_stages())]
    plans.sort(key=lambda p: -count_parameters(p.stage.build_model(p.model, device="meta")))
    start = time.perf_counter()
    rows = in_processes(_train_one, [(p, stage_runtime(p.stage, runtime, jobs), names, runs_dir) for p in plans], jobs,
                        f"{len(plans)} stages on {jobs} processes", "stage",
                        done=lambda row: f"stage {row['stage']} val {row['val']:.4f}")
    return sorted(rows, key=lambda r: r["stage"]), time.perf_counter() - start


def results_table(rows: list[dict], tablefmt: str = "github") -> str:
    table = []
    for r in rows:
        stage = get_stage(r["stage"])
        lecture = stage.lecture
        table.append([r["stage"], stage.title, f"{r['params']:,}", f"{r['train']:.4f}", f"{r['val']:.4f}",
                      f"{r['test']:.4f}" if "test" in r else "-", recipe_text(r["recipe"], r["runtime"]),
                      f"{r['seconds']:.0f}", f"{lecture.params:,}", lecture.train, lecture.val,
                      f"{r['val'] - lecture.val:+.4f}", str(r["running_mean"])])
    headers = ["stage", "what", "params", "train", "val", "test", "recipe", "seconds", "lecture params",
               "lecture train", "lecture val", "val - lecture", "BatchNorm running mean"]
    return tabulate(table, headers, tablefmt=tablefmt, disable_numparse=True)


def recipe_text(recipe, runtime: Runtime) -> str:
    """'200,000 x 32, SGD lr 0.1 -> 0.01 at 150,000, seed 42, compiled'"""
    return f"{recipe.describe()}, seed {runtime.seed}, {runtime.engine}"


def results_markdown(rows: list[dict], wall: float, jobs: int) -> str:
    threads = threads_per_process(jobs)
    return "\n".join([
        "# Reproduction of the lecture's table",
        "",
        "Each stage's recipe: steps x batch size (examples; names from stage 7 on), the optimizer and its "
        f"learning-rate schedule, the seed, the engine. torch {torch.__version__}, {jobs} processes of "
        f"{'one thread' if threads == 1 else f'{threads} threads'} each. `seconds` is one stage's training "
        f"time; all stages took {wall:.0f} s of wall time.",
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
