"""``latentshop data synth`` and ``latentshop data prepare``."""

from __future__ import annotations

import json

from PIL import Image
from typer.testing import CliRunner

from latentshop.cli.main import app
from latentshop.data import ImageFolderDataset, SyntheticFaces

runner = CliRunner()


def test_synth_then_train_data(tmp_path):
    out = tmp_path / "syn"
    res = runner.invoke(app, ["data", "synth", "--n", "6", "--res", "32", "--domain", "toon", "--out", str(out)])
    assert res.exit_code == 0, res.output
    labels = json.loads((out / "labels.json").read_text())
    assert labels["domain"] == "toon" and len(labels["factors"]) == 6
    ds = ImageFolderDataset(out)
    assert len(ds) == 6 and ds.resolution == 32
    res = runner.invoke(app, ["data", "synth", "--n", "6", "--res", "32", "--domain", "oil-painting", "--out", str(tmp_path / "x")])
    assert res.exit_code == 1 and "domain" in res.output


def test_prepare_reports_skips(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(src / "a.jpg")
    (src / "b.png").write_bytes(b"not an image")
    res = runner.invoke(app, ["data", "prepare", str(src), "--res", "16", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "wrote 1 images" in res.output and "skipped 1" in res.output
    assert Image.open(tmp_path / "out" / "img000000.png").size == (16, 16)


def test_synthetic_faces_dataset_splits_and_channels():
    train, test = SyntheticFaces(res=32, n=3), SyntheticFaces(res=32, n=3, split="test")
    assert not (train[0][0] == test[0][0]).all()
    gray = SyntheticFaces(res=32, n=3, channels=1, xflip=True)
    assert len(gray) == 6 and gray[0][0].shape == (1, 32, 32)
    assert (gray[3][0] == gray[0][0].flip(2)).all()
