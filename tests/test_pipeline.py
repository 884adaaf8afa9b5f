"""The main job's owner: load_target, choose_method, invert_photo, edit_photo and EditResult.save."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import latentshop
from latentshop import pipeline
from latentshop.editing import edit
from latentshop.errors import ConfigError, EditError, ImageError
from latentshop.latents import load_latent, synthesize

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "examples" / "face.jpg"


@pytest.fixture(scope="module")
def synthetic():
    return latentshop.load_model("synthetic")


@pytest.fixture(scope="module")
def default():
    return latentshop.load_model("lfw")


def test_load_target_from_a_file_an_image_and_an_array(default, tmp_path):
    t = pipeline.load_target(default, PHOTO)
    assert t.tensor.shape == (1, 64, 64) and t.name == "face" and t.face is None
    assert float(t.tensor.min()) >= -1 and float(t.tensor.max()) <= 1
    img = Image.open(PHOTO)
    same = pipeline.load_target(default, img)
    assert torch.allclose(same.tensor, t.tensor, atol=1 / 127.5)
    arr = pipeline.load_target(default, np.asarray(img.convert("RGB")), name="x")
    assert arr.name == "x" and arr.tensor.shape == (1, 64, 64)
    small = tmp_path / "small.png"
    img.convert("RGB").resize((32, 32)).save(small)
    with pytest.raises(ImageError, match="--upscale"):
        pipeline.load_target(default, small, upscale=False)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ImageError):
        pipeline.load_target(default, tmp_path / "bad.png")


def test_aligned_target_keeps_the_photo_for_paste_back(default):
    t = pipeline.load_target(default, PHOTO, align=True)
    assert t.face is not None and t.photo is not None and t.uint8().shape == (64, 64, 1)
    pasted = pipeline.paste_into_photo(t, t.uint8())
    assert pasted.size == t.photo.size
    with pytest.raises(ConfigError, match="--align"):
        pipeline.paste_into_photo(pipeline.load_target(default, PHOTO), t.uint8())


def test_choose_method_follows_the_models_encoders(synthetic):
    from conftest import fixture_path

    assert pipeline.choose_method(synthetic) == "e4e+opt"
    assert pipeline.choose_method(synthetic, purpose="quick") == "restyle-e4e"
    assert pipeline.choose_method(synthetic, "w") == "w"
    bare = latentshop.load_model(fixture_path("nv_a_uncond64.pkl"))
    assert pipeline.choose_method(bare) == "w+" and pipeline.choose_method(bare, purpose="quick") == "w+"
    with pytest.raises(ConfigError, match="unknown inversion method"):
        pipeline.choose_method(synthetic, "w++")


def test_invert_photo_takes_the_encoder_from_the_bundle(synthetic):
    img = pipeline.render(synthetic, pipeline.seed_latent(synthetic, 11))[0]
    inv = pipeline.invert_photo(synthetic, img, method="restyle-e4e")
    assert inv.latent.meta["method"] == "restyle-e4e" and inv.latent.space == "w+"
    assert inv.generator(synthetic) is synthetic.G
    rec = pipeline.render(synthetic, inv.latent)[0]
    assert np.abs(rec.astype(int) - img.astype(int)).mean() < 40  # the encoder lands near the sample


def test_edit_photo_equals_the_library_edit(synthetic):
    res = pipeline.edit_photo(synthetic, "seed:5", ["smile=+2", "ganspace:1=-1@coarse"])
    lat = pipeline.seed_latent(synthetic, 5)
    edits = [synthetic.edits.make(synthetic.G, "smile", 2.0), synthetic.edits.make(synthetic.G, "ganspace:1", -1.0, layers="coarse")]
    want = synthesize(synthetic.G, edit(synthetic.G, lat, edits))
    from latentshop.data.images import to_uint8

    assert np.array_equal(res.after, to_uint8(want)[0])
    assert np.array_equal(res.before, to_uint8(synthesize(synthetic.G, lat))[0])
    assert res.specs == [{"name": "smile", "strength": 2.0, "layers": None},
                         {"name": "ganspace:1", "strength": -1.0, "layers": "coarse"}]


def test_unknown_names_fail_before_any_inversion(synthetic, monkeypatch):
    monkeypatch.setattr(pipeline, "run_inversion", lambda *a, **k: pytest.fail("inverted before checking the edits"))
    with pytest.raises(EditError, match="Did you mean 'smile'"):
        pipeline.edit_photo(synthetic, str(PHOTO), ["smlie=+2"])
    with pytest.raises(EditError):
        pipeline.edit_photo(synthetic, str(PHOTO), ["smile=+1"], sweeps=["nope=-1:1:3"])
    with pytest.raises(EditError, match="--keep"):
        pipeline.edit_photo(synthetic, str(PHOTO), ["smile=+1"], keep=["nope"])
    with pytest.raises(ConfigError, match="--align"):
        pipeline.edit_photo(synthetic, str(PHOTO), ["smile=+1"], paste_back=True)


def test_edit_result_save_writes_everything_atomically(default, tmp_path):
    warnings = []
    res = pipeline.edit_photo(default, str(PHOTO), ["smile=+6"], align=True, paste_back=True, method="e4e",
                              sweeps=["smile=-1:1:3"], warn=warnings.append)
    assert warnings and "beyond" in warnings[0]
    out = res.save(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["face-before-after.png", "face-edit.json", "face-edited-pasted.png", "face-edited.npz", "face-edited.png",
                     "face-sweep-smile.png"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left
    strip = np.asarray(Image.open(out["before_after"]))
    assert strip.shape[1] == 3 * 64 + 2 * 2  # target | before | after
    lat = load_latent(out["latent"], default.G)
    assert lat.meta["edits"] == [e.describe() for e in res.edits]
    assert Image.open(out["pasted"]).size == Image.open(PHOTO).size


def test_resolve_input_kinds(synthetic, tmp_path):
    seed = pipeline.resolve_input(synthetic, "seed:7")
    assert seed.kind == "seed" and seed.name == "seed0007" and seed.latent.space == "z"
    assert pipeline.resolve_input(synthetic, "7").latent.tensor.equal(seed.latent.tensor)
    truncated = pipeline.resolve_input(synthetic, "seed:7", trunc=0.5)
    assert truncated.latent.space == "w+"
    path = latentshop.save_latent(seed.latent, tmp_path / "a.npz")
    assert pipeline.resolve_input(synthetic, str(path)).kind == "latent"
    with pytest.raises(ConfigError, match="no such file"):
        pipeline.resolve_input(synthetic, str(tmp_path / "missing.png"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ImageError, match="not a latent"):
        pipeline.resolve_input(synthetic, str(tmp_path / "notes.txt"))


def test_no_face_error_names_the_file(default, tmp_path):
    from latentshop.data.align import NoFaceError

    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    with pytest.raises(NoFaceError, match="blank.png: no face found"):
        pipeline.load_target(default, blank, align=True)
