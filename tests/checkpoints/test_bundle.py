"""load_model: a model with its parts, each file read once; missing parts say how to get them."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import fixture_path
from latentshop import load_model
from latentshop.checkpoints import bundle as bundle_module
from latentshop.checkpoints import loader, save_directions
from latentshop.editing import ganspace
from latentshop.errors import CheckpointError, ConfigError, EditError


def test_bundled_model_has_every_part():
    b = load_model("synthetic", device="cpu")
    assert b.G.img_resolution == 64 and b.device == torch.device("cpu")
    assert b.encoder_kinds == ["e4e", "psp"]
    E = b.encoder("e4e")
    assert E.kind == "e4e" and b.encoder("e4e") is E  # loaded once
    assert set(b.evaluator_names) == {"labels", "parts"}
    assert b.evaluator("labels") is b.evaluator("labels")
    assert {"smile", "ganspace:0", "sefa:0", "stylespace:smile"} <= set(b.edits.names())
    assert b.D is not None and b.D is b.D  # the discriminator from the same read of the file


def test_each_file_is_read_once(monkeypatch):
    calls = []
    real = loader.read_checkpoint
    monkeypatch.setattr(bundle_module, "read_checkpoint", lambda p: calls.append(p) or real(p))
    b = load_model("lfw")
    _ = b.D, b.G, b.edits, b.edits, b.encoders, b.encoders
    assert len(calls) == 1


def test_a_users_pickle_has_no_extras_and_says_how_to_get_them():
    b = load_model(fixture_path("nv_a_uncond64.pkl"))
    assert b.encoder_kinds == [] and b.encoders == {} and b.evaluator_names == {}
    assert b.edits.names() == []
    with pytest.raises(ConfigError, match="train-encoder"):
        b.encoder("e4e")
    with pytest.raises(ConfigError, match="--evaluator"):
        b.evaluator("labels")
    # the built-in scheme works on any model
    assert b.edits.make(b.G, "s:b16.conv1:3", 1.0).channel == 3
    assert b.D is not None


def test_a_generator_only_file_has_no_discriminator(tmp_path):
    from latentshop.checkpoints import read_checkpoint, write_native

    ck = read_checkpoint(fixture_path("nv_b_uncond32_map2.pkl"))
    write_native(tmp_path / "g-only", {"G_ema": ck.networks["G_ema"]})
    b = load_model(tmp_path / "g-only")
    assert b.D is None
    with pytest.raises(CheckpointError, match="no discriminator"):
        b.discriminator()


def test_edit_files_beside_a_model_and_given(tmp_path):
    pkl = tmp_path / "mine.pkl"
    shutil.copyfile(fixture_path("nv_a_uncond64.pkl"), pkl)
    mine = load_model(pkl)
    other = load_model(fixture_path("nv_c_cond32_c5.pkl"))
    (tmp_path / "mine.pkl.edits").mkdir()
    save_directions(ganspace(mine.G, n=300, components=2), tmp_path / "mine.pkl.edits" / "pcs.npz")
    save_directions(ganspace(other.G, n=300, components=3), tmp_path / "stale.npz")
    shutil.copyfile(tmp_path / "stale.npz", tmp_path / "mine.pkl.edits" / "stale.npz")
    b = load_model(pkl)
    assert b.edits.names() == ["ganspace:0", "ganspace:1"]  # the stale file beside it is skipped
    with pytest.raises(EditError, match="made for generator"):
        load_model(pkl, edit_files=[tmp_path / "stale.npz"]).edits  # given explicitly: refused
    with pytest.raises(EditError, match="made for generator"):
        b.add_edit_files([tmp_path / "stale.npz"])


def test_evaluator_roles_come_from_the_model_folder(tmp_path):
    from latentshop import convert_checkpoint

    out = tmp_path / "m"
    convert_checkpoint(fixture_path("nv_a_uncond64.pkl"), out)
    (out / "evaluators.json").write_text(json.dumps({"labels": "synthetic"}))
    b = load_model(out)
    assert b.evaluator("labels").kind == "factor-regressor"
    assert load_model(out, evaluators={"labels": "expression"}).evaluator("labels").kind != "factor-regressor"
    (out / "evaluators.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="role"):
        load_model(out)


def test_unknown_model_names_what_exists():
    with pytest.raises(CheckpointError, match="known models"):
        load_model("no-such-model")
