"""The sessions people run: `nox` runs the lint and the tests; `nox -l` lists the rest.

Every session's virtualenv also sees the packages of the Python that runs nox (a venv's or the
system's), so a torch that is already installed there (course machines and CI install the CPU
build, `pip install torch==2.13.0`) is reused instead of downloading another; on a machine without
torch, `pip install -e .` brings the default build (CUDA on Linux). Virtualenvs are reused between runs.
"""

import runpy
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
SHARED_NAMES = ROOT.parent / "shared" / "data" / "names.txt"  # the course's copy, beside the repo
# which edition this is, from its one marker (read as a file: the package is not installed yet)
STUDENT = runpy.run_path(str(ROOT / "shared" / "edition.py"))["is_student"]()

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["grade"] if STUDENT else ["lint", "tests"]


def install(session: nox.Session, *extras: str) -> None:
    """The project, editable, into the session's venv, which sees the packages of the Python that
    runs nox: after its own, through a .pth file (--system-site-packages would show the base
    interpreter's instead, and miss a venv's torch)."""
    site = session.run("python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", silent=True)
    runner = [path for path in sys.path if path.endswith(("site-packages", "dist-packages"))]
    Path(site.strip(), "nox-runner-packages.pth").write_text("\n".join(runner) + "\n")
    session.install("-e", f".[{','.join(extras)}]" if extras else ".")


def instructor_only(session: nox.Session) -> None:
    """The student edition has no tests, benchmarks or solutions to release: say so plainly."""
    if STUDENT:
        session.error("this session is for the instructor's edition; students run `nox -s grade`")


def names_env() -> dict:
    """Point the project at the course's copy of names.txt when it lies beside the repo."""
    return {"MAKEMORE_NAMES": str(SHARED_NAMES)} if SHARED_NAMES.is_file() else {}


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite, its files on 2 workers (pass pytest options after --, e.g. `nox -- -k layers`;
    `nox -- -n 0` for one process)."""
    instructor_only(session)
    install(session, "test")
    # `python -m`: the venv's python, which sees the project, even when pytest is the system's. Whole files
    # to a worker (loadfile): a file's module fixtures (a graded class, the edition) are built once
    session.run("python", "-m", "pytest", "-n", "2", "--dist", "loadfile", *session.posargs, env=names_env())


@nox.session
def e2e(session: nox.Session) -> None:
    """Run the slow end-to-end tests (marked e2e, left out of `nox`): the student edition installed into a
    fresh venv grading itself, a class graded into the leaderboards (`nox -s e2e -- -k class`)."""
    instructor_only(session)
    install(session, "test")
    session.run("python", "-m", "pytest", "-m", "e2e", *session.posargs, env=names_env())


@nox.session
def lint(session: nox.Session) -> None:
    """Check the code with ruff (its settings: [tool.ruff] in pyproject.toml)."""
    instructor_only(session)
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")


@nox.session
def train(session: nox.Session) -> None:
    """Train a stage: `nox -s train -- 4 --steps 20000` (see `makemore train --help`)."""
    install(session)
    session.run("makemore", "train", *(session.posargs or ["1"]), env=names_env())


@nox.session
def reproduce(session: nox.Session) -> None:
    """Train every stage with its full recipe on the compiled engine where it can (the plain engine
    otherwise), one process per core; print the wall time and write docs/results.md."""
    install(session)
    session.run("makemore", "reproduce", "--engine", "compiled", "--out", "docs/results.md", *session.posargs,
                env=names_env())


@nox.session
def challenge(session: nox.Session) -> None:
    """Train challenge entries (stage 8) under seeds 1-3, one run at a time on every core (as the
    rules time them), and tabulate them:
    `nox -s challenge -- entry ablations/no_gates` (default: the stage's own entry; see
    `makemore challenge --help`)."""
    install(session)
    entries = session.posargs or ["entry"]
    session.run("makemore", "challenge", *entries, "--seeds", "1", "2", "3", "--jobs", "1", env=names_env())


@nox.session
def bench(session: nox.Session) -> None:
    """Time per step of the trainer's engines against the lecture's loop, in the same run; 8 seeds at
    once against one; stage 7's time per prediction against stage 6's; what isolation costs, against
    an explicit `--isolation none` in the same run: seconds per sandboxed child, and a class's grading
    throughput from source (4 copies of the master, stages 1 and 4, quick schedule, --retrain; as
    root, for the sandboxes to run); a loss check trained compiled against eager (stage 6's on the
    full schedule, alone and for a class of 4: about 25 minutes). `nox -s bench -- --stages 1 6`
    passes options to the first; each script's --help says how to measure more."""
    instructor_only(session)
    install(session)
    session.run("python", "benchmarks/trainer_vs_lecture_loop.py", *session.posargs, env=names_env())
    session.run("python", "benchmarks/many_seeds.py", "--stages", "1", "6", env=names_env())
    session.run("python", "benchmarks/per_position.py", env=names_env())
    session.run("python", "benchmarks/isolation_cost.py", env=names_env())
    session.run("python", "benchmarks/grading_throughput.py", env=names_env())
    session.run("python", "benchmarks/compiled_grading.py", env=names_env())


@nox.session
def grade(session: nox.Session) -> None:
    """Grade this checkout with the public checks: `nox -s grade -- --stage 4`, or a notebook:
    `nox -s grade -- notebooks/stage4.ipynb` (see `python -m makemore_wavenet.grader grade --help`)."""
    install(session)
    args = session.posargs
    target = [] if args and not args[0].startswith("-") else ["."]
    session.run("python", "-m", "makemore_wavenet.grader", "grade", *target, *args, env=names_env())


@nox.session
def release(session: nox.Session) -> None:
    """Write the student edition into dist/student (stubs, notebooks, public checks only)."""
    instructor_only(session)
    install(session)
    session.run("python", "-m", "makemore_wavenet.grader", "release", *session.posargs, env=names_env())


@nox.session
def autograder(session: nox.Session) -> None:
    """Write a Gradescope autograder into dist/gradescope/autograder.zip: `nox -s autograder -- --stage 4`
    or `-- --challenge` (see `python -m makemore_wavenet.grader autograder --help`)."""
    instructor_only(session)
    install(session)
    args = session.posargs or ["--stage", "1"]
    out = [] if "--out" in args else ["--out", "dist/gradescope"]
    session.run("python", "-m", "makemore_wavenet.grader", "autograder", *out, *args, env=names_env())


@nox.session
def calibrate(session: nox.Session) -> None:
    """Set the loss thresholds from 8 seeds of every stage, trained at once: quick schedule by
    default, `nox -s calibrate -- --schedule full` for the full one (stages 1-7: about 25 minutes on 2
    cores; stage 8: about 20 minutes a seed on both cores, `-- --schedule full --stage 8 --seeds 3 --jobs 1`)."""
    instructor_only(session)
    install(session)
    session.run("python", "-m", "makemore_wavenet.grader", "calibrate", "--out", "grader", *session.posargs,
                env=names_env())


@nox.session
def leaderboard(session: nox.Session) -> None:
    """Print the per-stage leaderboards of gradebook.db: `nox -s leaderboard -- --format markdown`."""
    install(session)
    session.run("python", "-m", "makemore_wavenet.grader", "leaderboard", *session.posargs)
