"""Calibrate the loss thresholds over seeds: train the master's stages under K seeds at once (one
stacked model, shared/fast.py) and record every seed's val and test loss.

The val losses go to grader/calibration.json, which the student edition ships; the test losses
to grader/hidden/calibration.json, which stays behind. grader/thresholds.py turns each into a
threshold: their 99.9% prediction bound, so the bar is the recipe's, not one lucky run's.

    python -m makemore_wavenet.grader calibrate --schedule quick
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

from makemore_wavenet.shared.trainer import run, run_seeds
from makemore_wavenet.stages import get_stage, on_fast_path, stage_splits
from makemore_wavenet.stages.parallel import in_processes

from .exercises import STAGES
from .thresholds import CALIBRATION_FILE, schedule_config

SEEDS = tuple(range(1, 9))  # not the grader's seed 42: the threshold must not be fitted to it


def calibrate(schedule: str, seeds=SEEDS, stages=STAGES, names: str | None = None,
              progress: bool = True, jobs: int | None = None) -> dict[int, dict[str, list[float]]]:
    """{stage: {"val": [loss per seed], "test": [...], "seconds": [training time per seed]}}: the
    seeds of a stage trained at once on the compiled path, or, where the fast path cannot train
    it, in `jobs` parallel processes (default: one per core) that share the cores as threads."""
    jobs = jobs or os.cpu_count() or 1
    losses = {}
    for n in stages:
        stage, config = get_stage(n), schedule_config(schedule, n)
        if on_fast_path(n):  # the seeds at once, as one stacked model
            runs = run_seeds(stage.build_model, stage.CONFIG, replace(config, path="compiled"),
                             stage_splits(n, names), list(seeds), name=f"stage {n}", progress=progress,
                             eval_splits=("val", "test"))
            losses[n] = {**{split: [r.metrics[split] for r in runs] for split in ("val", "test")},
                         "seconds": [r.seconds for r in runs]}  # the stack's time, for each seed
        else:  # one plain run per seed, `jobs` at a time
            metrics = in_processes(_plain_run, [(n, replace(config, seed=seed, path="plain"), names) for seed in seeds],
                                   jobs, f"stage {n}, {len(seeds)} seeds", "seed", progress=progress,
                                   done=lambda m: f"seed {m['seed']} val {m['val']:.4f}")
            metrics.sort(key=lambda m: m["seed"])  # in_processes gives them in the order they finished
            losses[n] = {split: [m[split] for m in metrics] for split in ("val", "test", "seconds")}
    return losses


def _plain_run(n: int, config, names) -> dict[str, float]:
    stage = get_stage(n)
    result = run(stage.build_model, stage.CONFIG, config, stage_splits(n, names), progress=False,
                 eval_splits=("val", "test"))
    return {**result.metrics, "seconds": result.seconds, "seed": config.seed}


def write(losses: dict[int, dict[str, list[float]]], schedule: str, seeds, hidden_dir: Path,
          public_file: Path = CALIBRATION_FILE) -> list[Path]:
    """Merge `losses` into the public (val) and hidden (test) calibration files; returns their paths."""
    written = []
    for split, path in (("val", public_file), ("test", Path(hidden_dir) / CALIBRATION_FILE.name)):
        table = json.loads(path.read_text()) if path.is_file() else {}
        entry = table.setdefault(schedule, {})
        for n, by_split in losses.items():
            values = by_split[split]
            entry[str(n)] = {"mean": round(statistics.fmean(values), 5), "std": round(statistics.stdev(values), 5),
                             "seeds": list(seeds), "losses": [round(v, 5) for v in values],
                             "seconds": [round(v) for v in by_split["seconds"]],  # training time per seed
                             "steps": schedule_config(schedule, n).steps, "made": time.strftime("%Y-%m-%d")}
        path.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written
