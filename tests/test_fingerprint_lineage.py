"""The lineage of tuned generators (latentshop.models.fingerprint): who accepts whose latents and edits.

The rules: an edit made for a base model applies to every generator tuned from it (and to tunings
of those); a latent found for the base (the pivot) renders with a tuned copy; a latent found for a
tuned generator is refused by its base and by other tunings; an unrelated generator refuses all.
"""

from __future__ import annotations

import pytest
import torch

from latentshop.checkpoints import (
    load_channels,
    load_directions,
    load_edit_set,
    read_edit_file,
    save_channels,
    save_directions,
)
from latentshop.editing import ChannelEdit, Direction, edit, ganspace
from latentshop.editing.stylespace import ChannelInfo, ChannelSet, style_std
from latentshop.errors import EditError
from latentshop.latents import Latent, LatentError, load_latent, save_latent, synthesize
from latentshop.models.fingerprint import (
    accepts,
    generator_fingerprint,
    generator_lineage,
    mark_tuned,
    tuned_copy,
)
from latentshop.models.stylegan2 import Generator
from latentshop.registry import EditCatalog


def tiny_generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                     synthesis_kwargs=dict(channel_base=128, channel_max=16)).eval()


def tune(G: Generator, seed: int = 0, amount: float = 0.05) -> Generator:
    """A tuned copy of ``G`` whose synthesis weights moved (as pivotal tuning moves them)."""
    T = tuned_copy(G)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in T.synthesis.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * amount)
    return T


@pytest.fixture(scope="module")
def G():
    return tiny_generator(0)


@pytest.fixture(scope="module")
def T(G):
    return tune(G, seed=1)


@pytest.fixture(scope="module")
def U():
    return tiny_generator(7)  # unrelated: same architecture, other weights


@pytest.fixture(scope="module")
def pivot(G):
    """A latent found for the base (the pivot a tuning starts from)."""
    torch.manual_seed(3)
    return Latent.from_ws(G, G.mapping(torch.randn(2, G.z_dim)), model="base")


@pytest.fixture(scope="module")
def directions(G):
    return ganspace(G, n=2000, components=2)


@pytest.fixture(scope="module")
def channels(G):
    return ChannelSet(generator_fingerprint(G), {"a": [ChannelInfo("b8.conv0", 1, -1)]}, style_std(G, n=300))


@pytest.fixture()
def files(tmp_path, directions, channels):
    return (save_directions(directions, tmp_path / "dirs.npz", model="base"),
            save_channels(channels, tmp_path / "chans.npz", model="base"))


def test_a_tuned_copy_is_another_generator_that_remembers_its_base(G, T):
    base, own = generator_fingerprint(G), generator_fingerprint(T)
    assert own != base
    assert generator_lineage(G) == (base,)
    assert generator_lineage(T) == (own, base)
    assert accepts(T, base) and accepts(T, own) and accepts(G, base)
    assert not accepts(G, own) and not accepts(T, None)
    # the copy is a copy: the base's weights did not move
    assert generator_fingerprint(tiny_generator(0)) == base
    # a tuned copy whose weights have not moved yet is its base, once
    same = tuned_copy(G)
    assert generator_fingerprint(same) == base and generator_lineage(same) == (base,)


def test_the_tuned_generator_renders_the_bases_pivot(G, T, pivot, tmp_path):
    pivot.check(T)
    img = synthesize(T, pivot)
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
    assert (img - synthesize(G, pivot)).abs().max() > 1e-3  # rendered by the moved weights
    path = save_latent(pivot, tmp_path / "pivot.npz", model="base")
    back = load_latent(path, T)
    torch.testing.assert_close(synthesize(T, back), img, atol=0, rtol=0)
    for space in ("w+", "s"):  # the pivot converts with the tuned generator too
        assert pivot.to_space(T, space).space == space


def test_the_tuned_generator_takes_the_bases_edit_sets_and_files(G, T, pivot, directions, channels, files):
    dir_path, chan_path = files
    directions.check(T)
    d = directions.get("ganspace:0", 2.0)
    d.check(T)
    ch = channels.get("a", 1.5)
    ch.check(T)
    out = edit(T, pivot, [d, ch])
    assert out.space == "s" and torch.isfinite(synthesize(T, out)).all()

    back = load_directions(dir_path, T)
    assert back.names == directions.names and back.generator == generator_fingerprint(G)
    torch.testing.assert_close(back.vectors, directions.vectors)
    back.get("ganspace:1", -1.0).check(T)
    chans = load_channels(chan_path, T)
    assert [c.name for c in chans.attributes["a"]] == ["b8.conv0:1"]
    header, _ = read_edit_file(dir_path, kind="directions", G=T)
    assert header["generator"] == generator_fingerprint(G)
    assert load_edit_set(chan_path, T).family == "stylespace"

    # a catalog of the base's files makes edits the tuned generator applies
    catalog = EditCatalog([back, chans], T)
    made = catalog.make(T, "ganspace:0", 1.0, layers="coarse")
    assert isinstance(made, Direction) and made.layers == (0, 1, 2, 3)
    assert isinstance(catalog.make(T, "stylespace:a:0", 1.0), ChannelEdit)
    assert isinstance(catalog.make(T, "s:b8.conv0:2", 1.0), ChannelEdit)
    edited = edit(T, pivot, [made, catalog.make(T, "stylespace:a", 1.0), catalog.make(T, "s:b8.conv0:2", 1.0)])
    assert torch.isfinite(synthesize(T, edited)).all()


def test_the_base_refuses_a_latent_found_for_the_tuned_generator(G, T, tmp_path):
    torch.manual_seed(4)
    found = Latent.from_ws(T, T.mapping(torch.randn(1, T.z_dim)), model="tuned")
    assert found.generator == generator_fingerprint(T)
    found.check(T)
    with pytest.raises(LatentError, match="found for generator"):
        found.check(G)
    with pytest.raises(LatentError):
        synthesize(G, found)
    with pytest.raises(LatentError):
        edit(G, found, [])
    path = save_latent(found, tmp_path / "tuned.npz", model="tuned")
    with pytest.raises(LatentError, match="tuned"):
        load_latent(path, G)
    # nor does another tuning of the same base take it
    other = tune(G, seed=2)
    assert generator_fingerprint(other) not in (generator_fingerprint(G), generator_fingerprint(T))
    with pytest.raises(LatentError):
        synthesize(other, found)
    # edits made for the tuned generator are its own as well
    d = Direction("x", torch.ones(G.w_dim), 1.0, generator=generator_fingerprint(T))
    with pytest.raises(EditError, match="made for generator"):
        d.check(G)


def test_an_unrelated_generator_refuses_everything(G, T, U, pivot, directions, channels, files, tmp_path):
    dir_path, chan_path = files
    assert not accepts(U, generator_fingerprint(G)) and not accepts(U, generator_fingerprint(T))
    with pytest.raises(LatentError):
        synthesize(U, pivot)
    with pytest.raises(LatentError):
        load_latent(save_latent(pivot, tmp_path / "p.npz"), U)
    tuned_latent = Latent.from_ws(T, T.mapping(torch.randn(1, T.z_dim)))
    with pytest.raises(LatentError):
        synthesize(U, tuned_latent)
    with pytest.raises(EditError, match="made for generator"):
        directions.check(U)
    with pytest.raises(EditError, match="made for generator"):
        directions.get("ganspace:0", 1.0).check(U)
    with pytest.raises(EditError, match="made for generator"):
        channels.get("a", 1.0).check(U)
    own = Latent.from_ws(U, U.mapping(torch.randn(1, U.z_dim)))
    with pytest.raises(EditError, match="made for generator"):
        edit(U, own, [directions.get("ganspace:0", 1.0)])
    with pytest.raises(EditError, match="made for generator"):
        load_directions(dir_path, U)
    with pytest.raises(EditError, match="made for generator"):
        load_channels(chan_path, U)
    with pytest.raises(EditError, match="made for generator"):
        read_edit_file(dir_path, kind=None, G=U)
    # a tuning of the unrelated generator does not become related
    UT = tune(U, seed=3)
    with pytest.raises(EditError, match="made for generator"):
        load_directions(dir_path, UT)
    with pytest.raises(LatentError):
        synthesize(UT, pivot)


def test_a_tuning_of_a_tuning_still_takes_the_originals_edits(G, T, pivot, directions, files):
    dir_path, chan_path = files
    # T tuned again: a fresh network with T's weights, marked as tuned from T, whose weights then move
    # (tuned_copy(T) is the other way to get one: see test_a_tuned_copy_of_a_tuned_copy_has_its_own_fingerprint)
    TT = tiny_generator(0)
    TT.load_state_dict(T.state_dict())
    mark_tuned(TT, T)
    with torch.no_grad():
        for p in TT.synthesis.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(5)) * 0.05)
    fps = generator_fingerprint(TT), generator_fingerprint(T), generator_fingerprint(G)
    assert len(set(fps)) == 3
    assert generator_lineage(TT) == fps
    back = load_directions(dir_path, TT)
    load_channels(chan_path, TT)
    d = back.get("ganspace:0", 1.5)
    d.check(TT)
    directions.get("ganspace:1", 1.0).check(TT)
    pivot.check(TT)
    out = edit(TT, pivot, [d])
    assert torch.isfinite(synthesize(TT, out)).all()
    # TT renders T's latents (its own base) too; neither T nor G renders TT's
    t_latent = Latent.from_ws(T, T.mapping(torch.randn(1, T.z_dim)))
    t_latent.check(TT)
    tt_latent = Latent.from_ws(TT, TT.mapping(torch.randn(1, TT.z_dim)))
    for older in (T, G):
        with pytest.raises(LatentError):
            tt_latent.check(older)


# generator_fingerprint caches its digest on the module; copy.deepcopy (tuned_copy) copies that
# cache while the copy's version counters restart at 0, so the cache is keyed by storage too.
def test_a_tuned_copy_of_a_tuned_copy_has_its_own_fingerprint(G, T, directions, files):
    dir_path, _ = files
    generator_fingerprint(T)  # T has been used (its fingerprint is cached), as any model in use has
    TT = tune(T, seed=5)  # T's parameters are at version 1; so are TT's after one in-place step
    fps = generator_fingerprint(TT), generator_fingerprint(T), generator_fingerprint(G)
    assert len(set(fps)) == 3
    assert generator_lineage(TT) == fps
    load_directions(dir_path, TT).get("ganspace:0", 1.0).check(TT)
    tt_latent = Latent.from_ws(TT, TT.mapping(torch.randn(1, TT.z_dim)))
    with pytest.raises(LatentError):
        tt_latent.check(T)  # T must not render a latent found for TT


def test_a_tuned_copy_of_a_loaded_model_has_its_own_fingerprint():
    B = tiny_generator(0)
    B.load_state_dict(tiny_generator(1).state_dict())  # how checkpoints are loaded: parameters at version 1
    base = generator_fingerprint(B)
    T = tuned_copy(B)
    with torch.no_grad():  # one in-place step of every weight, as one optimiser step of pivotal tuning
        for p in T.parameters():
            p.add_(0.01)
    fresh = tiny_generator(0)
    fresh.load_state_dict(T.state_dict())
    assert generator_fingerprint(fresh) != base
    assert generator_fingerprint(T) == generator_fingerprint(fresh)


def test_the_fingerprint_follows_buffers_changed_in_place():
    A = tiny_generator(0)
    before = generator_fingerprint(A)
    with torch.no_grad():
        A.mapping.w_avg.add_(1.0)  # changes what truncation renders
    fresh = tiny_generator(0)
    fresh.load_state_dict(A.state_dict())
    assert generator_fingerprint(fresh) != before
    assert generator_fingerprint(A) == generator_fingerprint(fresh)


def test_mark_tuned_by_fingerprint(G):
    T = mark_tuned(tiny_generator(9), generator_fingerprint(G))
    assert generator_lineage(T) == (generator_fingerprint(T), generator_fingerprint(G))
    assert accepts(T, generator_fingerprint(G))
