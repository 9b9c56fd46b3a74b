"""The sandboxed child: loads a submission, runs probes on it, writes each result to a file.

    python -m makemore_wavenet.grader.child JOB OUT_DIR START

Runs calls START.. of JOB (a torch file: the submission's path and a list of (probe, kwargs)) and
writes OUT_DIR/<i>.pt after each, atomically, so that the parent keeps every result that came
before a crash or a hang. Everything the submission prints goes to this process's stdout/stderr,
which the parent stores as a log and never parses.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from pathlib import Path

import torch

_save, _replace = torch.save, os.replace  # held before any submission code can patch them


def use_submission(root: Path) -> None:
    """Make `makemore_wavenet.shared` and `makemore_wavenet.stages` import from `root`."""
    import makemore_wavenet  # noqa: F401  (the namespace package, so the aliases have a parent)

    for name in ("shared", "stages"):
        full = f"makemore_wavenet.{name}"
        spec = importlib.util.spec_from_file_location(full, root / name / "__init__.py",
                                                      submodule_search_locations=[str(root / name)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)


def describe(err: BaseException) -> dict:
    if isinstance(err, NotImplementedError):
        return {"status": "not done", "message": str(err) or "NotImplementedError"}
    if isinstance(err, SystemExit):
        return {"status": "error", "message": f"the code called sys.exit({err.code!r})"}
    if isinstance(err, MemoryError) or "can't allocate memory" in str(err) or "not enough memory" in str(err):
        return {"status": "error", "message": f"out of memory: {type(err).__name__}: {str(err)[:200]}"}
    frames = traceback.extract_tb(err.__traceback__)
    where = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames)
                  if "grader" not in Path(f.filename).parts), "")
    message = f"{type(err).__name__}: {str(err)[:500]}" + (f" (at {where})" if where else "")
    return {"status": "error", "message": message}


def main(job_path: str, out_dir: str, start: str) -> None:
    job = torch.load(job_path, weights_only=True)
    torch.set_num_threads(1)
    try:
        submission = Path(job["submission"])
        if submission.suffix == ".ipynb":
            from . import notebook, probes

            namespace, problems = notebook.execute(submission)
            covered = notebook.overlay(namespace, notebook.exercise_targets(), notebook.defined_names(submission))
            probes.NOTEBOOK.update(namespace)
            print(f"[grader] notebook covers exercises {covered}; notes: {problems}", flush=True)
        else:
            use_submission(submission)
            from . import probes
    except BaseException as err:  # the submission does not even import: every call reports it
        failure = describe(err)
        for i in range(int(start), len(job["calls"])):
            _write(Path(out_dir), i, failure)
        return
    (Path(out_dir) / f"ready.{start}").touch()  # loaded: a hang or death from here on is one call's
    for i in range(int(start), len(job["calls"])):
        name, kwargs = job["calls"][i]
        try:
            result = {"status": "ok", "value": probes.PROBES[name](**kwargs)}
        except BaseException as err:  # a student's exception, sys.exit or KeyboardInterrupt alike
            result = describe(err)
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
