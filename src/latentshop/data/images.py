"""Image output: tensors in ``[-1, 1]`` to 8-bit images, grids, and atomic file writes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from latentshop.errors import ImageError, ShapeError
from latentshop.fileio import atomic_write_bytes

__all__ = ["to_uint8", "make_grid", "save_image", "atomic_write_bytes"]


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """``(N, C, H, W)`` or ``(C, H, W)`` in ``[-1, 1]`` to ``uint8`` ``(N, H, W, C)`` / ``(H, W, C)``.

    Uses the reference mapping ``x * 127.5 + 128`` clamped to ``[0, 255]``; NaNs raise.

    Example:
        >>> to_uint8(torch.zeros(1, 3, 2, 2))[0, 0, 0].tolist()
        [128, 128, 128]
    """
    if img.ndim not in (3, 4):
        raise ShapeError(f"expected an image tensor (N, C, H, W) or (C, H, W), got shape {tuple(img.shape)}")
    if not torch.isfinite(img).all():
        raise ImageError("the image contains NaN or Inf values; the generator or latent is broken")
    x = (img.detach().float().cpu() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(*range(x.ndim - 3), -2, -1, -3).numpy()


def make_grid(images: np.ndarray, *, cols: int | None = None, pad: int = 0, background: int = 255) -> np.ndarray:
    """Tile ``uint8`` images ``(N, H, W, C)`` into one ``(rows*H, cols*W, C)`` array (row-major)."""
    n, h, w, c = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, c), background, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[r * (h + pad) : r * (h + pad) + h, q * (w + pad) : q * (w + pad) + w] = images[i]
    return grid




def save_image(array: np.ndarray, path: str | os.PathLike) -> None:
    """Save a ``uint8`` ``(H, W, C)`` array (C = 1 or 3) atomically; the format follows the suffix."""
    import io

    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ShapeError(f"expected (H, W, 1|3|4) uint8, got {array.shape}")
    img = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise ImageError(f"cannot tell the image format of {path}; use a .png or .jpg name")
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    atomic_write_bytes(path, buf.getvalue())
