"""The cost of isolation per call: the same trivial probe run in N children under each isolation.

Each child starts, loads a copy of the answer key, runs one exercise check (Flatten on a small
tensor) and returns its result: what every run of calls pays before any real work. Printed: the
mean seconds per call under each isolation that runs here, each one's ratio to `none` (the
grader's own user, no sandbox) and the seconds it adds, all measured in the same run, alternating
so that a drift in the machine's load is shared. A submission's grading starts two such children
(its exercise checks, then its loss checks), more when one dies or hangs.

    python benchmarks/isolation_cost.py --calls 10
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from makemore_wavenet.grader import isolation, probes
from makemore_wavenet.grader.sandbox import Call, Limits, run_calls

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--calls", type=int, default=10, help="children per isolation")
    args = parser.parse_args()
    modes = ["none"] + [m for m, problem in (("bwrap", isolation.bwrap_problem()),
                                             ("fallback", isolation.fallback_problem())) if not problem or
                        print(f"{m}: cannot run here ({problem})")]
    times: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "submission"
        for name in ("shared", "stages"):
            shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        call = Call(probes.flatten, {"x": torch.ones(2, 3, 4)})
        for mode in modes:  # warm: the bundle, the checks of what runs here, the page cache
            run_calls(root, [call], Limits(isolation=mode))
        for _ in range(args.calls):
            for mode in modes:
                start = time.perf_counter()
                [outcome], _ = run_calls(root, [call], Limits(isolation=mode))
                times[mode].append(time.perf_counter() - start)
                assert outcome.status == "ok", (mode, outcome)
    base = statistics.fmean(times["none"])
    print(f"{'isolation':<10} {'s per call':>10} {'stdev':>7} {'vs none':>8} {'+s':>7}")
    for mode in modes:
        mean = statistics.fmean(times[mode])
        print(f"{mode:<10} {mean:>10.3f} {statistics.stdev(times[mode]):>7.3f} {mean / base:>7.2f}x "
              f"{mean - base:>+7.3f}")


if __name__ == "__main__":
    main()
