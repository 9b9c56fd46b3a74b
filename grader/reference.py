"""Trusted evaluation: the grader's own model of a stage, holding a submission's trained tensors.

The loss check never runs submission code on val or test inputs. The child trains the submission's
model on the train split and returns its tensors (`state()`: weights and BatchNorm running
statistics), plus its own forward pass, in eval mode, on `agreement_inputs` the grader drew with a
seed the submission cannot know. This process loads the tensors into the master's model of the
stage, built from the configuration the submission reported (stage 8: from its entry file, as
data), and the forward passes must agree: weights and code belong together. Then this process
computes the val and test logits itself. A lecture-style notebook's model is evaluated when its
tensors are those of one of the lecture's stages (`lecture_stage`); no other model is.

Tensors cannot say how they were trained, so the grader also trains its own model from the same
start (grader/replay.py), and the two trainings must end at the same val loss within
TRAINING_AGREEMENT (`training_disagreement`): the losses reported are the grader's own training's.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import asdict

import torch

from makemore_wavenet.shared.loop import EVAL_BATCH, cross_entropy
from makemore_wavenet.stages import all_stages, count_parameters, get_stage

from .sandbox import plain_tensor

AGREEMENT = 1e-4  # the largest difference between the forwards, relative to each row's largest logit (float32)
MAX_ELEMENTS = 20_000_000  # numbers in a model the grader builds (80 MB); the lecture's largest holds 76,579
AGREEMENT_ROWS = 64  # inputs the forwards are compared on
# characters one forward pass in evaluation reads: 2,048 windows of 8, or 512 whole names of 32
# (stage 8's widest entries hold about 1 GB of activations for a whole val split at once: more than
# Gradescope's default container has)
EVAL_CHARACTERS = 16_384
NAME_PADDING = 8  # whole-name models (stage 7 on) read block_size + L characters; these inputs take L = 8
# the largest difference between the val losses of the submission's training and the grader's, from the same
# start: rounding alone (a layer written another way) moved none by 1e-5 on the quick schedule of stages 1, 6,
# 7 and 8; training 20,000 steps more, or on the val and test words, moves it by 0.05 or more
TRAINING_AGREEMENT = 0.005


class CannotEvaluate(ValueError):
    """The submission's tensors do not make the model the grader evaluates: says what differs."""


def agreement_inputs(block_size: int, whole_names: bool) -> torch.Tensor:
    """Random contexts (AGREEMENT_ROWS, T) of characters 0..26, from a seed drawn for this call."""
    g = torch.Generator().manual_seed(secrets.randbits(63))
    width = block_size + (NAME_PADDING if whole_names else 0)
    return torch.randint(0, 27, (AGREEMENT_ROWS, width), generator=g)


def stage_model(stage: int, model_config: dict, state, x: torch.Tensor):
    """The master's model of `stage` for `model_config` (the fields of the stage's config class),
    holding `state`, in eval mode; CannotEvaluate when the tensors do not fit it."""
    s = get_stage(stage)
    _check(trained_shapes(stage, model_config, x), state)  # on `meta` first: allocated once the sizes fit
    model = s.build_model(type(s.config)(**model_config))
    model.load_state(state)
    return model.eval()


def lecture_stage(params: int, state, x: torch.Tensor) -> tuple[int, object]:
    """The lecture's stage a notebook's model is, and the master's model of it holding `state`: the
    first stage with `params` parameters whose model's tensors have the same names and shapes
    (stages 4 and 5 differ only in the shape of the running statistics)."""
    problems = []
    for s in reversed(all_stages().values()):
        if s.bar or count_parameters(s.build_model(s.config, device="meta")) != params:
            continue
        try:
            return s.number, stage_model(s.number, asdict(s.config), state, x)
        except CannotEvaluate as err:
            problems.append(f"stage {s.number}: {err}")
    raise CannotEvaluate("its tensors are those of none of the lecture's models of its size"
                         + (f" ({'; '.join(problems)})" if problems else ""))


def _check(shapes: dict[str, tuple], state) -> None:
    """`state` names the model's tensors, each of the model's shape (`trained_shapes`), in floating point."""
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise CannotEvaluate("the trained model came back as no named tensors")
    missing, extra = sorted(set(shapes) - set(state)), sorted(set(state) - set(shapes))
    if missing or extra:
        raise CannotEvaluate(f"its tensors are not the model's: missing {missing[:4]}, "
                             f"unexpected {[str(name)[:40] for name in extra[:4]]}")
    for name, shape in shapes.items():
        t = state[name]
        if tuple(t.shape) != shape or not t.is_floating_point():
            raise CannotEvaluate(f"{name} has shape {tuple(t.shape)} ({t.dtype}), the model's has {shape}")
        if not plain_tensor(t):
            raise CannotEvaluate(f"{name} is no plain tensor of its own numbers ({t.device}, {t.layout}, expanded?)")
        if not torch.isfinite(t).all():  # a trained model's tensors are finite; inf makes NaN of chosen inputs
            raise CannotEvaluate(f"{name} holds values that are not finite")


def trained_shapes(stage: int, model_config: dict, x: torch.Tensor) -> dict[str, tuple]:
    """The shape of each tensor of the stage's model for `model_config` once it has trained, found on
    `meta` (nothing allocated); CannotEvaluate when the configuration builds no model of the stage, or
    one larger than MAX_ELEMENTS. Running statistics take the shape of the batch statistics (stage 4's
    (1, T, C)), so a forward pass in training mode on contexts like `x` sets them."""
    s = get_stage(stage)
    try:
        model = s.build_model(type(s.config)(**model_config), device="meta")
        with torch.no_grad(), torch.random.fork_rng(devices=[]):  # BatchNorm's sampled positions (stage 7) draw
            model.train()(x.to("meta"))
    except Exception as err:  # fields the config class does not take, sizes no model has
        raise CannotEvaluate(f"its configuration builds no model of stage {stage}: "
                             f"{type(err).__name__}: {str(err)[:300]}") from None
    shapes = {name: tuple(t.shape) for name, t in model.state().items()}
    if (size := sum(math.prod(shape) for shape in shapes.values())) > MAX_ELEMENTS:
        raise CannotEvaluate(f"its model holds {size:,} numbers, more than the {MAX_ELEMENTS:,} the grader builds")
    return shapes


def disagreement(model, x: torch.Tensor, theirs) -> str:
    """'' when the submission's forward (`theirs`, on `x`) agrees with the grader's model within
    AGREEMENT of each row's largest logit; else what differs. Non-finite logits never agree: a
    model whose tensors make them on random contexts is not evaluated, whatever it does on names."""
    ours = logits(model, x)
    if not plain_tensor(theirs) or theirs.shape != ours.shape:
        shape = tuple(theirs.shape) if isinstance(theirs, torch.Tensor) else type(theirs).__name__
        return f"its forward pass gave {shape}, the grader's model of its tensors {tuple(ours.shape)}"
    if not torch.isfinite(ours).all():
        return "the grader's model of its tensors gives logits that are not finite on random contexts"
    scale = ours.abs().amax(dim=-1, keepdim=True).clamp_min(1.0)  # each row's own: one huge row hides none
    diff = ((theirs.float() - ours).abs() / scale).max().item()
    if diff <= AGREEMENT:  # NaN in theirs fails too
        return ""
    return (f"its forward pass differs from the grader's model holding the same tensors by {diff:.2g} of the "
            f"largest logit (allowed {AGREEMENT:g}): the submission's model computes something other than the "
            f"stage's model does with the same weights; check the layers it is built from")


def training_disagreement(theirs, ours, X: torch.Tensor, Y: torch.Tensor) -> str:
    """'' when the submission's trained model (`theirs`: the grader's model holding its tensors) and
    the grader's own training of the same model from the same start (`ours`) have the same val loss
    on (X, Y) within TRAINING_AGREEMENT; else what differs."""
    theirs_loss, ours_loss = (cross_entropy(logits(model, X), Y).item() for model in (theirs, ours))
    if abs(theirs_loss - ours_loss) <= TRAINING_AGREEMENT:  # NaN fails
        return ""
    message = (f"its trained tensors are not where the grader's own training of its model ends, from the same "
               f"start on the same batches: val {theirs_loss:.4f} against the grader's {ours_loss:.4f} (allowed "
               f"{TRAINING_AGREEMENT:g} apart). The submission's model trains otherwise than the stage's model (its "
               f"forward in training mode, its BatchNorm's running statistics, its random draws, its load_state), "
               f"or its tensors were not trained by this call")
    if theirs_loss > 3.2:
        message += (". A loss near 3.30 = -log(1/27) means the model learned nothing: parameters() that leave "
                    "some out, or a forward that detaches")
    return message


@torch.no_grad()
def logits(model, x: torch.Tensor) -> torch.Tensor:
    """The model's logits for contexts `x`, in eval mode, in batches that read at most EVAL_CHARACTERS."""
    model.eval()
    step = max(1, EVAL_CHARACTERS // x.shape[1]) if x.dim() == 2 else EVAL_BATCH
    return torch.cat([model(x[i:i + step]) for i in range(0, len(x), step)])
