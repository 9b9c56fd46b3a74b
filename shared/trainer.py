"""One trainer for every stage: the lecture's loop, minus its per-step overheads.

The math is the lecture's: a minibatch drawn with torch.randint, cross-entropy, backward, and plain
SGD `p -= lr * p.grad`; the loop around the step is shared/loop.py's. The plain engine (`sgd_step`,
autograd) avoids a Python loop over parameters (one foreach update) and reading the loss back every
step (a `.item()` is a device sync; losses are read once per 1000). Runtime.engine picks a faster
step with the same math instead: shared/fast.py's hand-written backward, or that step compiled.
`run_seeds` trains K seeds of a model at once, as one batched model on the fast engine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from . import checkpoint, fast
from .config import ModelConfig, Runtime, TrainConfig
from .data import IGNORE, SPLITS, Splits
from .device import model_device, resolve_device
from .layers import Module, evaluating
from .loop import EVAL_BATCH, cross_entropy, loop, name_batches, optimizer_step, torch_optimizer, window_batches
from .loop import recompute_batchnorm  # noqa: F401  (the trainer's too: `from shared.trainer import ...`)
from .plots import save_loss_plot



def sgd_step(model: Module, params: list[Tensor], Xb: Tensor, Yb: Tensor, lr: float) -> Tensor:
    """One step of minibatch SGD; returns the batch's loss (a 0-dim tensor, not yet read back)."""
    # BEGIN EXERCISE 1.2
    logits = model(Xb)  # (B, vocab_size)
    loss = cross_entropy(logits, Yb)
    for p in params:
        p.grad = None
    loss.backward()
    with torch.no_grad():  # p -= lr * p.grad, for every parameter in one fused call
        torch._foreach_add_(params, [p.grad for p in params], alpha=-lr)
    return loss.detach()
    # END EXERCISE 1.2


def make_step(model: Module, config: TrainConfig, engine: str,
              example: Tensor) -> Callable[[Tensor, Tensor, float], Tensor]:
    """The step function for the engine: `step(xb, yb, lr) -> loss`, updating `model` in place."""
    Runtime(engine=engine).check(config)
    if engine == "plain":
        params = model.parameters()
        for p in params:
            p.requires_grad_(True)
        if config.optimizer == "adamw":  # stage 8's choice: torch's AdamW (loop.torch_optimizer)
            optimizer = torch_optimizer(params, "adamw", config.lr, config.weight_decay)
            return lambda xb, yb, lr: optimizer_step(model, optimizer, xb, yb, lr)
        return lambda xb, yb, lr: sgd_step(model, params, xb, yb, lr)
    step = fast.FastStep(model)
    return step if engine == "fast" else fast.compiled(step, example)


def train(model: Module, X: Tensor, Y: Tensor, config: TrainConfig, *, whole_names: bool, engine: str = "plain",
          progress: bool = True, desc: str = "train", timings: dict | None = None) -> Tensor:
    """Train `model` in place on (X, Y), windows or (`whole_names`) whole names; returns the loss
    of every step, shape (steps,).

    Batches come from torch's default CPU generator, so that a seed gives the same batches on
    every device: seed it (the stages do, before building the model) for a reproducible run.
    `timings`, if given, receives "first_step": the seconds of step 0, which include any compile.
    """
    device = model_device(model)
    model.train()
    step = make_step(model, config, engine, X[:config.batch_size])
    batch = (name_batches if whole_names else window_batches)(X, Y, config.batch_size, device)
    losses = loop(step, batch, config.steps, config.lr_at, (), device, progress, desc, timings)
    if config.recompute_batchnorm:
        recompute_batchnorm(model, X)
    return losses


def train_seeds(models: list[Module], generators: list[torch.Generator], X: Tensor, Y: Tensor,
                config: TrainConfig, engine: str = "fast", progress: bool = True, desc: str = "train",
                timings: dict | None = None) -> Tensor:
    """Train K models of one shape at once, as one batched model (shared/fast.py); returns the
    loss of every step, shape (K, steps). Model k draws its batches from generators[k], so each
    model sees the batches, and follows the losses, of its own separate run. Always the fast
    engine's math ("plain" runs as "fast"; "compiled" compiles the batched step)."""
    Runtime(engine=engine).check(config)
    device = model_device(models[0])
    for model in models:
        model.train()
    stack = fast.FastStep(models)
    n, b = X.shape[0], config.batch_size

    def batch():
        ix = torch.stack([torch.randint(0, n, (b,), generator=g) for g in generators]).to(device)
        return X[ix], Y[ix]  # (K, B, T), (K, B)

    example = X[:b].expand(len(models), *X[:b].shape)  # (K, B, T), drawn from no generator
    step = fast.compiled(stack, example) if engine == "compiled" else stack
    losses = loop(step, batch, config.steps, config.lr_at, (len(models),), device, progress, desc, timings)
    stack.unstack()
    if config.recompute_batchnorm:
        for model in models:
            recompute_batchnorm(model, X)
    return losses.T


@torch.no_grad()
def evaluate(model: Module, X: Tensor, Y: Tensor, batch_size: int = EVAL_BATCH) -> float:
    """Mean cross-entropy over (X, Y) in eval mode (BatchNorm uses its running statistics)."""
    count = int((Y != IGNORE).sum())  # targets: one per example, or per position of a name
    with evaluating(model):
        # BEGIN EXERCISE 1.3
        total = torch.zeros((), device=model_device(model), dtype=torch.float64)
        for i in range(0, X.shape[0], batch_size):  # in batches: the whole split may not fit a GPU
            logits = model(X[i:i + batch_size])
            total += cross_entropy(logits, Y[i:i + batch_size], reduction="sum").double()
        loss = (total / count).item()
        # END EXERCISE 1.3
    return loss


@dataclass
class Run:
    """What `run` leaves: the trained model, its metrics, the loss of every step, the time it took."""

    model: Module
    metrics: dict[str, float]  # {"train": ..., "val": ..., "test": ...}
    losses: Tensor  # (steps,)
    seconds: float  # training time only (evaluation excluded), the first step included
    first_step: float = 0.0  # seconds of step 0: the compile, on the compiled engine
    checkpoint: Path | None = None


def run(build_model: Callable[..., Module], model_config: ModelConfig, recipe: TrainConfig, splits: Splits,
        runtime: Runtime = Runtime(), out_dir: str | Path | None = None, name: str = "model",
        progress: bool = True, eval_splits: tuple[str, ...] = SPLITS, **checkpoint_extra) -> Run:
    """The whole recipe: seed, build, train, evaluate the splits, then save checkpoint and plot."""
    device = resolve_device(runtime.device)
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    torch.manual_seed(runtime.seed)
    model = build_model(model_config, device=device)
    X, Y = (t.to(device) for t in splits["train"])
    timings = {}
    losses, seconds = _timed(device, lambda: train(model, X, Y, recipe, whole_names=model_config.whole_names,
                                                   engine=runtime.engine, progress=progress, desc=name,
                                                   timings=timings))
    result = Run(model, _metrics(model, splits, eval_splits, device), losses, seconds,
                 first_step=timings.get("first_step", 0.0))
    if out_dir is not None:
        out_dir = Path(out_dir)
        result.checkpoint = checkpoint.save(out_dir / "checkpoint.pt", model, model_config, recipe, runtime,
                                            result.metrics, losses, seconds=seconds, first_step=result.first_step,
                                            **checkpoint_extra)
        save_loss_plot(losses, out_dir / "loss.png", title=f"{name}: training loss")
    return result


def run_seeds(build_model: Callable[..., Module], model_config: ModelConfig, recipe: TrainConfig, splits: Splits,
              seeds: list[int], device: str = "auto", engine: str = "fast", name: str = "model",
              progress: bool = True, eval_splits: tuple[str, ...] = SPLITS) -> list[Run]:
    """`run` once per seed in `seeds`, all trained at once as one batched model on the fast (or
    compiled) engine: run k's losses follow a separate run with that seed, to float tolerance.
    Each Run's `seconds` is the whole stack's training time. No checkpoints: save a Run's model yourself."""
    device = resolve_device(device)
    models, generators = [], []
    for seed in seeds:  # each model and its batch generator as its own run would have them
        torch.manual_seed(seed)
        models.append(build_model(model_config, device=device))
        generators.append(torch.Generator().set_state(torch.get_rng_state()))
    X, Y = (t.to(device) for t in splits["train"])
    timings = {}
    losses, seconds = _timed(device, lambda: train_seeds(models, generators, X, Y, recipe, engine, progress=progress,
                                                         desc=f"{name} x {len(seeds)} seeds", timings=timings))
    return [Run(model, _metrics(model, splits, eval_splits, device), loss, seconds,
                first_step=timings.get("first_step", 0.0)) for model, loss in zip(models, losses)]


def _timed(device: torch.device, work: Callable[[], Tensor]) -> tuple[Tensor, float]:
    """work()'s result and its wall time, with the device's queue drained (CUDA runs asynchronously)."""
    start = time.perf_counter()
    result = work()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def _metrics(model: Module, splits: Splits, eval_splits: tuple[str, ...], device) -> dict[str, float]:
    return {split: evaluate(model, *(t.to(device) for t in splits[split])) for split in eval_splits}
