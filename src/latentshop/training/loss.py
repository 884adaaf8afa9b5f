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
import torch.nn.functional as F

from latentshop.models.stylegan2 import Discriminator, Generator

__all__ = ["LossOptions", "StyleGAN2Loss", "PHASES"]

PHASES = ("Gmain", "Greg", "Dmain", "Dreg")


@dataclass(frozen=True)
class LossOptions:
    """Weights of the objective's terms."""

    r1_gamma: float = 1.0  # R1 weight (gamma); ~0.0002 * res^2 / batch in the paper's auto config
    style_mixing_prob: float = 0.9  # probability of mixing two latents in a training sample
    pl_weight: float = 0.0  # path-length regularisation weight (2 in the paper's configs; 0 turns it off)
    pl_batch_shrink: int = 2  # path-length batch = batch // pl_batch_shrink
    pl_decay: float = 0.01  # decay of the running path-length mean


class StyleGAN2Loss:
    """Computes and back-propagates the loss of one training phase.

    Args:
        G: the generator being trained.
        D: the discriminator being trained.
        options: loss weights.
        augment: optional differentiable augmentation applied to every image D sees.
    """

    def __init__(
        self,
        G: Generator,
        D: Discriminator,
        options: LossOptions = LossOptions(),
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self.G = G
        self.D = D
        self.options = options
        self.augment = augment
        self.pl_mean = torch.zeros([])

    def run_G(self, z: torch.Tensor, c: torch.Tensor | None, *, update_w_avg: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate images with style mixing; returns ``(img [N, C, H, W], ws [N, num_ws, w_dim])``."""
        ws = self.G.mapping(z, c, update_w_avg=update_w_avg)
        if self.options.style_mixing_prob > 0:
            n, num_ws = ws.shape[:2]
            cutoff = torch.randint(1, num_ws, [], device=ws.device)
            cutoff = torch.where(torch.rand([], device=ws.device) < self.options.style_mixing_prob, cutoff, torch.full_like(cutoff, num_ws))
            mixed = self.G.mapping(torch.randn_like(z), c, update_w_avg=False)
            take = torch.arange(num_ws, device=ws.device)[None, :, None] >= cutoff  # [1, num_ws, 1]
            ws = torch.where(take, mixed, ws)
        return self.G.synthesis(ws, noise_mode="random"), ws

    def run_D(self, img: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        if self.augment is not None:
            img = self.augment(img)
        return self.D(img, c)

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
            noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
            (grads,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
            lengths = grads.square().sum(2).mean(1).sqrt()
            pl_mean = self.pl_mean.lerp(lengths.mean().detach(), o.pl_decay)
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
