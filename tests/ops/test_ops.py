"""ops/: FIR resampling, bias_act and modulated convolution against direct formulations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latentshop.errors import ConfigError, ShapeError
from latentshop.ops import bias_act, conv2d_resample, downsample2d, modulated_conv2d, setup_filter, upfirdn2d, upsample2d


def naive_upfirdn2d(x: np.ndarray, f: np.ndarray, up: int, down: int, pad: tuple[int, int, int, int]) -> np.ndarray:
    """Textbook definition: zero-insert, pad (crop when negative), true 2-D convolution, decimate."""
    n, c, h, w = x.shape
    u = np.zeros((n, c, h * up, w * up), x.dtype)
    u[:, :, ::up, ::up] = x
    px0, px1, py0, py1 = pad
    u = np.pad(u, ((0, 0), (0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))))
    u = u[:, :, max(-py0, 0) : u.shape[2] - max(-py1, 0), max(-px0, 0) : u.shape[3] - max(-px1, 0)]
    fh, fw = f.shape
    out = np.zeros((n, c, u.shape[2] - fh + 1, u.shape[3] - fw + 1), x.dtype)
    for i in range(fh):
        for j in range(fw):
            out += f[fh - 1 - i, fw - 1 - j] * u[:, :, i : i + out.shape[2], j : j + out.shape[3]]
    return out[:, :, ::down, ::down]


@pytest.mark.parametrize("up,down,pad", [(1, 1, (1, 2, 0, 1)), (2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)), (2, 2, (-1, 2, 0, 0))])
def test_upfirdn2d_matches_definition(up, down, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    f = rng.standard_normal((4, 3)).astype(np.float32)  # asymmetric, so a flip error shows
    ours = upfirdn2d(torch.from_numpy(x), torch.from_numpy(f), up=up, down=down, padding=pad).numpy()
    assert np.allclose(ours, naive_upfirdn2d(x, f, up, down, pad), atol=1e-5)


def test_separable_filter_equals_outer_product():
    x = torch.randn(1, 2, 9, 9)
    taps = [1.0, 2, 5, 7, 7, 5, 2, 1]
    sep = setup_filter(taps)  # 8 taps: separable by default
    assert sep.ndim == 1
    full = setup_filter(taps, separable=False)
    assert torch.allclose(upfirdn2d(x, sep, padding=3), upfirdn2d(x, full, padding=3), atol=1e-5)


def test_resampling_keeps_constants_and_sizes():
    f = setup_filter([1, 3, 3, 1])
    assert torch.allclose(f.sum(), torch.tensor(1.0))
    x = torch.full((1, 1, 8, 8), 2.0)
    up, down = upsample2d(x, f), downsample2d(x, f)
    assert up.shape[-1] == 16 and down.shape[-1] == 4
    assert torch.allclose(up[..., 2:-2, 2:-2], torch.tensor(2.0)) and torch.allclose(down[..., 1:-1, 1:-1], torch.tensor(2.0))


def test_bad_filter_and_input_raise():
    with pytest.raises(ShapeError):
        setup_filter(torch.ones(2, 2, 2))
    with pytest.raises(ShapeError):
        upfirdn2d(torch.ones(3, 3), setup_filter([1, 1]))


def test_bias_act_order_and_defaults():
    x = torch.tensor([[-2.0, 0.5, 3.0]])
    b = torch.tensor([1.0, 0.0, -1.0])
    expected = F.leaky_relu(x + b, 0.2) * math.sqrt(2)
    assert torch.allclose(bias_act(x, b, act="lrelu"), expected)
    assert torch.allclose(bias_act(x, b, act="lrelu", clamp=1.0), expected.clamp(-1, 1))
    assert torch.allclose(bias_act(x, None, act="linear", gain=3.0), 3 * x)
    with pytest.raises(ConfigError, match="unknown activation"):
        bias_act(x, act="gelu-ish")


def per_sample_modconv(x, weight, styles, demodulate, up, f):
    """One ordinary convolution per sample with its own modulated (and demodulated) weight."""
    out = []
    for n in range(x.shape[0]):
        w = weight * styles[n].reshape(1, -1, 1, 1)
        if demodulate:
            w = w * (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).rsqrt()
        out.append(conv2d_resample(x[n : n + 1], w, f=f, up=up, padding=weight.shape[-1] // 2, flip_weight=up == 1))
    return torch.cat(out)


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("fused", [True, False])
def test_modulated_conv2d(up, demodulate, fused):
    torch.manual_seed(0)
    f = setup_filter([1, 3, 3, 1])
    x, weight, styles = torch.randn(3, 4, 8, 8), torch.randn(5, 4, 3, 3), torch.randn(3, 4)
    noise = torch.randn(1, 1, 8 * up, 8 * up)
    got = modulated_conv2d(x, weight, styles, noise=noise, up=up, padding=1, resample_filter=f, demodulate=demodulate,
                           flip_weight=up == 1, fused_modconv=fused)
    want = per_sample_modconv(x, weight, styles, demodulate, up, f) + noise
    assert got.shape == (3, 5, 8 * up, 8 * up)
    assert torch.allclose(got, want, atol=1e-4)


def test_upsampling_conv_equals_zero_insert_then_convolve():
    """conv2d_resample(up=2) is zero insertion, FIR filtering (gain 4) and a true convolution."""
    torch.manual_seed(1)
    f = setup_filter([1, 3, 3, 1])
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    got = conv2d_resample(x, w, f=f, up=2, padding=1, flip_weight=False)
    # Composition of the two linear filters, applied in one go on the zero-inserted input.
    fw = f.shape[0]
    up = upfirdn2d(x, f, up=2, padding=[(fw + 1) // 2 + 1, (fw - 2) // 2 + 1] * 2, gain=4)
    want = F.conv2d(up, w.flip([2, 3]))
    assert got.shape == want.shape == (1, 3, 10, 10)
    assert torch.allclose(got, want, atol=1e-4)


def test_ops_are_differentiable():
    torch.manual_seed(2)
    f = setup_filter([1, 3, 3, 1]).double()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    s = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, s: modulated_conv2d(x, w, s, up=2, padding=1, resample_filter=f, flip_weight=False, fused_modconv=False),
        (x, w, s),
    )
    assert torch.autograd.gradcheck(lambda x: downsample2d(x, f), (x,))
