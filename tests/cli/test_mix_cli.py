"""``latentshop mix``: seeds as before, latent files and group names, clear one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from cli_helpers import tiny_model_folder
from typer.testing import CliRunner

from latentshop.cli.main import app
from latentshop.editing import style_mix
from latentshop.latents import Latent, save_latent, seed_z, synthesize

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model_folder(tmp_path_factory, 0)


def run(*args):
    return runner.invoke(app, ["mix", *map(str, args)])


def _png(path):
    return np.asarray(Image.open(path)).astype(int)


def _want(G, lat):
    return (synthesize(G, lat)[0] * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy().astype(int)


def _one_line_error(res, *needles):
    assert res.exit_code == 1, res.output
    text = res.output.strip()
    assert len(text.splitlines()) == 1 and text.startswith("error:"), text
    for n in needles:
        assert n in text, text


def _seed(G, s, trunc=1.0):
    with torch.no_grad():
        return Latent.from_ws(G, G.mapping(seed_z(G, [s]), truncation_psi=trunc))


def test_plain_seeds_work_as_before(tmp_path, model):
    path, G = model
    res = run("--model", path, "--rows", "1,2", "--cols", "3-5", "--styles", "0-3", "--trunc", "0.8", "--outdir", tmp_path)
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "grid.png").size == (4 * 32, 3 * 32)
    assert sorted(p.name for p in tmp_path.glob("*-*.png")) == [f"{r}-{q}.png" for r in (1, 2) for q in (3, 4, 5)]
    with torch.no_grad():
        ws = G.mapping(seed_z(G, [2, 4]), truncation_psi=0.8)
    mixed = Latent.from_ws(G, torch.cat([ws[1:, :4], ws[:1, 4:]], dim=1))
    assert np.abs(_png(tmp_path / "2-4.png") - _want(G, mixed)).max() <= 1
    options = json.loads((tmp_path / "options.json").read_text())
    assert options["rows"] == [1, 2] and options["cols"] == [3, 4, 5] and options["styles"] == [0, 1, 2, 3]


def test_group_names_equal_their_ranges(tmp_path, model):
    path, G = model
    for styles, out in (("coarse", "a"), ("0-3", "b"), ("middle", "c")):
        res = run("--model", path, "--rows", "seed:1", "--cols", "seed:2,3", "--styles", styles, "-o", tmp_path / out)
        assert res.exit_code == 0, res.output
    assert np.array_equal(_png(tmp_path / "a" / "grid.png"), _png(tmp_path / "b" / "grid.png"))
    want = style_mix(G, _seed(G, 1), _seed(G, 3), [4, 5, 6, 7])
    assert np.abs(_png(tmp_path / "c" / "1-3.png") - _want(G, want)).max() <= 1
    assert json.loads((tmp_path / "c" / "options.json").read_text())["styles"] == [4, 5, 6, 7]


def test_latent_file_inputs(tmp_path, model):
    path, G = model
    face = Latent.from_ws(G, G.mapping(torch.randn(1, 8)).detach())
    save_latent(face, tmp_path / "face.npz", model=str(path))
    save_latent(face.to_space(G, "s"), tmp_path / "styles.npz")
    out = tmp_path / "out"
    res = run("-m", path, "--rows", f"{tmp_path / 'face.npz'},seed:3", "--cols", f"seed:55,{tmp_path / 'styles.npz'}",
              "--styles", "middle", "-o", out)
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.glob("*-*.png"))
    assert names == ["3-55.png", "3-styles.png", "face-55.png", "face-styles.png"]
    assert Image.open(out / "grid.png").size == (3 * 32, 3 * 32)
    want = style_mix(G, face, _seed(G, 55), "middle")
    assert np.abs(_png(out / "face-55.png") - _want(G, want)).max() <= 1
    want_s = style_mix(G, _seed(G, 3), face.to_space(G, "s"), "middle")  # an s source: style codes are mixed
    assert np.abs(_png(out / "3-styles.png") - _want(G, want_s)).max() <= 1
    # The left column shows the row input itself.
    grid = _png(out / "grid.png")
    assert np.abs(grid[32:64, :32] - _want(G, face)).max() <= 1


def test_unknown_file_is_a_one_line_error(tmp_path, model):
    path, _ = model
    res = run("-m", path, "--rows", f"{tmp_path / 'nope.npz'}", "--cols", "1", "-o", tmp_path / "out")
    _one_line_error(res, "nope.npz", "no such file")


def test_wrong_model_latent_is_refused(tmp_path, tmp_path_factory, model):
    path, _ = model
    _, other = tiny_model_folder(tmp_path_factory, 1)
    save_latent(Latent.from_z(other, torch.randn(1, 8)), tmp_path / "theirs.npz")
    res = run("-m", path, "--rows", "1", "--cols", f"{tmp_path / 'theirs.npz'}", "-o", tmp_path / "out")
    _one_line_error(res, "theirs.npz", "not for the one in use")


@pytest.mark.parametrize("styles, needle", [("chin", "--styles"), ("0-99", "out of range"), ("fine", "no layers")])
def test_bad_styles(tmp_path, model, styles, needle):
    path, _ = model
    res = run("-m", path, "--rows", "1", "--cols", "2", "--styles", styles, "-o", tmp_path)
    _one_line_error(res, needle)
