"""Stage 7: stage 6's hierarchy as dilated causal convolutions, one prediction at every position."""

from ..stage import Exercise, Stage
from ..stage6_scaled_up import STAGE as STAGE_6

STAGE = Stage(
    __name__,
    lecture=STAGE_6.lecture,  # beyond the lecture: stage 6's numbers, the bar to meet
    needs=("2.1", "2.3", "5.1", "7.1"),
    exercises=(
        Exercise("7.1", "CausalConv1d",
                 "At every position t, concatenate x[t - dilation] and x[t] (earlier first) and multiply by the "
                 "weight: (B, T, C) -> (B, T - dilation, fan_out). One matmul for all positions; no padding."),
    ),
    config_hint="stage 6's sizes on whole names: three CausalConv1d of dilations 1, 2, 4",
    bar=STAGE_6.number,
)
