"""The Latent type and its file format."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latentshop.latents import Latent, LatentError, generator_fingerprint, load_latent, save_latent, synthesize
from latentshop.errors import ConfigError, ShapeError
from latentshop.models.stylegan2 import Generator


def tiny_generator(seed: int = 0, channels: int = 3) -> Generator:
    torch.manual_seed(seed)
    return Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=channels,
                     synthesis_kwargs=dict(channel_base=128, channel_max=16)).eval()


def test_fingerprint_depends_on_weights_and_is_stable():
    G1, G1b, G2 = tiny_generator(0), tiny_generator(0), tiny_generator(1)
    assert generator_fingerprint(G1) == generator_fingerprint(G1b)
    assert generator_fingerprint(G1) != generator_fingerprint(G2)
    with torch.no_grad():
        G1.synthesis.b4.conv1.weight.add_(1e-3)  # a tuned generator is another generator
    assert generator_fingerprint(G1) != generator_fingerprint(G1b)
    # latentshop.latents re-exports the one fingerprint of latentshop.models.fingerprint
    from latentshop.models import fingerprint

    assert generator_fingerprint is fingerprint.generator_fingerprint


def test_spaces_render_the_same_image():
    G = tiny_generator()
    z = torch.randn(3, 8)
    lz = Latent.from_z(G, z)
    img = synthesize(G, lz)
    for space in ("w", "w+", "s"):
        other = lz.to_space(G, space)
        assert other.space == space
        torch.testing.assert_close(synthesize(G, other), img, atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="not invertible"):
        lz.to_space(G, "w+").to_space(G, "z")


def test_indexing_and_cat_keep_noise():
    G = tiny_generator()
    noise = {k: torch.randn(2, 1, r, r) for k, r in G.synthesis.noise_layers().items()}
    lat = Latent.from_ws(G, torch.randn(2, G.num_ws, 8), noise=noise)
    one = lat[1]
    assert len(one) == 1 and torch.equal(one.noise["b8.conv0"], noise["b8.conv0"][1:])
    both = Latent.cat([lat[0], lat[1]])
    torch.testing.assert_close(synthesize(G, both), synthesize(G, lat))


def test_file_round_trip(tmp_path):
    G = tiny_generator()
    noise = {k: torch.randn(2, 1, r, r) for k, r in G.synthesis.noise_layers().items()}
    lat = Latent.from_ws(G, torch.randn(2, G.num_ws, 8), noise=noise, method="w+", losses={"mse": [0.1, 0.2]})
    path = save_latent(lat, tmp_path / "a.npz", model="tiny")
    back = load_latent(path, G)
    assert back.space == "w+" and back.meta["model"] == "tiny" and back.meta["losses"] == {"mse": [0.1, 0.2]}
    assert torch.equal(back.tensor, lat.tensor)
    torch.testing.assert_close(synthesize(G, back), synthesize(G, lat), atol=0, rtol=0)
    assert not list(tmp_path.glob("*.tmp*"))  # atomic: no leftovers


def test_refuses_another_generator(tmp_path):
    G, other = tiny_generator(0), tiny_generator(1)
    path = save_latent(Latent.from_z(G, torch.randn(1, 8)), tmp_path / "z.npz", model="first-model")
    with pytest.raises(LatentError, match="first-model"):
        load_latent(path, other)
    with pytest.raises(LatentError):
        synthesize(other, load_latent(path))


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04broken"])
def test_corrupt_files_are_refused(tmp_path, content):
    p = tmp_path / "bad.npz"
    p.write_bytes(content)
    with pytest.raises(LatentError, match="bad.npz"):
        load_latent(p)


def test_foreign_npz_nan_and_pickles_are_refused(tmp_path):
    G = tiny_generator()
    np.savez(tmp_path / "foreign.npz", x=np.zeros(3))
    with pytest.raises(LatentError, match="not a latentshop latent"):
        load_latent(tmp_path / "foreign.npz")
    path = save_latent(Latent.from_z(G, torch.randn(1, 8)), tmp_path / "ok.npz")
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["latent"][0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", **arrays)
    with pytest.raises(LatentError, match="NaN"):
        load_latent(tmp_path / "nan.npz")
    arrays["latent"] = np.array([object()], dtype=object)  # would need pickle to load
    np.savez(tmp_path / "obj.npz", **arrays)
    with pytest.raises(LatentError):
        load_latent(tmp_path / "obj.npz")


def test_shape_checks():
    G = tiny_generator()
    with pytest.raises(ShapeError):
        Latent.from_ws(G, torch.randn(1, G.num_ws + 1, 8))
    with pytest.raises(ShapeError):
        Latent.from_z(G, torch.randn(1, 9))
    with pytest.raises(ConfigError, match="unknown latent space"):
        Latent(torch.zeros(1, 8), "q", "x")


def test_wrong_shape_for_generator_in_file(tmp_path):
    G = tiny_generator()
    lat = Latent.from_ws(G, torch.randn(1, 8))
    path = save_latent(lat, tmp_path / "w.npz")
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["latent"] = np.zeros((1, 5), np.float32)
    np.savez(tmp_path / "w5.npz", **arrays)
    with pytest.raises(LatentError, match="does not fit"):
        load_latent(tmp_path / "w5.npz", G)
    header = json.loads(str(arrays["header"]))
    assert header["format"] == "latentshop-latent"
