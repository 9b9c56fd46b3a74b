"""The training loop, apart from any exercise: minibatches, the calls of a step function with the
learning rate of each step, the loss log, and BatchNorm's statistics recomputed at the end.

It imports nothing of the project (torch and tqdm only), so that the grader can load this one file
of the instructor's edition on its own and train a submission's model with it (`train_with_torch`),
without the rest of shared/, which holds the exercises' solutions. shared/trainer.py builds the
lessons' training on it.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

LOG_EVERY = 1000  # steps between reads of the loss (progress bar, loss log)
EVAL_BATCH = 8192  # examples a forward pass takes in evaluation: a whole split may not fit a GPU
IGNORE = -100  # the target of a padding position (whole names are padded to the longest): cross-entropy skips it


def window_batches(X: Tensor, Y: Tensor, batch_size: int, device) -> Callable[[], tuple[Tensor, Tensor]]:
    """Batches of windows, drawn with torch's default CPU generator: a seed gives the same batches
    on every device."""
    def batch():
        ix = torch.randint(0, X.shape[0], (batch_size,)).to(device)
        return X[ix], Y[ix]

    return batch


def name_batches(X: Tensor, Y: Tensor, batch_size: int, device) -> Callable[[], tuple[Tensor, Tensor]]:
    """Batches of whole names (X (N, window + L), Y (N, L + 1)), drawn uniformly like windows, and
    cut to the longest name in the batch: the padding columns no name of the batch reaches go."""
    lengths = (Y != IGNORE).sum(1).cpu()  # predictions per name: its length + 1
    window = X.shape[1] - Y.shape[1]  # X's extra columns: the first prediction's context

    def batch():
        ix = torch.randint(0, X.shape[0], (batch_size,))
        n = int(lengths[ix].max())
        ix = ix.to(device)
        return X[ix, :n + window], Y[ix, :n]

    return batch


def loop(step: Callable, batch: Callable, steps: int, lr_at: Callable[[int], float], shape: tuple = (),
         device=None, progress: bool = True, desc: str = "train", timings: dict | None = None) -> Tensor:
    """`steps` calls of step(*batch(), lr_at(i)); returns every step's loss, read back once per LOG_EVERY.
    `timings`, if given, receives "first_step": the seconds of step 0, which include any compile."""
    losses = torch.empty(steps, *shape, device=device)
    pending: list[Tensor] = []
    with tqdm(total=steps, desc=desc, disable=not progress, unit="step", smoothing=0.1) as bar:
        for i in range(steps):
            xb, yb = batch()
            if i == 0:
                start = time.perf_counter()
            loss = step(xb, yb, lr_at(i))
            if i == 0 and timings is not None:
                timings["first_step"] = time.perf_counter() - start
            pending.append(loss)
            if len(pending) == LOG_EVERY or i == steps - 1:
                chunk = torch.stack(pending)
                losses[i + 1 - len(pending): i + 1] = chunk
                bar.set_postfix(loss=f"{chunk.mean().item():.4f}", lr=lr_at(i), refresh=False)
                bar.update(len(pending))
                pending.clear()
    return losses


def cross_entropy(logits: Tensor, Y: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy of logits (..., vocab_size) against targets (...): one target per example
    (logits (B, vocab_size)), or one per position of a name (logits (B, T, vocab_size), stage 7
    on), where padding targets (IGNORE) count for nothing."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), Y.reshape(-1), ignore_index=IGNORE,
                           reduction=reduction)


def torch_optimizer(params: list[Tensor], optimizer: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """torch's SGD (the lecture's p -= lr * p.grad), or AdamW decaying the weight matrices and
    embeddings, not BatchNorm's gains and shifts or biases (as nanoGPT does); foreach: one fused
    update for all parameters."""
    if optimizer == "adamw":
        groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, foreach=True)
    return torch.optim.SGD(params, lr=lr, foreach=True)


def optimizer_step(model, optimizer: torch.optim.Optimizer, Xb: Tensor, Yb: Tensor, lr: float) -> Tensor:
    """One step of a torch optimizer at learning rate `lr`; returns the batch's loss, detached."""
    loss = cross_entropy(model(Xb), Yb)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    return loss.detach()


@torch.no_grad()
@torch.no_grad()  # statistics only: no graph (a part's activations for backward would take a gigabyte at stage 8)
def recompute_batchnorm(model, X: Tensor, batch_size: int = 1024) -> None:
    """Set each BatchNorm's running statistics to its statistics over all of X: the lecture's
    "calibrate the batch norm at the end of training" (part 3). Running averages follow the last
    few batches (momentum 0.1: about ten), and their noise costs val loss at eval time.

    One pass over X in near-equal parts, every BatchNorm normalizing with its part's statistics
    over all its positions (no sample of them; dropout off) and keeping the mean of the parts'
    statistics: the whole split's, to within the parts' sampling noise (a thousand examples each),
    at the cost of one forward pass. BatchNorm layers are found by their class's name: the grader
    trains a student's model, whose BatchNorm1d is the student's own class."""
    was_training = model.training
    model.eval()
    norms = [m for m in model.modules() if type(m).__name__ == "BatchNorm1d"]
    settings = [(norm.momentum, norm.positions) for norm in norms]
    try:
        for norm in norms:
            norm.training, norm.positions = True, 0
        for k, part in enumerate(torch.tensor_split(X, -(-X.shape[0] // batch_size))):  # ceil(N / batch_size)
            for norm in norms:
                norm.momentum = 1 / (k + 1)  # running average of k + 1 equal parts: their mean
            model(part)
    finally:
        for norm, (momentum, positions) in zip(norms, settings):
            norm.momentum, norm.positions = momentum, positions
        model.train(was_training)


def train_with_torch(model, X: Tensor, Y: Tensor, *, lrs: Tensor, batch_size: int, optimizer: str = "sgd",
                     weight_decay: float = 0.0, whole_names: bool = False, recompute: bool = False) -> Tensor:
    """Train `model` in place on (X, Y) with torch's optimizer, the learning rate of step i lrs[i]:
    the trainer's math (shared/trainer.py's plain engine) with no code of the student's but the
    model. The grader trains a submission's model with it."""
    params = model.parameters()
    for p in params:
        p.requires_grad_(True)
    device = params[0].device
    opt = torch_optimizer(params, optimizer, float(lrs[0]), weight_decay)
    model.train()
    batch = (name_batches if whole_names else window_batches)(X, Y, batch_size, device)
    losses = loop(lambda xb, yb, lr: optimizer_step(model, opt, xb, yb, lr), batch, len(lrs),
                  lambda i: float(lrs[i]), device=device, progress=False)
    if recompute:
        recompute_batchnorm(model, X)
    return losses


def train_with_recipe(model, X: Tensor, Y: Tensor, recipe: dict, lrs: Tensor, whole_names: bool) -> Tensor:
    """train_with_torch with a recipe's fields (a TrainConfig as a dict): how the grader trains a
    submission's model in the child, and its own model beside it, alike."""
    return train_with_torch(model, X, Y, lrs=lrs, batch_size=recipe["batch_size"], optimizer=recipe["optimizer"],
                            weight_decay=recipe["weight_decay"], whole_names=whole_names,
                            recompute=recipe["recompute_batchnorm"])
