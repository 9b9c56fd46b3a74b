"""Grading on Gradescope: the autograder bundle run as Gradescope runs it, results.json checked
against the specification's fields, what a student sees before the grades are published, and the
points, the same in every place a score is read."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest
from fixtures.lecture_notebook import EXPLORING_CELLS, lecture_notebook

from makemore_wavenet.grader import GraderError, gradescope
from makemore_wavenet.grader.__main__ import main as grader_main
from makemore_wavenet.grader.autograder import Assignment, build, find_submission
from makemore_wavenet.grader.gradebook import Gradebook
from makemore_wavenet.grader.hidden import HIDDEN_SIZES
from makemore_wavenet.grader.points import Points, assign
from makemore_wavenet.grader.report import CheckResult, Loss, Report
from test_report_privacy import LEAK, LOG_SENTINEL, MSG_SENTINEL, isolated
from test_sandbox import hostile

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A stage-2 assignment: exercise 2.2 is where test_sandbox's `hostile` code runs."""
    return build(tmp_path_factory.mktemp("bundle"), Assignment(stages=(2,), torch="2.13.0"))


@pytest.fixture(scope="module")
def master(tmp_path_factory, bundle) -> tuple[dict, str]:
    """The master, one folder down (a zip of the checkout's folder), graded by run_autograder."""
    return autograde(tmp_path_factory.mktemp("master"), bundle, copy_master)


def autograde(tmp_path: Path, bundle: Path, submit) -> tuple[dict, str]:
    """Lay out an /autograder-shaped folder (source: the unzipped bundle; submission: what `submit`
    puts in it; results), run run_autograder as Gradescope does, and return results.json and stdout."""
    root = tmp_path / "autograder"
    with zipfile.ZipFile(bundle) as z:
        z.extractall(root / "source")
    for script in ("setup.sh", "run_autograder"):  # zipfile drops the modes Gradescope's unzip keeps
        (root / "source" / script).chmod(0o755)
    (root / "submission").mkdir()
    (root / "results").mkdir()
    submit(root / "submission")
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "MAKEMORE_PYTHON": sys.executable}
    done = subprocess.run([str(root / "source" / "run_autograder")], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads((root / "results" / "results.json").read_text()), done.stdout


def visible_text(data: dict) -> str:
    """Every field a student sees before the grades are published: the top-level output, the tests
    whose visibility is "visible", the leaderboard (stdout stays hidden)."""
    assert data.get("stdout_visibility") == "hidden"
    tests = [t for t in data["tests"] if t.get("visibility", "visible") == "visible"]
    return json.dumps([data.get("output", ""), tests, data.get("leaderboard", [])])


def assert_valid(data: dict) -> None:
    assert gradescope.problems(data) == []
    assert data["output_format"] == "md" and data["tests"]


def copy_master(folder: Path) -> None:
    for name in ("shared", "stages"):
        shutil.copytree(ROOT / name, folder / "makemore-wavenet" / name, ignore=shutil.ignore_patterns("__pycache__"))


def test_the_bundle_holds_what_gradescope_runs_and_the_private_parts(bundle):
    with zipfile.ZipFile(bundle) as z:
        names = set(z.namelist())
        modes = {info.filename: info.external_attr >> 16 for info in z.infolist()}
        setup = z.read("setup.sh").decode()
    assert {"setup.sh", "run_autograder", "assignment.json", "project/pyproject.toml",
            "project/grader/hidden/__init__.py", "project/grader/calibration.json"} <= names
    assert not any("__pycache__" in n or n.startswith("project/tests/") for n in names)
    assert modes["setup.sh"] & 0o111 and modes["run_autograder"] & 0o111
    assert "torch==2.13.0" in setup and "download.pytorch.org/whl/cpu" in setup and "chmod -R go-rwx" in setup
    assert subprocess.run(["bash", "-n", "-c", setup]).returncode == 0


def test_run_autograder_grades_the_master_a_fresh_edition_and_a_lecture_notebook(tmp_path, bundle, master):
    # the master: every point, its val on the leaderboard
    data, stdout = master
    assert_valid(data)
    assert data["score"] == sum(t["max_score"] for t in data["tests"]) == 5  # 1 a row: 2.1 to 2.4, stage 2
    assert [e["name"] for e in data["leaderboard"]] == ["stage 2 val loss"] and data["leaderboard"][0]["order"] == "asc"
    assert {t["visibility"] for t in data["tests"] if "(public checks)" in t["name"]} == {"visible"}
    assert {t["visibility"] for t in data["tests"] if "(hidden checks)" in t["name"]} == {"after_published"}
    assert "public and hidden: 5 of 5 points" in stdout  # the instructor's whole report, in Gradescope's stdout

    # a fresh student edition at the top: nothing earned, each row says why, no loss to rank
    def fresh(folder: Path) -> None:
        from makemore_wavenet.grader.release import release

        release(folder / "edition")
        for item in (folder / "edition").iterdir():
            item.rename(folder / item.name)

    data, _ = autograde(tmp_path / "fresh", bundle, fresh)
    assert_valid(data)
    assert data["score"] == 0 and "leaderboard" not in data
    assert {t["status"] for t in data["tests"]} == {"failed"}
    assert "NOT DONE" in data["output"] and "WAITING" in data["output"]

    # a lecture-style notebook of any name, on a stage-6 assignment: its own model (stage 6 by its size)
    stage6 = build(tmp_path / "stage6", Assignment(stages=(6,), torch="2.13.0"))
    data, stdout = autograde(tmp_path / "notebook", stage6,
                        lambda folder: nbformat.write(lecture_notebook(EXPLORING_CELLS), folder / "my work.ipynb"))
    assert_valid(data)
    assert data["score"] == sum(t["max_score"] for t in data["tests"]) > 0
    assert [e["name"] for e in data["leaderboard"]] == ["stage 6 val loss"] and data["leaderboard"][0]["value"] < 2.16
    assert {t["tags"][1] for t in data["tests"]} == {"stage 6"}  # only what the assignment asks for
    assert "test loss" in stdout and "6.1" in stdout  # its size says stage 6; the hidden tier's test loss ran


def test_a_notebook_earns_only_what_its_assignment_asks_for(tmp_path):
    """The lecture's notebook defines exercises of stages 2 to 6: graded for stage 4, it gets stage
    4's rows alone."""
    from makemore_wavenet.grader.grade import Options, grade
    from makemore_wavenet.grader.sandbox import Limits

    path = tmp_path / "lecture.ipynb"
    nbformat.write(lecture_notebook(EXPLORING_CELLS), path)
    limits = Limits(isolation="none", allow_unisolated=True)
    report = grade(path, Options(tier="public", stages=(4,), losses=False, limits=limits))
    assert {r.stage for r in report.results} == {4} and report.earned == report.possible > 0


@pytest.mark.e2e  # it trains the notebook's model
def test_a_notebooks_model_of_another_stage_earns_nothing(tmp_path):
    from makemore_wavenet.grader.grade import Options, grade
    from makemore_wavenet.grader.sandbox import Limits

    path = tmp_path / "lecture.ipynb"
    nbformat.write(lecture_notebook(EXPLORING_CELLS), path)
    report = grade(path, Options(tier="public", stages=(1,), limits=Limits(isolation="none", allow_unisolated=True)))
    assert [(r.row, r.status) for r in report.results] == [("notebook", "fail")]
    assert "the notebook's model is stage 6's; this grading asks for stage 1" in report.results[0].message


def test_a_submission_that_cannot_be_graded_still_gets_results_that_say_why(tmp_path, bundle):
    def two_notebooks(folder: Path) -> None:
        for name in ("a.ipynb", "b.ipynb"):
            nbformat.write(lecture_notebook(EXPLORING_CELLS), folder / name)

    data, _ = autograde(tmp_path, bundle, two_notebooks)
    assert gradescope.problems(data) == [] and data["score"] == 0
    assert "2 notebooks (a.ipynb, b.ipynb)" in data["output"]


def test_find_submission_takes_the_top_one_folder_down_or_one_notebook_and_follows_no_link(tmp_path):
    (tmp_path / "top" / "shared").mkdir(parents=True)
    (tmp_path / "top" / "stages").mkdir()
    assert find_submission(tmp_path / "top") == tmp_path / "top"
    (tmp_path / "down" / "work" / "shared").mkdir(parents=True)
    (tmp_path / "down" / "work" / "stages").mkdir()
    assert find_submission(tmp_path / "down") == tmp_path / "down" / "work"
    (tmp_path / "nb" / "hw").mkdir(parents=True)
    (tmp_path / "nb" / "hw" / "anything.ipynb").write_text("{}")
    assert find_submission(tmp_path / "nb") == tmp_path / "nb" / "hw" / "anything.ipynb"
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / "x").symlink_to(tmp_path / "top")  # a link to a folder elsewhere is never graded
    (tmp_path / "link" / "y.ipynb").symlink_to(tmp_path / "nb" / "hw" / "anything.ipynb")
    with pytest.raises(GraderError, match="no notebook"):
        find_submission(tmp_path / "link")


# on a hidden check's input, every way the code could say something: a "not done" (which once spread
# to the row's public checks, message and all), an error message, the log, the time it takes, a file
# left for the training round
HIDDEN_ROUND = f"""
import time
print({LOG_SENTINEL!r}, flush=True)
if x.shape[0] == {HIDDEN_SIZES['batch']}:  # the hidden tier's batch
    time.sleep(3)
    with open('/tmp/stash', 'w') as f:
        f.write({MSG_SENTINEL!r})
    raise NotImplementedError(f'{MSG_SENTINEL} got {{tuple(x.shape)}} {{x.flatten()[:4].tolist()}}')
"""


def test_nothing_the_code_does_on_a_hidden_input_changes_what_a_student_sees_before_publishing(tmp_path, bundle,
                                                                                                 master):
    """Graded by run_autograder, the hostile submission's visible fields (the output, the visible tests
    with their statuses and points, the leaderboard) are the honest master's to the character, and its
    sentinels are in no field of results.json, only in the instructor's stdout."""
    submission = hostile(tmp_path, HIDDEN_ROUND)
    data, stdout = autograde(tmp_path / "run", bundle,
                             lambda folder: shutil.copytree(submission, folder, dirs_exist_ok=True))
    assert_valid(data)
    assert MSG_SENTINEL in stdout and LOG_SENTINEL in stdout  # the attack ran: the instructor sees it
    assert any(t["status"] == "failed" for t in data["tests"] if "2.2" in t["name"] and "hidden" in t["name"])
    assert MSG_SENTINEL not in json.dumps(data) and LOG_SENTINEL not in json.dumps(data)
    assert visible_text(data) == visible_text(master[0])



def test_what_the_instructor_shares_goes_to_the_hidden_tests_alone():
    report = Report(submission="x", tier="hidden", schedule="quick", log=f"{LOG_SENTINEL}\n", results=[
        CheckResult(2, "2.2", "flatten (4, 8, 3)", "public", "pass"),
        CheckResult(2, "2.2", "flatten (7, 16, 5)", "hidden", "error", f"ValueError: {MSG_SENTINEL}")])
    for hidden in ("after_published", "after_due_date", "hidden"):
        shared = gradescope.results(report, hidden=hidden, details=True, log=True, score_visible=True)
        assert gradescope.problems(shared) == []
        assert MSG_SENTINEL in json.dumps(shared["tests"]) and LOG_SENTINEL in json.dumps(shared["tests"])
        assert MSG_SENTINEL not in visible_text(shared) and LOG_SENTINEL not in visible_text(shared)


def test_results_json_carries_the_points_the_report_has(tmp_path):
    report = Report(submission="x", tier="hidden", schedule="quick", results=[
        CheckResult(1, "1.1", "a", "public", "pass"), CheckResult(1, "1.1", "b", "hidden", "fail", "off by 1"),
        CheckResult(1, "1.1", "c", "hidden", "pass"), CheckResult(1, "stage 1", "val loss", "public", "pass",
                                                                  "val 2.25", value=2.25)],
        losses=[Loss(1, "val", 2.25), Loss(1, "test", 2.26)])
    assign(report.results, Points(default=1, rows={"1.1": 3}))
    data = gradescope.results(report)
    assert gradescope.problems(data) == []
    assert [(t["name"], t["score"], t["max_score"]) for t in data["tests"]] == [
        ("1.1 MLP forward pass (public checks)", 1, 1), ("1.1 MLP forward pass (hidden checks)", 1, 2),
        ("stage 1 training and model (public checks)", 1, 1)]
    assert data["score"] == report.earned == 3 and report.possible == 4
    assert data["leaderboard"] == [{"name": "stage 1 val loss", "value": 2.25, "order": "asc"}]  # val only
    assert "3 of 4 points" not in visible_text(data)  # the whole score: only if the instructor opts in
    assert "public and hidden checks: 3 of 4 points" in gradescope.results(report, score_visible=True)["output"]
    failed_loss = replace(report, losses=[Loss(1, "val", 2.25, passed=False)])
    assert "leaderboard" not in gradescope.results(failed_loss)


@pytest.mark.parametrize("broken, problem", [
    ({"score": "3"}, "score is a number"),
    ({"visibility": "soon"}, "visibility is one of"),
    ({"tests": [{"name": "t", "score": 2, "max_score": 1}]}, "within 0..max"),
    ({"tests": [{"name": "t", "score": 1, "max_score": 1, "status": "ok"}]}, "status is one of"),
    ({"tests": [{"name": "t", "score": 1, "max_score": 1, "visibility": "public"}]}, "visibility is one of"),
    ({"score": 5, "tests": [{"name": "t", "score": 1, "max_score": 1}]}, "sum of the tests"),
    ({"leaderboard": [{"name": "val", "value": 2.1, "order": "up"}]}, "order is one of"),
    ({"leaderboard": [{"name": "val", "value": 2.1, "visibility": "hidden"}]}, "only name, value, order"),
])
def test_the_specification_check_catches_what_gradescope_would_refuse(broken, problem):
    data = {"score": 1, "tests": [{"name": "t", "score": 1, "max_score": 1}], **broken}
    assert any(problem in p for p in gradescope.problems(data)), gradescope.problems(data)


@pytest.mark.parametrize("text, error", [
    ('"1.2" = -1', "0 or more"), ('"9.9" = 1', "no row of a report"), ('"1.2" = true', "a number"),
    ("default = [", "cannot read"), ('"stage 4" = "3"', "a number")])
def test_a_points_file_that_is_wrong_says_what_is_wrong(tmp_path, text, error):
    path = tmp_path / "points.toml"
    path.write_text(text)
    with pytest.raises(GraderError, match=error):
        Points.load(path)


def test_one_score_in_the_terminal_the_json_results_json_the_gradebook_and_its_csv(tmp_path, capsys, monkeypatch):
    """An instructor's points (2.2 worth 3, stage 2's own row nothing), exercise checks of a submission
    whose 2.2 fails its hidden check: 2.1, 2.3, 2.4 and half of 2.2 = 1 + 1 + 1 + 1.5 of 6."""
    points = tmp_path / "points.toml"
    points.write_text('default = 1\n"2.2" = 3\n"stage 2" = 0\n')
    submission = hostile(tmp_path / "class", LEAK, "ada")
    argv = ["--tier", "hidden", "--stage", "2", "--points", str(points), *isolated()]
    assert grader_main(["grade", str(submission), "--skip-loss", *argv, "--json", str(tmp_path / "r.json"),
                        "--gradescope", str(tmp_path / "results.json"), "--markdown", str(tmp_path / "r.md")]) == 1
    terminal = capsys.readouterr().out
    assert "4.5 of 6 points (score 75.0%)" in terminal and "1.5/3" in terminal
    assert "4.5 of 6 points" in (tmp_path / "r.md").read_text()
    assert json.loads((tmp_path / "r.json").read_text())["earned"] == 4.5
    assert json.loads((tmp_path / "results.json").read_text())["score"] == 4.5

    import makemore_wavenet.grader.__main__ as cli

    options = cli.grading_options
    monkeypatch.setattr(cli, "grading_options", lambda args: replace(options(args), losses=False))
    book = tmp_path / "book.db"
    assert grader_main(["grade-all", str(tmp_path / "class"), "--gradebook", str(book), *argv]) == 0
    assert "75.0%" in capsys.readouterr().out
    assert grader_main(["gradebook", "export", "--gradebook", str(book), "--out", str(tmp_path / "lms.csv")]) == 0
    assert (tmp_path / "lms.csv").read_text().splitlines() == ["student,stage 2,total,possible", "ada,4.5,4.5,6"]


def test_the_csv_has_a_row_per_student_a_column_per_stage_and_one_cohort(tmp_path):
    def report(*statuses):
        results = [CheckResult(stage, f"{stage}.1", f"c{i}", "public", status)
                   for i, (stage, status) in enumerate(statuses)]
        assign(results, Points())
        return Report(submission="x", tier="hidden", schedule="quick", results=results)

    with Gradebook(tmp_path / "book.db") as book:
        book.add(report((1, "fail"), (4, "pass")), "bo")
        book.add(report((1, "pass"), (4, "pass")), "al")
        book.add(report((1, "pass"), (4, "fail")), "bo")  # bo's newest counts
        assert book.export_csv().splitlines() == ["student,stage 1,stage 4,total,possible",
                                                  "al,1,1,2,2", "bo,1,0,1,2"]
        book.add(report((1, "pass")), "cy", cohort="2027-spring")
        with pytest.raises(GraderError, match="--cohort"):
            book.export_csv()
        assert book.export_csv(cohort="2027-spring").splitlines()[1:] == ["cy,1,1,1"]


def test_a_failure_says_why_in_plain_text_whatever_the_file_names():
    data = gradescope.failure("2 notebooks (b.ipynb, \udcff[click](https://evil.example)<img src=x>.ipynb)")
    assert gradescope.problems(data) == [] and data["score"] == 0
    json.dumps(data).encode("utf-8")  # no lone surrogate left
    assert "\\[click\\]" in data["output"] and "\\<img" in data["output"]


def test_markdown_feedback_names_what_passed_what_differed_and_keeps_a_message_as_it_was_written():
    report = Report(submission="x", tier="public", schedule="quick", results=[
        CheckResult(1, "1.2", "one SGD step", "public", "pass"),
        CheckResult(1, "1.2", "two steps", "public", "fail", "max |diff| 0.5. Hint: lr * grad"),
        CheckResult(1, "1.3", "loss <b>", "public", "error", "ValueError: ![x](http://evil/) **bold**")])
    assign(report.results, Points())
    text = report.to_markdown()
    assert "## 1.2 training step: FAIL, 1 of 2 checks, 0.5 of 1 points" in text
    assert "Passed: one SGD step" in text and "Hint: lr * grad" in text
    assert "loss \\<b\\>" in text  # a name is escaped; a message sits in a code block, as written
    assert "```text\nValueError: ![x](http://evil/) **bold**\n```" in text


@pytest.mark.e2e
def test_setup_sh_builds_the_image_grades_the_master_and_hides_the_private_parts(tmp_path):
    """setup.sh run for real, as Gradescope runs it once (apt skipped, torch from this machine's
    wheels instead of PyTorch's index): a venv of its own, the master graded in the build, the
    source root's alone; then run_autograder from that venv grades the master. The folder sits
    where any uid could walk to it, so that only the modes setup.sh sets keep a sandbox uid out."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="gradescope-", dir="/tmp"))
    try:
        root.chmod(0o755)
        with zipfile.ZipFile(build(tmp_path, Assignment(stages=(1,), torch="2.13.0"))) as z:
            z.extractall(root / "source")
        for script in ("setup.sh", "run_autograder"):
            (root / "source" / script).chmod(0o755)
        venv = root / "venv"
        env = {**os.environ, "AUTOGRADER_SOURCE": str(root / "source"), "MAKEMORE_VENV": str(venv),
               "TORCH_INDEX_URL": "", "SKIP_APT": "1"}
        env.pop("VIRTUAL_ENV", None)
        done = subprocess.run(["bash", str(root / "source" / "setup.sh")], env=env, capture_output=True, text=True,
                              timeout=1800)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "the master earns 4 of 4 points: the autograder is ready" in done.stdout

        (root / "open.txt").write_text("anyone")  # the control: a file a sandbox uid may read
        (root / "open.txt").chmod(0o644)

        def read_as_sandbox_uid(path: Path) -> int:
            def drop():
                os.setgid(59999)
                os.setuid(59999)
            return subprocess.run(["/bin/cat", str(path)], preexec_fn=drop, capture_output=True).returncode

        assert read_as_sandbox_uid(root / "open.txt") == 0
        for private in ("project/grader/hidden/__init__.py", "project/grader/reference.py", "assignment.json"):
            assert read_as_sandbox_uid(root / "source" / private) != 0, private

        (root / "submission").mkdir()
        (root / "results").mkdir()
        copy_master(root / "submission")
        env = {**{k: v for k, v in env.items() if k != "AUTOGRADER_SOURCE"}, "AUTOGRADER_ROOT": str(root)}
        done = subprocess.run([str(root / "source" / "run_autograder")], cwd=root, env=env, capture_output=True,
                              text=True, timeout=600)
        data = json.loads((root / "results" / "results.json").read_text())
        assert_valid(data)
        assert data["score"] == 4, done.stdout[-3000:]
    finally:
        shutil.rmtree(root, ignore_errors=True)
