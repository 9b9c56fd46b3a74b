"""A loss check's training eager against compiled, in one run on one commit.

The grader trains a submission's own model (its layers, its forward) with the instructor's loop; on
the full schedule it compiles that model's forward and backward (shared/loop.py, `compiled_step`)
where on quick it trains eagerly. Both ways are measured here, side by side, each from an empty cache
(MAKEMORE_CACHE, a fresh folder: the grader's own training of the model runs too, and every compile
starts from nothing), in the sandbox `auto` picks (run as root for bubblewrap):

    check   the loss check of one stage for the master's submission (public tier, --retrain): the
            wall time of the check itself (the child's training beside the grader's own, one thread
            each), its val loss, and the compile time the row reports. Eager's time over compiled's
            is the speed-up, compile included.
    class   a class of N copies of the master, graded as `grade-all` does (one worker per core, hidden
            tier): the wall time of the whole class, eager against compiled.
    quick   the loss check of each stage on the quick schedule, eager against compiled: where a compile
            (from an empty cache, as every sandbox's is) costs more than it saves.

    python benchmarks/compiled_grading.py                       # check and class, stage 6, full schedule
    python benchmarks/compiled_grading.py --parts quick --stages 1 2 3 4 5 6 7 8
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

from grading_throughput import build_class  # a script beside this one

from makemore_wavenet.grader import grade as grading
from makemore_wavenet.grader.batch import find_submissions, grade_many
from makemore_wavenet.grader.gradebook import Gradebook
from makemore_wavenet.grader.sandbox import Limits
from makemore_wavenet.shared.data import CACHE_ENV, names_path

ROOT = Path(__file__).resolve().parents[1]
WAYS = ("eager", "compiled")


def fresh_cache(parent: Path) -> None:
    """An empty cache for what follows: no replay kept, no compiled code (the workers inherit it)."""
    os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="cache-", dir=parent)


def options(way: str, schedule: str, stages: tuple[int, ...], tier: str) -> grading.Options:
    return grading.Options(tier=tier, schedule=schedule, stages=stages, retrain=True, training=way,
                           names=str(names_path()), limits=Limits(isolation="auto"))


def timed_check(stage: int, way: str, schedule: str, tmp: Path) -> dict:
    """Grade the master's stage with its loss check timed: the wall time of grade._train_both, the
    child's training and the grader's own beside it (or after it, on quick)."""
    seconds = []
    train_both = grading._train_both

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return train_both(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    fresh_cache(tmp)
    grading._train_both = timed
    try:
        report = grading.grade(ROOT, options(way, schedule, (stage,), "public"))
    finally:
        grading._train_both = train_both
    row = next(r for r in report.results if r.check.startswith("val loss"))
    compiled = re.search(r"compiled \((\d+) s of compiling\)", row.message)
    return {"seconds": sum(seconds), "val": row.value, "status": row.status, "message": row.message,
            "compile": float(compiled[1]) if compiled else None, "isolation": report.isolation}


def check(stages: list[int], schedule: str, tmp: Path) -> None:
    print(f"\nthe loss check of the master's submission, {schedule} schedule, eager against compiled "
          f"(each from an empty cache; one thread for its training, one for the grader's own)")
    print(f"{'stage':>5} {'eager s':>8} {'compiled s':>10} {'of it compiling':>15} {'speed-up':>8} "
          f"{'val eager':>9} {'val compiled':>12} {'apart':>7}  path")
    for stage in stages:
        runs = {way: timed_check(stage, way, schedule, tmp) for way in WAYS}
        eager, compiled = runs["eager"], runs["compiled"]
        path = "compiled" if compiled["compile"] is not None else "EAGER: " + compiled["message"][-160:]
        apart = abs(eager["val"] - compiled["val"]) if None not in (eager["val"], compiled["val"]) else float("nan")
        speedup = eager["seconds"] / compiled["seconds"]
        print(f"{stage:>5} {eager['seconds']:>8.1f} {compiled['seconds']:>10.1f} {compiled['compile'] or 0:>15.0f} "
              f"{speedup:>7.2f}x {eager['val'] or 0:>9.4f} {compiled['val'] or 0:>12.4f} {apart:>7.4f}  {path} "
              f"({compiled['isolation']})", flush=True)


def grade_class(stage: int, students: int, tmp: Path) -> None:
    folder = build_class(tmp / "class", students)
    print(f"\na class of {students} copies of the master, stage {stage}, full schedule, hidden tier, --retrain; "
          f"grade-all's pool of {min(students, os.cpu_count() or 1)} workers on {os.cpu_count()} cores")
    walls = {}
    for way in WAYS:
        fresh_cache(tmp)
        with Gradebook(tmp / f"{way}.db") as book:
            start = time.perf_counter()
            stored = grade_many(find_submissions(folder), book, options(way, "full", (stage,), "hidden"),
                                progress=False)
            walls[way] = time.perf_counter() - start
            reports = [book.report(rid) for _, rid in stored]
        passed = sum(r.passed == len(r.results) for r in reports)
        print(f"  {way:<9} {walls[way]:>7.1f} s, {passed}/{len(reports)} passed every check", flush=True)
    print(f"  speed-up of the class: {walls['eager'] / walls['compiled']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["check", "class"], choices=["check", "class", "quick"])
    parser.add_argument("--stages", type=int, nargs="+", default=[6], help="the stages of `check` and `quick` "
                        "(`class`: the first)")
    parser.add_argument("--students", type=int, default=4, help="the class's submissions (copies of the master)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="compiled-grading-") as tmp:
        tmp = Path(tmp)
        if "check" in args.parts:
            check(args.stages, "full", tmp)
        if "class" in args.parts:
            grade_class(args.stages[0], args.students, tmp)
        if "quick" in args.parts:
            check(args.stages, "quick", tmp)


if __name__ == "__main__":
    main()
