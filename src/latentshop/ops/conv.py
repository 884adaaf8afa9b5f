"""Convolutions with FIR resampling, and StyleGAN2's modulated convolution.

``conv2d_resample`` fuses a convolution with ``upfirdn2d`` up/down-sampling exactly as NVIDIA's
stylegan2-ada-pytorch does (the same padding arithmetic and the same choice of transposed or
strided convolution), so weights trained there behave identically here.

``modulated_conv2d`` is the weight modulation/demodulation of Karras et al., "Analyzing and
Improving the Image Quality of StyleGAN" (CVPR 2020), in two numerically equivalent forms:

* ``fused_modconv=True`` builds one weight per sample and runs a grouped convolution — the
  reference code's inference path, used for conformance;
* ``fused_modconv=False`` scales the activations by the styles before one shared-weight
  convolution and by the demodulation coefficients after it. It does the same arithmetic
  without per-sample weights, so it runs as a single dense convolution (fast on CPU, in
  channels-last layout and in bfloat16).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from latentshop.ops.upfirdn2d import Padding, filter_size, parse_padding, upfirdn2d

__all__ = ["conv2d_resample", "modulated_conv2d"]


def _conv(
    x: torch.Tensor,
    w: torch.Tensor,
    *,
    stride: int = 1,
    padding: int | list[int] = 0,
    groups: int = 1,
    transpose: bool = False,
    flip_weight: bool = True,
) -> torch.Tensor:
    # conv2d computes a correlation; flip_weight=False asks for a true convolution.
    if not flip_weight:
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    *,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    groups: int = 1,
    flip_weight: bool = True,
    flip_filter: bool = False,
) -> torch.Tensor:
    """2-D convolution with optional FIR up/down-sampling (at most one of ``up``/``down`` > 1 is typical).

    Args:
        x: ``(N, C_in, H, W)``.
        w: ``(C_out, C_in // groups, kh, kw)``.
        f: resampling filter from :func:`~latentshop.ops.upfirdn2d.setup_filter` (needed when resampling).
        up: upsampling factor (transposed convolution, then FIR filter with gain ``up**2``).
        down: downsampling factor (FIR filter, then strided convolution).
        padding: padding at the convolution's own resolution.
        groups: convolution groups.
        flip_weight: ``True`` correlates (``F.conv2d`` semantics), ``False`` convolves.
        flip_filter: passed to ``upfirdn2d``.

    Returns:
        ``(N, C_out, H * up // down, W * up // down)`` for odd kernels with ``padding = k // 2``.

    Example:
        >>> from latentshop.ops.upfirdn2d import setup_filter
        >>> conv2d_resample(torch.randn(1, 4, 8, 8), torch.randn(5, 4, 3, 3), f=setup_filter([1, 3, 3, 1]), up=2, padding=1).shape
        torch.Size([1, 5, 16, 16])
    """
    out_channels, in_per_group, kh, kw = w.shape
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2

    if kw == 1 and kh == 1 and down > 1 and up == 1:
        # 1x1 with downsampling: filter and decimate first, the convolution then runs on 1/4 of the pixels.
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        # 1x1 with upsampling: convolve at low resolution, then upsample.
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up**2, flip_filter=flip_filter)
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if up > 1:
        # Transposed strided convolution: its weight is [C_in, C_out // groups, kh, kw].
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw)
            w = w.transpose(1, 2).reshape(groups * in_per_group, out_channels // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = _conv(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True, flip_weight=not flip_weight)
        x = upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up**2, flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x
    if up == 1 and down == 1 and px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)

    # General case (asymmetric padding): pad/filter, convolve, decimate.
    x = upfirdn2d(x, f if up > 1 else None, up=up, padding=[px0, px1, py0, py1], gain=up**2, flip_filter=flip_filter)
    x = _conv(x, w, groups=groups, flip_weight=flip_weight)
    if down > 1:
        x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    noise: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution with optional weight demodulation and additive noise.

    Each sample's weight is ``weight * styles[n]`` over input channels; with ``demodulate`` each
    output channel is then rescaled to unit norm (``rsqrt(sum w^2 + 1e-8)``). Noise is added after
    the convolution (before any bias), as in the reference.

    Args:
        x: ``(N, C_in, H, W)`` activations.
        weight: ``(C_out, C_in, kh, kw)`` shared weight.
        styles: ``(N, C_in)`` per-sample scales (the affine output of ``w``).
        noise: tensor broadcastable to the output, or ``None``.
        up, down, padding, resample_filter, flip_weight: see :func:`conv2d_resample`.
        demodulate: normalise each output channel's per-sample weight.
        fused_modconv: ``True`` for one grouped convolution with per-sample weights (reference);
            ``False`` to modulate the activations around a shared-weight convolution (fast).

    Returns:
        ``(N, C_out, H', W')``.

    Example:
        >>> x, w, s = torch.randn(2, 4, 8, 8), torch.randn(5, 4, 3, 3), torch.randn(2, 4)
        >>> a = modulated_conv2d(x, w, s, padding=1, fused_modconv=True)
        >>> b = modulated_conv2d(x, w, s, padding=1, fused_modconv=False)
        >>> bool(torch.allclose(a, b, atol=1e-5))
        True
    """
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape

    if x.dtype == torch.float16 and demodulate:
        # Pre-normalise so that per-sample weights cannot overflow in half precision.
        weight = weight * (1 / math.sqrt(in_channels * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    w = None
    dcoefs = None
    if fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)  # [N, O, I, kh, kw]
        if demodulate:
            dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]
    elif demodulate:
        # The same sum without per-sample weights: sum_ik (W_oik s_ni)^2 = sum_i s_ni^2 sum_k W_oik^2.
        # This path runs in training (and fp16 blocks), where the [N, O, I, kh, kw] tensor and its
        # backward cost about a sixth of a step; the fused (inference) path keeps the reference order.
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, O]

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding, flip_weight=flip_weight)
        if demodulate and noise is not None:
            x = torch.addcmul(noise.to(x.dtype), x, dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1))
        elif demodulate:
            x = x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        elif noise is not None:
            x = x + noise.to(x.dtype)
        return x

    if demodulate:
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding, groups=batch_size, flip_weight=flip_weight)
    x = x.reshape(batch_size, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)  # keep half-precision blocks in half precision
    return x
