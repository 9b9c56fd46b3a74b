"""A report as Gradescope's results.json (its autograder specification).

Each row of the report becomes one test per tier it ran in: "1.2 training step (public checks)",
"1.2 training step (hidden checks)", worth the points of that tier's checks. What a student may see
before the grades are published is built from the public checks alone:

    the public tests         "visible": the student's copy of their checks (Report.for_student), with
                             nothing the instructor chose to share; the public rows and the losses
                             are settled before any hidden input is sent (grade.py's rounds), so
                             their details are kept, and nothing the code does on a hidden input
                             changes them
    the hidden tests         `hidden` ("after_published" unless the instructor says otherwise): the
                             student's copy, hidden inputs and the log left out unless shared
    the top-level output     the public checks as Markdown, and what they earned; with
                             `score_visible`, the whole score too
    the top-level score      the sum of every test's score; Gradescope shows a student the points of
                             the tests they can see until the grades are published
    the leaderboard          each stage's val loss, where its loss check passed
    stdout                   hidden: run_autograder prints the instructor's whole report there
    execution_time           left out: the hidden round's code could stretch it to say something
"""

from __future__ import annotations

import json
from pathlib import Path

from .report import Report, checks_markdown, earned, escape, fenced, points_text, row_title

VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")
STATUSES = ("passed", "failed")
ORDERS = ("asc", "desc")


def results(report: Report, hidden: str = "after_published", score_visible: bool = False, details: bool = False,
            log: bool = False) -> dict:
    """results.json for `report`: `hidden` is the hidden tests' visibility; `details` and `log` share
    what the student's copy leaves out (--share-details, --share-log)."""
    if hidden not in VISIBILITIES:
        raise ValueError(f"visibility {hidden!r} is none of {VISIBILITIES}")
    public = report.for_student()  # what is visible at once never holds what the instructor chose to share
    shared = report.for_student(details=details, log=log)
    tests = []
    for row, _, _ in report.row_groups():
        for tier, copy, visibility in (("public", public, "visible"), ("hidden", shared, hidden)):
            tests += [_test(row, tier, mine, worth, visibility)
                      for r, mine, worth in copy.row_groups((tier,)) if r == row]
    if log and shared.log.strip():
        tests.append({"name": "What your code printed (its last part)", "score": 0.0, "max_score": 0.0,
                      "output": fenced(shared.log), "visibility": hidden})
    output = public.to_markdown(public_only=True)
    if score_visible:
        output += (f"\n**Your score, public and hidden checks: {points_text(report.earned)} of "
                   f"{points_text(report.possible)} points.**\n")
    out = {
        "score": round(sum(test["score"] for test in tests), 4),
        "output": output,
        "output_format": "md",
        "test_output_format": "md",
        "stdout_visibility": "hidden",
        "tests": tests,
    }
    board = [{"name": f"stage {loss.stage} val loss", "value": round(loss.value, 4), "order": "asc"}
             for loss in report.losses if loss.split == "val" and loss.passed]
    if board:
        out["leaderboard"] = board
    return plain(out)


def failure(message: str) -> dict:
    """results.json for a submission that could not be graded: 0 points, and `message` saying why."""
    return plain({"score": 0.0, "output": escape(message), "output_format": "md", "stdout_visibility": "hidden",
                  "tests": []})


def plain(data):
    """`data` with every string valid UTF-8 (a file name or an exception's text can hold lone
    surrogates, which a strict JSON reader refuses)."""
    if isinstance(data, str):
        return data.encode("utf-8", "replace").decode("utf-8")
    if isinstance(data, dict):
        return {plain(k): plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [plain(v) for v in data]
    return data


def _test(row: str, tier: str, mine: list, worth: list[float], visibility: str) -> dict:
    stage = [f"stage {mine[0].stage}"] if mine[0].stage is not None else []
    status = "passed" if all(r.status == "pass" for r in mine) else "failed"
    return {"name": f"{row} {row_title(row)} ({tier} checks)", "score": round(earned(mine, worth), 4),
            "max_score": round(sum(worth), 4), "status": status, "output": checks_markdown(mine),
            "visibility": visibility, "tags": [tier, *stage]}


def write(report: Report, path: str | Path, **choices) -> Path:
    """Write results.json for `report` to `path` (choices: those of `results`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results(report, **choices), indent=2), encoding="utf-8")
    return path


def problems(data: dict) -> list[str]:
    """What in `data` breaks Gradescope's results.json specification ([] nothing): the fields and types
    it documents, the values it allows, a score that is the sum of the tests' and a leaderboard of
    named numbers."""
    found = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            found.append(what)

    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value

    check(number(data.get("score")), "score is a number")
    check(number(data.get("execution_time", 0)), "execution_time is a number")
    for key in ("output", "output_format", "test_output_format"):
        check(isinstance(data.get(key, ""), str), f"{key} is text")
    for key in ("visibility", "stdout_visibility"):
        check(data.get(key, "visible") in VISIBILITIES, f"{key} is one of {VISIBILITIES}")
    tests = data.get("tests", [])
    check(isinstance(tests, list), "tests is a list")
    for i, test in enumerate(tests if isinstance(tests, list) else []):
        check(isinstance(test.get("name"), str) and bool(test["name"]), f"test {i} has a name")
        check(number(test.get("score")) and number(test.get("max_score")), f"test {i} has a score and max_score")
        check(0 <= test.get("score", -1) <= test.get("max_score", -1) + 1e-9, f"test {i}'s score is within 0..max")
        check(test.get("status", "passed") in STATUSES, f"test {i}'s status is one of {STATUSES}")
        check(test.get("visibility", "visible") in VISIBILITIES, f"test {i}'s visibility is one of {VISIBILITIES}")
        check(isinstance(test.get("output", ""), str), f"test {i}'s output is text")
        check(isinstance(test.get("tags", []), list) and all(isinstance(t, str) for t in test.get("tags", [])),
              f"test {i}'s tags are text")
    if isinstance(tests, list) and tests and number(data.get("score")):
        check(abs(data["score"] - sum(t.get("score", 0) for t in tests)) < 1e-6, "score is the sum of the tests'")
    for i, entry in enumerate(data.get("leaderboard", [])):
        check(set(entry) <= {"name", "value", "order"}, f"leaderboard entry {i} has only name, value, order")
        check(isinstance(entry.get("name"), str) and number(entry.get("value")),
              f"leaderboard entry {i} is a name and a number")
        check(entry.get("order", "desc") in ORDERS, f"leaderboard entry {i}'s order is one of {ORDERS}")
    return found
