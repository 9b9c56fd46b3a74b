"""Run probes against untrusted code in a child process, with a time and a memory limit.

One child runs the calls in order and writes each result as it goes. A call that hangs past the
time limit is killed and reported as a timeout; a child that dies (a crash, `os._exit`, the memory
limit) loses only the call it was in; in both cases a fresh child takes the remaining calls.
Results are read with `torch.load(weights_only=True)`, so a forged result file can carry numbers,
never code; a child may only say ok, error or not done (pass and fail are the parent's); a result
file is opened without following links and refused past `result_mb`. What the child prints is kept
as a log, never read as a result: its tail, read from the end, control characters removed.
Where the child runs (bubblewrap, a uid of its own, or the grader's own user) is `isolation`'s
business; a Session holds it, and the time budget, across a submission's runs of calls.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from . import GraderError
from . import isolation as iso

POLL = 0.02  # seconds between looks at the child
CHILD_STATUSES = ("ok", "not done", "error")  # what a child may report of a call; the parent judges the rest
LOG_TAIL = 2000  # characters of the child's output kept in a report
LOG_CAP = 64 * 1024 * 1024  # bytes of log kept on disk: past this, only its tail is kept
MESSAGE_CAP = 2000  # characters of a child's message kept
# a call runs on one thread: a sandbox that keeps more cores than this busy over CPU_WINDOW seconds is
# stopped, so that a class graded side by side on one machine shares it (no cgroups here to give each
# sandbox its share); so is one whose processes together hold more memory than Limits.memory_mb, which
# also bounds each one's address space
MAX_CORES = 1.5
CPU_WINDOW = 4.0
WATCH_EVERY = 0.1  # seconds between looks at what a sandbox's processes use together
# the budget of a submission's calls, when Limits.total_seconds is None: BASE_BUDGET for everything
# that is not training (an honest submission's exercise checks take well under a minute in all), plus
# twice each training call's own limit (a machine twice as slow as the one the limits were set on still
# finishes an honest submission; a submission that sleeps just under every limit does not)
BASE_BUDGET = 600.0
ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


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
    total_seconds: float | None = None  # every call of one submission; None: BASE_BUDGET + 2 x its training limits
    isolation: str = "auto"  # isolation.MODES: auto, bwrap, fallback, none
    allow_unisolated: bool = False  # the hidden tier without a sandbox (it refuses otherwise)
    processes: int = 256  # processes and threads of a sandbox (a fork bomb stops here)
    disk_mb: int = 512  # a sandbox's writable folders (each), and any one file it writes
    result_mb: int = 256  # a result file larger than this is not read


def clean(text: str) -> str:
    """`text` without terminal escapes and control characters (newlines and tabs kept)."""
    return ESCAPES.sub("", text.replace("\r\n", "\n"))


class Session:
    """One submission's grading, over every run of calls: its isolation (resolved once) and its time
    budget. The hidden tier refuses to run without isolation unless `limits.allow_unisolated`."""

    def __init__(self, limits: Limits = Limits(), tier: str = "public"):
        self.limits = limits
        try:
            self.isolation = iso.resolve(limits.isolation)
        except iso.IsolationError as err:
            raise GraderError(str(err)) from None
        if tier == "hidden" and self.isolation.mode == "none" and not limits.allow_unisolated:
            why = ("--isolation none asks for none:" if limits.isolation == "none" else
                   f"none runs here ({self.isolation.note}): install bubblewrap and run the grader as root, or")
            raise GraderError(f"the hidden tier runs students' code only in a sandbox, and {why} pass "
                              "--allow-unisolated to grade without one (the report records it)")
        self.budget = limits.total_seconds if limits.total_seconds is not None else BASE_BUDGET
        self.spent = 0.0

    def add(self, calls: list[Call]) -> None:
        if self.limits.total_seconds is None:
            self.budget += 2 * sum(c.seconds for c in calls if c.seconds)

    def left(self) -> float:
        return self.budget - self.spent

    def report_fields(self) -> dict:
        """What a Report records of the sandbox."""
        note = self.isolation.note
        if self.isolation.mode == "none" and self.limits.allow_unisolated:
            note = "; ".join(filter(None, ["run without isolation: allowed with --allow-unisolated", note]))
        return {"isolation": self.isolation.mode, "network_open": self.isolation.network_open,
                "isolation_note": note}


def run_calls(submission: Path, calls: list[Call], limits: Limits = Limits(),
              files: dict[str, Path] | None = None, session: Session | None = None) -> tuple[list[Outcome], str]:
    """Run `calls` against the submission at `submission`; returns one Outcome per call, and the
    tail of everything the submission printed. `files` are copied into the child's working
    folder first (a notebook in the lecture's style opens names.txt there). `session` carries the
    isolation and the time budget across runs (one per submission); None: a session of its own."""
    session = session or Session(limits)
    session.add(calls)
    outcomes: list[Outcome] = []
    submission = Path(submission).resolve()
    with tempfile.TemporaryDirectory(prefix="grader-") as tmp:
        tmp = Path(tmp)
        box = iso.prepare(session.isolation.mode, submission, tmp, files or {})
        log_file = tmp / "log.txt"
        os.close(os.open(log_file, os.O_CREAT | os.O_WRONLY, 0o600))  # the instructor's: no sandbox uid reads it
        try:
            with open(log_file, "ab") as log:
                for note in box.notes:
                    log.write(f"[grader] {note}\n".encode())
            torch.save({"submission": str(box.submission),
                        "calls": [(c.probe.__name__, _moved(c.kwargs, submission, box.submission)) for c in calls]},
                       box.job)
            box.job_written()
            seconds = [call.seconds or limits.seconds for call in calls]
            while len(outcomes) < len(calls):
                if session.left() <= 0:
                    outcomes += [Outcome("timeout", message=_budget_message(session))
                                 for _ in range(len(calls) - len(outcomes))]
                    break
                outcomes += _run_child(box, log_file, len(outcomes), seconds, limits, session)
        finally:
            box.close()
        log = tail(log_file)
    return outcomes, log


def _budget_message(session: Session) -> str:
    return (f"not run: the submission's time budget ({session.budget:g} s for all its checks, --budget SECONDS) "
            "ran out before this check")


def _moved(kwargs: dict, old: Path, new: Path) -> dict:
    """kwargs with every path into the submission made a path into its copy, as the child sees it."""
    if old == new:
        return kwargs
    old_root, new_root = (old.parent, new.parent) if old.is_file() else (old, new)

    def move(value):
        if isinstance(value, str) and value and Path(value).is_relative_to(old_root):
            return str(new_root / Path(value).relative_to(old_root))
        return value
    return {k: move(v) for k, v in kwargs.items()}


def tail(path: Path, chars: int = LOG_TAIL) -> str:
    """The last `chars` characters of a text file, read from its end (never the whole), cleaned."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4 * chars))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return clean(text)[-chars:]


def _run_child(box: iso.Box, log_file: Path, start: int, seconds: list[float], limits: Limits,
               session: Session) -> list[Outcome]:
    """Start a child at call `start`; collect results until it finishes, dies, or hangs (call i
    may take seconds[i], and no call more than the session's budget has left)."""
    results, total = [], len(seconds)
    argv, env, cwd, preexec, fds = iso.command(box, start, limits)
    began = time.monotonic()
    budget_end = began + session.left()
    watch = _Watch(box, limits)
    with open(log_file, "ab") as log:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                 env=env, start_new_session=True, preexec_fn=preexec, pass_fds=fds)
        try:
            i, since = start, time.monotonic()
            while i < total:
                result = box.out / f"{i}.pt"
                if os.path.lexists(result):
                    if problem := _over(box, log_file, limits):  # a call that wrote past the limit, however fast
                        results.append(Outcome("error", message=problem))
                        break
                    results.append(_load(result, limits))
                    i, since = i + 1, time.monotonic()
                elif child.poll() is not None:
                    if not os.path.lexists(box.out / f"{i}.pt"):  # it died in call i
                        results.append(Outcome("error", message=_death(_code(child.returncode, box), limits)))
                        break
                elif time.monotonic() - since > seconds[i]:
                    results.append(Outcome("timeout", message=f"no result within {seconds[i]:g} s, the limit "
                                           "per check (an endless loop? far too much work? --timeout SECONDS "
                                           "raises the limit)"))
                    break
                elif time.monotonic() > budget_end:
                    results.append(Outcome("timeout", message=_budget_message(session).replace("not run: ", "")
                                           .replace("before this check", "during this check")))
                    break
                elif (problem := _over(box, log_file, limits)) or (problem := watch.problem()):
                    results.append(Outcome("error", message=problem))
                    break
                else:
                    time.sleep(POLL)
            if results and i == start and not (box.out / f"ready.{start}").exists():
                # it never got past loading the submission: every remaining call would do the same
                first = results[0]
                first.message = f"while loading the submission: {first.message}"
                results += [Outcome(first.status, message=first.message) for _ in range(total - start - 1)]
        finally:
            _kill(child, box)
            session.spent += time.monotonic() - began
    return results


class _Watch:
    """What a sandbox's processes use together: the memory they hold (Limits.memory_mb), the cores they
    keep busy (MAX_CORES) and, in the fallback, what its uid keeps in the host's shared temporary
    folders (Limits.disk_mb). A run without a sandbox is not watched."""

    def __init__(self, box: iso.Box, limits: Limits):
        self.meter = iso.SandboxMeter(box.uid) if box.uid is not None else None
        self.memory_mb, self.disk_mb = limits.memory_mb, limits.disk_mb
        self.shared_tmp = box.uid if box.mode == "fallback" else None  # the host's /tmp: its uid's files there
        self.samples: list[tuple[float, float]] = []  # (time, CPU seconds so far), the last CPU_WINDOW's

    def problem(self) -> str:
        """What the sandbox did, if its processes hold more memory than the limit, or kept more than
        MAX_CORES busy over the last CPU_WINDOW seconds; else ''."""
        now = time.monotonic()
        if self.meter is None or (self.samples and now - self.samples[-1][0] < WATCH_EVERY):
            return ""
        cpu, memory = self.meter.sample()
        if memory > self.memory_mb:
            return (f"out of memory: the sandbox's processes held {memory:,.0f} MB together, more than the "
                    f"{self.memory_mb:,} MB a submission gets (--memory)")
        if self.shared_tmp is not None and _shared_tmp_bytes(self.shared_tmp) > self.disk_mb * 1024 * 1024:
            return (f"the code wrote more than {self.disk_mb} MB into the shared temporary folders "
                    f"({', '.join(iso.SHARED_TMP)}), which the machine's other users need too")
        self.samples.append((now, cpu))
        while len(self.samples) > 1 and now - self.samples[1][0] >= CPU_WINDOW:
            self.samples.pop(0)  # the oldest kept is the last one at least CPU_WINDOW ago
        then, before = self.samples[0]
        elapsed, used = now - then, cpu - before
        if elapsed < CPU_WINDOW or used <= MAX_CORES * elapsed:
            return ""
        return (f"the code kept {used / elapsed:.1f} cores busy ({used:.0f} CPU seconds in {elapsed:.0f} s); a check "
                f"may keep at most {MAX_CORES:g} busy, so that it does not slow the submissions graded beside it: "
                f"train on one thread (torch.set_num_threads(1)) and leave no process or thread spinning")


def _over(box: iso.Box, log_file: Path, limits: Limits) -> str:
    """What the child has written beyond its limits ('' nothing): its folders past disk_mb are an
    error; a log past LOG_CAP keeps its tail only."""
    for folder in box.watch:
        used = _usage(folder)
        if used > limits.disk_mb * 1024 * 1024:
            return f"the code wrote more than {limits.disk_mb} MB into its folder"
    try:
        st = log_file.stat()
        if st.st_blocks * 512 > LOG_CAP:
            _free_all_but_the_tail(log_file, st.st_size - 8 * LOG_TAIL)
    except OSError:
        pass
    return ""


def _free_all_but_the_tail(log_file: Path, cut: int) -> None:
    """Free the log's first `cut` bytes in place, a hole punched where they were: the child, which
    appends, goes on writing at the end, and nothing it writes meanwhile is lost (a truncation
    would race with it). The tail, read from the end, is what is kept."""
    import ctypes

    punch_hole_keep_size = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    with open(log_file, "r+b") as f:
        if libc.fallocate(f.fileno(), punch_hole_keep_size, 0, cut) != 0:
            raise OSError(ctypes.get_errno(), "fallocate")


def _shared_tmp_bytes(uid: int) -> int:
    """Bytes that `uid` keeps in the shared temporary folders (iso.SHARED_TMP), where the fallback's
    sandbox can write beside everyone else."""
    total = 0
    for entry in iso.shared_tmp_entries(uid):
        try:
            directory = entry.is_dir(follow_symlinks=False)
            total += _usage(Path(entry.path)) if directory else entry.stat(follow_symlinks=False).st_size
        except OSError:
            pass
    return total


def _usage(folder: Path, most: int = 10_000) -> int:
    """Bytes in `folder` (its first `most` entries; a folder with more counts as full)."""
    total, stack, seen = 0, [str(folder)], 0
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    seen += 1
                    if seen > most:
                        return 1 << 62
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return total


def _load(path: Path, limits: Limits) -> Outcome:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not _is_regular(st.st_mode):
                raise ValueError("not a regular file")
            if st.st_size > limits.result_mb * 1024 * 1024:
                raise ValueError(f"{st.st_size >> 20} MB, more than the {limits.result_mb} MB a result may be")
            raw = torch.load(f, weights_only=True)
        if not isinstance(raw, dict) or raw.get("status") not in CHILD_STATUSES:
            status = raw.get("status") if isinstance(raw, dict) else raw
            raise ValueError(f"status {clean(str(status))[:40]!r} is none of {CHILD_STATUSES}")
        if not _plain_value(raw.get("value")):
            raise ValueError("a tensor in it is not a dense CPU tensor of its own numbers (meta, sparse, expanded?)")
        return Outcome(raw["status"], raw.get("value"), clean(str(raw.get("message", "")))[:MESSAGE_CAP])
    except Exception as err:  # a result file the grader did not write as it should be
        return Outcome("error", message=clean(f"unreadable result ({type(err).__name__}): {err}")[:300])


def plain_tensor(t) -> bool:
    """A dense tensor on the CPU holding its own numbers: not on meta, sparse, quantized or an
    expanded view (a few bytes on disk that the grading process would take for millions of numbers)."""
    return (isinstance(t, torch.Tensor) and t.device.type == "cpu" and t.layout == torch.strided
            and not t.is_quantized and t.untyped_storage().nbytes() >= t.numel() * t.element_size())


def _plain_value(value, depth: int = 0) -> bool:
    """Every tensor in a result (nested in lists, tuples and dicts, at most 32 deep) is plain_tensor."""
    if depth > 32:
        return False
    if isinstance(value, torch.Tensor):
        return plain_tensor(value)
    if isinstance(value, dict):
        value = list(value.values())
    return not isinstance(value, (list, tuple)) or all(_plain_value(v, depth + 1) for v in value)


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)


def _code(code: int, box: iso.Box) -> int:
    """The child's exit code: bubblewrap reports a child killed by signal N as 128 + N."""
    if box.mode == "bwrap" and 128 < code < 128 + 65:
        return -(code - 128)
    return code


def _death(code: int, limits: Limits) -> str:
    if code < 0:
        name = signal.Signals(-code).name
        hint = f" (the memory limit is {limits.memory_mb} MB)" if -code in (signal.SIGKILL, signal.SIGSEGV) else ""
        return f"the process was killed by {name}{hint}"
    return f"the process exited with code {code} before returning a result (os._exit? a crash?)"


def _kill(child: subprocess.Popen, box: iso.Box) -> None:
    """End the child and everything it started: its process group, and in a sandbox every process
    of the sandbox's uid (a daemon that left the group with setsid)."""
    if child.poll() is None:
        try:
            os.killpg(child.pid, signal.SIGKILL)  # the whole group: a student's subprocesses too
        except ProcessLookupError:
            pass
    child.wait()
    if box.uid is not None:
        iso.kill_uid(box.uid)
