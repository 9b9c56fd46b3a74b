"""The hidden tier: inputs the students never see. Its calibration.json holds the test losses the
test thresholds come from (grader/thresholds.py).

This package is not in the student edition (grader/release.py leaves it out, and a test proves it).
"""

from ..checks import exercise_checks

HIDDEN_SEED = 90_417
# other batch sizes, odd widths, a deeper hierarchy (T = 16, four levels), groups of 4
HIDDEN_SIZES = {"batch": 7, "T": 16, "C": 5, "n": 4, "n_embd": 3, "n_hidden": 9, "words": 11}


def hidden_checks():
    return exercise_checks("hidden", HIDDEN_SEED, HIDDEN_SIZES)
