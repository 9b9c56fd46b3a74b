"""Generate names from a trained model, one character at a time."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import ModelConfig
from .data import decode
from .device import model_device
from .errors import ConfigError
from .layers import Module, evaluating


@torch.no_grad()
def sample(model: Module, config: ModelConfig, n: int = 20, seed: int = 42, max_len: int = 50) -> list[str]:
    """`n` names, all generated at once; the same seed gives the same names on the same device."""
    if n < 1:
        raise ConfigError(f"n must be at least 1, got {n}")
    with evaluating(model):
        return _sample(model, config, n, seed, max_len)


def _sample(model: Module, config: ModelConfig, n: int, seed: int, max_len: int) -> list[str]:
    device = model_device(model)
    generator = torch.Generator(device=device).manual_seed(seed)
    context = torch.zeros(n, config.block_size, dtype=torch.long, device=device)  # (n, T): all '.'
    out = torch.zeros(n, max_len, dtype=torch.long, device=device)
    ended = torch.zeros(n, dtype=torch.bool, device=device)
    for t in range(max_len):
        logits = model(context)
        if config.whole_names:  # a prediction at every position: the last one is the next character
            logits = logits[:, -1]
        probs = F.softmax(logits, dim=-1)  # (n, vocab_size)
        ix = torch.multinomial(probs, num_samples=1, generator=generator)  # (n, 1)
        out[:, t] = ix[:, 0]
        context = torch.cat([context[:, 1:], ix], dim=1)  # slide the window
        ended |= ix[:, 0] == 0
        if ended.all():  # every name has ended with '.'
            break
    names = []
    for row in out.tolist():
        names.append(decode(row[:row.index(0)] if 0 in row else row))
    return names
