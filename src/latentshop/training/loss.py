"""The StyleGAN2 training objective.

Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (CVPR 2020) and
"Training Generative Adversarial Networks with Limited Data" (NeurIPS 2020): non-saturating
logistic loss, lazy R1 regularisation of D on reals, path-length regularisation of G, and
style-mixing regularisation. Phases and gains follow NVIDIA's stylegan2-ada-pytorch ``loss.py``
(lazy regularisation runs every ``interval`` steps with its loss multiplied by ``interval``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F

from latentshop.models.stylegan2 import Discriminator, Generator

__all__ = ["LossOptions", "SharedRandom", "StyleGAN2Loss", "PHASES"]

PHASES = ("Gmain", "Greg", "Dmain", "Dreg")


@dataclass(frozen=True)
class LossOptions:
    """Weights of the objective's terms."""

    r1_gamma: float = 1.0  # R1 weight (gamma); ~0.0002 * res^2 / batch in the paper's auto config
    style_mixing_prob: float = 0.9  # probability of mixing two latents in a training sample
    pl_weight: float = 0.0  # path-length regularisation weight (2 in the paper's configs; 0 turns it off)
    pl_batch_shrink: int = 2  # path-length batch = batch // pl_batch_shrink
    pl_decay: float = 0.01  # decay of the running path-length mean


class SharedRandom:
    """Random numbers for a *global* batch split across data-parallel ranks.

    Every rank holds the same generator state and draws the whole global batch, then keeps its
    strided share (``rank::world_size``). So a run on W processes uses exactly the random numbers
    of a single-process run with the same global batch, and minibatch-standard-deviation groups
    (which take strided samples) see the same images.

    Args:
        generator: a ``torch.Generator`` whose state is identical on every rank.
        rank: this process's rank.
        world_size: the number of processes.
    """

    def __init__(self, generator: torch.Generator, rank: int = 0, world_size: int = 1):
        self.generator = generator
        self.rank = rank
        self.world_size = world_size

    def normal(self, n_local: int, *shape: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """This rank's ``[n_local, *shape]`` share of a global ``[n_local * world_size, *shape]`` normal draw."""
        x = torch.randn([n_local * self.world_size, *shape], generator=self.generator)
        return x[self.rank :: self.world_size].to(device)

    def uniform(self, n_local: int, *shape: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """This rank's ``[n_local, *shape]`` share of a global uniform draw in ``[0, 1)``."""
        x = torch.rand([n_local * self.world_size, *shape], generator=self.generator)
        return x[self.rank :: self.world_size].to(device)

    def integers(self, n_local: int, high: int, *, low: int = 0, device: torch.device | str = "cpu") -> torch.Tensor:
        """This rank's share of ``n_local * world_size`` uniform integers in ``[low, high)``."""
        x = torch.randint(low, high, [n_local * self.world_size], generator=self.generator)
        return x[self.rank :: self.world_size].to(device)

    def scalar(self) -> float:
        """One uniform number in ``[0, 1)``, the same on every rank."""
        return float(torch.rand([], generator=self.generator))


def _all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        x = x.clone()
        dist.all_reduce(x)
        x /= dist.get_world_size()
    return x


class StyleGAN2Loss:
    """Computes and back-propagates the loss of one training phase.

    Args:
        G: the generator being trained.
        D: the discriminator being trained.
        options: loss weights.
        augment: optional differentiable augmentation applied to every image D sees.
        random: where style mixing, noise maps and path-length noise come from (see :class:`SharedRandom`).
        impl: ``"fast"`` (channels-last, fused element-wise kernels) or ``"reference"`` (the
            reference's op order): how G's synthesis and D run; the same objective either way.
    """

    def __init__(
        self,
        G: Generator,
        D: Discriminator,
        options: LossOptions = LossOptions(),
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        random: SharedRandom | None = None,
        impl: str = "reference",
    ):
        self.G = G
        self.impl = impl
        self.D = D
        self.options = options
        self.augment = augment
        self.random = random if random is not None else SharedRandom(torch.Generator().manual_seed(0))
        self.pl_mean = torch.zeros([])

    @torch.no_grad()
    def _track_w_avg(self, ws: torch.Tensor) -> None:
        # The mean over the global batch (all ranks), as a single process would compute it.
        mapping = self.G.mapping
        if mapping.w_avg_beta is not None:
            mean = _all_reduce_mean(ws[:, 0].detach().float().mean(dim=0))
            mapping.w_avg.copy_(mean.lerp(mapping.w_avg, mapping.w_avg_beta))

    def run_G(self, z: torch.Tensor, c: torch.Tensor | None, *, update_w_avg: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate images with style mixing and random noise; returns ``(img [N, C, H, W], ws [N, num_ws, w_dim])``."""
        n = z.shape[0]
        ws = self.G.mapping(z, c, update_w_avg=False)
        if update_w_avg:
            self._track_w_avg(ws)
        if self.options.style_mixing_prob > 0:
            num_ws = ws.shape[1]
            cutoff = 1 + int(self.random.scalar() * (num_ws - 1))  # uniform in [1, num_ws)
            if self.random.scalar() >= self.options.style_mixing_prob:
                cutoff = num_ws
            mixed = self.G.mapping(self.random.normal(n, z.shape[1], device=z.device), c, update_w_avg=False)
            ws = torch.cat([ws[:, :cutoff], mixed[:, cutoff:]], dim=1)
        noise = {name: self.random.normal(n, 1, r, r, device=z.device) for name, r in self.G.synthesis.noise_layers().items()}
        return self.G.synthesis(ws, noise_mode=noise, impl=self.impl), ws

    def run_D(self, img: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        if self.augment is not None:
            img = self.augment(img)
        return self.D(img, c, impl=self.impl)

    def accumulate_gradients(
        self, phase: str, real_img: torch.Tensor, real_c: torch.Tensor | None, gen_z: torch.Tensor, gen_c: torch.Tensor | None, gain: float
    ) -> dict[str, float]:
        """Back-propagate one phase's loss (times ``gain``); returns the logged values."""
        o = self.options
        logs: dict[str, float] = {}
        if phase == "Gmain":
            img, _ = self.run_G(gen_z, gen_c)
            logits = self.run_D(img, gen_c)
            loss = F.softplus(-logits)  # -log(sigmoid(logits))
            loss.mean().mul(gain).backward()
            logs["loss_G"] = loss.mean().item()
        elif phase == "Greg":
            if o.pl_weight == 0:
                return logs
            n = max(gen_z.shape[0] // o.pl_batch_shrink, 1)
            img, ws = self.run_G(gen_z[:n], None if gen_c is None else gen_c[:n])
            noise = self.random.normal(n, *img.shape[1:], device=img.device) / math.sqrt(img.shape[2] * img.shape[3])
            (grads,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
            lengths = grads.square().sum(2).mean(1).sqrt()
            pl_mean = self.pl_mean.lerp(_all_reduce_mean(lengths.mean().detach()), o.pl_decay)
            self.pl_mean = pl_mean
            loss = (lengths - pl_mean).square() * o.pl_weight
            (img[:, 0, 0, 0] * 0 + loss).mean().mul(gain).backward()
            logs["loss_Gpl"] = loss.mean().item()
        elif phase == "Dmain":
            with torch.no_grad():
                img, _ = self.run_G(gen_z, gen_c)
            loss_fake = F.softplus(self.run_D(img, gen_c))
            loss_fake.mean().mul(gain).backward()
            logits = self.run_D(real_img, real_c)
            if hasattr(self.augment, "accumulate"):
                self.augment.accumulate(logits)  # ADA's overfitting heuristic
            loss_real = F.softplus(-logits)
            loss_real.mean().mul(gain).backward()
            logs["loss_D"] = (loss_fake.mean() + loss_real.mean()).item()
            logs["D_real"] = logits.mean().item()
        elif phase == "Dreg":
            real = real_img.detach().requires_grad_(True)
            logits = self.run_D(real, real_c)
            (grads,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
            penalty = grads.square().sum([1, 2, 3])
            loss = penalty * (o.r1_gamma / 2)
            (logits * 0 + loss[:, None]).mean().mul(gain).backward()
            logs["loss_Dr1"] = loss.mean().item()
        else:
            raise ValueError(f"unknown phase {phase!r}; phases are {PHASES}")
        return logs
