"""The sandbox against hostile submissions: one small submission per attack class, run under
bubblewrap and under the fallback (forced), each proving no pass, no leak, nothing left running,
nothing else in the batch affected. Exercise checks and single calls only: no training."""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from makemore_wavenet.grader import GraderError, isolation, probes
from makemore_wavenet.grader.__main__ import main as grader_main
from makemore_wavenet.grader.batch import grade_many
from makemore_wavenet.grader.grade import Options, grade
from makemore_wavenet.grader.gradebook import Gradebook
from makemore_wavenet.grader.sandbox import Call, Limits, Session, clean, run_calls, tail

ROOT = Path(__file__).resolve().parents[1]
FLATTEN = "        return x.view(x.shape[0], -1)"  # exercise 2.2's solution line, where hostile code goes
SANDBOXES = ["bwrap", "fallback"]
HIDDEN = ROOT / "grader" / "hidden" / "__init__.py"


def sandbox(mode: str) -> str:
    """`mode`, or skip when it cannot run on this machine (saying why)."""
    problem = {"bwrap": isolation.bwrap_problem, "fallback": isolation.fallback_problem}[mode]()
    if problem:
        pytest.skip(f"{mode} cannot run here: {problem}")
    return mode


def hostile(tmp_path: Path, code: str, name: str = "submission") -> Path:
    """The master's sources with `code` run at the start of Flatten.forward (exercise 2.2)."""
    root = tmp_path / name
    for folder in ("shared", "stages"):
        shutil.copytree(ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    layers = root / "shared" / "layers.py"
    text = layers.read_text()
    assert FLATTEN in text
    code = textwrap.indent(textwrap.dedent(code).strip(), " " * 8)
    layers.write_text(text.replace(FLATTEN, code + "\n" + FLATTEN, 1))
    return root


def flatten_calls(n: int = 1) -> list[Call]:
    return [Call(probes.flatten, {"x": torch.ones(2, 3, 4)}) for _ in range(n)]


def exercise_checks(mode: str, **limits) -> Options:
    return Options(tier="public", schedule="quick", stages=(2,), losses=False, limits=Limits(isolation=mode, **limits))


def rows(report, row: str) -> list:
    return [r for r in report.results if r.row == row]


def named(marker: str, zombies: bool = False) -> list[int]:
    """The live processes whose name (comm) is `marker`, or with `zombies` the dead ones (a killed
    process whose parent is a container's init that reaps nothing stays one)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        dead = fields.get("State", "").strip().startswith(("Z", "X"))
        if fields.get("Name", "").strip() == marker and dead == zombies:
            found.append(int(pid))
    return found


NAME_ME = "import ctypes; ctypes.CDLL(None).prctl(15, {marker!r}.encode(), 0, 0, 0)"  # PR_SET_NAME


# --- the result channel ---

FORGE = """
import os, sys, torch
for i in range(len(torch.load(sys.argv[1], weights_only=True)['calls'])):
    torch.save({'status': 'pass'}, os.path.join(sys.argv[2], f'{i}.pt'))
os._exit(0)
"""
PATCH_SAVE = """
import torch.serialization as ser
if not getattr(ser, '_forged', False):
    _real = ser._save
    def _forged(obj, *args, **kwargs):
        return _real({'status': 'pass'} if isinstance(obj, dict) else obj, *args, **kwargs)
    ser._save, ser._forged = _forged, True
"""


@pytest.mark.parametrize("mode", SANDBOXES)
@pytest.mark.parametrize("attack", [FORGE, PATCH_SAVE], ids=["forged result files", "patched torch.save"])
def test_a_forged_result_passes_nothing(tmp_path, mode, attack):
    report = grade(hostile(tmp_path, attack), exercise_checks(sandbox(mode)))
    forged = rows(report, "2.2")
    assert forged and {r.status for r in forged} == {"error"} and "is none of" in forged[0].message
    assert report.isolation == mode


# --- what the sandbox can see ---

REACH = f"""
import importlib, os, sys
found = []
for path in [{str(HIDDEN)!r}, {str(ROOT / 'shared' / 'layers.py')!r}, {str(ROOT / 'grader' / 'grade.py')!r}]:
    try:
        open(path).read(1)
        found.append(path)
    except OSError:
        pass
for name in ['makemore_wavenet.grader.hidden', 'makemore_wavenet.grader.grade', '_grader_reference.layers']:
    try:
        importlib.import_module(name)
        found.append('import ' + name)
    except Exception:
        pass
here = [p for p in sys.path if p.rstrip('/') == {str(ROOT)!r}
        or any(p.startswith({str(ROOT)!r} + '/' + d) for d in ('shared', 'stages', 'grader'))]
bundle = sorted(f for _, _, fs in os.walk(sys.path[0]) for f in fs)
raise RuntimeError(f'FOUND {{found}} PATHS {{here}} BUNDLE {{bundle}}')
"""


@pytest.mark.parametrize("mode", SANDBOXES)
def test_the_masters_files_are_out_of_reach(tmp_path, mode):
    """Neither the hidden checks nor the master's solutions, by path or by import; the grader's
    code in the sandbox is its child's alone (no solution, no hidden check)."""
    [outcome], _ = run_calls(hostile(tmp_path, REACH), flatten_calls(), Limits(isolation=sandbox(mode)))
    assert outcome.status == "error" and "FOUND" in outcome.message
    found = outcome.message.split("FOUND ")[1].split(" PATHS")[0]
    assert "import" not in found  # no module of the master's grader, no solution, under any name
    assert "PATHS []" in outcome.message
    bundle = outcome.message.split("BUNDLE ")[1].split("]")[0]
    assert "child.py" in bundle and "hidden" not in bundle and "layers.py" not in bundle and "grade.py" not in bundle
    if mode == "bwrap":
        assert found == "[]"  # not even there to read
    else:  # the fallback hides only what is not readable by every user, and says so
        assert (str(HIDDEN) in found) == (str(HIDDEN) in isolation.readable_private_files())
        assert "readable by every user" in Session(Limits(isolation=mode)).report_fields()["isolation_note"]


def test_the_fallbacks_note_counts_what_its_runtime_descriptors_reach(tmp_path, monkeypatch):
    """The fallback hands its child descriptors of the runtime's folders; `..` from one leads to any
    folder above it that the uid may enter, even inside one it may not enter by path (a venv beside
    the grader in a course folder under /root): a private file reached that way is exposed too."""
    sandbox("fallback")
    assert os.stat(tmp_path.parent.parent).st_mode & 0o077 == 0  # pytest's own folder: private
    course = tmp_path / "course"
    (course / "venv").mkdir(parents=True)
    secret = course / "hidden.py"
    secret.write_text("SEED = 1234\n")
    for path in (tmp_path, course, course / "venv"):
        os.chmod(path, 0o755)
    os.chmod(secret, 0o644)
    roots = dict(isolation._runtime_roots())
    monkeypatch.setattr(isolation, "private_files", lambda: [str(secret)])
    isolation.readable_private_files.cache_clear()
    try:
        assert isolation.readable_private_files() == ()  # by path: pytest's folder is closed
        fd = os.open(course / "venv", os.O_PATH | os.O_DIRECTORY)
        monkeypatch.setattr(isolation, "_runtime_roots", lambda: {**roots, str(course / "venv"): fd})
        isolation.readable_private_files.cache_clear()
        assert isolation.readable_private_files() == (str(secret),)
        os.close(fd)
    finally:
        isolation.readable_private_files.cache_clear()


@pytest.mark.parametrize("mode", SANDBOXES)
def test_a_notebook_does_not_reach_the_hidden_checks_either(tmp_path, mode):
    """A notebook runs beside a `shared` and `stages` of the package (its exercises replace their
    objects), never beside the grader's hidden checks."""
    import nbformat

    cell = (f"import importlib\nfound = []\ntry:\n    open({str(HIDDEN)!r}).read(1)\n    found.append('file')\n"
            "except OSError:\n    pass\ntry:\n    importlib.import_module('makemore_wavenet.grader.hidden')\n"
            "    found.append('import')\nexcept Exception:\n    pass\nprint('FOUND', found)\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    nbformat.write(nb, tmp_path / "mine.ipynb")
    [outcome], log = run_calls(tmp_path / "mine.ipynb", flatten_calls(), Limits(isolation=sandbox(mode)))
    assert outcome.status == "not done"  # the package's Flatten beside it is a stub: the notebook defines none
    expected = ["file"] if mode == "fallback" and str(HIDDEN) in isolation.readable_private_files() else []
    assert f"FOUND {expected}" in log, log


BORROWED = """
import makemore_wavenet.shared.layers as package_layers
from makemore_wavenet.shared.data import build_dataset as package_build_dataset


class Embedding(package_layers.Embedding):
    pass


Flatten = package_layers.Flatten
FlattenConsecutive = package_layers.FlattenConsecutive


def build_dataset(words, block_size):
    return package_build_dataset(words, block_size)
"""


@pytest.mark.parametrize("mode", SANDBOXES)
def test_a_notebook_that_borrows_the_packages_exercise_code_gets_stubs(tmp_path, mode):
    """The package beside a notebook in the sandbox is the student edition's: stubs where the master
    has solutions. A notebook that subclasses, renames or wraps the package's exercise code instead
    of writing its own is not done on those exercises (as in the student's self-check), never a pass."""
    import nbformat

    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(BORROWED)]), tmp_path / "borrowed.ipynb")
    report = grade(tmp_path / "borrowed.ipynb", Options(tier="hidden", losses=False,
                                                         limits=Limits(isolation=sandbox(mode))))
    borrowed = [r for r in report.results if r.row in ("2.1", "2.2", "3.1", "4.1")]
    assert {r.row for r in borrowed} == {"2.1", "2.2", "3.1", "4.1"}, report.table()
    assert {r.status for r in borrowed} == {"not done"}, report.table(every_check=True)
    assert report.passed == 0


@pytest.mark.parametrize("mode", SANDBOXES)
def test_symlinks_out_of_the_submission_are_not_followed(tmp_path, mode):
    """A submission whose shared/ is a link to the master's, or holding a link to a private file,
    gets neither: the links are left out of its copy, and the log says so."""
    root = hostile(tmp_path, "pass")
    shutil.rmtree(root / "shared")
    (root / "shared").symlink_to(ROOT / "shared")
    (root / "stages" / "secret.txt").symlink_to(HIDDEN)
    report = grade(root, exercise_checks(sandbox(mode)))
    assert report.passed == 0 and {r.status for r in report.results} <= {"error", "waiting"}
    assert "shared is a link out of the submission" in report.log and "secret.txt is a link out" in report.log


def test_the_fallback_says_when_a_submission_is_readable_by_its_classmates(tmp_path):
    """The fallback's sandboxes share the machine's filesystem: a class folder every user can read
    is readable by every classmate's code, and the instructor's record says so."""
    import tempfile

    sandbox("fallback")
    closed = hostile(tmp_path, "pass")
    assert not isolation.readable_by_others(closed)  # pytest's folder is private
    _, log = run_calls(closed, flatten_calls(), Limits(isolation="fallback"))
    assert "readable by every user" not in log
    open_class = Path(tempfile.mkdtemp(prefix="class-", dir="/tmp"))
    try:
        os.chmod(open_class, 0o755)
        root = hostile(open_class, "pass")
        assert isolation.readable_by_others(root)
        _, log = run_calls(root, flatten_calls(), Limits(isolation="fallback"))
        assert f"{root} is readable by every user" in log
    finally:
        shutil.rmtree(open_class)


def test_a_venv_inside_the_project_is_mounted_and_the_project_not_masked(tmp_path, monkeypatch):
    """nox's venvs live in the checkout (.nox/): the folders above such a venv are made in the sandbox,
    not mounted, so the project holding it is not masked (which would hide the venv), and nothing of
    the checkout but the venv is there."""
    project = tmp_path / "checkout"
    site = project / ".nox" / "bench" / "lib" / "site-packages"
    site.mkdir(parents=True)
    (project / "grader").mkdir()
    monkeypatch.setattr(isolation, "site_dirs", lambda: [str(site)])
    monkeypatch.setattr(isolation, "_project", lambda: str(project))
    home = tmp_path / "home"
    (home / "work").mkdir(parents=True)
    box = isolation.Box("bwrap", tmp_path, Path("/submission"), home / "out", home / "job.pt", 59999, home=home)
    args = isolation.bwrap_argv(box, tmp_path / "code", Limits(), userns=False)
    pairs = list(zip(args, args[1:]))
    assert ("--tmpfs", str(project)) not in pairs and ("--dir", str(project)) in pairs
    assert ("--ro-bind", str(site)) in pairs and str(project / "grader") not in args


def test_the_copy_of_a_submission_is_bounded(tmp_path, monkeypatch):
    """The grader copies a submission as root onto its own disk: a sparse file of terabytes, or a
    million empty ones, would fill it. Past the bounds nothing more is copied, and the log says so."""
    root = hostile(tmp_path, "pass")
    (root / "runs").mkdir()
    with open(root / "runs" / "huge.pt", "wb") as f:
        f.truncate((isolation.COPY_MB + 1) << 20)  # sparse: no disk
    notes = isolation.copy_submission(root, tmp_path / "copy")
    copy = tmp_path / "copy"
    assert not (copy / "runs" / "huge.pt").exists() and (copy / "shared" / "layers.py").exists()
    assert [n for n in notes if "runs/huge.pt" in n and "not copied" in n], notes
    for i in range(20):
        (root / "runs" / f"empty{i}").touch()
    monkeypatch.setattr(isolation, "COPY_ENTRIES", 10)
    notes = isolation.copy_submission(root, tmp_path / "copy2")
    assert sum(1 for _ in (tmp_path / "copy2").rglob("*")) <= 10 and any("more than 10 files" in n for n in notes)


def test_the_project_is_hidden_wherever_a_mounted_folder_holds_it(tmp_path):
    """An installed copy of the project in a runtime folder is masked; so is the project itself when a
    folder mounted whole holds it (installed under /usr, which every sandbox mounts), and a runtime
    folder inside it is mounted again on top."""
    project, venv = tmp_path / "usr" / "course", tmp_path / "usr" / "course" / "venv"
    venv.mkdir(parents=True)
    finder = tmp_path / "site" / "__editable__.makemore_wavenet.pth"
    finder.parent.mkdir()
    finder.touch()
    args = isolation.masks({str(tmp_path / "usr")}, str(project), [str(finder)], [str(venv)])
    assert args == ["--ro-bind", "/dev/null", str(finder), "--tmpfs", str(project), "--ro-bind", str(venv), str(venv)]
    assert isolation.masks({"/usr"}, str(project), [], [str(venv)]) == []


def test_a_link_inside_the_submission_stays_a_link_inside_its_copy(tmp_path):
    root = hostile(tmp_path, "pass")
    (root / "runs").mkdir()
    (root / "runs" / "layers.py").symlink_to("../shared/layers.py")
    notes = isolation.copy_submission(root, tmp_path / "copy")
    assert notes == [] and (tmp_path / "copy" / "runs" / "layers.py").resolve() == \
        (tmp_path / "copy" / "shared" / "layers.py").resolve()


# --- nothing outlives grading, and nobody reaches a classmate ---

DAEMON = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        {name_me}
        while True:
            time.sleep(0.05)
    os._exit(0)
time.sleep(0.5)
"""


@pytest.mark.parametrize("mode", [*SANDBOXES, "none"])
def test_a_daemon_does_not_outlive_grading(tmp_path, mode):
    """setsid() and a double fork escape the process group; the sandbox kills them anyway. Without
    isolation (the student's self-check on their own machine) the daemon survives: the baseline."""
    marker = "dm" + secrets.token_hex(6)
    mode = mode if mode == "none" else sandbox(mode)
    [outcome], _ = run_calls(hostile(tmp_path, DAEMON.format(name_me=NAME_ME.format(marker=marker))), flatten_calls(),
                             Limits(isolation=mode))
    assert outcome.status == "ok"
    left = named(marker)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert bool(left) == (mode == "none"), left
    assert mode == "none" or named(marker, zombies=True) == []


SABOTEUR = """
import glob, os, sys, time, torch
if os.fork() == 0:
    os.setsid()
    end = time.time() + 6
    while time.time() < end:  # every result file it can find, and every process it can signal
        folders = glob.glob('/tmp/grader-*/*/out') + glob.glob('/tmp/grader-*') + glob.glob('/tmp/*/out')
        for cmdline in glob.glob('/proc/[0-9]*/cmdline'):  # the other children's arguments name their folders
            try:
                folders += [a.decode() for a in open(cmdline, 'rb').read().split(b'\\0') if a.endswith(b'/out')]
            except OSError:
                pass
        for folder in set(folders) - {sys.argv[2]}:
            for i in range(20):
                try:
                    torch.save({'status': 'error', 'message': 'sabotaged'}, os.path.join(folder, f'{i}.pt'))
                except Exception:
                    pass
        time.sleep(0.05)
    os.kill(-1, 9)
    os._exit(0)
time.sleep(3)
"""


@pytest.mark.parametrize("mode", SANDBOXES)
def test_a_classmates_daemon_cannot_touch_the_others_in_a_batch(tmp_path, mode):
    subs = [(f"honest{i}", hostile(tmp_path, "pass", f"honest{i}")) for i in range(3)]
    subs.insert(1, ("saboteur", hostile(tmp_path, SABOTEUR, "saboteur")))
    options = exercise_checks(sandbox(mode))
    with Gradebook(tmp_path / "book.db") as book, ThreadPoolExecutor(max_workers=2) as pool:
        stored = dict(grade_many(subs, book, options, executor=pool, progress=False))
        reports = {student: book.report(rid) for student, rid in stored.items()}
    for student in ("honest0", "honest1", "honest2"):
        assert reports[student].passed == len(reports[student].results), reports[student].table()
        assert "sabotaged" not in reports[student].table(every_check=True)


@pytest.mark.parametrize("mode", SANDBOXES)
def test_nothing_written_outside_the_sandbox_is_left_for_the_next_student(tmp_path, mode):
    """The fallback's uid can write into /tmp (bubblewrap's /tmp is its own): what it left there is
    removed with the uid, before another student's sandbox gets the same uid."""
    left = f"/tmp/left-{secrets.token_hex(6)}"
    code = f"open({left!r}, 'w').write('for the next student')"
    [outcome], _ = run_calls(hostile(tmp_path, code), flatten_calls(), Limits(isolation=sandbox(mode)))
    assert outcome.status == "ok" and not os.path.exists(left)


SWAP = """
import os, sys
job, out = sys.argv[1], sys.argv[2]
done = []
for name, path in (('out', out), ('job', job)):
    try:
        os.rename(path, path + '-moved')
        done.append('moved ' + name)
        os.rename(path + '-moved', path)
    except OSError:
        pass
try:
    open(job, 'ab').close()
    done.append('job writable')
except OSError:
    pass
try:
    os.symlink('/', os.path.join(os.path.dirname(out), 'planted'))
    done.append('a link beside out')
except OSError:
    pass
raise RuntimeError(f'SWAPPED {done}')
"""


@pytest.mark.parametrize("mode", SANDBOXES)
def test_a_sandbox_cannot_swap_its_results_folder_or_its_job(tmp_path, mode):
    """The folder the grader reads results from, and the job every fresh child reads, are the
    grader's: a child that could put a link to a classmate's results folder in place of its own
    would be graded on the classmate's work (their paths are in /proc where the fallback runs), and a
    job it rewrote could name another submission for the next child to load."""
    [outcome], _ = run_calls(hostile(tmp_path, SWAP), flatten_calls(), Limits(isolation=sandbox(mode)))
    assert outcome.status == "error" and "SWAPPED []" in outcome.message, outcome.message


IPC = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
made = [libc.shmget(0, 1 << 20, 0o1600), libc.msgget(0, 0o1600), libc.semget(0, 1, 0o1600)]  # IPC_PRIVATE, IPC_CREAT
assert min(made) >= 0, (made, ctypes.get_errno())
print('IPC MADE', made)
"""


@pytest.mark.parametrize("mode", SANDBOXES)
def test_no_ipc_object_outlives_its_sandbox(tmp_path, mode):
    """A System V shared memory segment outlives the process that made it (memory that no one would
    free, readable by the next sandbox of that uid): removed with the uid, as bubblewrap's IPC
    namespace ends with the sandbox."""
    [outcome], log = run_calls(hostile(tmp_path, IPC), flatten_calls(), Limits(isolation=sandbox(mode)))
    assert outcome.status == "ok" and "IPC MADE" in log, (outcome, log)
    assert [obj for uid in isolation.UIDS for obj in isolation.ipc_of(uid)] == []


STASH = """
import os
kept = []
for folder in ('/tmp', '/var/tmp', '/dev/shm', '/run/lock', '/var/lock'):
    try:
        with open(os.path.join(folder, 'stash-5e1f'), 'w') as f:
            f.write('for the next sandbox of this uid')
        kept.append(folder)
    except OSError:
        pass
print('KEPT', kept)
"""


def world_writable_folders() -> set[str]:
    """This host's folders any uid may write to: the root file system's, and /dev/shm."""
    found = subprocess.run(["find", "/", "-xdev", "(", "-path", "/proc", "-o", "-path", "/sys", ")", "-prune", "-o",
                            "-type", "d", "-perm", "-0002", "-print"], capture_output=True, text=True).stdout.split()
    return {os.path.realpath(p) for p in [*found, "/dev/shm"] if os.path.isdir(p)}


@pytest.mark.parametrize("mode", SANDBOXES)
def test_nothing_a_sandbox_leaves_in_a_world_writable_folder_reaches_the_next_one(tmp_path, mode):
    """A file left in /run/lock or /tmp would wait there for the next sandbox of that uid: a
    classmate's. Every world-writable folder of this host is one the grader empties of the uid's."""
    assert world_writable_folders() <= {os.path.realpath(p) for p in isolation.SHARED_TMP}
    [outcome], log = run_calls(hostile(tmp_path, STASH), flatten_calls(), Limits(isolation=sandbox(mode)))
    assert outcome.status == "ok" and "KEPT" in log, (outcome, log)
    assert not [p for p in isolation.SHARED_TMP if os.path.exists(os.path.join(p, "stash-5e1f"))]


LOGS = """
import os
read = []
for path in [os.path.join(os.getcwd(), '..', '..', 'log.txt')]:  # the fallback's: a classmate's is at the same place
    try:
        open(path).read(1)
        read.append(path)
    except OSError:
        pass
raise RuntimeError(f'READ {read}')
"""


@pytest.mark.parametrize("mode", SANDBOXES)
def test_no_log_is_readable_from_a_sandbox(tmp_path, mode):
    """What a submission prints is the instructor's record: no log is readable from a sandbox (the
    fallback's child shares /tmp with the grader, where its classmates' logs are too)."""
    [outcome], _ = run_calls(hostile(tmp_path, LOGS), flatten_calls(), Limits(isolation=sandbox(mode)))
    assert outcome.status == "error" and "READ []" in outcome.message, outcome.message


# --- the grader's own resources ---

@pytest.mark.parametrize("mode", SANDBOXES)
def test_huge_output_is_kept_as_a_tail_without_reading_it_whole(tmp_path, mode):
    import resource

    code = "import sys\nfor _ in range(200):\n    sys.stdout.write('x' * 10**6 + '\\n')\nprint('THE END')"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    [outcome], log = run_calls(hostile(tmp_path, code), flatten_calls(), Limits(isolation=sandbox(mode)))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert outcome.status == "ok" and log.rstrip().endswith("THE END") and len(log) <= 2000
    assert grown_mb < 100, f"the grader grew by {grown_mb:.0f} MB reading a 200 MB log"


@pytest.mark.parametrize("mode", SANDBOXES)
def test_a_result_too_large_is_refused_before_it_is_loaded(tmp_path, mode):
    code = "return torch.zeros(10 * 2**20)  # 40 MB"
    root = hostile(tmp_path, code)
    patched = root / "shared" / "layers.py"
    if "import torch" not in patched.read_text():
        patched.write_text("import torch\n" + patched.read_text())
    [outcome], _ = run_calls(root, flatten_calls(), Limits(isolation=sandbox(mode), result_mb=16))
    assert outcome.status == "error" and "more than the 16 MB a result may be" in outcome.message


@pytest.mark.parametrize("mode", SANDBOXES)
def test_writing_past_the_disk_limit_is_stopped(tmp_path, mode):
    code = """
    import os, sys
    for i in range(100):
        with open(os.path.join(sys.argv[2], f'junk{i}'), 'wb') as f:
            f.write(b'0' * 2**20)
    """
    [outcome], _ = run_calls(hostile(tmp_path, code), flatten_calls(), Limits(isolation=sandbox(mode), disk_mb=20))
    assert outcome.status == "error" and ("more than 20 MB" in outcome.message or "File size" in outcome.message
                                          or "SIGXFSZ" in outcome.message), outcome.message


ESCAPES = r"""
print('\x1b[2J\x1b[H\x1b]0;pwned\x07All 7 public checks passed\r\x1b[1A\x08')
raise ValueError('\x1b[31mall good\x1b[0m\x07')
"""


@pytest.mark.parametrize("mode", SANDBOXES)
def test_terminal_escapes_never_reach_the_terminal(tmp_path, mode, capsys):
    root = hostile(tmp_path, ESCAPES)
    assert grader_main(["grade", str(root), "--skip-loss", "--stage", "2", "--isolation", sandbox(mode),
                        "--json", str(tmp_path / "r.json")]) == 1
    out = capsys.readouterr().out
    assert "All 7 public checks passed" in out and "ValueError: all good" in out
    assert not [c for c in out if ord(c) < 32 and c not in "\n\t"], repr(out[-500:])
    assert f"sandbox: {mode}" in out and '"isolation": "%s"' % mode in (tmp_path / "r.json").read_text()


def test_clean_keeps_text_newlines_and_tabs():
    assert clean("a\tb\nc\x1b[2Jd\x1b]0;title\x07e\rf\x00") == "a\tb\ncdef"
    assert clean("line\r\nnext") == "line\nnext"


def test_the_log_tail_is_read_from_the_end(tmp_path, monkeypatch):
    """Of a 10 MB log, the grader reads 4 bytes for each character it keeps, from the end."""
    from makemore_wavenet.grader import sandbox as sb

    log = tmp_path / "log.txt"
    log.write_bytes(b"x" * 10**7 + b"\x1b[2Jend\n")
    read = []

    class Counting:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def __getattr__(self, name):
            return getattr(self.f, name)

        def read(self, *args):
            data = self.f.read(*args)
            read.append(len(data))
            return data

    monkeypatch.setattr(sb, "open", lambda *a, **k: Counting(open(*a, **k)), raising=False)
    assert tail(log, 10) == "xxxxxxend\n" and sum(read) <= 40


# --- time ---

SLOW = """
import builtins
builtins._calls = getattr(builtins, '_calls', 0) + 1
if builtins._calls > 1:
    import time
    time.sleep(60)
"""


@pytest.mark.parametrize("mode", SANDBOXES)
def test_a_submission_that_is_slow_in_every_call_runs_out_of_its_budget(tmp_path, mode):
    """Each call under its own limit, but the submission's total budget ends it; earlier results kept."""
    start = time.monotonic()
    outcomes, _ = run_calls(hostile(tmp_path, SLOW), flatten_calls(4),
                            Limits(seconds=50, total_seconds=12, isolation=sandbox(mode)))
    assert time.monotonic() - start < 30
    assert [o.status for o in outcomes] == ["ok", "timeout", "timeout", "timeout"]
    assert "time budget (12 s" in outcomes[1].message and "during this check" in outcomes[1].message
    assert all("ran out before this check" in o.message for o in outcomes[2:])


def test_the_budget_spans_both_rounds_and_grows_with_training_limits():
    session = Session(Limits(isolation="none"))
    assert session.budget == 600
    session.add([Call(probes.flatten, {}), Call(probes.stage_weights, {}, seconds=300)])
    assert session.budget == 600 + 2 * 300
    assert Session(Limits(isolation="none", total_seconds=5)).budget == 5


# --- processes and the network ---

BOMB = """
import os, time
{name_me}
while True:
    if os.fork() == 0:
        time.sleep(120)
        os._exit(0)
"""


@pytest.mark.parametrize("mode", SANDBOXES)
def test_a_fork_bomb_is_contained_and_cleaned_up(tmp_path, mode):
    marker = "fb" + secrets.token_hex(6)
    calls = flatten_calls() + [Call(probes.embedding, {"ix": torch.zeros(2, 3, dtype=torch.long), "seed": 0})]
    start = time.monotonic()
    outcomes, _ = run_calls(hostile(tmp_path, BOMB.format(name_me=NAME_ME.format(marker=marker))), calls,
                            Limits(seconds=30, processes=64, isolation=sandbox(mode)))
    assert time.monotonic() - start < 60
    assert outcomes[0].status == "error" and "Resource temporarily unavailable" in outcomes[0].message
    assert outcomes[1].status == "ok"  # the next call, in a fresh child: nothing of the bomb is left
    assert named(marker) == [] and named(marker, zombies=True) == []  # the fallback reaps its orphans


HOG = """
import os, time
{name_me}
for _ in range(16):  # each a session of its own: the kernel's fair share is per session (autogroup)
    if os.fork() == 0:
        os.setsid()
        while True:
            pass
time.sleep(60)
"""


MEMORY_BOMB = """
import os, time
{name_me}
for _ in range(5):
    if os.fork() == 0:
        held = b'x' * (700 << 20)  # written: its own
        time.sleep(60)
        os._exit(0)
time.sleep(60)
"""


@pytest.mark.parametrize("mode", SANDBOXES)
@pytest.mark.parametrize("bomb, limits, says", [
    (HOG, {}, "cores busy"),
    (MEMORY_BOMB, {"memory_mb": 3072}, "MB together"),
], ids=["spinning processes", "forks that each hold memory"])
def test_a_sandbox_is_held_to_its_share_of_the_machine_as_a_whole(tmp_path, mode, bomb, limits, says):
    """No cgroups give each sandbox its share here, and the limits of one process do not bound many:
    sixteen spinning processes, each a session of its own (the kernel shares the cores fairly between
    sessions, so that is how a sandbox takes more than its share), keep every core busy and starve the
    submissions graded beside them; five
    forks each under the address-space limit hold more memory together. The call is stopped (its
    sandbox used more than MAX_CORES over CPU_WINDOW, or held more than memory_mb), long before its
    time limit, and nothing of it is left; the next call, in a fresh child, runs."""
    marker = "bomb" + secrets.token_hex(5)
    calls = flatten_calls() + [Call(probes.embedding, {"ix": torch.zeros(2, 3, dtype=torch.long), "seed": 0})]
    start = time.monotonic()
    outcomes, _ = run_calls(hostile(tmp_path, bomb.format(name_me=NAME_ME.format(marker=marker))), calls,
                            Limits(seconds=60, isolation=sandbox(mode), **limits))
    assert time.monotonic() - start < 40
    assert outcomes[0].status == "error" and says in outcomes[0].message, outcomes[0]
    assert outcomes[1].status == "ok"
    assert named(marker) == [] and named(marker, zombies=True) == []


COMPILER = """
import subprocess
for _ in range(6):  # as inductor runs g++, and g++ its cc1plus: one process after another, each a second busy
    subprocess.run(["/bin/sh", "-c", "sh -c 'i=0; while [ $i -lt 1200000 ]; do i=$((i+1)); done'; true"])
"""


@pytest.mark.parametrize("mode", SANDBOXES)
def test_a_compilers_processes_one_after_another_count_once(tmp_path, mode):
    """A compiled loss check runs a compiler: processes that each exit, reaped by their parents, whose
    time then shows in their parents' reaped children's. One core's work is counted as one core's
    (before, a process seen alive and then in its parent's children's time counted twice, and stopped
    the check as 2 cores busy)."""
    outcomes, _ = run_calls(hostile(tmp_path, COMPILER), flatten_calls(), Limits(seconds=60, isolation=sandbox(mode)))
    assert outcomes[0].status == "ok", outcomes[0]


FILL_TMP = """
import os
for i in range(3):  # each file under the size limit of one file, together over a folder's
    with open(f'/tmp/fill-{os.getpid()}-{i}', 'wb') as f:
        for _ in range(300):
            f.write(b'x' * (1 << 20))
import time
time.sleep(60)
"""


@pytest.mark.parametrize("mode", SANDBOXES)
def test_filling_the_shared_temporary_folders_is_stopped(tmp_path, mode):
    """The fallback's /tmp is the host's, which the submissions graded beside it need too: what its
    uid writes there counts against --disk like its own folders (bubblewrap's /tmp is a tmpfs of that
    size of its own), and none of it is left."""
    before = set(os.listdir("/tmp"))
    start = time.monotonic()
    [outcome], _ = run_calls(hostile(tmp_path, FILL_TMP), flatten_calls(),
                             Limits(seconds=60, disk_mb=512, isolation=sandbox(mode)))
    assert time.monotonic() - start < 40 and outcome.status == "error", outcome
    assert "shared temporary folders" in outcome.message or "No space left" in outcome.message, outcome.message
    assert not [name for name in set(os.listdir("/tmp")) - before if name.startswith("fill-")]


CONNECT = """
import socket
import subprocess
for family, address in ((socket.AF_INET, ('127.0.0.1', {port})), (socket.AF_UNIX, {abstract!r})):
    try:
        with socket.socket(family) as s:
            s.settimeout(3)
            s.connect(address)
            s.sendall(b'leaked')
        raise RuntimeError(f'CONNECTED to {{address}}')
    except OSError as err:
        print('no network:', family.name, err)
a, b = socket.socketpair()  # within the process: still there
a.close()
b.close()
"""


@pytest.mark.parametrize("mode", SANDBOXES)
def test_no_socket_reaches_out_of_a_sandbox(tmp_path, mode):
    """Neither a TCP port on localhost (a Dask scheduler's, any service's) nor an abstract Unix socket
    (no file permission guards one) is reachable: bubblewrap's network namespace is empty, and in both
    sandboxes the seccomp filter refuses socket() (socketpair stays), so that the fallback, which
    shares the host's network, has none either. Every report says so."""
    mode = sandbox(mode)
    abstract = "\0grader-test-" + secrets.token_hex(6)
    with socket.socket() as server, socket.socket(socket.AF_UNIX) as local:
        server.bind(("127.0.0.1", 0))
        local.bind(abstract)
        for listener in (server, local):
            listener.listen()
            listener.settimeout(0.1)
        code = CONNECT.format(port=server.getsockname()[1], abstract=abstract)
        report = grade(hostile(tmp_path, code), exercise_checks(mode))
        for listener in (server, local):
            with pytest.raises(socket.timeout):
                listener.accept()
    assert report.isolation == mode and report.network_open is False and "no network" in report.table()
    assert {r.status for r in rows(report, "2.2")} == {"pass"}, report.table(every_check=True)
    assert "no network: AF_INET [Errno 1]" in report.log and "no network: AF_UNIX [Errno 1]" in report.log


USERNS = """
import ctypes, os, platform, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)
made = []
pid = os.fork()
if pid == 0:
    os._exit(0 if libc.unshare(0x10000000) == 0 else ctypes.get_errno())
made.append(('unshare(CLONE_NEWUSER)', os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])))
clone = {'x86_64': 56, 'aarch64': 220}.get(platform.machine())
if clone:
    pid = libc.syscall(clone, 0x10000000 | 17, 0, 0, 0, 0)  # CLONE_NEWUSER | SIGCHLD, fork-like
    if pid == 0:
        os._exit(0)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) if pid > 0 else -ctypes.get_errno()
    made.append(('clone(CLONE_NEWUSER)', code))
shell = subprocess.run(['/usr/bin/unshare', '--user', '--map-root-user', 'id', '-u'], capture_output=True, text=True)
made.append(('unshare --user', shell.returncode, shell.stdout.strip(), shell.stderr.strip()[-80:]))
ran = []
thread = threading.Thread(target=ran.append, args=(1,))
thread.start()
thread.join()
raise RuntimeError(f'MADE {made} THREAD {ran}')
"""


@pytest.mark.parametrize("mode", SANDBOXES)
def test_no_user_namespace_can_be_made_in_a_sandbox(tmp_path, mode):
    """In a user namespace of its own a process is root: it may mount, make namespaces of every kind,
    and reach far more of the kernel. A seccomp filter refuses unshare and clone with CLONE_NEWUSER
    (EPERM, 1), the unshare command included; threads and subprocesses still work."""
    [outcome], _ = run_calls(hostile(tmp_path, USERNS), flatten_calls(), Limits(isolation=sandbox(mode)))
    assert outcome.status == "error" and "MADE" in outcome.message, outcome.message
    assert "('unshare(CLONE_NEWUSER)', 1)" in outcome.message, outcome.message
    assert "('clone(CLONE_NEWUSER)', -1)" in outcome.message or "clone(" not in outcome.message, outcome.message
    assert "('unshare --user', 1, ''," in outcome.message and "Operation not permitted" in outcome.message
    assert "THREAD [1]" in outcome.message


KEYS = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
calls = {'x86_64': (248, 240), 'aarch64': (217, 180)}[os.uname().machine]  # add_key, mq_open
key = libc.syscall(calls[0], b'user', b'stash', b'for the next sandbox', 20, -4)  # KEY_SPEC_USER_KEYRING
key_errno = ctypes.get_errno()
queue = libc.syscall(calls[1], b'stash', 0o100 | 2, 0o600, None)  # O_CREAT | O_RDWR
raise RuntimeError(f'KEPT key {key} errno {key_errno} queue {queue} errno {ctypes.get_errno()}')
"""


@pytest.mark.parametrize("mode", SANDBOXES)
def test_no_keyring_or_message_queue_keeps_anything_for_the_next_sandbox(tmp_path, mode):
    """A key in the uid's keyring and a POSIX message queue outlive the processes that made them: in
    the fallback, the next sandbox of that uid (a classmate's) would find them. Both refused (EPERM)."""
    [outcome], _ = run_calls(hostile(tmp_path, KEYS), flatten_calls(), Limits(isolation=sandbox(mode)))
    assert "KEPT key -1 errno 1 queue -1 errno 1" in outcome.message, outcome.message


def test_the_seccomp_filter_allows_all_but_what_it_names():
    import struct

    program = isolation.seccomp_filter()
    if not program:
        pytest.skip("no seccomp filter for this architecture")
    assert len(program) % 8 == 0 and len(program) // 8 < 64
    instructions = list(struct.iter_unpack("=HBBI", program))
    returns = [k for code, _, _, k in instructions if code == 0x06]
    assert returns[-1] == 0x7FFF0000 and set(returns[:-1]) == {0x00050001, 0x00050026}  # allow; EPERM, ENOSYS
    compared = {k for code, _, _, k in instructions if code == 0x15}  # the system calls it names
    assert {isolation.SECCOMP_ARCH[os.uname().machine][1][name] for name in ("unshare", "clone", "socket")} < compared


# --- choosing the isolation ---

def test_the_hidden_tier_refuses_to_run_unisolated_unless_allowed(tmp_path):
    root = hostile(tmp_path, "pass")
    options = Options(tier="hidden", stages=(2,), losses=False, limits=Limits(isolation="none"))
    with pytest.raises(GraderError, match="--allow-unisolated"):
        grade(root, options)
    allowed = Options(tier="hidden", stages=(2,), losses=False, limits=Limits(isolation="none", allow_unisolated=True))
    report = grade(root, allowed)
    assert report.isolation == "none" and "--allow-unisolated" in report.isolation_note
    assert "sandbox: none, network open (run without isolation: allowed with --allow-unisolated" in report.table()


def test_grade_all_stops_at_once_when_the_hidden_tier_would_run_unisolated(tmp_path, capsys):
    (tmp_path / "class" / "someone").mkdir(parents=True)
    assert grader_main(["grade-all", str(tmp_path / "class"), "--isolation", "none",
                        "--gradebook", str(tmp_path / "book.db")]) == 3
    assert "--allow-unisolated" in capsys.readouterr().err and not (tmp_path / "book.db").exists()


def test_the_student_editions_self_check_needs_no_sandbox(monkeypatch):
    from makemore_wavenet.shared import edition

    monkeypatch.setattr(edition, "EDITION", "student")
    chosen = isolation.resolve("auto")
    assert chosen.mode == "none" and "no sandbox needed" in chosen.note


def test_auto_takes_bubblewrap_where_it_runs():
    sandbox("bwrap")
    assert isolation.resolve("auto").mode == "bwrap" and not isolation.resolve("auto").network_open


def test_an_unknown_or_impossible_isolation_is_a_grader_error(monkeypatch):
    with pytest.raises(GraderError, match="none of"):
        Session(Limits(isolation="chroot"))
    monkeypatch.setattr(isolation, "_bwrap_state", lambda: ("bwrap is not installed", False))
    with pytest.raises(GraderError, match="bubblewrap cannot run here: bwrap is not installed"):
        Session(Limits(isolation="bwrap"))


@pytest.mark.parametrize("value", [
    torch.zeros(1).expand(10**9), torch.zeros(3, device="meta"), torch.eye(3).to_sparse(),
    {"deep": [[torch.ones(2)]] * 2 + [torch.zeros(1).expand(10**6)]},
], ids=["expanded", "meta", "sparse", "nested expanded"])
def test_a_result_of_tensors_that_are_not_plain_numbers_is_refused_as_it_is_read(tmp_path, value):
    """A billion numbers in a few bytes, a meta or a sparse tensor: each would break or bloat the
    grading process that compares it, so the result is an error before anything uses it."""
    from makemore_wavenet.grader.sandbox import _load

    torch.save({"status": "ok", "value": value}, tmp_path / "0.pt")
    outcome = _load(tmp_path / "0.pt", Limits())
    assert outcome.status == "error" and "not a dense CPU tensor" in outcome.message
    torch.save({"status": "ok", "value": {"x": torch.ones(3), "n": [1, 2.0, "s"]}}, tmp_path / "1.pt")
    assert _load(tmp_path / "1.pt", Limits()).status == "ok"


def test_a_log_past_its_cap_is_freed_in_place_keeping_its_tail(tmp_path):
    """The beginning of a huge log is freed (a hole punched) while the child may still be appending:
    no truncation, so nothing written meanwhile is lost, and the tail reads as before."""
    from makemore_wavenet.grader.sandbox import _free_all_but_the_tail

    log = tmp_path / "log.txt"
    log.write_bytes(b"x" * 50_000_000 + b"THE END\n")
    size = log.stat().st_size
    _free_all_but_the_tail(log, size - 16_000)
    with open(log, "ab") as f:  # the child goes on appending at the end
        f.write(b"AFTER\n")
    assert log.stat().st_blocks * 512 < 1_000_000 and log.stat().st_size == size + 6
    assert tail(log).rstrip().endswith("THE END\nAFTER")
