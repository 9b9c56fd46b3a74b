"""The challenge's runs: train entries under several seeds, in parallel processes, and tabulate them.

    makemore challenge entry stage7 ablations/no_gates --seeds 1 2 3 --out challenge.md
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from tabulate import tabulate

from makemore_wavenet.shared.config import Runtime
from makemore_wavenet.shared.trainer import run

from .. import count_parameters, plan, splits_for
from ..parallel import in_processes
from . import STAGE
from .entry import load_entry


def run_entry(path: str | Path, seed: int, names=None, runs_dir: str | Path | None = "runs") -> dict:
    """Train one entry with one seed; its metrics, time and settings. The checkpoint goes to
    RUNS/challenge/<entry>/seed<seed>/."""
    path = Path(path)
    the_plan = plan(STAGE, "challenge", entry=path)
    out = None if runs_dir is None else Path(runs_dir) / "challenge" / path.stem / f"seed{seed}"
    result = run(STAGE.build_model, the_plan.model, the_plan.recipe, splits_for(the_plan.model, names),
                 Runtime(seed=seed), out_dir=out, name=f"{path.stem} seed {seed}", progress=False,
                 stage=STAGE.number, entry=path.read_text(encoding="utf-8"))
    return {"entry": path.stem, "seed": seed, "config": the_plan.model, "recipe": the_plan.recipe,
            "seconds": result.seconds, "params": count_parameters(result.model), **result.metrics}


def run_entries(paths: list[Path], seeds: list[int], jobs: int = 1, names=None,
                runs_dir: str | Path | None = "runs") -> tuple[list[dict], float]:
    """Every entry under every seed, `jobs` processes at once (sharing the cores as threads: one
    process takes them all); returns one row per run and the wall time."""
    for path in paths:
        load_entry(path)  # a broken entry fails here, before any training
    start = time.perf_counter()
    rows = in_processes(run_entry, [(p, s, names, runs_dir) for p in paths for s in seeds],
                        jobs, f"{len(paths)} entries x {len(seeds)} seeds", "run",
                        done=lambda row: f"{row['entry']} seed {row['seed']} val {row['val']:.4f}")
    order = {p.stem: i for i, p in enumerate(paths)}
    return sorted(rows, key=lambda r: (order[r["entry"]], r["seed"])), time.perf_counter() - start


def summarize(rows: list[dict]) -> list[dict]:
    """One row per entry: the mean (and spread) of its seeds."""
    entries: dict[str, list[dict]] = {}
    for row in rows:
        entries.setdefault(row["entry"], []).append(row)
    summary = []
    for name, runs in entries.items():
        val = [r["val"] for r in runs]
        summary.append({"entry": name, "config": runs[0]["config"], "recipe": runs[0]["recipe"],
                        "params": runs[0]["params"], "seeds": len(runs),
                        "train": statistics.mean(r["train"] for r in runs), "val": statistics.mean(val),
                        "val_std": statistics.stdev(val) if len(val) > 1 else 0.0,
                        "test": statistics.mean(r["test"] for r in runs),
                        "minutes": statistics.mean(r["seconds"] for r in runs) / 60})
    return summary


def challenge_table(summary: list[dict], tablefmt: str = "github") -> str:
    yes = {True: "yes", False: "-"}
    rows = [[s["entry"], yes[s["config"].gated], yes[s["config"].residual], yes[s["config"].skip],
             s["config"].n_hidden, s["config"].block_size, s["config"].dropout or "-", s["recipe"].describe(),
             f"{s['params']:,}", f"{s['train']:.4f}", f"{s['val']:.4f} ± {s['val_std']:.4f}", s["seeds"],
             f"{s['test']:.4f}", f"{s['minutes']:.1f}"] for s in summary]
    headers = ["entry", "gates", "residual", "skip", "width", "context", "dropout", "recipe", "params",
               "train", "val (mean ± std)", "seeds", "test", "minutes"]
    return tabulate(rows, headers, tablefmt=tablefmt, disable_numparse=True)
