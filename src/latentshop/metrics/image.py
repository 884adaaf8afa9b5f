"""Full-reference image-quality metrics per image pair: PSNR, SSIM and MS-SSIM.

Images are ``(N, C, H, W)`` float tensors in ``[-1, 1]`` (latentshop's image range), so the data
range is 2 (``data_range`` changes it). Every function returns one value per image, shape ``(N,)``,
computes in float32 on the images' device, and is differentiable (usable as a loss, e.g.
``1 - ms_ssim(a, b)``).

- :func:`psnr`: ``10 log10(data_range^2 / MSE)``; identical images give ``+inf`` (no cap).
- :func:`ssim`: Wang, Bovik, Sheikh and Simoncelli, "Image Quality Assessment: From Error Visibility
  to Structural Similarity" (IEEE TIP 2004): an 11x11 Gaussian window with sigma 1.5, K1 = 0.01,
  K2 = 0.03, population (not sample) variances, the mean of the SSIM map over the positions where
  the whole window fits ("valid"), averaged over channels. This is scikit-image's
  ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``, which
  filters with reflection and then drops the 5-pixel border that reflection affected.
- :func:`ms_ssim`: Wang, Simoncelli and Bovik, "Multi-Scale Structural Similarity for Image Quality
  Assessment" (Asilomar 2003): contrast-structure at scales 1..M-1, full SSIM at scale M, with the
  weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) and 2x2 average pooling between scales.
  Five scales need images of at least 176 px (the coarsest must hold the 11-px window); smaller
  images use as many scales as fit, ``M = 1 + floor(log2(min(H, W) / 11))`` (3 at 64 px, 2 at 32 px,
  1 at 11-21 px), with the first ``M`` weights renormalised to sum to 1. Negative contrast-structure
  values (anti-correlated images) are clamped to a small positive number before the fractional
  powers, as common implementations do, so the result stays real and its gradient finite.

``mask (N, 1, H, W)`` (values in ``[0, 1]``) restricts :func:`psnr` to the masked pixels and
:func:`ssim` to the windows centred on masked pixels (mask weights on the valid SSIM map);
``ms_ssim`` takes no mask (its coarse scales mix masked and unmasked pixels).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from latentshop.errors import ConfigError, ShapeError

__all__ = ["MS_SSIM_WEIGHTS", "ms_ssim", "ms_ssim_scales", "psnr", "ssim"]

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WIN, _SIGMA, _K1, _K2 = 11, 1.5, 0.01, 0.03
_CS_FLOOR = 1e-6


def _check(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
            got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(f"{name} must be a float (N, C, H, W) tensor in [-1, 1], got {got}")
    if a.shape != b.shape:
        raise ShapeError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if mask is not None:
        n, _, h, w = a.shape
        if not isinstance(mask, torch.Tensor) or mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[2:] != (h, w) \
                or mask.shape[0] not in (1, n):
            got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ShapeError(f"mask must be (N, 1, H, W) = ({n}, 1, {h}, {w}) (or batch 1), got {got}")
        mask = mask.to(device=a.device, dtype=torch.float32).expand(n, 1, h, w)
    return a.to(torch.float32), b.to(torch.float32), mask


def psnr(a: torch.Tensor, b: torch.Tensor, *, data_range: float = 2.0, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, per image.

    Args:
        a: ``(N, C, H, W)`` in ``[-1, 1]``.
        b: the same shape.
        data_range: max - min of the pixel range (2 for ``[-1, 1]``; 255 for uint8 values).
        mask: optional ``(N, 1, H, W)`` weights of the pixels that count (all channels).

    Returns:
        ``(N,)`` PSNR; ``+inf`` where the images (within the mask) are identical.

    Example:
        >>> a = torch.zeros(1, 3, 8, 8)
        >>> psnr(a, a + 0.02).tolist()  # MSE 4e-4 in a range of 2: 10 log10(4 / 4e-4)
        [40.0]
    """
    a, b, mask = _check(a, b, mask)
    err = (a - b).square()
    if mask is None:
        mse = err.mean(dim=(1, 2, 3))
    else:
        mse = (err * mask).sum(dim=(1, 2, 3)) / (mask.sum(dim=(1, 2, 3)) * a.shape[1]).clamp(min=1e-8)
    return 10.0 * torch.log10(data_range**2 / mse)


def _gaussian_window(device: torch.device) -> torch.Tensor:
    x = torch.arange(_WIN, dtype=torch.float64) - (_WIN - 1) / 2
    g = torch.exp(-(x**2) / (2 * _SIGMA**2))
    return (g / g.sum()).to(device=device, dtype=torch.float32)  # [11]


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter per channel, "valid" (no padding): ``[N, C, H, W] -> [N, C, H-10, W-10]``."""
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, _WIN), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, _WIN, 1), groups=c)


def _ssim_maps(a: torch.Tensor, b: torch.Tensor, data_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The valid SSIM and contrast-structure maps ``[N, C, H-10, W-10]``."""
    if min(a.shape[2:]) < _WIN:
        raise ShapeError(f"SSIM needs images of at least {_WIN}x{_WIN} px (its Gaussian window), got {tuple(a.shape)}")
    g = _gaussian_window(a.device)
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    n = a.shape[0]
    stats = _blur(torch.cat([a, b, a * a, b * b, a * b]), g)  # one conv for the five local moments
    mu_a, mu_b, e_aa, e_bb, e_ab = stats.split(n)
    var_a, var_b, cov = e_aa - mu_a * mu_a, e_bb - mu_b * mu_b, e_ab - mu_a * mu_b
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    lum = (2 * mu_a * mu_b + c1) / (mu_a * mu_a + mu_b * mu_b + c1)
    return lum * cs, cs


def ssim(a: torch.Tensor, b: torch.Tensor, *, data_range: float = 2.0, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004; scikit-image's Gaussian variant), per image.

    Args:
        a: ``(N, C, H, W)`` in ``[-1, 1]``, ``H, W >= 11``.
        b: the same shape.
        data_range: max - min of the pixel range (2 for ``[-1, 1]``).
        mask: optional ``(N, 1, H, W)`` weights; the SSIM map (valid positions) is averaged with the
            weights of the window centres.

    Returns:
        ``(N,)`` SSIM in ``[-1, 1]``, 1 for identical images.

    Example:
        >>> a = torch.rand(2, 3, 32, 32) * 2 - 1
        >>> ssim(a, a).tolist()
        [1.0, 1.0]
    """
    a, b, mask = _check(a, b, mask)
    smap, _ = _ssim_maps(a, b, data_range)
    if mask is None:
        return smap.mean(dim=(1, 2, 3))
    r = (_WIN - 1) // 2
    m = mask[:, :, r : mask.shape[2] - r, r : mask.shape[3] - r]  # window centres of the valid map
    return (smap * m).sum(dim=(1, 2, 3)) / (m.sum(dim=(1, 2, 3)) * smap.shape[1]).clamp(min=1e-8)


def ms_ssim_scales(size: int) -> int:
    """How many MS-SSIM scales an image of side ``size`` allows (at most 5; see the module docstring)."""
    if size < _WIN:
        raise ShapeError(f"MS-SSIM needs images of at least {_WIN}x{_WIN} px, got side {size}")
    return min(len(MS_SSIM_WEIGHTS), 1 + int(math.floor(math.log2(size / _WIN))))


def ms_ssim(a: torch.Tensor, b: torch.Tensor, *, data_range: float = 2.0, scales: int | None = None) -> torch.Tensor:
    """Multi-scale SSIM (Wang et al. 2003), per image, with as many scales as the image allows.

    Args:
        a: ``(N, C, H, W)`` in ``[-1, 1]``, ``H, W >= 11``.
        b: the same shape.
        data_range: max - min of the pixel range (2 for ``[-1, 1]``).
        scales: number of scales (default: the most that fit, at most 5: 3 at 64 px, 2 at 32 px).

    Returns:
        ``(N,)`` MS-SSIM in ``[0, 1]``, 1 for identical images.

    Example:
        >>> a = torch.rand(2, 3, 64, 64) * 2 - 1
        >>> ms_ssim(a, a).tolist()
        [1.0, 1.0]
        >>> ms_ssim_scales(64), ms_ssim_scales(32), ms_ssim_scales(256)
        (3, 2, 5)
    """
    a, b, _ = _check(a, b)
    most = ms_ssim_scales(min(a.shape[2:]))
    m = most if scales is None else scales
    if not isinstance(m, int) or not 1 <= m <= most:
        raise ConfigError(f"scales must be an int in [1, {most}] for {tuple(a.shape[2:])} images, got {scales!r}")
    weights = torch.tensor(MS_SSIM_WEIGHTS[:m], dtype=torch.float32, device=a.device)
    weights = weights / weights.sum()
    out = torch.ones(a.shape[0], dtype=torch.float32, device=a.device)
    for j in range(m):
        smap, cs = _ssim_maps(a, b, data_range)
        value = (smap if j == m - 1 else cs).mean(dim=(1, 2, 3))  # [N]
        out = out * value.clamp(min=_CS_FLOOR) ** weights[j]
        if j < m - 1:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return out
