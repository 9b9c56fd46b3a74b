"""The hidden tier: inputs the students never see, and the test-split thresholds.

This package is not in the student edition (grader/release.py leaves it out, and a test proves it).
"""

from ..checks import exercise_checks
from ..thresholds import TOLERANCE

HIDDEN_SEED = 90_417
# other batch sizes, odd widths, a deeper hierarchy (T = 16, four levels), groups of 4
HIDDEN_SIZES = {"batch": 7, "T": 16, "C": 5, "n": 4, "n_embd": 3, "n_hidden": 9, "words": 11}

# test loss of the reference runs (see ..thresholds for how they were made)
TEST_REFERENCE = {
    "full": {1: 2.1046, 2: 2.1046, 3: 2.0262, 4: 2.0244, 5: 2.0189, 6: 1.9853},
    "quick": {1: 2.2564, 2: 2.2564, 3: 2.2128, 4: 2.1924, 5: 2.1822, 6: 2.1328},
}


def hidden_checks():
    return exercise_checks("hidden", HIDDEN_SEED, HIDDEN_SIZES)


def test_threshold(schedule: str, stage: int) -> float:
    return TEST_REFERENCE[schedule][stage] + TOLERANCE[schedule]
