"""``latentshop train-encoder`` then ``latentshop invert --method e4e|restyle-e4e|e4e+opt --encoder``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli_helpers import tiny_model_folder
from latentshop.cli.main import app
from latentshop.latents import load_latent

runner = CliRunner()
TINY = ["--width", "4", "--style-channels", "8", "--batch", "8", "--snapshot-kimg", "0.016", "--fp32"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model, G = tiny_model_folder(tmp_path_factory, 0)
    run = tmp_path_factory.mktemp("run") / "e4e"
    result = runner.invoke(app, ["train-encoder", "--kind", "e4e", "--model", str(model), "--kimg", "0.032",
                                 "--outdir", str(run), *TINY])
    assert result.exit_code == 0, result.output
    return model, run


def test_train_encoder_writes_a_run_and_an_encoder(trained):
    model, run = trained
    options = json.loads((run / "options.json").read_text())
    assert options["train"]["kind"] == "e4e" and options["train"]["sample_fraction"] == 1.0
    assert (run / "encoder" / "config.json").exists() and (run / "checkpoint.pt").exists()
    assert len(list(run.glob("snapshot-*.png"))) == 2
    # asking for more resumes from the checkpoint instead of starting over
    result = runner.invoke(app, ["train-encoder", "--kind", "e4e", "--model", str(model), "--kimg", "0.048",
                                 "--outdir", str(run), "--resume", *TINY])
    assert result.exit_code == 0 and "resumed from" in result.output, result.output


@pytest.mark.parametrize("method", ["e4e", "restyle-e4e", "e4e+opt"])
def test_invert_with_the_trained_encoder(trained, tmp_path, method):
    model, run = trained
    img = tmp_path / "face.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(img)
    extra = ["--steps", "3"] if method == "e4e+opt" else ["--iterations", "2"] if method == "restyle-e4e" else []
    out = tmp_path / "out"
    result = runner.invoke(app, ["invert", str(img), "--model", str(model), "--method", method,
                                 "--encoder", str(run / "encoder"), "--outdir", str(out), *extra])
    assert result.exit_code == 0, result.output
    lat = load_latent(out / "face.npz")
    assert lat.space == "w+" and lat.meta["method"] == method
    assert json.loads((out / "face.json").read_text())["psnr"] > 0


def test_clear_errors(trained, tmp_path):
    model, run = trained
    img = tmp_path / "face.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    result = runner.invoke(app, ["invert", str(img), "--model", str(model), "--method", "psp", "--outdir", str(tmp_path / "o")])
    assert result.exit_code != 0 and "train-encoder --kind psp" in result.output.replace("\n", " ")
    result = runner.invoke(app, ["invert", str(img), "--model", str(model), "--method", "w+", "--encoder", str(run / "encoder"),
                                 "--outdir", str(tmp_path / "o")])
    assert result.exit_code != 0 and "encoder methods" in result.output
    result = runner.invoke(app, ["train-encoder", "--kind", "vae", "--model", str(model), "--outdir", str(tmp_path / "r")])
    assert result.exit_code != 0 and "kind" in result.output
