"""A stage's rows stand on the exercises its model is built from (its STAGE's `needs`): with only
those done they pass, and without any one of them they wait on it and earn nothing."""

import shutil
from pathlib import Path

import pytest

from makemore_wavenet.grader.grade import Options, grade
from makemore_wavenet.grader.regions import student_text
from makemore_wavenet.stages import all_stages, get_stage

ROOT = Path(__file__).resolve().parents[1]


def partly_done(tmp_path: Path, done) -> Path:
    """A student edition's sources in which only the exercises in `done` are solved."""
    root = tmp_path / "submission"
    for name in ("shared", "stages"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for path in root.rglob("*.py"):
        path.write_text(student_text(path.read_text(), frozenset(done)))
    marker = root / "shared" / "edition.py"
    marker.write_text(marker.read_text().replace('EDITION = "master"', 'EDITION = "student"'))
    return root


def stage_rows(report, stage: int):
    return [r for r in report.results if r.row == get_stage(stage).row]


@pytest.mark.parametrize("stage", [n for n in all_stages() if n <= 6])
def test_a_stage_passes_with_only_its_needs_done(tmp_path, stage):
    report = grade(partly_done(tmp_path, get_stage(stage).needs), Options(stages=(stage,)))
    rows = stage_rows(report, stage)
    assert {r.status for r in rows} == {"pass"}, rows
    assert any(r.check.startswith("val loss") for r in rows)
    unfinished = {r.row for r in report.results if r.status == "not done"}
    assert not unfinished & set(get_stage(stage).needs)


@pytest.mark.e2e
@pytest.mark.parametrize("stage", [n for n in all_stages() if n > 6])
def test_a_stage_beyond_the_lecture_passes_with_only_its_needs_done(tmp_path, stage):
    test_a_stage_passes_with_only_its_needs_done(tmp_path, stage)


@pytest.mark.parametrize("stage", [n if n <= 6 else pytest.param(n, marks=pytest.mark.e2e) for n in all_stages()])
def test_a_stage_waits_on_each_of_its_needs(tmp_path, stage):
    needs = get_stage(stage).needs
    for missing in needs:
        report = grade(partly_done(tmp_path / missing, set(needs) - {missing}), Options(stages=(stage,)))
        rows = stage_rows(report, stage)
        if missing == get_stage(stage).loss_exercise:  # the row is that exercise's: not done itself
            assert {r.status for r in rows} == {"not done"}, rows
            continue
        assert {r.status for r in rows} == {"waiting"}, rows
        assert all(r.message.startswith("waits on") and f" {missing} (" in r.message for r in rows)
        assert report.passed == sum(r.status == "pass" for r in report.results if r.row in needs)
