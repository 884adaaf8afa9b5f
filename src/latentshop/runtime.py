"""Small run-time helpers shared by the library and the command line: devices and seeds."""

from __future__ import annotations

import os

import torch

from latentshop.errors import ConfigError

__all__ = ["current_umask", "resolve_device"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` (or a device) into an available ``torch.device``.

    ``"auto"`` picks CUDA when present, else the CPU. Asking for CUDA on a machine without it
    raises :class:`ConfigError` rather than failing later inside a kernel.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"unknown device {device!r} ({e}); use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for, but this PyTorch sees no CUDA GPU; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif dev.type not in ("cpu", "mps"):
        raise ConfigError(f"device type {dev.type!r} is not supported; use 'cpu' or 'cuda'")
    return dev


def current_umask() -> int:
    """The process umask (files written through temporary names get the usual permissions from it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
