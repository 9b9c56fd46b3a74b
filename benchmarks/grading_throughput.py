"""Grading throughput: submissions per minute, graded from checkpoints, every stage, hidden tier.

Builds a class of N copies of the answer key, each with checkpoints for every stage (trained once,
with the quick schedule, on the compiled engine where the stage has it), grades it with
`grade_many` on local processes (one per core), and prints the wall time and the rate.

    python benchmarks/grading_throughput.py --submissions 100
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from makemore_wavenet.grader.batch import find_submissions, grade_many
from makemore_wavenet.grader.grade import Options
from makemore_wavenet.grader.gradebook import Gradebook
from makemore_wavenet.shared.config import Runtime
from makemore_wavenet.shared.trainer import run
from makemore_wavenet.stages import all_stages, on_fast_engine, plan, splits_for

ROOT = Path(__file__).resolve().parents[1]


def build_class(folder: Path, n: int) -> None:
    runs = folder / "_runs"
    for s, stage in all_stages().items():
        quick = plan(stage, "quick")  # the grader's plan: a checkpoint of another recipe is not used
        runtime = Runtime(device="cpu", engine="compiled" if on_fast_engine(stage) else "plain")
        run(stage.build_model, quick.model, quick.recipe, splits_for(quick.model), runtime, out_dir=runs / f"stage{s}",
            progress=False, stage=s)
    for i in range(n):
        root = folder / "class" / f"student-{i:03d}"
        for name in ("shared", "stages"):
            shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(runs, root / "runs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submissions", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        build_class(tmp, args.submissions)
        print(f"built {args.submissions} submissions with checkpoints in {time.perf_counter() - start:.0f} s")
        with Gradebook(tmp / "gradebook.db") as book:
            start = time.perf_counter()
            stored = grade_many(find_submissions(tmp / "class"), book, Options(tier="hidden", schedule="quick"))
            wall = time.perf_counter() - start
            passed = sum(book.report(rid).passed == len(book.report(rid).results) for _, rid in stored)
        print(f"graded {len(stored)} submissions (all stages, hidden tier, from checkpoints) in {wall:.0f} s: "
              f"{60 * len(stored) / wall:.1f} submissions per minute; {passed} passed every check")


if __name__ == "__main__":
    main()
