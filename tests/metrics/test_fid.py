"""Tests of the Fréchet Inception Distance with a tiny stand-in TorchScript detector.

The stand-in is not NVIDIA's file, so most tests make its SHA-256 the trusted one (``trust_detector``);
the file checks themselves are tested against the real digest.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import latentshop.metrics.fid as fid_module
from latentshop.errors import CheckpointError, ConfigError, ShapeError
from latentshop.metrics import (
    FrechetInceptionDistance,
    SlicedWassersteinDistance,
    frechet_distance,
    get_metric,
    list_metrics,
)
from latentshop.metrics.fid import INCEPTION_URL, file_sha256, load_inception

NVIDIA_SHA256 = fid_module.INCEPTION_SHA256


class TinyDetector(torch.nn.Module):
    """Same calling convention as NVIDIA's inception-2015-12-05.pt: uint8 (N, 3, H, W) -> (N, 16)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("weight", torch.randn(48, 16, generator=g) / 7)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(img.to(torch.float32) / 255, 4).flatten(1)  # [N, 48]
        return torch.tanh(x @ self.weight)  # [N, 16]


@pytest.fixture(scope="module")
def detector_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fid") / "tiny-detector.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated, still NVIDIA's format
        torch.jit.save(torch.jit.script(TinyDetector()), str(path))
    return path


@pytest.fixture(autouse=True)
def trust_detector(detector_path, monkeypatch):
    monkeypatch.setattr(fid_module, "INCEPTION_SHA256", file_sha256(detector_path))


def images(n: int, seed: int, channels: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, channels, 4, 4, generator=g)
    return F.interpolate(low, size=16, mode="bilinear", align_corners=False) * 1.6 - 0.8  # in [-0.8, 0.8]


def numpy_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """Closed-form Gaussian FID by an independent route: eigenvalues of S1 @ S2 (population covariances)."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False, bias=True), np.cov(f2, rowvar=False, bias=True)
    eig = np.linalg.eigvals(s1 @ s2).real.clip(min=0)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eig).sum())


def test_identical_sets_give_zero(detector_path):
    fid = FrechetInceptionDistance(detector_path)
    x = images(40, seed=0)
    fid.update(x, "real")
    fid.update(x, "fake")
    assert abs(fid.compute()["fid"]) < 1e-8


def test_grows_with_mean_shift(detector_path):
    fid = FrechetInceptionDistance(detector_path)
    x = images(40, seed=0)
    fid.update(x, "real")
    values = []
    for shift in (0.05, 0.1, 0.2):
        fid.reset("fake")
        fid.update(x + shift, "fake")
        values.append(fid.compute()["fid"])
    assert 0 < values[0] < values[1] < values[2]


def test_matches_closed_form_on_random_features(detector_path):
    rng = np.random.default_rng(0)
    f1 = rng.standard_normal((300, 8)) @ rng.standard_normal((8, 8))
    f2 = rng.standard_normal((200, 8)) @ rng.standard_normal((8, 8)) + 0.5
    fid = FrechetInceptionDistance(detector_path)
    for chunk in np.array_split(f1, 7):  # merged batch moments == moments of the whole set
        fid.update_features(torch.from_numpy(chunk), "real")
    fid.update_features(torch.from_numpy(f2), "fake")
    mu, sigma = fid.statistics("real")
    np.testing.assert_allclose(mu.numpy(), f1.mean(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sigma.numpy(), np.cov(f1, rowvar=False, bias=True), rtol=1e-10, atol=1e-12)
    assert fid.compute()["fid"] == pytest.approx(numpy_fid(f1, f2), rel=1e-8)


def test_images_go_through_the_detector_as_uint8(detector_path):
    fid = FrechetInceptionDistance(detector_path, batch_size=7)
    x, y = images(30, seed=0), images(30, seed=1)
    fid.update(x, "real")
    fid.update(y, "fake")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        det = torch.jit.load(str(detector_path))
    to_u8 = lambda t: (t * 127.5 + 128).clamp(0, 255).to(torch.uint8)  # noqa: E731
    f1 = det(to_u8(x), return_features=True).double().numpy()
    f2 = det(to_u8(y), return_features=True).double().numpy()
    assert fid.compute()["fid"] == pytest.approx(numpy_fid(f1, f2), rel=1e-6)


def test_grayscale_is_repeated_to_rgb(detector_path):
    fid = FrechetInceptionDistance(detector_path)
    gray = images(5, seed=2, channels=1)
    torch.testing.assert_close(fid.features(gray), fid.features(gray.repeat(1, 3, 1, 1)))


def test_frechet_distance_closed_form():
    # Commuting (diagonal) covariances: Tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(a) - sqrt(b))^2.
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 4.0, 1.0])
    mu1, mu2 = torch.zeros(3), torch.tensor([1.0, 2.0, 0.0])
    expected = 5.0 + float(((a.sqrt() - b.sqrt()) ** 2).sum())
    assert frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(expected, rel=1e-12)
    # Singular covariances are fine (negative round-off eigenvalues are clamped).
    assert frechet_distance(mu1, torch.zeros(3, 3), mu1, torch.zeros(3, 3)) == 0.0
    with pytest.raises(ShapeError):
        frechet_distance(mu1, torch.eye(2), mu2, torch.eye(3))


def test_missing_file_says_how_to_get_it(tmp_path):
    with pytest.raises(CheckpointError) as info:
        FrechetInceptionDistance(tmp_path / "inception-2015-12-05.pt")
    message = str(info.value)
    assert "inception-2015-12-05.pt" in message
    assert "NVIDIA" in message
    assert "downloads nothing" in message


def test_not_torchscript_is_a_checkpoint_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torchscript archive")
    with pytest.raises(CheckpointError):
        FrechetInceptionDistance(bad)


def test_bad_inputs_raise(detector_path):
    fid = FrechetInceptionDistance(detector_path)
    with pytest.raises(ShapeError):
        fid.update(torch.zeros(2, 2, 16, 16), "real")
    with pytest.raises(ShapeError):
        fid.update(torch.zeros(16, 16), "real")
    with pytest.raises(ConfigError):
        fid.update(torch.zeros(2, 3, 16, 16), "gen")  # type: ignore[arg-type]
    fid.update(images(3, seed=0), "real")
    with pytest.raises(ConfigError):
        fid.compute()  # no fake images
    with pytest.raises(ShapeError):
        fid.update_features(torch.zeros(4, 5), "fake")  # 5 features after 16


def test_registry():
    assert list_metrics() == ["fid", "kid-mobilenet", "swd"]
    assert get_metric("swd") is SlicedWassersteinDistance
    assert get_metric("fid") is FrechetInceptionDistance
    with pytest.raises(ConfigError, match="known metrics"):
        get_metric("is")


def test_nvidia_digest_is_pinned():
    # sha256 of INCEPTION_URL's file, as crowsonkb/k-diffusion (k_diffusion/evaluation.py) pins it
    assert NVIDIA_SHA256 == "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"


def test_a_file_that_is_not_nvidias_is_refused(detector_path, monkeypatch):
    monkeypatch.setattr(fid_module, "INCEPTION_SHA256", NVIDIA_SHA256)
    with pytest.raises(CheckpointError) as info:
        FrechetInceptionDistance(detector_path)  # valid TorchScript, wrong digest: never loaded
    message = str(info.value)
    assert file_sha256(detector_path) in message and NVIDIA_SHA256 in message  # received and expected
    assert INCEPTION_URL in message and "--no-verify-inception" in message  # where to get it, the way out


class WrongOutput(torch.nn.Module):
    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return img.float()  # [N, 3, H, W], not features


def test_unverified_file_warns_and_gets_a_structure_check(detector_path, tmp_path):
    with pytest.warns(UserWarning, match="not checked"):
        fid = FrechetInceptionDistance(detector_path, verify=False)
    assert not fid.verified and fid.features(images(2, seed=0)).shape == (2, 16)
    bad = tmp_path / "wrong-output.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(WrongOutput()), str(bad))
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match=r"expected float features \(2, F\)"):
        load_inception(bad, verify=False)
