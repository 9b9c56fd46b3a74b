"""The checks: each runs one probe on the submission and compares it with the reference.

Every exercise has shape, size and behaviour checks on random inputs. `exercise_checks(tier, seed,
sizes)` builds them from a seed and a set of sizes: the public tier uses the fixed ones below;
the hidden tier (grader/hidden, not in the student edition) uses its own seed and sizes, so a
student never sees its inputs. Every stage also gets its own checks (`stage_checks`): its
configuration and parameter count, and its initial weight scale, in the row its STAGE names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from makemore_wavenet.shared.config import Runtime
from makemore_wavenet.stages import all_stages

from . import probes
from .exercises import exercises
from .sandbox import Call

PUBLIC_SEED = 1234
SEED = Runtime().seed  # a stage's weights are drawn under the lecture's seed
PUBLIC_SIZES = {"batch": 4, "T": 8, "C": 3, "n": 2, "n_embd": 4, "n_hidden": 6, "words": 5}


@dataclass(frozen=True)
class Check:
    stage: int
    exercise: str  # "4.1"; "" for a stage's own checks that answer for no exercise
    name: str
    call: Call
    tier: str = "public"
    hint: str = ""  # said when the submission's result differs from the reference

    @property
    def row(self) -> str:
        """The report row the check goes in: its exercise, or the stage's own."""
        return self.exercise or f"stage {self.stage}"


def exercise_checks(tier: str, seed: int, sizes: dict) -> list[Check]:
    g = torch.Generator().manual_seed(seed)
    B, T, C, n, E, H = (sizes[k] for k in ("batch", "T", "C", "n", "n_embd", "n_hidden"))

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def tokens(*shape):
        return torch.randint(0, 27, shape, generator=g)

    words = ["".join(chr(97 + int(i)) for i in torch.randint(0, 26, (int(k),), generator=g))
             for k in torch.randint(1, 9, (sizes["words"],), generator=g)]
    losses = torch.rand(100 * n + 7, generator=g, dtype=torch.float64) * 3 + 0.5
    seed_model = int(torch.randint(0, 10_000, (1,), generator=g))
    checks = [
        ("1.1", f"logits of a batch of {B}, train mode",
         Call(probes.mlp_forward, {"x": tokens(B, 3), "training": True, "seed": seed_model}),
         "embed with C[x], flatten each example's context with .view(B, -1), then call the layers in order"),
        ("1.1", f"logits of a batch of {B + 1}, eval mode",
         Call(probes.mlp_forward, {"x": tokens(B + 1, 3), "training": False, "seed": seed_model}),
         "in eval mode BatchNorm must use its running statistics: just call the layers"),
        ("1.2", f"one SGD step on a batch of {B}",
         Call(probes.sgd_step, {"x": randn(B, C), "y": tokens(B), "lr": 0.1, "seed": seed_model}),
         "clear old gradients before backward (p.grad = None) and update p -= lr * p.grad"),
        ("1.3", f"loss over {3 * B + 1} examples, batches of {B}",
         Call(probes.evaluate, {"x": randn(3 * B + 1, C), "y": tokens(3 * B + 1), "batch_size": B,
                                "seed": seed_model}),
         "the mean over *all* examples: sum the per-batch losses (reduction='sum'), divide by the count once"),
        ("2.1", f"lookup of a ({B}, {T}) batch", Call(probes.embedding, {"ix": tokens(B, T), "seed": seed_model}),
         "index the table with the ids: weight[ix]"),
        ("2.2", f"flatten ({B}, {T}, {C})", Call(probes.flatten, {"x": randn(B, T, C)}),
         "keep the batch dim, concatenate the rest: (B, T, C) -> (B, T * C)"),
        ("2.3", f"forward and parameters of a 3-layer Sequential, ({B}, {C}) input",
         Call(probes.sequential, {"x": randn(B, C), "seed": seed_model}),
         "call the layers in order; list every layer's parameters in order"),
        ("2.4", f"means of {len(losses)} losses in windows of {n}",
         Call(probes.loss_plot, {"losses": losses, "window": n}),
         "log10 first, then the mean of each window; drop the steps that do not fill a window"),
        ("3.1", f"windows of {T} for {len(words)} words",
         Call(probes.context_windows, {"words": words, "block_size": T}),
         "every character and the closing '.' is one example; the context starts as block_size zeros"),
        ("3.1", f"windows of 1 for {len(words)} words",
         Call(probes.context_windows, {"words": words, "block_size": 1}), ""),
        ("4.1", f"({B}, {T}, {C}) in pairs of {n}", Call(probes.flatten_consecutive, {"x": randn(B, T, C), "n": n}),
         "view(B, T // n, C * n) keeps each example's positions together; a reshape that moves the batch "
         "dim mixes positions of different examples"),
        ("4.1", f"({B}, {n}, {C}): one group left, so (B, C * n)",
         Call(probes.flatten_consecutive, {"x": randn(B, n, C), "n": n}),
         "when T // n == 1 the middle dim is dropped (squeeze(1))"),
        ("4.2", f"the hierarchy on ({B}, {T}), n_embd {E}, n_hidden {H}, train mode",
         Call(probes.hierarchical, {"x": tokens(B, T), "n_embd": E, "n_hidden": H, "training": True,
                                    "seed": seed_model}),
         "Embedding, then FlattenConsecutive(2) - Linear(bias=False) - BatchNorm1d - Tanh per level, then Linear"),
        ("4.2", f"the hierarchy on ({B + 1}, {T}), eval mode",
         Call(probes.hierarchical, {"x": tokens(B + 1, T), "n_embd": E, "n_hidden": H, "training": False,
                                    "seed": seed_model}), ""),
        ("5.1", f"3-D input ({B}, {T}, {C}), statistics over batch and positions",
         Call(probes.batchnorm, {"x": randn(B, T, C) * 2 + 1, "reduce_time": True}),
         "for 3-D input reduce over dims (0, 1): running statistics of shape (1, 1, C). Reducing over dim 0 "
         "only keeps one statistic per position, the lecture's stage-4 bug"),
        ("5.1", f"3-D input ({B}, {T}, {C}) with reduce_time=False keeps the stage-4 behaviour",
         Call(probes.batchnorm, {"x": randn(B, T, C), "reduce_time": False}),
         "with reduce_time=False, 3-D input is reduced over dim 0 only"),
        ("5.1", f"2-D input ({B}, {C}) is unchanged", Call(probes.batchnorm, {"x": randn(B, C), "reduce_time": True}),
         "2-D input is reduced over dim 0"),
        ("7.1", f"({B}, {T}, {C}) with dilation 1",
         Call(probes.causal_conv, {"x": randn(B, T, C), "fan_out": H, "dilation": 1, "seed": seed_model}),
         "pair each position with the one before: torch.cat([x[:, :-1], x[:, 1:]], dim=-1), then @ weight"),
        ("7.1", f"({B}, {T}, {C}) with dilation {n}",
         Call(probes.causal_conv, {"x": randn(B, T, C), "fan_out": H, "dilation": n, "seed": seed_model}),
         "the earlier position is `dilation` steps back: x[:, :-d] beside x[:, d:]; T - d outputs"),
        ("8.1", f"({B}, {T}, {2 * C}) -> ({B}, {T}, {C})", Call(probes.gated_activation, {"x": randn(B, T, 2 * C) * 2}),
         "the first half of the last dim is the filter, the second the gate: x.chunk(2, dim=-1)"),
        ("8.2", f"a gated block with residual and skip, ({B}, {T}, {H}), dilation {n}, train mode",
         Call(probes.wavenet_block, {"x": randn(B, T, H), "real": torch.rand(B, T - n, generator=g) < 0.8,
                                     "n_hidden": H, "dilation": n, "gated": True, "residual": True, "skip": True,
                                     "training": True, "seed": seed_model}),
         "z = act(norm(conv(x), mask=mask)); output x[:, dilation:] + residual(z); skip output skip(z)"),
        ("8.2", f"a tanh block, no residual or skip, ({B}, {T}, {E}) to width {H}, eval mode",
         Call(probes.wavenet_block, {"x": randn(B, T, E), "real": torch.ones(B, T - 1, dtype=torch.bool),
                                     "n_hidden": H, "dilation": 1, "gated": False, "residual": False, "skip": False,
                                     "training": False, "seed": seed_model}),
         "without a residual the output is z itself, and the skip output is None"),
    ]
    by_id = exercises()
    checks = [Check(by_id[ex].stage, ex, name, call, tier, hint) for ex, name, call, hint in checks]
    # no random inputs in a stage's own checks: the hidden tier would only repeat them
    return checks + stage_checks() if tier == "public" else checks


def stage_checks() -> list[Check]:
    """Each stage's configuration and parameter count (but the challenge's, whose model is the
    student's entry), then each stage's initial weight scale."""
    stages = all_stages().values()
    config = [Check(s.number, s.loss_exercise, "configuration and parameter count",
                    Call(probes.stage_config, {"stage": s.number}), hint=s.config_hint)
              for s in stages if not s.entry_file]
    scale = [Check(s.number, s.loss_exercise, "initial weight scale",
                   Call(probes.init_scales, {"stage": s.number, "seed": SEED}),
                   hint="each Linear's weight is randn(fan_in, fan_out) / sqrt(fan_in), so std(W) * sqrt(fan_in) "
                   "is about 1; the last layer's weight is then scaled by 0.1") for s in stages]
    return config + scale


def compare(expected, got) -> str | None:
    """None if `got` matches `expected`; else what differs, in words a student can act on.
    A wrong shape anywhere is reported before wrong values: it says more about the mistake."""
    return _compare(expected, got, "result", values=False) or _compare(expected, got, "result", values=True)


def _compare(expected, got, path: str, values: bool) -> str | None:
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"{path}: expected a tensor, got {type(got).__name__}"
        if tuple(got.shape) != tuple(expected.shape):
            return f"{path}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
        if not values:
            return None
        if expected.dtype.is_floating_point:
            if not torch.allclose(got.double(), expected.double(), rtol=1e-4, atol=1e-6, equal_nan=True):
                diff = (got.double() - expected.double()).abs().nan_to_num(float("inf")).max().item()
                return f"{path}: the shape is right but the values differ (largest difference {diff:.3g})"
        elif not torch.equal(got, expected):
            return f"{path}: the shape is right but the values differ"
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"{path}: expected a dict, got {type(got).__name__}"
        for key in expected:
            if key not in got:
                return f"{path}: missing {key!r}"
            child = key if path == "result" else f"{path}.{key}"
            if (problem := _compare(expected[key], got[key], child, values)):
                return problem
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            count = len(got) if isinstance(got, (list, tuple)) else got
            return f"{path}: expected {len(expected)} items, got {count!r}"
        for i, (e, x) in enumerate(zip(expected, got)):
            if (problem := _compare(e, x, f"{path}[{i}]", values)):
                return problem
        return None
    if not values:
        return None
    if isinstance(expected, float):
        ok = isinstance(got, (int, float)) and math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9)
        return None if ok else f"{path}: expected {expected:.6g}, got {got!r}"
    return None if got == expected else f"{path}: expected {expected!r}, got {got!r}"
