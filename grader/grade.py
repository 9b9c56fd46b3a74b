"""Grade one submission: run its checks in the sandbox, compare, and check each stage's loss.

The loss check trains the student's model with the grader's seed and schedule in the sandbox
(or loads the student's checkpoint when it is valid for that schedule), and the child returns
logits only: the parent, holding the targets, computes the losses with its own torch.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from makemore_wavenet.shared import checkpoint as ckpt_io
from makemore_wavenet.shared.config import Runtime
from makemore_wavenet.shared.data import build_dataset, build_names, load_splits, load_words, names_path
from makemore_wavenet.shared.edition import is_student
from makemore_wavenet.shared.errors import ConfigError
from makemore_wavenet.shared.trainer import cross_entropy
from makemore_wavenet.stages import Plan, all_stages, checkpoint_path, get_stage, plan

from . import GraderError, notebook
from .checks import PUBLIC_SEED, PUBLIC_SIZES, Check, compare, exercise_checks
from .exercises import challenge_stage, exercises
from .probes import batchnorm, notebook_logits, stage_logits
from .report import CheckResult, Loss, Report
from .sandbox import Call, Limits, run_calls
from .thresholds import Thresholds

EXPECTED_FILE = Path(__file__).resolve().parent / "expected" / "public.pt"  # the student edition's references
GRADER_SEED = Runtime().seed  # every loss check trains with the lecture's seed
# a loss check's time limit, by schedule: each stage's training fits on this machine's one thread
# (the full schedule's longest, stage 8's 80,000 steps, about 25 minutes; the challenge's rules allow
# 20 minutes of training on 2 cores, about 25 on one thread, where a step is 1.26x slower)
TRAINING_SECONDS = {"quick": 300.0, "full": 3600.0, "challenge": 1800.0}


@dataclass(frozen=True)
class Options:
    """How to grade a submission: what the command line says, passed whole to every grading worker."""

    tier: str = "public"  # "public", or "hidden": public and hidden checks
    schedule: str = "quick"  # "quick", "full" or "challenge" (stages.plan)
    stages: tuple[int, ...] = ()  # the stages to grade; () every one
    retrain: bool = False  # train even where a valid checkpoint exists
    losses: bool = True  # the loss checks (training); False: exercise checks only
    names: str | None = None  # the names file for training and val
    test_names: str | None = None  # hidden tier: a private file whose every name is a test example
    limits: Limits = field(default_factory=Limits)  # the exercise checks' time limit, and every check's memory
    training_seconds: float | None = None  # a loss check's time limit; None: the schedule's (TRAINING_SECONDS)
    thresholds: Thresholds = field(default_factory=Thresholds)

    def graded_stages(self) -> tuple[int, ...]:
        if self.schedule == "challenge":
            return (challenge_stage().number,)
        return self.stages or tuple(all_stages())


def hidden_tier():
    """The hidden package: not part of the student edition."""
    if is_student():
        raise GraderError("the hidden checks are not part of this edition: grade with --tier public")
    from . import hidden

    return hidden


def checks_for(tier: str, stages=None) -> list[Check]:
    checks = exercise_checks("public", PUBLIC_SEED, PUBLIC_SIZES)
    if tier == "hidden":
        checks += hidden_tier().hidden_checks()
    return [c for c in checks if stages is None or c.stage in stages]


def check_key(check: Check) -> str:
    return f"{check.tier}|{check.row}|{check.name}"


def reference_values(checks: list[Check]) -> dict:
    """What the reference returns for each check: shipped with the student edition, else computed
    here from the master sources (this process imports the master's packages)."""
    if is_student():
        shipped = torch.load(EXPECTED_FILE, weights_only=True)
        return {check_key(c): shipped[check_key(c)] for c in checks}
    return {check_key(c): c.call.probe(**c.call.kwargs) for c in checks}


def grade(submission: str | Path, options: Options = Options(), references: dict | None = None) -> Report:
    """Grade a checkout, a student edition, or a notebook (.ipynb). The challenge schedule grades
    its stage alone, trained with the submission's own entry file."""
    submission = Path(submission).resolve()
    if submission.suffix != ".ipynb" and not (submission / "shared" / "edition.py").is_file():
        raise GraderError(f"{submission} is of an earlier edition of the course (it has no shared/edition.py), "
                          "which this grader cannot call into: copy your solutions into a fresh edition")
    start = time.perf_counter()
    files = None
    if submission.suffix == ".ipynb":
        checks, stages = _notebook_plan(submission, options.tier)
        files = {"names.txt": Path(options.names) if options.names else names_path()}  # lecture notebooks open it
    else:
        stages = options.graded_stages()
        checks = checks_for(options.tier, stages)
    references = references if references is not None else reference_values(checks)
    loss_calls, loss_jobs, problems = _loss_calls(submission, options, stages if options.losses else ())
    outcomes, log = run_calls(submission, [c.call for c in checks] + loss_calls, options.limits, files=files)
    results = [_judge(check, references[check_key(check)], outcome) for check, outcome in zip(checks, outcomes)]
    results += problems
    if submission.suffix == ".ipynb" and (unparsed := notebook.program(submission)[1]):
        results.append(CheckResult(None, "notebook", "every code cell parses", "public", "error", "; ".join(unparsed)))
    report = Report(submission=str(submission), tier=options.tier, schedule=options.schedule, results=results,
                    log=log, test_source=str(options.test_names) if options.test_names else "course split")
    for job, outcome in zip(loss_jobs, outcomes[len(checks):]):
        _judge_losses(job, outcome, options, report)
    report.seconds = time.perf_counter() - start
    return report


def _notebook_plan(path: Path, tier: str) -> tuple[list[Check], tuple]:
    """The checks of the exercises the notebook defines, and the stage whose loss it answers for:
    None for a lecture-style notebook with its own `model` (the stage is read off its size)."""
    names = notebook.defined_names(path)
    targets, by_id = notebook.exercise_targets(), exercises()
    covered = {ex for ex, (_, name) in targets.items() if name in names}
    lecture_style = "model" in names and "build_model" not in names
    stage = None if lecture_style else notebook.stage_from_name(path)
    if stage is None and not lecture_style:
        stage = max((by_id[ex].stage for ex in covered), default=None)
    checks = [c for c in checks_for(tier) if c.exercise in covered or (c.stage == stage and not c.exercise)]
    if not notebook.accepts(path, "BatchNorm1d", "reduce_time"):  # the lecture's BatchNorm: always fixed
        checks = [c for c in checks if not (c.call.probe is batchnorm and not c.call.kwargs["reduce_time"])]
    if not checks and stage is None and not lecture_style:
        raise GraderError(f"{path} defines none of the exercises ({', '.join(sorted(targets))}) and no model: "
                          "nothing to grade")
    return checks, (stage,) if stage or lecture_style else ()


def _judge(check: Check, expected, outcome) -> CheckResult:
    base = dict(stage=check.stage, row=check.row, check=check.name, tier=check.tier)
    if outcome.status != "ok":
        return CheckResult(**base, status=outcome.status, message=outcome.message)
    problem = compare(expected, outcome.value)
    if problem is None:
        return CheckResult(**base, status="pass")
    return CheckResult(**base, status="fail", message=problem + (f". Hint: {check.hint}" if check.hint else ""))


def _loss_calls(submission: Path, options: Options, stages) -> tuple[list[Call], list[dict], list[CheckResult]]:
    """One logits call per stage, what the parent needs to judge each, and an error row for each
    stage whose plan cannot be made (a broken entry file). A stage of None is a lecture-style
    notebook's own model, of the notebook's block_size."""
    calls, jobs, problems = [], [], []
    for stage in stages:
        if stage is None:  # a lecture notebook trains with the lecture's recipe
            the_plan = plan(1, "full" if options.schedule == "full" else "quick")
            block_size, whole_names = notebook.literal(submission, "block_size") or 3, False
        else:
            s = get_stage(stage)
            if options.schedule != "challenge":
                the_plan = plan(s, options.schedule)
            else:  # the submission's own entry file: data, read without running it
                try:
                    the_plan = plan(s, options.schedule, entry=submission / s.entry_file)
                except ConfigError as err:  # say what is wrong with it, keep the other checks
                    problems.append(CheckResult(stage, s.row, "the challenge entry", "public", "error", str(err)))
                    continue
            block_size, whole_names = the_plan.model.block_size, the_plan.model.whole_names
        splits = _splits(block_size, str(Path(options.names) if options.names else names_path()), whole_names)
        targets = {"val": splits["val"]}
        if options.tier == "hidden":
            build = build_names if whole_names else build_dataset
            private = options.test_names
            targets["test"] = build(load_words(private), block_size) if private else splits["test"]
        common = {"train_x": splits["train"][0], "train_y": splits["train"][1], "seed": GRADER_SEED,
                  "eval_x": [x for x, _ in targets.values()], "recipe": asdict(the_plan.recipe)}
        steps = f"{the_plan.recipe.steps:,} steps"
        seconds = options.training_seconds or TRAINING_SECONDS[options.schedule]
        if stage is None:
            calls.append(Call(notebook_logits, common, seconds))
            source = f"the notebook's own model, trained with the grader's schedule ({steps})"
        else:
            calls.append(_stage_call(submission, options, the_plan, common, seconds))
            source = ("from the submission's checkpoint" if calls[-1].kwargs["checkpoint"] else
                      f"trained with its {the_plan.stage.entry_file} ({steps}, the grader's seed)"
                      if options.schedule == "challenge" else f"trained with the grader's schedule ({steps})")
        jobs.append({"stage": stage, "targets": {k: y for k, (_, y) in targets.items()}, "source": source})
    return calls, jobs, problems


def _stage_call(submission: Path, options: Options, the_plan: Plan, common: dict, seconds: float) -> Call:
    # the challenge always trains: its time limit is part of the rules, and no checkpoint can prove it
    fresh = options.retrain or submission.suffix == ".ipynb" or options.schedule == "challenge"
    ckpt = "" if fresh else _valid_checkpoint(submission, the_plan)
    # the submission's own CONFIG, but on the challenge schedule: the model its entry file names
    own = asdict(the_plan.model) if options.schedule == "challenge" else None
    return Call(stage_logits, {"stage": the_plan.stage.number, "checkpoint": ckpt, "model_config": own, **common},
                seconds)


@functools.lru_cache(maxsize=4)
def _splits(block_size: int, names: str, whole_names: bool) -> dict:
    """The splits, built once per process: a worker grading a class reads names.txt once."""
    return load_splits(block_size, path=names, whole_names=whole_names)


def _valid_checkpoint(submission: Path, the_plan: Plan) -> str:
    """The student's checkpoint for the plan's stage if it was trained with this recipe and the
    grader's seed, else ''."""
    path = checkpoint_path(the_plan.stage.number, submission / "runs")
    try:
        ckpt = ckpt_io.load(path)
    except ckpt_io.CheckpointError:
        return ""
    same = ckpt["recipe"] == the_plan.recipe and ckpt["runtime"].seed == GRADER_SEED
    return str(path) if ckpt.get("stage") == the_plan.stage.number and same else ""


def stage_for_params(params: int | None) -> int | None:
    """The lecture's stage a model of `params` parameters is: the last of the stages that size."""
    return max((s.number for s in all_stages().values() if not s.bar and s.lecture.params == params), default=None)


def _judge_losses(job: dict, outcome, options: Options, report: Report) -> None:
    stage = job["stage"]
    if stage is None:  # a lecture-style notebook: which stage its model is, from its size
        params = outcome.value.get("params") if outcome.status == "ok" else None
        stage = stage_for_params(params)
        if stage is None:
            status = "fail" if outcome.status == "ok" else outcome.status
            sizes = sorted({s.lecture.params for s in all_stages().values()})
            message = (f"the notebook's model has {params:,} parameters, which matches no stage "
                       f"({', '.join(f'{p:,}' for p in sizes)})") if params else outcome.message
            report.results.append(CheckResult(None, "notebook", "model size and loss", "public", status, message))
            return
    row = get_stage(stage).row
    for i, (split, y) in enumerate(job["targets"].items()):
        tier = "public" if split == "val" else "hidden"
        try:
            limit = options.thresholds.limit(split, options.schedule, stage)
        except GraderError as err:  # no calibration for this stage and schedule: say so, keep the rest
            report.results.append(CheckResult(stage, row, f"{split} loss ({options.schedule} schedule)", tier,
                                              "error", str(err)))
            continue
        base = dict(stage=stage, row=row, check=f"{split} loss <= {limit:.4f} ({options.schedule} schedule)", tier=tier)
        if outcome.status != "ok":
            training = f" (training on the {options.schedule} schedule)" if outcome.status == "timeout" else ""
            report.results.append(CheckResult(**base, status=outcome.status, message=outcome.message + training))
            continue
        try:
            logits = outcome.value["logits"][i]
            if logits.shape != (*y.shape, 27):
                raise ValueError(f"expected logits of shape {(*y.shape, 27)}, got {tuple(logits.shape)}")
            loss = cross_entropy(logits.double(), y).item()
        except Exception as err:
            report.results.append(CheckResult(**base, status="error", message=f"unusable logits: {err}"))
            continue
        ok = loss <= limit  # NaN fails too
        message = f"{split} {loss:.4f}, {job['source']}"
        if not ok:
            message += (f"; the threshold is {limit:.4f}. A loss near 3.30 = -log(1/27) means the model "
                        "predicts nothing: constant logits, or no learning" if loss > 3.2 else
                        f"; the threshold is {limit:.4f}")
        report.results.append(CheckResult(**base, status="pass" if ok else "fail", message=message, value=loss))
        report.losses.append(Loss(stage, split, loss, ok))


def ship_expected(out_root: Path) -> Path:
    """Write the public checks' reference values into an edition (the release calls this)."""
    checks = checks_for("public")
    path = out_root / EXPECTED_FILE.relative_to(Path(__file__).resolve().parents[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(reference_values(checks), path)
    return path
