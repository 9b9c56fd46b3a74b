"""Honesty about the split (issue 14): names.txt and its seed-42 split are public, so a submission can
bundle the names and, inside its own code, learn from the val and test words whatever the sandbox
hands it. Only a test file no student has seen (--test-names, Options.test_names) catches that.

Shown here as a real grading of stage 1 (hidden tier, quick schedule, in the sandbox), with two
submissions that differ in one thing only: when the grader is about to train the model, both train it
first for the same number of steps on as many course words, then the grader's training continues.
- the cheater's words are the public split's val and test words;
- the control's are as many of the public split's train words: honest about held-out words, and
  given the same extra training, so that what the cheater gains is the held-out words and nothing else.
(Against a plain copy of the master, the extra training alone is worth about 0.1 on every split, the
private test file included: the quick schedule's 5,000 steps leave stage 1 undertrained. A private test
file cannot see how long a model trained, only which words it learned.)

The course file and the private file are cut from names.txt here, in tmp_path: the private file holds
every line of a random tenth of the distinct names (a name that occurs twice in names.txt is never on
both sides), the course file the rest; the grader makes the public split over the course file.
"""

import random
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from makemore_wavenet.grader.grade import Options, grade
from makemore_wavenet.grader.sandbox import Limits
from makemore_wavenet.shared.data import load_words

ROOT = Path(__file__).resolve().parents[1]
PRIVATE_SEED = 51_147  # the instructor's secret: which names the private file holds
EXTRA_STEPS = 20_000  # steps of extra training, at lr 0.1, batch 32, before the grader's 5,000
# Measured, cheater minus control, on five private files cut this way: seeds 1, 2, 7 and 8 in-process with
# the grader's loop, and PRIVATE_SEED through grade() (val -0.0532, public test -0.0624, private -0.0015):
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


def _train_more(model, config):
    """Before the grader trains this model (a caller's frame holds the grader's train windows,
    `train_x`: every other build, the exercise checks' included, gets the honest model), train it on
    the words below, from the names file bundled beside this module, split as the course splits it."""
    import sys
    from pathlib import Path

    from makemore_wavenet.shared.data import build_dataset, load_words, split_words
    from makemore_wavenet.shared.loop import train_with_torch

    frame = sys._getframe(1)
    while frame is not None and not isinstance(frame.f_locals.get("train_x"), torch.Tensor):
        frame = frame.f_back
    if frame is None:
        return
    words = split_words(load_words(Path(__file__).with_name("course.txt")))  # the public split: seed 42
    held_out = words["val"] + words["test"]
    extra = {words}
    X, Y = build_dataset(extra, config.block_size)
    train_with_torch(model, X, Y, lrs=torch.full(({steps},), 0.1), batch_size=32)
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
    """A copy of the master whose stage-1 build_model trains the model more on `kind`'s words."""
    root = tmp_path / kind
    for folder in ("shared", "stages"):  # what the grader copies of a submission, as tests/test_grader.py does
        shutil.copytree(ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    path = root / MODEL
    text = path.read_text()
    build = "    less_confident(model.layers[-1])\n    return model\n"
    assert build in text, f"{MODEL}'s build_model changed: put _train_more where it trains its model"
    text = text.replace(build, build.replace("    return", "    _train_more(model, config)\n    return"), 1)
    path.write_text(text + EXTRA_TRAINING.format(words=WORDS[kind], steps=EXTRA_STEPS))
    (root / MODEL).with_name("course.txt").write_text(course_file.read_text())  # the bundled names: the sandbox
    return root  # shows a submission its own files only


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """{(kind, private file or None): Report}: the cheater and the control graded on the hidden tier,
    with the private test file and without it (the test row is then the public split's), two at once."""
    tmp_path = tmp_path_factory.mktemp("private_test_set")
    course_file, private_file = course_and_private(tmp_path)
    subs = {kind: submission(tmp_path, kind, course_file) for kind in WORDS}
    # the sandbox the machine has (bubblewrap where it runs): what is shown here does not hang on it, since
    # both submissions read only their own files, which every sandbox shows them
    limits = Limits(isolation="auto", allow_unisolated=True)

    def run(job):
        kind, test_names = job
        return job, grade(subs[kind], Options(tier="hidden", stages=(STAGE,), names=str(course_file),
                                              test_names=test_names, retrain=True, limits=limits))

    jobs = [(kind, test_names) for test_names in (str(private_file), None) for kind in WORDS]
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = dict(pool.map(run, jobs))
    for (kind, test_names), report in reports.items():
        assert report.test_source == (test_names or "course split")
        for split in ("val", "test"):
            assert report.loss(STAGE, split) is not None, f"{kind}: no {split} loss\n{report.table()}\n{report.log}"
    return {(kind, "private" if test_names else None): r for (kind, test_names), r in reports.items()}


def gains_nothing(cheater, control) -> bool:
    """The cheater's test loss is no better than the control's, within TOLERANCE."""
    return cheater.loss(STAGE, "test") >= control.loss(STAGE, "test") - TOLERANCE


def test_the_cheater_gains_on_the_public_val_split_it_trained_on(graded):
    cheater, control = graded["cheater", "private"], graded["control", "private"]
    gain = control.loss(STAGE, "val") - cheater.loss(STAGE, "val")
    assert gain > MARGIN, (f"the cheat did not work (val {cheater.loss(STAGE, 'val'):.4f} against the control's "
                           f"{control.loss(STAGE, 'val'):.4f}): this test shows nothing until it does")


def test_on_a_private_test_file_the_cheater_gains_nothing(graded):
    cheater, control = graded["cheater", "private"], graded["control", "private"]
    assert gains_nothing(cheater, control), (cheater.loss(STAGE, "test"), control.loss(STAGE, "test"))


def test_without_a_private_file_the_cheat_goes_unseen(graded):
    """The same comparison on the public test split, which the cheater trained on: it fails, so the
    test above can."""
    cheater, control = graded["cheater", None], graded["control", None]
    assert not gains_nothing(cheater, control), (cheater.loss(STAGE, "test"), control.loss(STAGE, "test"))
    assert control.loss(STAGE, "test") - cheater.loss(STAGE, "test") > MARGIN
