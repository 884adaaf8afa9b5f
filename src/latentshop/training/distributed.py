"""Plumbing shared by the trainers: the torchrun process group, collective steps and decisions, checkpoint files.

``torchrun --nproc_per_node N -m latentshop.cli train ...`` starts N copies of the command with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set;
:func:`init_distributed` joins them into one process group (gloo on the CPU, NCCL on GPUs, one
GPU per process). Without torchrun, or with one process, it creates nothing and every helper here
is the single-process identity. Gradients are averaged by :func:`all_reduce_gradients` (one flat
all-reduce per network and phase; see docs/architecture.md on why there is no DDP wrapper).

Anything that decides whether the next step happens must be agreed by all ranks, or one rank leaves
the loop while the others wait in an all-reduce forever: :class:`StopSignals` reduces its stop
request over the ranks at every step boundary.
"""

from __future__ import annotations

import io
import os
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from latentshop.data.images import atomic_write_bytes
from latentshop.errors import ConfigError
from latentshop.runtime import bf16_speedup, resolve_device

__all__ = [
    "StopSignals",
    "bf16_pays",
    "configure_threads",
    "all_gather_objects",
    "all_reduce_gradients",
    "atomic_torch_save",
    "init_distributed",
    "is_distributed",
    "is_main",
    "rank",
    "shutdown_distributed",
    "world_size",
]


def configure_threads(threads: int | None = None) -> int:
    """Set torch's CPU thread count for training and return it.

    ``None`` picks the default: ``OMP_NUM_THREADS`` where it is set; else every core the process
    may use for one process, and an equal share of them per process under torchrun (``LOCAL_WORLD_SIZE`` processes on this machine, at least one
    thread each), so that ranks do not fight over cores. torch's own default would give every rank
    all the cores, which slows a 2-rank CPU run several times over.
    """
    if threads is None and os.environ.get("OMP_NUM_THREADS"):
        threads = torch.get_num_threads()  # the user's OMP_NUM_THREADS, which torch has read
    if threads is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
        threads = max(1, cores // max(local, 1))
    if threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def bf16_pays(device: torch.device) -> tuple[bool, float]:
    """Whether to train in bfloat16 on ``device``: it must run a training convolution at least 1.1x
    faster than float32 (:func:`latentshop.runtime.bf16_speedup`). Collective under torchrun: rank
    0's measurement decides for every rank, so all ranks compute in the same precision.
    Returns ``(use_bf16, speedup)``."""
    speedup = all_gather_objects(bf16_speedup(device))[0]
    return speedup >= 1.1, speedup


def is_distributed() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """Whether this process writes files and logs (rank 0, or the only process)."""
    return rank() == 0


def init_distributed(device: str | torch.device | None = "auto", *, timeout_s: float = 1800.0) -> torch.device:
    """Join the process group torchrun describes and return this process's device.

    With ``WORLD_SIZE`` unset or 1 (a plain command) nothing is initialised and the device is
    :func:`~latentshop.runtime.resolve_device`'s. Under torchrun a CPU device joins with gloo and a
    CUDA device with NCCL, on GPU ``LOCAL_RANK`` (one GPU per process, whatever index ``device``
    names). Calling it again in the same process is harmless.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.
        timeout_s: how long a collective may wait for the other ranks before failing.

    Returns:
        The device this process trains on.

    Example:
        >>> init_distributed("cpu")  # no torchrun: one process, no group
        device(type='cpu')
    """
    dev = resolve_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return dev
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s); "
                              "start at most one process per GPU (torchrun --nproc_per_node)")
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
        except ValueError as e:  # a variable torchrun sets is missing
            raise ConfigError(f"WORLD_SIZE is {os.environ['WORLD_SIZE']} but the process group cannot be joined ({e}); "
                              "start data-parallel runs with torchrun --nproc_per_node N -m latentshop.cli ...")
    return dev


def shutdown_distributed() -> None:
    """Leave the process group :func:`init_distributed` joined (nothing without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _collective_device() -> torch.device:
    # NCCL reduces CUDA tensors only; gloo reduces CPU tensors.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` without a process group).

    Collective: all ranks must call it at the same point.
    """
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_gradients(module: nn.Module, world_size: int) -> None:
    """Data parallelism: average ``module``'s gradients over all ranks in one flat all-reduce (collective)."""
    params = list(module.parameters())
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for p in params:
        p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
        offset += p.numel()


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` that never leaves a half-written file (a checkpoint survives a kill mid-write)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


class StopSignals:
    """Within it, SIGINT / SIGTERM ask the run to stop cleanly instead of killing it.

    A signal only records a request; :meth:`requested`, called by every rank at each step
    boundary, agrees on it: under torchrun it is the largest signal number any rank received (an
    all-reduce), so all ranks leave the loop after the same step and write a consistent checkpoint,
    even when only one of them was signalled. The previous handlers come back on exit.

    Example:
        >>> with StopSignals() as stop:
        ...     stop.requested()
        False
    """

    def __enter__(self) -> "StopSignals":
        self.signal: int | None = None
        self._received: int | None = None
        self._previous = {sig: signal.signal(sig, self._request) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _request(self, signum: int, _frame: Any) -> None:
        self._received = signum

    def requested(self) -> bool:
        """Whether any rank was asked to stop; sets ``.signal``. Collective: every rank calls it at each step boundary."""
        received = self._received or 0
        if is_distributed():
            flag = torch.tensor([received], dtype=torch.int64, device=_collective_device())
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            received = int(flag.item())
        if received and self.signal is None:
            self.signal = received
        return self.signal is not None

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def stopped(self, nimg: int) -> str:
        return f"stopped by signal {self.signal} at {nimg / 1000:.2f} kimg; checkpoint written, resume with --resume"
