"""End to end, as people run it (marked e2e: left out of `nox`, run by `nox -s e2e` or `pytest -m e2e`).

A student's fresh machine: the edition installed as its README says, with its own dependencies, into
a venv that sees nothing of this interpreter's packages, grading itself with its own grader. The
instructor's: a clean copy of the checkout installed the same way collects its tests, and the
README's `grade-all` command fills the leaderboards of a class. Each test makes its own venvs and
trains for real: minutes, not seconds."""

import csv
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from makemore_wavenet.grader.__main__ import main as grader_main
from makemore_wavenet.stages import all_stages

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"  # the CPU build, on the course machines' disk (README)


def clean_env(venv: Path | None = None) -> dict:
    """This run's environment without what would let a child see its packages: no PYTHONPATH, no
    active venv (nox's), and the given venv's bin first on PATH, as after `source venv/bin/activate`."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.pop("__PYVENV_LAUNCHER__", None)
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    return env


def run(args, cwd: Path, env: dict, timeout: float = 900, check: bool = False) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert out.returncode == 0, f"{args} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def fresh_venv(path: Path) -> Path:
    """A venv of its own (no system site packages) holding torch==2.13.0, as a fresh machine would;
    returns its python."""
    run([sys.executable, "-m", "venv", path], cwd=path.parent, env=clean_env(), check=True)
    python = path / "bin" / "python"
    run([python, "-m", "pip", "install", "-q", TORCH], cwd=path.parent, env=clean_env(path), check=True)
    return python


def assert_sees_only_itself(python: Path, venv: Path, cwd: Path, env: dict) -> None:
    """The venv's python finds nothing in this interpreter's site-packages (no .pth leads there)."""
    paths = json.loads(run([python, "-c", "import json, sys; print(json.dumps(sys.path))"], cwd, env,
                           check=True).stdout)
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    assert not ours & set(paths), paths
    assert not [p for p in paths if "site-packages" in p and not p.startswith(str(venv))], paths


def assert_nothing_done(out: subprocess.CompletedProcess, report: Path | None = None) -> None:
    """A fresh edition's grading: exit 1 (never 3), every row NOT DONE or waiting on another
    exercise, and not one check passed."""
    assert out.returncode == 1, f"exit {out.returncode}, want 1\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    assert "PUBLIC checks only" in out.stdout and "hidden checks were not run" in out.stdout
    rows = [line for line in out.stdout.splitlines() if re.match(r"^(\d\.\d|stage \d|notebook|submission)\s", line)]
    assert rows, out.stdout
    for line in rows:
        assert "NOT DONE" in line or "waits on" in line, f"a row neither NOT DONE nor waiting:\n{line}"
        assert not re.search(r"\s[1-9]\d*/\d+\s", line), f"a point without work:\n{line}"
    summary = re.search(r"^(\d+) of (\d+) public checks passed", out.stdout, re.M)
    assert summary and summary[1] == "0", out.stdout[-1500:]
    if report is not None:
        results = json.loads(report.read_text())["results"]
        assert results and all(r["status"] != "pass" for r in results)
        assert all(r["status"] == "not done" or "waits on" in r["message"] for r in results), \
            [r for r in results if r["status"] != "not done" and "waits on" not in r["message"]]


def test_a_fresh_student_edition_installed_as_its_readme_says_grades_itself(tmp_path):
    """The student's first steps on a fresh machine: the edition's README installs torch and the
    edition (with its dependencies) into a clean venv, and the edition's own grader then grades it:
    every row not done or waiting, 0 points, exit 1; a notebook the same; no hidden tier."""
    edition = tmp_path / "student"
    assert grader_main(["release", "--out", str(edition)]) == 0
    readme = (edition / "README.md").read_text()
    assert TORCH in readme and "nox -s grade" in readme
    assert (edition / "grader" / "expected" / "public.pt").is_file()

    venv = tmp_path / "venv"
    python = fresh_venv(venv)
    env = clean_env(venv)
    # the README's first step (nox), and its `pip install -e .` for the makemore command: dependencies included
    run([python, "-m", "pip", "install", "-q", "nox"], tmp_path, env, check=True)
    run([python, "-m", "pip", "install", "-q", "-e", "."], edition, env, check=True)
    assert_sees_only_itself(python, venv, edition, env)
    where = run([python, "-c", "import makemore_wavenet.grader as g; print(g.__file__)"], tmp_path, env).stdout
    assert where.startswith(str(edition)), where
    splits = run([python, "-c", "from makemore_wavenet.shared.data import SPLITS; print(SPLITS)"], tmp_path, env)
    assert splits.stdout.strip() == "('train', 'val')", splits.stderr  # the edition never builds the test split

    def grader(*args):
        return run([python, "-m", "makemore_wavenet.grader", *args], edition, env)

    out = grader("grade", "--tier", "hidden", "--skip-loss")
    assert out.returncode == 3 and "hidden checks are not part of this edition" in out.stderr, out.stderr
    # exercise checks alone: the rows a student sees first
    assert_nothing_done(grader("grade", ".", "--skip-loss", "--json", tmp_path / "skip.json"), tmp_path / "skip.json")
    # what the README says, in order: every stage with its loss checks, one stage, a notebook
    assert_nothing_done(grader("grade", ".", "--json", tmp_path / "all.json"), tmp_path / "all.json")
    # the edition ships no data, windows or training loop of its own: its loss checks use the student's
    for result in json.loads((tmp_path / "all.json").read_text())["results"]:
        if result["check"].startswith("val loss"):
            assert all(f"{ex} (" in result["message"] for ex in ("1.2", "1.3", "3.1")), result
    assert_nothing_done(grader("grade", ".", "--stage", "4", "--json", tmp_path / "4.json"), tmp_path / "4.json")
    assert_nothing_done(grader("grade", "notebooks/stage4.ipynb", "--json", tmp_path / "nb.json"),
                        tmp_path / "nb.json")
    # and through nox, as printed: its session venv sees the student's venv (torch), never this interpreter's
    out = run([venv / "bin" / "nox", "-s", "grade"], edition, env)
    assert_nothing_done(out)


def test_a_clean_copy_of_the_checkout_declares_what_its_tests_import(tmp_path):
    """The checkout as a clone holds it (tracked and new files, nothing ignored), installed with its
    test extra into a clean venv: every test module imports (collection finds no ImportError)."""
    listed = run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"], ROOT,
                 clean_env())
    if listed.returncode != 0:
        pytest.skip("not a git checkout: no clone to copy")
    copy = tmp_path / "clone"
    for name in filter(None, listed.stdout.split("\0")):
        source = ROOT / name
        if source.is_file():  # listed but deleted in the working tree: not in a clone of it either
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    assert not (copy / ".nox").exists() and (copy / "tests" / "conftest.py").is_file()

    venv = tmp_path / "venv"
    python = fresh_venv(venv)
    env = clean_env(venv)
    run([python, "-m", "pip", "install", "-q", "-e", ".[test]"], copy, env, check=True)
    assert_sees_only_itself(python, venv, copy, env)
    out = run([python, "-m", "pytest", "--co", "-q", "-m", ""], copy, env)  # -m "": the e2e tests too
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert re.search(r"^\d+ tests collected in ", out.stdout, re.M), out.stdout[-2000:]  # no ", N errors"


def readme_class_command() -> list[str]:
    """The README's `grade-all` command, word for word."""
    lines = [line.split("#")[0].strip() for line in (ROOT / "README.md").read_text().splitlines()]
    commands = [line for line in lines if re.match(r"^python -m makemore_wavenet\.grader grade-all\b", line)]
    assert len(commands) == 1, commands
    return shlex.split(commands[0])


def test_the_readmes_class_command_fills_the_leaderboards_with_tied_ranks(tmp_path):
    """Three students hand in the same (the master's) work: the README's grade-all command, on the
    quick schedule, grades them into the gradebook, and every stage's public and private board holds
    all three at rank 1 (equal losses share a rank). All eight stages: about 2 minutes on 2 cores."""
    command = readme_class_command()
    assert "CLASS_FOLDER" in command
    # as printed but on the quick schedule (the printed one, if any, replaced): the full one trains for an hour
    if "--schedule" in command:
        at = command.index("--schedule")
        del command[at:at + 2]
    command = [sys.executable if word == "python" else "class" if word == "CLASS_FOLDER" else word
               for word in command] + ["--schedule", "quick"]
    students = ("ada", "grace", "alan")
    for student in students:
        for name in ("shared", "stages"):
            shutil.copytree(ROOT / name, tmp_path / "class" / student / name,
                            ignore=shutil.ignore_patterns("__pycache__"))

    out = run(command, tmp_path, clean_env(), timeout=1200)  # cwd tmp_path: its gradebook.db lands there
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "3 submissions graded" in out.stdout, out.stdout
    # the same work, all of it right: every student passes every check (else the boards below miss them)
    table = dict(line.split()[:2] for line in out.stdout.splitlines() if line.split()[:1] in ([s] for s in students))
    assert len(table) == 3 and all(a == b for a, b in (v.split("/") for v in table.values())), out.stdout
    gradebook = command[command.index("--gradebook") + 1] if "--gradebook" in command else "gradebook.db"
    assert (tmp_path / gradebook).is_file()

    board = run([sys.executable, "-m", "makemore_wavenet.grader", "leaderboard", "--gradebook", gradebook,
                 "--format", "csv"], tmp_path, clean_env(), check=True)
    rows = list(csv.DictReader(io.StringIO(board.stdout)))
    boards = {}
    for row in rows:
        boards.setdefault((int(row["stage"]), row["board"]), []).append(row)
    for stage in all_stages():
        for name in ("public", "private"):  # grade-all grades the hidden tier: test losses too
            entries = boards.get((stage, name), [])
            assert len(entries) == 3, f"stage {stage} {name}: {entries}\n{board.stdout}"
            assert {e["rank"] for e in entries} == {"1"}, f"stage {stage} {name}: {entries}"
            assert len({e["loss"] for e in entries}) == 1 and len({e["student"] for e in entries}) == 3
    # the terminal boards, as an instructor reads them: no board is empty
    terminal = run([sys.executable, "-m", "makemore_wavenet.grader", "leaderboard", "--gradebook", gradebook],
                   tmp_path, clean_env(), check=True)
    assert "(no entries yet)" not in terminal.stdout and "not ranked" not in terminal.stdout, terminal.stdout
