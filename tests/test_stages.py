"""The stages: sizes, shapes, devices, and the training facts the lecture relies on.

Stage 7 reads whole names, not windows: its own shape and equivalence tests are in test_stage7.py."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from makemore_wavenet.shared.layers import BatchNorm1d
from makemore_wavenet.shared.trainer import run
from makemore_wavenet.shared.config import Runtime
from makemore_wavenet.stages import all_stages, count_parameters, get_stage, plan

EXPECTED_PARAMS = {1: 12_097, 2: 12_097, 3: 22_097, 4: 22_397, 5: 22_397, 6: 76_579, 7: 76_579}
ALL = list(all_stages())
WINDOWS = [n for n in ALL if not get_stage(n).config.whole_names]  # one prediction per example


def build(n, **kw):
    torch.manual_seed(42)
    stage = get_stage(n)
    return stage.build_model(stage.config, **kw)


def short_run(n, splits_of_stage, steps=200, seed=42):
    """`steps` of the stage's recipe; no BatchNorm recomputation over the whole train split at the end
    (test_trainer's: three of them took most of stage 8's time here)."""
    stage = get_stage(n)
    config = replace(stage.recipe, steps=steps, recompute_batchnorm=False)
    return run(stage.build_model, stage.config, config, splits_of_stage(n), Runtime(seed=seed, device="cpu"),
               progress=False, eval_splits=("val",))


@pytest.mark.parametrize("n", EXPECTED_PARAMS)
def test_parameter_counts(n):
    """The lecture's models (stage 7 is stage 6's); stage 8's size is its entry's (test_stage8)."""
    assert count_parameters(build(n)) == EXPECTED_PARAMS[n] == get_stage(n).lecture.params


@pytest.mark.parametrize("n", WINDOWS)
@pytest.mark.parametrize("batch", [1, 4, 32])
def test_shapes_through_every_stage(n, batch):
    model = build(n)
    block = get_stage(n).config.block_size
    x = torch.randint(0, 27, (batch, block))
    if batch == 1:  # BatchNorm has no batch statistics for one example: only eval mode works
        with pytest.raises(ValueError, match="more than one value per feature"):
            model(x)
        model.eval()
    assert model(x).shape == (batch, 27)
    if n >= 4:  # the hierarchy: (B, 8) -> (B, 8, E) -> (B, 4, 2E) -> (B, 4, H) -> (B, 2, H) -> (B, H)
        c = get_stage(n).config
        shapes = [tuple(layer.out.shape) for layer in model.layers]
        assert shapes[:3] == [(batch, 8, c.n_embd), (batch, 4, 2 * c.n_embd), (batch, 4, c.n_hidden)]
        assert shapes[5:7] == [(batch, 2, 2 * c.n_hidden), (batch, 2, c.n_hidden)]
        assert shapes[9:11] == [(batch, 2 * c.n_hidden), (batch, c.n_hidden)]


@pytest.mark.parametrize("n", WINDOWS)
def test_forward_and_backward_on_meta_device_leave_nothing_on_cpu(n):
    """GPU-capable without a GPU: every tensor the model makes lives on the device it was built for."""
    model = build(n, device="meta")
    block = get_stage(n).config.block_size
    x = torch.randint(0, 27, (32, block), device="meta")
    y = torch.randint(0, 27, (32,), device="meta")
    params = model.parameters()
    for p in params:
        p.requires_grad_()
    F.cross_entropy(model(x), y).backward()
    tensors = [*model.state().values(), *(p.grad for p in params), *(m.out for m in model.modules())]
    assert tensors and all(t.device.type == "meta" for t in tensors)
    model.eval()
    assert model(x).device.type == "meta"


def test_init_is_the_same_on_every_device():
    cpu, meta = build(6), build(6, device="meta")
    assert [t.shape for t in cpu.state().values()] == [t.shape for t in meta.state().values()]
    assert torch.equal(build(6).layers[0].weight, cpu.layers[0].weight)


def test_last_layer_starts_less_confident():
    for n in ALL:
        model = build(n)
        last = [m for m in model.modules() if hasattr(m, "weight")][-1].weight  # the output layer's
        assert last.std().item() < 0.2 * last.shape[0] ** -0.5  # scaled by 0.1 after randn / sqrt(fan_in)


def test_stage_2_reproduces_stage_1_exactly(splits_of_stage):
    """Same math in new containers: the same seed gives bit-identical losses, step by step."""
    one, two = short_run(1, splits_of_stage, steps=300), short_run(2, splits_of_stage, steps=300)
    assert torch.equal(one.losses, two.losses)
    assert one.metrics == two.metrics


@pytest.mark.parametrize("n", ALL)
def test_same_seed_same_loss_after_200_steps(n, splits_of_stage):
    a, b = short_run(n, splits_of_stage), short_run(n, splits_of_stage)
    assert torch.equal(a.losses, b.losses)
    assert a.metrics == b.metrics
    assert a.losses[-50:].mean() < a.losses[:10].mean() - 0.3  # it learns
    c = short_run(n, splits_of_stage, seed=7)
    assert not torch.equal(a.losses, c.losses)


@pytest.mark.parametrize("n, first_running_mean", [(4, (1, 4, 68)), (5, (1, 1, 68)), (6, (1, 1, 128))])
def test_batchnorm_running_mean_shape_after_training(n, first_running_mean, splits_of_stage):
    model = short_run(n, splits_of_stage, steps=20).model
    norms = [m for m in model.modules() if isinstance(m, BatchNorm1d)]
    assert tuple(norms[0].running_mean.shape) == first_running_mean
    assert tuple(norms[-1].running_mean.shape) == (1, first_running_mean[-1])  # top of the hierarchy is 2-D


@pytest.mark.parametrize("n", ALL)
def test_every_stage_has_a_lesson(n):
    text = get_stage(n).lesson
    assert text.startswith(f"# Stage {n}") and "shape" in text.lower() and len(text) > 400


def test_reproduce_trains_each_stage_on_an_engine_it_can_take():
    from makemore_wavenet.stages.reproduce import stage_runtime

    compiled = Runtime(engine="compiled")
    assert stage_runtime(get_stage(6), compiled, jobs=2) == Runtime(engine="compiled", device="cpu")
    for n in (7, 8):  # convolutions: the plain engine
        assert stage_runtime(get_stage(n), compiled, jobs=1) == Runtime()


def test_a_plan_is_the_stages_recipe_quick_full_or_an_entrys_with_the_options_given(tmp_path):
    assert plan(6).recipe == get_stage(6).recipe and plan(6).model == get_stage(6).config
    assert plan(7, "quick").recipe == replace(get_stage(7).recipe, steps=get_stage(7).recipe.steps // 40)
    assert plan(3, options={"steps": 10, "lr": 0.5}).recipe == replace(get_stage(3).recipe, steps=10, lr=0.5)
    entry = tmp_path / "tiny.toml"
    entry.write_text("[model]\nn_hidden = 8\ndilations = [1, 2]\n\n[train]\nsteps = 20\n")
    tiny = plan(8, "challenge", entry=entry)
    assert (tiny.model.n_hidden, tiny.model.block_size, tiny.recipe.steps) == (8, 4, 20)
    with pytest.raises(ValueError, match="entry file"):
        plan(8, "challenge")
    with pytest.raises(ValueError, match="trains no entries"):
        plan(6, entry=entry)


def test_parallel_processes_share_the_cores_as_threads(monkeypatch):
    from makemore_wavenet.stages import parallel

    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 8)
    assert [parallel.threads_per_process(p) for p in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    with pytest.raises(ValueError, match="at least 1"):
        parallel.threads_per_process(0)


def test_in_processes_runs_every_job_with_its_share_of_threads():
    from makemore_wavenet.stages.parallel import in_processes, threads_per_process

    rows = in_processes(_threads_seen, [(i,) for i in range(3)], 2, "jobs", "job", done=str, progress=False)
    assert sorted(r["job"] for r in rows) == [0, 1, 2]
    assert {r["threads"] for r in rows} == {threads_per_process(2)}


def _threads_seen(job: int) -> dict:  # module level: spawned processes import it by name
    return {"job": job, "threads": torch.get_num_threads()}
