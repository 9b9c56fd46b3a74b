"""The training loop, apart from any exercise: minibatches, the calls of a step function with the
learning rate of each step, the loss log, and BatchNorm's statistics recomputed at the end.

It imports nothing of the project (torch and tqdm only), so that the grader can load this one file
of the instructor's edition on its own and train a submission's model with it (`train_with_torch`),
without the rest of shared/, which holds the exercises' solutions: eagerly, or with the model's
forward and backward compiled (`compiled_step`), held to eager's first steps. shared/trainer.py
builds the lessons' training on it.
"""

from __future__ import annotations

import copy
import time
import traceback
from contextlib import contextmanager
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

LOG_EVERY = 1000  # steps between reads of the loss (progress bar, loss log)
EVAL_BATCH = 8192  # examples a forward pass takes in evaluation: a whole split may not fit a GPU
IGNORE = -100  # the target of a padding position (whole names are padded to the longest): cross-entropy skips it
COMPILE_CHECK_STEPS = 20  # compiled training's first steps, trained eagerly as well to hold it to
COMPILE_AGREEMENT = 1e-4  # how far apart the two may be in any of those steps' losses


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
                     weight_decay: float = 0.0, whole_names: bool = False, recompute: bool = False,
                     compiled: bool = False) -> Training:
    """Train `model` on (X, Y) with torch's optimizer, the learning rate of step i lrs[i]: the
    trainer's math (shared/trainer.py's plain engine) with no code of the student's but the model.
    The grader trains a submission's model with it. `compiled`: its forward and backward compiled
    (`compiled_step`), once they agree with eager's; the model trained may then be a copy of `model`:
    use the Training's."""
    params = model.parameters()
    for p in params:
        p.requires_grad_(True)
    device = params[0].device
    model.train()
    batch = (name_batches if whole_names else window_batches)(X, Y, batch_size, device)
    lr_at = lambda i: float(lrs[i])  # noqa: E731
    steps = len(lrs)
    if compiled:
        trained = _train_compiled(model, batch, lr_at, steps, device, optimizer, weight_decay)
    else:
        opt = torch_optimizer(params, optimizer, lr_at(0), weight_decay)
        trained = Training(model, _eager_steps(model, opt, batch, lr_at, 0, steps, device), "eager")
    if recompute:
        recompute_batchnorm(trained.model, X)
    return trained


class Training:
    """What train_with_torch leaves: the trained model, every step's loss (steps,), and the path that
    trained it: "compiled", with its seconds of compiling (every graph), or "eager", with why, where
    compiling was asked for. (No dataclass: the grader loads this file under a name of its own.)"""

    def __init__(self, model, losses: Tensor, engine: str, compile_seconds: float = 0.0, why_eager: str = ""):
        self.model, self.losses, self.engine = model, losses, engine
        self.compile_seconds, self.why_eager = compile_seconds, why_eager

    def describe(self) -> str:
        if self.engine == "compiled":
            return f"compiled ({self.compile_seconds:.0f} s of compiling)"
        return f"eager ({self.why_eager})" if self.why_eager else "eager"


def compiled_step(model, params: list[Tensor], opt: torch.optim.Optimizer) -> Callable:
    """step(xb, yb, lr) -> loss: the model's forward, its loss and its gradients as torch.compile
    graphs (dynamo traces torch.autograd.grad; graph breaks are allowed), then the update outside
    them, with torch's optimizer as the eager step's, so that the math is the student's code and
    torch's update. Shapes may vary (whole names): a second shape compiles a graph of any size."""
    def loss_and_grads(xb: Tensor, yb: Tensor):
        loss = cross_entropy(model(xb), yb)
        # retain_graph: a layer may keep its output (the lecture's `.out`), which still holds the graph
        return loss.detach(), torch.autograd.grad(loss, params, retain_graph=True)

    graph = torch.compile(loss_and_grads)

    def step(xb: Tensor, yb: Tensor, lr: float) -> Tensor:
        loss, grads = graph(xb, yb)
        for p, g in zip(params, grads):
            p.grad = g
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        return loss

    return step


def _train_compiled(model, batch: Callable, lr_at: Callable, steps: int, device, optimizer: str,
                    weight_decay: float) -> Training:
    """The first COMPILE_CHECK_STEPS steps eagerly on `model` and compiled on a copy of it, on the same
    batches; the copy trains on compiled when their losses agree within COMPILE_AGREEMENT, `model`
    on eagerly otherwise (compiling failed, or the two disagree), the Training saying why."""
    check = min(COMPILE_CHECK_STEPS, steps)
    start = torch.get_rng_state()
    opt = torch_optimizer(model.parameters(), optimizer, lr_at(0), weight_decay)
    try:
        twin = copy.deepcopy(model)
    except Exception as err:  # a model that cannot be copied cannot be held to eager's steps: train it eagerly
        return Training(model, _eager_steps(model, opt, batch, lr_at, 0, steps, device), "eager",
                        why_eager=f"the model cannot be copied to check its compiled steps: {_short(err)}")
    eager = _eager_steps(model, opt, batch, lr_at, 0, check, device)
    after = torch.get_rng_state()
    torch.set_rng_state(start)
    try:
        with _compiling():
            params = twin.parameters()
            step = compiled_step(twin, params, torch_optimizer(params, optimizer, lr_at(0), weight_decay))
            first = loop(step, batch, check, lr_at, device=device, progress=False)
            why = _disagreement(eager, first)
            if not why:
                rest = loop(step, batch, steps - check, lambda i: lr_at(i + check), device=device, progress=False)
            seconds = _compile_seconds()
    except Exception as err:  # torch.compile could not compile or run it: eager trains it, and says so
        why = f"compiling failed: {_short(err)}"
        traceback.print_exc()  # the whole of it, for the log
    if why:
        torch.set_rng_state(after)
        rest = _eager_steps(model, opt, batch, lr_at, check, steps, device)
        return Training(model, torch.cat([eager, rest]), "eager", why_eager=why)
    return Training(twin, torch.cat([first, rest]), "compiled", seconds)


def _eager_steps(model, opt: torch.optim.Optimizer, batch, lr_at, done: int, steps: int, device) -> Tensor:
    """Steps done..steps-1 of eager training of `model` with `opt` (as the steps before left it): their losses."""
    return loop(lambda xb, yb, lr: optimizer_step(model, opt, xb, yb, lr), batch, steps - done,
                lambda i: lr_at(i + done), device=device, progress=False)


def _disagreement(eager: Tensor, compiled: Tensor) -> str:
    gap = (eager - compiled).abs().max().item()
    if gap <= COMPILE_AGREEMENT:  # NaN disagrees
        return ""
    return (f"its compiled steps' losses differ from its eager steps' by up to {gap:.2g} in the first "
            f"{len(eager)} (allowed {COMPILE_AGREEMENT:g})")


@contextmanager
def _compiling():
    """torch.compile's settings for training a model: autograd traced into the graph; an error, not
    eager in silence, where the model needs more graphs than dynamo keeps; random draws by torch's own
    generator, as eager draws them (inductor's are its own), so that the compiled training draws what
    the eager one does; the compile on this process's one thread. Graphs compiled for another model
    (an earlier stage's, in the same process) are dropped first: they count towards that limit."""
    import torch._dynamo
    import torch._inductor.config

    torch._dynamo.reset()
    with torch._dynamo.config.patch(trace_autograd_ops=True, fail_on_recompile_limit_hit=True), \
            torch._inductor.config.patch(fallback_random=True, compile_threads=1):
        yield


def _compile_seconds() -> float:
    """Seconds torch.compile has spent compiling in this process since _compiling's reset (0 where
    torch keeps no such record: a report's figure, never a reason to train eagerly)."""
    try:
        from torch._dynamo.utils import compilation_time_metrics

        return sum(sum(times) for name, times in compilation_time_metrics.items() if name.endswith("compile_inner"))
    except Exception:
        return 0.0


def _short(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}"


def train_with_recipe(model, X: Tensor, Y: Tensor, recipe: dict, lrs: Tensor, whole_names: bool,
                      compiled: bool = False) -> Training:
    """train_with_torch with a recipe's fields (a TrainConfig as a dict): how the grader trains a
    submission's model in the child, and its own model beside it, alike."""
    return train_with_torch(model, X, Y, lrs=lrs, batch_size=recipe["batch_size"], optimizer=recipe["optimizer"],
                            weight_decay=recipe["weight_decay"], whole_names=whole_names,
                            recompute=recipe["recompute_batchnorm"], compiled=compiled)
