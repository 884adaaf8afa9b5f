"""Inference kernels for the ``impl="fast"`` StyleGAN2 synthesis path (CPU-friendly, bfloat16-ready).

The maths is the modulated convolution of Karras et al., "Analyzing and Improving the Image Quality
of StyleGAN" (CVPR 2020), rearranged so that the heavy work runs as *plain* shared-weight
convolutions (what oneDNN does fastest, in channels-last layout and in bfloat16 with AMX), and the
rest costs as few passes over the activations as possible:

* styles scale the input activations (``x * s``) instead of building per-sample weights;
* the demodulation coefficients come from one small matmul,
  ``rsqrt(s^2 @ sum_k(W^2)^T + 1e-8)``, instead of squaring ``[N, C_out, C_in, k, k]`` weights;
* demodulation, noise, bias and the activation gain meet in one ``addcmul`` (the gain is folded
  into the coefficients for positively homogeneous activations: ``lrelu(g z) = g lrelu(z)``),
  then the activation and the clamp run in place;
* the upsampling convolution is a transposed convolution with an *even* output size
  (``output_padding=1``; odd sizes take a much slower oneDNN path) followed by the FIR filter as
  one depthwise convolution whose taps absorb the asymmetric padding;
* toRGB is a batched matmul with per-sample ``[C_in, 3]`` weights (tiny), so it needs no pass
  that modulates the activations;
* the image skip path is upsampled by a depthwise transposed convolution (polyphase FIR).

Under ``torch.autocast(device_type, dtype=torch.bfloat16)`` everything runs in that dtype: styles,
coefficients, noise and bias are cast to the activations' dtype, never the activations to float32.
The results match :func:`~latentshop.ops.conv.modulated_conv2d` up to rounding (float32: about
1e-5 on a ``[-1, 1]`` image).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from latentshop.ops import fused
from latentshop.ops.bias_act import ACTIVATIONS
from latentshop.ops.conv import conv2d_resample
from latentshop.ops.upfirdn2d import filter_size, upsample2d

__all__ = [
    "compile_state", "compute_dtype", "demodulation_coefficients", "fast_modulated_layer", "fast_torgb", "fast_upsample2d",
    "fir_taps", "set_compile",
]

# The element-wise work around each convolution (modulation; demodulation, noise, bias,
# activation, clamp and the next layer's styles) runs as fused kernels, compiled with
# torch.compile for large CPU activations: see latentshop.ops.fused.
compile_state = fused.compile_state
set_compile = fused.set_compile


def compute_dtype(device: torch.device) -> torch.dtype:
    """The activation dtype of the fast path: the autocast dtype when autocast is on, else float32."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return torch.float32


def demodulation_coefficients(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """``rsqrt(sum_{i,k} (W[o, i, k] * s[n, i])^2 + 1e-8)`` without forming per-sample weights.

    Args:
        weight: ``(C_out, C_in, kh, kw)``.
        styles: ``(N, C_in)``.

    Returns:
        ``(N, C_out)`` float32 coefficients.

    Example:
        >>> w, s = torch.randn(5, 4, 3, 3), torch.randn(2, 4)
        >>> ref = ((w[None] * s[:, None, :, None, None]).square().sum([2, 3, 4]) + 1e-8).rsqrt()
        >>> bool(torch.allclose(demodulation_coefficients(w, s), ref, rtol=1e-5))
        True
    """
    with torch.autocast(weight.device.type, enabled=False):  # a matmul: autocast would round it to bfloat16
        wsq = weight.to(torch.float32).square().sum(dim=[2, 3])  # [C_out, C_in]
        return (styles.to(torch.float32).square() @ wsq.t() + 1e-8).rsqrt()


def fir_taps(f: torch.Tensor, channels: int, left: int, right: int, gain: float, dtype: torch.dtype) -> tuple[torch.Tensor, int]:
    """Depthwise correlation taps (and symmetric padding) that apply ``f`` with padding ``left``/``right``."""
    if f.ndim == 1:
        f = torch.outer(f, f)
    f = f.flip([0, 1]) * gain  # upfirdn2d convolves; conv2d correlates
    pad = max(left, right)
    taps = F.pad(f, [pad - left, pad - right, pad - left, pad - right])
    return taps.to(dtype)[None, None].expand(channels, 1, *taps.shape).contiguous(), pad


def _upsample_conv(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor, padding: int) -> torch.Tensor | None:
    """Transposed stride-2 convolution then FIR filter, as ``conv2d_resample(up=2, flip_weight=False)``.

    Returns ``None`` when the padding arithmetic needs cropping (then the caller uses the generic op).
    """
    out_channels, _, kh, kw = weight.shape
    fw, fh = filter_size(f)
    if kh != kw or fh != fw:
        return None
    # conv2d_resample's padding of the FIR filter around the full transposed-convolution output.
    left = padding + (fw + 1) // 2 - (kw - 1)
    right = padding + (fw - 2) // 2 - (kw - 2)
    # output_padding=1 appends one zero row/column (even sizes run much faster in oneDNN), which
    # stands in for one column of right padding.
    right -= 1
    if left < 0 or right < 0:
        return None
    y = F.conv_transpose2d(x, weight.transpose(0, 1).to(x.dtype), stride=2, output_padding=1)
    taps, pad = fir_taps(f, out_channels, left, right, 4.0, x.dtype)
    return fused.depthwise_fir(y, taps, padding=pad)


def fast_modulated_layer(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    flip_weight: bool = True,
    demodulate: bool = True,
    activation: str = "lrelu",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    premodulated: bool = False,
    next_styles: torch.Tensor | None = None,
) -> torch.Tensor:
    """Modulated convolution + noise + bias + activation + gain + clamp (a ``SynthesisLayer``), fast.

    Numerically equivalent to ``bias_act(modulated_conv2d(x, ..., fused_modconv=False), bias, ...)``
    up to rounding. Runs in ``x.dtype`` (use ``torch.autocast`` for bfloat16) and returns
    channels-last activations.

    Args:
        x: ``(N, C_in, H, W)`` activations.
        weight: ``(C_out, C_in, k, k)`` shared weight.
        styles: ``(N, C_in)`` per-sample scales.
        bias: ``(C_out,)`` or ``None``.
        noise: broadcastable to ``(N, 1, H', W')`` (already scaled by the noise strength), or ``None``.
        up: 1 or 2.
        padding, resample_filter, flip_weight: as for :func:`~latentshop.ops.conv.conv2d_resample`.
        demodulate: normalise each output channel's per-sample weight.
        activation, alpha, gain, clamp: as for :func:`~latentshop.ops.bias_act.bias_act`.
        premodulated: ``x`` already carries the factor ``styles`` (from ``next_styles`` of the
            layer before), so it is not scaled again; ``styles`` still sets the demodulation.
        next_styles: ``(N, C_out)`` styles of the layer that consumes the output alone; the
            output is returned already scaled by them (saving that layer a pass over it).

    Returns:
        ``(N, C_out, H * up, W * up)`` channels-last, in ``x.dtype``.

    Example:
        >>> from latentshop.ops import bias_act, modulated_conv2d
        >>> x, w, s, b = torch.randn(2, 4, 8, 8), torch.randn(5, 4, 3, 3), torch.randn(2, 4), torch.randn(5)
        >>> ref = bias_act(modulated_conv2d(x, w, s, padding=1), b, act="lrelu", clamp=1.0)
        >>> out = fast_modulated_layer(x, w, s, bias=b, padding=1, activation="lrelu", clamp=1.0)
        >>> bool(torch.allclose(out, ref, atol=1e-5))
        True
    """
    batch_size = x.shape[0]
    dtype = compute_dtype(x.device)
    spec = ACTIVATIONS[activation]
    alpha = spec.def_alpha if alpha is None else float(alpha)
    gain = spec.def_gain if gain is None else float(gain)
    slope = fused.homogeneous_slope(activation, alpha)  # the gain folds into the scales of these
    fold_gain = slope is not None and gain > 0
    scale = gain if fold_gain else 1.0

    if not premodulated:
        # float32 styles: the product is rounded to the compute dtype once (rounding x, then the
        # styles, then their product costs about 1 dB of PSNR in bfloat16).
        x = fused.modulate(x, styles, dtype)
    else:
        x = x.to(dtype)
    y = None
    if up == 2 and resample_filter is not None and not flip_weight:
        y = _upsample_conv(x, weight, resample_filter, padding)
    if y is None:
        y = conv2d_resample(x, weight.to(dtype), f=resample_filter, up=up, padding=padding, flip_weight=flip_weight)
    y = y.contiguous(memory_format=torch.channels_last)
    out_channels = y.shape[1]

    # One pass: act(y * dcoefs * gain + (noise + bias) * gain), clamped, times the next styles;
    # float32 arithmetic (coefficients and styles stay float32), one rounding on the store; in
    # place into y (a fresh convolution output) where no gradient is needed.
    coef = scale
    if demodulate:
        coef = (demodulation_coefficients(weight, styles) * scale).reshape(batch_size, out_channels, 1, 1)
    noise_t = None
    if noise is not None:
        noise_t = noise.to(torch.float32) * scale
        noise_t = noise_t.reshape(-1, 1, *noise_t.shape[-2:]) if noise_t.ndim >= 2 else noise_t.reshape(1, 1, 1, 1)
    bias_t = None if bias is None else (bias.to(torch.float32) * scale).reshape(1, -1, 1, 1)
    post = None if next_styles is None else next_styles.to(torch.float32).reshape(batch_size, -1, 1, 1)
    if fold_gain:
        return fused.bias_act_fused(y, coef, noise=noise_t, bias=bias_t, post=post, alpha=slope, clamp=clamp, inplace=True)
    y = fused.bias_act_fused(y, coef, noise=noise_t, bias=bias_t, alpha=1.0, inplace=True)
    y = spec.func(y, alpha)
    if gain != 1:
        y = y * gain
    if clamp is not None and clamp >= 0:
        y = y.clamp(-clamp, clamp)
    if post is not None:
        y = fused.modulate(y, post.reshape(batch_size, -1))
    return y


def fast_torgb(
    x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *, bias: torch.Tensor | None = None, clamp: float | None = None
) -> torch.Tensor:
    """Modulated 1x1 convolution without demodulation (toRGB) as one batched matmul.

    The per-sample weight ``W[o, i] * s[n, i]`` is only ``[N, C_out, C_in]`` (C_out = 3), so it is
    built directly and the activations are read once, in channels-last order.

    Args:
        x: ``(N, C_in, H, W)``, best channels-last.
        weight: ``(C_out, C_in, 1, 1)``.
        styles: ``(N, C_in)`` (including the layer's weight gain).
        bias: ``(C_out,)`` or ``None``.
        clamp: clamp to ``[-clamp, clamp]``; ``None`` disables it.

    Returns:
        ``(N, C_out, H, W)`` float32, channels-last.

    Example:
        >>> from latentshop.ops import modulated_conv2d
        >>> x, w, s = torch.randn(2, 4, 8, 8), torch.randn(3, 4, 1, 1), torch.randn(2, 4)
        >>> ref = modulated_conv2d(x, w, s, demodulate=False)
        >>> bool(torch.allclose(fast_torgb(x, w, s), ref, atol=1e-5))
        True
    """
    batch_size, in_channels, height, width = x.shape
    out_channels = weight.shape[0]
    if weight.shape[2:] != (1, 1):
        raise ValueError(f"fast_torgb needs a 1x1 weight, got {tuple(weight.shape)}")
    w = weight.to(torch.float32).reshape(1, out_channels, in_channels) * styles.to(torch.float32).unsqueeze(1)  # [N, O, I]
    x = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).reshape(batch_size, height * width, in_channels)
    y = torch.bmm(x, w.transpose(1, 2).to(x.dtype)).to(torch.float32)  # [N, H*W, O]
    if bias is not None:
        y = y + bias.to(torch.float32)
    if clamp is not None and clamp >= 0:
        y = y.clamp(-clamp, clamp)  # [N, H*W, 3]: small, out-of-place keeps autograd happy
    return y.reshape(batch_size, height, width, out_channels).permute(0, 3, 1, 2)


def fast_upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x FIR upsampling (as :func:`~latentshop.ops.upfirdn2d.upsample2d`) by a depthwise transposed convolution.

    Example:
        >>> from latentshop.ops import setup_filter, upsample2d
        >>> x, f = torch.randn(2, 3, 8, 8), setup_filter([1, 3, 3, 1])
        >>> bool(torch.allclose(fast_upsample2d(x, f), upsample2d(x, f), atol=1e-6))
        True
    """
    fw, fh = filter_size(f)
    if fw != 4 or fh != 4:
        return upsample2d(x, f)
    if f.ndim == 1:
        f = torch.outer(f, f)
    channels = x.shape[1]
    # Zero insertion + FIR with padding [2, 1] is a stride-2 transposed convolution with padding 1.
    taps = (f * 4).to(x.dtype)[None, None].expand(channels, 1, 4, 4).contiguous()
    return fused.depthwise_fir(x, taps, stride=2, padding=1, transposed=True)
