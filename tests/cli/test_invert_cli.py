"""``latentshop invert`` / ``render``: outputs, resume, sharding, and bad input that loses nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import SHARED
from latentshop.checkpoints.native import NetworkSpec, write_native
from latentshop.cli.invert import collect_images, shard_for_rank
from latentshop.cli.main import app
from latentshop.latents import load_latent
from latentshop.models.stylegan2 import Generator

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny 32-px model folder (G_ema only)."""
    torch.manual_seed(0)
    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=32, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=32)).eval()
    path = tmp_path_factory.mktemp("model") / "tiny"
    write_native(path, {"G_ema": NetworkSpec("generator", G.init_kwargs, G.state_dict())})
    return path


def _image(path, size=32, mode="RGB"):
    rng = np.random.default_rng(len(str(path)))
    a = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    Image.fromarray(a).convert(mode).save(path)
    return path


def _invert(*args):
    return runner.invoke(app, ["invert", *map(str, args), "--steps", "3"])


def test_folder_outputs_resume_and_render(tmp_path, model):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        _image(src / f"img{i}.png")
    (src / "readme.txt").write_text("not an image")
    out = tmp_path / "out"
    res = _invert(src, "--model", model, "--outdir", out, "--batch", "2")
    assert res.exit_code == 0, res.output
    for i in range(3):
        for suffix in (".npz", ".png", "-compare.png", ".json"):
            assert (out / f"img{i}{suffix}").is_file(), suffix
        m = json.loads((out / f"img{i}.json").read_text())
        assert m["method"] == "w+" and m["steps"] == 3 and np.isfinite(m["psnr"]) and 0 < m["ms_ssim"] <= 1
        assert Image.open(out / f"img{i}-compare.png").size[0] > 64
    assert "without an image extension" in res.output

    # Resume: everything done is skipped, a removed result is redone.
    (out / "img1.json").unlink()
    before = (out / "img0.npz").stat().st_mtime_ns
    res = _invert(src, "--model", model, "--outdir", out)
    assert res.exit_code == 0 and "2 image(s) already done" in res.output
    assert (out / "img1.json").is_file() and (out / "img0.npz").stat().st_mtime_ns == before

    res = runner.invoke(app, ["render", str(out / "img0.npz"), "--model", str(model), "--outdir", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "r" / "img0.png")), np.asarray(Image.open(out / "img0.png")))


def test_bad_inputs_are_reported_and_the_rest_is_done(tmp_path, model):
    good = _image(tmp_path / "good.png")
    small = _image(tmp_path / "small.png", size=16)
    notimg = tmp_path / "notes.png"
    notimg.write_text("hello")
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good.read_bytes()[:60])
    gray_alpha = tmp_path / "la.png"
    Image.fromarray((np.random.default_rng(1).random((40, 40, 2)) * 255).astype(np.uint8), "LA").save(gray_alpha)
    bomb = tmp_path / "bomb.png"
    Image.new("L", (20000, 20000)).save(bomb)  # 400 Mpx: refused before decoding
    out = tmp_path / "out"
    res = _invert(good, small, notimg, trunc, gray_alpha, bomb, "--model", model, "--outdir", out)
    assert res.exit_code == 1
    assert "Traceback" not in res.output
    assert "smaller than the model" in res.output and "--upscale" in res.output
    for name in ("notes.png", "trunc.png", "bomb.png"):
        assert name in res.output
    assert (out / "good.json").is_file() and (out / "la.json").is_file()  # 2-channel LA converted to RGB
    assert not (out / "small.json").exists() and not (out / "bomb.json").exists()
    assert "4 image(s) failed" in res.output
    res = _invert(small, "--model", model, "--outdir", out, "--upscale")
    assert res.exit_code == 0 and (out / "small.json").is_file()


def test_latent_refused_by_another_model(tmp_path, model):
    out = tmp_path / "out"
    assert _invert(_image(tmp_path / "a.png"), "--model", model, "--outdir", out).exit_code == 0
    res = runner.invoke(app, ["render", str(out / "a.npz"), "--model", "synthetic", "--outdir", str(tmp_path / "r")])
    assert res.exit_code == 1 and "not for the one in use" in res.output and "Traceback" not in res.output


def test_usage_errors(tmp_path, model):
    img = _image(tmp_path / "a.png")
    res = _invert(img, "--model", model, "--outdir", tmp_path / "o", "--method", "z9")
    assert res.exit_code == 1 and "unknown inversion method" in res.output
    res = _invert(img, "--model", model, "--outdir", tmp_path / "o", "--paste-back")
    assert res.exit_code == 1 and "--align" in res.output
    res = _invert(tmp_path / "missing.png", "--model", model, "--outdir", tmp_path / "o")
    assert res.exit_code == 1 and "no such file" in res.output


def test_rank_sharding(tmp_path, monkeypatch):
    items = list(range(7))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert shard_for_rank(items) == [1, 4]
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    _image(tmp_path / "x" / "a.png")
    _image(tmp_path / "y" / "a.png")
    found, _ = collect_images([tmp_path / "x", tmp_path / "y"])
    assert [f.name for f in found] == ["a", "a-1"]  # same stem in two folders: distinct outputs


def test_align_invert_paste_back_on_a_real_photo(tmp_path):
    photo = SHARED / "data" / "faces" / "GFPGAN__inputs_whole_imgs_Blake_Lively.jpg"
    if not photo.is_file():
        pytest.skip("../shared/data/faces is not present")
    out = tmp_path / "out"
    res = runner.invoke(app, ["invert", str(photo), "--model", "lfw", "--align", "--paste-back", "--steps", "5",
                              "--outdir", str(out)])
    assert res.exit_code == 0, res.output
    m = json.loads((out / f"{photo.stem}.json").read_text())
    assert 0 < m["identity"] <= 1
    assert Image.open(out / f"{photo.stem}-pasted.png").size == Image.open(photo).size
    assert Image.open(out / f"{photo.stem}-aligned.png").size == (64, 64)
    lat = load_latent(out / f"{photo.stem}.npz")
    assert lat.space == "w+" and lat.meta["model"] == "lfw"


def test_align_without_a_face_is_one_clear_line(tmp_path):
    blank = tmp_path / "wall.png"
    Image.new("RGB", (300, 300), (120, 130, 140)).save(blank)
    res = runner.invoke(app, ["invert", str(blank), "--model", "lfw", "--align", "--steps", "2", "--outdir", str(tmp_path / "o")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "wall.png" in res.output and "no face" in res.output
