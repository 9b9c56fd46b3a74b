"""A new stage is one folder: a toy stage 9, in a temporary package beside the course's, trains,
reproduces and grades with no edit anywhere else. (It writes its own calibration, in its own folder.)"""

import shutil
import sys
from pathlib import Path

import pytest

import makemore_wavenet.stages as stages
from makemore_wavenet.grader.calibrate import calibrate, write
from makemore_wavenet.grader.grade import Options, grade
from makemore_wavenet.grader.thresholds import Thresholds
from makemore_wavenet.shared.config import Runtime
from makemore_wavenet.stages import all_stages, count_parameters, get_stage, load_model, plan, train_stage
from makemore_wavenet.stages.reproduce import reproduce, results_table

ROOT = Path(__file__).resolve().parents[1]
TOY = {
    "__init__.py": '''"""Stage 9: a toy, to show that a stage is one folder."""

from ..stage import Exercise, Lecture, Stage

STAGE = Stage(
    __name__,
    lecture=Lecture(params=351, train=2.5, val=2.5),
    needs=("2.1", "9.1"),  # its Embedding, and the toy model itself
    exercises=(Exercise("9.1", "the toy model", "Embed two characters, concatenate, one Linear to logits."),),
    loss_exercise="9.1",
)
''',
    "model.py": '''"""Stage 9: embed two characters, concatenate them, one Linear to 27 logits."""

from makemore_wavenet.shared.config import ModelConfig, TrainConfig
from makemore_wavenet.shared.layers import Embedding, Linear, Module, less_confident

CONFIG = ModelConfig(block_size=2, n_embd=4, n_hidden=0)
RECIPE = TrainConfig(steps=20_000, batch_size=32)


class Toy(Module):
    def __init__(self, c, device=None, dtype=None):
        self.embedding = Embedding(c.vocab_size, c.n_embd, device=device, dtype=dtype)
        self.head = Linear(c.n_embd * c.block_size, c.vocab_size, device=device, dtype=dtype)

    def forward(self, x):
        # BEGIN EXERCISE 9.1
        return self.head(self.embedding(x).flatten(1))  # (B, 2) -> (B, 27)
        # END EXERCISE 9.1

    def children(self):
        return [self.embedding, self.head]

    def parameters(self):
        return self.embedding.parameters() + self.head.parameters()


def build_model(config=CONFIG, device=None, dtype=None):
    model = Toy(config, device=device, dtype=dtype)
    less_confident(model.head)
    return model
''',
    "LESSON.md": "# Stage 9: a toy\n\nA stage is one folder.\n",
}


def write_toy(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, text in TOY.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """Stage 9 in a folder of its own, found beside the course's stages."""
    write_toy(tmp_path / "more_stages" / "stage9_toy")
    monkeypatch.setattr(stages, "__path__", [*stages.__path__, str(tmp_path / "more_stages")])
    yield get_stage(9)
    for name in [n for n in sys.modules if n.startswith("makemore_wavenet.stages.stage9_toy")]:
        del sys.modules[name]


def test_the_toy_stage_is_found_and_described_by_its_folder(toy):
    assert list(all_stages())[-1] == 9 and toy.title == "toy" and toy.row == "9.1"
    assert count_parameters(toy.build_model(toy.config)) == toy.lecture.params == 351
    assert plan(9, "quick").recipe.steps == 500 and toy.lesson.startswith("# Stage 9")


def test_the_toy_stage_trains_and_reproduces(toy, tmp_path):
    result = train_stage(plan(9, options={"steps": 300}), Runtime(device="cpu"), runs_dir=tmp_path, progress=False)
    model, ckpt = load_model(tmp_path / "stage9" / "checkpoint.pt", device="cpu")
    assert ckpt["stage"] == 9 and result.metrics["val"] < 3.0
    rows, _ = reproduce([9], {"steps": 300}, Runtime(device="cpu"), jobs=1, runs_dir=tmp_path)
    assert rows[0]["stage"] == 9 and rows[0]["val"] == pytest.approx(result.metrics["val"])
    assert "| 9 " in results_table(rows) and "toy" in results_table(rows)


def test_the_toy_stage_is_graded_from_both_sides(toy, tmp_path):
    calibration = tmp_path / "calibration"
    write(calibrate("quick", (9,), seeds=(1, 2, 3, 4), jobs=1, progress=False), "quick", (1, 2, 3, 4), calibration)
    submission = tmp_path / "submission"
    for name in ("shared", "stages"):
        shutil.copytree(ROOT / name, submission / name, ignore=shutil.ignore_patterns("__pycache__"))
    toy_folder = write_toy(submission / "stages" / "stage9_toy")  # the submission holds the stage too
    options = Options(tier="hidden", stages=(9,), thresholds=Thresholds(calibration))
    report = grade(submission, options)
    toy_rows = [r for r in report.results if r.row == "9.1"]
    assert {r.row for r in report.results} == {"2.1", "9.1"} and len(toy_rows) == 4, report.results  # 2.1: its need
    assert all(r.status == "pass" for r in report.results), report.results
    assert report.loss(9, "val") is not None and report.loss(9, "test") is not None
    model = toy_folder / "model.py"  # a toy that predicts nothing: constant logits
    model.write_text(model.read_text().replace("return self.head(", "return 0 * self.head("))
    report = grade(submission, options)
    assert [r.status for r in report.results if r.check.startswith("val loss")] == ["fail"]


def test_two_packages_of_one_stage_and_a_package_without_a_stage_are_errors(toy, tmp_path, monkeypatch):
    from makemore_wavenet.stages import StageError

    write_toy(tmp_path / "copies" / "stage9_backup")
    monkeypatch.setattr(stages, "__path__", [*stages.__path__, str(tmp_path / "copies")])
    with pytest.raises(StageError, match="two packages are stage 9: stage9_toy and stage9_backup"):
        all_stages()
    (tmp_path / "copies" / "stage9_backup" / "__init__.py").write_text("")
    sys.modules.pop("makemore_wavenet.stages.stage9_backup", None)
    with pytest.raises(StageError, match="declares no STAGE"):
        all_stages()
    sys.modules.pop("makemore_wavenet.stages.stage9_backup", None)
