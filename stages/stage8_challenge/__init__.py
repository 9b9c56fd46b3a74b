"""Stage 8: the challenge. The WaveNet paper's gated units, residual and skip connections on stage
7's convolutions; every model and recipe is an entry, a TOML file (entry.py)."""

from ..stage import Exercise, Stage
from ..stage6_scaled_up import STAGE as STAGE_6

STAGE = Stage(
    __name__,
    lecture=STAGE_6.lecture,  # beyond the lecture: stage 6's numbers, the bar to meet
    needs=("2.1", "5.1", "7.1", "8.1", "8.2"),
    exercises=(
        Exercise("8.1", "GatedActivation",
                 "Split the last dim in two halves, the filter and the gate, and return tanh(filter) * "
                 "sigmoid(gate): (..., 2C) -> (..., C)."),
        Exercise("8.2", "the WaveNet block",
                 "conv, then norm (with the mask), then act (then dropout, if there is one) give z. The block's "
                 "output is z, or with a residual the input from position `dilation` on plus residual(z); the skip "
                 "output is skip(z), or None. Return (output, skip)."),
    ),
    bar=STAGE_6.number,  # the challenge: beat the lecture's model
    entry_file="challenge.toml",  # a submission's own entry, at its top: the loss check trains it
    model_module="entry",  # CONFIG and RECIPE are the stage's own entry file, entry.toml
)
