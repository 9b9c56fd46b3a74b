"""The fast path: one training step with a hand-written backward, for models of the lecture's layers.

Same math as the plain path (`trainer.sgd_step` through autograd): the same forward, the exact
gradients, SGD `p -= lr * grad`, the lecture's BatchNorm (unbiased variance, running statistics
with momentum 0.1). What changes is the cost: no autograd graph, fused kernels where torch has
them (addmm, addcmul, tanh_backward, embedding_dense_backward), BatchNorm statistics from column
sums on a 2-D view, one foreach update for all parameters and one for all running statistics. Floating-point order differs, so losses match
the plain path closely, not bit for bit.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .layers import BatchNorm1d, Embedding, Flatten, FlattenConsecutive, Linear, Module, Sequential, Tanh

SUPPORTED = (Embedding, Flatten, FlattenConsecutive, Linear, BatchNorm1d, Tanh)


def layer_list(model: Module) -> list[Module] | None:
    """The model as a flat list of supported layers, or None if the fast path cannot run it."""
    layers = model.fast_layers() if hasattr(model, "fast_layers") else (
        model.layers if isinstance(model, Sequential) else None)
    if layers is None:
        return None
    flat = []
    for layer in layers:
        if isinstance(layer, Sequential):
            inner = layer_list(layer)
            if inner is None:
                return None
            flat += inner
        elif type(layer) in SUPPORTED:
            flat.append(layer)
        else:
            return None
    return flat


class FastStep:
    """`step(xb, yb, lr) -> loss`: forward, backward and update of `model`, in place."""

    def __init__(self, model: Module):
        layers = layer_list(model)
        if layers is None:
            raise TypeError(f"the fast path does not know how to train {type(model).__name__}; "
                            f"use the plain path (TrainConfig(path=\"plain\"))")
        self.layers = layers
        self.params = [p for layer in layers for p in layer.parameters()]
        momenta = {layer.momentum for layer in layers if isinstance(layer, BatchNorm1d)}
        if len(momenta) > 1:
            raise TypeError("the fast path updates all running statistics at once: one BatchNorm momentum only")
        self.momentum = momenta.pop() if momenta else 0.0

    @torch.no_grad()
    def forward(self, xb: Tensor) -> tuple[Tensor, list, list]:
        """Logits, what backward needs, and the running-statistics updates (not yet applied)."""
        caches, stats = [], []
        h = xb
        for layer in self.layers:
            h, cache = _FORWARD[type(layer)](layer, h, stats)
            caches.append(cache)
        return h, caches, stats

    def prepare(self, xb: Tensor) -> None:
        """Give the running statistics their batch shape, as the plain path's first step does, so
        that nothing about the model changes shape once the step is compiled."""
        self.forward(xb[:2])

    @torch.no_grad()
    def __call__(self, xb: Tensor, yb: Tensor, lr: float | Tensor) -> Tensor:
        logits, caches, stats = self.forward(xb)
        logp = torch.log_softmax(logits, dim=-1)  # (B, vocab_size)
        loss = F.nll_loss(logp, yb)
        g = logp.exp_()  # dloss/dlogits = (softmax - onehot) / B
        g[torch.arange(len(yb), device=g.device), yb] -= 1.0
        g.div_(len(yb))
        grads: dict[int, Tensor] = {}
        for i in range(len(self.layers) - 1, -1, -1):
            g = _BACKWARD[type(self.layers[i])](self.layers[i], g, caches[i], grads, i > 0)
        grads = [grads[id(p)] for p in self.params]
        if isinstance(lr, Tensor):  # a tensor lr: the compiled step does not recompile when it decays
            torch._foreach_sub_(self.params, torch._foreach_mul(grads, lr))
        else:
            torch._foreach_add_(self.params, grads, alpha=-lr)
        if stats:
            torch._foreach_lerp_([s for s, _ in stats], [new for _, new in stats], self.momentum)
        return loss


def compiled(step: FastStep, xb: Tensor) -> Callable[[Tensor, Tensor, float], Tensor]:
    """The whole step as one torch.compile graph: fused kernels, no per-op dispatch. The learning
    rate goes in as a tensor, so one graph serves the whole schedule; evaluation does not use this
    graph, so its batch shapes cannot cause a recompile."""
    step.prepare(xb)
    # on CUDA, "reduce-overhead" replays the step as a CUDA graph: no per-kernel launch cost (untested here)
    mode = "reduce-overhead" if xb.device.type == "cuda" else None
    graph = torch.compile(step.__call__, dynamic=False, mode=mode)
    lrs: dict[float, Tensor] = {}

    def run(xb: Tensor, yb: Tensor, lr: float) -> Tensor:
        if lr not in lrs:
            lrs[lr] = torch.tensor(lr, device=xb.device)
        return graph(xb, yb, lrs[lr])

    return run


# --- forward: (layer, input, running-stat updates) -> (output, what backward needs) ---

def _embedding_forward(layer, ix, stats):
    return layer.weight[ix], ix  # (B, T) -> (B, T, C)


def _flatten_forward(layer, x, stats):
    return x.view(x.shape[0], -1), x.shape


def _flatten_consecutive_forward(layer, x, stats):
    B, T, C = x.shape
    out = x.view(B, T // layer.n, C * layer.n)
    return (out.squeeze(1) if out.shape[1] == 1 else out), x.shape


def _linear_forward(layer, x, stats):
    x2 = x.reshape(-1, x.shape[-1])  # (N, fan_in): positions are extra batch rows
    out = x2 @ layer.weight if layer.bias is None else torch.addmm(layer.bias, x2, layer.weight)
    return out.view(*x.shape[:-1], -1), x2


def _batchnorm_forward(layer, x, stats):
    # Work on a 2-D view (rows reduced, columns kept): torch's column sums are fast, its var() is not.
    over_time = x.ndim == 3 and layer.reduce_time
    x2 = x.reshape(-1, x.shape[-1]) if over_time or x.ndim == 2 else x.reshape(x.shape[0], -1)
    n = x2.shape[0]
    mean = x2.sum(0, keepdim=True).div_(n)  # (1, K)
    d = x2 - mean
    var = d.square().sum(0, keepdim=True).div_(n - 1)  # the lecture's unbiased variance, two-pass
    rstd = (var + layer.eps).rsqrt_()
    xhat = d.mul_(rstd)  # (n, K), d is not needed again
    gamma, beta = _columns(layer.gamma, x2.shape[1]), _columns(layer.beta, x2.shape[1])
    out = torch.addcmul(beta, xhat, gamma).view(x.shape)
    stat_shape = (1,) * (x.ndim - 1) + (x.shape[-1],) if over_time or x.ndim == 2 else (1, *x.shape[1:])
    for name, new in (("running_mean", mean), ("running_var", var)):
        old = getattr(layer, name)
        if old.shape != stat_shape:  # the first update gives the stats their batch shape, as in the plain path
            setattr(layer, name, old.expand(stat_shape).clone())
        stats.append((getattr(layer, name), new.view(stat_shape)))
    return out, (xhat, rstd, n, gamma)


def _columns(v: Tensor, k: int) -> Tensor:
    """A per-feature vector (C,) laid over K = T * C columns when statistics are per position."""
    return v if v.shape[0] == k else v.repeat(k // v.shape[0])


def _tanh_forward(layer, x, stats):
    # tanh(x) = 2 sigmoid(2x) - 1: the same function, and torch's sigmoid kernel is twice as fast on CPU
    out = torch.sigmoid(x * 2).mul_(2).sub_(1)
    return out, out


# --- backward: (layer, dL/dout, cache, parameter grads, need dL/dinput?) -> dL/dinput ---

def _embedding_backward(layer, g, ix, grads, need_input):
    grads[id(layer.weight)] = torch.ops.aten.embedding_dense_backward(g, ix, layer.weight.shape[0], -1, False)


def _flatten_backward(layer, g, shape, grads, need_input):
    return g.view(shape)


def _linear_backward(layer, g, x2, grads, need_input):
    g2 = g.reshape(-1, g.shape[-1])
    grads[id(layer.weight)] = x2.t() @ g2
    if layer.bias is not None:
        grads[id(layer.bias)] = g2.sum(0)
    if need_input:
        return (g2 @ layer.weight.t()).view(*g.shape[:-1], -1)


def _batchnorm_backward(layer, g, cache, grads, need_input):
    xhat, rstd, n, gamma = cache
    g2 = g.reshape(xhat.shape)  # (n, K)
    sum_gx = (g2 * xhat).sum(0, keepdim=True)  # (1, K)
    sum_g = g2.sum(0, keepdim=True)
    C = layer.gamma.shape[0]
    grads[id(layer.gamma)] = sum_gx.view(-1, C).sum(0)  # over positions too, when stats are per position
    grads[id(layer.beta)] = sum_g.view(-1, C).sum(0)
    if need_input:
        # xhat = (x - mean) / sqrt(var + eps) with var = sum((x - mean)^2) / (n - 1), so
        # dx = gamma * rstd * (g - sum(g) / n - xhat * sum(g * xhat) / (n - 1))
        dx = torch.addcmul(g2 - sum_g / n, xhat, sum_gx / (1 - n))
        return dx.mul_(rstd * gamma).view(g.shape)


def _tanh_backward(layer, g, out, grads, need_input):
    return torch.ops.aten.tanh_backward(g, out)


_FORWARD = {Embedding: _embedding_forward, Flatten: _flatten_forward, FlattenConsecutive: _flatten_consecutive_forward,
            Linear: _linear_forward, BatchNorm1d: _batchnorm_forward, Tanh: _tanh_forward}
_BACKWARD = {Embedding: _embedding_backward, Flatten: _flatten_backward, FlattenConsecutive: _flatten_backward,
             Linear: _linear_backward, BatchNorm1d: _batchnorm_backward, Tanh: _tanh_backward}
