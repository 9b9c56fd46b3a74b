"""Notebook submissions: the lecture's own style, the student edition's notebooks, broken files."""

import ast
import json
import os
import re
from pathlib import Path

import nbformat
import pytest
from fixtures.lecture_notebook import CELLS, EXPLORING_CELLS, PART2_CELLS, PART3_CELLS, lecture_notebook

from makemore_wavenet.grader.__main__ import main as grader_main
from makemore_wavenet.grader.exercises import exercises
from makemore_wavenet.grader.grade import Options, grade
from makemore_wavenet.grader.notebook import code_cells, defined_names, execute, exercise_targets, program
from makemore_wavenet.grader.regions import BEGIN, END
from makemore_wavenet.grader.release import stage_notebook
from makemore_wavenet.shared.data import NAMES_ENV

ROOT = Path(__file__).resolve().parents[1]


def solved(definition_name: str, module: str) -> str:
    """The master's top-level definition `definition_name`, markers removed: a student's answer."""
    path = ROOT / Path(*module.split(".")[1:]).with_suffix(".py")
    text = "\n".join(line for line in path.read_text().splitlines() if not (BEGIN.match(line) or END.match(line)))
    for node in ast.parse(text).body:
        if getattr(node, "name", None) == definition_name or (
                isinstance(node, ast.Assign) and node.targets[0].id == definition_name):
            start = min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno])
            return "\n".join(text.splitlines()[start - 1:node.end_lineno])
    raise LookupError(definition_name)


def fill_in(nb):
    """Answer every exercise cell of a student-edition notebook with the master's solution."""
    targets = exercise_targets()
    for cell in nb.cells:
        m = re.search(r"# EXERCISE (\d+\.\d+):", cell.source)
        if cell.cell_type == "code" and m:
            module, name = targets[m.group(1)]
            cell.source = solved(name, module)
    return nb


def test_exercise_targets_name_every_solution():
    targets = exercise_targets()
    assert targets["4.1"] == ("makemore_wavenet.shared.layers", "FlattenConsecutive")
    assert targets["3.1"] == ("makemore_wavenet.shared.data", "build_dataset")
    assert targets["6.1"] == ("makemore_wavenet.stages.stage6_scaled_up.model", "CONFIG")
    assert targets["7.1"] == ("makemore_wavenet.shared.layers", "CausalConv1d")
    assert set(targets) == set(exercises())


def test_edition_ships_the_target_map(tmp_path):
    from makemore_wavenet.grader.release import release

    out = release(tmp_path / "edition")
    import json

    shipped = json.loads((out / "grader" / "expected" / "targets.json").read_text())
    assert {k: tuple(v) for k, v in shipped.items()} == exercise_targets()
    assert shipped["6.1"] == ["makemore_wavenet.stages.stage6_scaled_up.model", "CONFIG"]


def test_magics_are_stripped_and_only_training_is_skipped(tmp_path):
    path = tmp_path / "lecture.ipynb"
    nbformat.write(lecture_notebook(EXPLORING_CELLS), path)
    assert "%matplotlib inline" not in "\n".join(code_cells(path))
    names = {"Linear", "BatchNorm1d", "FlattenConsecutive", "Sequential", "model", "build_dataset"}
    assert names <= defined_names(path)
    assert "lossi" in defined_names(path)  # assigned before the loop; the loop itself is skipped
    kept = "\n".join(ast.unparse(tree) for tree in program(path)[0])
    assert "random.shuffle(words)" in kept and "torch.manual_seed(42)" in kept and "split_loss('val')" in kept
    assert "layer.training = False" in kept and "p.requires_grad = True" in kept  # cheap loops run
    assert "loss.backward()" not in kept and "plt.plot(" in kept  # the training loop does not


def test_a_call_to_a_training_function_is_skipped_too(tmp_path):
    """Training inside a function the notebook defines is training: the call is skipped, the definition kept."""
    cells = ["import torch\nw = torch.zeros(3, requires_grad=True)",
             "def step():\n  (w ** 2).sum().backward()\n\ndef train(n):\n  for _ in range(n):\n    step()",
             "train(200000)\nlosses = [train(1) for _ in range(3)]\nprint('done')"]
    path = tmp_path / "helpers.ipynb"
    nbformat.write(lecture_notebook(cells), path)
    kept = "\n".join(ast.unparse(tree) for tree in program(path)[0])
    assert "def train(n)" in kept and "print('done')" in kept
    assert "train(200000)" not in kept and "losses =" not in kept


@pytest.mark.filterwarnings("ignore:var\\(\\). degrees of freedom")  # the one-example cell's, expected
def test_the_graded_model_is_the_one_the_notebook_built(tmp_path, monkeypatch):
    """Bare calls run (the notebook's seed makes the model's weights), and a later cell that runs the
    model on one example in training mode (NaN in BatchNorm's running variance) does not reach it."""
    import random

    import torch

    path = tmp_path / "lecture.ipynb"
    nbformat.write(lecture_notebook(EXPLORING_CELLS), path)
    words = Path(os.environ[NAMES_ENV]).read_text().splitlines()
    (tmp_path / "names.txt").write_text("\n".join(words) + "\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")  # execute sets it: undone after the test
    namespace, notes = execute(path)
    random.seed(42)
    random.shuffle(words)
    assert namespace["words"] == words  # random.shuffle(words) ran
    torch.manual_seed(42)
    assert torch.equal(namespace["model"].layers[0].weight, torch.randn(27, 24))  # so did torch.manual_seed(42)
    norms = [layer for layer in namespace["model"].layers if hasattr(layer, "running_var")]
    assert all(torch.isfinite(n.running_var).all() and n.training for n in norms)  # as the notebook built it
    assert any("skipped (it trains" in note for note in notes), notes
    # while the notebook's own model went on to NaN: its sampling cell says so
    assert [n for n in notes if "Error" in n] == ["cell 16, line 1: RuntimeError: probability tensor contains "
                                                  "either `inf`, `nan` or element < 0"], notes


def test_the_model_copy_takes_a_forward_pass_output_detached():
    """A layer's `.out` from a forward pass with autograd on is no leaf, which deepcopy refuses."""
    import torch

    from makemore_wavenet.grader.notebook import snapshot

    class Layer:
        pass

    layer = Layer()
    layer.weight = torch.randn(3, 2, requires_grad=True)
    layer.out = torch.ones(1, 3) @ layer.weight
    [copied] = snapshot([layer])
    assert copied.weight is not layer.weight and copied.weight.requires_grad
    assert torch.equal(copied.out, layer.out.detach()) and copied.out.grad_fn is None


@pytest.mark.e2e  # test_gradescope grades the same notebook on the hidden tier, for stage 6 alone
def test_lecture_style_notebook_is_graded(tmp_path):
    """The lecture's part 5 as students run it: bare random.shuffle and torch.manual_seed calls, and
    after training, a look at the model's output for one example while BatchNorm is still in training
    mode (var of one number: NaN, had the grader kept it), then eval mode and split_loss."""
    path = tmp_path / "makemore_part5.ipynb"
    nbformat.write(lecture_notebook(EXPLORING_CELLS), path)
    report = grade(path, Options(tier="hidden", schedule="quick"))
    assert all(r.status == "pass" for r in report.results), [r for r in report.results if r.status != "pass"]
    covered = {r.row for r in report.results}
    assert {"2.1", "2.3", "3.1", "4.1", "5.1", "6.1"} <= covered  # its size says stage 6
    assert report.loss(6, "val") < 2.16 and report.loss(6, "test") is not None


def test_lecture_notebook_with_the_stage_4_bug_fails_5_1(tmp_path):
    cells = [c.replace("dim = (0,1)", "dim = 0") for c in CELLS]
    path = tmp_path / "bug.ipynb"
    nbformat.write(lecture_notebook(cells), path)
    report = grade(path, Options(tier="public", losses=False))
    bn = [r for r in report.results if r.row == "5.1"]
    assert bn[0].status == "fail" and "(1, 1, 3)" in bn[0].message


def test_student_edition_notebook_filled_in_passes(tmp_path):
    """Renamed as a course's upload may rename it: its metadata still says stage 4."""
    path = tmp_path / "Lab 4 - Jane Doe.ipynb"
    nbformat.write(fill_in(stage_notebook(4)), path)
    report = grade(path, Options(tier="hidden"))
    assert {r.row for r in report.results} >= {"4.1", "4.2", "stage 4"}
    assert all(r.status == "pass" for r in report.results), [r for r in report.results if r.status != "pass"]


def test_an_edition_notebooks_stage_is_its_metadatas_else_its_names(tmp_path):
    from makemore_wavenet.grader.notebook import EDITION_KEY, edition_stage

    nb = stage_notebook(5)
    nbformat.write(nb, tmp_path / "homework.ipynb")
    assert edition_stage(tmp_path / "homework.ipynb") == 5
    del nb.metadata[EDITION_KEY]
    nbformat.write(nb, tmp_path / "stage3 (1).ipynb")
    assert edition_stage(tmp_path / "stage3 (1).ipynb") == 3  # a notebook from before the metadata
    for forged in (99, "4", None, [4]):
        nb.metadata[EDITION_KEY] = {"stage": forged}
        nbformat.write(nb, tmp_path / "stage2.ipynb")
        assert edition_stage(tmp_path / "stage2.ipynb") is None, forged


def test_fresh_edition_notebook_is_not_done(tmp_path):
    path = tmp_path / "stage2.ipynb"
    nbformat.write(stage_notebook(2), path)
    report = grade(path, Options(tier="public", losses=False))
    rows = {row[0]: row[2] for row in report.exercise_rows()}
    assert all(rows[ex] == "NOT DONE" for ex in ("2.1", "2.2", "2.3", "2.4")), rows


def test_a_cell_that_does_not_parse_costs_only_itself(tmp_path):
    nb = lecture_notebook()
    nb.cells.insert(3, nbformat.v4.new_code_cell("def broken(:\n  pass"))
    path = tmp_path / "typo.ipynb"
    nbformat.write(nb, path)
    report = grade(path, Options(tier="public", losses=False))
    broken = [r for r in report.results if r.status != "pass"]
    assert [(r.row, r.status) for r in broken] == [("notebook", "error")]
    assert "code cell 3 does not parse" in broken[0].message


def test_broken_notebook_file_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "broken.ipynb"
    path.write_text("{ this is not json")
    assert grader_main(["grade", str(path)]) == 3
    assert "not a readable notebook" in capsys.readouterr().err


def test_only_what_a_notebook_defines_replaces_the_package(tmp_path):
    """The shipped stage-4 notebook star-imports its model module, CONFIG included: that CONFIG is
    stage 4's, not an answer to exercise 6.1, and must not replace stage 6's."""
    from makemore_wavenet.grader.notebook import overlay
    from makemore_wavenet.stages import get_stage

    path = tmp_path / "stage4.ipynb"
    nbformat.write(fill_in(stage_notebook(4)), path)
    assert "from makemore_wavenet.stages.stage4_hierarchical.model import *" in "\n".join(code_cells(path))
    stage4, stage6 = get_stage(4).module(), get_stage(6).module()
    namespace = {"CONFIG": stage4.CONFIG, "build_model": stage4.build_model}  # what the star import brings
    before = stage6.CONFIG
    assert overlay(namespace, exercise_targets(), defined_names(path)) == ["4.2"]
    assert stage6.CONFIG is before


def test_the_notebooks_grading_hint_is_a_command_the_grader_takes(tmp_path):
    """Run as printed (from the edition's folder, --skip-loss for speed): it grades, never exits 2 or 3."""
    import shlex
    import subprocess
    import sys

    nb = stage_notebook(4)
    (tmp_path / "notebooks").mkdir()
    nbformat.write(nb, tmp_path / "notebooks" / "stage4.ipynb")
    [command] = re.findall(r"`(python -m makemore_wavenet.grader [^`]+)`", nb.cells[-1].source)
    argv = [sys.executable, *shlex.split(command)[1:], "--skip-loss"]
    out = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode in (0, 1), out.stderr
    assert re.search(r"^4\.1 .*NOT DONE", out.stdout, re.M), out.stdout


def _graded_as_json(path: Path, tmp_path: Path, capsys, *args) -> tuple[int, dict, str]:
    code = grader_main(["grade", str(path), "--json", str(tmp_path / "report.json"), *args])
    return code, json.loads((tmp_path / "report.json").read_text()), capsys.readouterr().out


@pytest.mark.parametrize("cells, lacks", [(PART2_CELLS, "no layer classes"), (PART3_CELLS, "`layers` list")])
def test_a_notebook_without_a_model_passes_nothing_it_does_not_define(cells, lacks, tmp_path, capsys, monkeypatch):
    """Part 2's raw tensors (C, W1, b1: no layer classes, no model) and part 3's `layers` list (no
    model) define build_dataset, and part 3 a BatchNorm1d: those are graded, the package's model is
    not trained in their place, and a row says what is missing. In the student's self-check the
    notebook's own notes (what it skipped, what raised) are shown below the table."""
    import makemore_wavenet.grader.__main__ as cli

    path = tmp_path / "makemore_part.ipynb"
    nbformat.write(lecture_notebook(cells), path)
    monkeypatch.setattr(cli, "is_student", lambda: True)  # the log as the self-check shows it
    code, report, out = _graded_as_json(path, tmp_path, capsys)
    assert code == 1
    results = report["results"]
    assert not [r for r in results if "loss" in r["check"] and r["status"] == "pass"], results
    [missing] = [r for r in results if r["row"] == "notebook"]
    assert missing["status"] == "not done" and missing["message"].startswith("no model"), missing
    assert lacks in missing["message"], missing
    defined = {ex for ex, (_, name) in exercise_targets().items() if name in defined_names(path)}
    assert {r["row"] for r in results if r["status"] == "pass"} <= defined, results
    assert "skipped (it trains" in out  # the log, with the notebook's notes


def test_a_shipped_notebook_answers_for_its_stage_only_with_a_part_of_its_own(tmp_path):
    """stage4.ipynb defines part of stage 4's model: the package's stage 4 with its parts trains.
    stage3.ipynb defines only the windows (3.1): stage 3's model has no part of its own, no loss. A
    fresh stage6.ipynb's CONFIG is the edition's stub (a NotDone): stage 6, whose 6.1 is not done."""
    from makemore_wavenet.grader.grade import _notebook_plan

    for stage, fill, expected in ((4, fill_in, (4,)), (3, fill_in, ()), (6, lambda nb: nb, (6,))):
        path = tmp_path / f"stage{stage}.ipynb"
        nbformat.write(fill(stage_notebook(stage)), path)
        assert _notebook_plan(path, "public")[1] == expected


def test_a_notebook_with_nothing_to_grade_does_not_pass(tmp_path, capsys):
    path = tmp_path / "scratch.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1 + 1")]), path)
    assert grader_main(["grade", str(path), "--skip-loss"]) == 1
    assert "Nothing was graded" in capsys.readouterr().out


def test_an_error_in_a_notebook_names_its_cell_and_line(tmp_path):
    nb = fill_in(stage_notebook(2))
    [cell] = [c for c in nb.cells if c.cell_type == "code" and "class Embedding" in c.source]
    cell.source = cell.source.replace("return self.weight[ix]", "return self.weight[ix] + 'oops'")
    number = [c for c in nb.cells if c.cell_type == "code"].index(cell) + 1
    path = tmp_path / "stage2.ipynb"
    nbformat.write(nb, path)
    report = grade(path, Options(losses=False))
    [embedding] = [r for r in report.results if r.row == "2.1"]
    assert embedding.status == "error" and re.search(rf"\(at cell {number}, line \d+\)", embedding.message), embedding


def test_a_stage_notebook_is_given_the_earlier_stages_and_answers_for_its_own(tmp_path):
    """In the instructor's grading, stage4.ipynb stands on the course's 2.1 and 2.3 (neither graded
    nor counted there), and the package beside it has stubs for stage 4's own exercises: one the
    notebook borrows from the package is not done, and one of an earlier stage it redefines is not graded."""
    path = tmp_path / "stage4.ipynb"
    cells = ["import makemore_wavenet.shared.layers as package_layers",
             "class Embedding(package_layers.Embedding):\n    pass",
             "FlattenConsecutive = package_layers.FlattenConsecutive"]
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)
    report = grade(path, Options(tier="public", losses=False))
    rows = {r.row: r.status for r in report.results}
    assert rows.get("4.1") == "not done" and "2.1" not in rows and "2.3" not in rows, report.table()
    assert report.passed == 0


def test_a_notebook_the_parser_cannot_hold_is_said_so(tmp_path):
    """A cell whose source is no text is a notebook this grader cannot read (an error that says so,
    not a bug of the grader's); a cell nested beyond what Python's parser holds does not parse."""
    from makemore_wavenet.grader import GraderError
    from makemore_wavenet.grader.notebook import parsed_cells

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nb.cells[0].source = 5
    path = tmp_path / "odd.ipynb"
    path.write_text(json.dumps(nb))
    with pytest.raises(GraderError, match="cell 1's source is int, not text"):
        grade(path, Options(tier="public", losses=False))
    nb.cells[0].source = "x = " + "-" * 200_000 + "1"
    path.write_text(json.dumps(nb))
    assert parsed_cells(path)[1] and "code cell 1 does not parse" in parsed_cells(path)[1][0]
