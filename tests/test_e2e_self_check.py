"""The student's self-check, on the edition's own grader in a clean venv (e2e): a stage's loss check
trains with the student's own windows (3.1), step (1.2) and evaluation (1.3), so besides the
exercises its model is built from it waits on those; with them done it passes."""

import json

import pytest
from test_e2e import clean_env, fresh_venv, run
from test_needs import partly_done

from makemore_wavenet.grader.__main__ import main as grader_main
from makemore_wavenet.grader.grade import SELF_CHECK_NEEDS
from makemore_wavenet.stages import get_stage

pytestmark = pytest.mark.e2e


def test_the_self_check_waits_on_the_students_own_training_code(tmp_path):
    edition = tmp_path / "student"
    assert grader_main(["release", "--out", str(edition)]) == 0
    venv = tmp_path / "venv"
    python = fresh_venv(venv)
    env = clean_env(venv)
    run([python, "-m", "pip", "install", "-q", "-e", "."], edition, env, check=True)
    needs = set(get_stage(1).needs) | set(SELF_CHECK_NEEDS)

    def stage_1_rows(done: set[str], name: str) -> list[dict]:
        submission = partly_done(tmp_path / name, done)
        report = tmp_path / f"{name}.json"
        out = run([python, "-m", "makemore_wavenet.grader", "grade", submission, "--stage", "1", "--json", report],
                  tmp_path, env)
        assert out.returncode in (0, 1), out.stdout[-2000:] + out.stderr[-2000:]
        return [r for r in json.loads(report.read_text())["results"] if r["row"] == "stage 1"]

    rows = stage_1_rows(needs, "all")
    assert {r["status"] for r in rows} == {"pass"}, rows
    assert any("trained by your own code" in r["message"] for r in rows)
    for missing in SELF_CHECK_NEEDS:
        rows = stage_1_rows(needs - {missing}, f"without-{missing}")
        [loss] = [r for r in rows if r["check"].startswith("val loss")]
        assert loss["status"] == "waiting" and f"{missing} (" in loss["message"], loss
