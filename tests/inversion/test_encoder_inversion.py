"""Encoder inversion through invert(): psp, e4e, ReStyle passes, the e4e+opt hybrid, errors."""

from __future__ import annotations

import threading

import pytest
import torch

from encoder_helpers import tiny_generator, trained_encoder
from latentshop import load_model
from latentshop.checkpoints.encoders import load_encoder, save_encoder
from latentshop.checkpoints.native import NetworkSpec, write_native
from latentshop.errors import ConfigError
from latentshop.inversion import InversionError, invert
from latentshop.inversion.encoders import ENCODER_METHODS
from latentshop.latents import synthesize
from latentshop.metrics.image import psnr
from latentshop.pipeline import choose_method, invert_targets


@pytest.fixture(scope="module")
def G():
    return tiny_generator(0)


@pytest.fixture(scope="module")
def encoders(G):
    return {kind: trained_encoder(G, steps=80, kind=kind) for kind in ("psp", "e4e")}


@pytest.fixture(scope="module")
def targets(G):
    with torch.no_grad():
        return G(torch.randn(3, 8, generator=torch.Generator().manual_seed(11)), noise_mode="const")


def score(G, lat, targets):
    return float(psnr(synthesize(G, lat).clamp(-1, 1), targets).mean())


@pytest.mark.parametrize("method", sorted(ENCODER_METHODS))
def test_every_encoder_method_runs_through_invert(G, encoders, targets, method):
    kind, passes = ENCODER_METHODS[method]
    lat = invert(G, targets, method=method, encoder=encoders[kind], steps=10 if method == "e4e+opt" else None, loss="mse=1")
    assert lat.space == "w+" and lat.tensor.shape == (3, G.num_ws, G.w_dim)
    assert lat.meta["method"] == method and lat.meta["encoder"]["iterations"] == (passes or encoders[kind].iterations)
    assert lat.meta["seconds"] > 0
    if passes == 1 or method == "e4e+opt":  # (many passes of a barely trained tiny encoder may drift)
        untrained = invert(G, targets, method=method, encoder=trained_encoder(G, 0, kind=kind), steps=1 if method == "e4e+opt" else None,
                           lr=1e-9, loss="mse=1")
        assert score(G, lat, targets) > score(G, untrained, targets)


def test_the_hybrid_improves_on_its_encoder_start(G, encoders, targets):
    start = invert(G, targets, method="restyle-e4e", encoder=encoders["e4e"])
    hybrid = invert(G, targets, method="e4e+opt", encoder=encoders["e4e"], steps=40, loss="mse=1")
    assert score(G, hybrid, targets) > score(G, start, targets) + 0.5
    assert hybrid.meta["encoder_seconds"] > 0 and hybrid.meta["options"]["steps"] == 40


def test_passes_are_an_option_and_batches_are_independent(G, encoders, targets):
    one = invert(G, targets, method="restyle-psp", encoder=encoders["psp"], iterations=1)
    same = invert(G, targets, method="psp", encoder=encoders["psp"])
    assert torch.equal(one.tensor, same.tensor)
    many = invert(G, targets, method="restyle-psp", encoder=encoders["psp"], iterations=4)
    assert many.meta["encoder"]["iterations"] == 4 and not torch.equal(many.tensor, one.tensor)
    own = invert(G, targets, method="restyle-psp", encoder=encoders["psp"])  # the passes it was trained with
    assert own.meta["encoder"]["iterations"] == encoders["psp"].iterations == 2
    single = torch.cat([invert(G, targets[i:i + 1], method="restyle-psp", encoder=encoders["psp"], iterations=4).tensor
                        for i in range(3)])
    assert torch.allclose(single, many.tensor, atol=1e-5)


def test_encoder_from_a_folder(G, encoders, targets, tmp_path):
    path = save_encoder(encoders["e4e"], tmp_path / "e4e", G=G, iterations=2)
    E = load_encoder(path, G=G)
    lat = invert(G, targets, method="e4e", encoder=E)
    assert torch.allclose(lat.tensor, invert(G, targets, method="e4e", encoder=encoders["e4e"]).tensor)
    assert lat.meta["encoder"]["path"] == str(path)
    # inversion reads no files: a folder must be loaded first
    with pytest.raises(ConfigError, match="Encoder network"):
        invert(G, targets, method="e4e", encoder=path)
    # a model bundle given the folder hands it to the method
    model = tmp_path / "tiny"
    write_native(model, {"G_ema": NetworkSpec("generator", G.init_kwargs, G.state_dict())})
    bundle = load_model(str(model), encoder=path)
    assert bundle.encoder_kinds == ["e4e"] and choose_method(bundle, "auto") == "e4e+opt"
    via_bundle = invert_targets(bundle, targets, method="e4e").latent
    assert torch.allclose(via_bundle.tensor, lat.tensor)


def test_errors(G, encoders, targets, tmp_path):
    with pytest.raises(ConfigError, match="needs a e4e encoder"):
        invert(G, targets, method="e4e")  # inversion does not look for an encoder itself
    # no encoder was ever trained for this tiny generator: its bundle says how to train one
    model = tmp_path / "tiny"
    write_native(model, {"G_ema": NetworkSpec("generator", G.init_kwargs, G.state_dict())})
    bundle = load_model(str(model))
    assert bundle.encoder_kinds == [] and choose_method(bundle, "auto") == "w+"
    with pytest.raises(ConfigError, match="train-encoder"):
        bundle.encoder("e4e")
    with pytest.raises(ConfigError, match="train-encoder"):
        invert_targets(bundle, targets, method="e4e")
    with pytest.raises(ConfigError, match="needs psp"):
        invert(G, targets, method="psp", encoder=encoders["e4e"])
    with pytest.raises(ConfigError, match="mask"):
        invert(G, targets, method="e4e", encoder=encoders["e4e"], mask=torch.ones(1, 1, 16, 16))
    stop = threading.Event()
    stop.set()
    with pytest.raises(InversionError, match="cancelled"):
        invert(G, targets, method="e4e", encoder=encoders["e4e"], cancel=stop)
