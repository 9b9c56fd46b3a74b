"""Grade one submission: run its checks in the sandbox, compare, and check each stage's loss.

This process never imports or calls the submission's code: the child does, in the sandbox.
Grading runs in three rounds, each a sandboxed child of its own. The first runs the public
exercise checks and asks the child for each stage's configuration, as data; the second trains each
stage whose needs are done; the third runs the hidden checks. Nothing a student sees before the
grades are published (the public rows, the losses) is settled after a hidden input was sent, so
none can carry one, in what it says, in its status or in its timing. A row waits on the exercises
it is built from (a stage's `needs`): a stage's own checks and its loss check run only when those
are done, and an exercise with one check not done is not done in every check of its round, so
unfinished work earns nothing. In the instructor's grading the windows are the
grader's, built with the configuration the submission reported, and the child trains the
submission's model with the instructor's training loop on the train split alone; the child returns
the trained tensors, and this process evaluates them with its own model of the stage
(grader/reference.py): no submission code ever sees a val or test input. Every submission starts
from the master's initial tensors, and the grader trains its own model from the same start beside
the child (grader/replay.py): the two must end at the same val loss, and the losses reported are
the grader's own training's. The student edition,
which ships neither the loop nor a reference, checks itself with the student's own windows (3.1),
step (1.2) and evaluation (1.3) in the child, which returns val logits; this process computes the loss.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

import torch.nn.functional as F

from makemore_wavenet.shared.config import Runtime, TrainConfig
from makemore_wavenet.shared.data import (IGNORE, build_dataset, build_names, cache_dir, load_splits, load_words,
                                          names_path, sha256, split_words)
from makemore_wavenet.shared.edition import is_student
from makemore_wavenet.shared.errors import ConfigError
from makemore_wavenet.stages import Stage, all_stages, get_stage, plan

from . import GraderError, notebook, points, reference, replay
from .checks import PUBLIC_SEED, PUBLIC_SIZES, Check, compare, exercise_checks
from .exercises import challenge_stage, exercises
from .probes import batchnorm, notebook_logits, notebook_weights, own_stage_logits, stage_config, stage_weights
from .report import CheckResult, Loss, Report
from .sandbox import LOG_TAIL, MESSAGE_CAP, Call, Limits, Outcome, Session, run_calls
from .thresholds import Thresholds

EXPECTED_FILE = Path(__file__).resolve().parent / "expected" / "public.pt"  # the student edition's references
GRADER_SEED = Runtime().seed  # every loss check trains with the lecture's seed
# a loss check's time limit, by schedule: each stage's training fits on this machine's one thread
# (the full schedule's longest, stage 8's 80,000 steps, about 25 minutes; the challenge's rules allow
# 20 minutes of training on 2 cores, about 25 on one thread, where a step is 1.26x slower)
TRAINING_SECONDS = {"quick": 300.0, "full": 3600.0, "challenge": 1800.0}
# the schedules whose loss checks train compiled (loop.train_with_torch): on the quick one a sandbox's
# compile, from an empty cache every time, costs about what it saves (README, "Compiled training")
COMPILED_SCHEDULES = ("full", "challenge")
TRAININGS = ("auto", "eager", "compiled")  # Options.training: auto is compiled on COMPILED_SCHEDULES
# what the student edition's self-check also trains with: the student's own windows, step and evaluation
SELF_CHECK_NEEDS = ("1.2", "1.3", "3.1")
MAX_BLOCK_SIZE = 64  # a reported block_size beyond this is not a configuration the grader builds windows for
MAX_STEPS = 400_000  # an entry's steps beyond this is no recipe the grader trains (the full schedule's most: 80,000)
MAX_ENTRY_BYTES = 64 * 1024  # a challenge entry is a short TOML file


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
    points: points.Points = field(default_factory=points.Points)  # what each row is worth
    # the grader's own training (replay.py) beside the child's, or after it: on a machine with memory
    # for one training at a time (Gradescope's default container, 768 MB)
    replay_beside: bool = True
    training: str = "auto"  # TRAININGS: how a loss check trains a submission's model, and the grader its own

    def compiled(self) -> bool:
        return self.training == "compiled" or (self.training == "auto" and self.schedule in COMPILED_SCHEDULES)

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


_REFERENCE_LOCK = threading.Lock()


def reference_values(checks: list[Check]) -> dict:
    """What the reference returns for each check: shipped with the student edition, else computed
    here from the master sources (this process imports the master's packages)."""
    if is_student():
        shipped = torch.load(EXPECTED_FILE, weights_only=True)
        return {check_key(c): shipped[check_key(c)] for c in checks}
    with _REFERENCE_LOCK:  # probes set torch's default dtype, which is the process's: one grading thread at a time
        return {check_key(c): c.call.probe(**c.call.kwargs) for c in checks}


def grade(submission: str | Path, options: Options = Options(), references: dict | None = None) -> Report:
    """Grade a checkout, a student edition, or a notebook (.ipynb). The challenge schedule grades
    its stage alone, trained with the submission's own entry file."""
    submission = Path(submission).resolve()
    if submission.suffix != ".ipynb" and not (submission / "shared" / "edition.py").is_file():
        raise GraderError(f"{submission} is of an earlier edition of the course (it has no shared/edition.py), "
                          "which this grader cannot call into: copy your solutions into a fresh edition")
    start = time.perf_counter()
    files, given = None, frozenset()
    if submission.suffix == ".ipynb":
        # a stage's notebook answers for its own stage; in the instructor's grading the course gives it the
        # earlier stages' exercises (notebook.given_exercises), neither graded nor counted here
        given = frozenset() if is_student() else notebook.given_exercises(submission)
        checks, stages = _notebook_plan(submission, options.tier)
        # what the grading asks for (an assignment's stages): a notebook's other exercises earn nothing here
        checks = [c for c in checks if c.exercise not in given and c.stage in options.graded_stages()]
        stages = tuple(s for s in stages if s is None or s in options.graded_stages())
        files = {"names.txt": Path(_names(options)) if is_student() else _train_names_file(_names(options))}
    else:
        stages = options.graded_stages()
        checks = checks_for(options.tier, stages)
    stages = stages if options.losses else ()
    trained = [s for s in stages if s is not None]  # None: a lecture-style notebook's own model
    order = {check_key(c): i for i, c in enumerate(checks_for(options.tier))}  # exercises first, in course order
    checks = sorted(checks + _needed_checks(checks, trained, options.tier, given), key=lambda c: order[check_key(c)])
    references = references if references is not None else reference_values(checks)
    session = Session(options.limits, options.tier)  # the sandbox and the time budget of every round
    # round 1: the public checks, and each trained stage's configuration as the submission reports it (one
    # answer per stage: the configuration row judges the very answer the loss check trains with)
    public, hidden = [c for c in checks if c.tier == "public"], [c for c in checks if c.tier == "hidden"]
    asked = {c.call.kwargs["stage"]: i for i, c in enumerate(public) if c.call.probe is stage_config}
    config_calls = [Call(stage_config, {"stage": s}) for s in trained if s not in asked]
    outcomes, log = run_calls(submission, [c.call for c in public] + config_calls, options.limits, files=files,
                              session=session)
    results = _settle([_judge(c, references[check_key(c)], o) for c, o in zip(public, outcomes)], public, trained)
    configs = dict(zip([s for s in trained if s not in asked], outcomes[len(public):]))
    configs |= {s: outcomes[i] for s, i in asked.items()}
    report = Report(submission=str(submission), tier=options.tier, schedule=options.schedule, results=[],
                    log=log, test_source=str(options.test_names) if options.test_names else "course split",
                    **session.report_fields())
    if submission.suffix == ".ipynb" and (unparsed := notebook.program(submission)[1]):
        report.results.append(CheckResult(None, "notebook", "every code cell parses", "public", "error",
                                          "; ".join(unparsed)))
    # round 2: train each stage whose needs are done
    loss_calls, loss_jobs = _loss_calls(submission, options, stages, configs, _unfinished(results), report)
    if loss_calls:
        loss_outcomes, loss_log = _train_both(submission, options, loss_calls, loss_jobs, files, session)
        report.log = (report.log + loss_log)[-LOG_TAIL:]
        for job, outcome in zip(loss_jobs, loss_outcomes):
            _judge_losses(job, outcome, options, report)
    # round 3: the hidden checks, last: what a student sees before the grades are published (the public
    # rows, the losses) is settled before any hidden input is sent, and nothing from this round changes it
    if hidden:
        outcomes, hidden_log = run_calls(submission, [c.call for c in hidden], options.limits, files=files,
                                         session=session)
        report.log = (report.log + hidden_log)[-LOG_TAIL:]
        judged = _settle([_judge(c, references[check_key(c)], o) for c, o in zip(hidden, outcomes)], hidden, trained,
                         earlier=results)
        by_check = dict(zip(map(id, public + hidden), results + judged))
        results = [by_check[id(c)] for c in checks]  # the course's order
    report.results = results + report.results
    for r in report.results:  # a message quotes values the child chose: none outgrows a table cell
        r.message = r.message[:MESSAGE_CAP]
    points.assign(report.results, options.points)
    report.seconds = time.perf_counter() - start
    return report


def _train_both(submission: Path, options: Options, calls: list[Call], jobs: list[dict], files, session):
    """Run the loss calls in the child while the grader trains its own model of each (a job's
    "replay") in a process of its own, or after the child where `options.replay_beside` is off; each
    such job gets its "trained" tensors, or why there are none. The grader's training follows the
    child's path: a compiled one that fell back to eager in the child is trained eagerly here too,
    again where it ran beside (a model that trains chaotically, stage 4's, ends elsewhere otherwise)."""
    replays = [job for job in jobs if "replay" in job]
    ours = replay.Replay([job["replay"] for job in replays]) if options.replay_beside else None
    seconds = sum(c.seconds for c in calls)
    try:
        outcomes, log = run_calls(submission, calls, options.limits, files=files, session=session)
        told = [o for job, o in zip(jobs, outcomes) if "replay" in job]
        specs = [_followed(job["replay"], o.value if o.status == "ok" else None) for job, o in zip(replays, told)]
        wanted = any(o.status == "ok" for o in told)
        if wanted:
            ours = ours or replay.Replay(specs)
        trained = ours.result(seconds) if wanted else [None] * len(replays)
    finally:
        if ours:
            ours.stop()
    redo = [i for i, (job, spec, o) in enumerate(zip(replays, specs, told))
            if spec is not job["replay"] and o.status == "ok"]
    if redo and options.replay_beside:
        again = replay.Replay([specs[i] for i in redo])
        try:
            for i, tensors in zip(redo, again.result(seconds)):
                trained[i] = tensors
        finally:
            again.stop()
    for job, tensors in zip(replays, trained):
        job["trained"] = tensors
    return outcomes, log


def _followed(spec: dict, value) -> dict:
    """The grader's own training `spec`, on the path the child's training took by its note
    (loop.Training.describe): eager where compiling fell back. The note is the submission's process's
    to write: a false one costs the grader an eager training, and a model trained otherwise than its
    note says ends where the grader's does not."""
    told = value.get("training") if isinstance(value, dict) else None
    fell_back = spec.get("compiled") and isinstance(told, str) and told.startswith("eager")
    return {**spec, "compiled": False} if fell_back else spec


def _needed_checks(checks: list[Check], trained: list[int], tier: str, given=frozenset()) -> list[Check]:
    """The checks of the exercises that the graded stages stand on and that `checks` lack: a row
    that waits on 2.1 shows 2.1's row too (grading --stage 4 grades what stage 4 stands on), unless
    the course `given`s it (a stage's notebook: notebook.given_exercises)."""
    needs = {ex for c in checks if _is_stage_check(c) for ex in _needs(get_stage(c.stage), training=False)}
    needs |= {ex for n in trained for ex in _needs(get_stage(n), training=True)}
    have = {c.exercise for c in checks}
    return [c for c in checks_for(tier) if c.exercise in needs - have - given]


def _is_stage_check(check: Check) -> bool:
    """A stage's own check (configuration, initial scale), in its row: not one exercise's."""
    return not check.exercise or check.exercise == get_stage(check.stage).loss_exercise


def _needs(stage: Stage, training: bool) -> tuple[str, ...]:
    """The exercises a stage's rows wait on: its model's (not the row's own exercise); training
    in the student edition also takes the student's windows, step and evaluation."""
    extra = SELF_CHECK_NEEDS if training and is_student() else ()
    return tuple(ex for ex in (*stage.needs, *extra) if ex != stage.loss_exercise)


def _settle(results: list[CheckResult], checks: list[Check], trained, earlier=()) -> list[CheckResult]:
    """No points without work: an exercise with a check not done is not done in every check of the
    round, and a stage's own checks (configuration, initial scale) wait until the exercises it needs
    are done: attempted, right or wrong (a wrong one fails its own row, and what it breaks says so).
    `earlier`: the results of the rounds before (a row not done in the public round is not done in
    the hidden one); a later round never changes an earlier one's."""
    messages = {r.row: r.message for r in [*earlier, *results] if r.status == "not done"}
    for r in results:
        if r.status == "pass" and r.row in messages:
            r.status, r.message = "not done", messages[r.row]
    unfinished = _unfinished([*earlier, *results])
    for check, r in zip(checks, results):
        if not _is_stage_check(check):
            continue
        needs = _needs(get_stage(check.stage), training=check.stage in trained)  # the row's, loss check included
        if waiting := [ex for ex in needs if ex in unfinished]:
            r.status, r.message = "waiting", waits_on(waiting)
    return results


def _unfinished(results: list[CheckResult]) -> set[str]:
    """The exercises not done: a check of theirs raised NotImplementedError (a stub)."""
    return {r.row for r in results if r.status == "not done"}


def waits_on(exercise_ids) -> str:
    titles = exercises()
    return "waits on " + ", ".join(f"{ex} ({titles[ex].title})" for ex in exercise_ids)


def _notebook_plan(path: Path, tier: str) -> tuple[list[Check], tuple]:
    """The checks of the exercises the notebook defines, and the stage whose loss it answers for
    (`_notebook_stage`)."""
    names = notebook.defined_names(path)
    targets = notebook.exercise_targets()
    covered = {ex for ex, (_, name) in targets.items() if name in names}
    stages = _notebook_stage(path, covered, names)
    checks = [c for c in checks_for(tier) if c.exercise in covered or (c.stage in stages and not c.exercise)]
    if not notebook.accepts(path, "BatchNorm1d", "reduce_time"):  # the lecture's BatchNorm: always fixed
        checks = [c for c in checks if not (c.call.probe is batchnorm and not c.call.kwargs["reduce_time"])]
    return checks, stages


def _notebook_stage(path: Path, covered: set[str], names: set[str]) -> tuple:
    """The loss a notebook answers for: (N,) for the edition's stageN.ipynb when it defines a part of
    stage N's model (its exercises put in place, the package's code around them); () for one whose
    stage's model has no part of its own (stage 3: stage 2's model at a longer context); else
    (None,): the notebook's own `model`, its stage read off its size. A notebook with no model of
    its own (a fresh stage6.ipynb, a notebook of raw tensors) gets a row that says what it lacks
    (probes.notebook_logits), never the package's model."""
    stage = notebook.edition_stage(path)
    if stage is None:
        return (None,)
    s = get_stage(stage)
    own_parts = set(s.needs) & {ex.id for ex in s.exercises}
    if own_parts & covered:
        return (stage,)
    return () if not own_parts and "model" not in names else (None,)


def _judge(check: Check, expected, outcome) -> CheckResult:
    base = dict(stage=check.stage, row=check.row, check=check.name, tier=check.tier)
    if outcome.status != "ok":
        return CheckResult(**base, status=outcome.status, message=outcome.message)
    problem = compare(expected, outcome.value)
    if problem is None:
        return CheckResult(**base, status="pass")
    return CheckResult(**base, status="fail", message=problem + (f". Hint: {check.hint}" if check.hint else ""))


def _loss_calls(submission: Path, options: Options, stages, configs: dict, unfinished: set[str],
                report: Report) -> tuple[list[Call], list[dict]]:
    """One logits call per stage that can train, and what the parent needs to judge it; a stage that
    cannot (an exercise it needs is not done, its configuration or entry is broken) gets its loss
    rows in `report` at once, saying why. A stage of None is a lecture-style notebook's own model."""
    calls, jobs = [], []
    seconds = options.training_seconds or TRAINING_SECONDS[options.schedule]
    for stage in stages:
        if stage is not None and (waiting := [ex for ex in _needs(get_stage(stage), training=True)
                                              if ex in unfinished]):
            _loss_rows(report, stage, options, "waiting", waits_on(waiting))
            continue
        try:
            if stage is None:
                call, job = _notebook_call(submission, options)
            else:
                call, job = (_own_stage_call if is_student() else _stage_call)(submission, options, stage,
                                                                                configs.get(stage))
        except _CannotTrain as why:
            if stage is None:
                _notebook_row(report, why.status, str(why))
            else:
                _loss_rows(report, stage, options, why.status, str(why))
            continue
        calls.append(Call(call.probe, call.kwargs, seconds))
        jobs.append(job)
    return calls, jobs


def _block_size(value) -> int:
    """A block_size the submission chose, if it is a context the grader builds windows for."""
    if type(value) is not int or not 1 <= value <= MAX_BLOCK_SIZE:
        raise _CannotTrain("fail", f"block_size {repr(value)[:40]} is no context the grader builds windows for "
                           f"(a whole number, 1 to {MAX_BLOCK_SIZE})")
    return value


class _CannotTrain(Exception):
    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


def _stage_call(submission: Path, options: Options, stage: int, config) -> tuple[Call, dict]:
    """The instructor's loss check: the grader's windows, built with the submission's configuration
    (as its child reported it) or its challenge entry's; the grader's recipe and training loop. A
    checkpoint counts on the public tier only: it cannot prove how it was trained."""
    s = get_stage(stage)
    if options.schedule == "challenge":  # the submission's own entry file: data, read without running it
        entry = submission / s.entry_file
        if entry.is_symlink() or (entry.is_file() and entry.stat().st_size > MAX_ENTRY_BYTES):
            raise _CannotTrain("error", f"the challenge entry {s.entry_file} is a link or larger than "
                               f"{MAX_ENTRY_BYTES // 1024} KB: it is read only as a file of the submission's own")
        try:
            the_plan = plan(s, options.schedule, entry=entry)
        except ConfigError as err:
            raise _CannotTrain("error", f"the challenge entry: {err}") from None
        model_config = asdict(the_plan.model)
    else:
        if config.status != "ok":
            raise _CannotTrain(config.status, f"the stage's configuration: {config.message}")
        if not isinstance(config.value, dict):
            raise _CannotTrain("error", f"the stage's configuration came back as {type(config.value).__name__}, "
                               "not as its fields")
        model_config = {k: v for k, v in config.value.items() if k != "params"}
        the_plan = plan(s, options.schedule)
    block_size, whole_names = _block_size(model_config.get("block_size")), bool(model_config.get("whole_names"))
    if the_plan.recipe.steps > MAX_STEPS:
        raise _CannotTrain("fail", f"{the_plan.recipe.steps:,} steps is more than the {MAX_STEPS:,} the grader trains")
    agreement_x = reference.agreement_inputs(block_size, whole_names)
    try:
        reference.trained_shapes(stage, model_config, agreement_x)  # on `meta`: before anything is drawn
    except reference.CannotEvaluate as err:
        raise _CannotTrain("fail", f"the grader cannot build its model: {err}") from None
    data, targets = _instructor_data(options, block_size, whole_names)
    fresh = (options.retrain or options.tier == "hidden" or submission.suffix == ".ipynb"
             or options.schedule == "challenge")
    ckpt = "" if fresh else _valid_checkpoint(submission, stage, the_plan.recipe, model_config)
    steps = f"{the_plan.recipe.steps:,} steps"
    source = ("from the submission's checkpoint" if ckpt else
              f"trained with its {s.entry_file} ({steps}, the grader's seed)" if options.schedule == "challenge"
              else f"trained with the grader's schedule ({steps})")
    training = {**_training(the_plan.recipe), **data, "compiled": options.compiled()}
    job = {"stage": stage, "targets": targets, "source": source, "model_config": model_config,
           "agreement_x": agreement_x}
    init = None if ckpt else _initial(stage, model_config)  # a checkpoint has trained already: nothing to replay
    if init is not None:
        job["replay"] = {"stage": stage, "model_config": model_config, "init": init, **training}
        job["source"] += ", as the grader's own training of it"
    call = Call(stage_weights, {"stage": stage, "model_config": model_config, "seed": GRADER_SEED, "checkpoint": ckpt,
                                "agreement_x": agreement_x, "init": init, **training})
    return call, job


def _initial(stage: int, model_config: dict) -> dict:
    """The master's initial tensors of the stage's model and the random state after them (replay.initial)."""
    with _REFERENCE_LOCK:  # the default dtype and the random generator are the process's
        return replay.initial(stage, model_config, GRADER_SEED)


def _own_stage_call(submission: Path, options: Options, stage: int, config) -> tuple[Call, dict]:
    """The student's self-check: the child plans, builds the windows and trains with the student's
    own code, and returns the val targets beside the logits."""
    s = get_stage(stage)
    if options.schedule != "challenge" and config.status != "ok":
        raise _CannotTrain(config.status, f"the stage's configuration: {config.message}")
    entry = str(submission / s.entry_file) if options.schedule == "challenge" else ""
    call = Call(own_stage_logits, {"stage": stage, "schedule": options.schedule, "names": _names(options),
                                   "seed": GRADER_SEED, "entry": entry, "runs": str(submission / "runs"),
                                   "retrain": options.retrain or options.schedule == "challenge"})
    return call, {"stage": stage, "targets": None, "source": f"trained by your own code ({options.schedule} schedule)"}


def _notebook_call(submission: Path, options: Options) -> tuple[Call, dict]:
    """A lecture-style notebook's own model, trained with the lecture's recipe on windows of the
    notebook's block_size: the grader's, or in the student edition the notebook's own."""
    the_plan = plan(1, "full" if options.schedule == "full" else "quick")
    block_size = _block_size(notebook.literal(submission, "block_size") or 3)
    source = f"the notebook's own model, trained with the grader's schedule ({the_plan.recipe.steps:,} steps)"
    if is_student():
        call = Call(notebook_logits, {"seed": GRADER_SEED, "recipe": asdict(the_plan.recipe), "names": _names(options),
                                      "block_size": block_size})
        return call, {"stage": None, "targets": None, "source": source}
    data, targets = _instructor_data(options, block_size, whole_names=False)
    agreement_x = reference.agreement_inputs(block_size, whole_names=False)
    training = {**_training(the_plan.recipe), **data, "compiled": options.compiled()}
    # the initial tensors of each lecture model at this context, last stage first, as lecture_stage looks
    inits = {s.number: _initial(s.number, asdict(s.config)) for s in reversed(all_stages().values())
             if not s.bar and s.config.block_size == block_size and not s.config.whole_names}
    call = Call(notebook_weights, {"seed": GRADER_SEED, "agreement_x": agreement_x, "inits": inits, **training})
    source += ", as the grader's own training of it"
    return call, {"stage": None, "targets": targets, "source": source, "agreement_x": agreement_x, "inits": inits,
                  "training": training, "seconds": options.training_seconds or TRAINING_SECONDS[options.schedule]}


def _training(recipe: TrainConfig) -> dict:
    """The recipe for the child, and each step's learning rate, computed here: the instructor's loop
    in the child takes them as numbers."""
    lrs = torch.tensor([recipe.lr_at(i) for i in range(recipe.steps)], dtype=torch.float64)
    return {"recipe": asdict(recipe), "lrs": lrs}


def _names(options: Options) -> str:
    return str(Path(options.names) if options.names else names_path())


def _instructor_data(options: Options, block_size: int, whole_names: bool) -> tuple[dict, dict]:
    """The grader's own windows (the master's code): the train split for the child, and the splits
    to score, {split: (X, Y)}, which stay here. The hidden tier adds the test split, or a private
    file's names."""
    splits = _splits(block_size, _names(options), whole_names)
    targets = {"val": splits["val"]}
    if options.tier == "hidden":
        build = build_names if whole_names else build_dataset
        private = options.test_names
        targets["test"] = build(load_words(private), block_size) if private else splits["test"]
    return {"train_x": splits["train"][0], "train_y": splits["train"][1]}, targets


@functools.lru_cache(maxsize=2)
def _train_names_file(names: str) -> Path:
    """The names.txt a lecture-style notebook opens in the instructor's grading: the train split's
    words only (the grader trains it on its own windows; no val or test word reaches its code).
    Kept beside the fetched names.txt, by the names file's checksum."""
    path = cache_dir() / f"train-{sha256(names)[:16]}.txt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # grading workers may write it at once
        tmp.write_text("\n".join(split_words(load_words(names))["train"]) + "\n")
        os.replace(tmp, path)
    return path


@functools.lru_cache(maxsize=4)
def _splits(block_size: int, names: str, whole_names: bool) -> dict:
    """The splits, built once per process: a worker grading a class reads names.txt once."""
    return load_splits(block_size, path=names, whole_names=whole_names)


def _valid_checkpoint(submission: Path, stage: int, recipe, model_config: dict) -> str:
    """The student's checkpoint for the stage if it was trained with this recipe, the grader's seed
    and the configuration the submission reports, else ''."""
    from makemore_wavenet.shared import checkpoint as ckpt_io
    from makemore_wavenet.stages import checkpoint_path

    path = checkpoint_path(stage, submission / "runs")
    try:
        ckpt = ckpt_io.load(path)
    except ckpt_io.CheckpointError:
        return ""
    config = ckpt["model_config"]
    same_model = (config if isinstance(config, dict) else asdict(config)) == model_config
    return str(path) if ckpt_io.trained_with(ckpt, stage, recipe, GRADER_SEED) and same_model else ""


def stage_for_params(params: int | None) -> int | None:
    """The lecture's stage a model of `params` parameters is: the last of the stages that size."""
    return max((s.number for s in all_stages().values() if not s.bar and s.lecture.params == params), default=None)


def _judge_losses(job: dict, outcome, options: Options, report: Report) -> None:
    stage, outputs = job["stage"], None
    if outcome.status == "ok":
        try:
            stage, outputs = _evaluated(job, outcome.value)
        except reference.CannotEvaluate as err:
            outcome = Outcome("fail", message=f"the grader cannot evaluate the trained model: {err}")
        except Exception as err:  # what the child returned breaks the evaluation: this row's error, not the grader's
            outcome = Outcome("error", message=f"the grader could not evaluate the trained model: "
                                               f"{type(err).__name__}: {str(err)[:300]}")
    if stage is None:  # a lecture-style notebook whose model is no stage of the lecture's
        _notebook_row(report, "fail" if outcome.status == "ok" else outcome.status, outcome.message)
        return
    if stage not in options.graded_stages():  # a notebook's own model, of a stage this grading does not ask for
        _notebook_row(report, "fail", f"the notebook's model is stage {stage}'s; this grading asks for stage "
                      + ", ".join(map(str, options.graded_stages())))
        return
    source = job["source"] + (" (from your checkpoint)" if outputs and outputs.get("checkpoint") else "")
    if outputs and outputs.get("training"):
        source += f"; the submission's training: {outputs['training']}"

    def judge(i: int, split: str, limit: float) -> CheckResult:
        if outputs is None:
            training = f" (training on the {options.schedule} schedule)" if outcome.status == "timeout" else ""
            return CheckResult(stage, "", "", "", outcome.status, outcome.message + training)
        try:
            loss = _cross_entropy(outputs["logits"][i], outputs["targets"][i])
        except Exception as err:
            return CheckResult(stage, "", "", "", "error", f"unusable logits: {err}")
        ok = loss <= limit  # NaN fails too
        message = f"{split} {loss:.4f}, {source}"
        if not ok:
            message += (f"; the threshold is {limit:.4f}. A loss near 3.30 = -log(1/27) means the model "
                        "predicts nothing: constant logits, or no learning" if loss > 3.2 else
                        f"; the threshold is {limit:.4f}")
            if is_student() and report.log.strip():
                message += ". What your code printed is shown below the table"
        report.losses.append(Loss(stage, split, loss, ok))
        return CheckResult(stage, "", "", "", "pass" if ok else "fail", message, value=loss)

    splits = tuple(job["targets"]) if job["targets"] else ("val",)
    _loss_rows(report, stage, options, judge, splits=splits)


def _notebook_row(report: Report, status: str, message: str) -> None:
    """The loss row of a lecture-style notebook that answers for no stage: what kept it from one."""
    report.results.append(CheckResult(None, "notebook", "model size and loss", "public", status, message))


def _evaluated(job: dict, value) -> tuple[int | None, dict]:
    """The stage a loss check answers for and its outputs: {"logits": [...], "targets": [...]}, one
    of each per split. In the instructor's grading this process computes the logits with its own
    model of the stage holding the trained tensors the child returned (grader/reference.py); the
    student's self-check takes the logits and targets its own code computed. Raises
    reference.CannotEvaluate when the tensors make no model the grader evaluates."""
    if not isinstance(value, dict):
        raise reference.CannotEvaluate(f"the child returned {type(value).__name__}, not a trained model")
    if job["targets"] is None:  # the student's self-check: the logits of the student's own evaluation
        stage = job["stage"] if job["stage"] is not None else stage_for_params(value.get("params"))
        if stage is None:
            raise reference.CannotEvaluate(_no_stage_of(value.get("params")))
        return stage, {"logits": value.get("logits"), "targets": value.get("targets"),
                       "checkpoint": value.get("checkpoint")}
    x = job["agreement_x"]
    if job["stage"] is None:
        if stage_for_params(value.get("params")) is None:
            raise reference.CannotEvaluate(_no_stage_of(value.get("params")))
        stage, model = reference.lecture_stage(value["params"], value.get("state"), x)
    else:
        stage, model = job["stage"], reference.stage_model(job["stage"], job["model_config"], value.get("state"), x)
    if problem := reference.disagreement(model, x, value.get("agreement")):
        raise reference.CannotEvaluate(problem)
    model = _grader_trained(job, stage, model, value.get("started"), value)
    targets = job["targets"].values()
    return stage, {"logits": [reference.logits(model, X) for X, _ in targets], "targets": [Y for _, Y in targets],
                   "training": _training_path(value.get("training"))}


def _training_path(told) -> str:
    """How the child says the submission's model trained (loop.Training.describe), as one short line:
    the submission's code could have written it, so it is shown as text and nothing is read from it."""
    return " ".join(told.split())[:MESSAGE_CAP // 4] if isinstance(told, str) else ""


def _grader_trained(job: dict, stage: int, theirs, started=None, value=None):
    """The grader's own training of the model `theirs` holds the submission's training of, when the
    two end at the same val loss (reference.training_disagreement); `theirs` itself for a checkpoint,
    which trained before grading and has nothing to replay. A notebook's replay starts from the initial
    tensors the child says it loaded (`started`) and runs here, once its stage is known, on the path
    the child's training says it took (`value`, what the child returned: _followed)."""
    if job["stage"] is None:
        if type(started) is not int or started not in job["inits"]:
            raise reference.CannotEvaluate("its model did not start from the tensors of a lecture model at its "
                                           "block_size, so the grader cannot train it as the lecture's")
        config = asdict(get_stage(stage).config)
        spec = _followed({**job["training"], "stage": stage, "model_config": config, "init": job["inits"][started]},
                         value)
        ours = replay.Replay([spec])
        try:
            [trained] = ours.result(job["seconds"])
        finally:
            ours.stop()
    elif "replay" in job:
        config, trained = job["model_config"], job["trained"]
    else:
        return theirs
    if not isinstance(trained, dict):
        raise RuntimeError(trained)  # the grader's own training failed: the row's error, not the student's
    ours = reference.stage_model(stage, config, trained, job["agreement_x"])
    if problem := reference.training_disagreement(theirs, ours, *job["targets"]["val"]):
        raise reference.CannotEvaluate(problem)
    return ours


def _no_stage_of(params) -> str:
    sizes = ", ".join(f"{p:,}" for p in sorted({s.lecture.params for s in all_stages().values()}))
    if not isinstance(params, int):
        return f"it reported no parameter count (got {params!r})"
    return f"the notebook's model has {params:,} parameters, which matches no stage ({sizes})"


def _loss_rows(report: Report, stage: int, options: Options, result, message: str = "", splits=None) -> None:
    """A stage's loss rows (val; test on the hidden tier): `result` is a status with its message, or
    judge(i, split, limit) -> CheckResult for each split."""
    splits = splits or (("val", "test") if options.tier == "hidden" else ("val",))
    row = get_stage(stage).row
    for i, split in enumerate(splits):
        tier = "public" if split == "val" else "hidden"
        try:
            limit = options.thresholds.limit(split, options.schedule, stage)
        except GraderError as err:  # no calibration for this stage and schedule: say so, keep the rest
            report.results.append(CheckResult(stage, row, f"{split} loss ({options.schedule} schedule)", tier,
                                              "error", str(err)))
            continue
        r = result(i, split, limit) if callable(result) else CheckResult(stage, "", "", "", result, message)
        r.row, r.tier, r.check = row, tier, f"{split} loss <= {limit:.4f} ({options.schedule} schedule)"
        report.results.append(r)


def _cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The mean loss of logits (..., 27) against targets (...), padding (IGNORE) left out; computed
    here, never by the submission."""
    if logits.shape != (*y.shape, 27):
        raise ValueError(f"expected logits of shape {(*y.shape, 27)}, got {tuple(logits.shape)}")
    return F.cross_entropy(logits.double().reshape(-1, 27), y.reshape(-1), ignore_index=IGNORE).item()


def ship_expected(out_root: Path) -> Path:
    """Write the public checks' reference values into an edition (the release calls this)."""
    checks = checks_for("public")
    path = out_root / EXPECTED_FILE.relative_to(Path(__file__).resolve().parents[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(reference_values(checks), path)
    return path
