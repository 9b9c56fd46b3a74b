"""Which device a run uses."""

from __future__ import annotations

import torch

from .errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" -> CUDA if available, else CPU; any other name is checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:  # a malformed name
        raise ConfigError(f"{name!r} is not a device: use auto, cpu, cuda, cuda:1, ... ({err})") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for, but this torch build sees no CUDA GPU "
                          f"(torch {torch.__version__}). Use --device cpu, or install a CUDA build of torch.")
    return device


def model_device(model) -> torch.device:
    return model.parameters()[0].device
