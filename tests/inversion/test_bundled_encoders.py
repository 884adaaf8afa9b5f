"""The shipped encoders: found for their models, refused by others, and good at their job."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import SHARED
from latentshop import load_generator, load_model
from latentshop.checkpoints.encoders import list_encoder_files, load_encoder
from latentshop.errors import CheckpointError
from latentshop.inversion import invert
from latentshop.inversion.encoders import ENCODER_METHODS
from latentshop.latents import synthesize
from latentshop.metrics.image import psnr

MODELS = ("synthetic", "lfw")


@pytest.fixture(scope="module", params=MODELS)
def model(request):
    return request.param, load_model(request.param)


def _invert(bundle, t, method, **kwargs):
    """invert() with the model's own encoder for encoder methods (inversion does not look for one)."""
    if method in ENCODER_METHODS:
        kwargs["encoder"] = bundle.encoder(ENCODER_METHODS[method][0])
    return invert(bundle.G, t, method=method, **kwargs)


def _targets(name, G, n=8):
    if name == "synthetic":
        from latentshop.data.synthetic import render_batch

        data, _, _ = render_batch(range(1_400_000, 1_400_000 + n), res=64, domain="photo")  # held-out seeds
        return torch.from_numpy(data).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    lfw = SHARED / "data" / "lfw-faces"
    if not lfw.is_dir():  # without ../shared: the model's own samples stand in for photos
        with torch.no_grad():
            return G(torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(5)), noise_mode="const").clamp(-1, 1)
    from latentshop.data.dataset import load_image

    rows = [json.loads(line) for line in (lfw / "labels.jsonl").read_text().splitlines() if line.strip()]
    files = sorted(r["file"] for r in rows if r["split"] == "test")[-n:]  # not the benchmark's first photos
    return torch.stack([load_image(lfw / f, res=64, channels=1) for f in files])


def test_both_kinds_are_shipped_and_small(model):
    name, bundle = model
    G = bundle.G
    found = list_encoder_files(G)
    assert {"psp", "e4e"} <= set(found)
    assert {"psp", "e4e"} <= set(bundle.encoder_kinds)
    for kind in ("psp", "e4e"):
        assert (found[kind] / "model.safetensors").stat().st_size <= 20e6
        E = load_encoder(found[kind], G=G)
        assert E.kind == kind and E.restyle
        assert bundle.encoder(kind).kind == kind and bundle.encoder(kind).path == found[kind]
    other = load_generator("lfw" if name == "synthetic" else "synthetic")
    with pytest.raises(CheckpointError, match="another generator"):
        load_encoder(found["e4e"], G=other)


def test_reconstruction_quality(model):
    name, bundle = model
    G = bundle.G
    t = _targets(name, G)
    start = float(psnr(synthesize(G, invert(G, t, method="w+", steps=1, lr=1e-9, loss="mse=1", w_avg_samples=1000)), t).mean())
    scores = {m: float(psnr(synthesize(G, _invert(bundle, t, m)).clamp(-1, 1), t).mean()) for m in ("psp", "e4e", "restyle-psp", "restyle-e4e")}
    for m, v in scores.items():
        assert v > start + 3, (m, v, start)  # far better than the average face
    assert scores["restyle-psp"] > scores["psp"] and scores["restyle-e4e"] > scores["e4e"], scores
    hybrid = float(psnr(synthesize(G, _invert(bundle, t, "e4e+opt", steps=20)).clamp(-1, 1), t).mean())
    assert hybrid > scores["restyle-e4e"], (hybrid, scores)


def test_encoder_codes_stay_closer_to_w_than_optimised_ones(model):
    name, bundle = model
    G = bundle.G
    t = _targets(name, G, n=4)
    spread = {}
    for m in ("e4e", "w+"):
        ws = _invert(bundle, t, m).tensor
        spread[m] = float((ws - ws[:, :1]).norm(dim=2).mean())  # distance of each layer's w from the first layer's
    assert spread["e4e"] < 0.75 * spread["w+"], spread  # measured: 6.5 vs 11.1 (synthetic), 7.2 vs 12.1 (default)
