"""Edits as data: directions, channels, mixing and truncation on every latent space."""

from __future__ import annotations

import math

import pytest
import torch
from editing_helpers import tiny_generator

from latentshop.editing import ChannelEdit, Direction, EditError, StyleMix, Truncate, edit, layer_groups, parse_layers
from latentshop.latents import Latent, LatentError, synthesize
from latentshop.models.stylegan2 import Generator


@pytest.fixture(scope="module")
def G():
    return tiny_generator(0)


@pytest.fixture(scope="module")
def lat(G):
    torch.manual_seed(3)
    return Latent.from_z(G, torch.randn(3, G.z_dim))


def test_layer_groups_follow_the_stylegan_convention():
    big = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=1024, img_channels=3,
                    synthesis_kwargs=dict(channel_base=4096, channel_max=2), mapping_kwargs=dict(num_layers=1))
    groups = layer_groups(big)
    assert big.num_ws == 18
    assert groups["coarse"] == (0, 1, 2, 3) and groups["middle"] == (4, 5, 6, 7) and groups["fine"] == tuple(range(8, 18))


def test_parse_layers(G):
    assert parse_layers(G, "coarse,5") == (0, 1, 2, 3, 5)
    assert parse_layers(G, "1-2") == (1, 2)
    assert parse_layers(G, None) is None
    for bad in ("99", "3-1", "eyes", "1;2"):
        with pytest.raises(EditError):
            parse_layers(G, bad)


def test_direction_moves_only_its_layers(G, lat):
    v = torch.randn(G.w_dim)
    d = Direction("x", v, strength=2.5, layers=(1, 3), scale=0.4)
    out = edit(G, lat, [d])
    ws, ws0 = out.tensor, lat.ws(G)
    expected = v / v.norm() * 2.5 * 0.4
    assert out.space == "w+"
    for i in range(G.num_ws):
        diff = ws[:, i] - ws0[:, i]
        if i in (1, 3):
            torch.testing.assert_close(diff, expected.expand_as(diff), atol=1e-5, rtol=0)
        else:
            assert diff.abs().max() == 0


def test_direction_on_s_latent_equals_editing_in_w_plus(G, lat):
    d = Direction("x", torch.randn(G.w_dim), strength=1.7, layers=(0, 2, 4), scale=0.9)
    via_w = edit(G, lat, [d]).to_space(G, "s")
    via_s = edit(G, lat.to_space(G, "s"), [d])
    assert via_s.space == "s"
    torch.testing.assert_close(via_s.tensor, via_w.tensor, atol=1e-5, rtol=1e-5)


def test_channel_edit_changes_one_channel_and_the_image(G, lat):
    std = 0.3
    e = ChannelEdit("b8.conv1", 2, delta=4.0, scale=std)
    out = edit(G, lat, [e])
    before, after = lat.styles(G), out.styles(G)
    for name in before:
        diff = after[name] - before[name]
        if name == "b8.conv1":
            torch.testing.assert_close(diff[:, 2], torch.full((3,), 4.0 * std), atol=1e-5, rtol=0)
            diff[:, 2] = 0
        assert diff.abs().max() < 1e-6
    assert (synthesize(G, out) - synthesize(G, lat)).abs().max() > 1e-3
    with pytest.raises(EditError, match="out of range"):
        edit(G, lat, [ChannelEdit("b8.conv1", 99, 1.0)])
    with pytest.raises(EditError, match="unknown style layer"):
        edit(G, lat, [ChannelEdit("b7.conv1", 0, 1.0)])


def test_style_mix_in_w_plus_and_s(G, lat):
    source = Latent.from_z(G, torch.randn(1, G.z_dim))
    out = edit(G, lat, [StyleMix(source, (0, 1))])
    ws, src = out.tensor, source.ws(G)
    assert torch.equal(ws[:, :2], src[:, :2].expand(3, -1, -1))
    assert torch.equal(ws[:, 2:], lat.ws(G)[:, 2:])
    in_s = edit(G, lat.to_space(G, "s"), [StyleMix(source, (0, 1))])
    torch.testing.assert_close(in_s.tensor, out.to_space(G, "s").tensor, atol=1e-5, rtol=1e-5)
    with pytest.raises(Exception, match="one per target"):
        edit(G, lat, [StyleMix(Latent.from_z(G, torch.randn(2, G.z_dim)), (0,))])


def test_truncate(G, lat):
    zero = edit(G, lat, [Truncate(0.0)])
    torch.testing.assert_close(zero.tensor, G.mapping.w_avg.expand_as(zero.tensor), atol=1e-6, rtol=0)
    one = edit(G, lat, [Truncate(1.0)])
    torch.testing.assert_close(one.tensor, lat.ws(G))
    half_s = edit(G, lat.to_space(G, "s"), [Truncate(0.5)])
    half_w = edit(G, lat, [Truncate(0.5)]).to_space(G, "s")
    torch.testing.assert_close(half_s.tensor, half_w.tensor, atol=1e-5, rtol=1e-5)


def test_edits_compose_in_order_and_keep_noise(G):
    noise = {name: torch.randn(1, 1, r, r) for name, r in G.synthesis.noise_layers().items()}
    lat = Latent.from_ws(G, G.mapping(torch.randn(1, G.z_dim)), noise=noise, note="x")
    a = Direction("a", torch.randn(G.w_dim), 1.0)
    b = ChannelEdit("b4.conv1", 0, 2.0, 0.5)
    out = edit(G, lat, [a, b])
    assert out.space == "s" and out.noise is not None and out.meta["note"] == "x"
    torch.testing.assert_close(out.tensor, edit(G, edit(G, lat, a), b).tensor)
    assert edit(G, lat, []) is lat


def test_refuses_another_generators_edits_and_latents(G, lat):
    other = tiny_generator(1)
    from latentshop.latents import generator_fingerprint

    d = Direction("x", torch.randn(G.w_dim), 1.0, generator=generator_fingerprint(other))
    with pytest.raises(EditError, match="made for generator"):
        edit(G, lat, [d])
    with pytest.raises(LatentError):
        edit(other, lat, [])
    with pytest.raises(EditError, match="made for generator"):
        edit(G, lat, [StyleMix(Latent.from_z(other, torch.randn(1, 8)), (0,))])


def test_bad_values_are_refused(G, lat):
    with pytest.raises(EditError, match="zero"):
        Direction("x", torch.zeros(G.w_dim))
    with pytest.raises(EditError, match="finite"):
        Direction("x", torch.ones(G.w_dim), strength=math.nan)
    with pytest.raises(EditError, match="finite"):
        ChannelEdit("b4.conv1", 0, math.inf)
    with pytest.raises(EditError, match="values but this model"):
        edit(G, lat, [Direction("x", torch.ones(G.w_dim + 1))])
    with pytest.raises(EditError, match="not an edit"):
        edit(G, lat, ["smile"])
