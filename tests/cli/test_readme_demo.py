"""The README's main command: align a real photo, invert it, add a smile, write before/after."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner

from latentshop import load_evaluator
from latentshop.cli.main import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_makefile_demo_is_the_edit_job():
    make = (REPO / "Makefile").read_text()
    demo = re.search(r"^demo:.*\n\t(.+)$", make, re.M).group(1)
    assert "latentshop edit" in demo and "--align" in demo and "examples/face.jpg" in make
    assert (REPO / "examples" / "face.jpg").is_file() and (REPO / "examples" / "LICENSE").is_file()


def test_smile_on_the_example_photo(tmp_path):
    out = tmp_path / "demo"
    r = runner.invoke(app, ["edit", str(REPO / "examples" / "face.jpg"), "--model", "default", "--align", "--paste-back",
                            "--edit", "smile=+2", "--steps", "30", "--outdir", str(out)])
    assert r.exit_code == 0, r.output
    for name in ("face-edited.png", "face-before-after.png", "face-edited-pasted.png", "face-edited.npz", "face-edit.json"):
        assert (out / name).is_file(), name
    strip = np.asarray(Image.open(out / "face-before-after.png").convert("L"), dtype=np.float32)
    recon, edited = strip[:, 66:130], strip[:, 132:196]
    to_t = lambda a: torch.from_numpy(a / 127.5 - 1)[None, None]  # noqa: E731
    p = load_evaluator("expression").predict_proba(torch.cat([to_t(recon), to_t(edited)]))
    happy = load_evaluator("expression").classes.index("happiness")
    logit = torch.logit(p[:, happy].double())
    assert float(logit[1] - logit[0]) > 0.3  # the edit made the face happier (log-odds of happiness)
    photo = Image.open(REPO / "examples" / "face.jpg")
    assert Image.open(out / "face-edited-pasted.png").size == photo.size
