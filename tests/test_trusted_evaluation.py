"""Trusted evaluation: the loss check runs no submission code on val or test inputs. The child
trains on the train split alone and returns its tensors; the grader evaluates them with its own
model of the stage (grader/reference.py), after checking the submission's forward pass agrees."""

import os
import re
from dataclasses import asdict, replace

import nbformat
import pytest
import torch
from test_grader import copy_master, patch
from test_sandbox import SANDBOXES, sandbox

from fixtures.lecture_notebook import CELLS, lecture_notebook
from makemore_wavenet.grader import grade as grading
from makemore_wavenet.grader import reference, replay
from makemore_wavenet.grader.grade import GRADER_SEED, Options, grade
from makemore_wavenet.grader.sandbox import Limits
from makemore_wavenet.shared import checkpoint, loop
from makemore_wavenet.shared.config import Runtime
from makemore_wavenet.shared.data import load_splits, load_words, names_path, split_words
from makemore_wavenet.stages import all_stages, checkpoint_path, get_stage, plan

MLP_RETURN = "        return x  # (B, vocab_size)"  # the end of stage 1's forward, where the oracle goes
# the attack the old loss check fell to: the next row's context ends with this row's target, so a
# forward pass in eval mode that reads its batch returns one-hot logits of the answer (val 0.0000)
ORACLE = """        if not self.training:
            answer = torch.cat([ix[1:, -1], ix[:1, -1]])
            return torch.nn.functional.one_hot(answer, 27).to(x.dtype) * 30
        return x  # (B, vocab_size)"""


def loss_rows(report, stage: int) -> list:
    return [r for r in report.results if r.row == f"stage {stage}" and " loss " in r.check]


# --- the reference model, on its own ---

def trained_state(stage: int) -> dict:
    """A model of the stage after one training-mode forward pass: running statistics of their trained shape."""
    s = get_stage(stage)
    torch.manual_seed(0)
    model = s.build_model(s.config)
    model.train()(reference.agreement_inputs(s.config.block_size, s.config.whole_names))
    return model


@pytest.mark.parametrize("stage", list(all_stages()))
def test_the_reference_holding_a_stages_tensors_agrees_with_it(stage):
    model, s = trained_state(stage), get_stage(stage)
    x = reference.agreement_inputs(s.config.block_size, s.config.whole_names)
    ours = reference.stage_model(stage, asdict(s.config), model.state(), x)
    assert reference.disagreement(ours, x, reference.logits(model, x)) == ""
    assert torch.equal(reference.logits(ours, x), reference.logits(model, x))


def test_a_forward_that_differs_by_more_than_the_tolerance_disagrees():
    model, x = trained_state(6), reference.agreement_inputs(8, False)
    ours = reference.stage_model(6, asdict(get_stage(6).config), model.state(), x)
    theirs = reference.logits(model, x)
    scale = max(1.0, theirs.abs().max().item())  # each row is judged against its largest logit, at least 1
    assert reference.disagreement(ours, x, theirs + 0.5 * reference.AGREEMENT * scale) == ""
    assert "differs" in reference.disagreement(ours, x, theirs + 3 * reference.AGREEMENT * scale)
    assert "differs" in reference.disagreement(ours, x, theirs * float("nan"))
    assert "gave (64, 26)" in reference.disagreement(ours, x, theirs[:, :26])


def test_a_lecture_model_is_told_its_stage_4_and_5_by_its_running_statistics():
    for stage in (4, 5):
        model = trained_state(stage)
        found, _ = reference.lecture_stage(22_397, model.state(), reference.agreement_inputs(8, False))
        assert found == stage


@pytest.mark.parametrize("spoil, says", [
    (lambda st: {f"{int(k.split('.')[0]) + 1}.{k.split('.', 1)[1]}": v for k, v in st.items()}, "not the model's"),
    (lambda st: {**st, "2.weight": torch.zeros(3, 3)}, r"has shape \(3, 3\)"),
    (lambda st: {**st, "2.weight": st["2.weight"].long()}, "torch.int64"),
    (lambda st: {k: v.tolist() for k, v in st.items()}, "no named tensors"),
    (lambda st: [1, 2, 3], "no named tensors"),
], ids=["layers shifted", "a wrong shape", "integers", "lists", "no dict"])
def test_tensors_that_are_not_the_stages_model_cannot_be_evaluated(spoil, says):
    state, x = trained_state(6).state(), reference.agreement_inputs(8, False)
    with pytest.raises(reference.CannotEvaluate, match=says):
        reference.stage_model(6, asdict(get_stage(6).config), spoil(state), x)
    with pytest.raises(reference.CannotEvaluate):
        reference.lecture_stage(76_579, spoil(state), x)


def test_a_configuration_too_big_to_build_is_refused_before_anything_is_allocated():
    # on `meta` first: a billion hidden units never reach memory, whatever tensors come with them
    config = replace(get_stage(1).config, n_hidden=10**9)
    with pytest.raises(reference.CannotEvaluate, match="more than the"):
        reference.stage_model(1, asdict(config), trained_state(1).state(), reference.agreement_inputs(3, False))
    with pytest.raises(reference.CannotEvaluate, match="builds no model"):
        reference.stage_model(1, {"n_hidden": "many"}, {}, reference.agreement_inputs(3, False))


@pytest.mark.parametrize("spoil, says", [
    (lambda st: {**st, "1.running_mean": torch.full_like(st["1.running_mean"], float("inf"))}, "not finite"),
    (lambda st: {**st, "C": torch.zeros(1, 1).expand(*st["C"].shape)}, "no plain tensor"),
    (lambda st: {**st, "C": st["C"].to("meta")}, "no plain tensor"),
    (lambda st: {**st, "C": st["C"].to_sparse()}, "no plain tensor"),
], ids=["inf", "expanded", "meta", "sparse"])
def test_tensors_that_are_not_plain_finite_numbers_are_refused(spoil, says):
    state, x = trained_state(1).state(), reference.agreement_inputs(3, False)
    with pytest.raises(reference.CannotEvaluate, match=says):
        reference.stage_model(1, asdict(get_stage(1).config), spoil(state), x)


def test_finite_tensors_that_make_non_finite_logits_never_agree():
    # the red team's trap: huge finite weights whose sums overflow on some inputs (here: all), times a
    # zero gamma, give NaN; the agreement check used to be skipped then, so any forward "agreed"
    model, x = trained_state(1), reference.agreement_inputs(3, False)
    state = {**model.state(), "C": torch.ones_like(model.state()["C"]),
             "0.weight": torch.full_like(model.state()["0.weight"], 3e38)}  # 30 of them sum to inf
    state["1.gamma"] = state["1.gamma"].clone()
    state["1.gamma"][0] = 0.0
    ours = reference.stage_model(1, asdict(get_stage(1).config), state, x)
    assert "not finite" in reference.disagreement(ours, x, torch.zeros(reference.AGREEMENT_ROWS, 27))


def test_agreement_is_judged_row_by_row():
    model, x = trained_state(6), reference.agreement_inputs(8, False)
    ours = reference.stage_model(6, asdict(get_stage(6).config), model.state(), x)
    theirs = reference.logits(model, x).clone()
    theirs[5] += 0.01 * theirs[5].abs().max()  # one row off by 1%: a huge logit elsewhere would not hide it
    assert "differs" in reference.disagreement(ours, x, theirs)


def test_agreement_inputs_are_drawn_anew_each_time():
    assert not torch.equal(reference.agreement_inputs(8, False), reference.agreement_inputs(8, False))
    assert reference.agreement_inputs(8, True).shape == (reference.AGREEMENT_ROWS, 8 + reference.NAME_PADDING)


# --- grading, end to end ---

@pytest.mark.parametrize("mode", SANDBOXES)
def test_an_eval_time_oracle_gets_no_loss_at_all(tmp_path, mode):
    root = patch(copy_master(tmp_path), "stages/stage1_baseline_mlp/model.py", MLP_RETURN, ORACLE)
    report = grade(root, Options(tier="hidden", stages=(1,), limits=Limits(isolation=sandbox(mode))))
    rows = loss_rows(report, 1)
    assert [r.check.split()[0] for r in rows] == ["val", "test"]
    assert all(r.status == "fail" and "differs from the grader's model" in r.message for r in rows)
    assert not report.losses and report.isolation == mode


def test_the_child_is_given_the_train_split_and_nothing_held_out(tmp_path, monkeypatch):
    sent = []

    def recording(submission, calls, *args, **kwargs):
        sent.extend(calls)
        return real(submission, calls, *args, **kwargs)

    real = grading.run_calls
    monkeypatch.setattr(grading, "run_calls", recording)
    report = grade(copy_master(tmp_path), Options(tier="hidden", stages=(1,)))
    assert [r.status for r in loss_rows(report, 1)] == ["pass", "pass"]
    splits = load_splits(3, path=names_path())
    [loss_call] = [c for c in sent if c.probe.__name__ == "stage_weights"]
    tensors = {k: v for k, v in loss_call.kwargs.items() if isinstance(v, torch.Tensor)}
    assert set(tensors) == {"train_x", "train_y", "lrs", "agreement_x"}
    assert torch.equal(tensors["train_x"], splits["train"][0]) and torch.equal(tensors["train_y"], splits["train"][1])
    assert tensors["agreement_x"].shape == (reference.AGREEMENT_ROWS, 3)
    # one answer to "what is your configuration": the one the configuration row judged is the one trained
    assert [c.probe.__name__ for c in sent].count("stage_config") == 1
    held_out = [splits[s][0] for s in ("val", "test")]
    for call in sent:  # no call, exercise checks included, carries a held-out split
        for value in call.kwargs.values():
            assert not any(isinstance(value, torch.Tensor) and value.shape == x.shape for x in held_out)


def test_a_lecture_notebook_opens_a_names_file_of_the_train_split_only(tmp_path):
    path = tmp_path / "makemore_part5.ipynb"
    nbformat.write(lecture_notebook(), path)  # its second cell prints len(words)
    report = grade(path, Options(tier="public", losses=False))
    words = split_words(load_words(names_path()))
    assert f"\n{len(words['train'])}\n" in f"\n{report.log}"
    assert str(sum(len(w) for w in words.values())) not in report.log


def save_checkpoint(root, config, seed: int = GRADER_SEED):
    """An untrained stage-1 model (one forward pass in training mode: its running statistics have
    their trained shape), labelled as trained with the quick recipe under the grader's seed."""
    s = get_stage(1)
    torch.manual_seed(seed)
    model = s.build_model(config)
    model.train()(reference.agreement_inputs(config.block_size, whole_names=False))
    recipe = plan(1, "quick").recipe
    checkpoint.save(checkpoint_path(1, root / "runs"), model, config, recipe, Runtime(seed=GRADER_SEED), {}, stage=1)


def test_a_checkpoint_is_evaluated_by_the_grader_and_ignored_on_the_hidden_tier(tmp_path):
    root = copy_master(tmp_path)
    save_checkpoint(root, get_stage(1).config)  # labelled right, never trained
    public = grade(root, Options(tier="public", stages=(1,)))
    [val] = loss_rows(public, 1)
    assert val.status == "fail" and val.value > 3.2 and "checkpoint" in val.message
    hidden = grade(root, Options(tier="hidden", stages=(1,)))
    assert [r.status for r in loss_rows(hidden, 1)] == ["pass", "pass"]
    assert all("checkpoint" not in r.message and "grader's schedule" in r.message for r in loss_rows(hidden, 1))


@pytest.mark.parametrize("mode", SANDBOXES)
def test_a_checkpoint_of_another_model_than_the_submission_reports_is_not_used(tmp_path, mode):
    root = copy_master(tmp_path)
    save_checkpoint(root, replace(get_stage(1).config, n_hidden=400))  # the mislabelled checkpoint
    [val] = loss_rows(grade(root, Options(tier="public", stages=(1,), limits=Limits(isolation=sandbox(mode)))), 1)
    assert val.status == "pass" and "grader's schedule" in val.message and "checkpoint" not in val.message


def test_a_notebook_block_size_the_grader_builds_no_windows_for_is_that_notebooks_fail(tmp_path):
    path = tmp_path / "makemore_part5.ipynb"
    nbformat.write(lecture_notebook(["import torch", "block_size = 100000 # context length"]), path)
    report = grade(path, Options(tier="public"))
    [row] = [r for r in report.results if r.row == "notebook"]
    assert row.status == "fail" and "block_size 100000" in row.message and not report.losses


@pytest.mark.parametrize("entry, says", [
    ("[model]\n[train]\nsteps = 1000000000\n", "more than the"),
    (None, "is a link"),
], ids=["a billion steps", "a link"])
def test_a_challenge_entry_the_grader_does_not_train(tmp_path, entry, says):
    root = copy_master(tmp_path)
    if entry is None:
        (root / "challenge.toml").symlink_to(names_path())  # a file outside the submission
    else:
        (root / "challenge.toml").write_text(entry)
    report = grade(root, Options(tier="public", schedule="challenge"))
    rows = loss_rows(report, 8)
    assert rows and all(r.status in ("fail", "error") and says in r.message for r in rows), report.table()


# --- the grader's own training: tensors cannot say how they were trained ---

MLP_FORWARD = "    def forward(self, ix: torch.Tensor) -> torch.Tensor:\n        # BEGIN EXERCISE 1.1"
# the red team's attack on trusted evaluation alone: the model the grader reads is one trained elsewhere
# (longer, or on any words at all), swapped in as the probe turns to eval mode to read it; its forward is
# the stage's, so its own forward pass agrees with the grader's model holding the same tensors
TRAINED_ELSEWHERE = """    def eval(self):
        import pathlib
        better = pathlib.Path(__file__).with_name("better.pt")
        if better.is_file():
            self.load_state(torch.load(better))
        return super().eval()

""" + MLP_FORWARD
LOOKUP = "        emb = self.C[ix]  # (B, T, n_embd)"
# an honest 1.1 of another shape: the lecture's other way to read C, a one-hot row times C; its gradient
# sums otherwise than indexing's, so training rounds otherwise than the master's
ONE_HOT = "        emb = torch.nn.functional.one_hot(ix, self.C.shape[0]).to(self.C.dtype) @ self.C  # (B, T, n_embd)"


@pytest.fixture(scope="module")
def trained_longer() -> dict:
    """The master's stage-1 model trained 15,000 steps at lr 0.1 with the grader's loop: better than the
    quick schedule's 5,000 make it."""
    steps, s = 15_000, get_stage(1)
    torch.manual_seed(GRADER_SEED)
    model = s.build_model(s.config)
    X, Y = load_splits(3, path=names_path())["train"]
    loop.train_with_torch(model, X, Y, lrs=torch.full((steps,), 0.1), batch_size=32, recompute=True)
    return model.state()


@pytest.mark.parametrize("mode", SANDBOXES)
def test_tensors_trained_elsewhere_fail_and_count_for_nothing(tmp_path, mode, trained_longer):
    root = patch(copy_master(tmp_path), "stages/stage1_baseline_mlp/model.py", MLP_FORWARD, TRAINED_ELSEWHERE)
    torch.save(trained_longer, root / "stages/stage1_baseline_mlp/better.pt")
    report = grade(root, Options(tier="hidden", stages=(1,), limits=Limits(isolation=sandbox(mode))))
    rows = loss_rows(report, 1)
    assert [r.status for r in rows] == ["fail", "fail"] and not report.losses, report.table()
    assert all("not where the grader's own training of its model ends" in r.message for r in rows)
    quoted = re.search(r"val (\d\.\d+) against the grader's (\d\.\d+)", rows[0].message)
    theirs, ours = (float(v) for v in quoted.groups())
    assert theirs < ours - 0.02, "the bundled model is no better than the grader's training: the attack shows nothing"


def test_a_layer_written_another_way_passes_with_the_graders_own_losses(tmp_path):
    """Both sides: an honest exercise whose rounding differs from the master's trains to the same
    place, and the losses reported are the grader's own training's, the master's to the last digit."""
    root = patch(copy_master(tmp_path), "stages/stage1_baseline_mlp/model.py", LOOKUP, ONE_HOT)
    mine, masters = (grade(r, Options(stages=(1,))) for r in (root, copy_master(tmp_path / "master")))
    assert [r.status for r in loss_rows(mine, 1)] == ["pass"], mine.table()
    assert all("as the grader's own training of it" in r.message for r in loss_rows(mine, 1))
    assert [(x.split, x.value) for x in mine.losses] == [(x.split, x.value) for x in masters.losses]


def test_the_grader_trains_the_stage_from_the_masters_start_as_the_child_does(tmp_path, monkeypatch):
    """replay.initial is where the master's own training starts: the child's and the grader's runs
    begin at the same tensors and the same random state, so the master's losses are unchanged. A
    training the grader has done is kept in its cache, and only there is it taken from."""
    monkeypatch.setenv("MAKEMORE_CACHE", str(tmp_path))
    s = get_stage(1)
    init = replay.initial(1, asdict(s.config), GRADER_SEED)
    torch.manual_seed(GRADER_SEED)
    model = s.build_model(s.config)
    assert all(torch.equal(model.state()[k], v) for k, v in init["state"].items())
    assert torch.equal(torch.get_rng_state(), init["rng"])
    X, Y = load_splits(3, path=names_path())["train"]
    recipe = plan(1, "quick").recipe
    job = {"stage": 1, "model_config": asdict(s.config), "init": init, "train_x": X[:5000], "train_y": Y[:5000],
           "recipe": asdict(recipe), "lrs": torch.full((50,), 0.1, dtype=torch.float64)}
    first, second = replay.Replay([job, {**job, "stage": 99}]).result(300)
    assert isinstance(first, dict) and set(first) == set(init["state"])
    assert isinstance(second, str) and "failed" in second  # one job's failure is its own
    assert not torch.equal(first["0.weight"], init["state"]["0.weight"])
    again = replay.Replay([job])
    assert again.process is None and torch.equal(again.result(1)[0]["0.weight"], first["0.weight"])
    [kept] = (tmp_path / "replays").iterdir()
    assert kept.stat().st_mode & 0o777 == 0o600
    longer = {**job, "lrs": torch.full((51,), 0.1, dtype=torch.float64)}  # another job: trained, not taken
    assert trains(replay.Replay([longer]))
    if os.getuid() == 0:  # a file someone else wrote there is never taken
        os.chown(kept, 65534, 65534)
        assert trains(replay.Replay([job]))


def trains(ours: replay.Replay) -> bool:
    """Whether the grader's own training of these jobs runs (stopped at once), or all came from the cache."""
    running = ours.process is not None
    ours.stop()
    return running


# a lecture-style notebook's model that trains 3,000 steps more, at the last rate, before the last of the
# grader's 5,000 (it counts its calls): val 2.1234 against the grader's 2.1358. With torch.autograd.grad, which
# no notebook statement is skipped for calling (a cell that calls .backward( is the notebook's own training)
NOTEBOOK_TRAINED_LONGER = """class TrainedLonger(Sequential):
  calls = 0
  def __call__(self, x):
    TrainedLonger.calls += 1
    if TrainedLonger.calls == 4999:
      self.train_more()
    return super().__call__(x)
  def train_more(self):
    for _ in range(3000):
      ix = torch.randint(0, Xtr.shape[0], (32,))
      loss = F.cross_entropy(Sequential.__call__(self, Xtr[ix]), Ytr[ix])
      for p, g in zip(self.parameters(), torch.autograd.grad(loss, self.parameters())):
        p.data -= 0.01 * g

model = TrainedLonger(model.layers)"""


def test_a_notebook_model_trained_beyond_the_graders_fails(tmp_path):
    path = tmp_path / "makemore_part5.ipynb"
    nbformat.write(lecture_notebook([*CELLS, NOTEBOOK_TRAINED_LONGER]), path)
    report = grade(path, Options(tier="hidden"))
    [row] = [r for r in report.results if r.row == "notebook"]
    assert row.status == "fail" and "not where the grader's own training of its model ends" in row.message, row
    assert not report.losses
