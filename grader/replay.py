"""The grader's own training of each model a loss check trains, beside the child's.

A child that trains a submission's model returns tensors, and tensors cannot prove how they were
trained: a submission could return weights it trained longer, elsewhere, or on the val and test
words. So the grader trains the master's model of the same stage and configuration itself, from
the same initial tensors and random state (`initial`), on the same windows at the same learning
rates, with the same loop (shared/loop.py), on one thread as the child is. The two must end where
the other does (grade._evaluated compares their val losses), and the losses the grader reports are
its own training's: what a submission's training could add is never counted.

It runs in a process of its own (`start`), the grader's code only, while the sandboxed child
trains: torch's random generator and default dtype belong to a process, and gradings in threads
of one process would share them.

    python -m makemore_wavenet.grader.replay JOBS OUT
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from makemore_wavenet import stages
from makemore_wavenet.shared import loop
from makemore_wavenet.stages import get_stage


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
    (probes._train with the loop): the trained tensors."""
    s = get_stage(job["stage"])
    model = s.build_model(type(s.config)(**job["model_config"]))
    model.load_state(job["init"]["state"])
    torch.set_rng_state(job["init"]["rng"])
    recipe = job["recipe"]
    loop.train_with_torch(model, job["train_x"], job["train_y"], lrs=job["lrs"], batch_size=recipe["batch_size"],
                          optimizer=recipe["optimizer"], weight_decay=recipe["weight_decay"],
                          whole_names=bool(job["model_config"].get("whole_names")),
                          recompute=recipe["recompute_batchnorm"])
    return {name: t.detach().clone() for name, t in model.state().items()}


class Replay:
    """The grader's own trainings of a list of jobs, running in a process of their own."""

    def __init__(self, jobs: list[dict]):
        self.count = len(jobs)
        self.folder = tempfile.TemporaryDirectory(prefix="makemore-replay-")  # 0700: the grader's alone
        folder = Path(self.folder.name)
        self.out = folder / "out.pt"
        self.process = None
        if jobs:
            # the stage packages this process finds, a folder added beside the course's included
            torch.save({"stage_paths": list(stages.__path__), "jobs": jobs}, folder / "jobs.pt")
            env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # the child's one thread
            self.process = subprocess.Popen([sys.executable, "-m", __name__, str(folder / "jobs.pt"), str(self.out)],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)

    def result(self, seconds: float) -> list:
        """Each job's trained tensors, or a string saying why the grader's own training of it failed;
        every job fails alike when the trainings together take more than `seconds`."""
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
