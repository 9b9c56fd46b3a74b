"""Stage 2: the same network, "pytorchified"."""

from ..stage import Exercise, Lecture, Stage

STAGE = Stage(
    __name__,
    lecture=Lecture(params=12_097, train=2.058, val=2.105),
    needs=("2.1", "2.2", "2.3"),
    exercises=(
        Exercise("2.1", "Embedding layer",
                 "Return the embedding vector of every token id: (B, T) -> (B, T, C)."),
        Exercise("2.2", "Flatten layer",
                 "Concatenate everything after the batch dim: (B, T, C) -> (B, T * C)."),
        Exercise("2.3", "Sequential container",
                 "forward: call the layers one after another. parameters: every layer's parameters, in order."),
        Exercise("2.4", "the 1000-step loss plot",
                 "Average log10(loss) over consecutive windows of `window` steps (drop a ragged end): the lecture's "
                 "fix for the learning-rate plot."),
    ),
)
