"""Stage 6: scale the fixed hierarchical network up: n_embd 10 -> 24, n_hidden 68 -> 128."""

from ..stage import Exercise, Lecture, Stage

STAGE = Stage(
    __name__,
    lecture=Lecture(params=76_579, train=1.769, val=1.993),
    needs=("2.1", "2.3", "4.1", "4.2", "5.1", "6.1"),
    exercises=(
        Exercise("6.1", "the scaled-up configuration",
                 "Set CONFIG to the hierarchical network scaled up (the lecture's n_embd 24 and n_hidden 128, "
                 "context 8, the BatchNorm fix) so that it reaches a val loss below 2.0."),
    ),
    loss_exercise="6.1",  # the scaled-up CONFIG is the exercise: its loss check is the proof
    val_promise=2.0,  # exercise 6.1: the first model of the series below 2.0
    config_hint="n_embd 24, n_hidden 128, block_size 8, bn_reduce_time True",
)
