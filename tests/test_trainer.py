"""The shared trainer, evaluation, sampling, checkpoints and the loss plot."""

from dataclasses import replace

import pytest
import torch

from makemore_wavenet.shared import checkpoint
from makemore_wavenet.shared.config import Runtime, TrainConfig
from makemore_wavenet.shared.data import build_names
from makemore_wavenet.shared.device import resolve_device
from makemore_wavenet.shared.plots import save_loss_plot, smoothed_log_loss
from makemore_wavenet.shared.sampling import sample
from makemore_wavenet.shared.layers import BatchNorm1d, Dropout, Linear, Sequential, Tanh
from makemore_wavenet.shared.trainer import recompute_batchnorm, evaluate, run, train
from makemore_wavenet.stages import get_stage, load_model


def test_lecture_schedule_is_the_default():
    c = TrainConfig()
    assert (c.steps, c.batch_size, Runtime().seed) == (200_000, 32, 42)
    assert c.lr_at(0) == c.lr_at(149_999) == 0.1
    assert c.lr_at(150_000) == c.lr_at(199_999) == 0.01
    assert TrainConfig(steps=1000).lr_at(750) == 0.01  # the decay scales with the run


@pytest.mark.parametrize("kwargs, match", [({"steps": 0}, "positive"), ({"batch_size": -1}, "positive"),
                                           ({"decay_at": 1.5}, "fraction")])
def test_bad_train_config_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_missing_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_recomputed_batchnorm_holds_the_statistics_of_the_whole_split():
    """In one part, each BatchNorm gets the mean and variance of its input over all of X, with the
    BatchNorms before it calibrated too and dropout off; in parts, nearly the same."""
    torch.manual_seed(0)
    D = torch.float64
    model = Sequential([Linear(5, 8, dtype=D), BatchNorm1d(8, dtype=D), Tanh(), Dropout(0.5),
                        Linear(8, 4, dtype=D), BatchNorm1d(4, dtype=D)])
    X = torch.randn(3000, 5, dtype=D) * 3 + 1
    recompute_batchnorm(model, X, batch_size=len(X))
    assert model.training  # as it was
    first, second = model.layers[1], model.layers[5]
    assert first.momentum == second.momentum == 0.1  # as they were
    model.eval()
    h = model.layers[0](X)
    assert torch.allclose(first.running_mean, h.mean(0, keepdim=True))
    assert torch.allclose(first.running_var, h.var(0, keepdim=True))
    h = model.layers[4](model.layers[2](first(h)))  # eval mode: calibrated statistics, no dropout
    assert torch.allclose(second.running_mean, h.mean(0, keepdim=True))
    assert torch.allclose(second.running_var, h.var(0, keepdim=True))
    whole = model(X)  # (N, 4), unit scale
    recompute_batchnorm(model, X, batch_size=1000)  # three parts
    assert not torch.equal(model.eval()(X), whole) and torch.allclose(model(X), whole, atol=1e-2)


def test_calibration_counts_every_position_even_where_training_samples_them():
    """A stage-7 model with bn_positions: calibration takes the statistics of all real positions
    (the same as the model without sampling), and sampling is back on afterwards."""
    seven = get_stage(7)
    X, _ = build_names(["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia"], 8)
    models = []
    for positions in (0, 4):
        torch.manual_seed(0)
        model = seven.build_model(replace(seven.config, bn_positions=positions), dtype=torch.float64)
        recompute_batchnorm(model, X, batch_size=len(X))
        models.append(model)
    whole, sampled = ([m for m in model.modules() if isinstance(m, BatchNorm1d)] for model in models)
    for a, b in zip(whole, sampled):
        assert torch.equal(a.running_mean, b.running_mean) and torch.equal(a.running_var, b.running_var)
        assert b.positions == 4


def test_a_recipe_that_recomputes_batchnorm_ends_with_the_whole_splits_statistics(splits_by_block):
    stage = get_stage(6)
    X, Y = splits_by_block(8)["train"]
    config = TrainConfig(steps=50, recompute_batchnorm=True)
    assert config.describe().endswith(", BatchNorm recomputed")
    torch.manual_seed(0)
    model = stage.build_model(stage.config)
    train(model, X, Y, config, whole_names=False, progress=False)
    model.eval()
    h = model.layers[2](model.layers[1](model.layers[0](X)))  # the first BatchNorm's input: (N, 4, 128)
    assert torch.allclose(model.layers[3].running_mean, h.mean((0, 1), keepdim=True), atol=1e-5)


@pytest.fixture(scope="module")
def trained(splits_by_block, tmp_path_factory):
    """Stage 2, 300 steps, with its checkpoint and plot."""
    stage = get_stage(2)
    out = tmp_path_factory.mktemp("run")
    result = run(stage.build_model, stage.config, TrainConfig(steps=300), splits_by_block(3), Runtime(device="cpu"),
                 out_dir=out, progress=False, stage=2)
    return result, splits_by_block(3)


def test_run_writes_checkpoint_and_plot(trained):
    result, splits = trained
    assert result.losses.shape == (300,) and torch.isfinite(result.losses).all()
    assert set(result.metrics) == {"train", "val", "test"} and result.metrics["val"] < 3.0
    ckpt = checkpoint.load(result.checkpoint)
    assert ckpt["metrics"] == result.metrics and ckpt["stage"] == 2
    assert ckpt["recipe"] == TrainConfig(steps=300) and ckpt["runtime"] == Runtime(device="cpu")
    assert torch.equal(ckpt["losses"], result.losses)
    png = result.checkpoint.parent / "loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_loaded_checkpoint_gives_the_same_losses(trained):
    result, splits = trained
    model, _ = load_model(result.checkpoint, device="cpu")
    assert not model.training
    assert evaluate(model, *splits["val"]) == result.metrics["val"]


def test_evaluate_restores_training_mode(trained):
    model = trained[0].model
    model.train()
    evaluate(model, *trained[1]["val"])
    assert model.training
    model.eval()
    evaluate(model, *trained[1]["val"])
    assert not model.training


def test_evaluate_is_independent_of_its_batch_size(trained):
    model, splits = trained[0].model, trained[1]
    assert abs(evaluate(model, *splits["val"], batch_size=1000) - evaluate(model, *splits["val"])) < 1e-6


def test_sampling_is_seeded_and_makes_names(trained):
    model = trained[0].model.train()
    config = get_stage(2).config
    names = sample(model, config, n=30, seed=1)
    assert names == sample(model, config, n=30, seed=1)
    assert names != sample(model, config, n=30, seed=2)
    assert len(names) == 30 and all(set(name) <= set("abcdefghijklmnopqrstuvwxyz") for name in names)
    assert sum(len(name) for name in names) / 30 > 3  # names, not single letters
    assert model.training  # sampling restores the mode it found


def test_corrupt_or_foreign_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="not a readable checkpoint"):
        checkpoint.load(bad)
    torch.save({"format": 1, "stage": 99, "state": {}, "model_config": {"block_size": 3, "n_embd": 1,
                "n_hidden": 1}, "train_config": {}}, bad)
    with pytest.raises(checkpoint.CheckpointError, match="no known stage"):
        load_model(bad)
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint at"):
        checkpoint.load(tmp_path / "missing.pt")


def test_a_format_1_checkpoint_loads_with_its_recipe_and_runtime_apart(trained, tmp_path):
    """Format 1 kept seed, device and the engine (then "path") in one train_config."""
    result, splits = trained
    old = torch.load(result.checkpoint, weights_only=True)
    recipe, runtime = old.pop("recipe"), old.pop("runtime")
    old.update(format=1, train_config={**recipe, "seed": 7, "device": runtime["device"], "path": "fast"})
    torch.save(old, tmp_path / "old.pt")
    model, ckpt = load_model(tmp_path / "old.pt", device="cpu")
    assert ckpt["recipe"] == TrainConfig(steps=300) and ckpt["runtime"] == Runtime(seed=7, device="cpu", engine="fast")
    assert evaluate(model, *splits["val"]) == result.metrics["val"]


def test_loss_plot_means():
    losses = torch.full((200_000,), 10.0)
    losses[100_000:] = 100.0
    assert smoothed_log_loss(losses).tolist() == [1.0] * 100 + [2.0] * 100  # 1000-step means of log10
    assert len(smoothed_log_loss(torch.ones(500))) == 100  # short runs: windows of 1/100 the run


def test_loss_plot_of_a_tiny_run(tmp_path):
    assert save_loss_plot(torch.rand(7) + 1, tmp_path / "tiny.png").is_file()


def test_importing_the_trainer_leaves_matplotlib_alone():
    """A notebook that imports the trainer keeps its own backend (inline plots): no switch, no pyplot."""
    import subprocess
    import sys

    code = ("import sys, matplotlib; matplotlib.use('svg'); import makemore_wavenet.shared.trainer; "
            "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["svg", "False"]


def test_a_runtime_sets_the_threads_it_names_and_leaves_them_otherwise(splits_by_block):
    stage, before = get_stage(3), torch.get_num_threads()
    try:
        one = run(stage.build_model, stage.config, TrainConfig(steps=50), splits_by_block(8),
                  Runtime(device="cpu", threads=1), progress=False, eval_splits=("val",))
        assert torch.get_num_threads() == 1
        torch.set_num_threads(before)
        run(stage.build_model, stage.config, TrainConfig(steps=50), splits_by_block(8), Runtime(device="cpu"),
            progress=False, eval_splits=("val",))
        assert torch.get_num_threads() == before and one.losses.shape == (50,)
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="threads must be"):
        Runtime(threads=-1)


@pytest.mark.parametrize("stage, recipe", [
    (1, TrainConfig(steps=300, decay_at=0.5)),
    (7, TrainConfig(steps=60, recompute_batchnorm=True)),  # whole names, BatchNorm recomputed
    (1, TrainConfig(steps=100, optimizer="adamw", lr=3e-3, lr_final=3e-4, weight_decay=0.1, lr_schedule="cosine")),
])
def test_the_graders_loop_trains_exactly_as_the_trainer(stage, recipe, splits_of_stage):
    """The grader trains a submission's model with shared/loop.py's train_with_torch (torch's optimizer,
    learning rates as numbers): the same losses, weights and BatchNorm statistics as the trainer's
    plain engine, to the bit."""
    from makemore_wavenet.shared.loop import train_with_torch

    s = get_stage(stage)
    X, Y = splits_of_stage(stage)["train"]
    runs = []
    for way in ("trainer", "loop"):
        torch.manual_seed(42)
        model = s.build_model(s.config)
        if way == "trainer":
            losses = train(model, X, Y, recipe, whole_names=s.config.whole_names, progress=False)
        else:
            lrs = torch.tensor([recipe.lr_at(i) for i in range(recipe.steps)], dtype=torch.float64)
            losses = train_with_torch(model, X, Y, lrs=lrs, batch_size=recipe.batch_size, optimizer=recipe.optimizer,
                                      weight_decay=recipe.weight_decay, whole_names=s.config.whole_names,
                                      recompute=recipe.recompute_batchnorm).losses
        norms = [t for m in model.modules() if isinstance(m, BatchNorm1d) for t in (m.running_mean, m.running_var)]
        runs.append([losses, *model.parameters(), *norms])
    assert all(torch.equal(a, b) for a, b in zip(*runs))
