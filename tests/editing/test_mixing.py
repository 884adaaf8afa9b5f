"""Style mixing, crossover and interpolation: exactly the named layers move, paths end on their inputs."""

from __future__ import annotations

import pytest
import torch

from latentshop.editing import EditError, crossover, interpolate, path, style_mix
from latentshop.errors import ShapeError
from latentshop.latents import Latent, LatentError
from latentshop.models.stylegan2 import Generator


def _tiny(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    # 32 px: num_ws 8, so coarse = ws 0-3 and middle = ws 4-7 both exist.
    return Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=32, img_channels=3,
                     mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()


@pytest.fixture(scope="module")
def G():
    return _tiny(0)


def _z(G, n, seed):
    return Latent.from_z(G, torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed)))


def _noise(G, seed):
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(1, 1, res, res, generator=g) for name, res in G.synthesis.noise_layers().items()}


@pytest.mark.parametrize("layers, idx", [("middle", [4, 5, 6, 7]), ("4-7", [4, 5, 6, 7]), ("coarse", [0, 1, 2, 3]),
                                         ([1, 6], [1, 6]), (2, [2]), ("0,5-6", [0, 5, 6])])
def test_style_mix_takes_exactly_the_named_layers(G, layers, idx):
    target, source = _z(G, 3, 1), _z(G, 1, 2)
    out = style_mix(G, target, source, layers)
    assert out.space == "w+" and len(out) == 3
    t_ws, s_ws = target.ws(G), source.ws(G)
    rest = [i for i in range(G.num_ws) if i not in idx]
    assert torch.equal(out.tensor[:, idx], s_ws[:, idx].expand(3, -1, -1))
    assert torch.equal(out.tensor[:, rest], t_ws[:, rest])


def test_style_mix_one_source_per_target_and_keeps_target_noise(G):
    target = _z(G, 2, 1).to_space(G, "w+").replace(noise={k: v.repeat(2, 1, 1, 1) for k, v in _noise(G, 0).items()})
    source = _z(G, 2, 2)
    out = style_mix(G, target, source, "coarse")
    assert torch.equal(out.tensor[:, :4], source.ws(G)[:, :4])
    assert out.noise is not None and all(torch.equal(out.noise[k], target.noise[k]) for k in target.noise)
    with pytest.raises(ShapeError, match="one per target"):
        style_mix(G, _z(G, 2, 1), _z(G, 3, 2), "coarse")


def test_s_space_mix_equals_mixing_in_w_plus_then_converting(G):
    target, source = _z(G, 2, 3), _z(G, 1, 4)
    want = style_mix(G, target, source, "middle").to_space(G, "s")
    got = style_mix(G, target.to_space(G, "s"), source, "middle")
    assert got.space == "s"
    assert torch.allclose(got.tensor, want.tensor, rtol=1e-5, atol=1e-5)
    got2 = style_mix(G, target, source.to_space(G, "s"), "middle")
    assert torch.allclose(got2.tensor, want.tensor, rtol=1e-5, atol=1e-5)


def test_crossover_children_are_complements(G):
    a, b = _z(G, 2, 5), _z(G, 2, 6)
    ab, ba = crossover(G, a, b, "coarse")
    wa, wb = a.ws(G), b.ws(G)
    assert torch.equal(ab.tensor, style_mix(G, a, b, "coarse").tensor)
    assert torch.equal(ab.tensor[:, :4], wb[:, :4]) and torch.equal(ab.tensor[:, 4:], wa[:, 4:])
    assert torch.equal(ba.tensor[:, :4], wa[:, :4]) and torch.equal(ba.tensor[:, 4:], wb[:, 4:])
    # A one-image parent pairs with every image of the other.
    ab1, ba1 = crossover(G, a[0], b, [7])
    assert len(ab1) == len(ba1) == 2 and torch.equal(ba1.tensor[:, 7], wa[:1, 7].expand(2, -1))
    with pytest.raises(ShapeError):
        crossover(G, _z(G, 2, 1), _z(G, 3, 2), "coarse")


@pytest.mark.parametrize("bad", ["chin", "fine", "9", "5-2", "0-99", [8], [-1], None, ""])
def test_bad_layers_are_rejected(G, bad):
    a, b = _z(G, 1, 1), _z(G, 1, 2)
    with pytest.raises(EditError):
        style_mix(G, a, b, bad)
    with pytest.raises(EditError):
        crossover(G, a, b, bad)


def test_interpolate_w_plus_endpoints_count_and_linearity(G):
    a, b = _z(G, 1, 7), _z(G, 1, 8)
    out = interpolate(G, a, b, frames=5)
    assert out.space == "w+" and len(out) == 5 and out.generator == a.generator
    wa, wb = a.ws(G)[0], b.ws(G)[0]
    assert torch.equal(out.tensor[0], wa) and torch.equal(out.tensor[-1], wb)
    steps = out.tensor[1:] - out.tensor[:-1]
    assert torch.allclose(steps, ((wb - wa) / 4).expand_as(steps), atol=1e-6)
    assert torch.allclose(out.tensor[2], (wa + wb) / 2, atol=1e-6)
    assert out.meta["interpolation"] == {"method": "lerp", "space": "w+", "frames": 5}


def test_interpolate_z_slerp_keeps_norms_and_lerp_does_not(G):
    a, b = _z(G, 1, 9), _z(G, 1, 10)
    sl = interpolate(G, a, b, frames=9, space="z")
    li = interpolate(G, a, b, frames=9, space="z", method="lerp")
    assert sl.space == "z" and sl.meta["interpolation"]["method"] == "slerp"
    assert torch.equal(sl.tensor[0], a.tensor[0]) and torch.equal(sl.tensor[-1], b.tensor[0])
    na, nb = float(a.tensor.norm()), float(b.tensor.norm())
    norms = sl.tensor.norm(dim=1)
    assert float(norms.min()) >= min(na, nb) - 1e-4 and float(norms.max()) <= max(na, nb) + 1e-4
    assert float(li.tensor[4].norm()) < float(sl.tensor[4].norm()) - 1e-3  # a chord cuts inside the sphere
    # Slerp frames move along the great circle: equal angles between neighbours.
    u = sl.tensor / norms[:, None]
    angles = torch.acos((u[1:] * u[:-1]).sum(1).clamp(-1, 1))
    assert torch.allclose(angles, angles.mean().expand_as(angles), atol=1e-4)


def test_interpolate_s_space_and_noise_maps(G):
    a = _z(G, 1, 11).to_space(G, "w+").replace(noise=_noise(G, 1))
    b = _z(G, 1, 12).to_space(G, "w+").replace(noise=_noise(G, 2))
    out = interpolate(G, a, b, frames=3, space="s")
    assert out.space == "s" and len(out) == 3
    sa, sb = a.to_space(G, "s").tensor[0], b.to_space(G, "s").tensor[0]
    assert torch.equal(out.tensor[0], sa) and torch.allclose(out.tensor[1], (sa + sb) / 2, atol=1e-6)
    for k in a.noise:
        assert out.noise[k].shape == (3, *a.noise[k].shape[1:])
        assert torch.equal(out.noise[k][0], a.noise[k][0]) and torch.equal(out.noise[k][2], b.noise[k][0])
        assert torch.allclose(out.noise[k][1], (a.noise[k][0] + b.noise[k][0]) / 2, atol=1e-6)
    assert interpolate(G, a, b.replace(noise=None), frames=3).noise is None


def test_interpolate_refuses_bad_requests(G):
    a, b = _z(G, 1, 13), _z(G, 1, 14)
    with pytest.raises(EditError, match="slerp"):
        interpolate(G, a, b, frames=3, method="slerp")
    with pytest.raises(EditError, match="space"):
        interpolate(G, a.to_space(G, "w+"), b, frames=3, space="z")
    with pytest.raises(EditError, match="unknown space"):
        interpolate(G, a, b, frames=3, space="q")
    with pytest.raises(EditError, match="method"):
        interpolate(G, a, b, frames=3, method="cubic")
    for frames in (1, 0, 2.5):
        with pytest.raises(EditError, match="frames"):
            interpolate(G, a, b, frames=frames)
    with pytest.raises(ShapeError):
        interpolate(G, _z(G, 2, 1), b, frames=3)


def test_wrong_generator_latents_are_refused(G):
    other = _tiny(1)
    mine, theirs = _z(G, 1, 1), _z(other, 1, 2)
    with pytest.raises(LatentError):
        interpolate(G, mine, theirs, frames=3)
    with pytest.raises(LatentError):
        interpolate(G, theirs, mine, frames=3, space="z")
    with pytest.raises((LatentError, EditError)):
        style_mix(G, mine, theirs, "coarse")
    with pytest.raises(LatentError):
        style_mix(G, theirs, mine, "coarse")
    with pytest.raises((LatentError, EditError)):
        crossover(G, mine, theirs, "coarse")


def test_path_through_keyframes(G):
    keys = [_z(G, 1, 20 + i) for i in range(3)]
    out = path(G, keys, frames_per_segment=4)
    assert len(out) == 7 and out.meta["interpolation"]["keyframes"] == 3
    for i, k in zip((0, 3, 6), keys):
        assert torch.equal(out.tensor[i], k.ws(G)[0])
    looped = path(G, keys, frames_per_segment=4, space="z", loop=True)
    assert looped.space == "z" and len(looped) == 9 and torch.equal(looped.tensor[0], keys[0].tensor[0])
    assert not torch.equal(looped.tensor[-1], keys[0].tensor[0])  # the first frame is not repeated at the end
    # Noise maps survive only when every keyframe has them.
    noisy = [k.to_space(G, "w+").replace(noise=_noise(G, i)) for i, k in enumerate(keys)]
    assert path(G, noisy, frames_per_segment=3).noise is not None
    assert path(G, noisy[:2] + [keys[2]], frames_per_segment=3).noise is None
    with pytest.raises(EditError, match="two keyframes"):
        path(G, keys[:1], frames_per_segment=4)
