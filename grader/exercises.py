"""The exercises: one per new idea of each stage, with an id, a title and the task a student reads.

Each exercise's solution sits in the master sources between `# BEGIN EXERCISE <id>` and
`# END EXERCISE <id>` (one exercise may have several regions). The release turns every region
into a stub that raises NotImplementedError naming the exercise.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Exercise:
    id: str  # "4.1": stage 4, first exercise
    title: str
    task: str

    @property
    def stage(self) -> int:
        return int(self.id.split(".")[0])


EXERCISES = [
    Exercise("1.1", "MLP forward pass",
             "Look up the context's embeddings in self.C, concatenate them per example, and run the layers. "
             "(B, T) token ids in, (B, vocab_size) logits out."),
    Exercise("1.2", "training step",
             "One step of minibatch SGD: logits, the loss (`cross_entropy`, above: it also takes stage 7's "
             "per-position logits), clear the old gradients, backward, then p -= lr * p.grad for every "
             "parameter. Return the loss, detached."),
    Exercise("1.3", "evaluation",
             "The mean cross-entropy of the model over all of (X, Y), without gradients: sum the loss of each "
             "batch (`cross_entropy(..., reduction='sum')`), divide by `count`, the number of targets, and set "
             "`loss` to a Python float. Work through X in batches of batch_size so a big split fits in memory."),
    Exercise("2.1", "Embedding layer", "Return the embedding vector of every token id: (B, T) -> (B, T, C)."),
    Exercise("2.2", "Flatten layer", "Concatenate everything after the batch dim: (B, T, C) -> (B, T * C)."),
    Exercise("2.3", "Sequential container",
             "forward: call the layers one after another. parameters: every layer's parameters, in order."),
    Exercise("2.4", "the 1000-step loss plot",
             "Average log10(loss) over consecutive windows of `window` steps (drop a ragged end): the "
             "lecture's fix for the learning-rate plot."),
    Exercise("3.1", "context windows",
             "For every character of every word (and the closing '.'), append the block_size previous "
             "character ids to X (padded with 0 = '.') and the character's id to Y."),
    Exercise("4.1", "FlattenConsecutive",
             "Concatenate each n consecutive positions of an example: (B, T, C) -> (B, T // n, C * n); "
             "drop the middle dim when it is 1."),
    Exercise("4.2", "the hierarchical model",
             "Build the Sequential: Embedding, then FlattenConsecutive(2) - Linear(no bias) - BatchNorm1d - "
             "Tanh until one position is left (use fuse_pairs), then a Linear to vocab_size logits."),
    Exercise("5.1", "BatchNorm1d over batch and positions",
             "For 3-D input (B, T, C), set `dims` so that the mean and variance are taken over the batch "
             "and the positions together: running statistics of shape (1, 1, C)."),
    Exercise("6.1", "the scaled-up configuration",
             "Set CONFIG to the hierarchical network scaled up (the lecture's n_embd 24 and n_hidden 128, "
             "context 8, the BatchNorm fix) so that it reaches a val loss below 2.0."),
    Exercise("7.1", "CausalConv1d",
             "At every position t, concatenate x[t - dilation] and x[t] (earlier first) and multiply by the "
             "weight: (B, T, C) -> (B, T - dilation, fan_out). One matmul for all positions; no padding."),
    Exercise("8.1", "GatedActivation",
             "Split the last dim in two halves, the filter and the gate, and return tanh(filter) * "
             "sigmoid(gate): (..., 2C) -> (..., C)."),
    Exercise("8.2", "the WaveNet block",
             "conv, then norm (with the mask), then act (then dropout, if there is one) give z. The block's "
             "output is z, or with a residual the input from position `dilation` on plus residual(z); the skip "
             "output is skip(z), or None. Return (output, skip)."),
]
BY_ID = {ex.id: ex for ex in EXERCISES}
STAGES = tuple(sorted({ex.stage for ex in EXERCISES}))  # the stages the grader grades
CHALLENGE_STAGE = 8  # the challenge schedule grades this stage only, trained with the submission's own entry:
CHALLENGE_ENTRY = "challenge.toml"  # this file, at the top of the submission (the student edition has one)
