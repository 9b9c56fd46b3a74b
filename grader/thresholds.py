"""Loss thresholds for the stage loss checks, calibrated over seeds.

A stage passes when its loss is at most the upper 99.9% prediction bound of the master's own
losses over K seeds of the same schedule (grader/calibrate.py trains them at once as one stacked
model): mean + t x std x sqrt(1 + 1/K), with t Student's quantile for K - 1 degrees of freedom,
since 8 seeds estimate the spread only roughly. So one honest run in a thousand, under any seed
and in any floating-point order, lands above it; a solution that learns less does not pass.
Re-calibrate after changing the recipe: `nox -s calibrate` (quick), `nox -s calibrate -- --schedule full`.
"""

import json
from dataclasses import replace
from pathlib import Path

from makemore_wavenet.shared.config import TrainConfig

SCHEDULES = {
    "full": TrainConfig(),  # the lecture's recipe: 200,000 steps
    "quick": TrainConfig(steps=5_000),  # 2.5% of it, for fast feedback and the tests
}
QUICK_FRACTION = 40  # the quick schedule: 1/40 of a recipe's steps


def schedule_config(schedule: str, stage: int) -> TrainConfig:
    """The stage's recipe (the lecture's, unless the stage has its own), whole or quick."""
    from makemore_wavenet.stages import recipe

    full = recipe(stage)
    return full if schedule == "full" else replace(full, steps=full.steps // QUICK_FRACTION)
# Student's t, one-sided 0.999 quantile, by degrees of freedom (K - 1); the normal's beyond 30
T_999 = {2: 22.327, 3: 10.215, 4: 7.173, 5: 5.893, 6: 5.208, 7: 4.785, 8: 4.501, 9: 4.297, 10: 4.144,
         15: 3.733, 20: 3.552, 30: 3.385}
CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
# exercise 6.1's promise: the scaled-up model passes below 2.0 on the full recipe
VAL_CAP = {"full": {6: 2.0}, "quick": {}, "challenge": {}}


def threshold(calibration: Path, schedule: str, stage: int) -> float:
    """The 99.9% prediction bound of the calibrated losses in `calibration` for this schedule and
    stage. The challenge's bar (stage 8, the student's own entry) is to beat the lecture's model:
    the mean loss of stage 6 over the calibration seeds, on the full schedule."""
    table = json.loads(calibration.read_text()) if calibration.is_file() else {}
    if schedule == "challenge":
        lecture = table.get("full", {}).get("6")
        if lecture is None:
            raise RuntimeError(f"{calibration} has no full-schedule calibration of stage 6, the challenge's bar: run "
                               "`python -m makemore_wavenet.grader calibrate --schedule full --stage 6`")
        return lecture["mean"]
    entry = table.get(schedule, {}).get(str(stage))
    if entry is None:
        raise RuntimeError(f"{calibration} has no {schedule!r} thresholds for stage {stage}: run "
                           f"`python -m makemore_wavenet.grader calibrate --schedule {schedule} --stage {stage}`")
    k = len(entry["losses"])
    return entry["mean"] + student_t(k - 1) * entry["std"] * (1 + 1 / k) ** 0.5


def student_t(df: int) -> float:
    """t's 0.999 quantile; between tabled values, the next smaller df's (a larger, safer t)."""
    if df < 2:
        raise ValueError(f"a prediction bound needs at least 3 seeds, got {df + 1}")
    return 3.090 if df > 30 else T_999[max(d for d in T_999 if d <= df)]


def val_threshold(schedule: str, stage: int) -> float:
    limit = threshold(CALIBRATION_FILE, schedule, stage)
    return min(limit, VAL_CAP[schedule].get(stage, limit))
