"""StyleGAN2: mapping network, synthesis network, generator and discriminator.

Paper: Karras et al., "Analyzing and Improving the Image Quality of StyleGAN", CVPR 2020.
Numerics and parameter layout match NVIDIA's stylegan2-ada-pytorch (``training/networks.py``):
the same module tree and state-dict names, the same constructor arguments, the same op order
(modulation, demodulation, noise before bias, ``conv_clamp``), so official checkpoints load and
reproduce the reference outputs (see ``tests/models/test_conformance.py``).

Two execution paths produce the same images:

* ``impl="reference"`` — the reference's inference path: per-sample weights in one grouped
  convolution, contiguous layout, float32 on the CPU (half precision in ``num_fp16_res`` blocks on
  CUDA, as in the reference).
* ``impl="fast"`` — activations are modulated around one shared-weight convolution in
  channels-last layout; under ``torch.autocast(..., dtype=torch.bfloat16)`` it runs in bfloat16.

Style space (S): every modulated layer's affine output is a *style code*; ``G.styles(ws)``
returns them by layer name and ``G.synthesis(styles=...)`` renders from them.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from latentshop.errors import ConfigError, ShapeError
from latentshop.models.layers import Conv2dLayer, FullyConnectedLayer, MinibatchStdLayer, normalize_2nd_moment
from latentshop.ops import ACTIVATIONS, bias_act, downsample2d, modulated_conv2d, setup_filter, upsample2d
from latentshop.ops.fast import compute_dtype, fast_modulated_layer, fast_torgb, fast_upsample2d

__all__ = [
    "MappingNetwork",
    "SynthesisLayer",
    "ToRGBLayer",
    "SynthesisBlock",
    "SynthesisNetwork",
    "Generator",
    "DiscriminatorBlock",
    "DiscriminatorEpilogue",
    "Discriminator",
    "StyleCodes",
    "NOISE_MODES",
    "IMPLS",
]

StyleCodes = OrderedDict[str, torch.Tensor]
"""Per-layer style vectors (the S space), ``{"b4.conv1": [N, C_in], "b4.torgb": [N, C_in], "b8.conv0": ..., ...}``."""

NOISE_MODES = ("const", "random", "none")
IMPLS = ("reference", "fast")


def _channels_by_resolution(
    resolutions: Sequence[int], channel_base: int, channel_max: int, channels: Mapping[Any, int] | None
) -> dict[int, int]:
    if channels is None:
        return {res: min(channel_base // res, channel_max) for res in resolutions}
    table = {int(k): int(v) for k, v in channels.items()}
    missing = [res for res in resolutions if res not in table]
    if missing:
        raise ConfigError(f"'channels' gives no width for resolutions {missing}; it has {sorted(table)}")
    return {res: table[res] for res in resolutions}


def _check_resolution(img_resolution: int) -> int:
    log2 = int(round(math.log2(img_resolution))) if img_resolution > 0 else 0
    if img_resolution < 4 or 2**log2 != img_resolution:
        raise ConfigError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
    return log2


def _compute_dtype(use_fp16: bool, x_device: torch.device, force_fp32: bool) -> torch.dtype:
    # Half precision only where the reference uses it and the hardware does it well: CUDA.
    return torch.float16 if use_fp16 and not force_fp32 and x_device.type == "cuda" else torch.float32


def _block_format(use_fp16: bool, channels_last: bool, x_device: torch.device, force_fp32: bool) -> tuple[torch.dtype, torch.memory_format]:
    """dtype and memory format of a block's activations.

    Without autocast: the reference's choice (float16 + channels-last in fp16 blocks on CUDA, else
    float32 contiguous). Under ``torch.autocast`` (our mixed-precision training and inference),
    every block keeps its activations in the autocast dtype and channels-last: casting them back to
    float32 at each block, as the reference's fp32 blocks do, only converts them again at the next
    convolution (about a tenth of a bfloat16 training step on the CPU).
    """
    if not force_fp32 and torch.is_autocast_enabled(x_device.type):
        return torch.get_autocast_dtype(x_device.type), torch.channels_last
    dtype = _compute_dtype(use_fp16, x_device, force_fp32)
    return dtype, torch.channels_last if channels_last and dtype == torch.float16 else torch.contiguous_format


class MappingNetwork(nn.Module):
    """``z`` (and label ``c``) to ``w``, broadcast to ``ws [N, num_ws, w_dim]``, with truncation.

    Args:
        z_dim: latent width (0 for the discriminator's label mapping).
        c_dim: label width (0 for unconditional models).
        w_dim: intermediate latent width.
        num_ws: number of ``w`` copies to output, or ``None`` for ``[N, w_dim]``.
        num_layers: dense layers.
        embed_features: label embedding width (default ``w_dim``).
        layer_features: hidden width (default ``w_dim``).
        activation: hidden activation.
        lr_multiplier: learning-rate multiplier of the dense layers.
        w_avg_beta: decay of the tracked average ``w`` (``None`` disables tracking and truncation).
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None = None,
        *,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool | None = None,
    ) -> torch.Tensor:
        """Map latents to ``ws``.

        Args:
            z: ``[N, z_dim]`` Gaussian latents (``None`` when ``z_dim == 0``).
            c: ``[N, c_dim]`` labels (``None`` or ``[N, 0]`` when unconditional).
            truncation_psi: ``w_avg + psi * (w - w_avg)``; 1 disables truncation.
            truncation_cutoff: truncate only the first this many of the ``num_ws`` copies.
            update_w_avg: track the running average (default: in training mode).

        Returns:
            ``[N, num_ws, w_dim]`` (or ``[N, w_dim]`` when ``num_ws`` is ``None``).
        """
        if z is None and c is None:
            raise ShapeError(f"mapping needs z [N, {self.z_dim}] (and c [N, {self.c_dim}] for conditional models)")
        device = (z if z is not None else c).device
        with torch.autocast(device.type, enabled=False):  # ws are small and steer everything: keep float32
            return self._forward(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_w_avg=update_w_avg)

    def _forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None,
        *,
        truncation_psi: float,
        truncation_cutoff: int | None,
        update_w_avg: bool | None,
    ) -> torch.Tensor:
        x = None
        if self.z_dim > 0:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ShapeError(f"z must be [N, {self.z_dim}], got {None if z is None else tuple(z.shape)}")
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ShapeError(
                    f"this model is conditional: c must be [N, {self.c_dim}] (one-hot class labels), "
                    f"got {None if c is None else tuple(c.shape)}"
                )
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)

        if update_w_avg is None:
            update_w_avg = self.training
        if update_w_avg and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if self.w_avg_beta is None:
                raise ConfigError("truncation needs w_avg, which this mapping network does not track")
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally upsampling) with noise, bias, activation and clamp."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.act_gain = ACTIVATIONS[activation].def_gain
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self,
        x: torch.Tensor,
        styles: torch.Tensor,
        *,
        noise_mode: str = "const",
        fused_modconv: bool = True,
        gain: float = 1.0,
    ) -> torch.Tensor:
        """``x [N, C_in, R / up, R / up]`` and ``styles [N, C_in]`` to ``[N, C_out, R, R]``."""
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            noise=self._noise(x, noise_mode),
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            flip_weight=self.up == 1,
            fused_modconv=fused_modconv,
        )
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=act_clamp)

    def _noise(self, x: torch.Tensor, noise_mode: str | torch.Tensor) -> torch.Tensor | None:
        """The noise added after the convolution, already scaled by ``noise_strength``.

        ``noise_mode`` is ``"const"``, ``"random"``, ``"none"`` or an explicit ``[N or 1, 1, R, R]`` map.
        """
        if isinstance(noise_mode, torch.Tensor):
            return noise_mode.to(x.device, torch.float32) * self.noise_strength if self.use_noise else None
        if self.use_noise and noise_mode == "random":
            return torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
        if self.use_noise and noise_mode == "const":
            return self.noise_const * self.noise_strength
        return None

    def _forward_fast(
        self,
        x: torch.Tensor,
        styles: torch.Tensor,
        *,
        noise_mode: str = "const",
        gain: float = 1.0,
        premodulated: bool = False,
        next_styles: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The ``impl="fast"`` forward: same result up to rounding, channels-last, in ``x.dtype``.

        ``premodulated``/``next_styles`` hand the style scaling of a layer's input to the layer
        before it (see :func:`~latentshop.ops.fast.fast_modulated_layer`).
        """
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return fast_modulated_layer(
            x, self.weight, styles, bias=self.bias, noise=self._noise(x, noise_mode), up=self.up, padding=self.padding,
            resample_filter=self.resample_filter, flip_weight=self.up == 1, activation=self.activation,
            gain=self.act_gain * gain, clamp=act_clamp, premodulated=premodulated, next_styles=next_styles,
        )

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, resolution={self.resolution}, up={self.up}"


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to image channels (no demodulation), bias and clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1, conv_clamp: float | None = None):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, styles: torch.Tensor, *, fused_modconv: bool = True) -> torch.Tensor:
        """``x [N, C_in, R, R]`` and ``styles [N, C_in]`` (the raw affine output) to ``[N, C_img, R, R]``."""
        x = modulated_conv2d(x, self.weight, styles * self.weight_gain, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)

    def _forward_fast(self, x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        """The ``impl="fast"`` forward: a batched matmul with per-sample ``[C_in, C_out]`` weights, float32 out."""
        if self.weight.shape[2:] != (1, 1):
            return self.forward(x, styles, fused_modconv=False).to(torch.float32)
        return fast_torgb(x, self.weight, styles * self.weight_gain, bias=self.bias, clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}"


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (upsampling) conv0, conv1, and toRGB/skip."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        **layer_kwargs: Any,
    ):
        super().__init__()
        if architecture not in ("orig", "skip", "resnet"):
            raise ConfigError(f"synthesis architecture must be 'orig', 'skip' or 'resnet', got {architecture!r}")
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.num_conv = 0
        self.num_torgb = 0

        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs,
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp, **layer_kwargs
        )
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2, resample_filter=resample_filter)

    def _layer_noise(self, noise_mode: Any, layer: str) -> Any:
        # A mapping of explicit noise maps is keyed by full layer name ("b8.conv0").
        if isinstance(noise_mode, Mapping):
            return noise_mode.get(f"b{self.resolution}.{layer}")  # None for a layer the block does not have
        return noise_mode

    def layer_names(self) -> list[str]:
        """Names of this block's modulated layers, in the order they consume ``ws``."""
        names = ([] if self.in_channels == 0 else ["conv0"]) + ["conv1"]
        return names + (["torgb"] if self.num_torgb else [])

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        styles: Mapping[str, torch.Tensor],
        *,
        noise_mode: str = "const",
        impl: str = "reference",
        force_fp32: bool = False,
        fused_modconv: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the block; ``styles`` maps ``conv0``/``conv1``/``torgb`` to ``[N, C_in]`` codes."""
        batch_size = next(iter(styles.values())).shape[0]
        device = styles["conv1"].device
        if impl == "fast":
            return self.forward_fast(x, img, styles, noise_mode=noise_mode)
        dtype, memory_format = _block_format(self.use_fp16, self.channels_last, device, force_fp32)
        if fused_modconv is None:
            fused_modconv = (not self.training) and (dtype == torch.float32 or batch_size == 1)

        if self.in_channels == 0:
            x = self.const.to(dtype=dtype).unsqueeze(0).repeat([batch_size, 1, 1, 1])
            x = x.contiguous(memory_format=memory_format)
        else:
            x = x.to(dtype=dtype)
            x = x.contiguous(memory_format=memory_format)

        noise0, noise1 = self._layer_noise(noise_mode, "conv0"), self._layer_noise(noise_mode, "conv1")
        if self.in_channels == 0:
            x = self.conv1(x, styles["conv1"], noise_mode=noise1, fused_modconv=fused_modconv)
        elif self.architecture == "resnet":
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x, styles["conv0"], noise_mode=noise0, fused_modconv=fused_modconv)
            x = self.conv1(x, styles["conv1"], noise_mode=noise1, fused_modconv=fused_modconv, gain=np.sqrt(0.5))
            x = y + x
        else:
            x = self.conv0(x, styles["conv0"], noise_mode=noise0, fused_modconv=fused_modconv)
            x = self.conv1(x, styles["conv1"], noise_mode=noise1, fused_modconv=fused_modconv)

        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, styles["torgb"], fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32).contiguous(memory_format=torch.contiguous_format)
            img = img + y if img is not None else y
        return x, img

    def forward_fast(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        styles: Mapping[str, torch.Tensor],
        *,
        noise_mode: str = "const",
        premodulated: bool = False,
        next_styles: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The ``impl="fast"`` block: channels-last activations in the autocast dtype (float32 without
        autocast), never cast back between layers; the image skip path stays float32.

        Args:
            premodulated: ``x`` already carries conv0's style scaling (applied by the block before).
            next_styles: ``[N, C_out]`` styles of the next block's conv0: the output ``x`` is returned
                scaled by them (one pass and one bfloat16 rounding fewer), and toRGB divides them out.
        """
        batch_size = styles["conv1"].shape[0]
        dtype = compute_dtype(styles["conv1"].device)
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).expand(batch_size, -1, -1, -1)  # float32: conv1 rounds const * styles once
        else:
            x = x.to(dtype=dtype)
        x = x.contiguous(memory_format=torch.channels_last)

        noise0, noise1 = self._layer_noise(noise_mode, "conv0"), self._layer_noise(noise_mode, "conv1")
        if self.in_channels == 0:
            x = self.conv1._forward_fast(x, styles["conv1"], noise_mode=noise1, next_styles=next_styles)
        elif self.architecture == "resnet":
            if premodulated or next_styles is not None:
                raise ConfigError("style folding across blocks does not apply to the resnet architecture")
            y = self.skip(x, gain=np.sqrt(0.5)).to(dtype)
            x = self.conv0._forward_fast(x, styles["conv0"], noise_mode=noise0)
            x = self.conv1._forward_fast(x, styles["conv1"], noise_mode=noise1, gain=np.sqrt(0.5))
            x = y + x
        else:
            # conv0's output feeds conv1 alone, so conv0 applies conv1's style scaling in its epilogue.
            x = self.conv0._forward_fast(
                x, styles["conv0"], noise_mode=noise0, premodulated=premodulated, next_styles=styles["conv1"]
            )
            x = self.conv1._forward_fast(x, styles["conv1"], noise_mode=noise1, premodulated=True, next_styles=next_styles)

        if img is not None:
            img = fast_upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            rgb_styles = styles["torgb"] if next_styles is None else styles["torgb"] / next_styles
            y = self.torgb._forward_fast(x, rgb_styles)
            img = img + y if img is not None else y
        return x, img

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, architecture={self.architecture}, use_fp16={self.use_fp16}"


class SynthesisNetwork(nn.Module):
    """``ws [N, num_ws, w_dim]`` (or style codes) to images ``[N, img_channels, R, R]``.

    Args:
        w_dim: intermediate latent width.
        img_resolution: output resolution, a power of two.
        img_channels: output channels (3 for RGB, 1 for grayscale).
        channel_base: overall width: a block at resolution ``r`` has ``min(channel_base // r, channel_max)`` channels.
        channel_max: maximum width.
        num_fp16_res: run the highest this many resolutions in float16 on CUDA (always float32 on the CPU).
        channels: explicit ``{resolution: width}`` table (overrides ``channel_base``/``channel_max``;
            used for checkpoints whose widths follow no formula).
        **block_kwargs: ``architecture``, ``conv_clamp``, ``resample_filter``, ``fp16_channels_last``, ...
    """

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        channels: Mapping[Any, int] | None = None,
        **block_kwargs: Any,
    ):
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = _check_resolution(img_resolution)
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(2, self.img_resolution_log2 + 1)]
        self.channels_dict = _channels_by_resolution(self.block_resolutions, channel_base, channel_max, channels)
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        self.num_ws = 0
        self.layer_ws: OrderedDict[str, int] = OrderedDict()  # style-layer name -> index into ws
        for res in self.block_resolutions:
            in_channels = self.channels_dict[res // 2] if res > 4 else 0
            block = SynthesisBlock(
                in_channels, self.channels_dict[res], w_dim=w_dim, resolution=res, img_channels=img_channels,
                is_last=res == img_resolution, use_fp16=res >= fp16_resolution, **block_kwargs,
            )
            setattr(self, f"b{res}", block)
            for i, name in enumerate(block.layer_names()):
                self.layer_ws[f"b{res}.{name}"] = self.num_ws + i
            self.num_ws += block.num_conv
            if res == img_resolution:
                self.num_ws += block.num_torgb

    def blocks(self) -> Iterator[tuple[int, SynthesisBlock]]:
        for res in self.block_resolutions:
            yield res, getattr(self, f"b{res}")

    def styles(self, ws: torch.Tensor) -> StyleCodes:
        """Style codes (the S space): each modulated layer's affine output, by layer name.

        Args:
            ws: ``[N, num_ws, w_dim]``.

        Returns:
            ``{"b4.conv1": [N, C], "b4.torgb": [N, C], "b8.conv0": [N, C], ...}`` in synthesis order.
            ToRGB codes are the raw affine output (before the layer's fixed weight gain).
        """
        self._check_ws(ws)
        ws = ws.to(torch.float32)
        out: StyleCodes = OrderedDict()
        # Style codes are small and every activation is scaled by them: keep them float32 under autocast.
        with torch.autocast(ws.device.type, enabled=False):
            for name, idx in self.layer_ws.items():
                out[name] = self.get_submodule(name).affine(ws[:, idx])
        return out

    def noise_layers(self) -> "OrderedDict[str, int]":
        """Layers that take noise, with their resolution: ``{"b4.conv1": 4, "b8.conv0": 8, ...}``.

        ``synthesis(ws, noise_mode={name: [N or 1, 1, R, R] map})`` uses explicit (unscaled) maps.
        """
        return OrderedDict(
            (name, self.get_submodule(name).resolution) for name in self.layer_ws if not name.endswith("torgb")
        )

    def _check_ws(self, ws: torch.Tensor) -> None:
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ShapeError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")

    def forward(
        self,
        ws: torch.Tensor | None = None,
        *,
        styles: Mapping[str, torch.Tensor] | None = None,
        noise_mode: str | Mapping[str, torch.Tensor] = "const",
        impl: str = "reference",
        force_fp32: bool = False,
        fused_modconv: bool | None = None,
    ) -> torch.Tensor:
        """Render images from ``ws`` or from style codes.

        Args:
            ws: ``[N, num_ws, w_dim]``; ignored when ``styles`` is given.
            styles: style codes as returned by :meth:`styles` (all layers).
            noise_mode: ``"const"`` (the stored noise maps), ``"random"``, ``"none"``, or a mapping of
                explicit unscaled maps ``{layer: [N or 1, 1, R, R]}`` (see :meth:`noise_layers`).
            impl: ``"reference"`` (the reference's op order) or ``"fast"`` (activation modulation,
                channels-last; use ``torch.autocast`` for bfloat16).
            force_fp32: compute ``num_fp16_res`` blocks in float32 on CUDA too.
            fused_modconv: override the reference path's choice of grouped convolution.

        Returns:
            ``[N, img_channels, img_resolution, img_resolution]`` float32, nominally in ``[-1, 1]``.
        """
        if isinstance(noise_mode, Mapping):
            missing = [name for name in self.noise_layers() if name not in noise_mode]
            if missing:
                raise ShapeError(f"explicit noise maps lack layers {missing}; see SynthesisNetwork.noise_layers()")
        elif noise_mode not in NOISE_MODES:
            raise ConfigError(f"noise_mode must be one of {NOISE_MODES} or a mapping of noise maps, got {noise_mode!r}")
        if impl not in IMPLS:
            raise ConfigError(f"impl must be one of {IMPLS}, got {impl!r}")
        if styles is None:
            if ws is None:
                raise ShapeError("synthesis needs ws [N, num_ws, w_dim] or styles")
            styles = self.styles(ws)
        else:
            missing = [name for name in self.layer_ws if name not in styles]
            if missing:
                raise ShapeError(f"styles lack layers {missing}")
        if impl == "fast":
            return self._forward_fast(styles, noise_mode=noise_mode)
        x = img = None
        for res, block in self.blocks():
            block_styles = {name: styles[f"b{res}.{name}"] for name in block.layer_names()}
            x, img = block(
                x, img, block_styles, noise_mode=noise_mode, impl=impl, force_fp32=force_fp32, fused_modconv=fused_modconv
            )
        return img.contiguous()

    def _forward_fast(self, styles: Mapping[str, torch.Tensor], *, noise_mode: str) -> torch.Tensor:
        # Each block hands the next block's conv0 style scaling to its own last epilogue, unless the
        # architecture reuses the block input (resnet) or a style is exactly zero (toRGB divides by it).
        blocks = list(self.blocks())
        x = img = None
        premodulated = False
        # Under autograd (training, inversion) toRGB does not divide by the next block's styles:
        # a style that crosses zero while training would make that quotient blow up.
        training = torch.is_grad_enabled() and (
            any(s.requires_grad for s in styles.values()) or any(p.requires_grad for p in self.parameters())
        )
        for i, (res, block) in enumerate(blocks):
            block_styles = {name: styles[f"b{res}.{name}"] for name in block.layer_names()}
            next_styles = None
            if i + 1 < len(blocks) and block.architecture != "resnet" and not training:
                candidate = styles[f"b{blocks[i + 1][0]}.conv0"]
                if bool((candidate != 0).all()):
                    next_styles = candidate
            x, img = block.forward_fast(x, img, block_styles, noise_mode=noise_mode, premodulated=premodulated, next_styles=next_styles)
            premodulated = next_styles is not None
        return img.contiguous()

    def extra_repr(self) -> str:
        return f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, img_channels={self.img_channels}"


class Generator(nn.Module):
    """StyleGAN2 generator: ``G(z, c) = synthesis(mapping(z, c))``.

    Constructor arguments are NVIDIA's, so a checkpoint's stored kwargs rebuild it directly.

    Args:
        z_dim: input latent width.
        c_dim: label width (0 for unconditional).
        w_dim: intermediate latent width.
        img_resolution: output resolution.
        img_channels: output channels.
        mapping_kwargs: arguments of :class:`MappingNetwork` (``num_layers``, ``lr_multiplier``, ...).
        synthesis_kwargs: arguments of :class:`SynthesisNetwork` (``channel_base``, ``channel_max``,
            ``num_fp16_res``, ``conv_clamp``, ``architecture``, ``channels``, ...).

    Example:
        >>> G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3,
        ...               synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()
        >>> G(torch.randn(2, 8)).shape
        torch.Size([2, 3, 8, 8])
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: Mapping[str, Any] | None = None,
        synthesis_kwargs: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        synthesis_kwargs = dict(synthesis_kwargs or {})
        self.init_kwargs = copy.deepcopy(
            dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                 mapping_kwargs=mapping_kwargs, synthesis_kwargs=synthesis_kwargs)
        )
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    def styles(self, ws: torch.Tensor) -> StyleCodes:
        """Style codes of ``ws`` (see :meth:`SynthesisNetwork.styles`)."""
        return self.synthesis.styles(ws)

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        *,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        **synthesis_kwargs: Any,
    ) -> torch.Tensor:
        """``z [N, z_dim]`` (and ``c [N, c_dim]``) to images ``[N, img_channels, R, R]``."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)

    def extra_repr(self) -> str:
        return (
            f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}, "
            f"img_resolution={self.img_resolution}, img_channels={self.img_channels}"
        )


class DiscriminatorBlock(nn.Module):
    """One resolution of the discriminator: (fromRGB), conv0, downsampling conv1, and residual skip."""

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        resolution: int,
        img_channels: int,
        first_layer_idx: int = 0,
        architecture: str = "resnet",
        activation: str = "lrelu",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        freeze_layers: int = 0,
    ):
        super().__init__()
        if in_channels not in (0, tmp_channels):
            raise ConfigError(f"discriminator block input width {in_channels} must be 0 or {tmp_channels}")
        if architecture not in ("orig", "skip", "resnet"):
            raise ConfigError(f"discriminator architecture must be 'orig', 'skip' or 'resnet', got {architecture!r}")
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        conv = dict(activation=activation, conv_clamp=conv_clamp)
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, **conv)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, **conv)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, down=2, resample_filter=resample_filter, **conv)
        if architecture == "resnet":
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2, resample_filter=resample_filter)

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor | None, *, force_fp32: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        device = (x if x is not None else img).device
        dtype, memory_format = _block_format(self.use_fp16, self.channels_last, device, force_fp32)
        if x is not None:
            x = x.to(dtype=dtype).contiguous(memory_format=memory_format)
        if self.in_channels == 0 or self.architecture == "skip":
            img = img.to(dtype=dtype).contiguous(memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=np.sqrt(0.5))
            x = y + x
        else:
            x = self.conv1(self.conv0(x))
        return x, img

    def forward_fast(self, x: torch.Tensor | None, img: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The ``impl="fast"`` block: channels-last activations in the compute dtype (the autocast
        dtype, else float32) and the layers' fused forms (:meth:`Conv2dLayer.forward_fast`)."""
        device = (x if x is not None else img).device
        dtype = compute_dtype(device)
        if x is not None:
            x = x.to(dtype=dtype).contiguous(memory_format=torch.channels_last)
        if self.in_channels == 0 or self.architecture == "skip":
            img = img.to(dtype=dtype).contiguous(memory_format=torch.channels_last)
            y = self.fromrgb.forward_fast(img)
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip.forward_fast(x, gain=np.sqrt(0.5))
            x = self.conv1.forward_fast(self.conv0.forward_fast(x), gain=np.sqrt(0.5))
            x = y.add_(x) if not (torch.is_grad_enabled() and (x.requires_grad or y.requires_grad)) else y + x
        else:
            x = self.conv1.forward_fast(self.conv0.forward_fast(x))
        return x, img

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, architecture={self.architecture}, use_fp16={self.use_fp16}"


class DiscriminatorEpilogue(nn.Module):
    """The 4x4 head: minibatch standard deviation, conv, dense, output (projected onto the label embedding)."""

    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        activation: str = "lrelu",
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.architecture = architecture
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation, conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, img: torch.Tensor | None, cmap: torch.Tensor | None) -> torch.Tensor:
        x = x.to(dtype=torch.float32).contiguous()
        if self.architecture == "skip":
            x = x + self.fromrgb(img.to(dtype=torch.float32).contiguous())
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """StyleGAN2 discriminator (residual by default), with conditional projection when ``c_dim > 0``.

    Constructor arguments are NVIDIA's; ``channels`` optionally gives an explicit width table.

    Example:
        >>> D = Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=128, channel_max=16)
        >>> D(torch.randn(4, 3, 16, 16)).shape
        torch.Size([4, 1])
    """

    def __init__(
        self,
        c_dim: int,
        img_resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = None,
        cmap_dim: int | None = None,
        block_kwargs: Mapping[str, Any] | None = None,
        mapping_kwargs: Mapping[str, Any] | None = None,
        epilogue_kwargs: Mapping[str, Any] | None = None,
        channels: Mapping[Any, int] | None = None,
    ):
        super().__init__()
        block_kwargs = dict(block_kwargs or {})
        mapping_kwargs = dict(mapping_kwargs or {})
        epilogue_kwargs = dict(epilogue_kwargs or {})
        self.init_kwargs = copy.deepcopy(
            dict(c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels, architecture=architecture,
                 channel_base=channel_base, channel_max=channel_max, num_fp16_res=num_fp16_res, conv_clamp=conv_clamp,
                 cmap_dim=cmap_dim, block_kwargs=block_kwargs, mapping_kwargs=mapping_kwargs, epilogue_kwargs=epilogue_kwargs)
        )
        if channels is not None:
            self.init_kwargs["channels"] = {int(k): int(v) for k, v in channels.items()}
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = _check_resolution(img_resolution)
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(self.img_resolution_log2, 2, -1)]
        channels_dict = _channels_by_resolution(self.block_resolutions + [4], channel_base, channel_max, channels)
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        if cmap_dim is None:
            cmap_dim = channels_dict[4]
        if c_dim == 0:
            cmap_dim = 0
        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        for res in self.block_resolutions:
            in_channels = channels_dict[res] if res < img_resolution else 0
            block = DiscriminatorBlock(
                in_channels, channels_dict[res], channels_dict[res // 2], resolution=res,
                use_fp16=res >= fp16_resolution, **block_kwargs, **common,
            )
            setattr(self, f"b{res}", block)
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **mapping_kwargs)
        self.b4 = DiscriminatorEpilogue(channels_dict[4], cmap_dim=cmap_dim, resolution=4, **epilogue_kwargs, **common)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None, *, force_fp32: bool = False, impl: str = "reference") -> torch.Tensor:
        """``img [N, img_channels, R, R]`` (and ``c [N, c_dim]``) to logits ``[N, 1]``.

        ``impl="fast"`` runs the blocks channels-last in the compute dtype with fused element-wise
        passes (the same logits up to rounding); ``"reference"`` keeps the reference's op order.
        """
        expected = (self.img_channels, self.img_resolution, self.img_resolution)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise ShapeError(f"D expects images [N, {', '.join(map(str, expected))}], got {tuple(img.shape)}")
        if impl not in IMPLS:
            raise ConfigError(f"impl must be one of {IMPLS}, got {impl!r}")
        x = None
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            if impl == "fast" and not force_fp32:
                x, img = block.forward_fast(x, img)
            else:
                x, img = block(x, img, force_fp32=force_fp32)
        cmap = None
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ShapeError(f"this discriminator is conditional: c must be [N, {self.c_dim}]")
            cmap = self.mapping(None, c)
        return self.b4(x, img, cmap)
