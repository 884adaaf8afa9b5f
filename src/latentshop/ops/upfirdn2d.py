"""Upsample, FIR-filter and downsample 2-D feature maps, in pure PyTorch.

The operation and its padding conventions follow NVIDIA's ``upfirdn2d`` from
stylegan2-ada-pytorch (Karras et al., "Training Generative Adversarial Networks with
Limited Data", 2020), so that resampling is bit-compatible with its reference
implementation: zero-insertion upsampling, pad/crop, a true convolution with the
(flipped) filter, then decimation. It runs unchanged on CPU and CUDA and is
differentiable through autograd.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from latentshop.errors import ShapeError

__all__ = ["setup_filter", "upfirdn2d", "upsample2d", "downsample2d", "filter_size", "parse_padding"]

Padding = int | Sequence[int]


def parse_padding(padding: Padding) -> tuple[int, int, int, int]:
    """Return ``(x0, x1, y0, y1)`` from an int, ``[x, y]`` or ``[x0, x1, y0, y1]``."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    if len(padding) == 4:
        return padding[0], padding[1], padding[2], padding[3]
    raise ShapeError(f"padding must have 1, 2 or 4 entries, got {padding}")


def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """Return ``(width, height)`` of a 1-D (separable) or 2-D filter; ``(1, 1)`` for ``None``."""
    if f is None:
        return 1, 1
    if f.ndim == 1:
        return f.shape[0], f.shape[0]
    return f.shape[-1], f.shape[-2]


def setup_filter(
    f: Sequence[float] | torch.Tensor | None,
    *,
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1.0,
    separable: bool | None = None,
) -> torch.Tensor:
    """Build a resampling filter tensor in the layout ``upfirdn2d`` expects.

    Args:
        f: filter taps, e.g. ``[1, 3, 3, 1]`` (1-D, made 2-D by an outer product) or a 2-D array.
        normalize: divide by the sum of the taps, so a constant image stays constant.
        flip_filter: flip the taps (turns convolution into correlation).
        gain: overall gain; spread as ``gain ** (1 / ndim)`` per dimension.
        separable: keep a 1-D filter 1-D; by default only filters of 8 or more taps are.

    Returns:
        A float32 tensor ``[fw]`` (separable) or ``[fh, fw]``.

    Example:
        >>> setup_filter([1, 3, 3, 1]).shape
        torch.Size([4, 4])
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ShapeError(f"a resampling filter must be 1-D or 2-D and non-empty, got shape {tuple(f.shape)}")
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    return f * (gain ** (f.ndim / 2))


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    *,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with ``f``, then keep every ``down``-th pixel.

    Args:
        x: ``(N, C, H, W)`` feature maps, any float dtype.
        f: filter from :func:`setup_filter`, or ``None`` for the identity.
        up: integer upsampling factor.
        down: integer downsampling factor.
        padding: ``(x0, x1, y0, y1)`` padding after upsampling; negative values crop.
        flip_filter: correlate instead of convolve.
        gain: multiply the filter by ``gain ** (ndim / 2)``.

    Returns:
        ``(N, C, H', W')`` with ``H' = (H * up + y0 + y1 - fh + down) // down``.

    Example:
        >>> upfirdn2d(torch.ones(1, 2, 4, 4), setup_filter([1, 1]), down=2).shape
        torch.Size([1, 2, 2, 2])
    """
    if x.ndim != 4:
        raise ShapeError(f"upfirdn2d expects (N, C, H, W), got shape {tuple(x.shape)}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    n, c, h, w = x.shape
    px0, px1, py0, py1 = parse_padding(padding)

    if up > 1:
        # Zero insertion: [N, C, H, 1, W, 1] padded to [N, C, H, up, W, up].
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)

    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]

    f = f * (gain ** (f.ndim / 2))
    f = f.to(dtype=x.dtype, device=x.device)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))  # conv2d correlates; flipping makes it a true convolution
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].expand(c, 1, *f.shape), groups=c)
    else:
        x = F.conv2d(x, f[None, None, None, :].expand(c, 1, 1, f.shape[0]), groups=c)
        x = F.conv2d(x, f[None, None, :, None].expand(c, 1, f.shape[0], 1), groups=c)

    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor | None, *, up: int = 2, padding: Padding = 0, gain: float = 1.0) -> torch.Tensor:
    """Upsample ``x`` by ``up`` with the FIR filter ``f``; output size is exactly ``H * up``.

    Example:
        >>> upsample2d(torch.ones(1, 1, 4, 4), setup_filter([1, 3, 3, 1])).shape
        torch.Size([1, 1, 8, 8])
    """
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    p = [px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2, py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=p, gain=gain * up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor | None, *, down: int = 2, padding: Padding = 0, gain: float = 1.0) -> torch.Tensor:
    """Downsample ``x`` by ``down`` after low-pass filtering with ``f``; output size is ``H // down``.

    Example:
        >>> downsample2d(torch.ones(1, 1, 8, 8), setup_filter([1, 3, 3, 1])).shape
        torch.Size([1, 1, 4, 4])
    """
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    p = [px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2, py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2]
    return upfirdn2d(x, f, down=down, padding=p, gain=gain)
