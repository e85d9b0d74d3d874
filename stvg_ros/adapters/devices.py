"""Which torch device a ``device`` setting names: one resolver for the model, the detector and the benches."""

from __future__ import annotations

import torch

from ..config import ConfigError


def resolve_device(device: str | torch.device, setting: str = "device",
                   error: type[ConfigError] = ConfigError) -> torch.device:
    """``auto`` → cuda when available, else cpu; ``cpu``, ``cuda``, ``cuda:N`` as given.

    A cuda device on a machine without one raises ``error``, naming ``setting`` (the option the
    user set, e.g. ``proposals_device``) and the fix."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise error(f"{setting}={device!r} was requested but no CUDA device is available here: "
                    f"use {setting}='cpu' or 'auto'")
    return dev
