"""Edit names for a model: parsing, edit folders beside models, unknown names."""

from __future__ import annotations

import pytest
from editing_helpers import tiny_generator

from latentshop import load_model
from latentshop.checkpoints import save_directions
from latentshop.checkpoints.edit_files import edit_files_beside
from latentshop.checkpoints.native import NetworkSpec, write_native
from latentshop.editing import ChannelEdit, Direction, EditError, ganspace, sefa
from latentshop.editing.catalog import parse_edit_spec, parse_sweep
from latentshop.errors import CheckpointError
from latentshop.registry import EditCatalog


@pytest.fixture(scope="module")
def G():
    return tiny_generator(0)


@pytest.fixture(scope="module")
def model_dir(G, tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "tiny"
    write_native(path, {"G_ema": NetworkSpec("generator", G.init_kwargs, G.state_dict())})
    save_directions(ganspace(G, n=2000, components=3), path / "edits" / "ganspace.npz")
    save_directions(sefa(tiny_generator(1), components=2, cov_samples=200), path / "edits" / "stale.npz")  # another generator's
    return path


def test_parse_specs():
    assert parse_edit_spec(" age = -1.5 ") == ("age", -1.5, None)
    assert parse_edit_spec("ganspace:2=+3@0-3") == ("ganspace:2", 3.0, "0-3")
    assert parse_edit_spec("s:b16.conv1:4=1e1") == ("s:b16.conv1:4", 10.0, None)
    for bad in ("smile", "smile=", "smile=big", "=2", "a=1@"):
        with pytest.raises(EditError, match="cannot read"):
            parse_edit_spec(bad)
    assert parse_sweep("yaw=-1:1:3@fine") == ("yaw", [-1.0, 0.0, 1.0], "fine")
    for bad in ("yaw=-1:1:1", "yaw=1:2", "yaw"):
        with pytest.raises(EditError):
            parse_sweep(bad)


def test_catalog_reads_the_models_edit_folder_and_skips_stale_files(G, model_dir):
    assert len(edit_files_beside(model_dir)) == 2
    bundle = load_model(str(model_dir))
    cat = bundle.edits
    assert isinstance(cat, EditCatalog)
    assert cat.names() == ["ganspace:0", "ganspace:1", "ganspace:2"]
    assert len(cat.family_sets("directions")) == 1 and cat.family_sets("stylespace") == []
    d = cat.make(G, "ganspace:1", -2.0, layers="middle")
    assert isinstance(d, Direction) and d.strength == -2.0 and d.layers == (4, 5)
    ch = cat.make(G, "s:b8.conv0:3", 2.0)
    assert isinstance(ch, ChannelEdit) and ch.scale > 0


def test_unknown_names_list_what_exists(G, model_dir):
    cat = load_model(str(model_dir)).edits
    with pytest.raises(EditError) as e:
        cat.make(G, "ganspace:9", 1.0)
    msg = str(e.value)
    assert "ganspace:0" in msg and "Did you mean" in msg
    assert msg.endswith("; and s:LAYER:CHANNEL for any single style channel (e.g. s:b16.conv1:3)")
    with pytest.raises(EditError, match="s:LAYER:CHANNEL"):
        cat.make(G, "s:b8", 1.0)
    with pytest.raises(EditError, match="own layer"):
        cat.make(G, "s:b8.conv0:3", 1.0, layers="coarse")


def test_explicit_files_of_another_generator_are_refused(G, model_dir, tmp_path):
    path = save_directions(sefa(tiny_generator(2), components=2, cov_samples=200), tmp_path / "x.npz")
    with pytest.raises(EditError, match="made for generator"):
        _ = load_model(str(model_dir), edit_files=[path]).edits  # read on first use
    bundle = load_model(str(model_dir))
    with pytest.raises(EditError, match="made for generator"):
        bundle.add_edit_files([path])
    # a model that cannot be found has no edit files (loading it says why)
    assert edit_files_beside(tmp_path / "no-such-model") == []
    with pytest.raises(CheckpointError):
        load_model(str(tmp_path / "no-such-model"))
    # a model without an edit folder has only the built-in schemes
    bare = tmp_path / "bare"
    write_native(bare, {"G_ema": NetworkSpec("generator", G.init_kwargs, G.state_dict())})
    assert load_model(str(bare)).edits.names() == []
