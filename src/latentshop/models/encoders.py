"""Encoders that map an image to a StyleGAN2 latent in one pass: pSp, e4e and ReStyle.

- **pSp** (Richardson et al. 2021, "Encoding in Style: a StyleGAN Encoder for Image-to-Image
  Translation"; eladrich/pixel2style2pixel): a feature pyramid over a residual backbone, one
  map-to-style head per W+ layer (coarse layers read the deepest, smallest map, fine layers the
  largest), the heads' outputs added to the generator's average ``w``.
- **e4e** (Tov et al. 2021, "Designing an Encoder for StyleGAN Image Manipulation";
  omertov/encoder4editing): the same pyramid, but the first head gives one base ``w`` and every
  other head an offset from it (``w_i = w_0 + Δ_i``). Training grows the offsets one layer at a time
  and keeps them small, and a latent discriminator keeps the codes near W (see
  :mod:`latentshop.training.encoder`); :class:`LatentDiscriminator` is that network.
- **ReStyle** (Alaluf et al. 2021, "ReStyle: A Residual-Based StyleGAN Encoder via Iterative
  Refinement"; yuval-alaluf/restyle-encoder): either encoder with ``restyle=True`` takes the target
  concatenated with the current reconstruction and predicts a residual added to the current latent;
  it starts from the average ``w`` and its rendering, and runs N times.

Sized for the CPU: the default backbone (32-64-128-256 channels, one residual block per stage) and
96-channel style heads hold about 4.6M parameters at 64 px (pSp's IR-SE-50 holds about 267M at
256 px); ``widths``, ``blocks`` and ``style_channels`` make it larger, with the same code on a GPU.
The backbone is plain residual blocks with leaky ReLU and no normalisation, so an image's code never
depends on the rest of its batch.

Example:
    >>> import torch
    >>> E = Encoder(kind="e4e", img_resolution=32, img_channels=3, num_ws=8, w_dim=16,
    ...             widths=(8, 16, 16, 16), style_channels=16)
    >>> x = torch.zeros(2, 3, 32, 32)
    >>> E(x, E.start_ws(2), E.start_image(2)).shape
    torch.Size([2, 8, 16])
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from latentshop.errors import ConfigError, ShapeError

__all__ = ["ENCODER_KINDS", "Encoder", "LatentDiscriminator", "list_encoders", "style_group"]

#: the encoder kinds (each can be trained for ReStyle iterations with ``restyle=True``)
ENCODER_KINDS = ("psp", "e4e")


def list_encoders() -> list[str]:
    """Names of the encoder kinds.

    Example:
        >>> list_encoders()
        ['e4e', 'psp']
    """
    return sorted(ENCODER_KINDS)


def style_group(index: int) -> str:
    """The pyramid level a W+ layer reads: ``coarse`` (ws 0-3: 4-8 px), ``middle`` (4-7: 16-32 px) or
    ``fine`` (8+), the split of :data:`latentshop.editing.edits.layer_groups`."""
    return "coarse" if index < 4 else "middle" if index < 8 else "fine"


class _ResBlock(nn.Module):
    """Pre-activation residual block that may halve the resolution."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv0 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.conv1 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1, stride, 0, bias=False) if (cin != cout or stride != 1) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv0(F.leaky_relu(x, 0.2))
        y = self.conv1(F.leaky_relu(y, 0.2))
        return (self.skip(x) + y) * (0.5**0.5)


class _StyleHead(nn.Module):
    """pSp's map-to-style block: stride-2 convolutions down to 1x1, then a linear layer to ``w``.

    The linear layer starts at zero, so an untrained head adds nothing to the latent it refines.
    """

    def __init__(self, channels: int, size: int, w_dim: int):
        super().__init__()
        n = max(1, int(math.log2(size)))
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, 2, 1) for _ in range(n))
        self.linear = nn.Linear(channels, w_dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        return self.linear(x.mean(dim=(2, 3)))  # [N, w_dim] (the map is 1x1 by now)


class Encoder(nn.Module):
    """pSp or e4e encoder for one generator's W+ (optionally ReStyle's residual form).

    Args:
        kind: ``"psp"`` (one head per layer) or ``"e4e"`` (base ``w`` + per-layer offsets).
        img_resolution: the generator's image side (a power of two, 16-1024).
        img_channels: the generator's image channels (1 or 3).
        num_ws: the generator's number of W+ layers.
        w_dim: the generator's ``w`` width.
        restyle: take ``image ⊕ current reconstruction`` and refine a given latent (ReStyle).
        widths: backbone channels: a full-resolution stem, then one stage per further entry, each
            halving the resolution; the last three stages feed the fine, middle and coarse heads.
        blocks: residual blocks per stage.
        style_channels: channels of the feature pyramid and the style heads.

    Buffers ``w_avg [w_dim]`` and ``avg_image [C, R, R]`` (the generator's mean ``w`` and its
    rendering) are filled by the trainer and saved with the weights: they are the starting point.
    """

    def __init__(self, *, kind: str = "e4e", img_resolution: int = 64, img_channels: int = 3, num_ws: int = 10,
                 w_dim: int = 256, restyle: bool = True, widths: Sequence[int] = (32, 64, 128, 256), blocks: int = 1,
                 style_channels: int = 96):
        super().__init__()
        if kind not in ENCODER_KINDS:
            raise ConfigError(f"unknown encoder kind {kind!r}; kinds are {', '.join(list_encoders())}")
        widths = [int(c) for c in widths]
        if len(widths) < 4 or any(c < 1 for c in widths):
            raise ConfigError(f"widths needs a stem and at least three stages of positive widths, got {widths}")
        if img_resolution < 16 or img_resolution & (img_resolution - 1) or img_resolution >> (len(widths) - 1) < 1:
            raise ConfigError(f"img_resolution must be a power of two >= 16 that {len(widths) - 1} halvings keep >= 1 px, "
                              f"got {img_resolution}")
        if img_channels not in (1, 3) or num_ws < 1 or w_dim < 1 or blocks < 1 or style_channels < 1:
            raise ConfigError(f"bad encoder size: channels {img_channels}, num_ws {num_ws}, w_dim {w_dim}, "
                              f"blocks {blocks}, style_channels {style_channels}")
        self.init_kwargs: dict[str, Any] = dict(kind=kind, img_resolution=img_resolution, img_channels=img_channels,
                                                num_ws=num_ws, w_dim=w_dim, restyle=restyle, widths=widths,
                                                blocks=blocks, style_channels=style_channels)
        self.kind, self.restyle = kind, restyle
        self.img_resolution, self.img_channels, self.num_ws, self.w_dim = img_resolution, img_channels, num_ws, w_dim
        self.stem = nn.Conv2d(img_channels * (2 if restyle else 1), widths[0], 3, 1, 1)
        stages = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            stages.append(nn.Sequential(_ResBlock(cin, cout, 2), *[_ResBlock(cout, cout, 1) for _ in range(blocks - 1)]))
        self.stages = nn.ModuleList(stages)
        # Feature pyramid over the last three stages: 0 = fine (largest map), 1 = middle, 2 = coarse.
        self.lateral = nn.ModuleList(nn.Conv2d(c, style_channels, 1) for c in widths[-3:])
        sizes = [img_resolution >> (len(widths) - 1 - k) for k in (2, 1, 0)]  # fine, middle, coarse map sides
        level = {"fine": 0, "middle": 1, "coarse": 2}
        self.head_level = [level[style_group(i)] for i in range(num_ws)]
        self.heads = nn.ModuleList(_StyleHead(style_channels, sizes[lv], w_dim) for lv in self.head_level)
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.register_buffer("avg_image", torch.zeros(img_channels, img_resolution, img_resolution))

    # -- starting points ---------------------------------------------------------------------------
    def start_ws(self, n: int) -> torch.Tensor:
        """The first latent of a ReStyle run: the average ``w`` at every layer ``[n, num_ws, w_dim]``."""
        return self.w_avg.view(1, 1, -1).expand(n, self.num_ws, -1).clone()

    def start_image(self, n: int) -> torch.Tensor:
        """The rendering of :meth:`start_ws` ``[n, C, R, R]``."""
        return self.avg_image.unsqueeze(0).expand(n, -1, -1, -1).clone()

    # -- forward -----------------------------------------------------------------------------------
    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Fine, middle and coarse feature maps of the input."""
        feats = []
        # channels-last: oneDNN's fastest layout on the CPU, for inference and training alike
        h = self.stem(x.contiguous(memory_format=torch.channels_last))
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        c_fine, c_mid, c_coarse = feats[-3:]
        p_coarse = self.lateral[2](c_coarse)
        p_mid = F.interpolate(p_coarse, scale_factor=2, mode="bilinear", align_corners=False) + self.lateral[1](c_mid)
        p_fine = F.interpolate(p_mid, scale_factor=2, mode="bilinear", align_corners=False) + self.lateral[0](c_fine)
        return [p_fine, p_mid, p_coarse]

    def codes(self, x: torch.Tensor, *, num_deltas: int | None = None) -> torch.Tensor:
        """The heads' outputs ``[N, num_ws, w_dim]``: pSp's per-layer codes, or e4e's ``w_0 + Δ_i``
        (only the first ``num_deltas`` offsets, for progressive training; ``None``: all)."""
        p = self.pyramid(x)
        out = torch.stack([head(p[lv]) for head, lv in zip(self.heads, self.head_level)], dim=1)
        if self.kind == "e4e":
            base, deltas = out[:, :1], out[:, 1:]
            if num_deltas is not None and num_deltas < deltas.shape[1]:
                keep = (torch.arange(deltas.shape[1], device=x.device) < num_deltas).to(deltas.dtype).view(1, -1, 1)
                deltas = deltas * keep
            out = torch.cat([base, base + deltas], dim=1)
        return out

    def deltas(self, ws: torch.Tensor) -> torch.Tensor:
        """e4e's offsets ``ws[:, i] - ws[:, 0]`` for ``i >= 1`` (``[N, num_ws - 1, w_dim]``)."""
        return ws[:, 1:] - ws[:, :1]

    def forward(self, x: torch.Tensor, ws: torch.Tensor | None = None, image: torch.Tensor | None = None, *,
                num_deltas: int | None = None) -> torch.Tensor:
        """One encoder pass.

        Args:
            x: targets ``(N, C, R, R)`` in ``[-1, 1]``.
            ws: the latent to refine ``(N, num_ws, w_dim)`` (ReStyle; default the average ``w``).
            image: its rendering ``(N, C, R, R)`` (ReStyle; default :meth:`start_image`).
            num_deltas: e4e's active offsets (training only).

        Returns:
            ``ws (N, num_ws, w_dim)``: the refined latent (pSp: ``w_avg + codes``).
        """
        n = x.shape[0]
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.img_channels, self.img_resolution, self.img_resolution):
            raise ShapeError(f"the encoder takes [N, {self.img_channels}, {self.img_resolution}, {self.img_resolution}] "
                             f"images, got {tuple(x.shape)}")
        if ws is None:
            ws = self.start_ws(n).to(x.device)
        if self.restyle:
            if image is None:
                image = self.start_image(n).to(x.device)
            x = torch.cat([x, image.to(x.dtype)], dim=1)
        return ws + self.codes(x, num_deltas=num_deltas)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class LatentDiscriminator(nn.Module):
    """e4e's latent discriminator: an MLP telling mapped ``w`` from an encoder's codes.

    Args:
        w_dim: the ``w`` width.
        hidden: hidden width.
        layers: hidden layers.

    Example:
        >>> LatentDiscriminator(8, hidden=16)(torch.zeros(3, 8)).shape
        torch.Size([3])
    """

    def __init__(self, w_dim: int, *, hidden: int = 256, layers: int = 4):
        super().__init__()
        self.init_kwargs = dict(w_dim=w_dim, hidden=hidden, layers=layers)
        dims = [w_dim] + [hidden] * layers
        self.body = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(dims[-1], 1)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        for fc in self.body:
            w = F.leaky_relu(fc(w), 0.2)
        return self.out(w).squeeze(-1)
