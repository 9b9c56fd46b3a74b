"""The layers of the lecture, written from scratch with its API.

Every layer is a callable object with `parameters()`, a `training` flag, and the last output kept
in `.out` (the lecture plots activation statistics from it). Unlike the lecture, each layer is
built for a device and a dtype, and every tensor it creates lives there.

Initial values are drawn from torch's default CPU generator and then moved to the device, so a
seed gives the same model on every device (CUDA's generator would draw other numbers).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor

from .errors import ConfigError


def randn(*shape: int, device=None, dtype=None) -> Tensor:
    """Drawn on the CPU and moved, so that a seed gives the same numbers on every device; on `meta`
    (sizes only) nothing is drawn, so a model of any size costs no memory there."""
    if device is not None and torch.device(device).type == "meta":
        return torch.empty(shape, device="meta", dtype=dtype)
    return torch.randn(shape, dtype=dtype).to(device)


class Module:
    """What every layer shares: the mode flag, parameters, and a state to save and load."""

    training = True
    state_names: tuple[str, ...] = ()  # attributes that make up the layer's state

    def __call__(self, x: Tensor, **kwargs) -> Tensor:
        self.out = self.forward(x, **kwargs)
        return self.out

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def parameters(self) -> list[Tensor]:
        return []

    def children(self) -> list[Module]:
        return []

    def modules(self):
        yield self
        for child in self.children():
            yield from child.modules()

    def train(self, mode: bool = True) -> Module:
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def fast_layers(self) -> list[Module] | None:
        """The model as a list of layers the trainer's fast engine can compute (shared/fast.py),
        or None: it cannot."""
        return None

    def state(self) -> dict[str, Tensor]:
        """Every tensor that defines the model (parameters and running statistics), by name."""
        own = {name: getattr(self, name) for name in self.state_names}
        for i, child in enumerate(self.children()):
            own.update({f"{i}.{name}": t for name, t in child.state().items()})
        return {name: t for name, t in own.items() if t is not None}

    def load_state(self, state: dict[str, Tensor]) -> None:
        """Set the tensors that `state()` names; running statistics may change shape."""
        expected = set(self.state())
        if set(state) != expected:
            missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
            raise ValueError(f"state does not fit this model: missing {missing}, unexpected {extra}")
        self._assign(state)

    def _assign(self, state: dict[str, Tensor]) -> None:
        for name in self.state_names:
            if name in state:
                old = getattr(self, name)
                # a copy: two models loaded from one state must not share (and train) one tensor
                value = state[name].detach().to(old.device, old.dtype, copy=True)
                setattr(self, name, value.requires_grad_(old.requires_grad))
        for i, child in enumerate(self.children()):
            prefix = f"{i}."
            child._assign({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


class Linear(Module):
    """y = x @ W + b, with W of shape (fan_in, fan_out) drawn as randn / sqrt(fan_in)."""

    state_names = ("weight", "bias")

    def __init__(self, fan_in: int, fan_out: int, bias: bool = True, device=None, dtype=None):
        self.weight = randn(fan_in, fan_out, device=device, dtype=dtype) / fan_in**0.5  # kaiming-like
        self.bias = torch.zeros(fan_out, device=device, dtype=dtype) if bias else None

    def forward(self, x: Tensor) -> Tensor:  # (..., fan_in) -> (..., fan_out)
        if x.shape[-1] != self.weight.shape[0]:
            raise ValueError(f"Linear expects {self.weight.shape[0]} input features, got shape {tuple(x.shape)}")
        out = x @ self.weight
        if self.bias is not None:
            out = out + self.bias
        return out

    def parameters(self) -> list[Tensor]:
        return [self.weight] + ([] if self.bias is None else [self.bias])


class BatchNorm1d(Module):
    """Batch normalization with the lecture's math.

    Differences from torch.nn.BatchNorm1d, on purpose:
    - training mode normalizes with `var()`, the *unbiased* variance (torch uses the biased one);
    - features are in the last dim, so 3-D input is (B, T, C), not torch's (B, C, T);
    - running statistics take the shape of the batch statistics: (1, C) for 2-D input.

    `reduce_time` picks the dims a 3-D input is reduced over. True (the fix, stage 5) reduces over
    (0, 1), batch and positions, and keeps running stats of shape (1, 1, C). False reproduces the
    lecture's stage-4 bug: it reduces over dim 0 only, so each position gets its own statistics,
    of shape (1, T, C).

    `mask` (B, T), for 3-D input reduced over positions, picks the positions whose values count in
    the batch statistics (stage 7: the windows of a name, not the padding after it). With
    `positions` k > 0, training takes the statistics from k of the mask's positions drawn at random:
    a batch of whole names then carries the batch noise a batch of k windows does (stage 7's LESSON).
    """

    state_names = ("gamma", "beta", "running_mean", "running_var")

    def __init__(self, dim: int, eps: float = 1e-5, momentum: float = 0.1, reduce_time: bool = True,
                 positions: int = 0, device=None, dtype=None):
        if positions < 0:
            raise ValueError(f"BatchNorm1d samples `positions` of a mask: 0 (all) or a positive count, got {positions}")
        self.eps, self.momentum, self.reduce_time, self.positions = eps, momentum, reduce_time, positions
        self.gamma = torch.ones(dim, device=device, dtype=dtype)  # trained with backprop
        self.beta = torch.zeros(dim, device=device, dtype=dtype)
        self.running_mean = torch.zeros(dim, device=device, dtype=dtype)  # trained with a running update
        self.running_var = torch.ones(dim, device=device, dtype=dtype)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if x.ndim not in (2, 3) or x.shape[-1] != self.gamma.shape[0]:
            raise ValueError(f"BatchNorm1d({self.gamma.shape[0]}) expects (B, C) or (B, T, C) input "
                             f"with C = {self.gamma.shape[0]}, got shape {tuple(x.shape)}")
        if self.training:
            over_time = x.ndim == 3 and self.reduce_time
            dims = 0  # 2-D input, or 3-D with the stage-4 bug: reduce over the batch only
            if over_time:
                # BEGIN EXERCISE 5.1
                dims = (0, 1)  # batch and positions
                # END EXERCISE 5.1
            if x.shape[0] * (x.shape[1] if over_time else 1) < 2:  # values behind each statistic
                raise ConfigError(f"BatchNorm1d needs more than one value per feature in training mode (the "
                                  f"variance of one number is undefined); got shape {tuple(x.shape)}. Use a "
                                  f"larger batch, or call model.eval() to use the running statistics.")
            if mask is None:
                xmean = x.mean(dims, keepdim=True)  # batch mean
                xvar = x.var(dims, keepdim=True)  # batch variance (unbiased, as in the lecture)
            else:
                xmean, xvar = self._masked_statistics(x, mask, over_time)
        else:
            xmean, xvar = self.running_mean, self.running_var
        xhat = (x - xmean) / torch.sqrt(xvar + self.eps)  # normalize to unit variance
        out = self.gamma * xhat + self.beta
        if self.training:
            with torch.no_grad():
                self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * xmean
                self.running_var = (1 - self.momentum) * self.running_var + self.momentum * xvar
        return out

    def _masked_statistics(self, x: Tensor, mask: Tensor, over_time: bool) -> tuple[Tensor, Tensor]:
        if not over_time or mask.shape != x.shape[:2]:
            raise ValueError(f"a mask picks positions of 3-D input reduced over positions: expected a mask of "
                             f"shape {tuple(x.shape[:2])} and reduce_time=True, got {tuple(mask.shape)}")
        if self.positions:
            mask = sample_positions(mask, self.positions)
        # weights, not x[mask]: no data-dependent shape, so no device sync (and it runs on `meta`)
        w = mask.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        n = w.sum((0, 1), keepdim=True)  # values behind each statistic
        xmean = (x * w).sum((0, 1), keepdim=True) / n
        xvar = ((x - xmean).square() * w).sum((0, 1), keepdim=True) / (n - 1)  # unbiased, as var() is
        return xmean, xvar

    def parameters(self) -> list[Tensor]:
        return [self.gamma, self.beta]


def sample_positions(mask: Tensor, k: int) -> Tensor:
    """k of `mask`'s True positions, drawn at random (all of them if it has fewer), as a mask of
    the same shape. Random scores and a top-k: no data-dependent shape, so no device sync."""
    scores = torch.rand(mask.shape, device=mask.device).masked_fill(~mask, -1.0)
    kth = scores.flatten().topk(min(k, mask.numel())).values[-1]  # the k-th highest score
    return mask & (scores >= kth)


class CausalConv1d(Module):
    """A causal convolution of kernel 2: out[t] = [x[t - dilation], x[t]] @ W + b, at every position t.

    (B, T, fan_in) -> (B, T - dilation, fan_out). It is FlattenConsecutive(2) + Linear applied at
    every position instead of every other one: the weight is the Linear's, (2 * fan_in, fan_out),
    its first fan_in rows for the earlier position, so a stage-6 Linear loads as it is. There is no
    padding ("valid"): output t stands for input position t + dilation, the latest one it sees, and
    no output sees the future. Dilations 1, 2, 4 stacked see 8 positions: stage 6's window.
    """

    state_names = ("weight", "bias")

    def __init__(self, fan_in: int, fan_out: int, dilation: int = 1, bias: bool = True, device=None, dtype=None):
        if dilation < 1:
            raise ValueError(f"CausalConv1d needs dilation >= 1, got {dilation}")
        self.dilation = dilation
        self.weight = randn(2 * fan_in, fan_out, device=device, dtype=dtype) / (2 * fan_in) ** 0.5
        self.bias = torch.zeros(fan_out, device=device, dtype=dtype) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        d = self.dilation
        if x.ndim != 3 or 2 * x.shape[-1] != self.weight.shape[0] or x.shape[1] <= d:
            raise ValueError(f"CausalConv1d expects (B, T, {self.weight.shape[0] // 2}) input with T > dilation "
                             f"{d}, got shape {tuple(x.shape)}")
        # BEGIN EXERCISE 7.1
        pairs = torch.cat([x[:, :-d], x[:, d:]], dim=-1)  # (B, T - d, 2C): each position with the one d back
        out = pairs @ self.weight  # "convolution is a for loop": one matmul serves every position
        # END EXERCISE 7.1
        if self.bias is not None:
            out = out + self.bias
        return out

    def parameters(self) -> list[Tensor]:
        return [self.weight] + ([] if self.bias is None else [self.bias])


class Tanh(Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x)


class GatedActivation(Module):
    """The WaveNet paper's gated unit: (..., 2C) -> (..., C), tanh(filter) * sigmoid(gate), where
    the first C features are the filter, W_f x, and the last C the gate, W_g x (one matmul made both)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] % 2:
            raise ValueError(f"GatedActivation splits its input's last dim in two halves, got shape {tuple(x.shape)}")
        # BEGIN EXERCISE 8.1
        filter, gate = x.chunk(2, dim=-1)  # (..., C) each
        return torch.tanh(filter) * torch.sigmoid(gate)  # the gate, in (0, 1), decides how much passes
        # END EXERCISE 8.1


class Dropout(Module):
    """In training, zero each value with probability p and scale the rest by 1 / (1 - p), so the
    expected value is unchanged; in eval mode, the identity. The mask is drawn on the input's device."""

    def __init__(self, p: float):
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"Dropout needs 0 <= p < 1, got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * (torch.rand_like(x) >= self.p) / (1 - self.p)


class Embedding(Module):
    """A lookup table: integer tokens (B, T) -> vectors (B, T, C)."""

    state_names = ("weight",)

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None):
        self.weight = randn(num_embeddings, embedding_dim, device=device, dtype=dtype)

    def forward(self, ix: Tensor) -> Tensor:
        if ix.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"Embedding expects integer token ids, got dtype {ix.dtype}")
        # BEGIN EXERCISE 2.1
        return self.weight[ix]  # (B, T) -> (B, T, C)
        # END EXERCISE 2.1

    def parameters(self) -> list[Tensor]:
        return [self.weight]


class Flatten(Module):
    """(B, T, C) -> (B, T * C): concatenate the embeddings of a context."""

    def forward(self, x: Tensor) -> Tensor:
        # BEGIN EXERCISE 2.2
        return x.view(x.shape[0], -1)
        # END EXERCISE 2.2


class FlattenConsecutive(Module):
    """(B, T, C) -> (B, T // n, C * n): concatenate n consecutive positions, within each example.

    The lecture drops the middle dim when it becomes 1, so the top of the hierarchy is (B, C * n).
    """

    def __init__(self, n: int):
        if n < 1:
            raise ValueError(f"FlattenConsecutive needs n >= 1, got {n}")
        self.n = n

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[1] % self.n:
            raise ValueError(f"FlattenConsecutive({self.n}) expects (B, T, C) input with T divisible by "
                             f"{self.n}, got shape {tuple(x.shape)}")
        # BEGIN EXERCISE 4.1
        B, T, C = x.shape
        x = x.view(B, T // self.n, C * self.n)
        if x.shape[1] == 1:
            x = x.squeeze(1)
        return x
        # END EXERCISE 4.1


class Sequential(Module):
    """Layers called one after another."""

    def __init__(self, layers: list[Module]):
        self.layers = list(layers)

    def forward(self, x: Tensor) -> Tensor:
        # BEGIN EXERCISE 2.3
        for layer in self.layers:
            x = layer(x)
        return x
        # END EXERCISE 2.3

    def children(self) -> list[Module]:
        return self.layers

    def fast_layers(self) -> list[Module]:
        return self.layers

    def parameters(self) -> list[Tensor]:
        # BEGIN EXERCISE 2.3
        return [p for layer in self.layers for p in layer.parameters()]
        # END EXERCISE 2.3


@torch.no_grad()
def less_confident(head: Linear, factor: float = 0.1) -> None:
    """Scale the last layer's weights down, so that the first predictions are close to uniform
    (the lecture's `layers[-1].weight *= 0.1`): the first losses are near -log(1/27), not far above."""
    head.weight *= factor


@contextmanager
def evaluating(model):
    """The model in eval mode inside the block, and in the mode it had after it."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
