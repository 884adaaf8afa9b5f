"""The bundled models: found by name with no path, complete (G_ema and D), and usable from the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import latentshop
from latentshop.checkpoints.zoo import BUNDLED_DIR, resolve_model
from latentshop.cli.main import app
from latentshop.errors import CheckpointError

EXPECTED = {"lfw": 1, "synthetic": 3}  # name -> image channels


def test_bundled_models_are_listed():
    assert set(EXPECTED) <= set(latentshop.list_models())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundled_model_loads_by_name(name):
    G = latentshop.load_generator(name)
    D = latentshop.load_discriminator(name)
    assert (G.img_resolution, G.img_channels) == (64, EXPECTED[name])
    z = torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        img = G(z, None, truncation_psi=0.7, noise_mode="const")
        logits = D(img, None)
    assert img.shape == (3, EXPECTED[name], 64, 64) and torch.isfinite(img).all()
    assert img.std() > 0.05  # a trained model draws something, not a flat image
    assert logits.shape == (3, 1) and torch.isfinite(logits).all()
    folder = resolve_model(name)
    assert folder.parent == BUNDLED_DIR
    size = sum(f.stat().st_size for f in folder.iterdir())
    assert size <= 25 * 2**20, f"{name} is {size / 2**20:.1f} MB; the limit is 25 MB"
    info = json.loads((folder / "config.json").read_text())["info"]
    assert info["preset"] == name and info["trained_kimg"] > 0


def test_extra_models_folder_and_unknown_names(tmp_path, monkeypatch):
    import shutil

    shutil.copytree(resolve_model("lfw"), tmp_path / "mine")
    monkeypatch.setenv("LATENTSHOP_MODELS", str(tmp_path))
    assert "mine" in latentshop.list_models()
    assert latentshop.load_generator("mine").img_channels == 1
    with pytest.raises(CheckpointError, match="lfw"):  # the message names the models that exist
        latentshop.load_generator("no-such-model")


def test_demo_command_renders_from_the_default_model(tmp_path):
    res = CliRunner().invoke(app, ["generate", "--model", "default", "--seeds", "0-1", "--trunc", "0.7", "--outdir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "seed0000.png").is_file() and (tmp_path / "grid.png").is_file()
