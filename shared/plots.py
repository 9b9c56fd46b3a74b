"""The loss plot: 1000-step means of log10(loss), the lecture's "fix the learning rate plot"."""

from __future__ import annotations

from pathlib import Path

import torch
# A Figure made directly, not through pyplot: it draws straight to a file with no GUI backend, and
# leaves pyplot's backend alone (a notebook that imports the trainer keeps its inline plots).
from matplotlib.figure import Figure


def smoothed_log_loss(losses: torch.Tensor, window: int = 1000) -> torch.Tensor:
    """Means of log10(loss) over consecutive windows; a short run gets windows of 1/100 its length."""
    window = max(1, min(window, len(losses) // 100 or 1))
    # BEGIN EXERCISE 2.4
    n = len(losses) // window * window  # drop the ragged end
    return losses[:n].log10().view(-1, window).mean(1)
    # END EXERCISE 2.4


def save_loss_plot(losses: torch.Tensor, path: str | Path, title: str = "training loss",
                   window: int = 1000) -> Path:
    losses = losses.detach().float().cpu()
    means = smoothed_log_loss(losses, window)
    step = len(losses) // max(len(means), 1)
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    ax.plot([(i + 1) * step for i in range(len(means))], means.tolist())
    ax.set(title=title, xlabel="step", ylabel=f"log10(loss), mean of {step} steps")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)  # picks the Agg canvas for .png by itself; nothing to close: pyplot never saw it
    return path
