"""Building blocks shared by latentshop's networks: equalized-learning-rate layers.

Parameter names, initialisation and runtime weight scaling follow NVIDIA's
stylegan2-ada-pytorch (``FullyConnectedLayer``, ``Conv2dLayer``, ``MinibatchStdLayer``), so that
official state dicts load unchanged and produce the same numbers.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from latentshop.ops import ACTIVATIONS, bias_act, conv2d_resample, setup_filter
from latentshop.ops.fast import compute_dtype, fir_taps
from latentshop.ops.fused import bias_act_fused, depthwise_fir, homogeneous_slope
from latentshop.ops.upfirdn2d import filter_size

__all__ = ["FullyConnectedLayer", "Conv2dLayer", "MinibatchStdLayer", "normalize_2nd_moment"]


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale ``x`` so that its mean square along ``dim`` is one (StyleGAN's pixel norm)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalized learning rate: weights are stored unscaled and scaled at run time.

    Args:
        in_features: input width.
        out_features: output width.
        bias: learn a bias.
        activation: a name from :data:`latentshop.ops.ACTIVATIONS`.
        lr_multiplier: learning-rate multiplier (0.01 in the mapping network).
        bias_init: initial bias value (1 for the style affines, so styles start at one).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [N, in_features] -> [N, out_features]``."""
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class Conv2dLayer(nn.Module):
    """Convolution with equalized learning rate, optional FIR up/down-sampling, bias, activation and clamp.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel size (padding is ``kernel_size // 2``).
        bias: learn a bias.
        activation: activation name.
        up: upsampling factor.
        down: downsampling factor.
        resample_filter: FIR taps used when resampling.
        conv_clamp: clamp the output to ``[-conv_clamp, conv_clamp]`` (scaled by ``gain``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = ACTIVATIONS[activation].def_gain
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """``x [N, C_in, H, W] -> [N, C_out, H * up // down, W * up // down]``."""
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = conv2d_resample(
            x, w.to(x.dtype), f=self.resample_filter, up=self.up, down=self.down, padding=self.padding, flip_weight=self.up == 1
        )
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=act_clamp)

    def forward_fast(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """The same layer in the fast path's form: channels-last in the compute dtype (the autocast
        dtype, else float32), the FIR filter as one depthwise convolution, and bias, activation,
        gains and clamp in one fused pass (:func:`~latentshop.ops.fused.bias_act_fused`)."""
        slope = homogeneous_slope(self.activation, ACTIVATIONS[self.activation].def_alpha)
        kernel = self.weight.shape[-1]
        if slope is None or self.up != 1 or self.padding != kernel // 2:
            return self.forward(x, gain)
        dtype = compute_dtype(x.device)
        x = x.to(dtype).contiguous(memory_format=torch.channels_last)
        w = self.weight.to(dtype)
        if self.down > 1:
            fw, _ = filter_size(self.resample_filter)
            if kernel == 1:
                # filter and decimate in one strided depthwise convolution, then the 1x1 at 1/4 of the pixels
                pad = (fw - self.down + 1) // 2
                if pad != (fw - self.down) // 2:
                    return self.forward(x, gain)
                taps, pad = fir_taps(self.resample_filter, x.shape[1], pad, pad, 1.0, dtype)
                x = depthwise_fir(x, taps, padding=pad, stride=self.down)
                y = F.conv2d(x, w)
            else:
                left, right = self.padding + (fw - self.down + 1) // 2, self.padding + (fw - self.down) // 2
                taps, pad = fir_taps(self.resample_filter, x.shape[1], left, right, 1.0, dtype)
                x = depthwise_fir(x, taps, padding=pad)
                y = F.conv2d(x, w, stride=self.down)
        elif kernel == 1 and x.shape[1] == 1:
            # fromRGB of a grey image: an outer product, which oneDNN's 1-channel convolution does slowly
            y = F.linear(x.permute(0, 2, 3, 1), w.flatten(1)).permute(0, 3, 1, 2)
        else:
            y = F.conv2d(x, w, padding=self.padding)
        y = y.contiguous(memory_format=torch.channels_last)
        scale = self.weight_gain * self.act_gain * gain
        bias = None if self.bias is None else (self.bias.to(torch.float32) * (self.act_gain * gain)).reshape(1, -1, 1, 1)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act_fused(y, scale, bias=bias, alpha=slope, clamp=clamp)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, activation={self.activation}, "
            f"up={self.up}, down={self.down}"
        )


class MinibatchStdLayer(nn.Module):
    """Append the standard deviation across groups of samples as extra feature maps.

    Args:
        group_size: samples per group (clipped to the batch size); ``None`` uses the whole batch.
        num_channels: number of channel groups, each giving one extra feature map.
    """

    def __init__(self, group_size: int | None, num_channels: int = 1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [N, C, H, W] -> [N, C + num_channels, H, W]``; ``N`` must be divisible by the group size."""
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)  # [G, n, F, c, H, W]
        y = y - y.mean(dim=0)
        y = y.square().mean(dim=0)
        y = (y + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4])  # [n, F]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)  # [N, F, H, W]
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"
