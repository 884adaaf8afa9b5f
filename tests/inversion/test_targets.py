"""Bad targets and masks are refused with a clear error instead of giving a silent garbage latent."""

from __future__ import annotations

import pytest
import torch

from latentshop.errors import ConfigError, ShapeError
from latentshop.inversion import check_mask, invert, prepare_target
from latentshop.models.stylegan2 import Generator


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                     synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()


def _photo(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, 16, 16, generator=g) * 2 - 1  # [-1, 1]


def test_images_in_the_right_range_are_taken(G):
    x = _photo()
    assert torch.equal(prepare_target(G, x), x)
    assert prepare_target(G, torch.zeros(1, 3, 16, 16)).shape == (1, 3, 16, 16)  # flat grey is [-1, 1] too
    assert prepare_target(G, (x * 1.4).clamp(-1.6, 1.6)).shape == x.shape  # a generator's own overshoot


def test_pixels_in_0_255_are_refused(G):
    with pytest.raises(ShapeError, match=r"\[0, 255\]"):
        prepare_target(G, (_photo() + 1) * 127.5)


def test_images_in_0_1_are_refused(G):
    with pytest.raises(ShapeError, match=r"\[0, 1\]"):
        prepare_target(G, (_photo() + 1) / 2)
    with pytest.raises(ShapeError, match=r"\[0, 1\]"):
        invert(G, (_photo() + 1) / 2, method="w+", steps=1, w_avg_samples=50)


def test_nan_targets_are_refused(G):
    x = _photo()
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ShapeError, match="NaN"):
        prepare_target(G, x)


def test_masks_are_checked_not_clamped(G):
    x = _photo()
    ok = torch.ones(1, 1, 16, 16)
    assert torch.equal(check_mask(ok, x), ok)
    with pytest.raises(ShapeError, match=r"\[0, 1\]"):
        check_mask(ok * 255, x)  # a 0-255 grey image given as a mask
    with pytest.raises(ShapeError, match=r"\[0, 1\]"):
        check_mask(ok - 2, x)
    with pytest.raises(ShapeError, match="all zero"):
        check_mask(torch.zeros(2, 1, 16, 16), x)
    nan = ok.clone()
    nan[0, 0, 3, 3] = float("nan")
    with pytest.raises(ShapeError, match="NaN"):
        check_mask(nan, x)
    with pytest.raises(ShapeError, match="mask must be"):
        check_mask(torch.ones(1, 1, 8, 8), x)
    with pytest.raises(ShapeError, match=r"\[0, 1\]"):
        invert(G, x, method="w+", steps=1, mask=ok * 2, w_avg_samples=50)


def test_an_encoder_method_refuses_a_mask(G):
    with pytest.raises(ConfigError, match="mask needs an optimisation method"):
        invert(G, _photo(), method="e4e", mask=torch.ones(1, 1, 16, 16))
