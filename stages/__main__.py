"""Command line for the stages: list, lesson, train, evaluate, sample.

    makemore train 4 --steps 20000 --device cuda
    makemore evaluate 6
    makemore sample 6 -n 20
    makemore challenge entry stage7 --seeds 1 2 3

(`python -m makemore_wavenet.stages ...` is the same command.)
"""

from __future__ import annotations

import argparse
from argparse import SUPPRESS
import os
import sys
from dataclasses import fields, replace

import torch
from tabulate import tabulate

from makemore_wavenet.shared.checkpoint import CheckpointError
from makemore_wavenet.shared.config import PATHS, TrainConfig
from makemore_wavenet.shared.data import SPLITS, DataError
from makemore_wavenet.shared.device import model_device
from makemore_wavenet.shared.sampling import sample
from makemore_wavenet.shared.trainer import evaluate

from . import (RUNS_DIR, STAGES, checkpoint_path, count_parameters, get_stage, lesson, load_model, recipe,
               stage_splits, title, train_stage)

DEFAULTS = TrainConfig()


def cmd_list(args) -> None:
    rows = []
    for n in STAGES:
        try:
            stage = get_stage(n)
            c, params = stage.CONFIG, count_parameters(stage.build_model(stage.CONFIG, device="meta"))
            rows.append([n, title(n), c.block_size, c.n_embd, c.n_hidden, f"{params:,}", stage.LECTURE["val"]])
        except NotImplementedError as err:  # the student edition, before its exercises are done
            rows.append([n, title(n), "", "", "", "", f"not done: {err}"])
    print(tabulate(rows, ["stage", "what", "block", "n_embd", "n_hidden", "params", "lecture val"]))


def cmd_lesson(args) -> None:
    print(lesson(args.stage))


def cmd_train(args) -> None:
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    config = replace(recipe(args.stage), **given)  # the stage's recipe, with what the command line says
    result = train_stage(args.stage, config, names=args.names, runs_dir=args.runs)
    print(tabulate([[split, f"{loss:.4f}"] for split, loss in result.metrics.items()], ["split", "loss"]))
    steady = (result.seconds - result.first_step) / max(config.steps - 1, 1)
    print(f"trained {config.steps:,} steps in {result.seconds:.1f} s ({1e3 * steady:.3f} ms/step after a "
          f"first step of {result.first_step:.1f} s); checkpoint and loss plot in "
          f"{result.checkpoint.parent}/")
    print("samples:", " ".join(sample(result.model, get_stage(args.stage).CONFIG.block_size, n=10)))


def cmd_evaluate(args) -> None:
    model, ckpt = load_model(args.checkpoint or checkpoint_path(args.stage, args.runs), args.device)
    _check_stage(ckpt, args.stage)
    splits = stage_splits(ckpt["stage"], names=args.names, device=model_device(model))
    rows = [[split, f"{evaluate(model, *splits[split]):.4f}"] for split in args.split]
    print(tabulate(rows, ["split", "loss"]))


def cmd_sample(args) -> None:
    model, ckpt = load_model(args.checkpoint or checkpoint_path(args.stage, args.runs), args.device)
    _check_stage(ckpt, args.stage)
    print("\n".join(sample(model, ckpt["model_config"].block_size, n=args.n, seed=args.seed)))


def cmd_reproduce(args) -> None:
    from .reproduce import reproduce, results_markdown, results_table, write_results

    given = {name: getattr(args, name) for name in ("steps", "device", "path") if hasattr(args, name)}
    jobs = args.jobs or os.cpu_count() or 1
    rows, wall = reproduce(args.stages, given, jobs=jobs, names=args.names, runs_dir=args.runs)
    print(results_table(rows, tablefmt="simple"))
    print(f"wall time: {wall:.1f} s for {len(rows)} stages on {jobs} processes")
    if args.out:
        print(f"table written to {write_results(args.out, results_markdown(rows, wall, jobs))}")


def cmd_challenge(args) -> None:
    from .stage8_challenge import entry_path
    from .stage8_challenge.challenge import challenge_table, run_entries, summarize

    paths = [entry_path(name) for name in args.entries]
    from .reproduce import write_results

    rows, wall = run_entries(paths, args.seeds, jobs=args.jobs, names=args.names, runs_dir=args.runs)
    summary = summarize(rows)
    print(challenge_table(summary, tablefmt="simple"))
    print(f"wall time: {wall:.1f} s for {len(rows)} runs on {args.jobs} processes")
    if args.out:
        text = "\n".join(["# Stage 8: challenge entries", "", f"torch {torch.__version__}; `minutes` is one "
                          f"run's training time; {len(rows)} runs took {wall / 60:.0f} minutes of wall time on "
                          f"{args.jobs} processes.", "", challenge_table(summary), ""])
        print(f"table written to {write_results(args.out, text)}")


def _check_stage(ckpt: dict, stage: int) -> None:
    if ckpt["stage"] != stage:
        raise CheckpointError(f"that checkpoint is of stage {ckpt['stage']}, not stage {stage}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="makemore", description="Train, evaluate and sample the stages "
                                     "of makemore part 5, from the baseline MLP to the WaveNet, and beyond.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="examples:\n  makemore list\n  makemore train 4 --steps 20000\n"
                                     "  makemore evaluate 6\n  makemore sample 6 -n 20")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help: str, stage: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        if stage:
            p.add_argument("stage", type=int, choices=list(STAGES), help="stage number")
        p.set_defaults(func=func)
        return p

    add("list", cmd_list, "list the stages with their sizes", stage=False)
    add("lesson", cmd_lesson, "print a stage's lesson text")

    p = add("train", cmd_train, "train a stage with its recipe (the lecture's for stages 1-6); each option "
            "given replaces one part of the recipe (in brackets: the lecture's)")
    recipe_part = dict(default=SUPPRESS)  # absent unless given: the stage's recipe decides
    p.add_argument("--steps", type=int, help=f"training steps [{DEFAULTS.steps}]", **recipe_part)
    p.add_argument("--batch-size", type=int, help=f"examples (names, from stage 7 on) per step [{DEFAULTS.batch_size}]",
                   **recipe_part)
    p.add_argument("--lr", type=float, help=f"learning rate before the decay [{DEFAULTS.lr}]", **recipe_part)
    p.add_argument("--lr-final", type=float, help=f"learning rate after the decay [{DEFAULTS.lr_final}]",
                   **recipe_part)
    p.add_argument("--decay-at", type=float, help="fraction of the steps after which the learning rate drops to "
                   f"--lr-final [{DEFAULTS.decay_at}]", **recipe_part)
    p.add_argument("--seed", type=int, help=f"seed for the model's init and the batches [{DEFAULTS.seed}]",
                   **recipe_part)
    p.add_argument("--device", help=f"auto, cpu, cuda, cuda:1, ... [{DEFAULTS.device}]", **recipe_part)
    p.add_argument("--path", choices=PATHS, help="plain (autograd), fast (hand-written backward) or compiled (fast "
                   f"under torch.compile): the same math, faster [{DEFAULTS.path}]", **recipe_part)
    p.add_argument("--names", help="names file to train on (default: $MAKEMORE_NAMES, else data/names.txt, "
                   "fetched on first use)")
    p.add_argument("--runs", default=str(RUNS_DIR), help="where checkpoints go (RUNS/stageN/)")

    p = add("reproduce", cmd_reproduce, "train several stages in parallel and tabulate them beside the "
            "lecture's numbers", stage=False)
    p.add_argument("--stages", type=int, nargs="+", choices=list(STAGES), default=list(STAGES), help="which stages")
    p.add_argument("--steps", type=int, default=SUPPRESS,
                   help="training steps per stage (default: each stage's recipe)")
    p.add_argument("--jobs", type=int, default=None, help="parallel processes (default: one per core)")
    p.add_argument("--device", default=SUPPRESS, help="auto, cpu, cuda, ... (default: auto)")
    p.add_argument("--path", choices=PATHS, default=SUPPRESS, help="plain, fast or compiled (see train); a stage "
                   "the fast path cannot train runs on the plain path (default: plain)")
    p.add_argument("--names", help="names file (default: $MAKEMORE_NAMES, else data/names.txt)")
    p.add_argument("--runs", default=str(RUNS_DIR), help="where checkpoints go (RUNS/stageN/)")
    p.add_argument("--out", help="write the table as Markdown to this file")

    p = add("challenge", cmd_challenge, "train challenge entries (stage 8) under several seeds and tabulate "
            "them: mean val loss and its spread", stage=False)
    p.add_argument("entries", nargs="+", metavar="ENTRY", help="an entry file (.toml), or the name of one of the "
                   "course's: entry (the stage's own), or one in stages/stage8_challenge/entries/")
    p.add_argument("--seeds", type=int, nargs="+", default=[42], help="seeds to train each entry with")
    p.add_argument("--jobs", type=int, default=1, help="parallel processes, one thread each; 1: one run at a time "
                   "on every core, as the challenge's rules time a run")
    p.add_argument("--names", help="names file (default: $MAKEMORE_NAMES, else data/names.txt)")
    p.add_argument("--runs", default=str(RUNS_DIR), help="where checkpoints go (RUNS/challenge/ENTRY/seedS/)")
    p.add_argument("--out", help="write the table as Markdown to this file")

    for name, func, help in [("evaluate", cmd_evaluate, "loss of a trained stage on the splits"),
                             ("sample", cmd_sample, "generate names from a trained stage")]:
        p = add(name, func, help)
        p.add_argument("--checkpoint", help="checkpoint file (default: RUNS/stageN/checkpoint.pt)")
        p.add_argument("--runs", default=str(RUNS_DIR), help="where `train` put the checkpoints")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
        if name == "evaluate":
            p.add_argument("--split", nargs="+", choices=SPLITS, default=list(SPLITS), help="splits to evaluate")
            p.add_argument("--names", help="names file (default: as for train)")
        else:
            p.add_argument("-n", type=int, default=20, help="how many names")
            p.add_argument("--seed", type=int, default=42, help="sampling seed")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (DataError, CheckpointError, ValueError) as err:  # an EntryError is a ValueError
        hint = ""
        if isinstance(err, CheckpointError) and "no checkpoint" in str(err):
            hint = f"\nTrain it first: makemore train {args.stage}"
        print(f"makemore: error: {err}{hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
