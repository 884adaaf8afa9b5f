"""ops/fast.py: the fast synthesis kernels equal the reference formulation, compiled or not."""

from __future__ import annotations

import math
import shutil
import warnings

import pytest
import torch

import latentshop.ops.fused as fused
from latentshop.ops import bias_act, modulated_conv2d, setup_filter, upsample2d
from latentshop.ops.fast import demodulation_coefficients, fast_modulated_layer, fast_torgb, fast_upsample2d


def reference_layer(x, w, s, *, bias, noise, up, clamp, gain=math.sqrt(2)):
    f = setup_filter([1, 3, 3, 1])
    y = modulated_conv2d(x, w, s, noise=noise, up=up, padding=1, resample_filter=f, flip_weight=up == 1)
    return bias_act(y, bias, act="lrelu", gain=gain, clamp=clamp)


def layer_inputs(seed=0, n=2, cin=6, cout=5, res=8):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, cin, res, res, generator=g), torch.randn(cout, cin, 3, 3, generator=g),
            torch.randn(n, cin, generator=g), torch.randn(cout, generator=g), torch.randn(1, 1, 2 * res, 2 * res, generator=g))


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("clamp", [None, 0.5])
def test_fast_layer_equals_reference(up, clamp):
    x, w, s, b, noise = layer_inputs()
    noise = noise[..., : 8 * up, : 8 * up]
    want = reference_layer(x, w, s, bias=b, noise=noise, up=up, clamp=clamp)
    got = fast_modulated_layer(x, w, s, bias=b, noise=noise, up=up, padding=1, resample_filter=setup_filter([1, 3, 3, 1]),
                               flip_weight=up == 1, clamp=clamp)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(got, want, atol=1e-5)


def test_style_folding_between_layers():
    """next_styles scales the output; premodulated skips the input scaling: together they equal two plain layers."""
    x, w, s, b, _ = layer_inputs()
    w2, s2 = torch.randn(4, 5, 3, 3), torch.randn(2, 5)
    plain = fast_modulated_layer(fast_modulated_layer(x, w, s, bias=b, padding=1), w2, s2, padding=1)
    folded = fast_modulated_layer(fast_modulated_layer(x, w, s, bias=b, padding=1, next_styles=s2), w2, s2, padding=1, premodulated=True)
    assert torch.allclose(plain, folded, atol=1e-5)


def test_helpers_equal_their_definitions():
    w, s = torch.randn(5, 4, 3, 3), torch.randn(2, 4)
    want = ((w[None] * s[:, None, :, None, None]).square().sum([2, 3, 4]) + 1e-8).rsqrt()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = demodulation_coefficients(w, s)  # kept float32 under autocast
    assert got.dtype == torch.float32 and torch.allclose(got, want, rtol=1e-5)
    x, w1 = torch.randn(2, 4, 8, 8), torch.randn(3, 4, 1, 1)
    assert torch.allclose(fast_torgb(x, w1, s, bias=torch.ones(3)), modulated_conv2d(x, w1, s, demodulate=False) + 1, atol=1e-5)
    f = setup_filter([1, 3, 3, 1])
    assert torch.allclose(fast_upsample2d(x, f), upsample2d(x, f), atol=1e-6)


def test_compiled_epilogue_matches_eager(monkeypatch):
    """The torch.compile'd fused kernels (used for large activations) compute the same values."""
    x, w, s, b, noise = layer_inputs(n=2, cin=8, cout=8, res=16)
    f = setup_filter([1, 3, 3, 1])
    kwargs = dict(bias=b, noise=noise, up=2, padding=1, resample_filter=f, flip_weight=False, clamp=0.7, next_styles=torch.randn(2, 8))
    monkeypatch.setitem(fused._state, "enabled", False)
    with torch.no_grad():
        eager = fast_modulated_layer(x, w, s, **kwargs)
        monkeypatch.setattr(fused, "COMPILE_MIN_NUMEL", 0)
        monkeypatch.setitem(fused._state, "enabled", True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a failed compile warns and falls back
            compiled = fast_modulated_layer(x, w, s, **kwargs)
    if shutil.which("c++") or shutil.which("g++"):
        # inductor's CPU backend needs a C++ compiler; with one, compiling must work
        assert not fused._state["failed"], "torch.compile failed although a C++ compiler is present"
    assert torch.allclose(compiled, eager, atol=1e-5)


def test_compile_failure_falls_back_with_a_warning(monkeypatch):
    x, w, s, b, _ = layer_inputs()
    want = fast_modulated_layer(x, w, s, bias=b, padding=1)

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(fused, "COMPILE_MIN_NUMEL", 0)
    monkeypatch.setitem(fused._state, "enabled", True)
    monkeypatch.setitem(fused._state, "failed", False)
    monkeypatch.setattr(fused, "_compiled", {})
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: broken)
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = fast_modulated_layer(x, w, s, bias=b, padding=1)
    assert any("torch.compile" in str(c.message) for c in caught)
    assert torch.allclose(got, want, atol=1e-6)
