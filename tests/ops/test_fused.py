"""The fused element-wise kernels: values, gradients and gradients of gradients, eager and compiled."""

from __future__ import annotations


import pytest
import torch

from latentshop.ops import bias_act, modulated_conv2d, setup_filter
from latentshop.ops.fast import fast_modulated_layer
from latentshop.ops.fused import bias_act_fused, modulate


def _inputs(dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randn(2, 3, 4, 5, generator=gen, dtype=dtype).requires_grad_()
    coef = torch.rand(2, 3, 1, 1, generator=gen, dtype=dtype).add(0.5).requires_grad_()
    noise = torch.randn(2, 1, 4, 5, generator=gen, dtype=dtype).requires_grad_()
    bias = torch.randn(1, 3, 1, 1, generator=gen, dtype=dtype).requires_grad_()
    post = torch.randn(2, 3, 1, 1, generator=gen, dtype=dtype).requires_grad_()
    return y, coef, noise, bias, post


def _reference(y, coef, noise, bias, post, alpha, clamp):
    out = torch.nn.functional.leaky_relu(y * coef + noise + bias, alpha)
    if clamp is not None:
        out = out.clamp(-clamp, clamp)
    return out * post


def test_bias_act_values_and_gradients(fused_kernels):
    for alpha, clamp in ((0.2, None), (0.2, 0.8), (1.0, None)):
        # float64 here: the kernels compute in float32 arithmetic, so compare at float32 tolerance
        args = [t.float().detach().requires_grad_() for t in _inputs()]
        got = bias_act_fused(args[0], args[1], noise=args[2], bias=args[3], post=args[4], alpha=alpha, clamp=clamp)
        want = _reference(*args, alpha, clamp)
        assert torch.allclose(got, want, atol=1e-6)
        g = torch.randn_like(got)
        grads = torch.autograd.grad(got, args, g)
        want_grads = torch.autograd.grad(want, args, g)
        for a, b in zip(grads, want_grads):
            assert torch.allclose(a, b, atol=1e-5), (alpha, clamp)


def test_gradients_of_gradients_are_exact(fused_kernels):
    """A penalty on a gradient (R1, path length) differentiates the backward pass: it must be exact."""
    args = [t.detach().float().requires_grad_() for t in _inputs(seed=1)]

    def penalty(fn):
        out = fn(*args)
        (gy,) = torch.autograd.grad((out * out.detach().sin()).sum(), args[0], create_graph=True)
        return torch.autograd.grad(gy.square().sum(), args)

    got = penalty(lambda y, c, n, b, p: bias_act_fused(y, c, noise=n, bias=b, post=p, alpha=0.2))
    want = penalty(lambda y, c, n, b, p: _reference(y, c, n, b, p, 0.2, None))
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-4)


def test_modulate_values_gradients_and_second_order(fused_kernels):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 4, 4, generator=gen).requires_grad_()
    s = torch.randn(2, 3, generator=gen).requires_grad_()
    out = modulate(x, s)
    assert torch.allclose(out, x * s[:, :, None, None])
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (x, s), g), torch.autograd.grad(x * s[:, :, None, None], (x, s), g)):
        assert torch.allclose(a, b, atol=1e-6)
    (gx,) = torch.autograd.grad((modulate(x, s) ** 3).sum(), x, create_graph=True)
    (gx_ref,) = torch.autograd.grad(((x * s[:, :, None, None]) ** 3).sum(), x, create_graph=True)
    assert torch.allclose(torch.autograd.grad(gx.sum(), s)[0], torch.autograd.grad(gx_ref.sum(), s)[0], atol=1e-4)


def test_bfloat16_keeps_dtype_and_layout(fused_kernels):
    y = torch.randn(2, 4, 6, 6).to(torch.bfloat16).contiguous(memory_format=torch.channels_last).requires_grad_()
    coef = torch.rand(2, 4, 1, 1).requires_grad_()
    out = bias_act_fused(y, coef, bias=torch.zeros(1, 4, 1, 1))
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
    gy, gc = torch.autograd.grad(out.float().sum(), (y, coef))
    assert gy.dtype == torch.bfloat16 and gc.dtype == torch.float32


def test_fast_layer_gradients_match_the_reference_layer(fused_kernels):
    """Training through impl='fast' layers: the same gradients as the reference modulated convolution."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 8, 8, generator=gen).requires_grad_()
    w = torch.randn(5, 4, 3, 3, generator=gen).requires_grad_()
    s = torch.randn(2, 4, generator=gen).requires_grad_()
    b = torch.randn(5, generator=gen).requires_grad_()
    noise = torch.randn(2, 1, 16, 16, generator=gen).requires_grad_()
    f = setup_filter([1, 3, 3, 1])
    got = fast_modulated_layer(x, w, s, bias=b, noise=noise, up=2, padding=1, resample_filter=f, flip_weight=False)
    ref = bias_act(modulated_conv2d(x, w, s, noise=noise, up=2, padding=1, resample_filter=f, flip_weight=False,
                                    fused_modconv=False), b, act="lrelu")
    assert torch.allclose(got, ref, atol=1e-5)
    g = torch.randn_like(ref)
    for a, c in zip(torch.autograd.grad(got, (x, w, s, b, noise), g), torch.autograd.grad(ref, (x, w, s, b, noise), g)):
        assert torch.allclose(a, c, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("stride, padding, transposed", [(1, 2, False), (2, 1, False), (2, 1, True)])
def test_depthwise_fir_gradients_of_every_order(stride, padding, transposed):
    from latentshop.ops.fused import depthwise_fir

    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64).requires_grad_()
    taps = torch.rand(3, 1, 4, 4, generator=gen, dtype=torch.float64)
    conv = torch.nn.functional.conv_transpose2d if transposed else torch.nn.functional.conv2d
    kwargs = dict(stride=stride, padding=padding, groups=3)
    assert torch.allclose(depthwise_fir(x, taps, stride=stride, padding=padding, transposed=transposed), conv(x, taps, **kwargs))
    assert torch.autograd.gradcheck(lambda t: depthwise_fir(t, taps, stride=stride, padding=padding, transposed=transposed), (x,))
    assert torch.autograd.gradgradcheck(lambda t: depthwise_fir(t, taps, stride=stride, padding=padding, transposed=transposed) ** 2, (x,))
