"""The fast engine: a hand-written backward that must give autograd's gradients, on every stage."""

import pytest
import torch

from makemore_wavenet.shared.config import Runtime, TrainConfig
from makemore_wavenet.shared.errors import ConfigError
from makemore_wavenet.shared.fast import FastStep, layer_list
from makemore_wavenet.shared.layers import BatchNorm1d, Linear, Module, Sequential
from makemore_wavenet.shared.trainer import run, run_seeds, sgd_step
from makemore_wavenet.stages import all_stages, get_stage, on_fast_engine


def twin_models(n, dtype=torch.float64, device=None):
    stage = get_stage(n)
    models = []
    for _ in range(2):
        torch.manual_seed(3)
        models.append(stage.build_model(stage.config, dtype=dtype, device=device))
    return models


FAST = [n for n, stage in all_stages().items() if on_fast_engine(stage)]


def test_the_fast_engine_trains_the_lectures_stages():
    assert FAST == [1, 2, 3, 4, 5, 6]  # stages 7 and 8 (convolutions) train on the plain engine


@pytest.mark.parametrize("n", FAST)
def test_fast_step_equals_autograd_step_in_float64(n):
    """Three SGD steps each way: same loss, same parameters, same running statistics."""
    plain, fast = twin_models(n)
    params = plain.parameters()
    for p in params:
        p.requires_grad_()
    step = FastStep(fast)
    g = torch.Generator().manual_seed(n)
    block = get_stage(n).config.block_size
    for _ in range(3):
        x, y = torch.randint(0, 27, (32, block), generator=g), torch.randint(0, 27, (32,), generator=g)
        a, b = sgd_step(plain, params, x, y, 0.1), step(x, y, 0.1)
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    for (name, t), (_, u) in zip(plain.state().items(), fast.state().items()):
        assert t.shape == u.shape, name
        assert torch.allclose(t, u, rtol=1e-10, atol=1e-12), name


def test_stage_4_bug_is_kept_on_the_fast_engine():
    _, fast = twin_models(4)
    FastStep(fast)(torch.randint(0, 27, (8, 8)), torch.randint(0, 27, (8,)), 0.1)
    norms = [m for m in fast.modules() if isinstance(m, BatchNorm1d)]
    assert norms[0].running_mean.shape == (1, 4, 68)


@pytest.mark.parametrize("n", [1, 6])
def test_fast_step_runs_on_the_meta_device(n):
    _, fast = twin_models(n, dtype=None, device="meta")
    block = get_stage(n).config.block_size
    loss = FastStep(fast)(torch.zeros(32, block, dtype=torch.long, device="meta"),
                          torch.zeros(32, dtype=torch.long, device="meta"), 0.1)
    assert loss.device.type == "meta"
    assert all(t.device.type == "meta" for t in fast.state().values())


def test_unknown_layers_are_refused_not_mistrained():
    class Double(Module):
        def forward(self, x):
            return 2 * x

    model = Sequential([Linear(3, 4), Double()])
    assert layer_list(model) is None
    with pytest.raises(ConfigError, match="plain engine"):
        FastStep(model)


def test_stage_1_and_2_agree_exactly_on_the_fast_engine(splits_by_block):
    runs = [run(get_stage(n).build_model, get_stage(n).config, TrainConfig(steps=300),
                splits_by_block(3), Runtime(device="cpu", engine="fast"), progress=False, eval_splits=("val",))
            for n in (1, 2)]
    assert torch.equal(runs[0].losses, runs[1].losses)


@pytest.mark.parametrize("n, engine", [(5, "fast"), (1, "compiled")])  # compiling stage 1 is the quickest
def test_engines_agree_in_float32(n, engine, splits_by_block):
    """The same math as the plain engine; float32 rounding differs a little over 300 steps."""
    stage = get_stage(n)
    splits = splits_by_block(stage.config.block_size)
    plain, other = (run(stage.build_model, stage.config, TrainConfig(steps=300), splits,
                        Runtime(device="cpu", engine=p), progress=False, eval_splits=("val",))
                    for p in ("plain", engine))
    assert torch.allclose(other.losses, plain.losses, atol=2e-3)
    assert abs(other.metrics["val"] - plain.metrics["val"]) < 2e-3
    if engine == "compiled":
        assert other.first_step > 0.1  # the compile, timed apart


@pytest.mark.parametrize("n, engine", [(1, "fast"), (5, "fast"), (1, "compiled")])
def test_a_stack_of_seeds_follows_each_seeds_own_run(n, engine, splits_by_block):
    """K seeds trained as one batched model: each seed's losses, val loss and state are its own run's.
    Stage 1 trains its bare embedding tensor C through an adapter, which the stack must reach too."""
    stage = get_stage(n)
    splits = splits_by_block(stage.config.block_size)
    config = TrainConfig(steps=200)
    stacked = run_seeds(stage.build_model, stage.config, config, splits, [5, 6, 7], device="cpu", engine=engine,
                        progress=False, eval_splits=("val",))
    for seed, mine in zip([5, 6, 7], stacked):
        alone = run(stage.build_model, stage.config, config, splits, Runtime(seed=seed, device="cpu", engine=engine),
                    progress=False, eval_splits=("val",))
        assert torch.allclose(mine.losses, alone.losses, atol=1e-5)
        assert abs(mine.metrics["val"] - alone.metrics["val"]) < 1e-5
        for (name, t), u in zip(mine.model.state().items(), alone.model.state().values()):
            assert torch.allclose(t, u, atol=1e-5), name
    assert not torch.allclose(stacked[0].losses, stacked[1].losses)  # the seeds did differ


def test_a_stack_is_a_batched_step_in_float64():
    """One step of a stack of 2 equals one step of each model alone, to float64 rounding."""
    models = [get_stage(6).build_model(get_stage(6).config, dtype=torch.float64) for _ in range(4)]
    alone, stack = models[:2], models[2:]
    for a, b in zip(alone, stack):
        b.load_state({name: t.clone() for name, t in a.state().items()})
    x, y = torch.randint(0, 27, (2, 32, 8)), torch.randint(0, 27, (2, 32))
    step = FastStep(stack)
    losses = step(x, y, 0.1)
    step.unstack()
    for k, model in enumerate(alone):
        assert torch.allclose(FastStep(model)(x[k], y[k], 0.1), losses[k], rtol=1e-12, atol=1e-12)
        for (name, t), u in zip(model.state().items(), stack[k].state().values()):
            assert torch.allclose(t, u, rtol=1e-10, atol=1e-12), name


def test_a_stack_refuses_models_of_different_shapes():
    with pytest.raises(ValueError, match="differ"):
        FastStep([get_stage(3).build_model(get_stage(3).config), get_stage(6).build_model(get_stage(6).config)])
