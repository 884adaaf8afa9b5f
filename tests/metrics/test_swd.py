"""Tests of the multi-scale sliced Wasserstein distance (Karras et al. 2018, appendix D)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latentshop.errors import ConfigError, ImageError, ShapeError
from latentshop.metrics import SlicedWassersteinDistance, laplacian_pyramid, sliced_wasserstein
from latentshop.metrics.swd import _wasserstein_1d, swd_resolutions

FAST = dict(nhoods_per_image=32, dir_repeats=2, dirs_per_repeat=32)


def smooth_images(n: int, channels: int = 3, res: int = 32, seed: int = 0) -> torch.Tensor:
    """Natural-ish images: low-frequency noise upsampled, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, channels, res // 4, res // 4, generator=g)
    return F.interpolate(low, size=res, mode="bilinear", align_corners=False) * 2 - 1


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = 3
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    y = F.pad(x, (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def reference_pyramid(x: np.ndarray, num_levels: int) -> list[np.ndarray]:
    """The cv2.pyrDown/pyrUp pyramid written out with numpy (mirror boundary, explicit 5x5 sums)."""
    k1 = np.array([1, 4, 6, 4, 1], np.float64) / 16
    k2 = np.outer(k1, k1)

    def blur(a: np.ndarray) -> np.ndarray:
        p = np.pad(a, ((0, 0), (0, 0), (2, 2), (2, 2)), mode="reflect")  # == scipy.ndimage 'mirror'
        out = np.zeros_like(a)
        for dy in range(5):
            for dx in range(5):
                out += k2[dy, dx] * p[:, :, dy : dy + a.shape[2], dx : dx + a.shape[3]]
        return out

    levels = [x.astype(np.float64)]
    for _ in range(1, num_levels):
        down = blur(levels[-1])[:, :, ::2, ::2]
        up = np.zeros_like(levels[-1])
        up[:, :, ::2, ::2] = down
        levels[-1] = levels[-1] - 4 * blur(up)
        levels.append(down)
    return levels


def test_resolutions_and_keys():
    assert swd_resolutions(16) == [16]
    assert swd_resolutions(128) == [128, 64, 32, 16]
    x = smooth_images(4, res=64)
    out = sliced_wasserstein(x, x.flip(-1), **FAST)
    assert list(out) == ["swd_64", "swd_32", "swd_16", "swd_avg"]
    assert out["swd_avg"] == pytest.approx((out["swd_64"] + out["swd_32"] + out["swd_16"]) / 3)


@pytest.mark.parametrize("resolution", [8, 24, 33])
def test_bad_resolution(resolution):
    with pytest.raises(ConfigError):
        SlicedWassersteinDistance(resolution)


def test_laplacian_pyramid_matches_numpy_reference_and_reconstructs():
    x = torch.rand(2, 3, 32, 32) * 255
    levels = laplacian_pyramid(x, 2)
    ref = reference_pyramid(x.numpy(), 2)
    for ours, theirs in zip(levels, ref):
        np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-3)
    from latentshop.metrics.swd import _pyr_up

    torch.testing.assert_close(_pyr_up(levels[1]) + levels[0], x, atol=1e-3, rtol=0)


def test_identical_sets_give_zero_at_every_level():
    x = smooth_images(6)
    out = sliced_wasserstein(x, x.clone(), **FAST)
    assert out == {"swd_32": 0.0, "swd_16": 0.0, "swd_avg": 0.0}


@pytest.mark.parametrize("perturbation", ["noise", "blur"])
def test_grows_monotonically_with_perturbation_strength(perturbation):
    x = smooth_images(12)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    strengths = [0.05, 0.15, 0.4] if perturbation == "noise" else [0.6, 1.2, 2.5]
    results = []
    for s in strengths:
        y = (x + s * noise).clamp(-1, 1) if perturbation == "noise" else gaussian_blur(x, s)
        results.append(sliced_wasserstein(x, y, **FAST))
    for key in ("swd_32", "swd_16", "swd_avg"):
        values = [r[key] for r in results]
        assert values[0] > 0
        assert values == sorted(values), (key, values)


def test_deterministic_given_seed_and_seed_matters():
    x, y = smooth_images(4, seed=0), smooth_images(4, seed=1)
    a = sliced_wasserstein(x, y, seed=3, **FAST)
    b = sliced_wasserstein(x, y, seed=3, **FAST)
    c = sliced_wasserstein(x, y, seed=4, **FAST)
    assert a == b
    assert a != c


def test_independent_of_batch_splitting_and_hint():
    x, y = smooth_images(7, seed=0), smooth_images(5, seed=1)
    whole = SlicedWassersteinDistance(32, **FAST)
    whole.update(x, "real")
    whole.update(y, "fake")
    split = SlicedWassersteinDistance(32, num_images_hint=2, **FAST)  # the hint is exceeded: buffers grow
    for start in range(0, 7, 3):
        split.update(x[start : start + 3], "real")
    for i in range(5):
        split.update(y[i : i + 1], "fake")
    assert split.num_images == {"real": 7, "fake": 5}
    a, b = whole.compute(), split.compute()
    assert a.keys() == b.keys()
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-5)


def test_uint8_and_float_inputs_agree():
    x, y = smooth_images(4, seed=0), smooth_images(4, seed=1)
    to_u8 = lambda t: (t * 127.5 + 128).clamp(0, 255).to(torch.uint8)  # noqa: E731
    assert sliced_wasserstein(x, y, **FAST) == sliced_wasserstein(to_u8(x), to_u8(y), **FAST)


def test_one_channel_and_unequal_set_sizes():
    x, y = smooth_images(6, channels=1, seed=0), smooth_images(4, channels=1, seed=1)
    out = sliced_wasserstein(x, y, **FAST)
    assert set(out) == {"swd_32", "swd_16", "swd_avg"}
    assert all(math.isfinite(v) and v > 0 for v in out.values())


def test_unequal_size_distance_matches_equal_size_formula():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 4, generator=g).sort(dim=0).values
    b = (torch.randn(50, 4, generator=g) + 0.3).sort(dim=0).values
    b2 = torch.cat([b, b]).sort(dim=0).values  # same empirical distribution, twice the size
    torch.testing.assert_close(_wasserstein_1d(a, b2), _wasserstein_1d(a, b), rtol=1e-5, atol=1e-6)
    assert torch.all(_wasserstein_1d(b, b2).abs() < 1e-6)


def test_reset_fake_keeps_real():
    x, y, z = smooth_images(3, seed=0), smooth_images(3, seed=1), smooth_images(3, seed=2)
    m = SlicedWassersteinDistance(32, **FAST)
    m.update(x, "real")
    m.update(y, "fake")
    m.reset("fake")
    m.update(z, "fake")
    assert m.compute() == sliced_wasserstein(x, z, **FAST)


def test_bad_inputs_raise():
    m = SlicedWassersteinDistance(32, **FAST)
    with pytest.raises(ShapeError):
        m.update(torch.zeros(3, 32, 32), "real")
    with pytest.raises(ShapeError):
        m.update(torch.zeros(2, 3, 16, 16), "real")
    with pytest.raises(ShapeError):
        m.update(torch.zeros(2, 3, 32, 16), "real")
    with pytest.raises(ImageError):
        m.update(torch.zeros(2, 3, 32, 32, dtype=torch.int32), "real")
    with pytest.raises(ConfigError):
        m.update(torch.zeros(2, 3, 32, 32), "generated")  # type: ignore[arg-type]
    m.update(torch.zeros(2, 3, 32, 32), "real")
    with pytest.raises(ShapeError):
        m.update(torch.zeros(2, 1, 32, 32), "fake")
    with pytest.raises(ConfigError):
        m.compute()  # no fake images yet
    with pytest.raises(ShapeError):
        sliced_wasserstein(torch.zeros(2, 3, 32, 32), torch.zeros(2, 1, 32, 32))
    with pytest.raises(ConfigError):
        SlicedWassersteinDistance(32, nhood_size=4)


def test_chunked_projection_gives_the_same_result(monkeypatch):
    import latentshop.metrics.swd as swd_module

    x, y = smooth_images(5, seed=0), smooth_images(5, seed=1)
    whole = sliced_wasserstein(x, y, **FAST)
    monkeypatch.setattr(swd_module, "_ROW_CHUNK", 7)  # rows normalised/projected a few at a time
    monkeypatch.setattr(swd_module, "_PROJECTION_BUDGET", 5 * 32 * 5)  # 5 directions at a time
    chunked = sliced_wasserstein(x, y, **FAST)
    for k in whole:
        assert chunked[k] == pytest.approx(whole[k], rel=1e-5)
