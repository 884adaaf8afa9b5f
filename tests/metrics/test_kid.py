"""The kernel distance (KID's estimator) on the bundled MobileNetV2's features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentshop.errors import ConfigError, ShapeError
from latentshop.metrics import get_metric, list_metrics
from latentshop.metrics.kid import MobileNetKID, kernel_distance, mobilenet_features


def _reference_mmd(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written out pair by pair."""
    d, m = x.shape[1], x.shape[0]
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_one_subset_of_everything_is_the_unbiased_mmd():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(12, 5)), rng.normal(0.3, 1.2, size=(12, 5))
    assert kernel_distance(x, y, num_subsets=1, max_subset_size=12) == pytest.approx(_reference_mmd(x, y), rel=1e-9)


def test_distance_grows_with_the_shift_and_is_near_zero_for_one_distribution():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 32)), rng.normal(size=(400, 32))
    same = kernel_distance(a, b, num_subsets=10, max_subset_size=200)
    small = kernel_distance(a, b + 0.2, num_subsets=10, max_subset_size=200)
    large = kernel_distance(a, b + 0.6, num_subsets=10, max_subset_size=200)
    assert abs(same) < small < large


def test_bad_shapes_and_tiny_sets_are_refused():
    with pytest.raises(ShapeError):
        kernel_distance(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ConfigError, match="at least 2"):
        kernel_distance(np.zeros((1, 3)), np.zeros((4, 3)))


def test_metric_is_registered_and_separates_image_sets():
    assert "kid-mobilenet" in list_metrics()
    assert get_metric("kid-mobilenet") is MobileNetKID
    gen = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(48, 3, 32, 32, generator=gen) * 2 - 1, 5, 1, 2)
    smooth2 = torch.nn.functional.avg_pool2d(torch.rand(48, 3, 32, 32, generator=gen) * 2 - 1, 5, 1, 2)
    noise = torch.rand(48, 3, 32, 32, generator=gen) * 2 - 1
    kid = MobileNetKID(num_subsets=20, max_subset_size=48)
    kid.update(smooth, "real")
    kid.update(smooth2, "fake")
    alike = kid.compute()["kid_mobilenet"]
    kid.reset("fake")
    kid.update(noise, "fake")
    apart = kid.compute()["kid_mobilenet"]
    assert apart > 10 * max(alike, 1e-6)


def test_features_accept_grey_uint8_and_float_alike():
    img = torch.rand(2, 1, 40, 40) * 2 - 1
    as_uint8 = ((img + 1) * 127.5).round().to(torch.uint8)
    f1, f2 = mobilenet_features(img), mobilenet_features(as_uint8)
    assert f1.shape == (2, 1280)
    assert torch.allclose(f1, f2, atol=0.05 * f1.abs().max().item())
