"""A class of 12 submissions graded from checkpoints (the public tier: the hidden tier always
retrains, test_trusted_evaluation), some crashing, hanging or cheating: every report is stored, the
honest ones are scored right, and the leaderboards read the gradebook."""

import csv
import json
import io
import shutil
import time
from pathlib import Path

import pytest
import torch

from makemore_wavenet.grader.__main__ import main as grader_main
from makemore_wavenet.grader.batch import find_submissions, grade_many
from makemore_wavenet.grader.gradebook import SCHEMA, Gradebook
from makemore_wavenet.grader.leaderboard import leaderboards, render
from makemore_wavenet.grader.sandbox import Limits
from makemore_wavenet.shared.trainer import run
from makemore_wavenet.grader.grade import Options
from makemore_wavenet.stages import get_stage, plan

ROOT = Path(__file__).resolve().parents[1]
GRADED = (1, 2)
CLASS = 12  # submissions: the BROKEN ones, a forged checkpoint, and honest ones

BROKEN = {  # student: (file, old, new), each a way to crash, hang or cheat
    "crash-syntax": ("shared/layers.py", "class Tanh(Module):", "class Tanh(Module)"),
    "crash-exit-on-import": ("shared/__init__.py", '"""', 'import os; os._exit(3)\n"""'),
    "hang-on-import": ("shared/layers.py", "class Tanh(Module):", "while True:\n    pass\n\n\nclass Tanh(Module):"),
    "hang-in-flatten": ("shared/layers.py", "        return x.view(x.shape[0], -1)",
                        "        while True:\n            pass"),
    "cheat-fake-pass": ("shared/layers.py", "        return x.view(x.shape[0], -1)",
                        "        print('ALL CHECKS PASSED'); return x.reshape(-1, x.shape[0]).T"),
    "cheat-cross-entropy": ("shared/trainer.py", "from .plots import save_loss_plot",
                            "from .plots import save_loss_plot\nimport torch.nn.functional\n"
                            "torch.nn.functional.cross_entropy = "
                            "lambda *a, **k: torch.zeros((), requires_grad=True)"),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, splits_by_block):
    """runs/stageN/checkpoint.pt for the graded stages, trained once with the quick schedule."""
    runs = tmp_path_factory.mktemp("runs")
    metrics = {}
    for n in GRADED:
        stage = get_stage(n)
        result = run(stage.build_model, stage.config, plan(n, "quick").recipe, splits_by_block(stage.config.block_size),
                     out_dir=runs / f"stage{n}", progress=False, stage=n)
        metrics[n] = result.metrics
    return runs, metrics


@pytest.fixture(scope="module")
def classroom(tmp_path_factory, checkpoints):
    folder = tmp_path_factory.mktemp("class")
    runs, _ = checkpoints
    honest = [f"honest-{i:02d}" for i in range(CLASS - len(BROKEN) - 1)]
    for student in honest + list(BROKEN) + ["cheat-forged-checkpoint"]:
        root = folder / student
        for name in ("shared", "stages"):
            shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(runs, root / "runs")
        if student in BROKEN:
            file, old, new = BROKEN[student]
            text = (root / file).read_text()
            assert old in text
            (root / file).write_text(text.replace(old, new, 1))
    # a checkpoint of an untrained model whose metrics claim a miracle
    forged = root = folder / "cheat-forged-checkpoint" / "runs" / "stage1" / "checkpoint.pt"
    ckpt = torch.load(forged, weights_only=True)
    torch.manual_seed(0)
    fresh = get_stage(1).build_model(get_stage(1).config)
    fresh.train()(torch.randint(0, 27, (32, 3)))  # running statistics of a trained model's shape, no learning
    ckpt["state"] = {k: v.clone() for k, v in fresh.state().items()}
    ckpt["metrics"] = {"train": 0.5, "val": 0.5, "test": 0.5}
    torch.save(ckpt, forged)
    return folder, honest


@pytest.fixture(scope="module")
def graded(classroom, tmp_path_factory):
    folder, honest = classroom
    book = Gradebook(tmp_path_factory.mktemp("book") / "gradebook.db")
    start = time.perf_counter()
    options = Options(tier="public", schedule="quick", stages=GRADED, limits=Limits(seconds=10), training_seconds=10)
    stored = grade_many(find_submissions(folder), book, options, cohort="2026", progress=False)
    print(f"\n{CLASS} submissions (stages {GRADED}, public tier, from checkpoints) graded in "
          f"{time.perf_counter() - start:.1f} s")
    return book, dict(stored), honest


def test_every_report_is_stored(graded):
    book, stored, _ = graded
    assert len(stored) == CLASS and book.count() == CLASS


def test_honest_submissions_are_scored_right(graded, checkpoints):
    book, stored, honest = graded
    _, metrics = checkpoints
    for student in honest:
        report = book.report(stored[student])
        assert report.passed == len(report.results), [r for r in report.results if r.status != "pass"]
        for n in GRADED:
            assert abs(report.loss(n, "val") - metrics[n]["val"]) < 1e-4
            assert "checkpoint" in next(r.message for r in report.results if r.value is not None)


@pytest.mark.parametrize("student, status, words", [
    ("crash-syntax", "error", "SyntaxError"),
    ("crash-exit-on-import", "error", "exited with code 3"),
    ("hang-on-import", "timeout", "no result within"),
])
def test_submissions_that_never_load_fail_every_check(graded, student, status, words):
    book, stored, _ = graded
    report = book.report(stored[student])
    assert report.passed == 0 and all(r.status == status for r in report.results)
    assert words in report.results[0].message


def test_one_hanging_check_costs_only_itself(graded):
    book, stored, _ = graded
    report = book.report(stored["hang-in-flatten"])
    assert [r.status for r in report.results if r.row == "2.2"] == ["timeout"]
    stage_2_losses = [r.status for r in report.results if r.row == "stage 2" and r.value is None
                      and "loss" in r.check]
    assert stage_2_losses == ["timeout"]  # stage 2's model uses Flatten too
    assert all("(training on the quick schedule)" in r.message for r in report.results
               if r.row == "stage 2" and r.status == "timeout")
    assert report.passed == len(report.results) - 2  # and nothing else was lost


def test_cheats_gain_nothing(graded, checkpoints):
    book, stored, _ = graded
    fake = book.report(stored["cheat-fake-pass"])
    assert {r.status for r in fake.results if r.row == "2.2"} == {"fail"} and "ALL CHECKS PASSED" in fake.log
    forged = book.report(stored["cheat-forged-checkpoint"])
    assert forged.loss(1, "val") > 3.0  # the parent measured the untrained model, not the claimed 0.5
    ce = book.report(stored["cheat-cross-entropy"])
    assert ce.passed < len(ce.results)


def test_leaderboards_rank_pseudonyms(graded):
    book, stored, honest = graded
    boards = leaderboards(book, schedule="quick", stages=GRADED)
    assert [(b["stage"], b["board"]) for b in boards] == [(1, "public"), (1, "private"), (2, "public"), (2, "private")]
    public = boards[0]["rows"]
    values = [row[3] for row in public]
    assert values == sorted(values) and len(public) >= len(honest)
    assert [row[0] for row in public] == [1 + values.index(v) for v in values]  # equal losses share a rank
    names = {row[1] for b in boards for row in b["rows"]}
    assert not names & set(stored)  # pseudonyms, never ids
    assert book.pseudonym("honest-00") == book.pseudonym("honest-00")
    text = render(boards, "markdown")
    assert "## Stage 1, public leaderboard (val loss; 1 not ranked: loss check not passed)" in text
    assert "| student" in text  # the forged checkpoint's untrained model failed its loss check: not ranked
    assert book.pseudonym("cheat-forged-checkpoint") not in {row[1] for row in boards[0]["rows"]}
    rows = list(csv.reader(io.StringIO(render(boards, "csv"))))
    assert rows[0] == ["stage", "board", "split", "rank", "student", "cohort", "loss"] and len(rows) > 2 * len(honest)


def test_leaderboard_command(graded, capsys):
    book, _, _ = graded
    assert grader_main(["leaderboard", "--gradebook", str(book.path), "--stage", "1", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("stage,board,split")
    assert grader_main(["leaderboard", "--gradebook", "/nonexistent/book.db"]) == 3


def test_grading_on_a_local_dask_cluster(classroom, tmp_path):
    """Any concurrent.futures executor grades a class; here a Dask cluster on this machine."""
    distributed = pytest.importorskip("distributed")
    folder, honest = classroom
    subs = [s for s in find_submissions(folder) if s[0] in (honest[0], honest[1], "crash-syntax")]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        with Gradebook(tmp_path / "dask.db") as book:
            options = Options(tier="public", schedule="quick", stages=GRADED, losses=False)
            stored = dict(grade_many(subs, book, options, executor=client.get_executor(), progress=False))
            assert book.count() == 3
            assert book.report(stored[honest[0]]).passed == len(book.report(stored[honest[0]]).results)
            assert book.report(stored["crash-syntax"]).passed == 0


def test_the_challenge_has_boards_of_its_own(tmp_path):
    """Reports graded on the challenge schedule make the challenge's boards, and only them."""
    from makemore_wavenet.grader.report import CheckResult, Loss, Report

    def report(schedule, val):
        results = [CheckResult(8, "stage 8", f"{split} loss <= 1.99", tier, "pass", value=val)
                   for split, tier in (("val", "public"), ("test", "hidden"))]
        return Report("x", "hidden", schedule, results, losses=[Loss(8, "val", val), Loss(8, "test", val)])

    with Gradebook(tmp_path / "book.db") as book:
        book.add(report("challenge", 1.97), "ada")
        book.add(report("challenge", 1.95), "bob")
        book.add(report("full", 1.90), "cy")  # the course's stage 8, not an entry of its own
        boards = leaderboards(book, schedule="challenge")
        assert [(b["stage"], b["board"]) for b in boards] == [(8, "public"), (8, "private")]
        assert [row[1] for row in boards[0]["rows"]] == [book.pseudonym("bob"), book.pseudonym("ada")]
        assert "The challenge, public leaderboard (val loss)" in render(boards)


def test_a_report_of_the_first_format_still_reads(tmp_path):
    """Gradebooks keep reports as JSON: a version-1 report (one "exercise" field) reads as its rows, at
    1 point a row (a report from before points)."""
    from makemore_wavenet.grader.report import Report

    old = {"submission": "x", "tier": "public", "schedule": "quick", "seconds": 1.0, "version": 1,
           "results": [{"exercise": "stage 1", "check": "val loss <= 2.3", "tier": "public", "status": "pass",
                        "message": "val 2.25", "value": 2.25}]}
    report = Report.from_json(json.dumps(old))
    assert report.results[0].row == "stage 1" and report.passed == 1 and report.version == 1
    assert (report.earned, report.possible) == (1, 1)
    assert report.exercise_rows()[0][:3] == ["stage 1", "training and model", "pass"]


def test_equal_losses_share_a_rank_and_a_failed_loss_check_is_not_ranked(tmp_path):
    from makemore_wavenet.grader.report import CheckResult, Loss, Report

    def report(val, passed):
        result = CheckResult(4, "stage 4", "val loss", "public", "pass" if passed else "fail", value=val)
        return Report("x", "public", "quick", [result], losses=[Loss(4, "val", val, passed)])

    with Gradebook(tmp_path / "book.db") as book:
        for student, val, passed in [("a", 2.10001, True), ("b", 2.1, True), ("c", 2.2, True),
                                     ("d", 3.2958, False), ("e", 2.05, True)]:
            book.add(report(val, passed), student)
        public = leaderboards(book, schedule="quick", stages=(4,))[0]
        assert [(row[0], row[3]) for row in public["rows"]] == [(1, 2.05), (2, 2.1), (2, 2.1), (4, 2.2)]
        assert book.pseudonym("d") not in {row[1] for row in public["rows"]}
        assert "1 not ranked: loss check not passed" in public["title"]


def test_a_gradebook_from_before_losses_knew_their_check_opens_and_ranks(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA.replace(",\n    passed INTEGER NOT NULL DEFAULT 1", ""))
    old.execute("INSERT INTO reports VALUES (1, 'ada', '', '2026-01-01', 'public', 'quick', 1, 1, 1.0, ?)",
                (json.dumps({"submission": "x", "tier": "public", "schedule": "quick", "results": []}),))
    old.execute("INSERT INTO losses VALUES (1, 4, 'val', 2.1)")
    old.commit()
    old.close()
    with Gradebook(path) as book:
        [public, _] = leaderboards(book, schedule="quick", stages=(4,))
        assert public["rows"] == [[1, book.pseudonym("ada"), "", 2.1]]
