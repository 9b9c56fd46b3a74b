"""Run probes against untrusted code in a child process, with a time and a memory limit.

One child runs the calls in order and writes each result as it goes. A call that hangs past the
time limit is killed and reported as a timeout; a child that dies (a crash, `os._exit`, the memory
limit) loses only the call it was in; in both cases a fresh child takes the remaining calls.
Results are read with `torch.load(weights_only=True)`, so a forged result file can carry numbers,
never code; what the child prints is kept as a log, never read as a result.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

POLL = 0.02  # seconds between looks at the child
CHILD_STATUSES = ("ok", "not done", "error")  # what a child may report of a call; the parent judges the rest
LOG_TAIL = 2000  # characters of the child's output kept in a report


@dataclass
class Call:
    probe: Callable[..., dict]  # a function registered in grader.probes
    kwargs: dict = field(default_factory=dict)
    seconds: float | None = None  # this call's time limit (a training run's is longer); None: the Limits'


@dataclass
class Outcome:
    status: str  # "ok", "not done", "error", "timeout"
    value: Any = None
    message: str = ""


@dataclass
class Limits:
    seconds: float = 120.0  # per call: stage 8's quick training alone takes most of a minute on one thread
    memory_mb: int = 4096  # address space of the child (torch alone maps about 1.5 GB)


def run_calls(submission: Path, calls: list[Call], limits: Limits = Limits(),
              files: dict[str, Path] | None = None) -> tuple[list[Outcome], str]:
    """Run `calls` against the submission at `submission`; returns one Outcome per call, and the
    tail of everything the submission printed. `files` are copied into the child's working
    folder first (a notebook in the lecture's style opens names.txt there)."""
    outcomes: list[Outcome] = []
    log = ""
    with tempfile.TemporaryDirectory(prefix="grader-") as tmp:
        tmp = Path(tmp)
        for name, src in (files or {}).items():
            shutil.copyfile(src, tmp / name)
        job = tmp / "job.pt"
        torch.save({"submission": str(Path(submission).resolve()),
                    "calls": [(c.probe.__name__, c.kwargs) for c in calls]}, job)
        seconds = [call.seconds or limits.seconds for call in calls]
        while len(outcomes) < len(calls):
            outcomes += _run_child(job, tmp, start=len(outcomes), seconds=seconds, limits=limits)
        log_file = tmp / "log.txt"
        if log_file.exists():
            log = log_file.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL:]
    return outcomes, log


def _run_child(job: Path, tmp: Path, start: int, seconds: list[float], limits: Limits) -> list[Outcome]:
    """Start a child at call `start`; collect results until it finishes, dies, or hangs (call i
    may take seconds[i])."""
    results, total = [], len(seconds)
    with open(tmp / "log.txt", "ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "makemore_wavenet.grader.child", str(job), str(tmp), str(start)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=tmp, env=_child_env(),
            start_new_session=True, preexec_fn=lambda: _limit_memory(limits.memory_mb))
        try:
            i, since = start, time.monotonic()
            while i < total:
                result = tmp / f"{i}.pt"
                if result.exists():
                    results.append(_load(result))
                    i, since = i + 1, time.monotonic()
                elif child.poll() is not None:
                    if not (tmp / f"{i}.pt").exists():  # it died in call i
                        results.append(Outcome("error", message=_death(child.returncode, limits)))
                        break
                elif time.monotonic() - since > seconds[i]:
                    results.append(Outcome("timeout", message=f"no result within {seconds[i]:g} s, the limit "
                                           "per check (an endless loop? far too much work? --timeout SECONDS "
                                           "raises the limit)"))
                    break
                else:
                    time.sleep(POLL)
            if results and i == start and not (tmp / f"ready.{start}").exists():
                # it never got past loading the submission: every remaining call would do the same
                first = results[0]
                first.message = f"while loading the submission: {first.message}"
                results += [Outcome(first.status, message=first.message) for _ in range(total - start - 1)]
        finally:
            _kill(child)
    return results


def _load(path: Path) -> Outcome:
    try:
        raw = torch.load(path, weights_only=True)
        if raw["status"] not in CHILD_STATUSES:
            raise ValueError(f"status {str(raw['status'])[:40]!r} is none of {CHILD_STATUSES}")
        return Outcome(raw["status"], raw.get("value"), str(raw.get("message", "")))
    except Exception as err:  # a result file the grader did not write as it should be
        return Outcome("error", message=f"unreadable result ({type(err).__name__}): {err}"[:300])


def _death(code: int, limits: Limits) -> str:
    if code < 0:
        name = signal.Signals(-code).name
        hint = f" (the memory limit is {limits.memory_mb} MB)" if -code in (signal.SIGKILL, signal.SIGSEGV) else ""
        return f"the process was killed by {name}{hint}"
    return f"the process exited with code {code} before returning a result (os._exit? a crash?)"


def _child_env() -> dict:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    return env  # no MAKEMORE_NAMES: the child gets its data from the parent


def _limit_memory(megabytes: int) -> None:
    limit = megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _kill(child: subprocess.Popen) -> None:
    if child.poll() is None:
        try:
            os.killpg(child.pid, signal.SIGKILL)  # the whole group: a student's subprocesses too
        except ProcessLookupError:
            pass
    child.wait()
