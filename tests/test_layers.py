"""Each layer against its torch equivalent in float64: forward values and gradients."""

import pytest
import torch
import torch.nn.functional as F

from makemore_wavenet.shared.layers import (BatchNorm1d, CausalConv1d, Embedding, Flatten, FlattenConsecutive,
                                            Linear, Sequential, Tanh, sample_positions)

D = torch.float64


def grads(*tensors):
    return [t.grad.clone() for t in tensors]


def leaf(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=D).requires_grad_()


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 7), (3, 4, 7)])
def test_linear_matches_torch(bias, shape):
    layer = Linear(7, 3, bias=bias, dtype=D)
    for p in layer.parameters():
        p.requires_grad_()
    x = leaf(*shape)
    layer(x).pow(2).sum().backward()
    ours = grads(x, *layer.parameters())
    for t in [x, *layer.parameters()]:
        t.grad = None
    # torch.nn.Linear stores W as (out, in); ours is (in, out), the lecture's layout
    F.linear(x, layer.weight.T, layer.bias).pow(2).sum().backward()
    assert torch.allclose(layer.out, F.linear(x, layer.weight.T, layer.bias))
    for a, b in zip(ours, grads(x, *layer.parameters())):
        assert torch.allclose(a, b)


def test_linear_init_is_scaled_by_fan_in():
    torch.manual_seed(0)
    w = Linear(400, 300).weight
    assert w.shape == (400, 300)
    assert abs(w.std().item() - 400 ** -0.5) < 0.002  # randn / sqrt(fan_in)


def unbiased_to_biased(x, dims):
    """Factor that turns the lecture's normalization into torch's: sqrt(var_u + eps) / sqrt(var_b + eps)."""
    var_u = x.var(dims, keepdim=True)
    var_b = x.var(dims, keepdim=True, unbiased=False)
    return torch.sqrt(var_u + 1e-5) / torch.sqrt(var_b + 1e-5)


def test_batchnorm_2d_differs_from_torch_only_by_unbiased_variance():
    """Known difference: the lecture normalizes with the unbiased variance, torch.nn with the biased one.
    Scaled by that factor, outputs agree; the running statistics agree exactly (torch updates
    running_var with the unbiased variance too)."""
    x = leaf(16, 6)
    ours = BatchNorm1d(6, dtype=D)
    ref = torch.nn.BatchNorm1d(6, dtype=D)
    with torch.no_grad():
        ours.gamma.copy_(torch.linspace(0.5, 2, 6, dtype=D))
        ours.beta.copy_(torch.linspace(-1, 1, 6, dtype=D))
        ref.weight.copy_(ours.gamma)
        ref.bias.copy_(ours.beta)
    y_ours, y_ref = ours(x), ref(x)
    assert not torch.allclose(y_ours, y_ref)  # the difference is real ...
    factor = unbiased_to_biased(x.detach(), 0)
    assert torch.allclose((y_ours - ours.beta) * factor + ref.bias, y_ref)  # ... and it is exactly this
    assert torch.allclose(ours.running_mean.view(-1), ref.running_mean)
    assert torch.allclose(ours.running_var.view(-1), ref.running_var)
    assert ours.running_mean.shape == (1, 6)  # the lecture's keepdim shape


def test_batchnorm_gradients_match_torch_batch_norm():
    """With n examples, var_unbiased = var_biased * n / (n - 1), so the lecture's layer is exactly
    torch's training-mode batch_norm with eps * (n - 1) / n and gamma scaled by sqrt((n - 1) / n)."""
    n = 10
    x = leaf(n, 4)
    layer = BatchNorm1d(4, dtype=D)
    with torch.no_grad():
        layer.gamma.copy_(torch.tensor([0.5, 1.0, 1.5, 2.0], dtype=D))
    for p in layer.parameters():
        p.requires_grad_()
    w = leaf(n, 4, seed=1).detach()
    (layer(x) * w).sum().backward()
    ours = grads(x, layer.gamma, layer.beta)
    x.grad = layer.gamma.grad = layer.beta.grad = None
    c = ((n - 1) / n) ** 0.5
    ref = F.batch_norm(x, None, None, layer.gamma * c, layer.beta, training=True, eps=1e-5 * (n - 1) / n)
    assert torch.allclose(layer.out, ref)
    (ref * w).sum().backward()
    for a, b in zip(ours, grads(x, layer.gamma, layer.beta)):
        assert torch.allclose(a, b)


def test_batchnorm_eval_matches_torch_with_same_running_stats():
    ours, ref = BatchNorm1d(5, dtype=D), torch.nn.BatchNorm1d(5, dtype=D)
    for _ in range(3):
        batch = leaf(8, 5, seed=_).detach() * 3 + 1
        ours(batch)
        ref(batch)
    ours.eval()
    ref.eval()
    x = leaf(4, 5, seed=9).detach()
    assert torch.allclose(ours(x), ref(x))


def test_batchnorm_3d_fixed_reduces_over_batch_and_positions():
    x = leaf(6, 4, 5).detach()  # (B, T, C): ours has features last
    ours = BatchNorm1d(5, dtype=D)
    y = ours(x)
    factor = unbiased_to_biased(x, (0, 1))
    ref = torch.nn.BatchNorm1d(5, dtype=D)(x.transpose(1, 2)).transpose(1, 2)  # torch wants (B, C, T)
    assert torch.allclose(y * factor, ref)
    assert ours.running_mean.shape == (1, 1, 5)
    assert torch.allclose(ours.running_mean.view(-1), 0.1 * x.mean((0, 1)))


def test_batchnorm_3d_bug_keeps_statistics_per_position():
    x = leaf(6, 4, 5).detach()
    ours = BatchNorm1d(5, reduce_time=False, dtype=D)
    y = ours(x)
    assert ours.running_mean.shape == (1, 4, 5)
    # each position is normalized on its own: every (position, feature) column has mean 0
    assert torch.allclose(y.mean(0), torch.zeros(4, 5, dtype=D), atol=1e-12)
    fixed = BatchNorm1d(5, dtype=D)(x)
    assert not torch.allclose(fixed.mean(0), torch.zeros(4, 5, dtype=D), atol=1e-3)


def test_tanh_matches_torch():
    x = leaf(3, 7)
    Tanh()(x).sum().backward()
    g = x.grad.clone()
    x.grad = None
    torch.nn.Tanh()(x).sum().backward()
    assert torch.allclose(g, x.grad)


def test_embedding_matches_torch():
    layer = Embedding(27, 6, dtype=D)
    layer.weight.requires_grad_()
    ix = torch.tensor([[0, 3, 3], [26, 1, 0]])
    w = leaf(2, 3, 6, seed=2).detach()
    (layer(ix) * w).sum().backward()
    ours = layer.weight.grad.clone()
    layer.weight.grad = None
    (F.embedding(ix, layer.weight) * w).sum().backward()
    assert torch.equal(layer.out, F.embedding(ix, layer.weight))
    assert torch.allclose(ours, layer.weight.grad)


def test_flatten_matches_torch():
    x = leaf(4, 3, 5)
    assert torch.equal(Flatten()(x), torch.nn.Flatten()(x))


def test_flatten_consecutive_fuses_neighbours_within_each_example():
    x = leaf(3, 8, 2).detach()
    y = FlattenConsecutive(2)(x)
    # the lecture's explicit form: even positions beside odd positions
    assert torch.equal(y, torch.cat([x[:, ::2, :], x[:, 1::2, :]], dim=2))
    assert FlattenConsecutive(8)(x).shape == (3, 16)  # a middle dim of 1 is dropped
    assert torch.equal(FlattenConsecutive(8)(x), torch.nn.Flatten()(x))


def test_sequential_matches_torch_sequential():
    torch.manual_seed(0)
    ours = Sequential([Linear(4, 6, dtype=D), Tanh(), Linear(6, 3, dtype=D)])
    ref = torch.nn.Sequential(torch.nn.Linear(4, 6, dtype=D), torch.nn.Tanh(), torch.nn.Linear(6, 3, dtype=D))
    with torch.no_grad():
        for layer, mod in [(ours.layers[0], ref[0]), (ours.layers[2], ref[2])]:
            mod.weight.copy_(layer.weight.T)
            mod.bias.copy_(layer.bias)
    x = leaf(5, 4).detach()
    assert torch.allclose(ours(x), ref(x))
    assert len(ours.parameters()) == 4
    assert ours.out is ours.layers[-1].out


def test_train_and_eval_reach_every_layer():
    model = Sequential([Linear(2, 3), BatchNorm1d(3), Sequential([Tanh(), BatchNorm1d(3)])])
    model.eval()
    assert all(not m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_state_round_trip_restores_running_stats_of_new_shape():
    torch.manual_seed(0)
    a = Sequential([Linear(3, 4, bias=False), BatchNorm1d(4, reduce_time=False)])
    a(torch.randn(5, 2, 3))
    b = Sequential([Linear(3, 4, bias=False), BatchNorm1d(4, reduce_time=False)])
    b.load_state(a.state())
    assert set(a.state()) == {"0.weight", "1.gamma", "1.beta", "1.running_mean", "1.running_var"}
    for name, t in a.state().items():
        assert torch.equal(b.state()[name], t)
    with pytest.raises(ValueError, match="missing"):
        b.load_state({"0.weight": a.layers[0].weight})


@pytest.mark.parametrize("layer, x, match", [
    (Linear(3, 2), torch.randn(4, 5), "expects 3 input features"),
    (BatchNorm1d(3), torch.randn(4, 3, 2, 2), r"expects \(B, C\) or \(B, T, C\)"),
    (BatchNorm1d(3), torch.randn(4, 5), "C = 3"),
    (FlattenConsecutive(2), torch.randn(4, 3, 5), "T divisible by 2"),
    (FlattenConsecutive(2), torch.randn(4, 6), r"expects \(B, T, C\)"),
    (CausalConv1d(3, 2, dilation=2), torch.randn(4, 5, 4), r"expects \(B, T, 3\)"),
    (CausalConv1d(3, 2, dilation=2), torch.randn(4, 2, 3), "T > dilation 2"),
    (CausalConv1d(3, 2), torch.randn(4, 3), r"expects \(B, T, 3\)"),
])
def test_bad_input_is_a_clear_error(layer, x, match):
    with pytest.raises(ValueError, match=match):
        layer(x)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dilation", [1, 2, 3, 4])
def test_causal_conv_matches_torch_conv1d(bias, dilation):
    """Kernel 2, no padding: torch's conv1d on (B, C, T) with our weight's halves as its two taps."""
    layer = CausalConv1d(5, 3, dilation=dilation, bias=bias, dtype=D)
    for p in layer.parameters():
        p.requires_grad_()
    x = leaf(4, 9, 5)
    layer(x).pow(2).sum().backward()
    ours = grads(x, *layer.parameters())
    for t in [x, *layer.parameters()]:
        t.grad = None
    weight = layer.weight.view(2, 5, 3).permute(2, 1, 0)  # (2 taps * C_in, C_out) -> torch's (C_out, C_in, taps)
    theirs = F.conv1d(x.transpose(1, 2), weight, layer.bias, dilation=dilation).transpose(1, 2)
    theirs.pow(2).sum().backward()
    assert layer.out.shape == (4, 9 - dilation, 3)
    assert torch.allclose(layer.out, theirs)
    for a, b in zip(ours, grads(x, *layer.parameters())):
        assert torch.allclose(a, b)


def test_causal_conv_never_sees_the_future():
    layer = CausalConv1d(2, 3, dilation=2, dtype=D)
    x = leaf(1, 8, 2)
    later = x.detach().clone()
    later[:, 5:] += 1.0  # change positions 5, 6, 7
    changed = (layer(x) - layer(later)).abs().sum(-1)[0] > 0  # output t stands for input t + 2
    assert changed.tolist() == [False, False, False, True, True, True]


def test_causal_conv_is_flatten_consecutive_then_linear_at_every_other_position():
    """Stage 6's pair fusion is the dilation-1 convolution, read at positions 1, 3, 5, 7."""
    conv, x = CausalConv1d(4, 6, dtype=D), leaf(3, 8, 4)
    linear = Linear(8, 6, dtype=D)
    linear.weight, linear.bias = conv.weight, conv.bias
    assert torch.allclose(conv(x)[:, 0::2], linear(FlattenConsecutive(2)(x)))


def test_embedding_rejects_float_tokens():
    with pytest.raises(TypeError, match="integer token ids"):
        Embedding(27, 4)(torch.zeros(2, 3))


def test_every_tensor_is_created_on_the_requested_device():
    layers = [Linear(3, 4, device="meta"), BatchNorm1d(4, device="meta"), Embedding(27, 4, device="meta"),
              CausalConv1d(3, 4, device="meta")]
    for layer in layers:
        assert all(t.device.type == "meta" for t in layer.state().values())


def test_batchnorm_mask_counts_only_the_picked_positions():
    x = leaf(3, 5, 4)
    mask = torch.rand(3, 5, generator=torch.Generator().manual_seed(1)) < 0.6
    norm = BatchNorm1d(4, dtype=D)
    norm(x, mask=mask)
    picked = x.detach()[mask]  # (N, 4)
    assert torch.allclose(norm.running_mean.view(-1), 0.1 * picked.mean(0))
    assert torch.allclose(norm.running_var.view(-1), 0.9 + 0.1 * picked.var(0))
    full = BatchNorm1d(4, dtype=D)
    assert torch.allclose(norm(x, mask=torch.ones(3, 5, dtype=torch.bool)), full(x))  # all picked: no mask
    with pytest.raises(ValueError, match="reduce_time=True"):
        BatchNorm1d(4, reduce_time=False)(x, mask=mask)


def test_load_state_copies_so_models_do_not_share_tensors():
    a, b = Linear(3, 2, dtype=D), Linear(3, 2, dtype=D)
    b.load_state(a.state())
    b.weight.add_(1.0)
    assert not torch.equal(a.weight, b.weight)


def test_sample_positions_draws_k_of_the_true_ones():
    torch.manual_seed(0)
    mask = torch.rand(6, 9) < 0.6
    picked = sample_positions(mask, 10)
    assert picked.sum() == 10 and not (picked & ~mask).any()
    assert not torch.equal(picked, sample_positions(mask, 10))  # a new draw each call
    assert torch.equal(sample_positions(mask, 1000), mask)  # fewer than k: all of them
    assert sample_positions(mask.to("meta"), 10).device.type == "meta"


def test_batchnorm_takes_training_statistics_from_a_sample_of_positions():
    """positions=k: the statistics of k of the mask's positions, drawn as sample_positions draws
    them; eval mode (running statistics) is the same as without it."""
    torch.manual_seed(0)
    x, mask = torch.randn(4, 6, 3, dtype=D), torch.rand(4, 6) < 0.7
    sampled, whole = BatchNorm1d(3, positions=5, dtype=D), BatchNorm1d(3, dtype=D)
    torch.manual_seed(1)
    out = sampled(x, mask=mask)
    torch.manual_seed(1)
    picked = sample_positions(mask, 5)
    assert picked.sum() == 5
    assert torch.allclose(out, whole(x, mask=picked))
    assert torch.allclose(sampled.running_mean, whole.running_mean)
    assert torch.equal(sampled.eval()(x), whole.eval()(x))
    with pytest.raises(ValueError, match="positions"):
        BatchNorm1d(3, positions=-1)
