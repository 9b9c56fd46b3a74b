"""The grader: the answer key passes, the fresh student edition is "not done", broken and hostile
submissions are caught with the right status, and the edition leaks nothing."""

import re
import shutil
from pathlib import Path

import nbformat
import pytest
import torch

from makemore_wavenet.grader import GraderError
from makemore_wavenet.grader.__main__ import main as grader_main
from makemore_wavenet.grader.exercises import exercises
from makemore_wavenet.grader.grade import Options, checks_for, grade, reference_values
from makemore_wavenet.grader.regions import RegionError, all_regions, find_regions, student_text
from makemore_wavenet.grader.sandbox import Limits
from makemore_wavenet.grader.thresholds import Thresholds

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def references():
    return reference_values(checks_for("hidden"))


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("edition") / "student"
    assert grader_main(["release", "--out", str(out)]) == 0
    return out


def copy_master(tmp_path: Path) -> Path:
    root = tmp_path / "submission"
    for name in ("shared", "stages"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def patch(root: Path, file: str, old: str, new: str) -> Path:
    path = root / file
    text = path.read_text()
    assert old in text, f"{old!r} not in {file}"
    path.write_text(text.replace(old, new, 1))
    return root


def by_exercise(report, exercise):
    return [r for r in report.results if r.row == exercise]


def test_every_exercise_has_a_region_and_checks():
    ids = {r.exercise for r in all_regions(ROOT)}
    assert ids == set(exercises())
    checked = {c.exercise for c in checks_for("hidden")}
    assert set(exercises()) <= checked
    assert {c.tier for c in checks_for("hidden")} == {"public", "hidden"}


def test_master_passes_every_check_public_and_hidden(references):
    report = grade(ROOT, Options(tier="hidden"), references=references)
    failures = [r for r in report.results if r.status != "pass"]
    assert not failures, failures
    assert {r.tier for r in report.results} == {"public", "hidden"}
    assert report.loss(6, "val") is not None and report.loss(6, "test") is not None
    assert "HIDDEN" in report.title()


def test_fresh_student_edition_earns_nothing_and_every_row_says_why(edition):
    """No points without work: checks of given values (a configuration, the 2-D path of BatchNorm)
    wait for the exercises they stand on; every stage's rows say which."""
    report = grade(edition, Options(tier="hidden"))
    statuses = {row[0]: row[2] for row in report.exercise_rows()}
    assert set(exercises()) | {f"stage {n}" for n in (1, 2, 3, 4, 5, 7, 8)} <= set(statuses)
    assert set(statuses.values()) <= {"NOT DONE", "WAITING"}, statuses
    assert report.passed == 0 and len(report.results) > 70
    assert statuses["stage 1"] == "WAITING"
    rows = {row[0]: row[-1] for row in report.exercise_rows()}  # the message
    assert "waits on 2.1 (Embedding layer), 2.3 (Sequential container), 4.1" in rows["stage 4"].replace("\n", " ")
    assert not [r for r in report.results if r.status == "waiting" and "waits on" not in r.message]
    assert "hidden" in report.summary()


def test_edition_cannot_run_the_hidden_tier(edition):
    assert not (edition / "grader" / "hidden").exists()


def test_edition_holds_no_solution_line_and_no_hidden_check(edition):
    from makemore_wavenet.grader.hidden import HIDDEN_SEED

    edition_text = "\n".join(p.read_text(errors="replace") for p in edition.rglob("*") if p.is_file()
                             and p.suffix in {".py", ".ipynb", ".md", ".toml"})
    master = [p for folder in ("shared", "stages", "grader") for p in (ROOT / folder).rglob("*.py")]
    master_outside_regions = "\n".join(student_text(p.read_text()) for p in master)
    leaks = []
    for region in all_regions(ROOT):
        for line in region.solution:
            code = line.split("#")[0].strip()
            if len(code) > 8 and code not in master_outside_regions and code in edition_text:
                leaks.append((region.exercise, code))
    assert not leaks
    assert str(HIDDEN_SEED) not in edition_text and "HIDDEN_SIZES" not in edition_text
    assert not list(edition.rglob("hidden"))
    assert "tests" not in {p.name for p in edition.iterdir()}


def test_edition_sources_compile(edition):
    import py_compile

    for path in edition.rglob("*.py"):
        py_compile.compile(str(path), doraise=True)


def test_the_edition_says_which_it_is_in_its_one_marker(edition):
    import runpy

    assert runpy.run_path(str(edition / "shared" / "edition.py"))["is_student"]()
    assert not runpy.run_path(str(ROOT / "shared" / "edition.py"))["is_student"]()


def test_edition_notebooks_are_valid_and_hold_the_exercises(edition):
    for stage in sorted({ex.stage for ex in exercises().values()}):
        nb = nbformat.read(edition / "notebooks" / f"stage{stage}.ipynb", as_version=4)
        nbformat.validate(nb)
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# Stage {stage}")
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        for ex in (e for e in exercises().values() if e.stage == stage):  # a stub, or a setting's NotDone
            assert f'raise NotImplementedError("exercise {ex.id}' in code or f'NotDone("exercise {ex.id}' in code


def test_malformed_regions_are_errors(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("# BEGIN EXERCISE 4.1\nx = 1\n")
    with pytest.raises(RegionError, match="never closed"):
        find_regions(bad)
    bad.write_text("# BEGIN EXERCISE 9.9\n# END EXERCISE 9.9\n")
    with pytest.raises(RegionError, match="unknown exercise"):
        find_regions(bad)


# --- broken and hostile submissions: each caught, with the right status and a useful message ---

FAST = dict(tier="public", schedule="quick", losses=False)  # the exercise checks only


def test_batchnorm_reducing_over_dim_0_in_stage_5(tmp_path):
    root = patch(copy_master(tmp_path), "shared/layers.py", "dims = (0, 1)  # batch and positions", "dims = 0")
    report = grade(root, Options(stages=(5,), **FAST))
    bn = [r for r in by_exercise(report, "5.1") if r.status != "pass"]
    assert bn and all(r.status == "fail" for r in bn)
    assert "running_mean: expected shape (1, 1, 3), got (1, 8, 3)" in bn[0].message
    assert "dims (0, 1)" in bn[0].message


def test_flatten_consecutive_that_mixes_examples(tmp_path):
    root = patch(copy_master(tmp_path), "shared/layers.py", "x = x.view(B, T // self.n, C * self.n)",
                 "x = x.transpose(0, 1).reshape(T // self.n, B, C * self.n).transpose(0, 1)")
    report = grade(root, Options(stages=(4,), **FAST))
    fc = by_exercise(report, "4.1")
    assert fc[0].status == "fail" and "values differ" in fc[0].message
    assert "mixes positions of different examples" in fc[0].message


def test_linear_without_fan_in_scaling(tmp_path):
    root = patch(copy_master(tmp_path), "shared/layers.py", "/ fan_in**0.5  # kaiming-like", "  # kaiming-like")
    report = grade(root, Options(stages=(1,), **FAST))
    init = [r for r in report.results if r.check == "initial weight scale"][0]
    assert init.status == "fail" and "weight_scales" in init.message and "sqrt(fan_in)" in init.message


def test_model_of_the_wrong_size(tmp_path):
    root = patch(copy_master(tmp_path), "stages/stage5_batchnorm_fix/model.py", "n_hidden=68", "n_hidden=64")
    report = grade(root, Options(stages=(5,), **FAST))
    size = [r for r in by_exercise(report, "stage 5") if r.check.startswith("configuration")][0]
    assert size.status == "fail" and "expected 68, got 64" in size.message


def test_a_model_that_learns_nothing_fails_the_loss_check_near_uniform(tmp_path):
    # parameters() forgets the layers: only the embedding table trains, behind a head that stays near zero
    root = patch(copy_master(tmp_path), "stages/stage1_baseline_mlp/model.py",
                 "        return [self.C] + [p for layer in self.layers for p in layer.parameters()]",
                 "        return [self.C]")
    report = grade(root, Options(stages=(1,)))
    loss = [r for r in by_exercise(report, "stage 1") if r.check.startswith("val loss")][0]
    assert loss.status == "fail" and loss.value is None and "learned nothing" in loss.message
    assert 3.2 < their_val(loss) < 3.4 and not report.losses


def their_val(row) -> float:
    """The val loss of the submission's own training, which a loss row quotes when it is not where
    the grader's own training of the model ends."""
    found = re.search(r"val (\d+\.\d+) against the grader's", row.message)
    assert found, row.message
    return float(found.group(1))


def test_a_forward_pass_other_than_the_stages_fails_however_good_its_weights(tmp_path):
    # the grader evaluates the returned tensors with its own stage-1 model: the submission's forward
    # (here: constant logits) must compute the same, or the tensors are not what its code uses
    root = patch(copy_master(tmp_path), "stages/stage1_baseline_mlp/model.py",
                 "        return x  # (B, vocab_size)", "        return x * 0  # (B, vocab_size)")
    report = grade(root, Options(stages=(1,)))
    loss = [r for r in by_exercise(report, "stage 1") if r.check.startswith("val loss")][0]
    assert loss.status == "fail" and loss.value is None and "differs from the grader's model" in loss.message
    assert not report.losses


def test_code_that_raises_is_an_error_and_the_rest_still_runs(tmp_path):
    root = patch(copy_master(tmp_path), "shared/layers.py", "        return x.view(x.shape[0], -1)",
                 "        raise KeyError('oops')")
    report = grade(root, Options(stages=(2,), **FAST))
    flat = by_exercise(report, "2.2")[0]
    assert flat.status == "error" and "KeyError: 'oops'" in flat.message and "layers.py" in flat.message
    assert all(r.status == "pass" for r in by_exercise(report, "2.1") + by_exercise(report, "2.3"))


def test_infinite_loop_times_out_and_loses_nothing_else(tmp_path):
    root = patch(copy_master(tmp_path), "shared/layers.py", "        return self.weight[ix]  # (B, T) -> (B, T, C)",
                 "        while True:\n            pass")
    report = grade(root, Options(stages=(2,), limits=Limits(seconds=5), **FAST))
    assert by_exercise(report, "2.1")[0].status == "timeout"
    assert "no result within 5 s" in by_exercise(report, "2.1")[0].message
    assert "--timeout SECONDS raises the limit" in by_exercise(report, "2.1")[0].message
    assert all(r.status == "pass" for r in by_exercise(report, "2.2") + by_exercise(report, "2.3"))


def test_a_call_may_carry_its_own_time_limit(tmp_path):
    """A training run gets longer than an exercise check: each call's limit is its own."""
    from makemore_wavenet.grader import probes
    from makemore_wavenet.grader.sandbox import Call, run_calls

    root = patch(copy_master(tmp_path), "shared/layers.py", "        return self.weight[ix]  # (B, T) -> (B, T, C)",
                 "        while True:\n            pass")
    calls = [Call(probes.embedding, {"ix": torch.zeros(2, 3, dtype=torch.long), "seed": 0}, seconds=3),
             Call(probes.flatten, {"x": torch.ones(2, 3, 4)})]
    outcomes, _ = run_calls(root, calls, Limits(seconds=60))
    assert [o.status for o in outcomes] == ["timeout", "ok"] and "within 3 s" in outcomes[0].message


def test_memory_hog_is_stopped_by_the_limit(tmp_path):
    root = patch(copy_master(tmp_path), "shared/layers.py", "        return x.view(x.shape[0], -1)",
                 "        hog = [bytearray(10**8) for _ in range(10**4)]")
    report = grade(root, Options(stages=(2,), limits=Limits(seconds=60, memory_mb=3000), **FAST))
    flat = by_exercise(report, "2.2")[0]
    assert flat.status == "error" and "memory" in flat.message
    assert by_exercise(report, "2.3")[0].status == "pass"


def test_printing_a_fake_pass_changes_nothing(tmp_path):
    root = patch(copy_master(tmp_path), "shared/layers.py", "        x = x.view(B, T // self.n, C * self.n)",
                 "        print('PASS: all checks passed 29/29'); x = x.view(B, C * self.n, T // self.n)")
    report = grade(root, Options(stages=(4,), **FAST))
    assert by_exercise(report, "4.1")[0].status == "fail"
    assert "PASS: all checks passed" in report.log  # kept as a log, never read as a result


@pytest.mark.parametrize("exit_call, message", [("sys.exit(0)", "called sys.exit(0)"),
                                                ("os._exit(0)", "exited with code 0")])
def test_exiting_early_is_an_error(tmp_path, exit_call, message):
    root = copy_master(tmp_path)
    patch(root, "shared/layers.py", "        return x.view(x.shape[0], -1)",
          f"        import os, sys\n        {exit_call}")
    report = grade(root, Options(stages=(2,), **FAST))
    flat = by_exercise(report, "2.2")[0]
    assert flat.status == "error" and message in flat.message
    assert by_exercise(report, "2.3")[0].status == "pass"  # a fresh child took the remaining checks


def test_monkeypatched_cross_entropy_cannot_fake_a_loss(tmp_path):
    root = patch(copy_master(tmp_path), "shared/trainer.py", "from .plots import save_loss_plot",
                 "from .plots import save_loss_plot\nimport torch.nn.functional as F\n_ce = F.cross_entropy\n"
                 "F.cross_entropy = lambda *a, **k: _ce(*a, **k) * 0.001")
    report = grade(root, Options(stages=(1,)))
    loss = [r for r in by_exercise(report, "stage 1") if r.check.startswith("val loss")][0]
    assert loss.status == "fail" and their_val(loss) > 2.5  # the parent computed the true loss


def test_grade_command_exit_codes(tmp_path, edition):
    assert grader_main(["grade", str(edition), "--skip-loss", "--stage", "2",
                        "--json", str(tmp_path / "r.json")]) == 1
    assert (tmp_path / "r.json").is_file()
    assert grader_main(["grade", str(tmp_path)]) == 3  # not a checkout
    with pytest.raises(SystemExit) as err:
        grader_main(["grade", "--tier", "secret"])
    assert err.value.code == 2


def test_private_test_names_replace_the_test_split(tmp_path, references):
    private = tmp_path / "private.txt"
    private.write_text("\n".join(["zelda", "quentin", "amara", "bo"] * 50) + "\n")
    report = grade(ROOT, Options(tier="hidden", stages=(1,), test_names=private), references=references)
    test = [r for r in report.results if r.check.startswith("test loss")]
    assert len(test) == 1 and test[0].value is not None and report.test_source == str(private)
    assert test[0].value != report.loss(1, "val")


def test_public_summary_never_says_all_passed_without_public_checks():
    from makemore_wavenet.grader.report import CheckResult, Report

    ok = Report("x", "public", "quick", [CheckResult(1, "1.1", "c", "public", "pass")])
    assert "public checks passed" in ok.summary() and "hidden checks were not run" in ok.summary().lower()
    assert "PUBLIC checks only" in ok.table()
    assert "HIDDEN" in Report("x", "hidden", "quick", ok.results).title()


def test_edition_starts_the_challenge_from_stage_7(edition):
    from makemore_wavenet.stages.stage8_challenge.entry import ENTRIES, load_entry

    assert load_entry(edition / "challenge.toml") == load_entry(ENTRIES / "stage7.toml")
    assert "grade --schedule challenge" in (edition / "challenge.toml").read_text()


def test_the_challenge_trains_the_submissions_own_entry(tmp_path):
    root = copy_master(tmp_path)
    (root / "challenge.toml").write_text("[model]\nn_embd = 4\nn_hidden = 8\ndilations = [1, 2]\n\n"
                                         "[train]\nsteps = 30\nbatch_size = 4\n")
    report = grade(root, Options(schedule="challenge"))
    [loss] = [r for r in by_exercise(report, "stage 8") if r.check.startswith("val loss")]
    assert loss.status == "fail" and "challenge.toml (30 steps" in loss.message  # too few to beat the lecture
    assert loss.check == f"val loss <= {Thresholds().limit('val', 'challenge', 8):.4f} (challenge schedule)"
    assert 2.3 < loss.value < 3.3


def test_a_missing_or_broken_challenge_entry_is_an_error_and_the_checks_still_run(tmp_path):
    root = copy_master(tmp_path)
    report = grade(root, Options(schedule="challenge"))
    [entry] = [r for r in by_exercise(report, "stage 8") if r.check.startswith("val loss")]
    assert entry.status == "error" and "the challenge entry" in entry.message and "no challenge.toml" in entry.message
    assert {r.status for r in by_exercise(report, "8.1")} == {"pass"}
    (root / "challenge.toml").write_text("[model]\nwidth = 3\n")
    report = grade(root, Options(schedule="challenge"))
    [entry] = [r for r in by_exercise(report, "stage 8") if r.check.startswith("val loss")]
    assert entry.status == "error" and "no setting width" in entry.message


def test_a_block_that_forgets_the_residual_fails_with_a_hint(tmp_path):
    root = patch(copy_master(tmp_path), "stages/stage8_challenge/model.py",
                 "else x[:, self.dilation:] + self.residual(z)", "else self.residual(z)")
    report = grade(root, Options(stages=(8,), **FAST))
    block = by_exercise(report, "8.2")
    assert block[0].status == "fail" and "x[:, dilation:] + residual(z)" in block[0].message
    assert block[1].status == "pass"  # the block without a residual is unaffected


def test_a_submission_of_an_earlier_edition_is_told_so(tmp_path):
    """Before shared/edition.py, the stages had no STAGE for the probes to call into."""
    root = copy_master(tmp_path)
    (root / "shared" / "edition.py").unlink()
    with pytest.raises(GraderError, match="earlier edition"):
        grade(root, Options(stages=(2,), **FAST))
    assert grader_main(["grade", str(root), "--skip-loss"]) == 3


def test_a_bug_in_the_grader_exits_3_with_its_traceback(monkeypatch, capsys, tmp_path):
    import makemore_wavenet.grader.grade as grading

    monkeypatch.setattr(grading, "grade", lambda *a, **k: 1 / 0)
    assert grader_main(["grade", str(copy_master(tmp_path)), "--skip-loss"]) == 3
    err = capsys.readouterr().err
    assert "ZeroDivisionError" in err and "Traceback" in err and "the grader failed" in err


def test_a_configuration_of_its_own_is_that_rows_fail_and_its_windows_are_built_with_it(tmp_path):
    """block_size 7 in stage 3: the configuration row fails with its hint; the model, whose Linear
    takes 70 inputs, trains on windows of 7 and its loss is measured, with no error elsewhere."""
    root = patch(copy_master(tmp_path), "stages/stage3_block_size_8/model.py", "block_size=8", "block_size=7")
    report = grade(root, Options(stages=(3,)))
    rows = {r.check.split(" <=")[0]: r for r in by_exercise(report, "stage 3")}
    assert rows["configuration and parameter count"].status == "fail"
    assert "block_size" in rows["configuration and parameter count"].message
    assert rows["initial weight scale"].status == "pass"
    assert rows["val loss"].status in ("pass", "fail") and 2.0 < rows["val loss"].value < 2.5
    assert not [r for r in report.results if r.status == "error"]


@pytest.mark.parametrize("size", [0, 10_000])
def test_a_block_size_no_windows_are_built_for_is_a_failed_loss_row(tmp_path, size):
    root = patch(copy_master(tmp_path), "stages/stage3_block_size_8/model.py", "block_size=8", f"block_size={size}")
    report = grade(root, Options(stages=(3,)))
    [loss] = [r for r in by_exercise(report, "stage 3") if r.check.startswith("val loss")]
    assert loss.status == "fail" and f"block_size {size}" in loss.message


def test_an_error_is_located_in_the_submissions_own_file(tmp_path):
    root = patch(copy_master(tmp_path), "shared/layers.py", "return self.weight[ix]  # (B, T) -> (B, T, C)",
                 "return None")
    report = grade(root, Options(stages=(2,)))
    [loss] = [r for r in by_exercise(report, "stage 2") if r.check.startswith("val loss")]
    assert loss.status == "error" and re.search(r"\(at shared/layers\.py:\d+\)", loss.message), loss.message
    assert "trainer.py" not in loss.message


@pytest.mark.parametrize("status", ["pass", "bogus"])
def test_a_result_file_the_child_forged_passes_nothing(tmp_path, status):
    """Code that writes its own result files with a status only the parent gives ("pass"), or none
    at all, gets errors: a child reports "ok", "not done" or "error", and the parent judges."""
    root = copy_master(tmp_path)
    forge = (f"\nimport os as _os, sys as _sys, torch as _torch\n"
             f"if _sys.argv[0].endswith('child.py'):\n"
             f"    for _i in range(len(_torch.load(_sys.argv[1], weights_only=True)['calls'])):\n"
             f"        _torch.save({{'status': {status!r}}}, _os.path.join(_sys.argv[2], f'{{_i}}.pt'))\n"
             f"    _os._exit(0)\n")
    (root / "shared" / "__init__.py").write_text((root / "shared" / "__init__.py").read_text() + forge)
    report = grade(root, Options(stages=(1,), **FAST))
    assert report.passed == 0 and {r.status for r in report.results} == {"error"}
    assert "is none of" in report.results[0].message


def test_a_configuration_that_is_no_fields_is_an_error_not_a_grader_crash(tmp_path):
    root = copy_master(tmp_path)
    init = root / "shared" / "__init__.py"
    init.write_text(init.read_text() + "\nimport sys as _s\nif _s.argv[0].endswith('child.py'):\n"
                    "    import makemore_wavenet.grader.probes as _p\n"
                    "    _p.PROBES['stage_config'] = lambda stage: [stage]\n")
    report = grade(root, Options(stages=(1,)))
    [loss] = [r for r in by_exercise(report, "stage 1") if r.check.startswith("val loss")]
    assert loss.status == "error" and "not as its fields" in loss.message
