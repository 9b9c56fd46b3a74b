"""The student edition's notebooks as students open them (marked e2e: `nox -s e2e`, `pytest -m e2e`).

The edition is released and installed as its README says into a venv of its own that sees nothing
of this interpreter's packages (torch==2.13.0 and ipykernel, then `pip install -e .` with its
dependencies), and a Jupyter kernel of that venv is registered (`ipykernel install`).
Each shipped notebook, filled with the master's solutions, then runs top to bottom in that kernel
(nbclient), which must import the edition, not the master. Each notebook's grading hint runs as
printed, on the fresh notebook and on the filled one: it grades (exit 0 or 1), never exits 2 or 3.
"""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from test_e2e import assert_sees_only_itself, fresh_venv
from test_notebooks import fill_in

from makemore_wavenet.grader.exercises import exercises
from makemore_wavenet.stages import get_stage

pytestmark = pytest.mark.e2e

KERNEL = "makemore"  # the name the edition's README registers the kernel under
STAGES = sorted({ex.stage for ex in exercises().values()})


def clean_env() -> dict:
    """This run's environment without what would point a child at the master: no PYTHONPATH, no venv."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def run(args, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=clean_env(), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """The released edition, installed into a venv with a kernel of its own: its paths."""
    tmp = tmp_path_factory.mktemp("kernel")
    edition, venv = tmp / "student", tmp / "venv"
    assert run([sys.executable, "-m", "makemore_wavenet.grader", "release", "--out", edition], tmp).returncode == 0
    python = fresh_venv(venv)  # torch==2.13.0, nothing of this interpreter's
    for args in (["ipykernel"], ["-e", "."]):  # the README's two installs (jupyterlab left out: nbclient drives it)
        out = run([python, "-m", "pip", "install", "-q", *args], edition)
        assert out.returncode == 0, out.stderr
    assert_sees_only_itself(python, venv, edition, clean_env())
    # the README's `python -m ipykernel install --user --name makemore`, into a folder of the test's own
    out = run([python, "-m", "ipykernel", "install", "--prefix", tmp / "jupyter", "--name", KERNEL], tmp)
    assert out.returncode == 0, out.stderr
    return {"edition": edition, "python": python, "kernels": tmp / "jupyter" / "share" / "jupyter" / "kernels"}


def execute_in_kernel(nb: nbformat.NotebookNode, installed: dict) -> nbformat.NotebookNode:
    """Run every cell in the edition's kernel, from the edition's folder; a cell that raises fails."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    specs = KernelSpecManager(kernel_dirs=[str(installed["kernels"])])
    km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)
    client = NotebookClient(nb, km=km, timeout=600, resources={"metadata": {"path": str(installed["edition"])}})
    return client.execute(env=clean_env())


@pytest.mark.parametrize("stage", STAGES)
def test_a_filled_notebook_runs_top_to_bottom_in_the_editions_kernel(stage, installed):
    path = installed["edition"] / "notebooks" / f"stage{stage}.ipynb"
    nb = fill_in(nbformat.read(path, as_version=4))
    nb.cells.append(nbformat.v4.new_code_cell(
        "import makemore_wavenet.shared as shared\nfrom makemore_wavenet.shared.edition import is_student\n"
        "print(shared.__file__, is_student())"))
    done = execute_in_kernel(nb, installed)
    seen = "".join(o.get("text", "") for o in done.cells[-1].outputs)
    assert seen.startswith(str(installed["edition"])) and seen.strip().endswith("True"), seen


@pytest.mark.parametrize("stage", STAGES)
def test_the_grading_hint_runs_as_printed(stage, installed, tmp_path):
    """From the edition's folder, with the edition's python: on the fresh notebook, then on it filled,
    where none of the stage's own exercises is NOT DONE for itself any more (stage 6's CONFIG, a
    setting, included: its module imports with the edition's stub, and the notebook's value takes its
    place). A row may still be not done for an exercise of an earlier stage, which the package beside
    the notebook holds as a stub in a fresh edition (stage 4's model is built with exercise 2.1's Embedding)."""
    edition, python = installed["edition"], installed["python"]
    path = edition / "notebooks" / f"stage{stage}.ipynb"
    fresh = nbformat.read(path, as_version=4)
    [command] = re.findall(r"`(python -m makemore_wavenet.grader [^`]+)`", fresh.cells[-1].source)
    argv = [python, *shlex.split(command)[1:], "--json", str(tmp_path / "report.json")]
    own = {ex.id for ex in get_stage(stage).exercises}
    try:
        for filled, nb in enumerate((fresh, fill_in(nbformat.reads(nbformat.writes(fresh), as_version=4)))):
            nbformat.write(nb, path)
            out = run(argv, edition, timeout=900)
            assert out.returncode in (0, 1), f"{command} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
            assert "PUBLIC checks only" in out.stdout
            results = json.loads((tmp_path / "report.json").read_text())["results"]
            undone = [r for r in results if r["row"] in own and f"exercise {r['row']} (" in r["message"]]
            assert not (filled and undone), out.stdout
    finally:
        nbformat.write(fresh, path)
