"""Behaviour of the StyleGAN2 modules on tiny random configurations (no fixtures needed)."""

from __future__ import annotations

import pytest
import torch

from latentshop.errors import ConfigError, ShapeError
from latentshop.models.stylegan2 import Discriminator, Generator


def tiny_generator(**overrides) -> Generator:
    kwargs = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=128, channel_max=16))
    kwargs.update(overrides)
    torch.manual_seed(0)
    G = Generator(**kwargs).eval()
    with torch.no_grad():  # move away from init so that noise, biases and w_avg matter
        for p in G.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        G.mapping.w_avg.normal_()
    return G


def test_shapes_and_num_ws():
    G = tiny_generator()
    assert G.num_ws == 1 + 2 + 2 + 1  # b4.conv1; b8 and b16 conv0 + conv1; the last block's torgb
    with torch.no_grad():
        ws = G.mapping(torch.randn(3, 16))
        img = G.synthesis(ws)
    assert ws.shape == (3, G.num_ws, 16)
    assert img.shape == (3, 3, 16, 16)


def test_batch_equals_single():
    G = tiny_generator()
    z = torch.randn(4, 16)
    with torch.no_grad():
        batch = G(z)
        single = torch.cat([G(z[i : i + 1]) for i in range(4)])
    assert torch.allclose(batch, single, atol=1e-5)


def test_styles_round_trip_and_edit():
    G = tiny_generator()
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, 16))
        styles = G.styles(ws)
        assert list(styles) == list(G.synthesis.layer_ws)
        assert styles["b4.conv1"].shape == (2, 16)
        assert torch.equal(G.synthesis(ws), G.synthesis(styles=styles))
        edited = dict(styles)
        edited["b8.conv1"] = styles["b8.conv1"].clone()
        edited["b8.conv1"][:, 3] += 5.0
        assert not torch.allclose(G.synthesis(styles=edited), G.synthesis(ws))


def test_fast_path_matches_reference_and_is_differentiable():
    G = tiny_generator()
    ws = G.mapping(torch.randn(2, 16)).detach().requires_grad_(True)
    ref = G.synthesis(ws, impl="reference")
    fast = G.synthesis(ws, impl="fast")
    assert (ref - fast).abs().max() < 1e-4
    fast.square().mean().backward()
    assert ws.grad is not None and torch.isfinite(ws.grad).all() and ws.grad.abs().sum() > 0


def test_noise_modes():
    G = tiny_generator()
    ws = G.mapping(torch.randn(1, 16)).detach()
    with torch.no_grad():
        const = G.synthesis(ws, noise_mode="const")
        assert torch.equal(const, G.synthesis(ws, noise_mode="const"))
        assert not torch.allclose(const, G.synthesis(ws, noise_mode="none"))
        assert not torch.allclose(G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random"))


def test_truncation():
    G = tiny_generator()
    z = torch.randn(2, 16)
    with torch.no_grad():
        ws = G.mapping(z)
        assert torch.allclose(G.mapping(z, truncation_psi=0.0), G.mapping.w_avg.expand_as(ws))
        cut = G.mapping(z, truncation_psi=0.5, truncation_cutoff=3)
        assert torch.equal(cut[:, 3:], ws[:, 3:])
        assert not torch.allclose(cut[:, :3], ws[:, :3])


def test_conditional_generator_needs_labels():
    G = tiny_generator(c_dim=3)
    with pytest.raises(ShapeError, match="conditional"):
        G(torch.randn(2, 16))
    c = torch.eye(3)[[0, 2]]
    with torch.no_grad():
        assert G(torch.randn(2, 16), c).shape == (2, 3, 16, 16)


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_architectures(architecture):
    G = tiny_generator(synthesis_kwargs=dict(channel_base=128, channel_max=16, architecture=architecture))
    has_torgb = [hasattr(block, "torgb") for _, block in G.synthesis.blocks()]
    assert has_torgb == ([True, True, True] if architecture == "skip" else [False, False, True])
    assert all(hasattr(block, "skip") == (architecture == "resnet" and res > 4) for res, block in G.synthesis.blocks())
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, 16))
        img = G.synthesis(ws, impl="reference")
        assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
        assert (G.synthesis(ws, impl="fast") - img).abs().max() < 1e-4


def test_explicit_channel_table_and_grayscale():
    G = tiny_generator(img_channels=1, synthesis_kwargs=dict(channels={4: 8, "8": 12, 16: 4}))
    assert G.synthesis.channels_dict == {4: 8, 8: 12, 16: 4}
    with torch.no_grad():
        assert G(torch.randn(1, 16)).shape == (1, 1, 16, 16)
    with pytest.raises(ConfigError, match="no width"):
        tiny_generator(synthesis_kwargs=dict(channels={4: 8}))


def test_bad_inputs_raise_clear_errors():
    G = tiny_generator()
    with pytest.raises(ShapeError, match="z must be"):
        G.mapping(torch.randn(2, 7))
    with pytest.raises(ShapeError, match="ws must be"):
        G.synthesis(torch.randn(2, 3, 16))
    with pytest.raises(ConfigError, match="noise_mode"):
        G.synthesis(G.mapping(torch.randn(1, 16)), noise_mode="loud")
    with pytest.raises(ConfigError, match="power of two"):
        Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=24, img_channels=3)


def test_discriminator_shapes_and_conditioning():
    torch.manual_seed(0)
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=128, channel_max=16).eval()
    with torch.no_grad():
        assert D(torch.randn(4, 3, 16, 16)).shape == (4, 1)
    with pytest.raises(ShapeError):
        D(torch.randn(4, 3, 8, 8))
    Dc = Discriminator(c_dim=2, img_resolution=16, img_channels=3, channel_base=128, channel_max=16).eval()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        a = Dc(x, torch.eye(2)[[0, 0, 0, 0]])
        b = Dc(x, torch.eye(2)[[1, 1, 1, 1]])
    assert not torch.allclose(a, b)


def test_w_avg_tracks_in_training_mode_only():
    G = tiny_generator()
    before = G.mapping.w_avg.clone()
    with torch.no_grad():
        G.mapping(torch.randn(8, 16))
    assert torch.equal(before, G.mapping.w_avg)
    G.train()
    with torch.no_grad():
        G.mapping(torch.randn(8, 16))
    assert not torch.equal(before, G.mapping.w_avg)


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_explicit_noise_maps(impl):
    G = tiny_generator()
    ws = G.mapping(torch.randn(2, 16)).detach()
    layers = G.synthesis.noise_layers()
    assert list(layers) == ["b4.conv1", "b8.conv0", "b8.conv1", "b16.conv0", "b16.conv1"]
    const = {name: G.synthesis.get_submodule(name).noise_const[None, None] for name in layers}
    with torch.no_grad():
        assert torch.allclose(G.synthesis(ws, noise_mode=const, impl=impl), G.synthesis(ws, noise_mode="const", impl=impl), atol=1e-6)
        zeros = {name: torch.zeros(1, 1, r, r) for name, r in layers.items()}
        assert torch.allclose(G.synthesis(ws, noise_mode=zeros, impl=impl), G.synthesis(ws, noise_mode="none", impl=impl), atol=1e-6)
        per_sample = {name: torch.randn(2, 1, r, r) for name, r in layers.items()}
        a = G.synthesis(ws, noise_mode=per_sample, impl=impl)
        b = G.synthesis(ws[:1], noise_mode={k: v[:1] for k, v in per_sample.items()}, impl=impl)
        assert torch.allclose(a[:1], b, atol=1e-5)
    with pytest.raises(ShapeError, match="lack layers"):
        G.synthesis(ws, noise_mode={"b4.conv1": zeros["b4.conv1"]})
