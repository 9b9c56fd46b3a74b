"""Stage 1: the baseline MLP (Bengio et al. 2003), as the lecture starts it."""

from ..stage import Exercise, Lecture, Stage

STAGE = Stage(
    __name__,
    lecture=Lecture(params=12_097, train=2.058, val=2.105),
    needs=("1.1",),
    exercises=(
        Exercise("1.1", "MLP forward pass",
                 "Look up the context's embeddings in self.C, concatenate them per example, and run the layers. (B, "
                 "T) token ids in, (B, vocab_size) logits out."),
        Exercise("1.2", "training step",
                 "One step of minibatch SGD: logits, the loss (`cross_entropy`, above: it also takes stage 7's "
                 "per-position logits), clear the old gradients, backward, then p -= lr * p.grad for every "
                 "parameter. Return the loss, detached."),
        Exercise("1.3", "evaluation",
                 "The mean cross-entropy of the model over all of (X, Y), without gradients: sum the loss of each "
                 "batch (`cross_entropy(..., reduction='sum')`), divide by `count`, the number of targets, and set "
                 "`loss` to a Python float. Work through X in batches of batch_size so a big split fits in memory."),
    ),
)
