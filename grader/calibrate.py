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
import statistics
import time
from pathlib import Path

from makemore_wavenet.stages import plan, train_under_seeds

from .thresholds import calibration_file

SEEDS = tuple(range(1, 9))  # not the grader's seed 42: the threshold must not be fitted to it


def calibrate(schedule: str, stages, seeds=SEEDS, names: str | None = None,
              progress: bool = True, jobs: int | None = None) -> dict[int, dict[str, list[float]]]:
    """{stage: {"val": [loss per seed], "test": [...], "seconds": [training time per seed]}}, each
    stage's plan on this schedule trained under every seed (stages.train_under_seeds)."""
    losses = {}
    for n in stages:
        rows = train_under_seeds(plan(n, schedule), seeds, names=names, jobs=jobs, progress=progress,
                                 eval_splits=("val", "test"))
        losses[n] = {key: [row[key] for row in rows] for key in ("val", "test", "seconds")}
    return losses


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
