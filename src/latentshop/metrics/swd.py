"""Multi-scale sliced Wasserstein distance (SWD) between two sets of images.

The metric of Karras et al., "Progressive Growing of GANs for Improved Quality, Stability, and
Variation" (ICLR 2018), appendix D, with the numerics of NVIDIA's reference implementation
(``metrics/sliced_wasserstein.py`` of ``tkarras/progressive_growing_of_gans``), rewritten here in
PyTorch:

1. every image, as 8-bit values in ``[0, 255]``, is split into a Laplacian pyramid built with the
   5x5 binomial filter ``[1, 4, 6, 4, 1] / 16`` (``cv2.pyrDown``/``pyrUp`` semantics: mirror
   boundary without repeating the edge pixel), from the full resolution down to 16x16 — one level
   per power of two, the coarsest level being the 16x16 low-pass image itself;
2. from every level of every image, ``nhoods_per_image`` random ``nhood_size x nhood_size``
   neighbourhoods (all channels) are taken as descriptors;
3. per level and per set, each channel of the descriptors is normalised by the mean and standard
   deviation over the whole set (so the real and fake sets are each normalised by their own
   statistics, as in the reference);
4. per level, the descriptors are projected onto ``dir_repeats x dirs_per_repeat`` random unit
   directions; the sliced Wasserstein distance is the mean over directions of the 1-D Wasserstein-1
   distance between the projected sets (sort both, mean absolute difference);
5. each level's distance is reported multiplied by 1e3, with the mean over levels.

Differences from the reference, all on purpose:

* sampling is reproducible and independent of how the images are split into batches: the
  neighbourhood positions of image ``i`` of a set come from a generator seeded with
  ``(seed, i)``, so image ``i`` of the real set and image ``i`` of the fake set use the same
  positions (identical sets give exactly 0, and the variance of the difference is lower);
  directions come from a generator seeded with ``(seed, level)``;
* float images in ``[-1, 1]`` are quantised to 8 bits exactly as NVIDIA's metric code does
  (``x * 127.5 + 128``, clamped, truncated), so a float tensor and its ``uint8`` export score alike;
* sets of different sizes are allowed: the 1-D distance is then computed exactly from the two
  empirical CDFs (for equal sizes this is the reference's sorted difference);
* 1-channel (grayscale) images are supported as well as RGB.

Memory: the descriptors are what is kept — ``4 * nhoods_per_image * C * nhood_size**2`` bytes per
image, per level and per set (75 KB for RGB with the defaults, 0.7 GB per level for 10k images).
No image is stored, and :meth:`SlicedWassersteinDistance.compute` makes no full copy of them: it
normalises and projects in bounded chunks.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from latentshop.errors import ConfigError, ImageError, ShapeError

__all__ = ["SlicedWassersteinDistance", "sliced_wasserstein", "laplacian_pyramid", "swd_resolutions"]

Which = Literal["real", "fake"]

_COARSEST = 16  # the pyramid stops at 16x16 (appendix D)
_BINOMIAL_5 = (1.0, 4.0, 6.0, 4.0, 1.0)  # normalised by 16 per axis
_ROW_CHUNK = 1 << 16  # descriptors normalised and projected at a time
_PROJECTION_BUDGET = 1 << 25  # float32 elements of projections held per set at a time (128 MB)
_POSITION_STREAM = 0  # second word of the per-image seed
_DIRECTION_STREAM = 1  # second word of the per-level direction seed


def swd_resolutions(resolution: int) -> list[int]:
    """Resolutions of the Laplacian pyramid levels, finest first, down to 16.

    Args:
        resolution: image size, a power of two >= 16.

    Returns:
        ``[resolution, resolution // 2, ..., 16]``.

    Example:
        >>> swd_resolutions(64)
        [64, 32, 16]
    """
    if not isinstance(resolution, int) or resolution < _COARSEST or resolution & (resolution - 1):
        raise ConfigError(f"resolution must be a power of two >= {_COARSEST}, got {resolution!r}")
    out = []
    res = resolution
    while res >= _COARSEST:
        out.append(res)
        res //= 2
    return out


def _binomial_blur(x: torch.Tensor, gain: float) -> torch.Tensor:
    """5x5 binomial filter with mirror (reflect, edge not repeated) boundary; ``x`` is [N, C, H, W]."""
    n, c, h, w = x.shape
    k = torch.tensor(_BINOMIAL_5, dtype=x.dtype, device=x.device) / 16.0
    k2 = (k[:, None] * k[None, :]) * gain  # [5, 5], symmetric: convolution == correlation
    y = F.pad(x.reshape(n * c, 1, h, w), (2, 2, 2, 2), mode="reflect")
    return F.conv2d(y, k2[None, None]).reshape(n, c, h, w)


def _pyr_down(x: torch.Tensor) -> torch.Tensor:
    return _binomial_blur(x, 1.0)[:, :, ::2, ::2]


def _pyr_up(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    return _binomial_blur(up, 4.0)  # gain 4 restores the energy of the zero-inserted samples


def laplacian_pyramid(images: torch.Tensor, num_levels: int) -> list[torch.Tensor]:
    """Laplacian pyramid with the 5x5 binomial filter (the ``cv2.pyrDown``/``pyrUp`` construction).

    Args:
        images: ``(N, C, H, W)`` float tensor, H and W divisible by ``2 ** (num_levels - 1)``.
        num_levels: number of levels, >= 1.

    Returns:
        ``num_levels`` tensors, finest first: level ``i`` is ``(N, C, H / 2**i, W / 2**i)``; all but
        the last are band-pass (gaussian level minus the upsampled next level), the last is the
        low-pass image. Upsampling every level back and adding reconstructs ``images``.

    Example:
        >>> x = torch.rand(2, 1, 32, 32)
        >>> [tuple(level.shape) for level in laplacian_pyramid(x, 2)]
        [(2, 1, 32, 32), (2, 1, 16, 16)]
    """
    if images.ndim != 4:
        raise ShapeError(f"laplacian_pyramid expects (N, C, H, W), got shape {tuple(images.shape)}")
    if num_levels < 1:
        raise ConfigError(f"num_levels must be >= 1, got {num_levels}")
    gaussian = images
    levels = []
    for _ in range(num_levels - 1):
        down = _pyr_down(gaussian)
        levels.append(gaussian - _pyr_up(down))
        gaussian = down
    levels.append(gaussian)
    return levels


def _to_pixel_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[0, 255]`` or float ``[-1, 1]`` images as float32 values of 8-bit pixels."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32)
    if images.is_floating_point():
        # NVIDIA's metric quantisation: x * 127.5 + 128, clamped, truncated (= rounding of x * 127.5 + 127.5)
        return (images.detach().to(torch.float32) * 127.5 + 128.0).clamp(0, 255).floor()
    raise ImageError(f"images must be uint8 in [0, 255] or float in [-1, 1], got dtype {images.dtype}")


class _Rows:
    """A growable [rows, dim] float32 buffer: preallocated from a hint, else a list of chunks."""

    def __init__(self, capacity: int | None):
        self._capacity_hint = capacity
        self._buffer: torch.Tensor | None = None
        self._chunks: list[torch.Tensor] = []
        self.rows = 0

    def append(self, x: torch.Tensor) -> None:
        if self._capacity_hint is None:
            self._chunks.append(x)
            self.rows += x.shape[0]
            return
        needed = self.rows + x.shape[0]
        if self._buffer is None:
            self._buffer = x.new_empty(max(self._capacity_hint, needed), x.shape[1])
        elif needed > self._buffer.shape[0]:
            grown = x.new_empty(max(needed, 2 * self._buffer.shape[0]), x.shape[1])
            grown[: self.rows] = self._buffer[: self.rows]
            self._buffer = grown
        self._buffer[self.rows : needed] = x
        self.rows = needed

    def tensor(self) -> torch.Tensor:
        if self._capacity_hint is not None:
            assert self._buffer is not None
            return self._buffer[: self.rows]
        if len(self._chunks) > 1:
            self._chunks = [torch.cat(self._chunks)]  # consolidate once; later calls reuse it
        return self._chunks[0]


def _normalisation(desc: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (population) over a [M, C * k * k] descriptor set, as [C*k*k] vectors."""
    m, d = desc.shape
    per = d // channels
    total = torch.zeros(channels, dtype=torch.float64, device=desc.device)
    for start in range(0, m, _ROW_CHUNK):
        total += desc[start : start + _ROW_CHUNK].to(torch.float64).view(-1, channels, per).sum(dim=(0, 2))
    count = m * per
    mean = total / count
    sq = torch.zeros(channels, dtype=torch.float64, device=desc.device)
    for start in range(0, m, _ROW_CHUNK):
        centred = desc[start : start + _ROW_CHUNK].to(torch.float64).view(-1, channels, per) - mean[None, :, None]
        sq += centred.square().sum(dim=(0, 2))
    std = (sq / count).sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))  # a constant channel stays 0 rather than NaN
    return mean.to(torch.float32).repeat_interleave(per), std.to(torch.float32).repeat_interleave(per)


def _project(desc: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Normalised descriptors [M, D] projected on unit directions [D, K] -> [M, K], in row chunks."""
    out = desc.new_empty(desc.shape[0], dirs.shape[1])
    for start in range(0, desc.shape[0], _ROW_CHUNK):
        rows = desc[start : start + _ROW_CHUNK]
        out[start : start + rows.shape[0]] = ((rows - mean) / std) @ dirs
    return out


def _wasserstein_1d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Wasserstein-1 distance per column between two sorted samples [Ma, K] and [Mb, K] -> [K]."""
    if a.shape[0] == b.shape[0]:
        return (a - b).abs().mean(dim=0)
    # Unequal sizes: integrate |F_a - F_b| exactly over the merged support.
    merged = torch.cat([a, b]).sort(dim=0).values  # [Ma + Mb, K]
    widths = (merged[1:] - merged[:-1]).T  # [K, Ma + Mb - 1]
    points = merged[:-1].T.contiguous()
    cdf_a = torch.searchsorted(a.T.contiguous(), points, right=True).to(a.dtype) / a.shape[0]
    cdf_b = torch.searchsorted(b.T.contiguous(), points, right=True).to(a.dtype) / b.shape[0]
    return ((cdf_a - cdf_b).abs() * widths).sum(dim=1)


def _sliced_distance(
    real: torch.Tensor, fake: torch.Tensor, channels: int, dirs: torch.Tensor
) -> float:
    """Mean over all directions ``dirs`` [R, D, K] of the 1-D distances of the normalised sets."""
    mean_r, std_r = _normalisation(real, channels)
    mean_f, std_f = _normalisation(fake, channels)
    all_dirs = dirs.permute(1, 0, 2).reshape(dirs.shape[1], -1)  # [D, R * K]
    # Directions are independent: take them in chunks so that projections stay within budget.
    chunk = max(1, _PROJECTION_BUDGET // max(real.shape[0], fake.shape[0]))
    total = 0.0
    for start in range(0, all_dirs.shape[1], chunk):
        d = all_dirs[:, start : start + chunk]
        proj_r = _project(real, mean_r, std_r, d).sort(dim=0).values
        proj_f = _project(fake, mean_f, std_f, d).sort(dim=0).values
        total += float(_wasserstein_1d(proj_r, proj_f).to(torch.float64).sum())
    return total / all_dirs.shape[1]


class SlicedWassersteinDistance:
    """Accumulates Laplacian-pyramid descriptors of real and fake images; computes multi-scale SWD.

    Args:
        resolution: image size (square images), a power of two >= 16; the levels are
            ``resolution, resolution / 2, ..., 16``.
        num_images_hint: expected number of images per set; when given, descriptor buffers are
            allocated once at that size (no chunk concatenation at :meth:`compute`).
        nhood_size: side of the square neighbourhoods (descriptors), odd, <= 16.
        nhoods_per_image: neighbourhoods drawn per image and per level.
        dir_repeats: groups of random directions (the reference averages over repeats).
        dirs_per_repeat: random directions per group.
        seed: non-negative seed of the neighbourhood positions and of the directions.

    Example:
        >>> swd = SlicedWassersteinDistance(16, nhoods_per_image=16)
        >>> imgs = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
        >>> swd.update(imgs, "real")
        >>> swd.update(imgs, "fake")
        >>> swd.compute()
        {'swd_16': 0.0, 'swd_avg': 0.0}
    """

    def __init__(
        self,
        resolution: int,
        *,
        num_images_hint: int | None = None,
        nhood_size: int = 7,
        nhoods_per_image: int = 128,
        dir_repeats: int = 4,
        dirs_per_repeat: int = 128,
        seed: int = 0,
    ):
        self.resolutions = swd_resolutions(resolution)
        self.resolution = resolution
        if not isinstance(nhood_size, int) or nhood_size < 1 or nhood_size % 2 == 0 or nhood_size > _COARSEST:
            raise ConfigError(f"nhood_size must be an odd int in [1, {_COARSEST}], got {nhood_size!r}")
        for name, value in (
            ("nhoods_per_image", nhoods_per_image),
            ("dir_repeats", dir_repeats),
            ("dirs_per_repeat", dirs_per_repeat),
        ):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed must be a non-negative int, got {seed!r}")
        if num_images_hint is not None and (not isinstance(num_images_hint, int) or num_images_hint < 1):
            raise ConfigError(f"num_images_hint must be a positive int or None, got {num_images_hint!r}")
        self.num_images_hint = num_images_hint
        self.nhood_size = nhood_size
        self.nhoods_per_image = nhoods_per_image
        self.dir_repeats = dir_repeats
        self.dirs_per_repeat = dirs_per_repeat
        self.seed = seed
        self.channels: int | None = None
        self._device: torch.device | None = None
        self._store: dict[str, list[_Rows]] = {}
        self._count: dict[str, int] = {}
        self.reset()

    # -- accumulation -------------------------------------------------------------------------

    def reset(self, which: Which | None = None) -> None:
        """Forget the descriptors of one set (``"real"`` or ``"fake"``), or of both when ``None``.

        Resetting only ``"fake"`` keeps the real descriptors to score another generator.
        """
        names = ("real", "fake") if which is None else (self._check_which(which),)
        capacity = None if self.num_images_hint is None else self.num_images_hint * self.nhoods_per_image
        for name in names:
            self._store[name] = [_Rows(capacity) for _ in self.resolutions]
            self._count[name] = 0
        if all(self._count.get(n, 0) == 0 for n in ("real", "fake")):
            self.channels = None

    @property
    def num_images(self) -> dict[str, int]:
        """How many images each set has received: ``{"real": n, "fake": m}``."""
        return dict(self._count)

    @staticmethod
    def _check_which(which: str) -> str:
        if which not in ("real", "fake"):
            raise ConfigError(f"which must be 'real' or 'fake', got {which!r}")
        return which

    def _positions(self, first_index: int, count: int, device: torch.device) -> list[torch.Tensor]:
        """Neighbourhood centres per level: a list of [count, nhoods, 2] (y, x) long tensors."""
        half = self.nhood_size // 2
        u = np.stack(
            [
                np.random.default_rng([self.seed, _POSITION_STREAM, first_index + i]).random(
                    (len(self.resolutions), self.nhoods_per_image, 2)
                )
                for i in range(count)
            ],
            axis=1,
        )  # [levels, count, nhoods, 2] in [0, 1)
        out = []
        for level, res in enumerate(self.resolutions):
            centres = half + np.floor(u[level] * (res - 2 * half)).astype(np.int64)  # in [half, res - half - 1]
            out.append(torch.from_numpy(centres).to(device))
        return out

    def _descriptors(self, level: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """Neighbourhoods of a [B, C, S, S] level around [B, n, 2] centres -> [B * n, C * k * k]."""
        b, c, s, _ = level.shape
        k = self.nhood_size
        offsets = torch.arange(k, device=level.device) - k // 2
        ys = centres[:, :, 0, None] + offsets  # [B, n, k]
        xs = centres[:, :, 1, None] + offsets  # [B, n, k]
        flat_idx = (ys[:, :, :, None] * s + xs[:, :, None, :]).reshape(b, 1, -1)  # [B, 1, n * k * k]
        patches = torch.gather(level.reshape(b, c, s * s), 2, flat_idx.expand(b, c, -1))  # [B, C, n*k*k]
        patches = patches.view(b, c, -1, k * k).permute(0, 2, 1, 3)  # [B, n, C, k * k]
        return patches.reshape(-1, c * k * k).contiguous()

    def update(self, images: torch.Tensor, which: Which) -> None:
        """Add a batch of images to the real or the fake set.

        The result does not depend on how a set is split into batches: image ``i`` of a set
        always gets the same neighbourhoods.

        Args:
            images: ``(N, C, H, W)`` with ``H == W == resolution``, ``C`` the same for every call
                (1 or 3 in practice); ``uint8`` in ``[0, 255]`` or float in ``[-1, 1]``
                (values outside are clamped).
            which: ``"real"`` or ``"fake"``.
        """
        self._check_which(which)
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ShapeError(f"SWD images must be a (N, C, H, W) tensor, got {shape}")
        n, c, h, w = images.shape
        if h != self.resolution or w != self.resolution:
            raise ShapeError(
                f"SWD was set up for {self.resolution}x{self.resolution} images, got {h}x{w}; "
                f"resize the images or create the metric with resolution={h}"
            )
        if c < 1:
            raise ShapeError(f"SWD images need at least one channel, got shape {tuple(images.shape)}")
        if self.channels is not None and c != self.channels:
            raise ShapeError(
                f"SWD received {c}-channel images after {self.channels}-channel ones; "
                "real and fake images must have the same number of channels"
            )
        if n == 0:
            return
        pixels = _to_pixel_range(images)
        self.channels = c
        centres = self._positions(self._count[which], n, pixels.device)
        with torch.no_grad():
            for lod, level in enumerate(laplacian_pyramid(pixels, len(self.resolutions))):
                desc = self._descriptors(level, centres[lod])
                if self._device is None:
                    self._device = desc.device  # descriptors live where the first images came from
                self._store[which][lod].append(desc.to(self._device))
        self._count[which] += n

    # -- result -------------------------------------------------------------------------------

    def _directions(self, lod: int, dim: int, device: torch.device) -> torch.Tensor:
        """Unit random directions [dir_repeats, dim, dirs_per_repeat] for pyramid level ``lod``."""
        rng = np.random.default_rng([self.seed, _DIRECTION_STREAM, lod])
        dirs = rng.standard_normal((self.dir_repeats, dim, self.dirs_per_repeat))
        dirs /= np.sqrt(np.square(dirs).sum(axis=1, keepdims=True))
        return torch.from_numpy(dirs.astype(np.float32)).to(device)

    def compute(self) -> dict[str, float]:
        """The sliced Wasserstein distance at every level, x 1e3, and their mean.

        Returns:
            ``{"swd_<res>": ..., ..., "swd_avg": ...}`` with one key per pyramid level, finest
            first (e.g. ``swd_64``, ``swd_32``, ``swd_16``); values are >= 0, 0 for identical sets.

        Raises:
            ConfigError: if either set has received no image.
        """
        for name in ("real", "fake"):
            if self._count[name] == 0:
                raise ConfigError(f"SWD has no {name} images: call update(images, {name!r}) before compute()")
        assert self.channels is not None
        out: dict[str, float] = {}
        with torch.no_grad():
            for lod, res in enumerate(self.resolutions):
                real = self._store["real"][lod].tensor()
                fake = self._store["fake"][lod].tensor()
                dirs = self._directions(lod, real.shape[1], real.device)
                out[f"swd_{res}"] = _sliced_distance(real, fake, self.channels, dirs) * 1e3
        out["swd_avg"] = sum(out.values()) / len(self.resolutions)
        return out


def sliced_wasserstein(
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    nhood_size: int = 7,
    nhoods_per_image: int = 128,
    dir_repeats: int = 4,
    dirs_per_repeat: int = 128,
    seed: int = 0,
    batch_size: int = 64,
) -> dict[str, float]:
    """Multi-scale SWD between two image sets, in one call (see :class:`SlicedWassersteinDistance`).

    Args:
        real: ``(N, C, R, R)`` images, ``uint8`` in ``[0, 255]`` or float in ``[-1, 1]``; ``R`` a
            power of two >= 16.
        fake: ``(M, C, R, R)`` images, same channels and size as ``real``.
        nhood_size: side of the neighbourhoods.
        nhoods_per_image: neighbourhoods per image and level.
        dir_repeats: groups of random directions.
        dirs_per_repeat: directions per group.
        seed: seed of the positions and directions.
        batch_size: images processed at a time (does not change the result).

    Returns:
        ``{"swd_<res>": ..., "swd_avg": ...}``, each x 1e3.

    Example:
        >>> real = torch.rand(4, 1, 16, 16) * 2 - 1
        >>> sorted(sliced_wasserstein(real, real.flip(-1), nhoods_per_image=8))
        ['swd_16', 'swd_avg']
    """
    if real.ndim != 4 or fake.ndim != 4:
        raise ShapeError(
            f"sliced_wasserstein expects (N, C, H, W) tensors, got {tuple(real.shape)} and {tuple(fake.shape)}"
        )
    if real.shape[1:] != fake.shape[1:]:
        raise ShapeError(
            f"real and fake images must share (C, H, W), got {tuple(real.shape[1:])} and {tuple(fake.shape[1:])}"
        )
    if real.shape[-1] != real.shape[-2]:
        raise ShapeError(f"SWD needs square images, got {real.shape[-2]}x{real.shape[-1]}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    metric = SlicedWassersteinDistance(
        int(real.shape[-1]),
        num_images_hint=max(real.shape[0], fake.shape[0], 1),
        nhood_size=nhood_size,
        nhoods_per_image=nhoods_per_image,
        dir_repeats=dir_repeats,
        dirs_per_repeat=dirs_per_repeat,
        seed=seed,
    )
    for images, which in ((real, "real"), (fake, "fake")):
        for start in range(0, images.shape[0], batch_size):
            metric.update(images[start : start + batch_size], which)  # type: ignore[arg-type]
    return metric.compute()
