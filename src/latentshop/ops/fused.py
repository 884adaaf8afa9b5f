"""Fused element-wise steps of the fast path, for inference and training: one memory pass each way.

A StyleGAN2 layer is a convolution wrapped in element-wise work: scale the input by the styles
(modulation), then scale the output by the demodulation coefficients, add noise and bias, apply
the activation and its gain, clamp, and (when the next layer's styles are folded in) scale again.
Eagerly that is four to eight passes over the activations forward and about as many backward,
each one allocating; on the CPU, at the sizes latentshop trains, those passes cost as much as the
convolutions. Here each step is one function with a hand-written backward:

* :func:`bias_act_fused` — ``act(y * coef + noise + bias)``, clamped, times ``post``;
* :func:`modulate` — ``x * styles`` per sample and channel;
* :func:`depthwise_fir` — a FIR filter as a depthwise convolution, whose backward of any order is
  again one depthwise convolution (autograd's double backward of a grouped convolution loops over
  the groups computing weight terms that constant taps do not need: seconds per path-length step).

Their forward and backward kernels are compiled with ``torch.compile`` (inductor writes one
vectorised loop with the reductions the backward needs) for large CPU tensors, and run as eager
ops otherwise. Kernels without autograd (rendering) compile from 1M elements; kernels with a
backward compile from 256k elements and only inside :func:`autograd_compile` (the trainers'
steps), so that an inversion or a first render never waits for the compiler. Arithmetic is float32 whatever the activations' dtype, rounding once on the store,
so under bfloat16 autocast the styles and the demodulation coefficients keep float32 precision.

Gradients of gradients (R1 and path-length penalties differentiate a backward pass): when a
backward runs with ``create_graph=True``, it recomputes the forward from its saved inputs with
ordinary differentiable ops and differentiates that, so every order of derivative is exact and
nothing needs to be told which phase of training is running.

The first compile costs some seconds per process (reported by :func:`compile_state`); any compiler
failure falls back to eager ops for good, with a warning. ``set_compile(False)`` or the environment
variable ``LATENTSHOP_COMPILE=0`` turns compiling off.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

__all__ = [
    "autograd_compile", "bias_act_fused", "compile_state", "depthwise_fir", "homogeneous_slope", "modulate", "set_compile", "use_compiled",
]

# Below these many elements a kernel launch of eager ops is cheap and compiling is not worth it
# (tests, tiny models, single-image renders and the small early blocks stay eager). Kernels with
# autograd (forward and backward) compile only inside training steps (:func:`autograd_compile`):
# an inversion or a studio session should not wait for a compiler on its first image.
COMPILE_MIN_NUMEL = 1 << 20
COMPILE_MIN_NUMEL_AUTOGRAD = 1 << 18

_state = {"enabled": os.environ.get("LATENTSHOP_COMPILE", "1") != "0", "autograd": False, "failed": False, "compile_s": 0.0}
_compiled: dict[str, Callable] = {}


def compile_state() -> dict[str, float | bool]:
    """``enabled``, ``autograd`` (inside a training step), ``failed`` (fell back to eager) and
    ``compile_s`` (seconds spent in first calls of compiled kernels)."""
    return dict(_state)


def set_compile(enabled: bool) -> None:
    """Allow (default) or forbid ``torch.compile`` of the fused element-wise kernels."""
    _state["enabled"] = bool(enabled)


@contextlib.contextmanager
def autograd_compile(enabled: bool = True) -> Iterator[None]:
    """Within this block, kernels that autograd differentiates compile too (the trainers' steps)."""
    before = _state["autograd"]
    _state["autograd"] = bool(enabled)
    try:
        yield
    finally:
        _state["autograd"] = before


def use_compiled(t: torch.Tensor, *, autograd: bool = False) -> bool:
    """Whether kernels on ``t`` run compiled: a large CPU tensor, compiling allowed and not failed
    (and, for kernels with a backward, inside :func:`autograd_compile`)."""
    if autograd and not _state["autograd"]:
        return False
    threshold = COMPILE_MIN_NUMEL_AUTOGRAD if autograd else COMPILE_MIN_NUMEL
    return (
        _state["enabled"] and not _state["failed"] and t.device.type == "cpu" and t.numel() >= threshold
        and hasattr(torch, "compile")
    )


def _signature(args) -> tuple:
    """What a compiled kernel specialises on: which arguments are tensors, their dtypes, which
    dimensions broadcast (size 1), and the values of plain numbers and flags."""
    sig = []
    for a in args:
        if isinstance(a, torch.Tensor):
            sig.append((a.dtype, tuple(d == 1 for d in a.shape), a.is_contiguous(memory_format=torch.channels_last)))
        else:
            sig.append(a)
    return tuple(sig)


def _run_compiled(name: str, fn: Callable, eager: Callable, *args):
    """``fn(*args)`` compiled once per :func:`_signature` (dynamic sizes); on any compiler error,
    ``eager(*args)`` from then on."""
    if not _state["failed"]:
        key = f"{name}{_signature(args)}"
        compiled = _compiled.get(key)
        if compiled is None:
            # Each signature is its own specialisation of the same function: allow as many as we make.
            config = torch._dynamo.config
            config.recompile_limit = max(config.recompile_limit, len(_compiled) + 9)
            compiled = _compiled[key] = torch.compile(fn, dynamic=True, fullgraph=True)
        start = time.perf_counter()
        try:
            out = compiled(*args)
        except Exception as error:  # noqa: BLE001 - any compiler failure means: stay eager
            _state["failed"] = True
            warnings.warn(f"torch.compile of the fused kernels failed ({error!r}); using eager ops", RuntimeWarning)
        else:
            elapsed = time.perf_counter() - start
            if elapsed > 0.5:  # a first call per shape family: the compile, not the kernel
                _state["compile_s"] += elapsed
            return out
    return eager(*args)


def homogeneous_slope(activation: str, alpha: float) -> float | None:
    """The leaky-ReLU slope that computes ``activation`` (``alpha`` for ``lrelu``, 1 for ``linear``,
    0 for ``relu``), or ``None`` when it is not positively homogeneous (``f(g z) != g f(z)``), so
    that its gain cannot fold into the scales of :func:`bias_act_fused`."""
    return {"linear": 1.0, "relu": 0.0, "lrelu": float(alpha)}.get(activation)


def _sum_to(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum ``t`` over the dimensions where ``shape`` is 1 (the gradient of a broadcast)."""
    dims = [d for d, n in enumerate(shape) if n == 1 and t.shape[d] != 1]
    return t.sum(dims, keepdim=True) if dims else t


# -- bias + activation -------------------------------------------------------------------------


def _act_forward(y, coef, noise, bias, post, alpha: float, clamp: float):
    # Eager and compiled alike: float32 arithmetic, one rounding to y's dtype.
    pre = y.float() * coef
    if noise is not None:
        pre = pre + noise
    if bias is not None:
        pre = pre + bias
    out = F.leaky_relu(pre, alpha) if alpha != 1.0 else pre
    if clamp != math.inf:
        out = out.clamp(-clamp, clamp)
    if post is not None:
        out = out * post
    return out.to(y.dtype)


def _act_forward_(y, coef, noise, bias, post, alpha: float, clamp: float):
    # In place: writing into y (a fresh convolution output) saves allocating and faulting in a new tensor.
    return y.copy_(_act_forward(y, coef, noise, bias, post, alpha, clamp))


def _act_backward(g, y, coef, noise, bias, post, alpha: float, clamp: float, needs: tuple[bool, bool, bool, bool, bool]):
    pre = y.float() * coef
    if noise is not None:
        pre = pre + noise
    if bias is not None:
        pre = pre + bias
    g = g.float()
    grad_post = None
    if post is not None:
        if needs[4]:
            act = F.leaky_relu(pre, alpha) if alpha != 1.0 else pre
            if clamp != math.inf:
                act = act.clamp(-clamp, clamp)
            grad_post = _sum_to(g * act, post.shape)
        g = g * post
    if clamp != math.inf:  # the clamp passes gradients where the activation's value is inside it
        g = torch.where((torch.where(pre > 0, pre, pre * alpha)).abs() <= clamp, g, 0.0)
    if alpha != 1.0:
        g = g * torch.where(pre > 0, 1.0, alpha)
    grad_y = (g * coef).to(y.dtype) if needs[0] else None
    grad_coef = _sum_to(g * y.float(), coef.shape) if needs[1] else None
    grad_noise = _sum_to(g, noise.shape) if needs[2] and noise is not None else None
    grad_bias = _sum_to(g, bias.shape) if needs[3] and bias is not None else None
    return grad_y, grad_coef, grad_noise, grad_bias, grad_post


class _BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, coef, noise, bias, post, alpha, clamp):
        ctx.save_for_backward(y, coef, noise, bias, post)
        ctx.alpha, ctx.clamp = alpha, clamp
        if use_compiled(y, autograd=True):
            return _run_compiled("act_forward", _act_forward, _act_forward, y, coef, noise, bias, post, alpha, clamp)
        return _act_forward(y, coef, noise, bias, post, alpha, clamp)

    @staticmethod
    def backward(ctx, g):
        y, coef, noise, bias, post = ctx.saved_tensors
        needs = tuple(ctx.needs_input_grad[:5])
        if torch.is_grad_enabled():
            # create_graph: differentiate a differentiable recomputation, so higher orders are exact.
            inputs = [t for t, need in zip((y, coef, noise, bias, post), needs) if need]
            with torch.enable_grad():
                out = _act_forward(y, coef, noise, bias, post, ctx.alpha, ctx.clamp)
                grads = iter(torch.autograd.grad(out, inputs, g, create_graph=True, allow_unused=True))
            result = [next(grads) if need else None for need in needs]
            return (*result, None, None)
        args = (g, y, coef, noise, bias, post, ctx.alpha, ctx.clamp, needs)
        if use_compiled(y, autograd=True):
            result = _run_compiled("act_backward", _act_backward, _act_backward, *args)
        else:
            result = _act_backward(*args)
        return (*result, None, None)


def bias_act_fused(
    y: torch.Tensor,
    coef: torch.Tensor | float = 1.0,
    *,
    noise: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    post: torch.Tensor | None = None,
    alpha: float = 0.2,
    clamp: float | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """``leaky_relu(y * coef + noise + bias, alpha)``, clamped to ``[-clamp, clamp]``, times ``post``.

    ``alpha=1`` is the linear activation, ``alpha=0`` ReLU. The gain of a positively homogeneous
    activation belongs in ``coef``, ``noise`` and ``bias`` (``g * lrelu(z) = lrelu(g * z)``).

    Args:
        y: ``(N, C, H, W)`` convolution output, any float dtype (the result has the same dtype
            and memory layout).
        coef: per-sample-and-channel ``(N or 1, C, 1, 1)`` scale (the demodulation coefficients
            times the gain), or a number.
        noise: ``(N or 1, 1, H, W)`` or ``None``.
        bias: ``(1, C, 1, 1)`` or ``None``.
        post: ``(N, C, 1, 1)`` scale after the activation (the next layer's styles), or ``None``.
        alpha: leaky ReLU slope.
        clamp: clamp bound, or ``None`` / negative for none.
        inplace: write the result into ``y`` where no gradient is needed.

    Example:
        >>> y, b = torch.randn(2, 3, 4, 4), torch.randn(1, 3, 1, 1)
        >>> ref = torch.nn.functional.leaky_relu(y * 2 + b, 0.2)
        >>> bool(torch.allclose(bias_act_fused(y, 2.0, bias=b), ref, atol=1e-6))
        True
    """
    clamp_value = math.inf if clamp is None or clamp < 0 else float(clamp)
    if not isinstance(coef, torch.Tensor):  # a number as a 0-d tensor: one kernel for every layer's gain
        coef = torch.tensor(float(coef), device=y.device)
    tensors = (y, coef, noise, bias, post)
    f32 = [t.float() if isinstance(t, torch.Tensor) and t is not y else t for t in tensors]
    if torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors):
        return _BiasAct.apply(*f32, float(alpha), clamp_value)
    fn, name = (_act_forward_, "act_forward_") if inplace else (_act_forward, "act_forward")
    with torch.no_grad():
        if use_compiled(y):
            return _run_compiled(name, fn, fn, *f32, float(alpha), clamp_value)
        return fn(*f32, float(alpha), clamp_value)


# -- modulation ----------------------------------------------------------------------------------


def _modulate_forward(x, styles, dtype: torch.dtype):
    return (x.float() * styles).to(dtype)


def _modulate_backward(g, x, styles, needs: tuple[bool, bool]):
    g = g.float()
    grad_x = (g * styles).to(x.dtype) if needs[0] else None
    grad_s = (g * x.float()).sum([2, 3], keepdim=True) if needs[1] else None
    return grad_x, grad_s


class _Modulate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, styles, dtype):
        ctx.save_for_backward(x, styles)
        if use_compiled(x, autograd=True):
            return _run_compiled("modulate_forward", _modulate_forward, _modulate_forward, x, styles, dtype)
        return _modulate_forward(x, styles, dtype)

    @staticmethod
    def backward(ctx, g):
        x, styles = ctx.saved_tensors
        needs = tuple(ctx.needs_input_grad[:2])
        if torch.is_grad_enabled():
            inputs = [t for t, need in zip((x, styles), needs) if need]
            with torch.enable_grad():
                out = _modulate_forward(x, styles, g.dtype)
                grads = iter(torch.autograd.grad(out, inputs, g, create_graph=True, allow_unused=True))
            gx = next(grads) if needs[0] else None
            gs = next(grads) if needs[1] else None
            return gx, gs, None
        if use_compiled(x, autograd=True):
            gx, gs = _run_compiled("modulate_backward", _modulate_backward, _modulate_backward, g, x, styles, needs)
        else:
            gx, gs = _modulate_backward(g, x, styles, needs)
        return gx.to(x.dtype) if gx is not None else None, gs, None


def modulate(x: torch.Tensor, styles: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``x * styles`` per sample and channel, in float32 arithmetic, rounded once to ``dtype``.

    Args:
        x: ``(N, C, H, W)`` activations.
        styles: ``(N, C)`` scales (float32 recommended).
        dtype: result dtype (default ``x.dtype``); the result keeps ``x``'s memory layout.

    Example:
        >>> x, s = torch.randn(2, 3, 4, 4), torch.randn(2, 3)
        >>> bool(torch.allclose(modulate(x, s), x * s[:, :, None, None]))
        True
    """
    dtype = x.dtype if dtype is None else dtype
    s = styles.float().reshape(x.shape[0], -1, 1, 1)
    if torch.is_grad_enabled() and (x.requires_grad or styles.requires_grad):
        return _Modulate.apply(x, s, dtype)
    with torch.no_grad():
        if use_compiled(x):
            return _run_compiled("modulate_forward", _modulate_forward, _modulate_forward, x, s, dtype)
        return _modulate_forward(x, s, dtype)


# -- FIR filtering -----------------------------------------------------------------------------


class _DepthwiseFIR(torch.autograd.Function):
    """A depthwise convolution (or its transpose) with constant taps, whose backward is the
    other one. autograd's own double backward of a grouped convolution computes the weight terms
    group by group even for constant taps (seconds per step for the path-length penalty); this
    linear map's gradient of any order is just the same pair of convolutions."""

    @staticmethod
    def forward(ctx, x, taps, stride, padding, transposed, output_padding):
        ctx.taps, ctx.stride, ctx.padding, ctx.transposed = taps, stride, padding, transposed
        ctx.in_size = x.shape[-2:]
        ctx.channels_last = x.is_contiguous(memory_format=torch.channels_last)
        return _depthwise(x, taps, stride, padding, transposed, output_padding)

    @staticmethod
    def backward(ctx, g):
        taps, stride, padding = ctx.taps, ctx.stride, ctx.padding
        if ctx.channels_last:  # gradients often arrive in another layout, where oneDNN is several times slower
            g = g.contiguous(memory_format=torch.channels_last)
        k = taps.shape[-1]
        if ctx.transposed:  # the adjoint of a transposed convolution is the convolution
            grad = _DepthwiseFIR.apply(g, taps, stride, padding, False, 0)
        elif stride == 1 and k - 1 - padding >= 0:
            # the adjoint of a stride-1 correlation is the correlation with the flipped taps
            # (oneDNN's own transposed depthwise path is much slower)
            grad = _DepthwiseFIR.apply(g, taps.flip([2, 3]), 1, k - 1 - padding, False, 0)
        else:
            h, w = ctx.in_size
            op = (h - ((g.shape[-2] - 1) * stride - 2 * padding + k), w - ((g.shape[-1] - 1) * stride - 2 * padding + k))
            grad = _DepthwiseFIR.apply(g, taps, stride, padding, True, op)
        return grad, None, None, None, None, None


def depthwise_fir(x: torch.Tensor, taps: torch.Tensor, *, stride: int = 1, padding: int = 0,
                  transposed: bool = False, output_padding: int = 0) -> torch.Tensor:
    """``F.conv2d(x, taps, groups=C)`` (or ``F.conv_transpose2d``) for constant FIR ``taps``
    ``(C, 1, k, k)``, with a backward of any order that is again one depthwise convolution.

    Example:
        >>> x, taps = torch.randn(2, 3, 8, 8), torch.ones(3, 1, 2, 2) / 4
        >>> bool(torch.allclose(depthwise_fir(x, taps, stride=2), F.conv2d(x, taps, stride=2, groups=3)))
        True
    """
    if torch.is_grad_enabled() and x.requires_grad:
        return _DepthwiseFIR.apply(x, taps, stride, padding, transposed, output_padding)
    return _depthwise(x, taps, stride, padding, transposed, output_padding)


def _depthwise(x, taps, stride, padding, transposed, output_padding):
    # In x's dtype whatever autocast says: a float32 image skip path stays float32, and the
    # backward (which runs outside autocast) sees the dtype the forward produced.
    taps = taps.to(x.dtype)
    with torch.autocast(x.device.type, enabled=False):
        if transposed:
            out = F.conv_transpose2d(x, taps, stride=stride, padding=padding, output_padding=output_padding, groups=x.shape[1])
        else:
            out = F.conv2d(x, taps, stride=stride, padding=padding, groups=x.shape[1])
    return out.contiguous(memory_format=torch.channels_last) if x.is_contiguous(memory_format=torch.channels_last) else out
