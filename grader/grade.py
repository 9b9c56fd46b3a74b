"""Grade one submission: run its checks in the sandbox, compare, and check each stage's loss.

The loss check trains the student's model with the grader's seed and schedule in the sandbox
(or loads the student's checkpoint when it is valid for that schedule), and the child returns
logits only: the parent, holding the targets, computes the losses with its own torch.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from makemore_wavenet.shared import checkpoint as ckpt_io
from makemore_wavenet.shared.config import TrainConfig
from makemore_wavenet.shared.data import build_dataset, build_names, load_splits, load_words, names_path
from makemore_wavenet.shared.trainer import cross_entropy
from makemore_wavenet.stages import get_stage
from makemore_wavenet.stages.stage8_challenge.entry import EntryError, load_entry

from . import notebook, probes
from .checks import PUBLIC_SEED, PUBLIC_SIZES, Check, compare, exercise_checks
from .exercises import CHALLENGE_ENTRY, CHALLENGE_STAGE, STAGES
from .report import CheckResult, Report
from .sandbox import Call, Limits, run_calls
from .thresholds import schedule_config, val_threshold

EXPECTED_FILE = Path(__file__).resolve().parent / "expected" / "public.pt"  # written into the student edition
STAGE_BY_PARAMS = {12_097: 2, 22_097: 3, 22_397: 5, 76_579: 6}  # a lecture notebook's model, by its size


def hidden_tier():
    """The hidden package, or None in the student edition."""
    try:
        from . import hidden
    except ImportError:
        return None
    return hidden


def checks_for(tier: str, stages=STAGES) -> list[Check]:
    checks = exercise_checks("public", PUBLIC_SEED, PUBLIC_SIZES)
    if tier == "hidden":
        hidden = hidden_tier()
        if hidden is None:
            raise RuntimeError("the hidden checks are not part of this edition: grade with --tier public")
        checks += hidden.hidden_checks()
    return [c for c in checks if _stage_of(c.exercise) in stages]


def _stage_of(exercise: str) -> int:
    return int(exercise.split()[-1]) if exercise.startswith("stage") else int(exercise.split(".")[0])


def check_key(check: Check) -> str:
    return f"{check.tier}|{check.exercise}|{check.name}"


def reference_values(checks: list[Check]) -> dict:
    """What the reference returns for each check: shipped with the student edition, else computed
    here from the master sources (this process imports the master's packages)."""
    shipped = torch.load(EXPECTED_FILE, weights_only=True) if EXPECTED_FILE.exists() else {}
    values = {}
    for check in checks:
        key = check_key(check)
        values[key] = shipped[key] if key in shipped else getattr(probes, check.call.probe)(**check.call.kwargs)
    return values


def grade(submission: str | Path, tier: str = "public", schedule: str = "quick", stages=STAGES,
          retrain: bool = False, losses: bool = True, names: str | Path | None = None,
          test_names: str | Path | None = None, limits: Limits = Limits(), references: dict | None = None) -> Report:
    """Grade a checkout, a student edition, or a notebook (.ipynb). The challenge schedule grades
    stage 8 alone, trained with the submission's own challenge.toml."""
    submission = Path(submission).resolve()
    if schedule == "challenge":
        stages = (CHALLENGE_STAGE,)
    start = time.perf_counter()
    files = None
    if submission.suffix == ".ipynb":
        checks, stages = _notebook_plan(submission, tier)
        files = {"names.txt": Path(names) if names else names_path()}  # lecture-style notebooks open it
    else:
        checks = checks_for(tier, stages)
    references = references if references is not None else reference_values(checks)
    try:
        loss_calls, loss_jobs = _loss_calls(submission, tier, schedule, stages if losses else (), retrain, names,
                                            test_names)
        entry_problem = []
    except EntryError as err:  # the challenge.toml: say what is wrong with it, keep the other checks
        loss_calls, loss_jobs = [], []
        entry_problem = [CheckResult(f"stage {CHALLENGE_STAGE}", "the challenge entry", "public", "error", str(err))]
    outcomes, log = run_calls(submission, [c.call for c in checks] + loss_calls, limits, files=files)
    results = [_judge(check, references[check_key(check)], outcome)
               for check, outcome in zip(checks, outcomes)] + entry_problem
    if submission.suffix == ".ipynb" and (problems := notebook.program(submission)[1]):
        results.append(CheckResult("notebook", "every code cell parses", "public", "error", "; ".join(problems)))
    for job, outcome in zip(loss_jobs, outcomes[len(checks):]):
        results += _judge_losses(job, outcome, schedule)
    return Report(submission=str(submission), tier=tier, schedule=schedule, results=results,
                  seconds=time.perf_counter() - start, log=log,
                  test_source=str(test_names) if test_names else "course split")


def _notebook_plan(path: Path, tier: str) -> tuple[list[Check], tuple]:
    """The checks of the exercises the notebook defines, and the stage whose loss it answers for:
    None for a lecture-style notebook with its own `model` (the stage is read off its size)."""
    names = notebook.defined_names(path)
    covered = {ex for ex, (_, name) in notebook.exercise_targets().items() if name in names}
    lecture_style = "model" in names and "build_model" not in names
    stage = None if lecture_style else notebook.stage_from_name(path)
    if stage is None and not lecture_style:
        stage = max((int(ex.split(".")[0]) for ex in covered), default=None)
    checks = [c for c in checks_for(tier) if c.exercise in covered or c.exercise == f"stage {stage}"]
    if not notebook.accepts(path, "BatchNorm1d", "reduce_time"):  # the lecture's BatchNorm: always fixed
        checks = [c for c in checks if not (c.call.probe == "batchnorm" and not c.call.kwargs["reduce_time"])]
    if not checks and stage is None and not lecture_style:
        raise RuntimeError(f"{path} defines none of the exercises ({', '.join(sorted(notebook.exercise_targets()))}) "
                           "and no model: nothing to grade")
    return checks, (stage,) if stage or lecture_style else ()


def _judge(check: Check, expected, outcome) -> CheckResult:
    base = dict(exercise=check.exercise, check=check.name, tier=check.tier)
    if outcome.status != "ok":
        return CheckResult(**base, status=outcome.status, message=outcome.message)
    problem = compare(expected, outcome.value)
    if problem is None:
        return CheckResult(**base, status="pass")
    return CheckResult(**base, status="fail", message=problem + (f". Hint: {check.hint}" if check.hint else ""))


def _loss_calls(submission: Path, tier: str, schedule: str, stages, retrain: bool, names, test_names):
    """One logits call per stage, and what the parent needs to judge each. A stage of None is a
    lecture-style notebook's own model, of the notebook's block_size."""
    calls, jobs = [], []
    for stage in stages:
        if stage is None:  # a lecture notebook trains with the lecture's recipe
            model_config, config = None, schedule_config(schedule, 1)
            block_size, whole_names = notebook.literal(submission, "block_size") or 3, False
        else:
            model_config, config = stage_plan(submission, schedule, stage)
            block_size, whole_names = model_config.block_size, model_config.whole_names
        splits = _splits(block_size, str(Path(names) if names else names_path()), whole_names)
        targets = {"val": splits["val"]}
        if tier == "hidden":
            build = build_names if whole_names else build_dataset
            targets["test"] = build(load_words(test_names), block_size) if test_names else splits["test"]
        common = {"train_x": splits["train"][0], "train_y": splits["train"][1],
                  "eval_x": [x for x, _ in targets.values()], "recipe": asdict(config)}
        if stage is None:
            calls.append(Call("notebook_logits", common))
            source = f"the notebook's own model, trained with the grader's schedule ({config.steps:,} steps)"
        else:
            # the challenge always trains: its time limit is part of the rules, and no checkpoint can prove it
            fresh = retrain or submission.suffix == ".ipynb" or schedule == "challenge"
            ckpt = "" if fresh else _valid_checkpoint(submission, stage, config)
            # the submission's own CONFIG, but on the challenge schedule: the model its challenge.toml names
            own = asdict(model_config) if schedule == "challenge" else None
            calls.append(Call("stage_logits", {"stage": stage, "checkpoint": ckpt, "model_config": own, **common}))
            trained = (f"trained with its {CHALLENGE_ENTRY} ({config.steps:,} steps, the grader's seed)"
                       if schedule == "challenge" else f"trained with the grader's schedule ({config.steps:,} steps)")
            source = "from the submission's checkpoint" if ckpt else trained
        jobs.append({"stage": stage, "targets": {k: y for k, (_, y) in targets.items()}, "source": source})
    return calls, jobs


def stage_plan(submission: Path, schedule: str, stage: int):
    """The model config and recipe the grader trains a stage with: the stage's CONFIG and the
    master's recipe, on the quick or full schedule; on the challenge schedule (stage 8), the
    submission's own entry, under the grader's seed. An entry is data (TOML), so the parent reads
    it without running its code."""
    if schedule != "challenge":
        return get_stage(stage).CONFIG, schedule_config(schedule, stage)
    path = submission / CHALLENGE_ENTRY
    if not path.is_file():
        raise EntryError(f"{submission} has no {CHALLENGE_ENTRY}: the challenge trains the submission's own entry. "
                         f"Start from a copy of one of stages/stage8_challenge/entries/*.toml")
    model_config, recipe = load_entry(path)
    return model_config, replace(recipe, seed=TrainConfig().seed, device="cpu", path="plain")


@functools.lru_cache(maxsize=4)
def _splits(block_size: int, names: str, whole_names: bool) -> dict:
    """The splits, built once per process: a worker grading a class reads names.txt once."""
    return load_splits(block_size, path=names, whole_names=whole_names)


def _valid_checkpoint(submission: Path, stage: int, config) -> str:
    """The student's checkpoint for `stage` if it was trained with this schedule, else ''."""
    path = submission / "runs" / f"stage{stage}" / "checkpoint.pt"
    try:
        ckpt = ckpt_io.load(path)
    except ckpt_io.CheckpointError:
        return ""
    recipe = lambda c: {k: v for k, v in asdict(c).items() if k not in ("device", "path")}  # noqa: E731
    same = recipe(ckpt["train_config"]) == recipe(config)
    return str(path) if ckpt.get("stage") == stage and same else ""


def _judge_losses(job: dict, outcome, schedule: str) -> list[CheckResult]:
    stage, results = job["stage"], []
    if stage is None:  # a lecture-style notebook: which stage its model is, from its size
        params = outcome.value.get("params") if outcome.status == "ok" else None
        stage = STAGE_BY_PARAMS.get(params)
        if stage is None:
            status = "fail" if outcome.status == "ok" else outcome.status
            message = (f"the notebook's model has {params:,} parameters, which matches no stage "
                       f"({', '.join(f'{p:,}' for p in STAGE_BY_PARAMS)})") if params else outcome.message
            return [CheckResult("notebook", "model size and loss", "public", status, message)]
    exercise = "6.1" if stage == 6 else f"stage {stage}"
    for i, (split, y) in enumerate(job["targets"].items()):
        tier = "public" if split == "val" else "hidden"
        try:
            limit = val_threshold(schedule, stage) if split == "val" else hidden_tier().test_threshold(schedule, stage)
        except RuntimeError as err:  # no calibration for this stage and schedule: say so, keep the rest
            results.append(CheckResult(exercise, f"{split} loss ({schedule} schedule)", tier, "error", str(err)))
            continue
        base = dict(exercise=exercise, check=f"{split} loss <= {limit:.4f} ({schedule} schedule)", tier=tier)
        if outcome.status != "ok":
            results.append(CheckResult(**base, status=outcome.status, message=outcome.message))
            continue
        try:
            logits = outcome.value["logits"][i]
            if logits.shape != (*y.shape, 27):
                raise ValueError(f"expected logits of shape {(*y.shape, 27)}, got {tuple(logits.shape)}")
            loss = cross_entropy(logits.double(), y).item()
        except Exception as err:
            results.append(CheckResult(**base, status="error", message=f"unusable logits: {err}"))
            continue
        ok = loss <= limit  # NaN fails too
        message = f"{split} {loss:.4f}, {job['source']}"
        if not ok:
            message += (f"; the threshold is {limit:.4f}. A loss near 3.30 = -log(1/27) means the model "
                        "predicts nothing: constant logits, or no learning" if loss > 3.2 else
                        f"; the threshold is {limit:.4f}")
        results.append(CheckResult(**base, status="pass" if ok else "fail", message=message, value=loss))
    return results


def ship_expected(out_root: Path) -> Path:
    """Write the public checks' reference values into an edition (the release calls this)."""
    checks = checks_for("public")
    path = out_root / EXPECTED_FILE.relative_to(Path(__file__).resolve().parents[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(reference_values(checks), path)
    return path

