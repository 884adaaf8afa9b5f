"""``latentshop train`` on a small folder of images: a run folder with a loadable model."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from latentshop import load_generator
from latentshop.cli.main import app


def test_train_command_on_a_folder(tmp_path):
    data = tmp_path / "imgs"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(data / f"{i}.png")
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--res", "16", "--channels", "3", "--kimg", "0.008", "--batch", "4",
            "--snapshot-kimg", "0.004", "--fp32", "-o", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (out / "checkpoint.pt").exists() and len(list(out.glob("snapshot-*.png"))) == 2
    G = load_generator(out / "model")
    assert (G.img_resolution, G.img_channels) == (16, 3)
    res = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "missing"), "--res", "16", "-o", str(out)])
    assert res.exit_code == 1 and "does not exist" in res.output
    res = CliRunner().invoke(app, ["train", "--preset", "nope", "-o", str(out)])
    assert res.exit_code == 1 and "unknown preset" in res.output
