"""Grade a class: every submission in its own worker, every report into the gradebook.

Grading one submission is an independent job, so any `concurrent.futures` executor can run them:
local processes by default. Each report is stored the moment it arrives, and a submission that
breaks the grader itself still gets a report that says so: one bad submission never costs
another's result. The gradebook is the instructor's record and keeps every report whole; what
goes back to a student is their copy (Report.for_student), written by `hand_back`.
"""

from __future__ import annotations

import os
import traceback
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from tqdm.auto import tqdm

from . import GraderError
from .grade import Options
from .gradebook import Gradebook
from .report import CheckResult, Report


def find_submissions(folder: str | Path) -> list[tuple[str, Path]]:
    """(student, path) for every submission in `folder`: each subfolder is one student's work."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GraderError(f"{folder} is not a folder of submissions")
    subs = [(p.name, p) for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    if not subs:
        raise GraderError(f"{folder} holds no submissions (one subfolder per student)")
    return subs


def grade_one(student: str, path: Path, options: Options) -> Report:
    """grade(), never raising: a failure of the grader on this submission becomes its report."""
    from .grade import grade

    try:
        report = grade(path, options)
    except Exception as err:
        report = error_report(path, options, f"the grader could not grade this submission: "
                              f"{type(err).__name__}: {err}", log=traceback.format_exc()[-2000:])
    report.student = student
    return report


def error_report(path: Path, options: Options, message: str, log: str = "") -> Report:
    """The report of a submission that could not be graded at all: one check, an error (of the
    submission as a whole, so a public row, as a notebook's "every code cell parses" is)."""
    return Report(str(path), options.tier, options.schedule,
                  [CheckResult(None, "submission", "grading", "public", "error", message)], log=log)


def grade_many(submissions: list[tuple[str, Path]], gradebook: Gradebook, options: Options = Options(),
               cohort: str = "", executor: Executor | None = None, progress: bool = True) -> list[tuple[str, int]]:
    """Grade every (student, path) and store each report; returns (student, report id) pairs."""
    own = executor is None
    if own:
        workers = min(len(submissions), os.cpu_count() or 1)
        executor = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
    stored = []
    try:
        futures = {executor.submit(grade_one, student, path, options): (student, path)
                   for student, path in submissions}
        with tqdm(total=len(futures), desc="grading", unit="submission", disable=not progress) as bar:
            for future in as_completed(futures):
                student, path = futures[future]
                try:
                    report = future.result()
                except Exception as err:  # the worker itself died: still a report
                    report = error_report(path, options, f"the grading worker failed: {type(err).__name__}: {err}")
                stored.append((student, gradebook.add(report, student, cohort)))
                bar.set_postfix(last=f"{student} {report.passed}/{len(report.results)}", refresh=False)
                bar.update()
    finally:
        if own:
            executor.shutdown()
    return stored


def hand_back(gradebook: Gradebook, stored: list[tuple[str, int]], folder: str | Path, details: bool = False,
              log: bool = False) -> list[Path]:
    """Write each student's copy of their report into `folder` as STUDENT.json and STUDENT.md: what
    the instructor hands back, without the hidden-tier details and the log unless `details`, `log`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for student, report_id in stored:
        copy = gradebook.report(report_id).for_student(details=details, log=log)
        markdown = folder / f"{student}.md"
        markdown.write_text(copy.to_markdown(), encoding="utf-8")
        written += [copy.save(folder / f"{student}.json"), markdown]
    return written
