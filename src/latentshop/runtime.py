"""Small run-time helpers shared by the library and the command line: devices and seeds."""

from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F

from latentshop.errors import ConfigError

__all__ = ["bf16_speedup", "current_umask", "resolve_device"]


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


def bf16_speedup(device: str | torch.device = "cpu", *, channels: int = 128, res: int = 32, batch: int = 16) -> float:
    """How much faster a training convolution (3x3, forward and both backward passes, channels-last)
    runs in bfloat16 than in float32 on ``device``: > 1 where bfloat16 pays (AMX, AVX-512 BF16 on
    some CPUs, tensor cores), < 1 where it is emulated or slow. Takes about a second on a CPU.

    GPUs are not measured: bfloat16 is taken to pay there (returns 2.0) when the device supports it.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        return 2.0 if torch.cuda.is_bf16_supported() else 0.5
    if dev.type != "cpu":
        return 1.0
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(batch, channels, res, res, generator=gen)
    w0 = torch.randn(channels, channels, 3, 3, generator=gen)
    best = {}
    for dtype in (torch.float32, torch.bfloat16):
        x = x0.to(dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
        w = w0.to(dtype).requires_grad_()
        times = []
        for _ in range(4):  # the first call of each dtype sets up kernels: keep the best of the rest
            start = time.perf_counter()
            y = F.conv2d(x, w, padding=1)
            torch.autograd.grad(y, (x, w), torch.ones_like(y))
            times.append(time.perf_counter() - start)
        best[dtype] = min(times[1:])
    return best[torch.float32] / best[torch.bfloat16]
