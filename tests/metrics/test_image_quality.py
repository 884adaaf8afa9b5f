"""PSNR / SSIM / MS-SSIM against scikit-image, and their edge cases (identical images, small sizes, masks, gradients)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from latentshop.errors import ConfigError, ShapeError
from latentshop.metrics.image import MS_SSIM_WEIGHTS, ms_ssim, ms_ssim_scales, psnr, ssim


def _structured(n: int, c: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth gradients, stripes and a square: SSIM-relevant structure rather than white noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = []
    for _ in range(n):
        f = torch.rand(c, 3, generator=g) * 6 + 1
        img = torch.stack([torch.sin(f[k, 0] * xx + f[k, 1] * yy * yy) * 0.6 + 0.2 * torch.cos(f[k, 2] * 3 * xx)
                           for k in range(c)])
        img[:, size // 4 : size // 2, size // 3 : 2 * size // 3] += 0.3
        out.append(img)
    return torch.stack(out).clamp(-1, 1)


def _pair(kind: str, n: int = 3, c: int = 3, size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    a = torch.rand(n, c, size, size, generator=g) * 2 - 1 if kind == "random" else _structured(n, c, size)
    b = (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    return a, b


def _sk_ssim(a: torch.Tensor, b: torch.Tensor, **kw) -> np.ndarray:
    return np.array([structural_similarity(x.double().numpy(), y.double().numpy(), gaussian_weights=True, sigma=1.5,
                                           use_sample_covariance=False, data_range=2.0, channel_axis=0, **kw)
                     for x, y in zip(a, b)])


@pytest.mark.parametrize("kind", ["random", "structured"])
@pytest.mark.parametrize("channels", [1, 3])
def test_psnr_and_ssim_match_scikit_image(kind: str, channels: int):
    a, b = _pair(kind, c=channels)
    ours = psnr(a, b)
    ref = [peak_signal_noise_ratio(x.double().numpy(), y.double().numpy(), data_range=2.0) for x, y in zip(a, b)]
    assert ours.shape == (3,) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-4)
    np.testing.assert_allclose(ssim(a, b).numpy(), _sk_ssim(a, b), atol=1e-4)


def test_ssim_full_map_matches_scikit_image_valid_region():
    """Our mask weighting on the valid map equals scikit-image's full map restricted to the masked centres."""
    a, b = _pair("structured", n=1, size=40)
    mask = torch.zeros(1, 1, 40, 40)
    mask[..., 10:30, 5:25] = 1
    _, full = structural_similarity(a[0].double().numpy(), b[0].double().numpy(), gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=2.0, channel_axis=0, full=True)
    ref = full[:, 10:30, 5:25].mean()  # the region lies inside the 5-px border, where reflection plays no part
    assert ssim(a, b, mask=mask).item() == pytest.approx(ref, abs=1e-4)


def test_identical_images():
    a = _structured(2, 3, 64)
    assert torch.isinf(psnr(a, a)).all() and (psnr(a, a) > 0).all()
    assert torch.allclose(ssim(a, a), torch.ones(2), atol=1e-6)
    assert torch.allclose(ms_ssim(a, a), torch.ones(2), atol=1e-6)


def test_psnr_known_value_and_data_range():
    a = torch.zeros(1, 3, 8, 8)
    assert psnr(a, a + 0.02).item() == pytest.approx(40.0, abs=1e-4)
    assert psnr(a * 255, (a + 0.02) * 255, data_range=510.0).item() == pytest.approx(40.0, abs=1e-3)


@pytest.mark.parametrize("size,scales", [(32, 2), (43, 2), (44, 3), (64, 3), (11, 1), (176, 5), (256, 5)])
def test_ms_ssim_scales_for_small_images(size: int, scales: int):
    assert ms_ssim_scales(size) == scales


@pytest.mark.parametrize("size", [32, 40, 64])
def test_ms_ssim_small_images_and_gradient(size: int):
    a, b = _pair("structured", n=2, size=size)
    b = b.requires_grad_(True)
    value = ms_ssim(a, b)
    assert value.shape == (2,) and torch.isfinite(value).all() and ((value > 0) & (value < 1)).all()
    (1 - value).sum().backward()
    assert torch.isfinite(b.grad).all() and b.grad.abs().sum() > 0


def test_ms_ssim_single_scale_is_ssim_and_weights_renormalise():
    a, b = _pair("structured", n=2, size=64)
    assert torch.allclose(ms_ssim(a, b, scales=1), ssim(a, b).clamp(min=1e-6), atol=1e-6)
    assert math.isclose(sum(MS_SSIM_WEIGHTS), 1.0, abs_tol=1e-3)
    with pytest.raises(ConfigError):
        ms_ssim(a, b, scales=4)  # 64 px allows 3


def test_ms_ssim_anticorrelated_is_finite():
    a = _structured(1, 3, 32).requires_grad_(True)
    value = ms_ssim(a, -a.detach())
    value.sum().backward()
    assert torch.isfinite(value).all() and value.item() >= 0 and torch.isfinite(a.grad).all()


def test_quality_decreases_with_noise():
    a = _structured(1, 3, 64)
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(a.shape, generator=g)
    values = [(psnr(a, a + s * noise).item(), ssim(a, a + s * noise).item(), ms_ssim(a, a + s * noise).item())
              for s in (0.02, 0.1, 0.4)]
    for k in range(3):
        assert values[0][k] > values[1][k] > values[2][k]


def test_gradients_flow():
    a, b = _pair("random", n=2, size=32)
    b = b.requires_grad_(True)
    (psnr(a, b).sum() + ssim(a, b).sum()).backward()
    assert torch.isfinite(b.grad).all() and b.grad.abs().sum() > 0


def test_mask():
    a, b = _pair("structured", n=2, size=32)
    b2 = b.clone()
    b2[:, :, :, 16:] = a[:, :, :, 16:]  # the right half becomes a perfect copy
    left = torch.zeros(2, 1, 32, 32)
    left[..., :16] = 1
    assert torch.allclose(psnr(a, b2, mask=left), psnr(a[..., :16], b[..., :16]), atol=1e-4)
    assert torch.isinf(psnr(a, b2, mask=1 - left)).all()
    ones = torch.ones(1, 1, 32, 32)  # batch-1 mask broadcasts
    assert torch.allclose(ssim(a, b, mask=ones), ssim(a, b), atol=1e-6)
    assert torch.allclose(psnr(a, b, mask=ones), psnr(a, b), atol=1e-4)
    right = torch.zeros(2, 1, 32, 32)
    right[..., 24:] = 1  # window centres at least 5 px from the copied/noisy seam only see the copy
    assert torch.allclose(ssim(a, b2, mask=right), torch.ones(2), atol=1e-6)


def test_batch_equals_single():
    a, b = _pair("random", n=3, size=32)
    for fn in (psnr, ssim, ms_ssim):
        batched = fn(a, b)
        single = torch.cat([fn(a[i : i + 1], b[i : i + 1]) for i in range(3)])
        assert torch.allclose(batched, single, atol=1e-6)


def test_bad_inputs():
    a = torch.zeros(1, 3, 32, 32)
    with pytest.raises(ShapeError):
        ssim(a, torch.zeros(1, 3, 32, 16))
    with pytest.raises(ShapeError):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ShapeError):
        psnr(a, a, mask=torch.ones(1, 3, 32, 32))
    with pytest.raises(ShapeError):
        psnr(a[0], a[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    a, b = _pair("structured", n=2, size=64)
    for fn in (psnr, ssim, ms_ssim):
        assert torch.allclose(fn(a.cuda(), b.cuda()).cpu(), fn(a, b), atol=1e-4)
