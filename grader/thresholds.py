"""Loss thresholds for the stage loss checks, calibrated over seeds.

A stage passes when its loss is at most the upper 99.9% prediction bound of the master's own
losses over K seeds of the same schedule (grader/calibrate.py trains them at once as one stacked
model): mean + t x std x sqrt(1 + 1/K), with t Student's quantile for K - 1 degrees of freedom,
since 8 seeds estimate the spread only roughly. So one honest run in a thousand, under any seed
and in any floating-point order, lands above it; a solution that learns less does not pass.
Re-calibrate after changing the recipe: `nox -s calibrate` (quick), `nox -s calibrate -- --schedule full`.

A calibration folder holds calibration.json (val losses: the student edition ships it) and
hidden/calibration.json (test losses: it does not). The grader's own is this package's folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from makemore_wavenet.stages import get_stage

from . import GraderError

# Student's t, one-sided 0.999 quantile, by degrees of freedom (K - 1); the normal's beyond 30
T_999 = {2: 22.327, 3: 10.215, 4: 7.173, 5: 5.893, 6: 5.208, 7: 4.785, 8: 4.501, 9: 4.297, 10: 4.144,
         15: 3.733, 20: 3.552, 30: 3.385}
CALIBRATION_DIR = Path(__file__).parent


def calibration_file(folder: Path, split: str) -> Path:
    return Path(folder) / ("calibration.json" if split == "val" else "hidden/calibration.json")


@dataclass(frozen=True)
class Thresholds:
    """The thresholds of one calibration folder."""

    folder: Path = CALIBRATION_DIR

    def limit(self, split: str, schedule: str, stage: int) -> float:
        """The most a `split` loss may be. The challenge's bar (the student's own entry) is to beat
        the stage's `bar` model: its mean loss over the calibration seeds, on the full schedule.
        A stage's val_promise caps its full-schedule val threshold."""
        s = get_stage(stage)
        path = calibration_file(self.folder, split)
        if schedule == "challenge":
            return _entry(path, "full", s.bar or s.number)["mean"]
        bound = prediction_bound(_entry(path, schedule, stage))
        return min(bound, s.val_promise) if split == "val" and schedule == "full" and s.val_promise else bound


def _entry(path: Path, schedule: str, stage: int) -> dict:
    table = json.loads(path.read_text()) if path.is_file() else {}
    entry = table.get(schedule, {}).get(str(stage))
    if entry is None:
        raise GraderError(f"{path} has no {schedule!r} calibration of stage {stage}: run "
                          f"`python -m makemore_wavenet.grader calibrate --schedule {schedule} --stage {stage}`")
    return entry


def prediction_bound(entry: dict) -> float:
    """The 99.9% prediction bound of one calibration entry's losses."""
    k = len(entry["losses"])
    return entry["mean"] + student_t(k - 1) * entry["std"] * (1 + 1 / k) ** 0.5


def student_t(df: int) -> float:
    """t's 0.999 quantile; between tabled values, the next smaller df's (a larger, safer t)."""
    if df < 2:
        raise ValueError(f"a prediction bound needs at least 3 seeds, got {df + 1}")
    return 3.090 if df > 30 else T_999[max(d for d in T_999 if d <= df)]
