"""The fast path: a hand-written backward that must give autograd's gradients, on every stage."""

import pytest
import torch

from makemore_wavenet.shared.config import TrainConfig
from makemore_wavenet.shared.fast import FastStep, layer_list
from makemore_wavenet.shared.layers import BatchNorm1d, Linear, Module, Sequential
from makemore_wavenet.shared.trainer import run, sgd_step
from makemore_wavenet.stages import STAGES, get_stage


def twin_models(n, dtype=torch.float64, device=None):
    stage = get_stage(n)
    models = []
    for _ in range(2):
        torch.manual_seed(3)
        models.append(stage.build_model(stage.CONFIG, dtype=dtype, device=device))
    return models


@pytest.mark.parametrize("n", list(STAGES))
def test_fast_step_equals_autograd_step_in_float64(n):
    """Three SGD steps each way: same loss, same parameters, same running statistics."""
    plain, fast = twin_models(n)
    params = plain.parameters()
    for p in params:
        p.requires_grad_()
    step = FastStep(fast)
    g = torch.Generator().manual_seed(n)
    block = get_stage(n).CONFIG.block_size
    for _ in range(3):
        x, y = torch.randint(0, 27, (32, block), generator=g), torch.randint(0, 27, (32,), generator=g)
        a, b = sgd_step(plain, params, x, y, 0.1), step(x, y, 0.1)
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    for (name, t), (_, u) in zip(plain.state().items(), fast.state().items()):
        assert t.shape == u.shape, name
        assert torch.allclose(t, u, rtol=1e-10, atol=1e-12), name


def test_stage_4_bug_is_kept_on_the_fast_path():
    _, fast = twin_models(4)
    FastStep(fast)(torch.randint(0, 27, (8, 8)), torch.randint(0, 27, (8,)), 0.1)
    norms = [m for m in fast.modules() if isinstance(m, BatchNorm1d)]
    assert norms[0].running_mean.shape == (1, 4, 68)


@pytest.mark.parametrize("n", [1, 6])
def test_fast_step_runs_on_the_meta_device(n):
    _, fast = twin_models(n, dtype=None, device="meta")
    block = get_stage(n).CONFIG.block_size
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
    with pytest.raises(TypeError, match="plain path"):
        FastStep(model)


def test_stage_1_and_2_agree_exactly_on_the_fast_path(splits_by_block):
    runs = [run(get_stage(n).build_model, get_stage(n).CONFIG, TrainConfig(steps=300, device="cpu", path="fast"),
                splits_by_block(3), progress=False, eval_splits=("val",)) for n in (1, 2)]
    assert torch.equal(runs[0].losses, runs[1].losses)


@pytest.mark.parametrize("n, path", [(5, "fast"), (1, "compiled")])  # compiling stage 1 is the quickest
def test_paths_agree_in_float32(n, path, splits_by_block):
    """The same math as the plain path; float32 rounding differs a little over 300 steps."""
    stage = get_stage(n)
    plain, other = (run(stage.build_model, stage.CONFIG, TrainConfig(steps=300, device="cpu", path=p),
                        splits_by_block(stage.CONFIG.block_size), progress=False, eval_splits=("val",))
                    for p in ("plain", path))
    assert torch.allclose(other.losses, plain.losses, atol=2e-3)
    assert abs(other.metrics["val"] - plain.metrics["val"]) < 2e-3
    if path == "compiled":
        assert other.first_step > 0.1  # the compile, timed apart
