"""The loss thresholds: calibrated over seeds, a 99.9% prediction bound, one file public, one hidden."""

import json
import statistics

import pytest

from makemore_wavenet.grader import GraderError
from makemore_wavenet.grader.__main__ import EXIT_USAGE, main
from makemore_wavenet.grader.calibrate import write
from makemore_wavenet.grader.thresholds import CALIBRATION_DIR, Thresholds, calibration_file, student_t
from makemore_wavenet.stages import all_stages, plan

PUBLIC, HIDDEN = calibration_file(CALIBRATION_DIR, "val"), calibration_file(CALIBRATION_DIR, "test")


def bound(losses):  # mean + t(0.999, K - 1) * s * sqrt(1 + 1/K); t(0.999, 3) = 10.215
    return statistics.fmean(losses) + 10.215 * statistics.stdev(losses) * (1 + 1 / len(losses)) ** 0.5


def test_a_threshold_is_the_99_9_percent_prediction_bound(tmp_path):
    val, test = [2.10, 2.11, 2.12, 2.14], [2.0, 2.02, 2.01, 2.03]
    seconds = [60.4, 61.0, 59.6, 62.2]
    public, hidden = write({3: {"val": val, "test": test, "seconds": seconds}}, "quick", (1, 2, 3, 4), tmp_path)
    assert (public, hidden) == (tmp_path / "calibration.json", tmp_path / "hidden" / "calibration.json")
    thresholds = Thresholds(tmp_path)
    assert thresholds.limit("val", "quick", 3) == pytest.approx(bound(val), abs=1e-4)
    assert thresholds.limit("test", "quick", 3) == pytest.approx(bound(test), abs=1e-4)
    assert json.loads(public.read_text())["quick"]["3"]["seeds"] == [1, 2, 3, 4]
    assert json.loads(hidden.read_text())["quick"]["3"]["seconds"] == [60, 61, 60, 62]  # each seed's training time
    write({4: {"val": val, "test": test, "seconds": seconds}}, "quick", (1, 2, 3, 4), tmp_path)  # merges
    assert set(json.loads(public.read_text())["quick"]) == {"3", "4"}


def test_a_missing_calibration_says_how_to_make_it(tmp_path):
    with pytest.raises(GraderError, match="calibrate --schedule full --stage 5"):
        Thresholds(tmp_path).limit("val", "full", 5)


@pytest.mark.parametrize("path", [PUBLIC, HIDDEN])
def test_every_graded_stage_is_calibrated_over_seeds(path):
    table = json.loads(path.read_text())
    for schedule in ("quick", "full"):
        assert set(table[schedule]) == {str(s) for s in all_stages()}, schedule
        for stage, entry in table[schedule].items():
            assert len(entry["losses"]) == len(entry["seeds"]) >= 3
            assert 42 not in entry["seeds"]  # the grader's own seed does not set its bar
            assert entry["steps"] == plan(int(stage), schedule).recipe.steps
            assert entry["mean"] == pytest.approx(statistics.fmean(entry["losses"]), abs=1e-4)


def test_student_t_is_conservative_between_tabled_values():
    assert student_t(7) == 4.785  # 8 seeds
    assert student_t(12) == student_t(10) > student_t(15)  # 12 is not tabled: 10's larger t
    assert student_t(100) == 3.090  # the normal's quantile
    with pytest.raises(ValueError, match="at least 3 seeds"):
        student_t(1)


def test_the_bar_is_above_the_mean_within_a_few_spreads_and_stage_6_stays_below_2():
    thresholds = Thresholds()
    assert thresholds.limit("val", "full", 6) <= 2.0  # stage 6 promises it (its val_promise)
    for schedule in ("quick", "full"):
        for stage in all_stages():
            entry = json.loads(PUBLIC.read_text())[schedule][str(stage)]
            k = len(entry["losses"])
            spread = student_t(k - 1) * entry["std"] * (1 + 1 / k) ** 0.5  # 5.1 spreads for 8 seeds
            assert 0 < thresholds.limit("val", schedule, stage) - entry["mean"] <= spread + 1e-9


def test_calibrate_needs_three_seeds_for_a_bound(capsys, tmp_path):
    assert main(["calibrate", "--out", str(tmp_path), "--seeds", "2"]) == EXIT_USAGE
    assert "at least 3" in capsys.readouterr().err
    assert main(["calibrate", "--out", str(tmp_path), "--jobs", "0"]) == EXIT_USAGE
    assert "--jobs must be at least 1" in capsys.readouterr().err


def test_the_challenge_bar_is_the_lectures_model_on_average(tmp_path):
    """Stage 8's own entry passes when it beats its bar stage's (6's) mean over the calibration seeds."""
    table = json.loads(PUBLIC.read_text())
    assert Thresholds().limit("val", "challenge", 8) == table["full"]["6"]["mean"]
    with pytest.raises(GraderError, match="calibrate --schedule full --stage 6"):
        Thresholds(tmp_path).limit("val", "challenge", 8)
