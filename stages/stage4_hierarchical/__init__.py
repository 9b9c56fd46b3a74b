"""Stage 4: the hierarchical, WaveNet-style model."""

from ..stage import Exercise, Lecture, Stage

STAGE = Stage(
    __name__,
    lecture=Lecture(params=22_397, train=1.941, val=2.029),
    needs=("2.1", "2.3", "4.1", "4.2"),
    exercises=(
        Exercise("4.1", "FlattenConsecutive",
                 "Concatenate each n consecutive positions of an example: (B, T, C) -> (B, T // n, C * n); drop the "
                 "middle dim when it is 1."),
        Exercise("4.2", "the hierarchical model",
                 "Build the Sequential: Embedding, then FlattenConsecutive(2) - Linear(no bias) - BatchNorm1d - Tanh "
                 "until one position is left (use fuse_pairs), then a Linear to vocab_size logits."),
    ),
)
