"""Stage 3: a longer context. The network is stage 2's flat MLP; only block_size grows, 3 -> 8."""

from ..stage import Exercise, Lecture, Stage

STAGE = Stage(
    __name__,
    lecture=Lecture(params=22_097, train=1.918, val=2.027),
    needs=("2.1", "2.2", "2.3"),
    exercises=(
        Exercise("3.1", "context windows",
                 "For every character of every word (and the closing '.'), append the block_size previous character "
                 "ids to X (padded with 0 = '.') and the character's id to Y."),
    ),
)
