"""Calibrate the loss thresholds over seeds: train the master's stages under K seeds at once (one
stacked model, shared/fast.py) and record every seed's val and test loss.

The val losses go to OUT/calibration.json, which the student edition ships; the test losses to
OUT/hidden/calibration.json, which stays behind (OUT is where it is told: `nox -s calibrate` says
grader/, the grader's own). grader/thresholds.py turns each into a threshold: their 99.9%
prediction bound, so the bar is the recipe's, not one lucky run's.

    python -m makemore_wavenet.grader calibrate --schedule quick --out grader
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

from makemore_wavenet.shared.config import Runtime
from makemore_wavenet.shared.trainer import run, run_seeds
from makemore_wavenet.stages import Plan, on_fast_engine, plan, splits_for
from makemore_wavenet.stages.parallel import in_processes

from .thresholds import calibration_file

SEEDS = tuple(range(1, 9))  # not the grader's seed 42: the threshold must not be fitted to it


def calibrate(schedule: str, stages, seeds=SEEDS, names: str | None = None,
              progress: bool = True, jobs: int | None = None) -> dict[int, dict[str, list[float]]]:
    """{stage: {"val": [loss per seed], "test": [...], "seconds": [training time per seed]}}: the
    seeds of a stage trained at once on the compiled engine, or, where the fast engine cannot train
    it, in `jobs` parallel processes (default: one per core) that share the cores as threads."""
    jobs = jobs or os.cpu_count() or 1
    losses = {}
    for n in stages:
        the_plan = plan(n, schedule)
        if on_fast_engine(the_plan.stage):  # the seeds at once, as one stacked model
            runs = run_seeds(the_plan.stage.build_model, the_plan.model, the_plan.recipe,
                             splits_for(the_plan.model, names),
                             list(seeds), engine="compiled", name=f"stage {n}", progress=progress,
                             eval_splits=("val", "test"))
            losses[n] = {**{split: [r.metrics[split] for r in runs] for split in ("val", "test")},
                         "seconds": [r.seconds for r in runs]}  # the stack's time, for each seed
        else:  # one plain run per seed, `jobs` at a time
            metrics = in_processes(_plain_run, [(the_plan, seed, names) for seed in seeds],
                                   jobs, f"stage {n}, {len(seeds)} seeds", "seed", progress=progress,
                                   done=lambda m: f"seed {m['seed']} val {m['val']:.4f}")
            metrics.sort(key=lambda m: m["seed"])  # in_processes gives them in the order they finished
            losses[n] = {split: [m[split] for m in metrics] for split in ("val", "test", "seconds")}
    return losses


def _plain_run(the_plan: Plan, seed: int, names) -> dict[str, float]:
    result = run(the_plan.stage.build_model, the_plan.model, the_plan.recipe, splits_for(the_plan.model, names),
                 Runtime(seed=seed), progress=False, eval_splits=("val", "test"))
    return {**result.metrics, "seconds": result.seconds, "seed": seed}


def write(losses: dict[int, dict[str, list[float]]], schedule: str, seeds, out: Path) -> list[Path]:
    """Merge `losses` into the calibration folder `out`: val losses in out/calibration.json, test
    losses in out/hidden/calibration.json; returns their paths."""
    written = []
    for split in ("val", "test"):
        path = calibration_file(out, split)
        table = json.loads(path.read_text()) if path.is_file() else {}
        entry = table.setdefault(schedule, {})
        for n, by_split in losses.items():
            values = by_split[split]
            entry[str(n)] = {"mean": round(statistics.fmean(values), 5), "std": round(statistics.stdev(values), 5),
                             "seeds": list(seeds), "losses": [round(v, 5) for v in values],
                             "seconds": [round(v) for v in by_split["seconds"]],  # training time per seed
                             "steps": plan(n, schedule).recipe.steps, "made": time.strftime("%Y-%m-%d")}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written
