"""Train many runs at once: each in a process of its own, with one progress bar over them all."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Callable

import torch
from tqdm.auto import tqdm


def threads_per_process(processes: int) -> int:
    """The cores shared out among `processes` runs: N processes on N cores take one thread each
    (these models are too small to gain from more), one process takes every core."""
    cores = os.cpu_count() or 1
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    return max(1, cores // processes)


def in_processes(func: Callable[..., dict], jobs: list[tuple], processes: int, desc: str, unit: str,
                 done: Callable[[dict], str], progress: bool = True) -> list[dict]:
    """func(*args) for every args in `jobs`, `processes` at a time (spawned: no state shared with
    this one; each with threads_per_process(processes) threads); the rows they return, in the order
    they finished. `done(row)` labels the bar. One process is this one: the jobs run here, in turn."""
    rows = []
    if processes == 1:
        before = torch.get_num_threads()
        torch.set_num_threads(threads_per_process(1))
        try:
            for args in tqdm(jobs, desc=desc, unit=unit, disable=not progress):
                rows.append(func(*args))
        finally:
            torch.set_num_threads(before)
        return rows
    with ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(threads_per_process(processes),)) as pool:
        futures = [pool.submit(func, *args) for args in jobs]
        with tqdm(total=len(futures), desc=desc, unit=unit, disable=not progress) as bar:
            for future in as_completed(futures):
                rows.append(future.result())
                bar.set_postfix(done=done(rows[-1]))
                bar.update()
    return rows
