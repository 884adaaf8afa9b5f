"""Optimisation inversion: methods, losses, masks, batching, determinism, failures."""

from __future__ import annotations

import threading

import pytest
import torch

from latentshop.errors import ConfigError, ShapeError
from latentshop.inversion import InversionError, invert, list_inversion_methods, method_defaults, parse_loss
from latentshop.latents import synthesize
from latentshop.models.stylegan2 import Generator


def tiny_generator(channels: int = 3) -> Generator:
    torch.manual_seed(0)
    return Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=channels,
                     synthesis_kwargs=dict(channel_base=128, channel_max=16)).eval()


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(4 / (a - b).square().mean(dim=(1, 2, 3)))


@pytest.fixture(scope="module")
def G():
    return tiny_generator()


@pytest.fixture(scope="module")
def targets(G):
    with torch.no_grad():
        return G(torch.randn(2, 8, generator=torch.Generator().manual_seed(5)))


FAST = dict(loss="mse=1", w_avg_samples=200)


OPTIMISATION_METHODS = ["w", "w+", "w+noise"]


def test_methods_are_registered():
    assert set(OPTIMISATION_METHODS) | {"psp", "e4e", "restyle-psp", "restyle-e4e", "e4e+opt"} == set(list_inversion_methods())


@pytest.mark.parametrize("method", OPTIMISATION_METHODS)
def test_every_method_improves_on_the_start(G, targets, method):
    start = invert(G, targets, method=method, steps=1, noise_steps=0, lr=1e-9, **FAST)
    lat = invert(G, targets, method=method, steps=60, noise_steps=20 if method == "w+noise" else 0, **FAST)
    gain = psnr(synthesize(G, lat), targets) - psnr(synthesize(G, start), targets)
    assert (gain > 3).all(), gain
    assert lat.space == ("w" if method == "w" else "w+")
    assert (lat.noise is not None) == (method in ("w", "w+noise"))
    assert lat.meta["method"] == method and lat.meta["seconds"] > 0


def test_w_method_noise_maps_stay_normalised(G, targets):
    lat = invert(G, targets, method="w", steps=10, **FAST)
    for v in lat.noise.values():
        assert v.mean(dim=(1, 2, 3)).abs().max() < 1e-4
        torch.testing.assert_close(v.square().mean(dim=(1, 2, 3)), torch.ones(2), atol=1e-4, rtol=0)


def test_deterministic_and_batch_independent(G, targets):
    a = invert(G, targets, method="w", steps=15, seed=3, **FAST)
    b = invert(G, targets, method="w", steps=15, seed=3, **FAST)
    assert torch.equal(a.tensor, b.tensor)
    single = invert(G, targets[1:], method="w", steps=15, seed=4, **FAST)  # image 1 of the batch used seed 3 + 1
    torch.testing.assert_close(single.tensor, a.tensor[1:], atol=1e-4, rtol=1e-4)


def test_mask_ignores_pixels_outside(G, targets):
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    other = targets.clone()
    other[..., :4, :] = -1  # change only pixels the mask leaves out
    a = invert(G, targets, method="w+", steps=10, mask=mask, **FAST)
    b = invert(G, other, method="w+", steps=10, mask=mask, **FAST)
    torch.testing.assert_close(a.tensor, b.tensor, atol=1e-6, rtol=0)
    c = invert(G, other, method="w+", steps=10, **FAST)
    assert not torch.allclose(a.tensor, c.tensor)


def test_perceptual_module_and_channel_conversion():
    G1 = tiny_generator(channels=1)
    calls = []

    def distance(a, b):
        calls.append(a.shape)
        return (a - b).abs().mean(dim=(1, 2, 3))

    class Dist(torch.nn.Module):
        def forward(self, a, b):
            return distance(a, b)

    rgb = torch.rand(1, 3, 16, 16) * 2 - 1
    lat = invert(G1, rgb, method="w+", steps=3, loss="perceptual=1", perceptual=Dist(), w_avg_samples=100)
    assert calls and calls[0][1] == 1 and lat.tensor.shape == (1, G1.num_ws, 8)
    with pytest.raises(ShapeError, match="2 channels"):
        invert(G1, torch.zeros(1, 2, 16, 16), steps=1, **FAST)
    with pytest.raises(ShapeError, match="8x8"):
        invert(G1, torch.zeros(1, 1, 8, 8), steps=1, **FAST)
    with pytest.raises(ShapeError, match="NaN"):
        invert(G1, torch.full((1, 1, 16, 16), float("nan")), steps=1, **FAST)


def test_targets_and_masks_are_checked_not_clamped(G, targets):
    with pytest.raises(ShapeError, match=r"\[0, 255\] pixels"):
        invert(G, torch.randint(0, 256, (1, 3, 16, 16)).float(), steps=1, **FAST)
    with pytest.raises(ShapeError, match=r"outside \[-1, 1\]"):
        invert(G, torch.full((1, 3, 16, 16), -2.5), steps=1, **FAST)
    with pytest.raises(ShapeError, match=r"\[0, 1\] images"):
        invert(G, torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)), steps=1, **FAST)
    # a dark image (all >= 0 but spanning little) and a mid-grey one are fine; so is a batch with one dark image
    mixed = torch.stack([torch.rand(3, 16, 16) * 0.2, torch.rand(3, 16, 16) * 2 - 1])
    assert invert(G, mixed, method="w+", steps=1, **FAST).tensor.shape[0] == 2
    mask = torch.ones(1, 1, 16, 16)
    for bad, message in ((mask * 255, r"\[0, 1\]"), (mask * -0.5, r"\[0, 1\]"), (mask * float("nan"), "NaN"),
                         (mask * 0, "all zero"), (torch.ones(1, 1, 8, 8), "mask must be")):
        with pytest.raises(ShapeError, match=message):
            invert(G, targets, method="w+", steps=1, mask=bad, **FAST)
    two = torch.cat([mask, mask * 0])  # every image needs a pixel that counts
    with pytest.raises(ShapeError, match="all zero"):
        invert(G, targets, method="w+", steps=1, mask=two, **FAST)


def test_nan_stops_with_the_last_good_latent(G, targets):
    class Poison(torch.nn.Module):
        calls = 0

        def forward(self, a, b):
            Poison.calls += 1
            d = (a - b).square().mean(dim=(1, 2, 3))
            return d * float("nan") if Poison.calls > 4 else d

    with pytest.raises(InversionError, match="step 5") as info:
        invert(G, targets, method="w+", steps=20, loss="perceptual", perceptual=Poison(), w_avg_samples=100)
    kept = info.value.latent
    assert kept is not None and torch.isfinite(kept.tensor).all() and kept.meta["failed_at"]["step"] == 5


def test_cancel_and_callback(G, targets):
    stop = threading.Event()
    seen = []

    def callback(state):
        seen.append((state.stage, state.step, float(state.losses["total"].sum())))
        if state.step == 4:
            assert state.latent().tensor.shape == (2, G.num_ws, 8)
            stop.set()

    lat = invert(G, targets, method="w+", steps=50, callback=callback, cancel=stop, **FAST)
    assert lat.meta.get("cancelled") is True and len(seen) == 4


def test_generator_untouched(G, targets):
    before = {k: v.clone() for k, v in G.state_dict().items()}
    invert(G, targets, method="w", steps=5, **FAST)
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())
    assert all(p.requires_grad for p in G.parameters())


def test_bad_options(G, targets):
    with pytest.raises(ConfigError, match="unknown inversion method"):
        invert(G, targets, method="z++", steps=1)
    with pytest.raises(ConfigError, match="unknown loss term"):
        parse_loss("lpips=1")
    with pytest.raises(ConfigError, match="positive"):
        invert(G, targets, steps=1, lr=-1, **FAST)
    with pytest.raises(ConfigError, match="unknown inversion option"):
        invert(G, targets, steps=1, learning_rate=3, **FAST)
    assert method_defaults("w").steps == 1000 and method_defaults("w").optimize_noise
