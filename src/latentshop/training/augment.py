"""Adaptive discriminator augmentation (ADA), a compact differentiable version.

Karras et al., "Training Generative Adversarial Networks with Limited Data" (NeurIPS 2020): every
image the discriminator sees — real or generated — is augmented with probability ``p`` per
transform, and ``p`` is adjusted during training from the overfitting heuristic
``r_t = E[sign(D(real))]`` towards a target of 0.6. The transforms here are the paper's most
useful groups: x-flips, integer translation (up to 1/8 of the image), brightness, contrast,
saturation (RGB only) and cutout. All are differentiable with respect to the image, so generator
gradients flow through them.

Randomness comes from a :class:`~latentshop.training.loss.SharedRandom`: the trainer hands ADA its
shared generator, so under torchrun every rank draws the augmentation parameters of the *global*
batch and keeps its strided share, exactly as one process with that batch would draw them; and
the generator's state is in the training checkpoint, so a resumed run stays exact. The overfitting
statistic is summed over all ranks as it accumulates, so every rank holds (and every checkpoint
saves) the global value.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import nn

from latentshop.training.loss import SharedRandom

__all__ = ["AdaptiveAugment"]


class AdaptiveAugment(nn.Module):
    """Per-sample random augmentation with an adaptive probability ``p``.

    Args:
        target: the value of ``E[sign(D(real))]`` that ``p`` steers towards.
        speed_kimg: thousands of images over which ``p`` can move from 0 to 1.
        p: initial probability.
        random: where the augmentation parameters come from (the trainer passes its shared
            generator; by default a private one seeded with 0).

    Example:
        >>> aug = AdaptiveAugment(p=1.0)
        >>> aug(torch.zeros(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """

    def __init__(self, *, target: float = 0.6, speed_kimg: float = 100.0, p: float = 0.0, random: SharedRandom | None = None):
        super().__init__()
        self.target = target
        self.speed_kimg = speed_kimg
        self.random = random if random is not None else SharedRandom(torch.Generator().manual_seed(0))
        self.register_buffer("p", torch.tensor(float(p)))
        self.register_buffer("_sign_sum", torch.zeros([]))
        self.register_buffer("_sign_count", torch.zeros([]))

    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Record the signs of D's logits on real images (the overfitting heuristic's input), summed over all ranks."""
        stats = torch.stack([real_logits.detach().float().sign().sum(), torch.tensor(float(real_logits.numel()), device=real_logits.device)])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(stats)  # every rank holds the global sums, so any rank's checkpoint has them
        self._sign_sum += stats[0].to(self._sign_sum.device)
        self._sign_count += stats[1].to(self._sign_count.device)

    def adjust(self, num_images: int) -> float:
        """Move ``p`` after ``num_images`` images according to the accumulated signs; returns r_t."""
        if self._sign_count == 0:
            return float("nan")
        rt = float(self._sign_sum / self._sign_count)
        step = math.copysign(num_images / (self.speed_kimg * 1000), rt - self.target)
        self.p.copy_((self.p + step).clamp(0, 1))
        self._sign_sum.zero_()
        self._sign_count.zero_()
        return rt

    def _mask(self, n: int, device: torch.device) -> torch.Tensor:
        return (self.random.uniform(n, 1, 1, 1, device=device) < self.p).float()

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """``img [N, C, H, W]`` in about ``[-1, 1]`` to an augmented batch of the same shape."""
        if float(self.p) <= 0:
            return img
        n, c, h, w = img.shape
        dev = img.device
        # x-flip
        img = torch.where(self._mask(n, dev) > 0, img.flip(3), img)
        # integer translation by up to 1/8 of the size, reflecting at the borders
        m = self._mask(n, dev)
        pad_h, pad_w = max(h // 8, 1), max(w // 8, 1)
        padded = torch.nn.functional.pad(img, [pad_w, pad_w, pad_h, pad_h], mode="reflect")
        ty = (self.random.integers(n, pad_h + 1, low=-pad_h, device=dev) * m.view(n)).long()
        tx = (self.random.integers(n, pad_w + 1, low=-pad_w, device=dev) * m.view(n)).long()
        rows = (torch.arange(h, device=dev)[None, :] + pad_h - ty[:, None])  # [N, H]
        cols = (torch.arange(w, device=dev)[None, :] + pad_w - tx[:, None])  # [N, W]
        img = padded[torch.arange(n, device=dev)[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        # brightness, contrast, saturation
        img = img + self.random.normal(n, 1, 1, 1, device=dev) * 0.2 * self._mask(n, dev)
        mean = img.mean(dim=[1, 2, 3], keepdim=True)
        contrast = torch.exp2(self.random.normal(n, 1, 1, 1, device=dev) * 0.5 * self._mask(n, dev))
        img = (img - mean) * contrast + mean
        if c == 3:
            luma = img.mean(dim=1, keepdim=True)
            saturation = torch.exp2(self.random.normal(n, 1, 1, 1, device=dev) * self._mask(n, dev))
            img = (img - luma) * saturation + luma
        # cutout: a zeroed square of half the size at a random centre
        m = self._mask(n, dev)
        cy, cx = self.random.uniform(n, 1, 1, 1, device=dev), self.random.uniform(n, 1, 1, 1, device=dev)
        yy = (torch.arange(h, device=dev).view(1, 1, h, 1) + 0.5) / h
        xx = (torch.arange(w, device=dev).view(1, 1, 1, w) + 0.5) / w
        inside = ((yy - cy).abs() < 0.25) & ((xx - cx).abs() < 0.25)
        return img * (1 - inside.float() * m)

    def extra_repr(self) -> str:
        return f"p={float(self.p):.3f}, target={self.target}, speed_kimg={self.speed_kimg}"
