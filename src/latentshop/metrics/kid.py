"""Kernel distance on the bundled MobileNetV2's features: KID's estimator, *not* the standard Inception KID.

The estimator is that of Bińkowski et al., "Demystifying MMD GANs" (ICLR 2018), as NVIDIA's
stylegan2-ada-pytorch computes it (``metrics/kernel_inception_distance.py``): the unbiased squared
MMD with the cubic polynomial kernel ``k(x, y) = (x . y / d + 1) ** 3`` over ``d``-dimensional
features, averaged over ``num_subsets`` random subsets of at most ``max_subset_size`` rows of each
set (100 subsets of 1000 rows by default). Unlike FID it is unbiased, so sets of a few thousand
images compare fairly, and it can be slightly negative when two sets are alike.

The features differ from the standard metric's, so values are **not** comparable with published
KIDs: they are the 1280-D global-average-pooled head features of the ImageNet MobileNetV2 shipped
with latentshop (:mod:`latentshop.metrics.perceptual`), at 224 px (bilinear, antialiased resize),
which needs no file from the user. Use the score to compare models and snapshots measured the same
way, next to the real-versus-real floor (two disjoint real sets).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from latentshop.errors import ConfigError, ShapeError
from latentshop.metrics.perceptual import load_mobilenet
from latentshop.runtime import resolve_device

__all__ = ["MobileNetKID", "kernel_distance", "mobilenet_features"]

FEATURE_SIZE = 224  # MobileNetV2's ImageNet input size


def kernel_distance(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, *, num_subsets: int = 100,
                    max_subset_size: int = 1000, seed: int = 0) -> float:
    """Unbiased squared MMD (cubic polynomial kernel), averaged over random subsets.

    Args:
        real, fake: ``(N, d)`` and ``(M, d)`` features.
        num_subsets: random subsets drawn from each set.
        max_subset_size: rows per subset (fewer when a set is smaller).
        seed: the subsets' random generator.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.normal(size=(500, 16)), rng.normal(size=(500, 16))
        >>> abs(kernel_distance(a, b, num_subsets=20)) < 0.05, kernel_distance(a, b + 1, num_subsets=20) > 0.5
        (True, True)
    """
    x = np.asarray(real, dtype=np.float64)
    y = np.asarray(fake, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ShapeError(f"features must be (N, d) and (M, d) with the same d, got {x.shape} and {y.shape}")
    m = min(x.shape[0], y.shape[0], max_subset_size)
    if m < 2:
        raise ConfigError(f"the kernel distance needs at least 2 images per set, got {x.shape[0]} and {y.shape[0]}")
    d = x.shape[1]
    rng = np.random.default_rng(seed)
    t = 0.0
    for _ in range(num_subsets):
        a = x[rng.choice(x.shape[0], m, replace=False)]
        b = y[rng.choice(y.shape[0], m, replace=False)]
        kxx = (a @ a.T / d + 1) ** 3
        kyy = (b @ b.T / d + 1) ** 3
        kxy = (a @ b.T / d + 1) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m - 1)
        t += within - kxy.sum() * 2 / m
    return float(t / num_subsets / m)


def mobilenet_features(images: torch.Tensor, *, net: torch.nn.Module | None = None, batch: int = 100,
                       device: str | torch.device = "cpu") -> torch.Tensor:
    """``(N, 1280)`` pooled head features of the bundled MobileNetV2 for ``(N, C, H, W)`` images in
    ``[-1, 1]`` (float) or ``[0, 255]`` (uint8); C 1 (repeated) or 3."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ShapeError(f"expected images (N, 1 or 3, H, W), got {getattr(images, 'shape', type(images).__name__)}")
    dev = resolve_device(device)
    net = net if net is not None else load_mobilenet(device=dev)
    out = []
    with torch.no_grad():
        for i in range(0, images.shape[0], batch):
            x = images[i:i + batch].to(dev)
            x = x.float() if x.dtype == torch.uint8 else (x.float().clamp(-1, 1) * 127.5 + 127.5)
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            x = F.interpolate(x, size=(FEATURE_SIZE, FEATURE_SIZE), mode="bilinear", align_corners=False, antialias=True)
            f = net.features((x - 128) / 128, ["head"])["head"]
            out.append(f.mean(dim=(2, 3)).cpu())
    return torch.cat(out) if out else torch.zeros(0, 1280)


class MobileNetKID:
    """Accumulates MobileNetV2 features of real and fake images; ``compute()`` gives ``{"kid_mobilenet": value}``.

    Args:
        device: where the network runs.
        num_subsets, max_subset_size: see :func:`kernel_distance`.
        seed: the subsets' random generator.
    """

    def __init__(self, *, device: str | torch.device = "cpu", num_subsets: int = 100, max_subset_size: int = 1000,
                 seed: int = 0):
        self.device = resolve_device(device)
        self.net = load_mobilenet(device=self.device)
        self.num_subsets, self.max_subset_size, self.seed = num_subsets, max_subset_size, seed
        self.reset()

    def reset(self, which: str | None = None) -> None:
        """Forget one set's features, or both when ``None``."""
        for name in ("real", "fake") if which is None else (self._check(which),):
            setattr(self, f"_{name}", [])

    @staticmethod
    def _check(which: str) -> str:
        if which not in ("real", "fake"):
            raise ConfigError(f"which must be 'real' or 'fake', got {which!r}")
        return which

    def update(self, images: torch.Tensor, which: str) -> None:
        """Add a batch of images to the real or the fake set."""
        getattr(self, f"_{self._check(which)}").append(mobilenet_features(images, net=self.net, device=self.device))

    def features(self, which: str) -> torch.Tensor:
        parts = getattr(self, f"_{self._check(which)}")
        return torch.cat(parts) if parts else torch.zeros(0, 1280)

    def compute(self) -> dict[str, float]:
        return {"kid_mobilenet": kernel_distance(self.features("real"), self.features("fake"), num_subsets=self.num_subsets,
                                                 max_subset_size=self.max_subset_size, seed=self.seed)}
