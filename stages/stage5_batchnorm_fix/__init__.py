"""Stage 5: fix BatchNorm1d for 3-D input."""

from ..stage import Exercise, Lecture, Stage

STAGE = Stage(
    __name__,
    lecture=Lecture(params=22_397, train=1.912, val=2.022),
    needs=("2.1", "2.3", "4.1", "4.2", "5.1"),
    exercises=(
        Exercise("5.1", "BatchNorm1d over batch and positions",
                 "For 3-D input (B, T, C), set `dims` so that the mean and variance are taken over the batch and the "
                 "positions together: running statistics of shape (1, 1, C)."),
    ),
)
