"""The StyleGAN2 training loop: phases, lazy regularisation, G_ema, checkpoints that resume exactly.

Follows NVIDIA's stylegan2-ada-pytorch ``training_loop.py`` in its schedule: per step a ``Gmain``
phase, a ``Greg`` phase every ``g_reg_interval`` steps, a ``Dmain`` phase and a ``Dreg`` (R1) phase
every ``d_reg_interval`` steps; with lazy regularisation Adam's learning rate and betas are scaled by
``interval / (interval + 1)``; ``G_ema`` follows ``G`` with a half-life of ``ema_kimg`` thousand
images (ramped up over the first ``ema_rampup`` fraction of training).

Every random number comes from generators whose state the checkpoint holds, so a run resumed from
a checkpoint continues bit for bit as if it had never stopped (on the CPU). The data order,
latents, style mixing, noise maps and ADA's parameters all come from one generator that is
identical on every rank (:class:`~latentshop.training.loss.SharedRandom`), so W processes compute
what one process with the same global batch computes; torch's global generator, seeded per rank,
is left to a caller's own ``augment``, and the checkpoint keeps every rank's state of it.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from latentshop.errors import CheckpointError, ConfigError
from latentshop.models.stylegan2 import IMPLS, Discriminator, Generator
from latentshop.ops import fused
from latentshop.training.augment import AdaptiveAugment
from latentshop.training.distributed import all_gather_objects, all_reduce_gradients, atomic_torch_save
from latentshop.training.loss import PHASES, LossOptions, SharedRandom, StyleGAN2Loss

__all__ = ["TrainOptions", "Trainer", "TRAINING_CHECKPOINT_FORMAT"]

TRAINING_CHECKPOINT_FORMAT = "latentshop-training-v1"


@dataclass(frozen=True)
class TrainOptions:
    """Optimisation settings (defaults: the StyleGAN2-ADA paper's small-resolution configs)."""

    batch_size: int = 16  # images per step
    g_lr: float = 0.0025  # generator learning rate
    d_lr: float = 0.0025  # discriminator learning rate
    betas: tuple[float, float] = (0.0, 0.99)  # Adam betas
    eps: float = 1e-8  # Adam epsilon
    g_reg_interval: int = 4  # path-length regularisation every this many steps
    d_reg_interval: int = 16  # R1 regularisation every this many steps
    ema_kimg: float | None = None  # G_ema half-life in thousands of images (default batch_size * 10 / 32)
    ema_rampup: float | None = 0.05  # ramp the half-life up over this fraction of the images seen
    loss: LossOptions = field(default_factory=LossOptions)  # loss weights
    seed: int = 0  # seeds the data order, latents, noise and style mixing
    bf16: bool = False  # bfloat16 autocast (mixed precision; AMX on the CPU, tensor cores on GPUs)
    ada: bool = False  # adaptive discriminator augmentation (for small datasets)
    ada_target: float = 0.6  # ADA's target for E[sign(D(real))]
    ada_interval: int = 4  # adjust the augmentation probability every this many steps
    ada_kimg: float = 500.0  # thousands of images over which p can move from 0 to 1
    ada_p: float = 0.0  # ADA's initial augmentation probability (then adapted; NVIDIA's augment_p)
    impl: str = "fast"  # "fast" (channels-last, fused kernels, fused Adam) or "reference" (the reference's op order)


class Trainer:
    """Trains a StyleGAN2 ``G`` and ``D`` on a dataset of ``(uint8 [C, H, W], label)`` items.

    Args:
        G: generator (its ``init_kwargs`` are saved in checkpoints).
        D: discriminator.
        dataset: items ``(image uint8 [C, H, W], label float [c_dim])``.
        options: optimisation settings (``options.ada`` adds :class:`AdaptiveAugment`).
        augment: a fixed augmentation applied to every image D sees, instead of ADA.
    """

    def __init__(
        self,
        G: Generator,
        D: Discriminator,
        dataset: Dataset,
        options: TrainOptions = TrainOptions(),
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        if len(dataset) == 0:
            raise ConfigError("the training dataset is empty")
        self.options = options
        self.G = G.train().requires_grad_(False)
        self.D = D.train().requires_grad_(False)
        self.G_ema = copy.deepcopy(G).eval().requires_grad_(False)
        self.dataset = dataset
        if options.ada and augment is None:
            augment = AdaptiveAugment(target=options.ada_target, speed_kimg=options.ada_kimg, p=options.ada_p)
        self.augment = augment
        if options.impl not in IMPLS:
            raise ConfigError(f"TrainOptions.impl must be one of {IMPLS}, got {options.impl!r}")
        self.fast = options.impl == "fast"
        self.loss = StyleGAN2Loss(G, D, options.loss, augment, impl=options.impl)
        self.G_opt = self._adam(G, options.g_lr, options.g_reg_interval)
        self.D_opt = self._adam(D, options.d_lr, options.d_reg_interval)
        self.step = 0
        self.nimg = 0
        # Wall time and count of each phase (latents, loss, backward, all-reduce, optimiser step),
        # for progress reports and benchmarks; not part of the checkpoint.
        self.phase_time_s: dict[str, float] = {name: 0.0 for name in PHASES}
        self.phase_count: dict[str, int] = {name: 0 for name in PHASES}
        distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if distributed else 0
        self.world_size = dist.get_world_size() if distributed else 1
        if options.batch_size % self.world_size:
            raise ConfigError(f"batch size {options.batch_size} is not divisible by the {self.world_size} processes")
        self.local_batch = options.batch_size // self.world_size
        # One generator, identical on every rank, for data order, latents, style mixing, noise and ADA.
        self.random = SharedRandom(torch.Generator().manual_seed(options.seed), self.rank, self.world_size)
        self.loss.random = self.random
        if isinstance(augment, AdaptiveAugment):
            augment.random = self.random
        torch.manual_seed(options.seed + 1 + self.rank)  # per rank: only a caller's own augment draws from it

    def _adam(self, module: nn.Module, lr: float, interval: int) -> torch.optim.Adam:
        ratio = interval / (interval + 1) if interval else 1.0
        b1, b2 = self.options.betas
        # The fast path updates all parameters in one fused kernel (the same algorithm; other rounding).
        fused = {"fused": True} if self.fast else {}
        return torch.optim.Adam(module.parameters(), lr=lr * ratio, betas=(b1**ratio, b2**ratio), eps=self.options.eps, **fused)

    # -- data -------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.G.mapping.fc0.weight.device

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = self.random.integers(self.local_batch, len(self.dataset))
        items = [self.dataset[int(i)] for i in idx]
        img = torch.stack([torch.as_tensor(x[0]) for x in items]).to(self.device, torch.float32) / 127.5 - 1
        c = None
        if self.G.c_dim:
            c = torch.stack([torch.as_tensor(x[1], dtype=torch.float32) for x in items]).to(self.device)
        return img, c

    def _latents(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = self.random.normal(self.local_batch, self.G.z_dim, device=self.device)
        c = None
        if self.G.c_dim:
            idx = self.random.integers(self.local_batch, len(self.dataset))
            c = torch.stack([torch.as_tensor(self.dataset[int(i)][1], dtype=torch.float32) for i in idx]).to(self.device)
        return z, c

    def _all_reduce_grads(self, module: nn.Module) -> None:
        all_reduce_gradients(module, self.world_size)

    # -- one step ------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One iteration: G phases, D phases, G_ema update. Returns the logged losses."""
        with fused.autograd_compile(self.fast):  # the fast path's fused kernels compile, backward included
            return self._train_step()

    def _train_step(self) -> dict[str, float]:
        o = self.options
        logs: dict[str, float] = {}
        real_img, real_c = self._batch()
        phases = [("Gmain", self.G, self.G_opt, 1), ("Greg", self.G, self.G_opt, o.g_reg_interval)]
        phases += [("Dmain", self.D, self.D_opt, 1), ("Dreg", self.D, self.D_opt, o.d_reg_interval)]
        for name, module, opt, interval in phases:
            if name.endswith("reg") and (not interval or self.step % interval != 0):
                continue
            if name == "Greg" and o.loss.pl_weight == 0:
                continue
            start = time.perf_counter()
            z, c = self._latents()
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=o.bf16):
                logs.update(self.loss.accumulate_gradients(name, real_img, real_c, z, c, gain=float(interval)))
            module.requires_grad_(False)
            if self.world_size > 1:
                self._all_reduce_grads(module)
            self._sanitize_grads(module)
            opt.step()
            self.phase_time_s[name] += time.perf_counter() - start
            self.phase_count[name] += 1
        self._update_ema()
        self.step += 1
        self.nimg += o.batch_size
        if isinstance(self.augment, AdaptiveAugment) and self.step % o.ada_interval == 0:
            logs["ada_rt"] = self.augment.adjust(o.batch_size * o.ada_interval)
        if isinstance(self.augment, AdaptiveAugment):
            logs["ada_p"] = float(self.augment.p)
        return logs

    @torch.no_grad()
    def _sanitize_grads(self, module: nn.Module) -> None:
        """NaN gradients become 0 and infinities +-1e5, as in the reference."""
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if self.fast and grads:
            # One check over all gradients; only a step with a non-finite value pays the per-tensor pass.
            norms = torch._foreach_norm(grads, ord=1)
            if bool(torch.isfinite(torch.stack(norms)).all()):
                return
        for g in grads:
            torch.nan_to_num(g, nan=0, posinf=1e5, neginf=-1e5, out=g)

    @torch.no_grad()
    def _update_ema(self) -> None:
        o = self.options
        ema_nimg = (o.ema_kimg if o.ema_kimg is not None else o.batch_size * 10 / 32) * 1000
        if o.ema_rampup is not None:
            ema_nimg = min(ema_nimg, (self.nimg + o.batch_size) * o.ema_rampup)
        beta = 0.5 ** (o.batch_size / max(ema_nimg, 1e-8))
        if self.fast:  # one multi-tensor kernel: ema += (1 - beta) * (p - ema)
            torch._foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1.0 - beta)
        else:
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: networks, optimisers, counters and RNG states.

        Collective under torchrun (every rank calls it): the ranks' states of torch's global
        generator are gathered, in rank order, into ``rng["torch"]``.
        """
        return {
            "format": TRAINING_CHECKPOINT_FORMAT,
            "G_init_kwargs": self.G.init_kwargs,
            "D_init_kwargs": self.D.init_kwargs,
            "options": asdict(self.options),
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "G_opt": self.G_opt.state_dict(),
            "D_opt": self.D_opt.state_dict(),
            "step": self.step,
            "nimg": self.nimg,
            "pl_mean": self.loss.pl_mean.clone(),
            "augment": self.augment.state_dict() if isinstance(self.augment, nn.Module) else None,
            "rng": {"shared": self.random.generator.get_state(), "torch": all_gather_objects(torch.get_rng_state())},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != TRAINING_CHECKPOINT_FORMAT:
            raise CheckpointError("<training checkpoint>", f"format {state.get('format')!r} is not {TRAINING_CHECKPOINT_FORMAT!r}")
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.G_opt.load_state_dict(state["G_opt"])
        self.D_opt.load_state_dict(state["D_opt"])
        self.step = int(state["step"])
        self.nimg = int(state["nimg"])
        self.loss.pl_mean = state["pl_mean"].clone()
        if isinstance(self.augment, nn.Module) and state.get("augment") is not None:
            self.augment.load_state_dict(state["augment"])
        self.random.generator.set_state(state["rng"]["shared"])
        per_rank = state["rng"]["torch"]
        per_rank = [per_rank] if isinstance(per_rank, torch.Tensor) else per_rank  # single-state checkpoints
        if self.rank < len(per_rank):
            torch.set_rng_state(per_rank[self.rank])  # each rank its own stream
        else:  # more processes than wrote the checkpoint: a fresh stream (every built-in draw is shared, so exact)
            torch.manual_seed(self.options.seed + 1 + self.rank + self.step)

    def save(self, path: str | os.PathLike) -> None:
        """Write a training checkpoint atomically (collective under torchrun: every rank calls it, rank 0 writes)."""
        state = self.state_dict()
        if self.rank == 0:
            atomic_torch_save(state, Path(path))

    def resume(self, path: str | os.PathLike) -> None:
        """Continue from a checkpoint written by :meth:`save` (read with ``weights_only=True``)."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CheckpointError(path, "no such training checkpoint")
        except Exception as e:  # noqa: BLE001 - any failure of the restricted loader is the file's
            raise CheckpointError(path, f"cannot be read as a latentshop training checkpoint ({type(e).__name__}: {str(e)[:200]})")
        if not isinstance(state, dict):
            raise CheckpointError(path, "is not a latentshop training checkpoint")
        for key, kwargs in (("G_init_kwargs", self.G.init_kwargs), ("D_init_kwargs", self.D.init_kwargs)):
            if state.get(key) != kwargs:
                raise CheckpointError(path, f"was written for another architecture ({key} differs); "
                                            "start a new run or match --res/--preset/--cbase/--cmax")
        self.load_state_dict(state)
