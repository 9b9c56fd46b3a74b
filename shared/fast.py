"""The fast path: one training step with a hand-written backward, for models of the lecture's layers.

Same math as the plain path (`trainer.sgd_step` through autograd): the same forward, the exact
gradients, SGD `p -= lr * grad`, the lecture's BatchNorm (unbiased variance, running statistics
with momentum 0.1). What changes is the cost: no autograd graph, fused kernels where torch has
them (baddbmm, addcmul, tanh_backward, embedding_dense_backward), BatchNorm statistics from column
sums, one foreach update for all parameters and one for all running statistics. Floating-point
order differs, so losses match the plain path closely, not bit for bit.

Many seeds at once: given K models of one shape (K seeds), the step stacks their parameters into
(K, ...) tensors and trains them as one batched model: every tensor carries a leading seed dim,
every matmul is a bmm. K seeds cost K times the arithmetic of one, but the per-op overhead of one.
One model is the case K = 1: its parameters are viewed as (1, ...) stacks, no copy.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from .errors import ConfigError
from .layers import BatchNorm1d, Embedding, Flatten, FlattenConsecutive, Linear, Module, Sequential, Tanh

SUPPORTED = (Embedding, Flatten, FlattenConsecutive, Linear, BatchNorm1d, Tanh)
PARAMETER_NAMES = {Linear: ("weight", "bias"), BatchNorm1d: ("gamma", "beta"), Embedding: ("weight",)}


def layer_list(model: Module) -> list[Module] | None:
    """The model as a flat list of supported layers, or None if the fast path cannot run it."""
    layers = model.fast_layers()
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
    """`step(xb, yb, lr) -> loss`: forward, backward and update of the model(s), in place.

    `FastStep(model)`: xb is (B, ...), yb (B,), the loss a 0-dim tensor.
    `FastStep([model_1, ..., model_K])`: xb is (K, B, ...), yb (K, B), the loss (K,), one per model.
    The models' parameters are copied into stacked (K, ...) tensors: call `unstack()` after
    training to copy the trained values back into each model (their running statistics are
    updated in place as they train).
    """

    def __init__(self, models: Module | Sequence[Module]):
        self.single = isinstance(models, Module)
        self.stacks = [layer_list(m) for m in ([models] if self.single else models)]
        if not self.stacks or any(layers is None for layers in self.stacks):
            name = type(models).__name__ if self.single else "these models"
            raise ConfigError(f"the fast engine does not know how to train {name}: train it on the plain engine "
                              "(--engine plain, Runtime(engine=\"plain\"))")
        self.layers = self.stacks[0]
        _check_same_shape(self.stacks)
        for layers in self.stacks:  # this step computes its own gradients: no autograd graph
            for p in (p for layer in layers for p in layer.parameters()):
                p.requires_grad_(False)
        self.weights = [self._stack(i) for i in range(len(self.layers))]  # per layer: name -> (K, ...)
        self.params = [w for group in self.weights for w in group.values()]
        self.norms = [i for i, layer in enumerate(self.layers) if isinstance(layer, BatchNorm1d)]
        momenta = {self.layers[i].momentum for i in self.norms}
        if len(momenta) > 1:
            raise ConfigError("the fast engine updates all running statistics at once: one BatchNorm momentum only")
        self.momentum = momenta.pop() if momenta else 0.0

    def _stack(self, i: int) -> dict[str, Tensor]:
        group = {}
        for name in PARAMETER_NAMES.get(type(self.layers[i]), ()):
            if getattr(self.layers[i], name) is None:
                continue  # a Linear without bias
            if len(self.stacks) == 1:
                group[name] = getattr(self.layers[i], name).unsqueeze(0)  # a view: updates reach the model
            else:
                group[name] = torch.stack([getattr(layers[i], name) for layers in self.stacks])
        return group

    @torch.no_grad()
    def unstack(self) -> None:
        """Copy each model's trained parameters from the stack into the model's own tensors (a stack
        of one model trains them in place already)."""
        if len(self.stacks) == 1:
            return
        for k, layers in enumerate(self.stacks):
            for layer, group in zip(layers, self.weights):
                for name, stacked in group.items():
                    getattr(layer, name).copy_(stacked[k])

    @torch.no_grad()
    def forward(self, xb: Tensor) -> tuple[Tensor, list, list]:
        """Logits (K, B, vocab_size), what backward needs, and the batch statistics of every BatchNorm."""
        caches, stats = [], []
        h = xb
        for layer, w in zip(self.layers, self.weights):
            h, cache = _FORWARD[type(layer)](layer, w, h, stats)
            caches.append(cache)
        return h, caches, stats

    def running_stats(self, stats: list) -> tuple[list[Tensor], list[Tensor]]:
        """Each model's running statistics and their batch values, paired for one foreach update.
        The first update gives the running statistics their batch shape, as in the plain path."""
        olds, news = [], []
        for i, (mean, var) in zip(self.norms, stats):
            for layers, *batch in zip(self.stacks, mean.unbind(0), var.unbind(0)):
                for name, new in zip(("running_mean", "running_var"), batch):
                    if getattr(layers[i], name).shape != new.shape:
                        setattr(layers[i], name, getattr(layers[i], name).expand(new.shape).clone())
                    olds.append(getattr(layers[i], name))
                    news.append(new)
        return olds, news

    def prepare(self, xb: Tensor) -> None:
        """Give the running statistics their batch shape before the step is compiled, so that
        nothing about the model changes shape inside the compiled graph."""
        xb = xb.unsqueeze(0) if self.single else xb
        self.running_stats(self.forward(xb[:, :2])[2])

    @torch.no_grad()
    def __call__(self, xb: Tensor, yb: Tensor, lr: float | Tensor) -> Tensor:
        if self.single:
            xb, yb = xb.unsqueeze(0), yb.unsqueeze(0)
        logits, caches, stats = self.forward(xb)  # (K, B, vocab_size)
        K, B = yb.shape
        logp = torch.log_softmax(logits, dim=-1)
        loss = -logp.gather(-1, yb.unsqueeze(-1)).view(K, B).mean(1)  # (K,): each model's mean over its batch
        g = logp.exp_().view(K * B, -1)  # dloss_k/dlogits = (softmax - onehot) / B
        g[torch.arange(K * B, device=g.device), yb.reshape(-1)] -= 1.0
        g = g.div_(B).view(logits.shape)
        grads: dict[int, Tensor] = {}
        for i in range(len(self.layers) - 1, -1, -1):
            g = _BACKWARD[type(self.layers[i])](self.layers[i], self.weights[i], g, caches[i], grads, i > 0)
        grads = [grads[id(p)] for p in self.params]
        if isinstance(lr, Tensor):  # a tensor lr: the compiled step does not recompile when it decays
            torch._foreach_sub_(self.params, torch._foreach_mul(grads, lr))
        else:
            torch._foreach_add_(self.params, grads, alpha=-lr)
        if stats:
            torch._foreach_lerp_(*self.running_stats(stats), self.momentum)
        return loss[0] if self.single else loss


def _check_same_shape(stacks: list[list[Module]]) -> None:
    first = stacks[0]
    for k, layers in enumerate(stacks[1:], start=1):
        same = len(layers) == len(first) and all(
            type(a) is type(b) and [t.shape for t in a.parameters()] == [t.shape for t in b.parameters()]
            for a, b in zip(first, layers))
        if not same:
            raise ValueError(f"models 0 and {k} differ in their layers or shapes: a stack trains copies of one model")


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


# --- forward: (layer, its stacked parameters, input (K, B, ...), batch statistics) -> (output, cache) ---

def _embedding_forward(layer, w, ix, stats):
    K, V = w["weight"].shape[:2]
    if K > 1:  # model k's rows are rows k * V ... k * V + V - 1 of one (K * V, C) table
        ix = ix + torch.arange(0, K * V, V, device=ix.device).view(K, *[1] * (ix.ndim - 1))
    return w["weight"].view(K * V, -1)[ix], ix  # (K, B, T) -> (K, B, T, C)


def _flatten_forward(layer, w, x, stats):
    return x.view(*x.shape[:2], -1), x.shape  # (K, B, T, C) -> (K, B, T * C)


def _flatten_consecutive_forward(layer, w, x, stats):
    K, B, T, C = x.shape
    out = x.view(K, B, T // layer.n, C * layer.n)
    return (out.squeeze(2) if out.shape[2] == 1 else out), x.shape


def _linear_forward(layer, w, x, stats):
    x2 = x.reshape(x.shape[0], -1, x.shape[-1])  # (K, N, fan_in): positions are extra batch rows
    bias = w.get("bias")
    out = torch.bmm(x2, w["weight"]) if bias is None else torch.baddbmm(bias.unsqueeze(1), x2, w["weight"])
    return out.view(*x.shape[:-1], -1), x2


def _batchnorm_forward(layer, w, x, stats):
    # Work on a (K, rows, columns) view, rows reduced: torch's sums are fast, its var() is not.
    K, C = x.shape[0], x.shape[-1]
    per_feature = x.ndim == 3 or layer.reduce_time  # else the stage-4 bug: statistics per position
    x2 = x.reshape(K, -1, C) if per_feature else x.reshape(K, x.shape[1], -1)
    n = x2.shape[1]
    mean = x2.sum(1, keepdim=True).div_(n)  # (K, 1, columns)
    d = x2 - mean
    var = d.square().sum(1, keepdim=True).div_(n - 1)  # the lecture's unbiased variance, two-pass
    rstd = (var + layer.eps).rsqrt_()
    xhat = d.mul_(rstd)  # (K, n, columns), d is not needed again
    gamma, beta = _columns(w["gamma"], x2.shape[2]), _columns(w["beta"], x2.shape[2])
    out = torch.addcmul(beta, xhat, gamma).view(x.shape)
    stat_shape = (K, *[1] * (x.ndim - 2), C) if per_feature else (K, 1, *x.shape[2:])
    stats.append((mean.view(stat_shape), var.view(stat_shape)))
    return out, (xhat, rstd, n, gamma)


def _columns(v: Tensor, k: int) -> Tensor:
    """Per-feature values (K, C) as (K, 1, k): laid over k = T * C columns when statistics are per position."""
    return (v if v.shape[1] == k else v.repeat(1, k // v.shape[1])).unsqueeze(1)


def _tanh_forward(layer, w, x, stats):
    # tanh(x) = 2 sigmoid(2x) - 1: the same function, and torch's sigmoid kernel is twice as fast on CPU
    out = torch.sigmoid(x * 2).mul_(2).sub_(1)
    return out, out


# --- backward: (layer, its stacked parameters, dL/dout, cache, parameter grads, need dL/dinput?) -> dL/dinput ---

def _embedding_backward(layer, w, g, ix, grads, need_input):
    K, V = w["weight"].shape[:2]
    table = torch.ops.aten.embedding_dense_backward(g, ix, K * V, -1, False)  # (K * V, C)
    grads[id(w["weight"])] = table.view(w["weight"].shape)


def _flatten_backward(layer, w, g, shape, grads, need_input):
    return g.view(shape)


def _linear_backward(layer, w, g, x2, grads, need_input):
    g2 = g.reshape(x2.shape[0], -1, g.shape[-1])  # (K, N, fan_out)
    grads[id(w["weight"])] = x2.transpose(1, 2) @ g2
    if "bias" in w:
        grads[id(w["bias"])] = g2.sum(1)
    if need_input:
        return (g2 @ w["weight"].transpose(1, 2)).view(*g.shape[:-1], -1)


def _batchnorm_backward(layer, w, g, cache, grads, need_input):
    xhat, rstd, n, gamma = cache
    g2 = g.reshape(xhat.shape)  # (K, n, columns)
    sum_gx = (g2 * xhat).sum(1, keepdim=True)  # (K, 1, columns)
    sum_g = g2.sum(1, keepdim=True)
    K, C = w["gamma"].shape
    grads[id(w["gamma"])] = sum_gx.view(K, -1, C).sum(1)  # over positions too, when stats are per position
    grads[id(w["beta"])] = sum_g.view(K, -1, C).sum(1)
    if need_input:
        # xhat = (x - mean) / sqrt(var + eps) with var = sum((x - mean)^2) / (n - 1), so
        # dx = gamma * rstd * (g - sum(g) / n - xhat * sum(g * xhat) / (n - 1))
        dx = torch.addcmul(g2 - sum_g / n, xhat, sum_gx / (1 - n))
        return dx.mul_(rstd * gamma).view(g.shape)


def _tanh_backward(layer, w, g, out, grads, need_input):
    return torch.ops.aten.tanh_backward(g, out)


_FORWARD = {Embedding: _embedding_forward, Flatten: _flatten_forward, FlattenConsecutive: _flatten_consecutive_forward,
            Linear: _linear_forward, BatchNorm1d: _batchnorm_forward, Tanh: _tanh_forward}
_BACKWARD = {Embedding: _embedding_backward, Flatten: _flatten_backward, FlattenConsecutive: _flatten_backward,
             Linear: _linear_backward, BatchNorm1d: _batchnorm_backward, Tanh: _tanh_backward}
