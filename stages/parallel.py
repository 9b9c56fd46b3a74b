"""Train many runs at once: each in a process of its own, with one progress bar over them all."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Callable

from tqdm.auto import tqdm


def in_processes(func: Callable[..., dict], jobs: list[tuple], processes: int, desc: str, unit: str,
                 done: Callable[[dict], str]) -> list[dict]:
    """func(*args) for every args in `jobs`, `processes` at a time (spawned: no state shared with
    this one); the rows they return, in the order they finished. `done(row)` labels the bar."""
    rows = []
    with ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(func, *args) for args in jobs]
        with tqdm(total=len(futures), desc=desc, unit=unit) as bar:
            for future in as_completed(futures):
                rows.append(future.result())
                bar.set_postfix(done=done(rows[-1]))
                bar.update()
    return rows
