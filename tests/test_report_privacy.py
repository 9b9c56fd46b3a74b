"""What goes back to a student: the log and every message that may carry a hidden input stay in the
instructor's records (the terminal, the gradebook), and a student's copy (grade --json, grade-all
--reports) says where they went, unless the instructor shares them (--share-details, --share-log),
which the copy records. Hostile submissions from test_sandbox's `hostile`, graded for real on
exercise checks only (seconds); the loss rows' treatment on reports built here."""

import dataclasses
import json
import sqlite3

import pytest

from makemore_wavenet.grader import isolation
from makemore_wavenet.grader.__main__ import main as grader_main
from makemore_wavenet.grader.grade import Options, checks_for, grade
from makemore_wavenet.grader.hidden import HIDDEN_SIZES
from makemore_wavenet.grader.report import HIDDEN_NOTE, IN_REACH_NOTE, LOG_NOTE, CheckResult, Loss, Report
from makemore_wavenet.grader.sandbox import Limits
from test_sandbox import hostile

LOG_SENTINEL, MSG_SENTINEL = "PRINTED-4b1d9e", "RAISED-7c2f0a"
# a hidden check's exception that names its input, and a print on every call
LEAK = f"""
print({LOG_SENTINEL!r}, flush=True)
if x.shape[0] == {HIDDEN_SIZES['batch']}:  # the hidden tier's batch: a hidden check's input
    raise ValueError(f'{MSG_SENTINEL} got {{tuple(x.shape)}}')
"""
# a public check's exception that names the hidden inputs: the child's job file holds every call of its round
JOB = """
import sys, torch
job = torch.load(sys.argv[1], weights_only=True)
raise ValueError('JOB ' + repr([tuple(kw['x'].shape) for name, kw in job['calls'] if name == 'flatten']))
"""


def isolated() -> list[str]:
    """bubblewrap where it runs, else no sandbox, allowed: what is tested here is the report."""
    return ["--isolation", "bwrap"] if not isolation.bwrap_problem() else ["--isolation", "none", "--allow-unisolated"]


def limits() -> Limits:
    bwrap = not isolation.bwrap_problem()
    return Limits(isolation="bwrap" if bwrap else "none", allow_unisolated=not bwrap)


def hidden_options() -> Options:
    return Options(tier="hidden", stages=(2,), losses=False, limits=limits())


def flatten_shape(tier: str) -> str:
    """The input of exercise 2.2's check of this tier, as the hostile code names it: "(7, 16, 5)"."""
    [check] = [c for c in checks_for(tier, (2,)) if c.tier == tier and c.call.probe.__name__ == "flatten"]
    return str(tuple(check.call.kwargs["x"].shape))


def hidden_flatten_shape() -> str:
    return flatten_shape("hidden")


def test_a_hidden_checks_message_and_the_log_reach_the_instructors_terminal_not_the_students_json(tmp_path, capsys):
    root = hostile(tmp_path, LEAK)
    argv = ["grade", str(root), "--tier", "hidden", "--skip-loss", "--stage", "2", *isolated()]
    assert grader_main([*argv, "--json", str(tmp_path / "student.json")]) == 1
    terminal = capsys.readouterr().out  # the instructor's: everything
    assert MSG_SENTINEL in terminal and LOG_SENTINEL in terminal and "This copy is for the student" in terminal
    text = (tmp_path / "student.json").read_text()
    assert MSG_SENTINEL not in text and LOG_SENTINEL not in text and hidden_flatten_shape() not in text
    copy = Report.from_json(text)
    assert (copy.audience, copy.shared, copy.log) == ("student", [], LOG_NOTE)
    leaked = [r for r in copy.results if r.tier == "hidden" and r.row == "2.2"]
    assert [(r.check, r.status, r.message) for r in leaked] == [("hidden check 1", "error", HIDDEN_NOTE)]
    public = [r for r in copy.results if r.tier == "public"]
    assert public and {r.status for r in public} == {"pass"}  # the public rows: as they were

    # the instructor asks for everything: the copy holds it, and says so
    assert grader_main([*argv, "--json", str(tmp_path / "shared.json"), "--share-details", "--share-log"]) == 1
    shared = Report.from_json((tmp_path / "shared.json").read_text())
    assert shared.shared == ["details", "log"] and LOG_SENTINEL in shared.log
    assert any(MSG_SENTINEL in r.message and hidden_flatten_shape() in r.message for r in shared.results)
    assert "the instructor shared every detail" in shared.table()


def test_a_public_check_runs_before_any_hidden_input_is_sent_so_its_details_go_back_whole(tmp_path):
    """A child holds every call of its run from the start (its job file), so the public checks run in
    a child of their own before the hidden ones: a public check's exception that reads the job names
    public inputs only, and the student's copy keeps it; the hidden round's names the hidden input,
    and stays in the instructor's records."""
    report = grade(hostile(tmp_path, JOB), hidden_options())
    public = [r for r in report.results if r.tier == "public" and r.row == "2.2"]
    hidden = [r for r in report.results if r.tier == "hidden" and r.row == "2.2"]
    assert public and all(flatten_shape("public") in r.message and hidden_flatten_shape() not in r.message
                          for r in public)
    assert hidden and all(hidden_flatten_shape() in r.message for r in hidden)  # the instructor's record
    copy = report.for_student()
    assert hidden_flatten_shape() not in copy.to_json()
    assert [r.message for r in copy.results if r.tier == "public" and r.row == "2.2"] == [r.message for r in public]

    # a report from before the rounds were split (version 2): its public details stay out
    old = dataclasses.replace(report, version=2)
    assert {r.message for r in old.for_student().results if r.tier == "public" and r.row == "2.2"} == {IN_REACH_NOTE}


def test_a_class_hands_back_clean_copies_and_keeps_everything_in_the_gradebook(tmp_path, capsys, monkeypatch):
    """grade-all with --reports DIR (exercise checks only: training is the unit test's, below): the
    gradebook and the terminal are the instructor's, DIR holds the students' copies."""
    import makemore_wavenet.grader.__main__ as cli
    from makemore_wavenet.grader.batch import hand_back
    from makemore_wavenet.grader.gradebook import Gradebook

    options = cli.grading_options
    monkeypatch.setattr(cli, "grading_options", lambda args: dataclasses.replace(options(args), losses=False))
    hostile(tmp_path / "class", LEAK, "mallory")
    hostile(tmp_path / "class", "pass", "alice")
    book, out = tmp_path / "book.db", tmp_path / "reports"
    assert grader_main(["grade-all", str(tmp_path / "class"), "--gradebook", str(book), "--stage", "2",
                        "--reports", str(out), *isolated()]) == 0
    assert f"{out}/STUDENT.json" in capsys.readouterr().out
    with sqlite3.connect(book) as db:
        records = dict(db.execute("SELECT student, report_json FROM reports"))
    assert MSG_SENTINEL in records["mallory"] and LOG_SENTINEL in records["mallory"]
    for student in ("mallory", "alice"):
        for suffix in (".json", ".md"):
            text = (out / f"{student}{suffix}").read_text()
            assert MSG_SENTINEL not in text and LOG_SENTINEL not in text and hidden_flatten_shape() not in text
    assert "in the instructor's records" in (out / "mallory.md").read_text()

    # the honest student's copy: every public row whole, the hidden rows' statuses
    whole, copy = Report.from_json(records["alice"]), Report.from_json((out / "alice.json").read_text())
    assert copy.passed == len(copy.results) == len(whole.results) > 0
    assert [r for r in copy.results if r.tier == "public"] == [r for r in whole.results if r.tier == "public"]
    assert "## 2.2 Flatten layer: PASS, 2 of 2 checks, 1 of 1 points" in (out / "alice.md").read_text()

    # the instructor shares everything: from the gradebook, no regrading; the copies record it
    with Gradebook(book) as gradebook:
        hand_back(gradebook, [(row["student"], row["id"]) for row in gradebook.latest()], tmp_path / "shared",
                  details=True, log=True)
    shared = json.loads((tmp_path / "shared" / "mallory.json").read_text())
    assert shared["shared"] == ["details", "log"] and LOG_SENTINEL in shared["log"]
    assert MSG_SENTINEL in (tmp_path / "shared" / "mallory.md").read_text()


def test_the_student_copy_keeps_the_graders_own_words_and_drops_what_the_code_shaped():
    rows = [CheckResult(2, "2.2", "flatten (4, 8, 3)", "public", "fail", "expected shape (4, 24), got (7, 80)"),
            CheckResult(2, "2.1", "lookup", "public", "not done", "exercise 2.1 is not done"),
            CheckResult(3, "stage 3", "val loss <= 2.2 (quick schedule)", "public", "waiting", "waits on 2.1"),
            CheckResult(2, "stage 2", "val loss <= 2.3 (quick schedule)", "public", "fail", "val 2.4100, ...",
                        value=2.41),
            CheckResult(2, "stage 2", "test loss <= 2.3 (quick schedule)", "hidden", "fail", "test 2.45", value=2.45),
            CheckResult(2, "2.2", "flatten (7, 16, 5)", "hidden", "pass")]
    hidden = Report("s", "hidden", "quick", rows, [Loss(2, "val", 2.41, False), Loss(2, "test", 2.45, False)],
                    log="what it printed")
    copy = hidden.for_student()  # the public rows were settled before any hidden input was sent: whole
    assert [r.message for r in copy.results] == [rows[0].message, rows[1].message, "waits on 2.1", "val 2.4100, ...",
                                                 HIDDEN_NOTE, ""]
    before = dataclasses.replace(hidden, version=2).for_student()  # graded before the rounds were so ordered
    assert [r.message for r in before.results][:4] == [IN_REACH_NOTE, IN_REACH_NOTE, "waits on 2.1", "val 2.4100, ..."]
    assert [r.check for r in copy.results][-2:] == ["test loss", "hidden check 1"]
    assert [r.status for r in copy.results] == [r.status for r in rows] and copy.losses == hidden.losses
    assert hidden.results == rows and hidden.log == "what it printed"  # the instructor's record untouched
    assert Report.from_json(copy.to_json()) == copy

    public = Report("s", "public", "quick", rows[:4], log="what it printed").for_student()
    assert public.results == rows[:4] and public.log == LOG_NOTE  # no hidden input was in reach
    assert Report("s", "public", "quick", rows[:1]).for_student().log == ""  # nothing printed: no note either
    assert Report.from_json(json.dumps({"submission": "s", "tier": "hidden", "schedule": "quick",
                                        "results": []})).audience == "instructor"  # a report from before


@pytest.mark.parametrize("command", ["grade", "grade-all"])
def test_help_says_who_sees_what(command, capsys):
    with pytest.raises(SystemExit):
        grader_main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--share-details" in text and "--share-log" in text and "instructor's records" in text
