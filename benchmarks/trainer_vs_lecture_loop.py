"""Time per training step: the trainer's three engines against the lecture's own loop, in one run.

All four train the same model with the same math. The lecture loop updates each parameter in
Python (`p.data += -lr * p.grad`) and reads the loss back every step; "plain" is the trainer's
autograd step (one foreach update, no read-back); "fast" is the hand-written backward
(shared/fast.py); "compiled" is that step under torch.compile, whose compile time is reported
apart. Each engine's model is built and warmed up once; then rounds alternate between the engines
so that machine noise hits all of them, and the table reports the median round.

    python benchmarks/trainer_vs_lecture_loop.py --stages 1 6 --steps 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from tabulate import tabulate

from makemore_wavenet.shared.config import ENGINES, TrainConfig
from makemore_wavenet.shared.data import load_splits
from makemore_wavenet.shared.trainer import make_step
from makemore_wavenet.stages import all_stages, get_stage, on_fast_engine

KINDS = ("lecture loop",) + ENGINES


def lecture_step(model):
    """The body of the lecture's training loop, as a step function."""
    parameters = model.parameters()
    for p in parameters:
        p.requires_grad = True

    def step(Xb, Yb, lr):
        logits = model(Xb)
        loss = F.cross_entropy(logits, Yb)
        for p in parameters:
            p.grad = None
        loss.backward()
        for p in parameters:
            p.data += -lr * p.grad
        return loss.log10().item()

    return step


def build(kind: str, stage, X):
    """A fresh model's step function for `kind`, and the seconds it took to make and warm up."""
    torch.manual_seed(42)
    model = stage.build_model(stage.config)
    start = time.perf_counter()
    step = lecture_step(model) if kind == "lecture loop" else make_step(model, TrainConfig(), kind, X[:32])
    warm(step, X, torch.zeros(len(X), dtype=torch.long), 1)  # the first call: the compile, if any
    return step, time.perf_counter() - start


def warm(step, X, Y, steps: int) -> None:
    for _ in range(steps):
        ix = torch.randint(0, X.shape[0], (32,))
        step(X[ix], Y[ix], 0.1)


def seconds_per_step(step, X, Y, steps: int) -> float:
    start = time.perf_counter()
    warm(step, X, Y, steps)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    on_fast = [n for n, stage in all_stages().items() if on_fast_engine(stage)]
    parser.add_argument("--stages", type=int, nargs="+", default=on_fast,
                        help="stages the fast engine trains (stages 7 and 8 are on the plain engine only)")
    parser.add_argument("--steps", type=int, default=1000, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for n in args.stages:
        stage = get_stage(n)
        X, Y = load_splits(stage.config.block_size)["train"]
        steps, setup = {}, {}
        for kind in KINDS:
            steps[kind], setup[kind] = build(kind, stage, X)
            warm(steps[kind], X, Y, 300)  # past any first-calls transient
        times = {kind: [] for kind in KINDS}
        for _ in range(args.rounds):
            for kind in KINDS:
                times[kind].append(seconds_per_step(steps[kind], X, Y, args.steps))
        ms = {kind: 1e3 * statistics.median(times[kind]) for kind in KINDS}
        base = ms["lecture loop"]
        rows.append([n, *(f"{ms[k]:.3f}" for k in KINDS), *(f"{base / ms[k]:.2f}x" for k in ENGINES),
                     f"{setup['compiled']:.1f}"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps x {args.rounds} rounds "
          f"(median), ms per step")
    print(tabulate(rows, ["stage", *KINDS, *(f"{k} speed-up" for k in ENGINES), "compile s"], disable_numparse=True))


if __name__ == "__main__":
    main()
