"""Command line for the stages: list, lesson, train, evaluate, sample, reproduce, challenge.

    makemore train 4 --steps 20000 --device cuda
    makemore evaluate 6
    makemore sample 6 -n 20
    makemore challenge entry stage7 --seeds 1 2 3

(`python -m makemore_wavenet.stages ...` is the same command.)
"""

from __future__ import annotations

import argparse
import os
import sys
from argparse import SUPPRESS
from dataclasses import fields
from pathlib import Path

import torch
from tabulate import tabulate

from makemore_wavenet.shared.checkpoint import CheckpointError
from makemore_wavenet.shared.config import ENGINES, Runtime, TrainConfig
from makemore_wavenet.shared.data import SPLITS
from makemore_wavenet.shared.device import model_device
from makemore_wavenet.shared.errors import UserError
from makemore_wavenet.shared.sampling import sample
from makemore_wavenet.shared.trainer import evaluate

from . import (RUNS_DIR, all_stages, checkpoint_path, count_parameters, get_stage, load_model, plan, splits_for,
               train_stage)

DEFAULTS, RUNTIME = TrainConfig(), Runtime()


def cmd_list(args) -> None:
    rows = []
    for n, stage in all_stages().items():
        try:
            c = stage.config
            params = count_parameters(stage.build_model(c, device="meta"))
            rows.append([n, stage.title, c.block_size, c.n_embd, c.n_hidden, f"{params:,}", stage.lecture.val])
        except NotImplementedError as err:  # the student edition, before its exercises are done
            rows.append([n, stage.title, "", "", "", "", f"not done: {err}"])
    print(tabulate(rows, ["stage", "what", "block", "n_embd", "n_hidden", "params", "lecture val"]))


def cmd_lesson(args) -> None:
    print(get_stage(args.stage).lesson)


def cmd_train(args) -> None:
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    the_plan = plan(args.stage, options=given)  # the stage's recipe, with what the command line says
    result = train_stage(the_plan, runtime(args), names=args.names, runs_dir=args.runs)
    print(tabulate([[split, f"{loss:.4f}"] for split, loss in result.metrics.items()], ["split", "loss"]))
    steps = the_plan.recipe.steps
    steady = (result.seconds - result.first_step) / max(steps - 1, 1)
    print(f"trained {steps:,} steps in {result.seconds:.1f} s ({1e3 * steady:.3f} ms/step after a "
          f"first step of {result.first_step:.1f} s); checkpoint and loss plot in {result.checkpoint.parent}/")
    print("samples:", " ".join(sample(result.model, the_plan.model, n=10)))


def cmd_evaluate(args) -> None:
    model, ckpt = _load(args)
    splits = splits_for(ckpt["model_config"], names=args.names, device=model_device(model))
    rows = [[split, f"{evaluate(model, *splits[split]):.4f}"] for split in args.split]
    print(tabulate(rows, ["split", "loss"]))


def cmd_sample(args) -> None:
    model, ckpt = _load(args)
    print("\n".join(sample(model, ckpt["model_config"], n=args.n, seed=args.seed)))


def cmd_reproduce(args) -> None:
    from .reproduce import reproduce, results_markdown, results_table, write_results

    jobs = args.jobs or os.cpu_count() or 1
    options = {"steps": args.steps} if hasattr(args, "steps") else {}
    rows, wall = reproduce(args.stages, options, Runtime(device=args.device, engine=args.engine), jobs=jobs,
                           names=args.names, runs_dir=args.runs)
    print(results_table(rows, tablefmt="simple"))
    print(f"wall time: {wall:.1f} s for {len(rows)} stages on {jobs} processes")
    if args.out:
        print(f"table written to {write_results(args.out, results_markdown(rows, wall, jobs))}")


def cmd_challenge(args) -> None:
    from .reproduce import write_results
    from .stage8_challenge.challenge import challenge_table, run_entries, summarize
    from .stage8_challenge.entry import entry_path

    paths = [entry_path(name) for name in args.entries]
    rows, wall = run_entries(paths, args.seeds, jobs=args.jobs, names=args.names, runs_dir=args.runs)
    summary = summarize(rows)
    print(challenge_table(summary, tablefmt="simple"))
    print(f"wall time: {wall:.1f} s for {len(rows)} runs on {args.jobs} processes")
    if args.out:
        text = "\n".join(["# Stage 8: challenge entries", "", f"torch {torch.__version__}; `minutes` is one "
                          f"run's training time; {len(rows)} runs took {wall / 60:.0f} minutes of wall time on "
                          f"{args.jobs} processes.", "", challenge_table(summary), ""])
        print(f"table written to {write_results(args.out, text)}")


def runtime(args) -> Runtime:
    names = ("seed", "device", "engine", "threads")
    return Runtime(**{name: getattr(args, name) for name in names if hasattr(args, name)})


def _load(args):
    """The model of the checkpoint the command names, checked to be of the stage it names."""
    path = Path(args.checkpoint or checkpoint_path(args.stage, args.runs))
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}. Train it first: makemore train {args.stage}")
    model, ckpt = load_model(path, args.device)
    if ckpt["stage"] != args.stage:
        raise CheckpointError(f"that checkpoint is of stage {ckpt['stage']}, not stage {args.stage}")
    return model, ckpt


def common_options() -> dict[str, argparse.ArgumentParser]:
    """The options several commands share, declared once: --names, --runs, --device."""
    names, runs, device = (argparse.ArgumentParser(add_help=False) for _ in range(3))
    names.add_argument("--names", help="names file (default: $MAKEMORE_NAMES, else names.txt fetched on first use)")
    runs.add_argument("--runs", default=str(RUNS_DIR), help="where checkpoints go (RUNS/stageN/)")
    device.add_argument("--device", default=RUNTIME.device, help="auto (CUDA when there is one), cpu, cuda, ...")
    return {"names": names, "runs": runs, "device": device}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="makemore", description="Train, evaluate and sample the stages "
                                     "of makemore part 5, from the baseline MLP to the WaveNet, and beyond.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="examples:\n  makemore list\n  makemore train 4 --steps 20000\n"
                                     "  makemore evaluate 6\n  makemore sample 6 -n 20")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = common_options()
    stage_numbers = list(all_stages())

    def add(name: str, func, help: str, *shared: str, stage: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common[s] for s in shared],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        if stage:
            p.add_argument("stage", type=int, choices=stage_numbers, help="stage number")
        p.set_defaults(func=func)
        return p

    add("list", cmd_list, "list the stages with their sizes", stage=False)
    add("lesson", cmd_lesson, "print a stage's lesson text")

    p = add("train", cmd_train, "train a stage with its recipe (the lecture's for stages 1-6); each recipe "
            "option given replaces one part of it (in brackets: the lecture's)", "names", "runs", "device")
    recipe_part = dict(default=SUPPRESS)  # absent unless given: the stage's recipe decides
    p.add_argument("--steps", type=int, help=f"training steps [{DEFAULTS.steps}]", **recipe_part)
    p.add_argument("--batch-size", type=int, help="examples (names, from stage 7 on) per step "
                   f"[{DEFAULTS.batch_size}]", **recipe_part)
    p.add_argument("--lr", type=float, help=f"learning rate before the decay [{DEFAULTS.lr}]", **recipe_part)
    p.add_argument("--lr-final", type=float, help=f"learning rate after the decay [{DEFAULTS.lr_final}]",
                   **recipe_part)
    p.add_argument("--decay-at", type=float, help="fraction of the steps after which the learning rate drops to "
                   f"--lr-final [{DEFAULTS.decay_at}]", **recipe_part)
    p.add_argument("--seed", type=int, default=RUNTIME.seed, help="seed for the model's init and the batches")
    add_engine(p, RUNTIME.engine)
    p.add_argument("--threads", type=int, default=RUNTIME.threads, help="CPU threads (0: torch's default)")

    p = add("reproduce", cmd_reproduce, "train several stages in parallel and tabulate them beside the "
            "lecture's numbers", "names", "runs", "device", stage=False)
    p.add_argument("--stages", type=int, nargs="+", choices=stage_numbers, default=stage_numbers, help="which stages")
    p.add_argument("--steps", type=int, default=SUPPRESS, help="training steps per stage (default: the stage's)")
    p.add_argument("--jobs", type=int, default=None, help="parallel processes (default: one per core)")
    add_engine(p, RUNTIME.engine, " (a stage the fast engine cannot train runs on the plain one)")
    p.add_argument("--out", help="write the table as Markdown to this file")

    p = add("challenge", cmd_challenge, "train challenge entries (stage 8) under several seeds and tabulate "
            "them: mean val loss and its spread", "names", stage=False)
    p.add_argument("entries", nargs="+", metavar="ENTRY", help="an entry file (.toml), or the name of one of the "
                   "course's: entry (the stage's own), or one in stages/stage8_challenge/entries/")
    p.add_argument("--seeds", type=int, nargs="+", default=[42], help="seeds to train each entry with")
    p.add_argument("--jobs", type=int, default=1, help="parallel processes, sharing the cores as threads; 1: one "
                   "run at a time on every core, as the challenge's rules time a run")
    p.add_argument("--runs", default=str(RUNS_DIR), help="where checkpoints go (RUNS/challenge/ENTRY/seedS/)")
    p.add_argument("--out", help="write the table as Markdown to this file")

    p = add("evaluate", cmd_evaluate, "loss of a trained stage on the splits", "names", "runs", "device")
    p.add_argument("--checkpoint", help="checkpoint file (default: RUNS/stageN/checkpoint.pt)")
    p.add_argument("--split", nargs="+", choices=SPLITS, default=list(SPLITS), help="splits to evaluate")
    p = add("sample", cmd_sample, "generate names from a trained stage", "runs", "device")
    p.add_argument("--checkpoint", help="checkpoint file (default: RUNS/stageN/checkpoint.pt)")
    p.add_argument("-n", type=int, default=20, help="how many names")
    p.add_argument("--seed", type=int, default=42, help="sampling seed")
    return parser


def add_engine(p: argparse.ArgumentParser, default: str, note: str = "") -> None:
    p.add_argument("--engine", choices=ENGINES, default=default, help="how a step is computed, all the same math: "
                   f"plain (autograd), fast (a hand-written backward) or compiled (fast under torch.compile){note}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as err:  # bad data, a bad setting, a checkpoint that does not fit; a bug shows its traceback
        print(f"makemore: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
