"""Time per prediction: stage 6 (one window per example) against stage 7 (every position of whole
names, dilated causal convolutions), in one run, on the plain engine.

Stage 6's step predicts 32 characters; stage 7's predicts every character of 32 names, about 230.
The fair figure is the time per prediction (an example seen). Rounds alternate between the two so
that machine noise hits both; the median round is reported.

    python benchmarks/per_position.py --steps 300 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch
from tabulate import tabulate

from makemore_wavenet.shared.data import IGNORE
from makemore_wavenet.shared.trainer import train
from makemore_wavenet.stages import get_stage, splits_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    args = parser.parse_args()
    stages = (6, 7)
    models, data, per_step = {}, {}, {}
    for n in stages:
        torch.manual_seed(42)
        stage = get_stage(n)
        models[n] = stage.build_model(stage.config)
        data[n] = splits_for(stage.config)["train"]
        Y = data[n][1]
        per_step[n] = stage.recipe.batch_size * (int((Y != IGNORE).sum()) / len(Y))  # predictions per step
    times = {n: [] for n in stages}
    # the steps alone: a recipe's closing BatchNorm calibration is once a run, not once a step
    steps = {n: replace(get_stage(n).recipe, recompute_batchnorm=False) for n in stages}
    whole = {n: get_stage(n).config.whole_names for n in stages}
    for n in stages:  # warm-up
        train(models[n], *data[n], replace(steps[n], steps=50), whole_names=whole[n], progress=False)
    for _ in range(args.rounds):
        for n in stages:
            start = time.perf_counter()
            train(models[n], *data[n], replace(steps[n], steps=args.steps), whole_names=whole[n], progress=False)
            times[n].append((time.perf_counter() - start) / args.steps)
    ms = {n: 1e3 * statistics.median(times[n]) for n in stages}
    us = {n: 1e3 * ms[n] / per_step[n] for n in stages}
    rows = [[n, f"{per_step[n]:.0f}", f"{ms[n]:.3f}", f"{us[n]:.2f}", f"{us[6] / us[n]:.2f}x"] for n in stages]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, plain engine, {args.steps} steps x "
          f"{args.rounds} rounds (median)")
    print(tabulate(rows, ["stage", "predictions per step", "ms per step", "us per prediction",
                          "speed-up per prediction vs stage 6"], disable_numparse=True))


if __name__ == "__main__":
    main()
