"""A class's grading throughput from source, with and without isolation, in one run.

Builds a class of N copies of the master's sources (shared/ and stages/: no runs/, so no
checkpoints), and grades it as `grade-all` does (batch.grade_many: one worker process per core,
every report into a gradebook) on the hidden tier with the quick schedule and --retrain: every
stage graded is trained from source, and by the grader's own training of it once per stage (each
grading starts with an empty cache). The class is graded once under each isolation: `none` first,
the explicit baseline (`--isolation none --allow-unisolated`), then bubblewrap and the fallback where
they run here. Printed: the wall time, the submissions per minute, the ratio of each isolation's
wall time to none's, and how many submissions passed every check (all of them: they are the master).

The default stages are 1 and 4: the first model (the MLP) and the lecture's hierarchical network,
whose checks cover every exercise up to 4.2; each submission is then two runs of calls (exercise
checks, then the two trainings) in about 20 s of work, so that the class of 4 takes about a minute
per isolation on 2 cores. Isolation costs a fixed time per run of calls (see isolation_cost.py), so
its share shrinks as the stages graded grow: `--stages 1 2 3 4 5 6 7 8` gives the full picture (about
half an hour per isolation).

    python benchmarks/grading_throughput.py --students 4 --stages 1 4
    python benchmarks/grading_throughput.py --isolation none bwrap --rounds 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from makemore_wavenet.grader import isolation
from makemore_wavenet.grader.batch import find_submissions, grade_many
from makemore_wavenet.grader.grade import Options
from makemore_wavenet.grader.gradebook import Gradebook
from makemore_wavenet.grader.sandbox import Limits
from makemore_wavenet.shared.data import CACHE_ENV, names_path

ROOT = Path(__file__).resolve().parents[1]


def build_class(folder: Path, n: int) -> Path:
    """N copies of the master's sources, one folder per student; no checkpoints."""
    for i in range(n):
        root = folder / f"student-{i:03d}"
        for name in ("shared", "stages"):
            shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "runs"))
    return folder


def grade_class(folder: Path, book: Path, mode: str, stages: tuple[int, ...], tier: str) -> tuple[float, int, int]:
    """(wall seconds, submissions graded, submissions that passed every check). The grader's cache
    starts empty (MAKEMORE_CACHE, a fresh folder): each grading trains its own model of each stage
    once (grader/replay.py keeps it there for the class's other submissions)."""
    limits = Limits(isolation=mode, allow_unisolated=mode == "none")
    options = Options(tier=tier, schedule="quick", stages=stages, retrain=True, limits=limits,
                      names=str(names_path()))
    os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="cache-", dir=book.parent)  # the workers inherit it
    with Gradebook(book) as gradebook:
        start = time.perf_counter()
        stored = grade_many(find_submissions(folder), gradebook, options, progress=False)
        wall = time.perf_counter() - start
        reports = [gradebook.report(rid) for _, rid in stored]
    isolations = {r.isolation for r in reports}
    assert isolations <= {mode}, f"asked for {mode}, graded under {isolations}"
    return wall, len(stored), sum(r.passed == len(r.results) for r in reports)


def runnable(modes: list[str]) -> list[str]:
    found = []
    for mode in modes:
        problem = {"none": lambda: "", "bwrap": isolation.bwrap_problem, "fallback": isolation.fallback_problem}[mode]()
        if problem:
            print(f"{mode}: cannot run here ({problem})")
        else:
            found.append(mode)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--students", type=int, default=4, help="submissions in the class (copies of the master)")
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 4], help="the stages graded")
    parser.add_argument("--isolation", nargs="+", default=["none", "bwrap", "fallback"],
                        choices=["none", "bwrap", "fallback"],
                        help="isolations to compare (none, the baseline, is always run)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="grade the class this many times under each isolation, alternating; the median is kept")
    parser.add_argument("--tier", default="hidden", choices=["public", "hidden"])
    args = parser.parse_args()
    modes = runnable(["none"] + [m for m in args.isolation if m != "none"])
    stages = tuple(args.stages)
    walls: dict[str, list[float]] = {m: [] for m in modes}
    passed: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        tmp = Path(tmp)
        class_dir = build_class(tmp / "class", args.students)
        print(f"a class of {args.students} copies of the master, {args.tier} tier, quick schedule, --retrain, "
              f"stages {' '.join(map(str, stages))}; grade-all's pool of worker processes, isolations {modes}")
        for r in range(args.rounds):
            for mode in (modes if r % 2 == 0 else modes[::-1]):
                wall, graded, ok = grade_class(class_dir, tmp / f"{mode}-{r}.db", mode, stages, args.tier)
                walls[mode].append(wall)
                passed[mode] = min(passed.get(mode, graded), ok)
                print(f"  round {r + 1}, {mode}: {wall:.1f} s, {ok}/{graded} passed every check", flush=True)
    base = statistics.median(walls["none"])
    print(f"\n{'isolation':<10} {'wall s':>8} {'subs/min':>9} {'vs none':>8}  passed every check")
    for mode in modes:
        wall = statistics.median(walls[mode])
        print(f"{mode:<10} {wall:>8.1f} {60 * args.students / wall:>9.2f} {wall / base:>7.3f}x  "
              f"{passed[mode]}/{args.students}")


if __name__ == "__main__":
    main()
