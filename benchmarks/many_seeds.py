"""The cost of K seeds trained at once (one batched model, shared/fast.py) against one seed, in one run.

For each stage and engine, the time per step of a stack of 1 seed and of K seeds (each seed its
own batch of 32), and the ratio: K seeds cost that many times one seed (K separate runs cost K).
Rounds alternate between the stacks so that machine noise hits both; the median round is reported.

    python benchmarks/many_seeds.py --stages 6 --seeds 8 --steps 500 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from tabulate import tabulate

from makemore_wavenet.shared import fast
from makemore_wavenet.shared.data import load_splits
from makemore_wavenet.stages import all_stages, get_stage, on_fast_engine


def stack_step(stage, k: int, engine: str, X):
    """The step of a fresh stack of k models, compiled or not, and warmed up."""
    models = []
    for seed in range(k):
        torch.manual_seed(seed)
        models.append(stage.build_model(stage.config))
    step = fast.FastStep(models)
    example = X[:32].expand(k, *X[:32].shape)
    return fast.compiled(step, example) if engine == "compiled" else step


def seconds_per_step(step, k: int, X, Y, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        ix = torch.randint(0, X.shape[0], (k, 32))
        step(X[ix], Y[ix], 0.1)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    on_fast = [n for n, stage in all_stages().items() if on_fast_engine(stage)]
    parser.add_argument("--stages", type=int, nargs="+", default=on_fast,
                        help="stages the fast engine trains (stages 7 and 8 are on the plain engine only)")
    parser.add_argument("--seeds", type=int, default=8, help="K, the seeds in the stack")
    parser.add_argument("--engines", nargs="+", default=["fast", "compiled"], choices=["fast", "compiled"])
    parser.add_argument("--steps", type=int, default=500, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    args = parser.parse_args()
    rows = []
    for n in args.stages:
        stage = get_stage(n)
        X, Y = load_splits(stage.config.block_size)["train"]
        for engine in args.engines:
            ks = (1, args.seeds)
            steps = {k: stack_step(stage, k, engine, X) for k in ks}
            for k in ks:
                seconds_per_step(steps[k], k, X, Y, 100)  # past any first-calls transient
            times = {k: [] for k in ks}
            for _ in range(args.rounds):
                for k in ks:
                    times[k].append(seconds_per_step(steps[k], k, X, Y, args.steps))
            one, many = (1e3 * statistics.median(times[k]) for k in ks)
            rows.append([n, engine, f"{one:.3f}", f"{many:.3f}", f"{many / one:.2f}x",
                         f"{args.seeds * one / many:.2f}x"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps x {args.rounds} "
          f"rounds (median), ms per step")
    print(tabulate(rows, ["stage", "engine", "1 seed", f"{args.seeds} seeds", f"cost of {args.seeds} / 1",
                          f"saving vs {args.seeds} runs"], disable_numparse=True))


if __name__ == "__main__":
    main()
