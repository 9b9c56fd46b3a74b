"""Stage 8, the challenge: the gated WaveNet block, its switches, entry files and challenge runs."""

from dataclasses import asdict

import pytest
import torch

from makemore_wavenet.shared.config import Runtime, TrainConfig
from makemore_wavenet.shared.data import IGNORE, build_names
from makemore_wavenet.shared.layers import Dropout, GatedActivation
from makemore_wavenet.shared.sampling import sample
from makemore_wavenet.shared.trainer import make_step, train
from makemore_wavenet.stages import count_parameters, get_stage, load_model
from makemore_wavenet.stages.stage8_challenge.entry import ENTRIES, ENTRY, EntryError, entry_path, load_entry
from makemore_wavenet.stages.stage8_challenge.model import WaveNetConfig, build_model
from makemore_wavenet.stages.stage8_challenge.challenge import challenge_table, run_entry, summarize

SEVEN = get_stage(7)
NAMES = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "charlotte", "amelia"]
SWITCHES = [dict(gated=g, residual=r, skip=s) for g in (True, False) for r in (True, False) for s in (True, False)]


def small(**kw) -> WaveNetConfig:
    dilations = kw.pop("dilations", (1, 2, 4))
    return WaveNetConfig(n_embd=5, n_hidden=8, dilations=dilations, block_size=1 + sum(dilations), **kw)


def test_gated_activation_is_tanh_of_the_filter_times_sigmoid_of_the_gate():
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    assert torch.equal(GatedActivation()(x), torch.tanh(x[..., :4]) * torch.sigmoid(x[..., 4:]))
    with pytest.raises(ValueError, match="two halves"):
        GatedActivation()(torch.randn(3, 5))


def test_dropout_keeps_the_expected_value_and_is_the_identity_in_eval_mode():
    x = torch.ones(200_000, dtype=torch.float64)
    torch.manual_seed(0)
    out = Dropout(0.25)(x)
    assert (out == 0).double().mean().item() == pytest.approx(0.25, abs=0.005)
    assert out.mean().item() == pytest.approx(1.0, abs=0.01)
    torch.manual_seed(0)
    assert torch.equal(Dropout(0.25)(x), out)  # the same mask under the same seed
    layer = Dropout(0.25)
    layer.training = False
    assert layer(x) is x
    with pytest.raises(ValueError, match="0 <= p < 1"):
        Dropout(1.0)


def test_with_every_part_off_it_is_stage_7_weight_for_weight():
    config = load_entry(ENTRIES / "stage7.toml")[0]
    torch.manual_seed(0)
    eight = build_model(config)
    torch.manual_seed(0)
    seven = SEVEN.build_model(SEVEN.config)
    X, _ = build_names(NAMES, 8)
    assert count_parameters(eight) == count_parameters(seven) == 76_579
    logits = []
    for model in (eight, seven):
        torch.manual_seed(1)  # the same positions sampled for BatchNorm's statistics
        logits.append(model(X))
    assert torch.equal(*logits)
    assert torch.equal(eight.eval()(X), seven.eval()(X))


def test_batchnorm_statistics_from_a_sample_of_positions_change_training_only():
    X, _ = build_names(NAMES, 8)
    torch.manual_seed(0)
    whole = build_model(small(), dtype=torch.float64)
    torch.manual_seed(0)
    sampled = build_model(small(bn_positions=6), dtype=torch.float64)
    assert torch.equal(whole.eval()(X), sampled.eval()(X))
    assert not torch.allclose(whole.train()(X), sampled.train()(X))


def test_parameter_count_of_the_full_block():
    c = small()  # gated, residual, skip; n_embd 5, H 8, three blocks
    conv = lambda fan_in: 2 * fan_in * 2 * c.n_hidden + 2 * 2 * c.n_hidden  # noqa: E731 (weight, BatchNorm)
    one_by_one = c.n_hidden * c.n_hidden + c.n_hidden
    expected = (27 * 5 + conv(5) + one_by_one  # embedding; block 1: conv, skip (no residual: width changes)
                + conv(8) + 2 * one_by_one  # block 2: conv, residual, skip
                + conv(8) + one_by_one  # block 3: its residual output would go nowhere, so only the skip
                + 8 * 27 + 27)  # head
    assert count_parameters(build_model(c)) == expected


@pytest.mark.parametrize("switches", SWITCHES, ids=lambda s: ",".join(k for k, v in s.items() if v) or "none")
def test_every_parameter_learns_and_outputs_are_per_position(switches):
    model = build_model(small(**switches))
    params = model.parameters()
    for p in params:
        p.requires_grad_(True)
    X, Y = build_names(NAMES, 8)
    logits = model(X)
    assert logits.shape == (*Y.shape, 27)
    logits.logsumexp(-1).sum().backward()
    assert [i for i, p in enumerate(params) if p.grad is None or not p.grad.abs().sum()] == []


def test_no_prediction_sees_the_future_or_the_padding():
    torch.manual_seed(0)
    model = build_model(small())
    X, _ = build_names(NAMES, 8)
    changed = X.clone()
    changed[:, 12:] = torch.randint(1, 27, changed[:, 12:].shape)  # later letters, and the padding
    model.eval()  # (in training, BatchNorm's batch statistics would carry a change everywhere)
    with torch.no_grad():  # output i sees inputs i to i + 7: a change from input 12 on reaches outputs 5 on
        a, b = model(X), model(changed)
    assert torch.equal(a[:, :5], b[:, :5])
    assert not torch.equal(a[:, 5:], b[:, 5:])


def test_batchnorm_counts_real_positions_only():
    """Padding a batch further (a longer name elsewhere) leaves every real prediction as it was."""
    torch.manual_seed(0)
    model = build_model(small())
    X, Y = build_names(NAMES, 8)
    padded = torch.cat([X, torch.zeros(X.shape[0], 3, dtype=X.dtype)], 1)  # 3 more columns of padding
    with torch.no_grad():
        a, b = model(X), model(padded)[:, :-3]
    real = Y != IGNORE
    assert (a[real] - b[real]).abs().max().item() < 1e-5


def test_forward_and_backward_on_the_meta_device():
    model = build_model(WaveNetConfig(dropout=0.1), device="meta")
    for p in model.parameters():
        p.requires_grad_(True)
    X = torch.zeros(4, 30, dtype=torch.long, device="meta")
    out = model(X)
    assert out.device.type == "meta" and out.shape == (4, 15, 27)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.device.type == "meta" for p in model.parameters())


def test_config_checks_its_context():
    assert WaveNetConfig(dilations=[1, 2], block_size=4).dilations == (1, 2)
    with pytest.raises(ValueError, match="block_size must be 4"):
        WaveNetConfig(dilations=(1, 2), block_size=8)
    with pytest.raises(ValueError, match="positive"):
        WaveNetConfig(dilations=(1, 0), block_size=2)


def test_every_course_entry_loads_and_builds():
    paths = [ENTRY, *sorted(ENTRIES.rglob("*.toml"))]
    assert len(paths) >= 10  # the stage's entry, stage 7, and the ablations
    for path in paths:
        config, recipe = load_entry(path)
        assert count_parameters(build_model(config, device="meta")) > 0
        assert recipe.steps > 0
    assert entry_path("stage7") == ENTRIES / "stage7.toml" and entry_path("entry") == ENTRY


@pytest.mark.parametrize("text, message", [
    ("[model]\nwidth = 3\n", "no setting width"),
    ("[model\n", "not a readable TOML entry"),
    ("[optimizer]\nlr = 1\n", "a \\[model\\] and a \\[train\\] table"),
    ("model = 3\n", "a \\[model\\] and a \\[train\\] table"),
    ("[model]\ndilations = ['a']\n", "dilations"),
    ("[train]\noptimizer = 'adam'\n", "optimizer must be one of"),
    ("[model]\ndropout = 1.5\n", "dropout is a probability"),
    ("[model]\ndilations = [1, 2]\nblock_size = 9\n", "block_size must be 4"),
])
def test_a_bad_entry_says_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(EntryError, match=message):
        load_entry(path)


def test_each_ablation_changes_one_part_of_the_base():
    """gates, residual, skip, width, context, dropout: one model setting; or the optimizer's settings."""
    base_model, base_train = (asdict(c) for c in load_entry(entry_path("ablations/base")))
    for path in sorted((ENTRIES / "ablations").glob("*.toml")):
        model, train_ = (asdict(c) for c in load_entry(path))
        changed = {k for k in model if model[k] != base_model[k]} - {"block_size"}  # it follows the dilations
        changed_train = {k for k in train_ if train_[k] != base_train[k]}
        if path.stem == "base":
            assert not changed and not changed_train
        elif path.stem == "adamw":
            assert not changed and changed_train == {"optimizer", "lr", "lr_final", "lr_schedule", "weight_decay"}
        else:
            assert len(changed) == 1 and not changed_train, (path.stem, changed, changed_train)


def test_an_unknown_entry_name_lists_the_known_ones():
    with pytest.raises(EntryError, match="stage7"):
        entry_path("no_such_entry")


def test_train_config_optimizer_and_lr_schedule():
    cosine = TrainConfig(steps=100, lr=1.0, lr_final=0.1, lr_schedule="cosine")
    assert cosine.lr_at(0) == 1.0 and cosine.lr_at(50) == pytest.approx(0.55) and cosine.lr_at(99) > 0.1
    assert TrainConfig(optimizer="adamw", weight_decay=0.1).describe() == \
        "200,000 x 32, AdamW lr 0.1 -> 0.01 at 150,000, wd 0.1"
    with pytest.raises(ValueError, match="weight_decay is AdamW's"):
        TrainConfig(weight_decay=0.1)
    with pytest.raises(ValueError, match="plain SGD only"):
        Runtime(engine="fast").check(TrainConfig(optimizer="adamw"))


def test_adamw_decays_weight_matrices_not_gains_shifts_or_biases():
    X, Y = build_names(NAMES, 8)
    models = []
    for wd in (0.0, 0.5):
        torch.manual_seed(0)
        model = build_model(small())
        make_step(model, TrainConfig(optimizer="adamw", lr=0.01, weight_decay=wd), "plain", X)(X, Y, 0.01)
        models.append(model)
    for a, b in zip(*(m.parameters() for m in models)):
        assert torch.equal(a, b) == (a.ndim < 2)


def test_adamw_training_is_deterministic_under_a_seed_and_learns():
    X, Y = build_names(NAMES * 4, 8)
    config = TrainConfig(steps=60, batch_size=8, optimizer="adamw", lr=0.01, lr_final=0.001, lr_schedule="cosine",
                         weight_decay=0.1)
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = build_model(small(dropout=0.1))
        runs.append(train(model, X, Y, config, whole_names=True, progress=False))
    assert torch.equal(runs[0], runs[1])
    assert runs[0][-10:].mean() < runs[0][:10].mean() - 0.5


def test_a_challenge_run_checkpoints_and_tabulates(tmp_path):
    entry = tmp_path / "tiny.toml"
    entry.write_text("[model]\nn_embd = 4\nn_hidden = 8\ndilations = [1, 2]\n\n"
                     "[train]\nsteps = 20\nbatch_size = 4\noptimizer = 'adamw'\nlr = 0.01\n")
    rows = [run_entry(entry, seed, runs_dir=tmp_path / "runs") for seed in (1, 2)]
    assert rows[0]["val"] != rows[1]["val"]  # two seeds, two runs
    model, ckpt = load_model(tmp_path / "runs" / "challenge" / "tiny" / "seed1" / "checkpoint.pt", device="cpu")
    assert ckpt["model_config"] == load_entry(entry)[0] and ckpt["stage"] == 8
    names = sample(model, ckpt["model_config"], n=5, seed=1)
    assert len(names) == 5 and all(set(name) <= set("abcdefghijklmnopqrstuvwxyz") for name in names)
    [summary] = summarize(rows)
    assert summary["seeds"] == 2 and summary["val"] == pytest.approx((rows[0]["val"] + rows[1]["val"]) / 2)
    table = challenge_table([summary])
    assert "tiny" in table and "AdamW lr 0.01" in table and f"{summary['val']:.4f}" in table


def test_an_entry_of_an_earlier_edition_reads_with_its_settings_renamed(tmp_path):
    """Earlier editions' entries said `schedule` and `calibrate_batchnorm`."""
    old = tmp_path / "old.toml"
    old.write_text("[train]\nschedule = 'cosine'\ncalibrate_batchnorm = true\n")
    _, recipe = load_entry(old)
    assert recipe.lr_schedule == "cosine" and recipe.recompute_batchnorm
