"""Honesty about the split (issue 14): names.txt and its seed-42 split are public, so a submission can
bundle the names and, inside its own code, learn from the val and test words whatever the sandbox
hands it. Shown with two submissions that differ in one thing only: once the model holds the master's
initial tensors (its load_state), each trains it for the same number of extra steps on as many course
words, then the grader's training continues.
- the cheater's words are the public split's val and test words;
- the control's are as many of the public split's train words: honest about held-out words, and
  given the same extra training, so that what the cheater gains is the held-out words and nothing else.

Two defences:
1. The grader's own training (grader/replay.py). Graded for real (stage 1, hidden tier, quick schedule,
   with a private test file, in each sandbox that runs here), the cheater fails the loss check: its
   tensors are not where the grader's training from the same start ends, and no loss of its is reported.
2. A test file no student has seen (--test-names, Options.test_names). The two models, trained here as
   the child trains them and scored on the private file and on the public test split: the cheater gains
   on the words it trained on and nothing on the private file. That is what a private file proves of
   any model, however it was trained: a checkpoint's, or one a grader cannot train again. (50,000 steps
   of training: `nox -s e2e` runs it.)
(Against a plain copy of the master, the extra training alone is worth about 0.1 on every split, the
private test file included: the quick schedule's 5,000 steps leave stage 1 undertrained. A private test
file cannot see how long a model trained, only which words it learned.)

The course file and the private file are cut from names.txt here, in tmp_path: the private file holds
every line of a random tenth of the distinct names (a name that occurs twice in names.txt is never on
both sides), the course file the rest; the grader makes the public split over the course file.
"""

import random
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from makemore_wavenet.grader import isolation, reference, replay
from makemore_wavenet.grader.grade import GRADER_SEED, Options, grade
from makemore_wavenet.grader.sandbox import Limits
from makemore_wavenet.shared.data import build_dataset, load_splits, load_words, split_words
from makemore_wavenet.shared.loop import cross_entropy, train_with_torch
from makemore_wavenet.stages import get_stage, plan

ROOT = Path(__file__).resolve().parents[1]
PRIVATE_SEED = 51_147  # the instructor's secret: which names the private file holds
EXTRA_STEPS = 20_000  # steps of extra training, at lr 0.1, batch 32, before the grader's 5,000
# Measured, cheater minus control, on five private files cut this way, with the grader's loop:
#   public val  -0.052 to -0.060, public test -0.054 to -0.062 (the words the cheater trained on)
#   private     -0.007 to +0.002 (words neither saw)
MARGIN = 0.03  # what the cheater must gain on the public split it trained on: over half the smallest gain seen
# How much better the cheater may do on the private file and still count as gaining nothing: nearly three
# times the largest edge seen (0.007). That edge is no memory of held-out words: the cheater's extra steps
# see 20% more distinct course words than the control's (train, val and test against train alone), and
# more distinct words generalize a little better. TOLERANCE stays below MARGIN, so the same comparison on
# the public test split fails (test_without_a_private_file_the_cheat_goes_unseen).
TOLERANCE = 0.02
STAGE = 1
MODEL = "stages/stage1_baseline_mlp/model.py"

EXTRA_TRAINING = '''


def _load_state_and_train_more(self, state):
    """The master's initial tensors, then extra training on the words below, from the names file
    bundled beside this module, split as the course splits it, before the grader's training goes on."""
    from pathlib import Path

    from makemore_wavenet.shared.data import build_dataset, load_words, split_words
    from makemore_wavenet.shared.loop import train_with_torch

    Module.load_state(self, state)
    words = split_words(load_words(Path(__file__).with_name("course.txt")))  # the public split: seed 42
    held_out = words["val"] + words["test"]
    extra = {words}
    train_with_torch(self, *build_dataset(extra, {block_size}), lrs=torch.full(({steps},), 0.1), batch_size=32)


MLP.load_state = _load_state_and_train_more
'''
WORDS = {"cheater": 'held_out  # the public val and test words',
         "control": 'words["train"][:len(held_out)]  # as many of the public train words'}


def course_and_private(tmp_path: Path) -> tuple[Path, Path]:
    lines = load_words()  # names.txt, one name a line, duplicates kept
    distinct = sorted(set(lines))
    private = set(random.Random(PRIVATE_SEED).sample(distinct, len(distinct) // 10))
    course_file, private_file = tmp_path / "course.txt", tmp_path / "private.txt"
    course_file.write_text("\n".join(w for w in lines if w not in private) + "\n")
    private_file.write_text("\n".join(w for w in lines if w in private) + "\n")
    return course_file, private_file


def submission(tmp_path: Path, kind: str, course_file: Path) -> Path:
    """A copy of the master whose stage-1 model trains more on `kind`'s words once it holds its start."""
    root = tmp_path / kind
    for folder in ("shared", "stages"):  # what the grader copies of a submission, as tests/test_grader.py does
        shutil.copytree(ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    path = root / MODEL
    text = path.read_text()
    assert "class MLP(Module)" in text, f"{MODEL} changed: put the extra training where its model loads"
    extra = EXTRA_TRAINING.format(words=WORDS[kind], steps=EXTRA_STEPS, block_size=get_stage(STAGE).config.block_size)
    path.write_text(text + extra)
    (root / MODEL).with_name("course.txt").write_text(course_file.read_text())  # the bundled names: the sandbox
    return root  # shows a submission its own files only


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    return course_and_private(tmp_path_factory.mktemp("private_test_set"))


@pytest.fixture(scope="module")
def graded(files, tmp_path_factory):
    """{sandbox: Report}: the cheater graded on the hidden tier with the private test file, in every
    sandbox that runs here (bubblewrap, the fallback), two at once."""
    course_file, private_file = files
    tmp_path = tmp_path_factory.mktemp("submissions")
    runs = {"bwrap": isolation.bwrap_problem, "fallback": isolation.fallback_problem}
    modes = [mode for mode, problem in runs.items() if not problem()] or ["auto"]

    def run(mode):
        return mode, grade(submission(tmp_path / mode, "cheater", course_file),
                           Options(tier="hidden", stages=(STAGE,), names=str(course_file), test_names=str(private_file),
                                   retrain=True, limits=Limits(isolation=mode, allow_unisolated=mode == "auto")))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(run, modes))


def quoted_vals(report) -> tuple[float, float]:
    """(the submission's own training's val, the grader's), which the failing row quotes."""
    rows = [r for r in report.results if r.row == f"stage {STAGE}" and r.check.startswith("val loss")]
    assert rows and rows[0].status == "fail", report.table()
    assert "not where the grader's own training of its model ends" in rows[0].message, rows[0].message
    found = re.search(r"val (\d\.\d+) against the grader's (\d\.\d+)", rows[0].message)
    return float(found.group(1)), float(found.group(2))


def test_training_beyond_the_graders_fails_and_counts_for_nothing(graded, files):
    for mode, report in graded.items():
        assert report.test_source == str(files[1]) and not report.losses, (mode, report.table())
        rows = [r for r in report.results if r.row == f"stage {STAGE}" and " loss " in r.check]
        assert {r.status for r in rows} == {"fail"} and mode in (report.isolation, "auto"), report.table()
        theirs, ours = quoted_vals(report)
        assert theirs < ours - MARGIN, f"the cheat did not work in the child ({theirs} against {ours})"


def trained(kind: str, course_file: Path):
    """The model the child trains for `kind`: the master's start, the extra steps, the grader's training."""
    s = get_stage(STAGE)
    init = replay.initial(STAGE, asdict(s.config), GRADER_SEED)
    model = s.build_model(s.config)
    model.load_state(init["state"])
    words = split_words(load_words(course_file))
    held_out = words["val"] + words["test"]
    extra = held_out if kind == "cheater" else words["train"][:len(held_out)]
    train_with_torch(model, *build_dataset(extra, s.config.block_size), lrs=torch.full((EXTRA_STEPS,), 0.1),
                     batch_size=32)
    torch.set_rng_state(init["rng"])
    recipe = plan(STAGE, "quick").recipe
    lrs = torch.tensor([recipe.lr_at(i) for i in range(recipe.steps)])
    train_with_torch(model, *load_splits(s.config.block_size, path=course_file)["train"], lrs=lrs,
                     batch_size=recipe.batch_size, recompute=recipe.recompute_batchnorm)
    return model


@pytest.fixture(scope="module")
def test_losses(files) -> dict:
    """{(kind, "private" or "public"): test loss} of the two models trained here."""
    course_file, private_file = files
    block_size = get_stage(STAGE).config.block_size
    tests = {"private": build_dataset(load_words(private_file), block_size),
             "public": load_splits(block_size, path=course_file)["test"]}
    models = {kind: trained(kind, course_file) for kind in WORDS}
    return {(kind, name): cross_entropy(reference.logits(model, X), Y).item()
            for kind, model in models.items() for name, (X, Y) in tests.items()}


def gains_nothing(losses: dict, test: str) -> bool:
    """The cheater's loss on `test` is no better than the control's, within TOLERANCE."""
    return losses["cheater", test] >= losses["control", test] - TOLERANCE


@pytest.mark.e2e  # 25,000 steps for each model: the cheat itself fails in the default run, above
def test_on_a_private_test_file_the_cheater_gains_nothing(test_losses):
    assert gains_nothing(test_losses, "private"), test_losses


@pytest.mark.e2e
def test_without_a_private_file_the_cheat_goes_unseen(test_losses):
    """The same comparison on the public test split, which the cheater trained on: it fails, so the
    test above can."""
    assert not gains_nothing(test_losses, "public"), test_losses
    assert test_losses["control", "public"] - test_losses["cheater", "public"] > MARGIN
