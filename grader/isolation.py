"""Where a submission's code runs: a bubblewrap sandbox, a separate uid (the fallback), or no isolation.

    bwrap     bubblewrap, run by the grading process (root): new mount, PID, network, IPC and UTS
              namespaces, a new session, dying with the grader; inside, `setpriv` drops to a uid and
              gid of their own (one per sandbox, from UIDS, unused on the machine) with no_new_privs,
              and `unshare --user` maps them to 65534 in a user namespace of their own. The
              filesystem is read-only and holds only the Python runtime and its packages (the
              project's own installed package and its editable-install finder masked), the child's
              code (`bundle`), the submission's copy, the job; writable are /tmp and the working
              folder, tmpfs of `disk_mb` each, and the results' folder (SANDBOX_ROOT). When the
              sandbox's first process ends, the kernel kills every other in its PID namespace:
              nothing outlives a call.
    fallback  where bubblewrap cannot run (Docker's default seccomp profile refuses namespaces): the
              child is started as a uid and gid of its own (no supplementary groups, no_new_privs,
              rlimits), on a copy of the submission in a 0700 folder that uid owns, in a folder of the
              grader's (so that it cannot put anything in place of its results' folder or its job);
              after each call every process and System V IPC object of that uid is removed, and what
              it left in the shared temporary folders. It cannot hide files that are readable by
              every user (`exposed` says whether the grader's hidden checks or the master's
              solutions are, and the log whether the submission's own folder is).
    In both, the child's first lines install a seccomp filter (`seccomp_filter`) before any of the
    submission's code runs: no user namespace of its own, where it would be root, and no socket, so
    that the fallback, which shares the host's network, has none either.
    none      the child runs as the grader's own user: the student's self-check on their own machine
              (the student edition's default), or an explicit baseline.

Both sandboxes need the grader to run as root (to start children as another uid); `auto` takes the
first that works, tried by running it once (not by finding a binary), and `none` otherwise.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import grp
import os
import pwd
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MODES = ("auto", "bwrap", "fallback", "none")
UIDS = range(59000, 59512)  # uids (and gids) for sandboxes: one per running sandbox, claimed with a lock
INSIDE_UID = 65534  # what the sandbox's user sees itself as (nobody), in its user namespace
COPIED = ("shared", "stages", "runs")  # what of a submission folder the child reads: its code, its checkpoints
# the grader's modules the child imports (grader/hidden, the gradebook, the calibration stay out)
CHILD_MODULES = ("__init__", "child", "probes", "notebook", "regions", "exercises")
# of the instructor's `shared`: what the child needs before the submission's code is loaded (its
# training loop, edition marker, error types); none of these holds an exercise's solution
REFERENCE_FILES = ("edition.py", "errors.py", "loop.py")
# where things are in the sandbox: out of the way of any folder of the runtime's (mounted at its own path)
SANDBOX_ROOT = {"submission": "/submission", "out": "/.grader/out", "work": "/.grader/work", "job": "/.grader/job.pt",
                "grader": "/.grader/code"}


class IsolationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Isolation:
    mode: str  # "bwrap", "fallback" or "none"
    network_open: bool
    note: str = ""  # what the report says besides

    def describe(self) -> str:
        net = "network open" if self.network_open else "no network"
        return f"{self.mode}, {net}" + (f"; {self.note}" if self.note else "")


def resolve(requested: str) -> Isolation:
    """The isolation a grading gets for `requested` (one of MODES); raises IsolationError when a
    named sandbox cannot run here, saying why."""
    from makemore_wavenet.shared.edition import is_student

    if requested not in MODES:
        raise IsolationError(f"isolation {requested!r} is none of {MODES}")
    if requested == "auto" and is_student():
        return Isolation("none", True, "the self-check runs your own code on your own machine: no sandbox needed")
    unfiltered = "" if seccomp_filter() else (f"no seccomp filter for {os.uname().machine}: user namespaces and "
                                              "sockets not refused")
    if requested in ("auto", "bwrap"):
        problem = bwrap_problem()
        if not problem:
            return Isolation("bwrap", False, unfiltered)
        if requested == "bwrap":
            raise IsolationError(f"bubblewrap cannot run here: {problem}")
    if requested in ("auto", "fallback"):
        problem = fallback_problem()
        if not problem:
            note = f"{exposed()} are readable by every user: a submission can read them" if exposed() else ""
            return Isolation("fallback", not seccomp_filter(), "; ".join(filter(None, [note, unfiltered])))
        if requested == "fallback":
            raise IsolationError(f"the fallback sandbox cannot run here: {problem}")
    return Isolation("none", True, "no sandbox could run here (bubblewrap: " + bwrap_problem()
                     + "; fallback: " + fallback_problem() + ")" if requested == "auto" else "")


# --- what the child reads: the runtime, the bundle of the grader's child code, the submission's copy ---

@functools.cache
def site_dirs() -> list[str]:
    """The folders the child's imports come from, in the grader's order: the interpreter's standard
    library (lib-dynload included) and its site-packages, and any other site-packages a .pth file
    added (nox's session venvs reach the packages of the Python that runs nox that way); never the
    current folder, never a source folder an editable install added, never the project's own."""
    prefixes = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix, sys.base_exec_prefix)}
    project = Path(__file__).resolve().parents[1]  # a checkout (editable install) or the installed package
    sources = [os.path.realpath(project / name) for name in ("shared", "stages", "grader")]

    def runtime(path: str) -> bool:
        real = os.path.realpath(path)
        if real == os.path.realpath(project) or any(real == s or real.startswith(s + "/") for s in sources):
            return False  # a venv inside a checkout (nox's .nox/) is runtime; the project's sources are not
        return (any(real.startswith(pre.rstrip("/") + "/") for pre in prefixes)
                or os.path.basename(real) in ("site-packages", "dist-packages"))

    paths = [p for p in sys.path if p and os.path.isdir(p) and runtime(p)]
    paths += [sysconfig.get_path(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")]
    return [p for p in dict.fromkeys(paths) if p and os.path.isdir(p) and runtime(p)]


def _project_files() -> list[str]:
    """Installed copies of this project that a runtime folder holds: masked in the sandbox."""
    found = []
    for folder in site_dirs():
        for name in os.listdir(folder):
            if name == "makemore_wavenet" or (name.startswith("__editable__") and "makemore_wavenet" in name):
                found.append(os.path.join(folder, name))
    return found


@functools.cache
def bundle(given: frozenset[str] | None) -> Path:
    """A private copy of the child's code: grader/'s child modules and, of the instructor's `shared`,
    REFERENCE_FILES. For a notebook (`given` not None), whose exercises replace the package's own
    objects, the rest of `shared` and `stages` too, as the student edition has them (`child_text`):
    stubs where the master has solutions, but for the exercises the course `given`s it
    (notebook.given_exercises), so that a notebook that imports, subclasses or wraps the package's
    code for its own exercises instead of writing them gets "not done", as in the student's
    self-check. Made once per process and set of givens, readable, not listable."""
    import makemore_wavenet.shared as shared_pkg
    import makemore_wavenet.stages as stages_pkg

    root = Path(tempfile.mkdtemp(prefix="grader-code-"))
    os.chmod(root, 0o711)
    out = root / secrets.token_hex(12)
    grader_dir, shared_dir = Path(__file__).resolve().parent, Path(shared_pkg.__file__).resolve().parent
    (out / "makemore_wavenet" / "grader").mkdir(parents=True)
    for name in CHILD_MODULES:
        shutil.copyfile(grader_dir / f"{name}.py", out / "makemore_wavenet" / "grader" / f"{name}.py")
    (out / "makemore_wavenet" / "shared").mkdir()
    if given is not None:
        for package in (shared_dir, Path(stages_pkg.__file__).resolve().parent):
            for src in sorted(package.rglob("*")):
                rel = src.relative_to(package)
                if src.is_dir() or "__pycache__" in rel.parts or src.suffix in (".pyc", ".ipynb"):
                    continue
                dest = out / "makemore_wavenet" / package.name / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                if src.suffix == ".py":
                    dest.write_text(child_text(src, given), encoding="utf-8")
                else:
                    shutil.copyfile(src, dest)
    else:
        (out / "makemore_wavenet" / "shared" / "__init__.py").write_text('"""The grader\'s reference: its loop."""\n')
    for name in REFERENCE_FILES:  # the instructor's own, whole (they hold no exercise)
        if (shared_dir / name).is_file():
            shutil.copyfile(shared_dir / name, out / "makemore_wavenet" / "shared" / name)
    for path in [out, *out.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    import atexit

    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return out


def child_text(path: Path, given: frozenset[str] = frozenset()) -> str:
    """A source file of `shared` or `stages` as a notebook's sandbox gets it: the student edition's
    text (regions.student_text, as the release writes it), with the `given` exercises solved."""
    from .regions import student_text

    return student_text(path.read_text(encoding="utf-8"), done=given)


COPY_MB, COPY_ENTRIES = 1024, 20_000  # the most of a submission that is copied (the grader's disk and time)


def copy_submission(src: Path, dest: Path) -> list[str]:
    """Copy what the child reads of the submission (`src`: a folder, or a notebook file) into `dest`.
    Symlinks that stay inside the submission stay symlinks (relative, into the copy); a symlink out
    of it, or anything but a file or folder, is not copied; past COPY_MB or COPY_ENTRIES (a sparse
    file of a terabyte, a million empty ones) nothing more is: returns a note for each."""
    src = src.resolve()
    notes: list[str] = []
    dest.mkdir(parents=True, exist_ok=True)
    if src.is_file():
        if src.stat().st_size > COPY_MB << 20:
            notes.append(f"{src.name} is larger than {COPY_MB} MB: not copied")
            return notes
        shutil.copyfile(src, dest / src.name)
        return notes
    left = {"bytes": COPY_MB << 20, "entries": COPY_ENTRIES}
    for top in COPIED:
        _copy_entry(src, src / top, dest / top, notes, left)
    return notes


def _copy_entry(root: Path, path: Path, dest: Path, notes: list[str], left: dict) -> None:
    if not os.path.lexists(path):
        return
    rel = path.relative_to(root)
    left["entries"] -= 1
    if left["entries"] < 0:
        if left["entries"] == -1:
            notes.append(f"more than {COPY_ENTRIES} files and folders: {rel} and what follows not copied")
        return
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        if not target.is_relative_to(root) or not os.path.exists(target):
            notes.append(f"{rel} is a link out of the submission (to {os.readlink(path)}): not followed")
            return
        in_copy = _copy_path(dest, rel, target.relative_to(root))
        os.symlink(os.path.relpath(in_copy, dest.parent), dest)
        return
    if path.is_dir():
        if path.name == "__pycache__":
            return
        dest.mkdir()
        for child in sorted(path.iterdir()):
            _copy_entry(root, child, dest / child.name, notes, left)
    elif path.is_file():
        size = path.lstat().st_size
        if size > left["bytes"]:
            notes.append(f"{rel} ({size >> 20} MB) is past the {COPY_MB} MB a submission's copy may take: not copied")
            return
        left["bytes"] -= size
        shutil.copyfile(path, dest)
    else:
        notes.append(f"{rel} is neither a file nor a folder: not copied")


def _copy_path(dest: Path, rel: Path, target_rel: Path) -> Path:
    """Where `target_rel` (relative to the submission) lands in the copy whose entry `rel` is at `dest`."""
    copy_root = dest
    for _ in rel.parts:
        copy_root = copy_root.parent
    return copy_root / target_rel


# --- sandbox uids ---

def _lock_dir() -> Path:
    for folder in (Path("/run/makemore-grader"), Path(tempfile.gettempdir()) / f"makemore-grader-{os.geteuid()}"):
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            st = folder.lstat()
            if st.st_uid == os.geteuid() and not folder.is_symlink() and st.st_mode & 0o077 == 0:
                return folder
        except OSError:
            continue
    raise IsolationError("no private folder for the sandboxes' uid locks")


def claim_uid() -> tuple[int, int]:
    """An unused sandbox uid (its gid the same number) and the lock file descriptor that holds it."""
    folder = _lock_dir()
    for uid in UIDS:
        if _user_exists(uid):
            continue
        fd = os.open(folder / f"{uid}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        kill_uid(uid)  # anything a grader that died left running
        return uid, fd
    raise IsolationError(f"every sandbox uid ({UIDS.start}-{UIDS.stop - 1}) is in use")


@functools.cache
def _user_exists(uid: int) -> bool:
    """Is `uid` a user, or its number a group (whose files the sandbox would reach as its gid)?"""
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return True
        except KeyError:
            pass
    return False


# where any uid may write outside a sandbox (the fallback's reach): what a uid leaves there would reach
# the next submission graded as that uid, a classmate's (Debian and Ubuntu's world-writable folders)
SHARED_TMP = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock")


def release_uid(uid: int, fd: int) -> None:
    """Kill the uid's processes, remove what it left in the shared temporary folders and its System V
    IPC objects (the next sandbox of that uid is another student's, and a shared memory segment
    outlives its process: memory no one would free), and free the uid."""
    kill_uid(uid)
    remove_ipc(uid)
    for entry in shared_tmp_entries(uid):
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        except OSError:
            pass
    os.close(fd)


def shared_tmp_entries(uid: int) -> list[os.DirEntry]:
    """What `uid` owns at the top of the shared temporary folders (SHARED_TMP)."""
    found = []
    for folder in SHARED_TMP:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid == uid:
                    found.append(entry)
            except OSError:
                pass
    return found


IPC = {"shm": "shmctl", "msg": "msgctl", "sem": "semctl"}  # /proc/sysvipc/<kind>, and how to remove one


def ipc_of(uid: int) -> list[tuple[str, int]]:
    """The System V IPC objects (kind, id) that `uid` owns or made, in this IPC namespace (the
    fallback's; a bubblewrap sandbox's own namespace ends with it)."""
    found = []
    for kind in IPC:
        try:
            lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()
        except OSError:
            continue
        header = lines[0].split() if lines else []
        for line in lines[1:]:
            row = dict(zip(header, line.split()))
            if str(uid) in (row.get("uid"), row.get("cuid")):
                found.append((kind, int(row[header[1]])))
    return found


def remove_ipc(uid: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for kind, ident in ipc_of(uid):
        if kind == "sem":
            libc.semctl(ident, 0, 0)  # IPC_RMID
        else:
            getattr(libc, IPC[kind])(ident, 0, None)


def processes_of(uid: int, zombies: bool = False) -> list[int]:
    """The live processes whose real or effective uid is `uid`; with `zombies`, the dead ones that
    are this process's to reap instead."""
    pids, me = [], str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                status = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        except OSError:
            continue
        uids, dead = status.get("Uid", "").split(), status.get("State", "").strip().startswith(("Z", "X"))
        if uids[:2] and str(uid) in uids[:2] and (dead and status.get("PPid", "").strip() == me if zombies
                                                   else not dead):
            pids.append(int(entry))
    return pids


class SandboxMeter:
    """What a sandbox's processes use together, as /proc shows it: the CPU time of every process of
    the sandbox's uid seen so far (its own and its reaped children's; one that has exited counts what
    it had used when last seen, unless its time shows in a live process's reaped children's: then it
    counts there, once), and the memory the live ones hold (proportional set size: a page that forks
    share counts once, split among them)."""

    TICKS = os.sysconf("SC_CLK_TCK")

    def __init__(self, uid: int):
        self.uid, self.seen, self.parent, self.children = uid, {}, {}, {}

    def sample(self) -> tuple[float, float]:
        """(CPU seconds so far, resident MB now)."""
        held_kb, live = 0, {}
        for pid in processes_of(self.uid):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()  # after the name, which may hold spaces
                with open(f"/proc/{pid}/smaps_rollup") as f:
                    held_kb += next((int(line.split()[1]) for line in f if line.startswith("Pss:")), 0)
                ticks = [int(t) for t in fields[11:15]]  # utime, stime, cutime, cstime
                live[pid] = (int(fields[1]), sum(ticks) / self.TICKS, sum(ticks[2:]) / self.TICKS)
            except (OSError, IndexError, ValueError):
                continue
        self._fold(live)
        for pid, (ppid, used, children) in live.items():
            self.seen[pid] = max(self.seen.get(pid, 0.0), used)
            self.parent[pid], self.children[pid] = ppid, children
        return sum(self.seen.values()), held_kb / 1024

    def _fold(self, live: dict) -> None:
        """Forget the processes that have exited since the last sample where a live process's reaped
        children's time grew by at least what they had used (a compiler's processes under inductor,
        and theirs): counted there now. Where it did not grow so (they were reaped elsewhere: orphans
        of a process that exited first), they still count as last seen."""
        gone = {pid for pid in self.seen if pid not in live}
        under: dict[int, list[int]] = {}  # live process: the exited processes below it
        for pid in gone:
            ancestor, chain = self.parent[pid], set()
            while ancestor in gone and ancestor not in chain:
                chain.add(ancestor)
                ancestor = self.parent[ancestor]
            if ancestor in live:
                under.setdefault(ancestor, []).append(pid)
        for ancestor, pids in under.items():
            grew = live[ancestor][2] - self.children.get(ancestor, 0.0)
            if sum(self.seen[pid] for pid in pids) <= grew + 1 / self.TICKS:
                for pid in pids:
                    del self.seen[pid]


def become_subreaper() -> None:
    """Orphans of the sandboxes' processes (a daemon's) become this process's children, so that it
    reaps them once killed (`kill_uid`): a container's init often reaps nothing."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def kill_uid(uid: int, tries: int = 200) -> bool:
    """Kill every process of `uid` (a fork bomb included: kill(-1) from that uid, until none is
    left); True when none is."""
    for _ in range(tries):
        if not processes_of(uid):
            break
        pid = os.fork()
        if pid == 0:  # a process of that uid, so that kill(-1) reaches exactly its processes
            try:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(0.005)
    for pid in processes_of(uid, zombies=True):  # orphans of the sandbox, adopted as the subreaper
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    return not processes_of(uid)


# --- starting a child ---

@dataclass
class Box:
    """One sandbox for a run of calls: where its files are, how to start its child, how to end it."""

    mode: str
    tmp: Path  # the grader's folder for this run (root's; the child reaches only `home`)
    submission: Path  # the submission as the child sees it
    out: Path  # where results appear, as the grader sees it
    job: Path  # the job file, as the grader writes it
    uid: int | None = None
    lock: int | None = None
    notes: tuple[str, ...] = ()
    watch: tuple[Path, ...] = ()  # folders whose size the grader caps
    home: Path | None = None  # the grader's folder (0711) of the copy, results and work (the uid's), and the job
    given: frozenset[str] | None = None  # a notebook's: the exercises the course gives it (notebook.given_exercises)

    def job_written(self) -> None:
        """The job file, once written: readable by the sandbox's uid (its group), nobody else's."""
        if self.uid is not None:
            os.chown(self.job, 0, self.uid)
            os.chmod(self.job, 0o640)
        else:
            os.chmod(self.job, 0o644)

    def child_paths(self) -> tuple[str, str]:
        """The job file and the results folder as the child sees them."""
        if self.mode == "bwrap":
            return SANDBOX_ROOT["job"], SANDBOX_ROOT["out"]
        return str(self.job), str(self.out)

    def close(self) -> None:
        if self.uid is not None:
            release_uid(self.uid, self.lock)
            self.uid = None


def prepare(mode: str, submission: Path, tmp: Path, files: dict[str, Path]) -> Box:
    """The folders of a run of calls in `tmp`, and the submission's copy; `files` are put in the
    child's working folder."""
    if mode == "none":
        for name, src in files.items():
            shutil.copyfile(src, tmp / name)
        return Box("none", tmp, submission, tmp, tmp / "job.pt")
    os.chmod(tmp, 0o711)
    from . import notebook

    if mode == "fallback":
        become_subreaper()
    uid, lock = claim_uid()
    try:
        # the grader's own folder (root's, 0711): the sandbox's uid owns what is in it, never the names
        # in it, so that it cannot put a link to another folder in place of `out` or rewrite the job
        home = tmp / secrets.token_hex(8)
        home.mkdir()
        os.chmod(home, 0o711)
        notes = copy_submission(submission, home / "sub")
        if mode == "fallback" and readable_by_others(submission):
            notes.append(f"{submission} is readable by every user: the fallback's other sandboxes (a classmate's "
                         "code) can read it; keep the submissions in a folder only root can enter")
        out, work = home / "out", home / "work"
        out.mkdir()
        work.mkdir()
        for name, src in files.items():
            shutil.copyfile(src, work / name)
        for folder in (home / "sub", out, work):
            _chown_tree(folder, uid)
            os.chmod(folder, 0o700)
        inside = Path(SANDBOX_ROOT["submission"]) if mode == "bwrap" else home / "sub"
        if submission.is_file():
            inside = inside / submission.name
        return Box(mode, tmp, inside, out, home / "job.pt", uid, lock, tuple(notes), (out, work), home,
                   notebook.given_exercises(submission) if submission.suffix == ".ipynb" else None)
    except BaseException:
        release_uid(uid, lock)
        raise


def readable_by_others(path: Path) -> bool:
    """Can a user with no group of the owner's read `path` (every folder above it enterable)?"""
    import stat

    path = Path(path).resolve()
    try:
        for folder in path.parents:
            if not os.stat(folder).st_mode & stat.S_IXOTH:
                return False
        mode = os.stat(path).st_mode
    except OSError:
        return False
    need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
    return mode & need == need


def _chown_tree(root: Path, uid: int) -> None:
    for path in [root, *root.rglob("*")]:
        os.lchown(path, uid, uid)


def command(box: Box, start: int, limits) -> tuple[list[str], dict, Path, callable, tuple[int, ...]]:
    """(argv, env, cwd, preexec_fn, pass_fds) of the child that runs calls start.. of the box's job."""
    job, out = box.child_paths()
    if box.mode == "none":
        argv = [sys.executable, "-m", "makemore_wavenet.grader.child", job, out, str(start)]
        env = {**_env(os.environ.get("HOME", str(box.tmp)), None), "TORCHINDUCTOR_CACHE_DIR": str(box.tmp / "inductor")}
        return argv, env, box.tmp, _rlimits(limits, nproc=False), ()
    code = bundle(box.given)
    python = ["-E", "-s", "-S", "-u", "-B", "-c", _boot(SANDBOX_ROOT["grader"], site_dirs())]
    if box.mode == "fallback":
        work = str(box.home / "work")
        fds, mapped = _runtime_fds()
        boot = _boot(str(code), [mapped(p) for p in site_dirs()])
        argv = [mapped(_python()), "-s", "-S", "-u", "-B", "-c", boot, job, out, str(start)]
        env = {**_env(work, work), "PYTHONHOME": mapped(os.path.realpath(sys.base_prefix))}
        return argv, env, box.home / "work", _fallback_preexec(box.uid, limits), fds
    argv = [*bwrap_argv(box, code, limits), _python(), *python, job, out, str(start)]
    return argv, _env(SANDBOX_ROOT["work"], "/tmp"), box.tmp, _rlimits(limits, nproc=True), ()


def _python() -> str:
    return os.path.realpath(sys.executable)


@functools.cache
def _runtime_roots() -> dict[str, int]:
    """For the fallback: the runtime's folders (the outermost of each), each with an O_PATH
    descriptor the child inherits, so that a Python installed in a folder other users cannot enter
    (pyenv's in /root) still runs: the descriptor opens the installation, never the folders above
    it (though `..` from it leads to any of them that the uid may enter: `exposed` tries that too)."""
    roots = sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, *site_dirs())}, key=len)
    roots = [r for i, r in enumerate(roots) if not any(r.startswith(o.rstrip("/") + "/") for o in roots[:i])]
    return {root: os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for root in roots}


def _runtime_fds() -> tuple[tuple[int, ...], callable]:
    """The descriptors of `_runtime_roots`, and a function that maps a path into the runtime to
    its /proc/self/fd/N path."""
    fds = _runtime_roots()

    def mapped(path: str) -> str:
        real = os.path.realpath(path)
        for root, fd in fds.items():
            if real == root or real.startswith(root.rstrip("/") + "/"):
                return f"/proc/self/fd/{fd}" + real[len(root):]
        return real
    return tuple(fds.values()), mapped


def fd_routes(target: str, roots: dict[str, int]) -> list[str]:
    """The paths by which the fallback's child could open `target` through its runtime descriptors:
    from each, `..` up to the folder it shares with `target`, then down."""
    routes = []
    for root, fd in roots.items():
        common = os.path.commonpath([root, target])
        ups = len(Path(root).relative_to(common).parts)
        routes.append(f"/proc/self/fd/{fd}/" + "../" * ups + os.path.relpath(target, common))
    return routes


def _boot(bundle_dir: str, sites: list[str]) -> str:
    """The child's first lines: the seccomp filter, then imports from the bundle and the runtime's
    folders, nothing else."""
    return (_setup([bundle_dir, *sites])
            + "import runpy\nrunpy.run_module('makemore_wavenet.grader.child', run_name='__main__', alter_sys=True)\n")


def _setup(path: list[str]) -> str:
    """A sandboxed child's first lines, before any of the submission's code: install the seccomp
    filter (`seccomp_filter`; no_new_privs is already set), then set the import path. The fallback's
    runtime, reached through /proc/self/fd/N (`_runtime_fds`), is named by this process's pid instead:
    the same descriptor, and a path that the compiler inductor runs (a compiled loss check) can open too,
    as the same uid, where /proc/self/fd/N would be its own descriptors, without the runtime's."""
    return ("import sys, ctypes, os\n"
            f"_program = {seccomp_filter()!r}\n"
            "if _program:\n"
            "    class _Prog(ctypes.Structure):\n"
            "        _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]\n"
            "    _buffer = ctypes.create_string_buffer(_program, len(_program))\n"
            "    _prog = _Prog(len(_program) // 8, ctypes.addressof(_buffer))\n"
            "    _prctl = ctypes.CDLL(None, use_errno=True).prctl\n"
            "    if _prctl(22, ctypes.c_ulong(2), ctypes.byref(_prog), ctypes.c_ulong(0), ctypes.c_ulong(0)):\n"
            "        raise SystemExit(f'[grader] no seccomp filter: errno {ctypes.get_errno()}')\n"
            "    del _Prog, _buffer, _prog, _prctl\n"
            "del _program\n"
            "_here = f'/proc/{os.getpid()}/'\n"
            "for _name in ('prefix', 'base_prefix', 'exec_prefix', 'base_exec_prefix', 'executable'):\n"
            "    setattr(sys, _name, getattr(sys, _name).replace('/proc/self/', _here))\n"
            f"sys.path[:] = [p.replace('/proc/self/', _here) for p in {path!r}]\n"
            "del _here, _name\n")


# a seccomp filter for every sandboxed child: no user namespace of its own, in which it would be root
# (mounts, namespaces of every kind, far more of the kernel within reach), as Flatpak's (bubblewrap's
# --disable-userns needs --unshare-user, which as root would map the child to the host's root); no
# socket but socketpair: the network closed where the fallback shares the host's (localhost's services,
# a Dask scheduler's port, abstract Unix sockets), and io_uring, whose operations pass by seccomp, off
SECCOMP_ARCH = {"x86_64": (0xC000003E, {"unshare": 272, "clone": 56, "clone3": 435, "socket": 41}),
                "aarch64": (0xC00000B7, {"unshare": 97, "clone": 220, "clone3": 435, "socket": 198})}
CLONE_NEWUSER = 0x10000000
EPERM, ENOSYS = 1, 38
# refused outright, with the error a program takes for "not here" (clone3 and io_uring: the C library
# and Python fall back to clone and plain system calls); the kernel's keyrings and POSIX message queues
# are a uid's and outlive its processes: something kept there would wait, in the fallback, for the
# next sandbox of that uid (a classmate's)
REFUSED = {"clone3": ENOSYS, "socket": EPERM, "io_uring_setup": ENOSYS, "io_uring_enter": ENOSYS,
           "io_uring_register": ENOSYS, "add_key": EPERM, "request_key": EPERM, "keyctl": EPERM,
           "mq_open": EPERM, "mq_unlink": EPERM}
IO_URING = {"io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427}  # the same on both
KEPT = {"x86_64": {"add_key": 248, "request_key": 249, "keyctl": 250, "mq_open": 240, "mq_unlink": 241},
        "aarch64": {"add_key": 217, "request_key": 218, "keyctl": 219, "mq_open": 180, "mq_unlink": 181}}


@functools.cache
def seccomp_filter() -> bytes:
    """The filter as a classic BPF program (struct sock_filter[]): unshare and clone with
    CLONE_NEWUSER fail with EPERM; REFUSED fail as it says (clone3, whose flags a filter cannot read;
    socket; io_uring; keyrings and message queues); every system call of another ABI (i386, x32)
    fails with EPERM; b'' on an architecture it does not know (the Isolation says so)."""
    import struct

    if os.uname().machine not in SECCOMP_ARCH:
        return b""
    arch, numbers = SECCOMP_ARCH[os.uname().machine]
    numbers = {**numbers, **IO_URING, **KEPT[os.uname().machine]}
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, ..., BPF_RET|K
    allow, errno = 0x7FFF0000, 0x00050000
    program = [(ld, 0, 0, 4),  # the architecture
               (jeq, 1, 0, arch),
               (ret, 0, 0, errno | EPERM),  # another ABI
               (ld, 0, 0, 0),  # the system call's number
               (jge, 0, 1, 0x40000000),  # x32's
               (ret, 0, 0, errno | EPERM)]
    for name, error in REFUSED.items():
        program += [(jeq, 0, 1, numbers[name]), (ret, 0, 0, errno | error)]
    program += [(jeq, 1, 0, numbers["unshare"]),
                (jeq, 0, 3, numbers["clone"]),
                (ld, 0, 0, 16),  # the flags: the first argument's low half
                (jset, 0, 1, CLONE_NEWUSER),
                (ret, 0, 0, errno | EPERM),
                (ret, 0, 0, allow)]
    return b"".join(struct.pack("=HBBI", code, jt, jf, k) for code, jt, jf, k in program)


def _env(home: str, tmpdir: str | None) -> dict:
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": os.environ.get("LANG", "C.UTF-8"), "USER": "nobody",
           "LOGNAME": "nobody", "MPLBACKEND": "Agg", "MPLCONFIGDIR": f"{tmpdir or home}/.matplotlib",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    if tmpdir:
        # inductor's compiled code (a compiled loss check) in the sandbox's own temporary folder: one per call
        env.update(TMPDIR=tmpdir, TORCHINDUCTOR_CACHE_DIR=f"{tmpdir}/inductor")
    else:  # no isolation: the grader's own environment, as before
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "TMPDIR")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    return env  # no MAKEMORE_NAMES: the child gets its data from the parent


def _set_rlimits(limits, nproc: bool) -> None:
    memory = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if nproc:
        disk = limits.disk_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (disk, disk))
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))


def _rlimits(limits, nproc: bool):
    return lambda: _set_rlimits(limits, nproc)


def _no_new_privs() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def _fallback_preexec(uid: int, limits):
    def preexec() -> None:  # runs as root in the new child, before exec
        _set_rlimits(limits, nproc=True)
        _no_new_privs()
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    return preexec


def bwrap_argv(box: Box, code: Path, limits, userns: bool | None = None) -> list[str]:
    """bubblewrap's command line for `box`, up to the child's own command."""
    userns = _userns_works() if userns is None else userns
    args = [shutil.which("bwrap") or "bwrap",
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", "sandbox", "--die-with-parent", "--new-session", "--proc", "/proc", "--dev", "/dev"]
    size = str(limits.disk_mb * 1024 * 1024)
    args += ["--size", size, "--perms", "1777", "--tmpfs", "/tmp"]  # first: a runtime in /tmp is mounted on it
    made: set[str] = set()  # the folders there are in the sandbox: mounted, or made as a mount's parents
    mounted: set[str] = set()  # what is mounted whole (or a link to what is)
    for src in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(src):
            args += ["--symlink", os.readlink(src), src]
        elif os.path.isdir(src):
            args += ["--ro-bind", src, src]
        made.add(src)
        mounted.add(src)
    for src in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/alternatives"):
        if os.path.exists(src):
            args += ["--ro-bind", src, src]
    runtime = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix, sys.base_exec_prefix,
                                             os.path.dirname(os.path.dirname(_python())), *site_dirs())}
    for src in sorted(runtime, key=len):
        if any(src == m or src.startswith(m.rstrip("/") + "/") for m in mounted):
            continue
        args += _parents(src, made) + ["--ro-bind", src, src]
        made.add(src)
        mounted.add(src)
    args += masks(mounted, _project(), _project_files(), sorted(runtime, key=len))
    args += ["--perms", "0755", "--dir", "/.grader", "--ro-bind", str(code), SANDBOX_ROOT["grader"],
             "--ro-bind", str(box.home / "sub"), SANDBOX_ROOT["submission"],
             "--ro-bind", str(box.job), SANDBOX_ROOT["job"], "--bind", str(box.out), SANDBOX_ROOT["out"],
             "--size", size, "--perms", "1777", "--tmpfs", SANDBOX_ROOT["work"]]
    for file in sorted((box.home / "work").iterdir()):
        args += ["--ro-bind", str(file), f"{SANDBOX_ROOT['work']}/{file.name}"]
    args += ["--chdir", SANDBOX_ROOT["work"], "--", "/usr/bin/setpriv", f"--reuid={box.uid}", f"--regid={box.uid}",
             "--clear-groups", "--no-new-privs"]
    if userns:
        args += ["/usr/bin/unshare", "--user", f"--map-user={INSIDE_UID}", f"--map-group={INSIDE_UID}"]
    return args


def _project() -> str:
    """Where the project is: a checkout (editable install) or the installed package."""
    return str(Path(__file__).resolve().parents[1])


def masks(mounted: set[str], project: str, installed: list[str], runtime: list[str]) -> list[str]:
    """bwrap arguments that hide the project from the sandbox: its installed copies and editable
    finders in the runtime's folders (`installed`), and the project itself where a folder mounted
    whole holds it (a copy installed under /usr, outside the runtime's own site-packages); a
    runtime folder inside what was hidden is mounted again."""
    def inside(path: str, folder: str) -> bool:
        return path == folder or path.startswith(folder.rstrip("/") + "/")

    hidden = list(dict.fromkeys(installed + ([project] if any(inside(project, m) for m in mounted) else [])))
    args = []
    for path in hidden:
        args += ["--tmpfs", path] if os.path.isdir(path) else ["--ro-bind", "/dev/null", path]
    for src in runtime:
        if any(inside(src, h) and src != h for h in hidden):
            args += ["--ro-bind", src, src]
    return args


def _parents(path: str, made: set[str]) -> list[str]:
    """bwrap arguments that make `path`'s missing parent folders traversable (0755)."""
    args, parts = [], Path(path).parts
    for i in range(2, len(parts)):
        parent = str(Path(*parts[:i]))
        if parent not in made:
            args += ["--perms", "0755", "--dir", parent]
            made.add(parent)
    return args


# --- does it work here? run once, then remembered ---

def _try(argv: list[str], seconds: float = 30, **kwargs) -> str:
    """'' if `argv` runs and prints "ok", else what went wrong."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds, stdin=subprocess.DEVNULL,
                              **kwargs)
    except (OSError, subprocess.SubprocessError) as err:
        return f"{type(err).__name__}: {err}"
    if done.returncode == 0 and done.stdout.strip() == "ok":
        return ""
    return (done.stderr.strip() or done.stdout.strip() or f"exit code {done.returncode}")[-300:]


PROBE = "import os, ctypes; [os.listdir(p) for p in sys.path]; print('ok')"


def _root_problem() -> str:
    if sys.platform != "linux":
        return "not Linux"
    if os.geteuid() != 0:
        return "the grader does not run as root, so it cannot start children as another uid"
    return ""


def _trial(mode: str, userns: bool = True) -> str:
    with tempfile.TemporaryDirectory(prefix="grader-probe-") as tmp:
        box = prepare(mode, Path(tmp), Path(tmp), {})
        try:
            box.job.touch()
            if mode == "fallback":
                fds, mapped = _runtime_fds()
                boot = _setup([mapped(p) for p in site_dirs()]) + PROBE
                env = {**_env(tmp, tmp), "PYTHONHOME": mapped(os.path.realpath(sys.base_prefix))}
                return _try([mapped(_python()), "-s", "-S", "-c", boot], env=env, pass_fds=fds,
                            preexec_fn=_fallback_preexec(box.uid, _TrialLimits))
            boot = _setup(site_dirs()) + PROBE
            python = [_python(), "-E", "-s", "-S", "-c", boot]
            argv = bwrap_argv(box, bundle(None), _TrialLimits, userns) + python
            return _try(argv, env=_env(SANDBOX_ROOT["work"], "/tmp"))
        finally:
            box.close()


class _TrialLimits:
    memory_mb, disk_mb, processes = 4096, 16, 64


def bwrap_problem() -> str:
    """'' if bubblewrap runs a child here as the grader would, else why not."""
    return _bwrap_state()[0]


def _userns_works() -> bool:
    return _bwrap_state()[1]


@functools.cache
def _bwrap_state() -> tuple[str, bool]:
    """(why bubblewrap cannot run, '' if it can; whether a user namespace inside it can)."""
    missing = ("" if shutil.which("bwrap") else "bwrap is not installed (apt-get install bubblewrap)") or \
        ("" if os.access("/usr/bin/setpriv", os.X_OK) else "/usr/bin/setpriv is missing (util-linux)")
    problem = _root_problem() or missing
    if problem:
        return problem, False
    if not _trial("bwrap", True):
        return "", True
    return _trial("bwrap", False), False


@functools.cache
def fallback_problem() -> str:
    """'' if a child can run as a sandbox uid here, else why not (e.g. the Python installation is in a
    folder that uid cannot read)."""
    problem = _root_problem()
    if problem:
        return problem
    problem = _trial("fallback")
    return f"a sandbox uid cannot run Python and import torch here: {problem}" if problem else ""


def private_files() -> list[str]:
    """The instructor's files no submission may read: the hidden checks (grader/hidden) and the
    master's solutions (the sources with solution regions)."""
    from .regions import source_files

    project = Path(__file__).resolve().parents[1]
    hidden = project / "grader" / "hidden"
    files = sorted(p for p in hidden.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    files += [p for p in source_files(project) if "# BEGIN EXERCISE" in p.read_text(encoding="utf-8")]
    return [str(p) for p in files]


@functools.cache
def readable_private_files() -> tuple[str, ...]:
    """Of `private_files`, those a sandbox uid can read, tried as the fallback's child: by path, and
    through the runtime folders it is handed. The fallback cannot hide them (bubblewrap mounts none
    of them): its note says so."""
    files = private_files()
    if not files:
        return ()
    roots = _runtime_roots()
    routes = [[f, *fd_routes(f, roots)] for f in files]
    probe = ("import sys\n"
             f"for i, paths in enumerate({routes!r}):\n"
             "    for path in paths:\n"
             "        try:\n"
             "            open(path, 'rb').read(1)\n"
             "        except OSError:\n"
             "            continue\n"
             "        print(i)\n"
             "        break\n")
    uid, lock = claim_uid()
    try:
        fds, mapped = _runtime_fds()
        env = {"PATH": "/usr/bin:/bin", "PYTHONHOME": mapped(os.path.realpath(sys.base_prefix))}
        done = subprocess.run([mapped(_python()), "-s", "-S", "-c", probe], env=env, pass_fds=fds,
                              preexec_fn=_fallback_preexec(uid, _TrialLimits), capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)
    finally:
        release_uid(uid, lock)
    return tuple(files[int(i)] for i in done.stdout.split() if i.isdigit() and int(i) < len(files))


def exposed() -> str:
    """What of the instructor's private files a sandbox uid can read ('' nothing), as the
    fallback's note says it."""
    readable = readable_private_files()
    hidden = str(Path(__file__).resolve().parent / "hidden")
    what = [name for name, found in (("the grader's hidden checks", any(f.startswith(hidden + "/") for f in readable)),
                                     ("the master's solutions", any(not f.startswith(hidden + "/") for f in readable)))
            if found]
    return " and ".join(what)
