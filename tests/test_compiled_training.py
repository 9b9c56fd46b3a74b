"""Compiled training of a submission's own model (shared/loop.py's compiled path): it trains as eager
does, falls back to eager, saying why, where compiling fails or trains otherwise, and the grader's
rows say which path trained a model."""

from __future__ import annotations

import copy
import os
import secrets

import nbformat
import pytest
import torch
import torch._inductor.config
from fixtures.lecture_notebook import EXPLORING_CELLS, lecture_notebook

from makemore_wavenet.grader import grade as grading
from makemore_wavenet.grader import isolation, replay
from makemore_wavenet.grader.grade import Options, grade
from makemore_wavenet.grader.sandbox import Limits
from makemore_wavenet.shared import loop
from makemore_wavenet.shared.data import CACHE_ENV
from makemore_wavenet.grader.exercises import exercises
from makemore_wavenet.stages import all_stages, get_stage
from test_needs import partly_done
from test_sandbox import ROOT, hostile, sandbox

STEPS = 60


def _train(model, X, Y, compiled: bool) -> loop.Training:
    torch.manual_seed(7)  # the batches
    return loop.train_with_torch(model, X, Y, lrs=torch.full((STEPS,), 0.1, dtype=torch.float64), batch_size=32,
                                 compiled=compiled)


@pytest.fixture(scope="module")
def stage2(splits_of_stage):
    s = get_stage(2)
    X, Y = splits_of_stage(2)["train"]
    torch.manual_seed(42)
    return s.build_model(s.config), X, Y


def test_compiled_training_trains_the_model_as_eager_does(stage2):
    """The student's own modules, forward and backward under torch.compile, torch's update: the same
    losses and weights as eager's, to float tolerance; the model trained is a copy (the one given
    trained the first steps eagerly, to hold the compiled ones to)."""
    model, X, Y = stage2
    eager = _train(copy.deepcopy(model), X, Y, compiled=False)
    compiled = _train(copy.deepcopy(model), X, Y, compiled=True)
    assert compiled.engine == "compiled", compiled.why_eager
    assert compiled.describe().startswith("compiled (") and compiled.compile_seconds > 0
    assert eager.engine == "eager" and eager.describe() == "eager"
    assert torch.allclose(compiled.losses, eager.losses, atol=1e-5, rtol=0)
    for a, b in zip(compiled.model.parameters(), eager.model.parameters()):
        assert torch.allclose(a, b, atol=1e-5, rtol=0)
    assert not torch.equal(compiled.losses[:5], compiled.losses[-5:])  # it learned


class Cheat:
    """A model whose forward is another when compiled (`disagree`: its logits scaled), or whose logits
    are scaled by `scale` always (code no compile has seen before: inductor compiles it afresh)."""

    def __init__(self, inner, how: str, scale: float = 1.0):
        self.inner, self.how, self.scale, self.training = inner, how, scale, True

    def __call__(self, x):
        out = self.inner(x) * self.scale
        if self.how == "disagree" and torch.compiler.is_compiling():
            out = out * 1.5
        return out

    def parameters(self):
        return self.inner.parameters()

    def train(self, mode: bool = True):
        self.training = mode
        self.inner.train(mode)
        return self

    def eval(self):
        return self.train(False)


@pytest.mark.parametrize("how, says", [("disagree", "losses differ from its eager steps' by up to"),
                                       ("no compiler", "compiling failed: InductorError: InvalidCxxCompiler")])
def test_a_model_that_trains_otherwise_compiled_or_does_not_compile_trains_eagerly(stage2, how, says):
    """Compiling is held to eager's first COMPILE_CHECK_STEPS steps: a forward that computes otherwise
    under torch.compile (a hostile one that would train one model for the check and another for the
    rest), or one that does not compile (here: a machine whose C++ compiler fails), is trained eagerly
    from there on, with why; every step is then eager's, to the bit, and the model trained is the one
    given."""
    model, X, Y = stage2
    scale = 1.0 + secrets.randbelow(10**6) / 10**9  # in the kernels' source: none compiled before
    eager = _train(Cheat(copy.deepcopy(model), how, scale), X, Y, compiled=False)
    given = Cheat(copy.deepcopy(model), how, scale)
    compiler = (None, "/bin/false") if how == "no compiler" else torch._inductor.config.cpp.cxx
    with torch._inductor.config.patch({"cpp.cxx": compiler}):
        fell_back = _train(given, X, Y, compiled=True)
    assert fell_back.engine == "eager" and says in fell_back.why_eager, fell_back.why_eager
    assert fell_back.describe() == f"eager ({fell_back.why_eager})"
    assert fell_back.model is given
    assert torch.equal(fell_back.losses, eager.losses)
    assert all(torch.equal(a, b) for a, b in zip(fell_back.model.parameters(), eager.model.parameters()))


def test_a_model_that_cannot_be_copied_trains_eagerly(stage2):
    """The compiled path trains a copy: a model that cannot be copied trains eagerly, saying so."""
    model, X, Y = stage2

    class Uncopyable(Cheat):
        def __deepcopy__(self, memo):
            raise TypeError("no copies")

    trained = _train(Uncopyable(copy.deepcopy(model), "none"), X, Y, compiled=True)
    assert trained.engine == "eager" and "cannot be copied" in trained.why_eager


# --- the grader's loss check, compiled, in its sandbox ---

def test_compiled_loss_checks_in_the_sandbox_each_say_their_path_and_the_grader_follows_it(tmp_path, monkeypatch):
    """One grading, in the fallback's sandbox, of a submission whose Flatten (stage 2's layer, not
    stage 1's) computes otherwise under torch.compile, as a hostile one would, to train one model
    for the check and another for the grade:
    - stage 1 trains compiled in the sandbox (its child reaches Python, and the compiler inductor
      runs reaches the headers, through the child's descriptor, by its pid), and its row says so;
    - stage 2's compiled steps disagree with eager's: it trains eagerly and its row says why; the
      grader's own training of it, compiled beside the child's, is trained again eagerly, as the
      child's was, and the two agree."""
    submission = hostile(tmp_path, "if torch.compiler.is_compiling():\n    x = x.flip(-1)")  # BatchNorm undoes a scale
    asked = []
    real = replay.Replay

    def recorded(jobs):
        asked.append([job["compiled"] for job in jobs])
        return real(jobs)

    monkeypatch.setattr(replay, "Replay", recorded)
    options = Options(stages=(1, 2), retrain=True, training="compiled", limits=Limits(isolation=sandbox("fallback")))
    report = grade(submission, options)
    assert report.isolation == "fallback"
    rows = {r.stage: r for r in report.results if r.check.startswith("val loss")}
    assert rows[1].status == "pass" and "the submission's training: compiled (" in rows[1].message, rows[1].message
    assert rows[2].status == "pass", rows[2].message
    assert "the submission's training: eager (its compiled steps' losses differ" in rows[2].message, rows[2].message
    assert asked == [[True, True], [False]]


@pytest.mark.parametrize("value, compiled", [
    ({"training": "eager (compiling failed: InductorError)"}, False),
    ({"training": "compiled (9 s of compiling)"}, True),
    ({"training": 3}, True),
    ("not a dict", True),
    (None, True),
])
def test_the_graders_own_training_follows_the_path_the_child_says_it_took(value, compiled):
    spec = {"compiled": True, "stage": 2}
    assert grading._followed(spec, value)["compiled"] is compiled
    assert grading._followed({"compiled": False}, value)["compiled"] is False


HONEST = ("the master", "a filled edition", "a lecture-style notebook")


@pytest.mark.e2e
@pytest.mark.parametrize("who", HONEST)
def test_no_honest_submission_of_stages_1_to_7_falls_back_to_eager(tmp_path, who):
    """Compiled, in the sandbox `auto` picks: every stage from 1 to 7 of the master's sources, of a
    student edition with every exercise filled in, and the lecture's own notebook (its model is stage
    6's), trains compiled (its row says so) and passes."""
    if who == "the master":
        submission = ROOT
    elif who == "a filled edition":
        submission = partly_done(tmp_path, set(exercises()))
    else:
        submission = tmp_path / "makemore_part5.ipynb"
        nbformat.write(lecture_notebook(EXPLORING_CELLS), submission)
    stages = tuple(n for n in all_stages() if n <= 7)
    report = grade(submission, Options(stages=stages, retrain=True, training="compiled"))
    rows = [r for r in report.results if r.check.startswith("val loss")]
    assert {r.stage for r in rows} == ({6} if submission.suffix == ".ipynb" else set(stages))
    for r in rows:
        assert r.status == "pass" and "the submission's training: compiled (" in r.message, (r.stage, r.message)


def test_a_sandboxs_compiled_code_goes_to_a_folder_of_its_own(tmp_path):
    """Inductor's cache in a sandbox: its own temporary folder (bwrap's tmpfs /tmp, the fallback's
    0700 work folder, new for each run of checks), never the shared /tmp/torchinductor_<user> where
    one submission's compiled code would wait for the next's compile to load it."""
    env = isolation._env(str(tmp_path), str(tmp_path / "tmp"))
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "tmp" / "inductor")


def test_the_graders_own_compiled_code_is_kept_where_only_the_grader_writes(tmp_path, monkeypatch):
    """The grader's own trainings compile outside any sandbox and load what inductor's cache holds: a
    folder of the instructor's cache, 0700; one that another user made first is not used."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    folder = replay._inductor_cache()
    assert folder == tmp_path / "inductor" and folder.stat().st_mode & 0o777 == 0o700
    if os.getuid() != 0:
        pytest.skip("only root can give the folder to another uid")
    os.chown(folder, 59999, 59999)  # as if a sandbox's uid had made it
    elsewhere = replay._inductor_cache()
    assert elsewhere != folder and elsewhere.stat().st_uid == os.getuid()
    assert elsewhere.stat().st_mode & 0o777 == 0o700
