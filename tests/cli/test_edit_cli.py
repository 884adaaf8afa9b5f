"""``latentshop edit``, ``directions compute|list`` and ``stylespace find`` on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from latentshop.checkpoints.native import NetworkSpec, write_native
from latentshop.cli.main import app
from latentshop.latents import Latent, load_latent, save_latent
from latentshop.models.stylegan2 import Generator

runner = CliRunner()


def _G(seed):
    torch.manual_seed(seed)
    return Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=32, img_channels=3,
                     mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=16)).eval()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny"
    G = _G(0)
    write_native(path, {"G_ema": NetworkSpec("generator", G.init_kwargs, G.state_dict())})
    r = runner.invoke(app, ["directions", "compute", "--method", "ganspace", "--model", str(path), "--n", "3000",
                            "--components", "4", "--out", str(path / "edits" / "ganspace.npz")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["directions", "compute", "--method", "sefa", "--model", str(path), "--components", "3",
                            "--layers", "coarse", "--out", str(path / "edits" / "sefa.npz")])
    assert r.exit_code == 0, r.output
    return path


def test_list(model):
    r = runner.invoke(app, ["edit", "--list", "--model", str(model)])
    assert r.exit_code == 0, r.output
    assert "ganspace:3" in r.output and "sefa:2" in r.output and "s:LAYER:CHANNEL" in r.output
    r = runner.invoke(app, ["directions", "list", "--model", str(model)])
    assert r.exit_code == 0 and "sefa:0" in r.output


def test_edit_a_seed_with_a_sweep(model, tmp_path):
    out = tmp_path / "out"
    r = runner.invoke(app, ["edit", "seed:5", "--model", str(model), "--edit", "ganspace:0=+3", "--edit", "sefa:1=-2",
                            "--sweep", "ganspace:1=-2:2:5@coarse", "-o", str(out)])
    assert r.exit_code == 0, r.output
    for name in ("seed0005-edited.png", "seed0005-before-after.png", "seed0005-edited.npz", "seed0005-edit.json",
                 "seed0005-sweep-ganspace_1.png"):
        assert (out / name).is_file(), name
    strip = np.asarray(Image.open(out / "seed0005-before-after.png"))
    assert strip.shape[1] > 2 * 32
    before, after = strip[:, :32].astype(int), strip[:, 34:66].astype(int)
    assert np.abs(before - after).mean() > 1  # the edit changed the image
    sheet = Image.open(out / "seed0005-sweep-ganspace_1.png")
    assert sheet.width >= 5 * 32
    rec = json.loads((out / "seed0005-edit.json").read_text())
    assert {"input", "model", "edits", "applied", "keep", "sweeps"} <= set(rec)
    assert rec["input"] == "seed:5" and rec["model"] == str(model) and rec["keep"] == []
    assert [e["name"] for e in rec["edits"]] == ["ganspace:0", "sefa:1"]
    assert rec["edits"] == [{"name": "ganspace:0", "strength": 3.0, "layers": None},
                            {"name": "sefa:1", "strength": -2.0, "layers": None}]
    assert rec["applied"] == ["direction 'ganspace:0'", "direction 'sefa:1'"]
    assert rec["sweeps"] == [{"name": "ganspace:1", "strengths": [-2.0, -1.0, 0.0, 1.0, 2.0], "layers": "coarse"}]
    G = _G(0)
    lat = load_latent(out / "seed0005-edited.npz", G)
    assert lat.space == "w+"


def test_edit_a_latent_and_an_image(model, tmp_path):
    G = _G(0)
    save_latent(Latent.from_z(G, torch.randn(1, 16)), tmp_path / "a.npz")
    img = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "photo.png")
    r = runner.invoke(app, ["edit", str(tmp_path / "a.npz"), str(tmp_path / "photo.png"), "--model", str(model),
                            "--edit", "s:b8.conv0:2=+4", "--steps", "5", "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "a-edited.png").is_file() and (tmp_path / "out" / "photo-edited.png").is_file()
    strip = Image.open(tmp_path / "out" / "photo-before-after.png")
    assert strip.width > 3 * 32  # target | reconstruction | edited
    assert load_latent(tmp_path / "out" / "a-edited.npz", G).space == "s"


def test_bad_requests_fail_in_one_line(model, tmp_path):
    cases = [
        (["edit", "seed:1", "--model", str(model), "--edit", "smile=+2", "-o", str(tmp_path)], "unknown edit 'smile'"),
        (["edit", "seed:1", "--model", str(model), "--edit", "smile", "-o", str(tmp_path)], "cannot read the edit"),
        (["edit", "seed:1", "--model", str(model), "-o", str(tmp_path)], "nothing to do"),
        (["edit", "nope.png", "--model", str(model), "--edit", "ganspace:0=1", "-o", str(tmp_path)], "no such file"),
        (["edit", "seed:1", "--model", str(model), "--edit", "ganspace:0=1@99", "-o", str(tmp_path)], "out of range"),
        (["edit", "seed:1", "--model", str(model), "--edit", "ganspace:0=1", "--keep", "age", "-o", str(tmp_path)], "--keep 'age'"),
        (["directions", "compute", "--method", "interfacegan", "--model", str(model), "--out", str(tmp_path / "x.npz")], "evaluator"),
        (["directions", "compute", "--method", "pca", "--model", str(model), "--out", str(tmp_path / "x.npz")], "unknown method"),
    ]
    for args, message in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 1, (args, r.output)
        assert message in r.output, (message, r.output)
        assert "Traceback" not in r.output


def test_a_latent_of_another_model_is_refused(model, tmp_path):
    save_latent(Latent.from_z(_G(1), torch.randn(1, 16)), tmp_path / "other.npz")
    r = runner.invoke(app, ["edit", str(tmp_path / "other.npz"), "--model", str(model), "--edit", "ganspace:0=1", "-o", str(tmp_path)])
    assert r.exit_code == 1 and "found for generator" in r.output


def test_extreme_strength_warns(model, tmp_path):
    r = runner.invoke(app, ["edit", "seed:2", "--model", str(model), "--edit", "ganspace:0=8", "-o", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "beyond" in r.output


def test_existing_direction_file_is_kept(model):
    r = runner.invoke(app, ["directions", "compute", "--method", "sefa", "--model", str(model), "--out", str(model / "edits" / "sefa.npz")])
    assert r.exit_code == 1 and "--force" in r.output


@pytest.mark.parametrize("evaluator, expected", [("celeba", {"gender", "age"}), ("landmarks", {"yaw", "mouth_open"})])
def test_interfacegan_with_a_face_evaluator_works_for_any_model(model, tmp_path, evaluator, expected):
    """`--evaluator celeba|landmarks` on models that have no such evaluator of their own (like a user's checkpoint)."""
    from latentshop.checkpoints.edit_files import load_directions

    out = tmp_path / f"{evaluator}.npz"
    target = str(model) if evaluator == "celeba" else "lfw"  # landmarks need faces: the grey real-face model
    args = ["directions", "compute", "--method", "interfacegan", "--model", target, "--evaluator", evaluator,
            "--n", "120", "--ratio", "0.3", "--out", str(out)]
    if evaluator == "landmarks":
        args += ["--attributes", "yaw,mouth_open"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    names = set(load_directions(out).names)
    assert expected <= names
    if evaluator == "celeba":
        from latentshop.models.face_evaluators import EDIT_NAMES

        # the edit names of usable attributes by default (an attribute a random model never shows is skipped), not all 40
        assert names <= set(EDIT_NAMES) and len(names) >= 3


def test_real_face_models_take_stylespace_locality_from_landmark_regions():
    """Without a part segmenter of its own, a real-face model's part masks are the landmark regions
    (the synthetic part segmenter only serves models labelled by the synthetic factor regressor)."""
    import latentshop
    from latentshop.cli.edit import _part_masks_fn
    from latentshop.editing.stylespace import FACE_ATTRIBUTE_REGIONS

    bundle = latentshop.load_model("lfw", device="cpu")
    fn = _part_masks_fn(bundle)
    assert fn is not None and fn.kind == "landmarks"
    with torch.no_grad():
        img = bundle.G(torch.randn(2, bundle.G.z_dim, generator=torch.Generator().manual_seed(0)), noise_mode="const")
    masks = fn(img)
    assert set(masks) == {"face", "eyes", "brows", "nose", "mouth"}
    for m in masks.values():
        assert m.shape == (2, 1, 64, 64) and 0 <= float(m.min()) and float(m.max()) <= 1
    assert float(masks["mouth"].sum()) > 0 and float(masks["face"].sum()) > float(masks["mouth"].sum())
    assert FACE_ATTRIBUTE_REGIONS["smile"] == ("mouth",)
    assert _part_masks_fn(latentshop.load_model("synthetic", device="cpu")).kind == "parts"
