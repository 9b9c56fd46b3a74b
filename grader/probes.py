"""Probes: small calls into a submission's code, each returning plain tensors and numbers.

The grader runs every probe twice: in the sandboxed child against the student's code, and in the
trusted parent against the reference (the master sources); a check compares the two. Probes
import the package lazily, so the child can point `makemore_wavenet.shared` and `.stages` at the
submission first. Inputs come from the caller, so hidden checks use inputs the student never sees.
Every return value must load with `torch.load(weights_only=True)`: tensors, numbers, strings,
and lists, tuples and dicts of them. A probe crosses to the child by its name in PROBES (at the
end), the only names the child will run.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict

import torch

NOTEBOOK: dict = {}  # a notebook submission's namespace, when the child runs one
# the instructor's training loop, shared/loop.py (child.load_reference), which trains a submission's model
# in a loss check; None in the student edition, whose self-check trains with the student's own trainer
REFERENCE = None


@contextmanager
def float64():
    """Build and run in float64 through the default dtype, not a dtype= argument, so that layers
    written in the lecture's style (no dtype parameter) are probed exactly like ours."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _layers():
    from makemore_wavenet.shared import layers

    return layers


def _tiny_model(seed: int, fan_in: int, vocab: int = 27):
    """Linear - Tanh - Linear, from layers that are not exercises: isolates the training code."""
    layers = _layers()

    class Tiny(layers.Module):
        def __init__(self):
            self.l1, self.l2 = layers.Linear(fan_in, 16), layers.Linear(16, vocab)

        def forward(self, x):
            return self.l2(torch.tanh(self.l1(x)))

        def parameters(self):
            return self.l1.parameters() + self.l2.parameters()

        def children(self):
            return [self.l1, self.l2]

    torch.manual_seed(seed)
    with float64():
        return Tiny()


def _shapes(model) -> list[tuple]:
    return [tuple(layer.out.shape) for layer in model.layers]


def stage_config(stage: int) -> dict:
    from makemore_wavenet.stages import count_parameters, get_stage

    s = get_stage(stage)
    return {**asdict(s.config), "params": count_parameters(s.build_model(s.config, device="meta"))}


def init_scales(stage: int, seed: int) -> dict:
    """The power of ten of std(W) * sqrt(fan_in) of every Linear in the freshly built model: 0 (about
    1), and -1 (about 0.1) for the last layer, when weights are randn / sqrt(fan_in) and the last is
    scaled by 0.1. Rounded, so that a configuration of the student's own (other layer sizes, other
    random draws) does not change it."""
    from makemore_wavenet.stages import get_stage

    s = get_stage(stage)
    torch.manual_seed(seed)
    model = s.build_model(s.config)
    kinds = tuple(getattr(_layers(), name) for name in ("Linear", "CausalConv1d") if hasattr(_layers(), name))
    linears = [m for m in model.modules() if isinstance(m, kinds)]
    scales = torch.tensor([m.weight.std().item() * m.weight.shape[0] ** 0.5 for m in linears], dtype=torch.float64)
    return {"weight_scales_log10": scales.log10().round()}


def mlp_forward(x: torch.Tensor, training: bool, seed: int) -> dict:
    from makemore_wavenet.stages import get_stage

    s = get_stage(1)
    torch.manual_seed(seed)
    with float64():
        model = s.build_model(s.config).train(training)
        if not training:
            model.layers[1].running_mean = torch.randn(1, s.config.n_hidden)
        return {"logits": model(x)}


def sgd_step(x: torch.Tensor, y: torch.Tensor, lr: float, seed: int) -> dict:
    from makemore_wavenet.shared.trainer import sgd_step as step

    model = _tiny_model(seed, x.shape[1])
    params = model.parameters()
    for p in params:
        p.requires_grad_(True)
    loss = step(model, params, x, y, lr)
    return {"loss": torch.as_tensor(loss, dtype=torch.float64).detach(),
            "params": [p.detach().clone() for p in params]}


def evaluate(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int) -> dict:
    from makemore_wavenet.shared.trainer import evaluate as ev

    model = _tiny_model(seed, x.shape[1])
    loss = ev(model, x, y, batch_size=batch_size)
    return {"loss": float(loss), "grad_enabled_after": torch.is_grad_enabled()}


def embedding(ix: torch.Tensor, seed: int) -> dict:
    torch.manual_seed(seed)
    with float64():
        return {"out": _layers().Embedding(27, 5)(ix)}


def flatten(x: torch.Tensor) -> dict:
    return {"out": _layers().Flatten()(x)}


def sequential(x: torch.Tensor, seed: int) -> dict:
    layers = _layers()
    torch.manual_seed(seed)
    with float64():
        model = layers.Sequential([layers.Linear(x.shape[-1], 7), layers.Tanh(), layers.Linear(7, 3, bias=False)])
        out = model(x)
    return {"out": out, "params": [p.detach().clone() for p in model.parameters()]}


def loss_plot(losses: torch.Tensor, window: int) -> dict:
    from makemore_wavenet.shared.plots import smoothed_log_loss

    return {"means": smoothed_log_loss(losses, window)}


def context_windows(words: list[str], block_size: int) -> dict:
    from makemore_wavenet.shared.data import build_dataset

    X, Y = build_dataset(words, block_size)
    return {"X": X, "Y": Y}


def flatten_consecutive(x: torch.Tensor, n: int) -> dict:
    return {"out": _layers().FlattenConsecutive(n)(x)}


def hierarchical(x: torch.Tensor, n_embd: int, n_hidden: int, training: bool, seed: int) -> dict:
    from makemore_wavenet.shared.config import ModelConfig
    from makemore_wavenet.stages import count_parameters, get_stage

    # stage 4's BatchNorm (batch dim only), so that exercise 4.2 does not stand on 5.1
    config = ModelConfig(block_size=x.shape[1], n_embd=n_embd, n_hidden=n_hidden, bn_reduce_time=False)
    torch.manual_seed(seed)
    with float64():
        model = get_stage(4).build_model(config)
        model.train(training)
        if not training:  # give every BatchNorm non-trivial running statistics first
            model.train()
            model(x)
            model.eval()
        logits = model(x)
    return {"logits": logits, "params": count_parameters(model), "shapes": _shapes(model)}


def batchnorm(x: torch.Tensor, reduce_time: bool) -> dict:
    with float64():
        layer = _layers().BatchNorm1d(x.shape[-1], reduce_time=reduce_time)
    train_out = layer(x)
    layer.eval()
    return {"train_out": train_out, "eval_out": layer(x), "running_mean": layer.running_mean,
            "running_var": layer.running_var}


class NotebookModel:
    """A notebook's `model` (the lecture's objects) with the train()/eval() the trainer calls."""

    def __init__(self, inner):
        self.inner, self.training = inner, True

    def __call__(self, x):
        return self.inner(x)

    def parameters(self):
        return self.inner.parameters()

    def train(self, mode: bool = True):
        self.training = mode
        stack = [self.inner]
        while stack:
            layer = stack.pop()
            if hasattr(layer, "training"):
                layer.training = mode
            stack += list(getattr(layer, "layers", []))
        return self

    def eval(self):
        return self.train(False)


def causal_conv(x: torch.Tensor, fan_out: int, dilation: int, seed: int) -> dict:
    torch.manual_seed(seed)
    with float64():
        layer = _layers().CausalConv1d(x.shape[-1], fan_out, dilation)
        return {"out": layer(x)}


def gated_activation(x: torch.Tensor) -> dict:
    return {"out": _layers().GatedActivation()(x)}


def wavenet_block(x: torch.Tensor, real: torch.Tensor, n_hidden: int, dilation: int, gated: bool, residual: bool,
                  skip: bool, training: bool, seed: int) -> dict:
    """One stage-8 block on random input, with running statistics of its own in eval mode."""
    from makemore_wavenet.stages.stage8_challenge.model import Block, WaveNetConfig

    config = WaveNetConfig(n_embd=x.shape[-1], n_hidden=n_hidden, gated=gated, residual=residual, skip=skip)
    torch.manual_seed(seed)
    with float64():
        block = Block(x.shape[-1], config, dilation, residual).train(training)
        if not training:
            block.norm.running_mean = torch.randn(block.norm.gamma.shape)
            block.norm.running_var = torch.rand(block.norm.gamma.shape) + 0.5
        out, skip_out = block(x, mask=real)
        return {"out": out, "skip": skip_out} if skip else {"out": out, "skip is None": skip_out is None}


def notebook_logits(recipe: dict, seed: int, names: str, block_size: int) -> dict:
    """The student's self-check of a lecture-style notebook: train the notebook's own `model` (as the
    notebook built it) with the grader's schedule on windows of the student's own code (the
    notebook's build_dataset, or the edition's), and return the val logits and their targets. A
    notebook without a model of its own is "not done", saying what it lacks: the package's model
    never stands in for it."""
    from makemore_wavenet.shared.data import load_splits

    model = _notebook_model()
    splits = load_splits(block_size, path=names)
    torch.manual_seed(seed)  # the batches follow the grader's seed, whatever ran before
    model, _ = _train(model, *splits["train"], recipe, whole_names=False)
    X, Y = splits["val"]
    return {"logits": _logits(model, [X]), "targets": [Y], "params": sum(p.numel() for p in model.parameters())}


def notebook_weights(recipe: dict, seed: int, train_x: torch.Tensor, train_y: torch.Tensor, lrs: torch.Tensor,
                     agreement_x: torch.Tensor, inits: dict | None = None, compiled: bool = False) -> dict:
    """The instructor's loss check of a lecture-style notebook: start its own `model` from the
    master's initial tensors of the lecture's model it has the shapes of (`inits`, by stage: see
    stage_weights), train it on the grader's train windows with the grader's recipe and loop, and
    return its tensors, by the names the package's models give them (`_lecture_state`), and its
    forward pass on `agreement_x`: the parent evaluates them with its own model of the lecture's
    stage they are (grader/reference.py)."""
    model = _notebook_model()
    torch.manual_seed(seed)
    shapes = {name: t.shape for name, t in _lecture_state(model.inner).items()}
    started = next((stage for stage, init in (inits or {}).items()
                    if {name: t.shape for name, t in init["state"].items()} == shapes), None)
    if started is not None:
        _load_lecture_state(model.inner, inits[started]["state"])
        torch.set_rng_state(inits[started]["rng"])
    model, how = _train(model, train_x, train_y, recipe, whole_names=False, lrs=lrs, compiled=compiled)
    return {"state": _lecture_state(model.inner), "agreement": _logits(model, [agreement_x])[0],
            "params": sum(p.numel() for p in model.parameters()), "started": started, "training": how}


def _notebook_model() -> NotebookModel:
    missing = _notebook_lacks()
    if missing:
        raise NotImplementedError(missing)
    return NotebookModel(NOTEBOOK["model"])


LECTURE_TENSORS = ("weight", "bias", "gamma", "beta", "running_mean", "running_var")  # the lecture's layers' names


def _lecture_state(layer, prefix: str = "") -> dict:
    """A lecture-style model's tensors named as the package's `Module.state()` names them: a layer's
    own by attribute, then each of its `layers` by index ("3.running_mean")."""
    state = {f"{prefix}{name}": t.detach().clone() for name in LECTURE_TENSORS
             if isinstance(t := getattr(layer, name, None), torch.Tensor)}
    for i, child in enumerate(getattr(layer, "layers", None) or []):
        state.update(_lecture_state(child, f"{prefix}{i}."))
    return state


def _load_lecture_state(layer, state: dict, prefix: str = "") -> None:
    """Set a lecture-style model's tensors from `state`, named as `_lecture_state` names them."""
    for name in LECTURE_TENSORS:
        if f"{prefix}{name}" in state:
            setattr(layer, name, state[f"{prefix}{name}"].clone())
    for i, child in enumerate(getattr(layer, "layers", None) or []):
        _load_lecture_state(child, state, f"{prefix}{i}.")


def _notebook_lacks() -> str:
    """What the notebook lacks to have a model of its own to train ("" nothing): a `model`, and
    layer classes of its own (a model of imported layers only is the package's or torch's)."""
    from .notebook import NOTES

    own_classes = [v for v in NOTEBOOK.values() if isinstance(v, type) and v.__module__ == "__main__"]
    if "model" not in NOTEBOOK:
        not_done = [note for note in NOTEBOOK.get(NOTES, []) if ": not done: " in note]
        if not_done:  # a fresh notebook: its stub says which exercise (a stage-6 notebook's CONFIG)
            return not_done[0].split(": not done: ", 1)[1]
        hint = (" (its `layers` list is not one: `model = Sequential(layers)` makes one)"
                if isinstance(NOTEBOOK.get("layers"), list) else "")
        lacks = f"no model: the notebook has no `model`{hint}, so it has no model of its own to train"
        return lacks + ("; no layer classes: it defines none" if not own_classes else "")
    parts, stack = [], [NOTEBOOK["model"]]
    while stack:  # the model and every layer in it, through `layers` lists
        parts.append(stack.pop())
        stack += list(getattr(parts[-1], "layers", []))
    if not any(type(part).__module__ == "__main__" for part in parts):
        return ("no layer classes: the notebook's `model` is made only of imported layers, none of a class the "
                "notebook defines")
    return ""


def stage_weights(stage: int, train_x: torch.Tensor, train_y: torch.Tensor, recipe: dict, lrs: torch.Tensor,
                  seed: int, model_config: dict, agreement_x: torch.Tensor, checkpoint: str = "",
                  init: dict | None = None, compiled: bool = False) -> dict:
    """The instructor's loss check: build the submission's model from `model_config` (the fields of
    the configuration the submission reported, or its challenge entry's), start it from `init` (the
    master's initial tensors, {"state", "rng"}: every submission starts where the master does, and
    where the grader's own training of it starts, grader/replay.py), train it on the grader's train
    windows with the grader's recipe (a TrainConfig's fields; `lrs`, each step's learning rate) and
    training loop (`compiled`: its forward and backward compiled, loop.train_with_torch); or load the
    student's checkpoint. Returns the trained tensors, the model's own forward pass on `agreement_x`
    and how it trained, never a loss: the parent evaluates the tensors with its own model of the
    stage (grader/reference.py), and the child sees no val or test input."""
    from makemore_wavenet.stages import get_stage, load_model

    how = ""
    if checkpoint:
        model, _ = load_model(checkpoint, device="cpu")
    else:
        s = get_stage(stage)
        config = type(s.config)(**model_config)
        torch.manual_seed(seed)
        model = s.build_model(config)
        if init is not None:
            model.load_state(init["state"])
            torch.set_rng_state(init["rng"])  # where the master's batches begin, however the model drew
        model, how = _train(model, train_x, train_y, recipe, config.whole_names, lrs, compiled)
    agreement = _logits(model, [agreement_x])[0]
    return {"state": {name: t.detach().clone() for name, t in model.state().items()}, "agreement": agreement,
            "training": how}


def own_stage_logits(stage: int, schedule: str, names: str, seed: int, entry: str = "", runs: str = "",
                     retrain: bool = False) -> dict:
    """The student's self-check of a stage's loss: everything as the student's own code does it (the
    plan, the windows of exercise 3.1, the training step of 1.2), with the grader's seed; or the
    student's checkpoint, when it was trained with this plan and seed. Returns the val logits and
    their targets."""
    from makemore_wavenet.shared import checkpoint as ckpt_io
    from makemore_wavenet.stages import checkpoint_path, load_model, plan, splits_for

    the_plan = plan(stage, schedule, entry=entry or None)
    splits = splits_for(the_plan.model, names)
    path = checkpoint_path(stage, runs) if runs and not retrain else None
    try:
        ckpt = ckpt_io.load(path) if path else None
    except ckpt_io.CheckpointError:
        ckpt = None
    if ckpt and ckpt_io.trained_with(ckpt, stage, the_plan.recipe, seed):
        model, _ = load_model(path, device="cpu")
    else:
        torch.manual_seed(seed)
        model = the_plan.stage.build_model(the_plan.model)
        model, _ = _train(model, *splits["train"], asdict(the_plan.recipe), the_plan.model.whole_names)
    X, Y = splits["val"]
    return {"logits": _logits(model, [X]), "targets": [Y],
            "checkpoint": bool(ckpt and path)}


def _train(model, train_x: torch.Tensor, train_y: torch.Tensor, recipe: dict, whole_names: bool,
           lrs: torch.Tensor | None = None, compiled: bool = False) -> tuple:
    """Train with the recipe (a TrainConfig's fields): in the instructor's grading with the
    instructor's loop (REFERENCE) and torch's optimizer, at the learning rates `lrs` the parent
    computed, compiled if asked; in the student's self-check with the student's own trainer, on its
    plain engine (the fast engine computes the library's own layers, not the submission's code).
    Returns the trained model (compiled training trains a copy) and how it trained."""
    if REFERENCE is not None:
        trained = REFERENCE.train_with_recipe(model, train_x, train_y, recipe, lrs, whole_names, compiled)
        return trained.model, trained.describe()
    from makemore_wavenet.shared.trainer import TrainConfig, train

    train(model, train_x, train_y, TrainConfig(**recipe), engine="plain", whole_names=whole_names, progress=False)
    return model, "eager"


@torch.no_grad()
def _logits(model, eval_x: list) -> list:
    """The model's logits for each tensor of contexts, in eval mode, in batches of the loop's EVAL_BATCH."""
    if REFERENCE is not None:
        batch = REFERENCE.EVAL_BATCH
    else:
        from makemore_wavenet.shared.loop import EVAL_BATCH as batch
    model.eval()
    return [torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)]) for x in eval_x]


# every probe, by the name the child knows it by
PROBES = {probe.__name__: probe for probe in (
    stage_config, init_scales, mlp_forward, sgd_step, evaluate, embedding, flatten, sequential, loss_plot,
    context_windows, flatten_consecutive, hierarchical, batchnorm, causal_conv, gated_activation, wavenet_block,
    notebook_logits, notebook_weights, stage_weights, own_stage_logits)}
