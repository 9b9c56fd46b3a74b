"""The hidden tier: inputs the students never see, and the test-split thresholds.

This package is not in the student edition (grader/release.py leaves it out, and a test proves it).
"""

from pathlib import Path

from ..checks import exercise_checks
from ..thresholds import threshold

HIDDEN_SEED = 90_417
# other batch sizes, odd widths, a deeper hierarchy (T = 16, four levels), groups of 4
HIDDEN_SIZES = {"batch": 7, "T": 16, "C": 5, "n": 4, "n_embd": 3, "n_hidden": 9, "words": 11}
# test losses of the calibration seeds (grader/calibrate.py)
CALIBRATION_FILE = Path(__file__).with_name("calibration.json")


def hidden_checks():
    return exercise_checks("hidden", HIDDEN_SEED, HIDDEN_SIZES)


def test_threshold(schedule: str, stage: int) -> float:
    return threshold(CALIBRATION_FILE, schedule, stage)
