"""Direction finding (InterFaceGAN, GANSpace, SeFa), conditioning, and direction files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from editing_helpers import BrightnessEvaluator, tiny_generator

from latentshop.checkpoints import load_directions, save_directions
from latentshop.editing import (
    DirectionSet,
    EditError,
    condition,
    edit,
    ganspace,
    interfacegan,
    sample_ws,
    sefa,
)
from latentshop.latents import Latent, synthesize


@pytest.fixture(scope="module")
def G():
    return tiny_generator(0)


@pytest.fixture(scope="module")
def found(G):
    return interfacegan(G, BrightnessEvaluator().eval(), n=3000, ratio=0.2, seed=0, batch=500)


def test_condition_is_orthogonal_to_what_is_kept():
    torch.manual_seed(0)
    v, others = torch.randn(10), torch.randn(3, 10)
    c = condition(v, others)
    assert abs(float(c.norm()) - 1) < 1e-5
    assert (others @ c).abs().max() < 1e-5
    assert float(c @ v) > 0
    with pytest.raises(EditError, match="span"):
        condition(others[0] + others[1], others)


def test_interfacegan_finds_a_planted_attribute(G, found):
    assert set(found.names) == {"bright", "red"}
    assert found.meta["stats"]["bright"]["val_accuracy"] > 0.9
    ev = BrightnessEvaluator().eval()
    lat = Latent.from_ws(G, sample_ws(G, 64, seed=123))  # fresh samples
    base = ev.predict(synthesize(G, lat))["bright"]
    up = ev.predict(synthesize(G, edit(G, lat, [found.get("bright", 2.0)])))["bright"]
    down = ev.predict(synthesize(G, edit(G, lat, [found.get("bright", -2.0)])))["bright"]
    assert float((up - base).mean()) > 0 and float((down - base).mean()) < 0
    assert float((up > base).double().mean()) > 0.8


def test_conditional_direction_keeps_the_other_attribute(G, found):
    plain, cond = found.get("bright", 1.0), found.get("bright", 1.0, keep=["red"])
    red = found.vector("red")
    assert abs(float(cond.vector @ red)) < 1e-5
    assert abs(float(plain.vector @ red)) > abs(float(cond.vector @ red))
    assert cond.name == "bright|keep:red"
    # strength stays in standard deviations along the conditioned vector
    ws = sample_ws(G, 4000, seed=9)
    proj = (ws - ws.mean(0)) @ cond.vector
    assert abs(float(proj.std()) / cond.scale - 1) < 0.1


def test_interfacegan_rejects_unknown_attributes(G):
    with pytest.raises(EditError, match="does not score"):
        interfacegan(G, BrightnessEvaluator().eval(), n=200, attributes=["smile"])


def test_ganspace_components_are_the_principal_axes(G):
    pcs = ganspace(G, n=5000, components=4, seed=0)
    v = pcs.vectors
    torch.testing.assert_close(v @ v.t(), torch.eye(4), atol=1e-4, rtol=0)
    ws = sample_ws(G, 5000, seed=0).double()
    var = ((ws - ws.mean(0)) @ v.double().t()).var(0)
    assert all(var[i] >= var[i + 1] for i in range(3))
    # the first axis carries the most variance of any direction
    rnd = torch.nn.functional.normalize(torch.randn(50, G.w_dim, dtype=torch.float64), dim=1)
    assert float(var[0]) >= float(((ws - ws.mean(0)) @ rnd.t()).var(0).max())
    d = pcs.get("ganspace:0", 1.0)
    assert abs(d.scale - float(var[0].sqrt())) / d.scale < 0.02


def test_sefa_is_the_leading_eigenvector_of_the_normalised_affines(G):
    dirs = sefa(G, components=3, layers="coarse", cov_samples=500)
    rows = []
    for name, idx in G.synthesis.layer_ws.items():
        if idx in (0, 1, 2, 3):
            fc = G.synthesis.get_submodule(name).affine
            rows.append(fc.weight.detach().double().numpy() * fc.weight_gain)
    a = np.concatenate(rows)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    _, s, vt = np.linalg.svd(a, full_matrices=False)
    for k in range(3):
        assert abs(abs(float(dirs.vectors[k].double() @ torch.from_numpy(vt[k]))) - 1) < 1e-4
    assert dirs.layers[0] == (0, 1, 2, 3)
    assert dirs.meta["stats"]["sefa:0"]["eigenvalue"] == pytest.approx(s[0] ** 2, rel=1e-5)


def test_direction_files_round_trip_and_refuse_other_generators(G, found, tmp_path):
    path = save_directions(found, tmp_path / "dirs", model="tiny")
    assert path.suffix == ".npz"
    back = load_directions(path, G)
    assert back.names == found.names and back.method == "interfacegan"
    torch.testing.assert_close(back.vectors, found.vectors)
    torch.testing.assert_close(back.w_cov, found.w_cov)
    assert back.meta["stats"]["bright"]["val_accuracy"] == found.meta["stats"]["bright"]["val_accuracy"]
    with pytest.raises(EditError, match="made for generator"):
        load_directions(path, tiny_generator(1))


def test_bad_direction_files(G, tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(EditError, match="not a readable"):
        load_directions(junk)
    np.savez(tmp_path / "plain.npz", vectors=np.ones((2, 8)))
    with pytest.raises(EditError, match="no header"):
        load_directions(tmp_path / "plain.npz")
    with pytest.raises(EditError, match="cannot read"):
        load_directions(tmp_path / "missing.npz")
    ds = DirectionSet("custom", "abc", ("a",), torch.ones(1, 8), torch.eye(8))
    path = save_directions(ds, tmp_path / "nan.npz")
    with np.load(path) as f:
        arrays = dict(f)
    arrays["vectors"] = np.full((1, 8), np.nan, np.float32)
    np.savez(path, **arrays)
    with pytest.raises(EditError, match="NaN"):
        load_directions(path)


def test_direction_set_validation():
    with pytest.raises(EditError, match="unique"):
        DirectionSet("x", "g", ("a", "a"), torch.ones(2, 4), torch.eye(4))
    with pytest.raises(EditError, match="aliases"):
        DirectionSet("x", "g", ("a",), torch.ones(1, 4), torch.eye(4), aliases={"b": "nope"})
    ds = DirectionSet("x", "g", ("a",), torch.ones(1, 4), torch.eye(4), aliases={"b": "a"})
    assert "b" in ds and ds.get("b").name == "a"
    with pytest.raises(EditError, match="no direction"):
        ds.get("c")
