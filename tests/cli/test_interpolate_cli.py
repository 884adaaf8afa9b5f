"""``latentshop interpolate``: seeds and latent files in, video + sheet + latents out, clear one-line errors."""

from __future__ import annotations

import json

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image
from cli_helpers import tiny_model_folder
from typer.testing import CliRunner

from latentshop.cli.main import app
from latentshop.latents import Latent, load_latent, save_latent, seed_z, synthesize

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model_folder(tmp_path_factory, 0)


def run(*args):
    return runner.invoke(app, ["interpolate", *map(str, args)])


def _one_line_error(res, *needles):
    assert res.exit_code == 1, res.output
    text = res.output.strip()
    assert len(text.splitlines()) == 1 and text.startswith("error:"), text
    for n in needles:
        assert n in text, text
    assert "Traceback" not in res.output


def test_seeds_write_video_sheet_and_latents(tmp_path, model):
    path, G = model
    out = tmp_path / "out"
    res = run("seed:1", "2", "--model", path, "--frames", "5", "--format", "both", "--outdir", out, "--device", "cpu")
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["interpolation-sheet.png", "interpolation.gif", "interpolation.mp4", "interpolation.npz", "options.json"]
    lat = load_latent(out / "interpolation.npz", G)
    assert lat.space == "w+" and len(lat) == 5 and lat.meta["inputs"] == ["seed:1", "2"]
    with torch.no_grad():
        ws = G.mapping(seed_z(G, [1, 2]))
    assert torch.allclose(lat.tensor[0], ws[0]) and torch.allclose(lat.tensor[-1], ws[1])
    with Image.open(out / "interpolation.gif") as im:
        assert im.size == (32, 32) and im.n_frames == 5
    first = np.asarray(Image.open(out / "interpolation.gif").convert("RGB"))
    want = (synthesize(G, lat[0])[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).numpy()
    assert np.abs(first.astype(float) - want).mean() < 8  # GIF palette quantisation only
    assert Image.open(out / "interpolation-sheet.png").size == (5 * 32, 32)
    reader = imageio_ffmpeg.read_frames(str(out / "interpolation.mp4"))
    meta = next(reader)
    assert tuple(meta["size"]) == (256, 256) and sum(1 for _ in reader) == 5
    assert json.loads((out / "options.json").read_text())["method"] == "lerp"


def test_three_inputs_in_z_with_a_loop_and_a_latent_file(tmp_path, model):
    path, G = model
    save_latent(Latent.from_z(G, torch.randn(1, 8)), tmp_path / "key.npz", model=str(path))
    out = tmp_path / "out"
    res = run("seed:3", tmp_path / "key.npz", "seed:4", "-m", path, "--frames", "4", "--space", "z", "--loop",
              "--sheet", "4", "-o", out)
    assert res.exit_code == 0, res.output
    lat = load_latent(out / "interpolation.npz", G)
    assert lat.space == "z" and len(lat) == 3 * 3 and lat.meta["interpolation"]["method"] == "slerp"
    assert np.allclose(lat.tensor[3].numpy(), load_latent(tmp_path / "key.npz").tensor[0].numpy())
    assert Image.open(out / "interpolation.gif").n_frames == 9
    assert Image.open(out / "interpolation-sheet.png").size == (4 * 32, 32)
    assert not (out / "interpolation.mp4").exists()


def test_w_plus_latent_file_with_mp4_only(tmp_path, model):
    path, G = model
    lat = Latent.from_ws(G, G.mapping(torch.randn(1, 8)).detach())
    save_latent(lat, tmp_path / "face.npz")
    out = tmp_path / "out"
    res = run(tmp_path / "face.npz", "seed:5", "-m", path, "--frames", "3", "--format", "mp4", "--fps", "8", "-o", out)
    assert res.exit_code == 0, res.output
    assert (out / "interpolation.mp4").is_file() and not (out / "interpolation.gif").exists()
    assert torch.equal(load_latent(out / "interpolation.npz").tensor[0], lat.tensor[0])


def test_unknown_file_is_a_one_line_error(tmp_path, model):
    path, _ = model
    res = run(tmp_path / "missing.npz", "seed:1", "-m", path, "-o", tmp_path / "out")
    _one_line_error(res, "missing.npz", "no such file")
    assert not (tmp_path / "out").exists()


def test_wrong_model_latent_is_refused(tmp_path, tmp_path_factory, model):
    path, _ = model
    _, other = tiny_model_folder(tmp_path_factory, 1)
    save_latent(Latent.from_z(other, torch.randn(1, 8)), tmp_path / "theirs.npz")
    res = run("seed:1", tmp_path / "theirs.npz", "-m", path, "-o", tmp_path / "out")
    _one_line_error(res, "theirs.npz", "not for the one in use")


def test_bad_requests(tmp_path, model):
    path, G = model
    save_latent(Latent.from_ws(G, G.mapping(torch.randn(1, 8)).detach()), tmp_path / "wplus.npz")
    _one_line_error(run(tmp_path / "wplus.npz", "seed:1", "-m", path, "--space", "z", "-o", tmp_path / "o"), "--space w+")
    _one_line_error(run("seed:1", "seed:2", "-m", path, "--trunc", "0.7", "--space", "z", "-o", tmp_path / "o"), "--trunc")
    _one_line_error(run("seed:1", "seed:2", "-m", path, "--method", "slerp", "-o", tmp_path / "o"), "slerp")
    _one_line_error(run("seed:1", "-m", path, "-o", tmp_path / "o"), "at least two")
    res = run("seed:1", "seed:2", "-m", path, "--frames", "1", "-o", tmp_path / "o")
    assert res.exit_code == 2  # typer's range check


def test_help_has_examples():
    res = runner.invoke(app, ["interpolate", "--help"])
    assert res.exit_code == 0 and "latentshop interpolate seed:1 seed:2" in res.output
