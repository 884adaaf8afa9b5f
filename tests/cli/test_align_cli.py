"""``latentshop align``: align photos, paste edits back, and the no-face error."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import SHARED
from latentshop.cli.main import app

runner = CliRunner()
TWO_FACES = SHARED / "data" / "faces" / "GFPGAN__inputs_whole_imgs_Blake_Lively.jpg"


@pytest.fixture
def two_faces():
    if not TWO_FACES.is_file():
        pytest.skip("../shared/data/faces is not present")
    return TWO_FACES


def test_align_then_paste_back(tmp_path, two_faces):
    out = tmp_path / "face.png"
    res = runner.invoke(app, ["align", str(two_faces), "--res", "64", "--channels", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    img = Image.open(out)
    assert img.size == (64, 64) and img.mode == "L"
    meta = json.loads((tmp_path / "face.align.json").read_text())
    assert meta["res"] == 64 and meta["photo_size"] == [700, 464] and len(meta["quad"]) == 4

    # an "edit": the aligned face, darkened; the photo is found through the alignment file
    Image.fromarray((np.asarray(img) * 0.5).astype(np.uint8)).save(tmp_path / "edited.png")
    result = tmp_path / "result.png"
    res = runner.invoke(app, ["align", "--paste-back", str(tmp_path / "edited.png"),
                              "--alignment", str(tmp_path / "face.align.json"), "--out", str(result)])
    assert res.exit_code == 0, res.output
    after = np.asarray(Image.open(result), dtype=np.float64)
    before = np.asarray(Image.open(two_faces).convert("RGB"), dtype=np.float64)
    assert after.shape == before.shape  # the whole photo, in colour
    x0, y0, x1, y1 = meta["box"]
    assert after[y0:y1, x0:x1].mean() < before[y0:y1, x0:x1].mean() - 20  # the face got darker
    np.testing.assert_array_equal(after[-20:, :100], before[-20:, :100])  # far from the face: unchanged

    # --photo given explicitly gives the same result
    res = runner.invoke(app, ["align", "--paste-back", str(tmp_path / "edited.png"), "--alignment",
                              str(tmp_path / "face.align.json"), "--photo", str(two_faces), "--out", str(tmp_path / "r2.png")])
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "r2.png")), after.astype(np.uint8))


def test_all_faces_to_a_folder(tmp_path, two_faces):
    res = runner.invoke(app, ["align", str(two_faces), "--all", "--res", "32", "--out", str(tmp_path / "faces")])
    assert res.exit_code == 0, res.output
    stem = two_faces.stem
    for i in range(2):
        assert Image.open(tmp_path / "faces" / f"{stem}_{i}.png").size == (32, 32)
        assert (tmp_path / "faces" / f"{stem}_{i}.align.json").is_file()


def test_no_face_is_one_line_and_nonzero(tmp_path, two_faces):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 160), (90, 90, 90)).save(blank)
    res = runner.invoke(app, ["align", str(blank), "--res", "64", "--out", str(tmp_path / "x.png")])
    assert res.exit_code == 1
    assert "blank.png: no face found" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "x.png").exists()
    # several photos: the good one is still written, the exit status says one failed
    res = runner.invoke(app, ["align", str(blank), str(two_faces), "--res", "32", "--out", str(tmp_path / "many")])
    assert res.exit_code == 1 and "blank.png: no face found" in res.output
    assert (tmp_path / "many" / f"{two_faces.stem}.png").is_file()


def test_usage_errors(tmp_path, two_faces):
    res = runner.invoke(app, ["align", str(two_faces), "--out", str(tmp_path / "x.png")])
    assert res.exit_code == 1 and "--res" in res.output
    res = runner.invoke(app, ["align", "--paste-back", str(tmp_path / "e.png"), "--out", str(tmp_path / "r.png")])
    assert res.exit_code == 1 and "--alignment" in res.output
    res = runner.invoke(app, ["align", "--res", "64", "--out", str(tmp_path / "x.png")])
    assert res.exit_code == 1 and "photos to align" in res.output
