"""MobileNetV2 as the quantized TFLite ImageNet classifier computes it, in float PyTorch.

The network of Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (CVPR 2018):
a 3x3 stride-2 stem, 17 inverted-residual blocks (1x1 expansion, 3x3 depthwise, linear 1x1
projection, identity shortcut where shapes allow), a 1x1 conv to 1280 channels, global average
pooling and a 1x1 conv to 1001 logits (class 0 is "background", as in TF-slim).

The numerics follow the graph of google-coral/test_data ``mobilenet_v2_1.0_224_quant.tflite``
(TF-slim ``mobilenet_v2``, batch norm folded into the convolutions), which is what
``tools/convert_mobilenet.py`` reads:

- every convolution has a bias (the folded batch norm) and no separate normalisation layer;
- activations are ReLU6 after the stem, the expansion and depthwise convs and the last conv; the
  projections are linear;
- padding is TensorFlow ``SAME``: for stride 2 on an even size the one extra row/column of zeros
  goes at the bottom/right only (pad ``(0, 1)``), unlike PyTorch's symmetric ``padding=1``;
- the input is the quantized graph's real-valued input: a uint8 pixel ``p`` is ``(p - 128) / 128``,
  so an RGB image in ``[0, 255]`` maps to ``[-1, 0.9921875]`` (:func:`pixels_to_input`).

Floating-point evaluation of the dequantized weights differs from the integer interpreter only by
the interpreter's rounding of every activation to 8 bits; :meth:`MobileNetV2.set_activation_quantization`
simulates that rounding (fake quantization) for conformance checks.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from latentshop.errors import ConfigError, ShapeError

__all__ = ["MobileNetV2", "InvertedResidual", "ConvLayer", "INVERTED_RESIDUAL_SETTINGS", "STAGE_ENDS",
           "dequantize", "pixels_to_input", "tf_same_pad"]

# (expansion t, output channels c, repeats n, first stride s), Table 2 of the paper.
INVERTED_RESIDUAL_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)
# The last block at each output stride (2, 4, 8, 16, 32): the ends of the network's stages.
STAGE_ENDS: dict[int, str] = {2: "blocks.0", 4: "blocks.2", 8: "blocks.5", 16: "blocks.12", 32: "blocks.16"}


def _make_divisible(v: float, divisor: int = 8) -> int:
    """TF-slim's channel rounding: to a multiple of ``divisor``, never below 90% of ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def tf_same_pad(x: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
    """Zero-pad ``x [N, C, H, W]`` as TensorFlow's ``SAME`` padding does for a conv of this size and stride.

    The output size is ``ceil(size / stride)``; the padding it needs is split with the smaller half
    first (top/left), so stride 2 on an even size pads ``(0, 1)``.

    Example:
        >>> tf_same_pad(torch.ones(1, 1, 4, 4), 3, 2).shape
        torch.Size([1, 1, 5, 5])
    """
    pads = []
    for size in (x.shape[3], x.shape[2]):  # F.pad takes the last dimension first
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + kernel_size - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, axis: int = 0) -> torch.Tensor:
    """``(q - zero_point) * scale`` in float32, per tensor (one scale) or per channel along ``axis``.

    Example:
        >>> dequantize(torch.tensor([0, 128, 255], dtype=torch.uint8), torch.tensor([0.5]), torch.tensor([128]))
        tensor([-64.0000,   0.0000,  63.5000])
    """
    scale = scale.to(torch.float32)
    zero_point = zero_point.to(torch.float32)
    if scale.numel() > 1:  # per channel: broadcast along `axis`
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    return (q.to(torch.float32) - zero_point) * scale


def pixels_to_input(pixels: torch.Tensor) -> torch.Tensor:
    """RGB pixel values in ``[0, 255]`` to the network input: ``(p - 128) / 128`` (the TFLite input quantization)."""
    return (pixels - 128.0) * (1.0 / 128.0)


def _fake_quant(x: torch.Tensor, qparams: tuple[float, int] | None) -> torch.Tensor:
    """Round ``x`` to the uint8 grid ``(q - zero_point) * scale`` (the interpreter's activation storage)."""
    if qparams is None:
        return x
    scale, zero_point = qparams
    return (torch.round(x / scale) + zero_point).clamp(0, 255).sub(zero_point).mul(scale)


class ConvLayer(nn.Module):
    """A convolution with folded batch norm (weight and bias), TF ``SAME`` padding and optional ReLU6.

    Args:
        in_channels: input channels.
        out_channels: output channels (equal to ``in_channels`` when ``depthwise``).
        kernel_size: 1 or 3.
        stride: 1 or 2.
        depthwise: one filter per channel (``groups = in_channels``).
        relu6: clamp the output to ``[0, 6]``; otherwise linear.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, *,
                 depthwise: bool = False, relu6: bool = True):
        super().__init__()
        if depthwise and in_channels != out_channels:
            raise ConfigError(f"a depthwise conv keeps its width, got {in_channels} -> {out_channels}")
        self.kernel_size, self.stride, self.relu6 = kernel_size, stride, relu6
        self.groups = in_channels if depthwise else 1
        self.weight = nn.Parameter(torch.zeros(out_channels, in_channels // self.groups, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.act_qparams: tuple[float, int] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel_size > 1 and self.stride == 1:
            x = F.conv2d(x, self.weight, self.bias, padding=self.kernel_size // 2, groups=self.groups)  # SAME, odd kernel
        else:
            x = F.conv2d(tf_same_pad(x, self.kernel_size, self.stride), self.weight, self.bias, stride=self.stride,
                         groups=self.groups)
        if self.relu6:
            x = x.clamp(0.0, 6.0)
        return _fake_quant(x, self.act_qparams)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        dw = ", depthwise" if self.groups > 1 else ""
        return f"{i * self.groups}->{o}, k={k}, stride={self.stride}{dw}, {'relu6' if self.relu6 else 'linear'}"


class InvertedResidual(nn.Module):
    """The MobileNetV2 bottleneck: expand (1x1, ReLU6), depthwise (3x3, ReLU6), project (1x1, linear), + shortcut.

    There is no expansion conv when ``expand_ratio`` is 1; the shortcut exists when the stride is 1
    and the width is unchanged.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand = ConvLayer(in_channels, hidden, 1) if expand_ratio != 1 else None
        self.depthwise = ConvLayer(hidden, hidden, 3, stride, depthwise=True)
        self.project = ConvLayer(hidden, out_channels, 1, relu6=False)
        self.use_shortcut = stride == 1 and in_channels == out_channels
        self.add_qparams: tuple[float, int] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return _fake_quant(x + y, self.add_qparams) if self.use_shortcut else y


class MobileNetV2(nn.Module):
    """MobileNetV2 ImageNet classifier (TF-slim layout, folded batch norm, TF ``SAME`` padding).

    Args:
        width_multiplier: the paper's alpha (channel widths scaled and rounded to multiples of 8);
            the shipped weights are 1.0.
        num_classes: output logits (1001 for the TF-slim checkpoints: background + 1000 ImageNet classes).

    Input: ``(N, 3, H, W)`` float, the real-valued TFLite input ``(pixel - 128) / 128`` (see
    :func:`pixels_to_input`); any size, 224 is the trained one.

    Example:
        >>> net = MobileNetV2()
        >>> net(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 1001])
        >>> [f.shape[1] for f in net.features(torch.zeros(1, 3, 64, 64), ["blocks.2", "blocks.16"]).values()]
        [24, 320]
    """

    def __init__(self, width_multiplier: float = 1.0, num_classes: int = 1001):
        super().__init__()
        if not (0 < width_multiplier <= 4) or not (0 < num_classes <= 100_000):
            raise ConfigError(f"MobileNetV2 arguments out of range: width_multiplier={width_multiplier}, num_classes={num_classes}")
        self.init_kwargs = dict(width_multiplier=float(width_multiplier), num_classes=int(num_classes))
        stem = _make_divisible(32 * width_multiplier)
        self.stem = ConvLayer(3, stem, 3, 2)
        blocks, width = [], stem
        for t, c, n, s in INVERTED_RESIDUAL_SETTINGS:
            out = _make_divisible(c * width_multiplier)
            for i in range(n):
                blocks.append(InvertedResidual(width, out, s if i == 0 else 1, t))
                width = out
        self.blocks = nn.ModuleList(blocks)
        self.head_channels = _make_divisible(1280 * max(1.0, width_multiplier))
        self.head = ConvLayer(width, self.head_channels, 1)
        self.logits = ConvLayer(self.head_channels, num_classes, 1, relu6=False)
        self.input_qparams: tuple[float, int] | None = None
        self.pool_qparams: tuple[float, int] | None = None

    def layer_names(self) -> list[str]:
        """Names accepted by :meth:`features`: ``stem``, ``blocks.0`` ... ``blocks.16``, ``head``."""
        return ["stem"] + [f"blocks.{i}" for i in range(len(self.blocks))] + ["head"]

    def features(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """The outputs of the named layers (see :meth:`layer_names`), running only as deep as needed.

        Args:
            x: ``(N, 3, H, W)`` network input (see the class docstring).
            layers: layer names.

        Returns:
            ``{name: (N, C, h, w)}`` in the order of ``layers``.
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ShapeError(f"MobileNetV2 expects (N, 3, H, W) input, got {tuple(x.shape)}")
        names = self.layer_names()
        unknown = [n for n in layers if n not in names]
        if unknown:
            raise ConfigError(f"unknown MobileNetV2 layer(s) {unknown}; known: {', '.join(names)}")
        wanted, out = set(layers), {}
        depth = max(names.index(n) for n in layers) if layers else -1
        x = _fake_quant(x, self.input_qparams)
        modules = [self.stem, *self.blocks, self.head]
        for name, module in zip(names[: depth + 1], modules):
            x = module(x)
            if name in wanted:
                out[name] = x
        return {n: out[n] for n in layers}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` input to ``(N, num_classes)`` logits (softmax them for probabilities)."""
        x = self.features(x, ["head"])["head"]
        x = _fake_quant(x.mean(dim=(2, 3), keepdim=True), self.pool_qparams)  # [N, 1280, 1, 1]
        return self.logits(x).flatten(1)

    def set_activation_quantization(self, qparams: Mapping[str, Sequence[float]] | None) -> None:
        """Round activations to the TFLite graph's uint8 grids (for conformance checks; not differentiable).

        Args:
            qparams: ``{name: (scale, zero_point)}`` for ``input``, each conv (``stem``,
                ``blocks.3.expand``, ...), each shortcut sum (``blocks.3.add``), ``pool`` and ``logits``
                (the ``activation_quantization`` entry of the shipped ``config.json``); ``None`` turns
                the simulation off.
        """
        qp = {k: (float(v[0]), int(v[1])) for k, v in (qparams or {}).items()}
        self.input_qparams, self.pool_qparams = qp.get("input"), qp.get("pool")
        for name, module in self.named_modules():
            if isinstance(module, ConvLayer):
                module.act_qparams = qp.get(name)
            elif isinstance(module, InvertedResidual):
                module.add_qparams = qp.get(f"{name}.add")
