"""The sandboxed child: loads a submission, runs probes on it, writes each result to a file.

    python -m makemore_wavenet.grader.child JOB OUT_DIR START

Runs calls START.. of JOB (a torch file: the submission's path and a list of (probe, kwargs)) and
writes OUT_DIR/<i>.pt after each, atomically, so that the parent keeps every result that came
before a crash or a hang. Everything the submission prints goes to this process's stdout/stderr,
which the parent stores as a log and never parses.

In the instructor's grading, a loss check trains the submission's model with the instructor's own
training loop: the installed (master) edition's shared/loop.py, loaded alone under a private name
before the submission's code is, so that nothing the submission defines or a notebook overlays
replaces it.
The student edition has no such reference: its self-check trains with the student's own code.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from pathlib import Path

import torch

_save, _replace = torch.save, os.replace  # held before any submission code can patch them
REFERENCE = "_grader_loop"  # the private name of the instructor's training loop (shared/loop.py) in the child


def load_reference():
    """The installed edition's training loop, shared/loop.py (one file that imports nothing of the
    project, and holds no exercise), under a private name; None in the student edition, whose
    installed package is the student's own code."""
    from makemore_wavenet.shared.edition import is_student

    if is_student():
        return None
    location = importlib.util.find_spec("makemore_wavenet.shared").submodule_search_locations
    spec = importlib.util.spec_from_file_location(REFERENCE, Path(list(location)[0]) / "loop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def use_submission(root: Path) -> None:
    """Make `makemore_wavenet.shared` and `makemore_wavenet.stages` import from `root`: the installed
    package's modules, already imported by the grader, are dropped first, so that none of them
    stands in for the submission's own."""
    import makemore_wavenet  # noqa: F401  (the namespace package, so the aliases have a parent)

    for name in [n for n in sys.modules if n.startswith(("makemore_wavenet.shared", "makemore_wavenet.stages"))]:
        del sys.modules[name]
    for name in ("shared", "stages"):
        _load_package(f"makemore_wavenet.{name}", root / name)


def _load_package(full: str, folder: Path) -> None:
    spec = importlib.util.spec_from_file_location(full, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module
    spec.loader.exec_module(module)


def describe(err: BaseException, root: Path | None = None) -> dict:
    """A result for an exception: not done, an exit, out of memory, or an error located at the
    innermost frame in the submission's own files (a notebook's cells included)."""
    if isinstance(err, NotImplementedError):
        return {"status": "not done", "message": str(err) or "NotImplementedError"}
    if isinstance(err, SystemExit):
        return {"status": "error", "message": f"the code called sys.exit({err.code!r})"}
    if isinstance(err, MemoryError) or "can't allocate memory" in str(err) or "not enough memory" in str(err):
        return {"status": "error", "message": f"out of memory: {type(err).__name__}: {str(err)[:200]}"}
    frames = traceback.extract_tb(err.__traceback__)
    where = next((_location(f, root) for f in reversed(frames) if _theirs(f.filename, root)), "")
    message = f"{type(err).__name__}: {str(err)[:500]}" + (f" (at {where})" if where else "")
    return {"status": "error", "message": message}


def _theirs(filename: str, root: Path | None) -> bool:
    if filename.startswith("<cell "):  # a notebook's code cell (notebook.execute)
        return True
    if root is None or root.suffix == ".ipynb":
        return False
    return Path(filename).resolve().is_relative_to(root)


def _location(frame: traceback.FrameSummary, root: Path | None) -> str:
    """'shared/layers.py:91', or a notebook's 'cell 3, line 12'."""
    if frame.filename.startswith("<"):
        return f"{frame.filename.strip('<>')}, line {frame.lineno}"
    return f"{Path(frame.filename).resolve().relative_to(root)}:{frame.lineno}"


def main(job_path: str, out_dir: str, start: str) -> None:
    job = torch.load(job_path, weights_only=True)
    torch.set_num_threads(1)
    submission = Path(job["submission"])
    try:
        reference = load_reference()
        if submission.suffix == ".ipynb":
            from . import notebook, probes

            namespace, problems = notebook.execute(submission)
            covered = notebook.overlay(namespace, notebook.exercise_targets(), notebook.defined_names(submission))
            probes.NOTEBOOK.update(namespace)
            print(f"[grader] notebook covers exercises {covered}; notes: {problems}", flush=True)
        else:
            use_submission(submission)
            from . import probes
        probes.REFERENCE = reference
    except BaseException as err:  # the submission does not even import: every call reports it
        failure = describe(err, submission)
        for i in range(int(start), len(job["calls"])):
            _write(Path(out_dir), i, failure)
        return
    (Path(out_dir) / f"ready.{start}").touch()  # loaded: a hang or death from here on is one call's
    for i in range(int(start), len(job["calls"])):
        name, kwargs = job["calls"][i]
        try:
            result = {"status": "ok", "value": probes.PROBES[name](**kwargs)}
        except BaseException as err:  # a student's exception, sys.exit or KeyboardInterrupt alike
            result = describe(err, submission)
        _write(Path(out_dir), i, result)


def _write(out_dir: Path, i: int, result: dict) -> None:
    tmp = out_dir / f"{i}.tmp"
    try:
        _save(result, tmp)
    except Exception as err:  # the probe returned something that does not serialize
        _save({"status": "error", "message": f"result could not be stored: {err}"}, tmp)
    _replace(tmp, out_dir / f"{i}.pt")


if __name__ == "__main__":
    main(*sys.argv[1:])
