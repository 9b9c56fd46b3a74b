"""The grader's own training of each model a loss check trains, beside the child's.

A child that trains a submission's model returns tensors, and tensors cannot prove how they were
trained: a submission could return weights it trained longer, elsewhere, or on the val and test
words. So the grader trains the master's model of the same stage and configuration itself, from
the same initial tensors and random state (`initial`), on the same windows at the same learning
rates, with the same loop (shared/loop.py), on one thread as the child is. The two must end where
the other does (grade._evaluated compares their val losses), and the losses the grader reports are
its own training's: what a submission's training could add is never counted.

It runs in a process of its own (`Replay`), the grader's code only, while the sandboxed child
trains: torch's random generator and default dtype belong to a process, and gradings in threads
of one process would share them. Every honest submission of a stage reports the same configuration,
so its training is the same job: each result is kept in the instructor's cache, by a checksum of
the job and of the master's code, and a class trains each stage once.

    python -m makemore_wavenet.grader.replay JOBS OUT
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from makemore_wavenet import stages
from makemore_wavenet.shared import loop
from makemore_wavenet.shared.data import cache_dir
from makemore_wavenet.stages import get_stage

CACHED_ELEMENTS = 2_500_000  # a trained model kept in the cache holds at most this many numbers (10 MB)


def initial(stage: int, model_config: dict, seed: int) -> dict:
    """The master's model of `stage` as the lecture's seed draws it, before training: {"state": its
    tensors, "rng": torch's random state after drawing them, where the loop's batches begin}. The
    child loads both into the submission's model, so that every submission starts where the master
    does, however its own code draws. Call it where no other thread draws or builds (grade's lock)."""
    s = get_stage(stage)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = s.build_model(type(s.config)(**model_config))
        return {"state": {name: t.detach().clone() for name, t in model.state().items()},
                "rng": torch.get_rng_state()}


def train(job: dict) -> dict[str, torch.Tensor]:
    """Train the master's model of job["stage"] from job["init"] as the child trains the submission's
    (probes._train, with the same loop.train_with_recipe): the trained tensors."""
    s = get_stage(job["stage"])
    model = s.build_model(type(s.config)(**job["model_config"]))
    model.load_state(job["init"]["state"])
    torch.set_rng_state(job["init"]["rng"])
    trained = loop.train_with_recipe(model, job["train_x"], job["train_y"], job["recipe"], job["lrs"],
                                     bool(job["model_config"].get("whole_names")), bool(job.get("compiled")))
    return {name: t.detach().clone() for name, t in trained.model.state().items()}


@functools.cache
def _code() -> bytes:
    """A checksum of the code a training runs: every .py file of the stage packages and of shared/."""
    h = hashlib.sha256()
    for folder in [*stages.__path__, Path(loop.__file__).parent]:
        for path in sorted(Path(folder).rglob("*.py")):
            h.update(str(path).encode() + b"\0" + path.read_bytes())
    return h.digest()


def _key(job: dict) -> str:
    """The checksum of a job: what it trains, from where, on what, with which code."""
    buffer = io.BytesIO()
    torch.save({k: job[k] for k in ("init", "train_x", "train_y", "lrs")}, buffer)
    h = hashlib.sha256(_code() + buffer.getvalue())
    h.update(json.dumps([job["stage"], job["model_config"], job["recipe"], bool(job.get("compiled"))], sort_keys=True,
                        default=str).encode())
    return h.hexdigest()


def _cached(key: str) -> dict | None:
    """A trained model the grader kept, if this user wrote it (never one a sandbox could have put there)."""
    try:
        with open(cache_dir() / "replays" / f"{key}.pt", "rb") as f:
            if os.fstat(f.fileno()).st_uid != os.getuid():
                return None
            return torch.load(f, weights_only=True)
    except (OSError, RuntimeError, EOFError):
        return None


def _keep(key: str, state: dict) -> None:
    """Keep a trained model in the cache (the instructor's, 0600), unless it is large."""
    if sum(math.prod(t.shape) for t in state.values()) > CACHED_ELEMENTS:
        return
    folder = cache_dir() / "replays"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}.{os.getpid()}.tmp"  # grading workers may keep one at once
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            torch.save(state, f)
        os.replace(tmp, folder / f"{key}.pt")
    except OSError:  # a cache that cannot be written costs time, never a result
        pass


def _inductor_cache() -> Path:
    """Where the grader's own compiled trainings keep inductor's compiled code: the instructor's cache,
    0700, never the shared /tmp/torchinductor_<user> that a sandbox of the fallback could write to
    first, and whose compiled code this process would load and run."""
    folder = cache_dir() / "inductor"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if folder.stat().st_uid == os.getuid() and not folder.is_symlink():
            folder.chmod(0o700)
            return folder
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="makemore-inductor-"))  # a cache that is not ours: compile afresh


class Replay:
    """The grader's own trainings of a list of jobs: from the cache, or in a process of their own."""

    def __init__(self, jobs: list[dict]):
        self.keys = [_key(job) for job in jobs]
        self.known = {i: state for i, key in enumerate(self.keys) if (state := _cached(key)) is not None}
        self.todo = [i for i in range(len(jobs)) if i not in self.known]
        jobs = [jobs[i] for i in self.todo]
        self.count = len(jobs)
        self.folder = self.process = None
        if jobs:
            self.folder = tempfile.TemporaryDirectory(prefix="makemore-replay-")  # 0700: the grader's alone
            folder = Path(self.folder.name)
            self.out = folder / "out.pt"
            # the stage packages this process finds, a folder added beside the course's included
            torch.save({"stage_paths": list(stages.__path__), "jobs": jobs}, folder / "jobs.pt")
            env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # the child's one thread
            if any(job.get("compiled") for job in jobs):  # only then a cache folder (a fresh one, where ours is not)
                env["TORCHINDUCTOR_CACHE_DIR"] = str(_inductor_cache())
            self.process = subprocess.Popen([sys.executable, "-m", __name__, str(folder / "jobs.pt"), str(self.out)],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)

    def result(self, seconds: float) -> list:
        """Each job's trained tensors, or a string saying why the grader's own training of it failed;
        every job trained here fails alike when the trainings together take more than `seconds`."""
        trained = self._trained(seconds)
        for i, state in zip(self.todo, trained):
            if isinstance(state, dict):
                _keep(self.keys[i], state)
        results = {**self.known, **dict(zip(self.todo, trained))}
        return [results[i] for i in range(len(self.keys))]

    def _trained(self, seconds: float) -> list:
        if self.process is None:
            return []
        try:
            _, err = self.process.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.stop()
            return [f"the grader's own training did not finish in {seconds:.0f} s"] * self.count
        try:
            if self.process.returncode == 0 and self.out.is_file():
                return torch.load(self.out, weights_only=True)
            return [f"the grader's own training failed (exit {self.process.returncode}): "
                    f"{err.decode(errors='replace').strip()[-500:]}"] * self.count
        finally:
            self.folder.cleanup()

    def stop(self) -> None:
        """End the trainings early (the grading that wanted them failed): nothing keeps running."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.folder is not None:
            self.folder.cleanup()


def main(jobs_path: str, out_path: str) -> None:
    torch.set_num_threads(1)
    given = torch.load(jobs_path, weights_only=True)
    stages.__path__ = given["stage_paths"]
    results = []
    for job in given["jobs"]:
        try:
            results.append(train(job))
        except Exception as err:  # one job's failure is its row's: the others' trainings go on
            results.append(f"the grader's own training failed: {type(err).__name__}: {str(err)[:300]}")
    torch.save(results, out_path)


if __name__ == "__main__":
    main(*sys.argv[1:])
