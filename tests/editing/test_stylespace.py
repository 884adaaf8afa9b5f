"""StyleSpace: channel spreads, attribute-specific channels, locality, channel files."""

from __future__ import annotations

import pytest
import torch
from editing_helpers import BrightnessEvaluator, tiny_generator

from latentshop.checkpoints import load_channels, load_directions, save_channels
from latentshop.editing import EditError, edit, sample_ws
from latentshop.editing.stylespace import (
    ChannelInfo,
    ChannelSet,
    channel_locality,
    find_channels,
    style_std,
    style_widths,
)
from latentshop.latents import Latent, generator_fingerprint, synthesize


@pytest.fixture(scope="module")
def G():
    return tiny_generator(0)


@pytest.fixture(scope="module")
def halves(G):
    r = G.img_resolution
    left = torch.zeros(1, 1, r, r)
    left[..., : r // 2] = 1
    return lambda images: {"left": left.expand(images.shape[0], -1, -1, -1), "right": 1 - left.expand(images.shape[0], -1, -1, -1)}


@pytest.fixture(scope="module")
def found(G, halves):
    return find_channels(G, BrightnessEvaluator().eval(), ["bright"], n=600, positives=30, candidates=8, top=4,
                         verify_samples=16, part_masks=halves)


def test_style_std_matches_samples(G):
    std = style_std(G, n=2000, seed=0)
    assert list(std) == list(style_widths(G))
    ws = sample_ws(G, 2000, seed=0)
    s = G.styles(ws.unsqueeze(1).repeat(1, G.num_ws, 1))
    torch.testing.assert_close(std["b8.conv0"], s["b8.conv0"].std(0), atol=1e-5, rtol=1e-4)


def test_found_channels_raise_their_attribute(G, found):
    chans = found.attributes["bright"]
    assert len(chans) == 4
    effects = [c.effect for c in chans]
    assert effects == sorted(effects, reverse=True) and effects[0] > 0
    ev = BrightnessEvaluator().eval()
    lat = Latent.from_ws(G, sample_ws(G, 32, seed=77))
    base = ev.predict(synthesize(G, lat))["bright"]
    up = ev.predict(synthesize(G, edit(G, lat, [found.get("bright", 3.0)])))["bright"]
    assert float((up - base).mean()) > 0
    # the edit's unit is the channel's own spread
    e = found.get("bright", 1.0)
    assert e.scale == pytest.approx(float(found.std[chans[0].layer][chans[0].channel]))
    assert e.delta == chans[0].sign


def test_locality_shares(G, found, halves):
    for c in found.attributes["bright"]:
        assert 0 <= c.locality["left"] <= 1 and 0 <= c.locality["right"] <= 1
        assert c.locality["left"] + c.locality["right"] == pytest.approx(1, abs=1e-3)
        assert c.locality["_magnitude"] > 0
    ws = sample_ws(G, 4, seed=5)
    out = channel_locality(G, ws, halves(torch.zeros(4, 3, 16, 16)), channels=[("b4.conv1", 0), ("b16.torgb", 1)])
    assert set(out) == {("b4.conv1", 0), ("b16.torgb", 1)}


def test_channel_files_round_trip(G, found, tmp_path):
    path = save_channels(found, tmp_path / "ch.npz", model="tiny")
    back = load_channels(path, G)
    assert [c.name for c in back.attributes["bright"]] == [c.name for c in found.attributes["bright"]]
    assert back.attributes["bright"][0].locality == found.attributes["bright"][0].locality
    torch.testing.assert_close(back.std["b8.conv1"], found.std["b8.conv1"])
    with pytest.raises(EditError, match="made for generator"):
        load_channels(path, tiny_generator(1))
    with pytest.raises(EditError, match="holds 'channels' edits"):
        load_directions(path)


def test_channel_set_errors(G):
    cs = ChannelSet(generator_fingerprint(G), {"a": [ChannelInfo("b4.conv1", 1, -1)], "b": []}, style_std(G, n=300))
    assert cs.names() == ["stylespace:a"]
    assert cs.get("a", 2.0).delta == -2.0
    # catalog names: stylespace:ATTR (best channel) and stylespace:ATTR:RANK, signed like get()
    assert cs.make(G, "stylespace:a", 2.0).delta == -2.0
    assert cs.make(G, "stylespace:a:0", 2.0).delta == -2.0
    assert cs.make(G, "stylespace:zzz", 1.0) is None and cs.make(G, "smile", 1.0) is None
    with pytest.raises(EditError, match="rank 3"):
        cs.make(G, "stylespace:a:3", 1.0)
    with pytest.raises(EditError, match="own layer"):
        cs.make(G, "stylespace:a", 1.0, layers="coarse")
    for call in (lambda: cs.get("b"), lambda: cs.get("zzz"), lambda: cs.get("a", rank=3),
                 lambda: cs.channel_edit("b4.conv1", 999, 1.0), lambda: cs.channel_edit("nope", 0, 1.0)):
        with pytest.raises(EditError):
            call()


def test_parts_favour_channels_that_act_inside_them(G, halves, found):
    local = find_channels(G, BrightnessEvaluator().eval(), ["bright"], n=600, positives=30, candidates=8, top=4,
                          verify_samples=16, part_masks=halves, parts={"bright": ["left"]}, locality_samples=4)
    assert local.meta["parts"] == {"bright": ["left"]}
    share = lambda cs: sum(c.locality["left"] * c.effect for c in cs.attributes["bright"])  # noqa: E731
    assert share(local) >= share(found) - 1e-6
    assert all(c.effect > 0 for c in local.attributes["bright"])
