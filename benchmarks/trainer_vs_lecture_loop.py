"""Time per training step: the shared trainer against the lecture's own loop, in the same run.

Both train the same model (same seed, same batches, same SGD); the lecture loop updates each
parameter in Python (`p.data += -lr * p.grad`) and reads the loss back every step. Rounds
alternate between the two so that machine noise hits both; the table reports the median round.

    python benchmarks/trainer_vs_lecture_loop.py --stages 1 6 --steps 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from tabulate import tabulate

from makemore_wavenet.shared.config import TrainConfig
from makemore_wavenet.shared.data import load_splits
from makemore_wavenet.shared.trainer import train
from makemore_wavenet.stages import get_stage


def lecture_loop(model, X, Y, config: TrainConfig) -> list[float]:
    """The training loop as the lecture writes it."""
    parameters = model.parameters()
    for p in parameters:
        p.requires_grad = True
    lossi = []
    for i in range(config.steps):
        ix = torch.randint(0, X.shape[0], (config.batch_size,))
        Xb, Yb = X[ix], Y[ix]
        logits = model(Xb)
        loss = F.cross_entropy(logits, Yb)
        for p in parameters:
            p.grad = None
        loss.backward()
        lr = config.lr_at(i)
        for p in parameters:
            p.data += -lr * p.grad
        lossi.append(loss.log10().item())
    return lossi


def seconds_per_step(loop, stage, X, Y, config: TrainConfig) -> float:
    torch.manual_seed(config.seed)
    model = stage.build_model(stage.CONFIG)
    start = time.perf_counter()
    loop(model, X, Y, config)
    return (time.perf_counter() - start) / config.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 6])
    parser.add_argument("--steps", type=int, default=2000, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(steps=args.steps, device="cpu")
    warmup = TrainConfig(steps=100, device="cpu")
    loops = {"lecture loop": lecture_loop, "trainer": lambda m, X, Y, c: train(m, X, Y, c, progress=False)}
    rows = []
    for n in args.stages:
        stage = get_stage(n)
        X, Y = load_splits(stage.CONFIG.block_size)["train"]
        for loop in loops.values():
            seconds_per_step(loop, stage, X, Y, warmup)
        times = {name: [] for name in loops}
        for _ in range(args.rounds):
            for name, loop in loops.items():
                times[name].append(seconds_per_step(loop, stage, X, Y, config))
        base, ours = (statistics.median(times[name]) for name in loops)
        rows.append([n, f"{1e3 * base:.3f}", f"{1e3 * ours:.3f}", f"{base / ours:.2f}x"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps x {args.rounds} rounds")
    print(tabulate(rows, ["stage", "lecture loop ms/step", "trainer ms/step", "speed-up"]))


if __name__ == "__main__":
    main()
