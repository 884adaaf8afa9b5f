"""Encoder architectures: pSp, e4e, ReStyle input; shapes, structure, batch independence, files."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from encoder_helpers import ARCH, tiny_generator
from latentshop import load_model
from latentshop.checkpoints.encoders import find_encoder, list_encoder_files, load_encoder, save_encoder
from latentshop.checkpoints.native import NetworkSpec, write_native
from latentshop.errors import CheckpointError, ConfigError, ShapeError
from latentshop.models.encoders import Encoder, LatentDiscriminator, list_encoders, style_group


def make(kind: str, restyle: bool = True, seed: int = 0) -> Encoder:
    torch.manual_seed(seed)
    E = Encoder(kind=kind, img_resolution=16, img_channels=3, num_ws=6, w_dim=8, restyle=restyle, **ARCH)
    with torch.no_grad():  # non-zero heads, so outputs depend on the input
        for head in E.heads:
            head.linear.weight.normal_(0, 0.5)
        E.w_avg.normal_()
    return E.eval()


@pytest.mark.parametrize("kind", list_encoders())
@pytest.mark.parametrize("restyle", [True, False])
def test_shapes_and_batch_independence(kind, restyle):
    E = make(kind, restyle)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        ws = E(x)
        single = torch.cat([E(x[i:i + 1]) for i in range(3)])
    assert ws.shape == (3, 6, 8)
    assert torch.allclose(ws, single, atol=1e-5)
    assert not torch.allclose(ws[0], ws[1])  # the code depends on the image


def test_untrained_heads_return_the_start():
    E = Encoder(kind="psp", img_resolution=16, img_channels=3, num_ws=6, w_dim=8, **ARCH)
    E.w_avg.normal_()
    ws = E.start_ws(2) + 0.5
    with torch.no_grad():
        assert torch.equal(E(torch.randn(2, 3, 16, 16), ws, torch.zeros(2, 3, 16, 16)), ws)


def test_e4e_offsets_and_progressive_stages():
    E = make("e4e")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        none = E(x, num_deltas=0)
        two = E(x, num_deltas=2)
        full = E(x)
    assert torch.allclose(none, none[:, :1].expand_as(none))  # one w for every layer
    d = E.deltas(two)
    assert d[:, :2].abs().sum() > 0 and torch.equal(d[:, 2:], torch.zeros_like(d[:, 2:]))
    assert not torch.allclose(full[:, 5], full[:, 0])
    assert torch.allclose(full[:, 0], two[:, 0])  # the base w does not depend on the stage


def test_restyle_input_uses_the_reconstruction():
    E = make("psp", restyle=True)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        a = E(x, E.start_ws(1), torch.zeros(1, 3, 16, 16))
        b = E(x, E.start_ws(1), torch.ones(1, 3, 16, 16))
        c = E(x, E.start_ws(1) + 1, torch.zeros(1, 3, 16, 16))
    assert not torch.allclose(a, b)
    assert torch.allclose(c - a, torch.ones_like(a), atol=1e-5)  # a residual on the given latent


def test_pyramid_levels():
    assert [style_group(i) for i in (0, 3, 4, 7, 8, 17)] == ["coarse", "coarse", "middle", "middle", "fine", "fine"]
    E = Encoder(kind="psp", img_resolution=64, img_channels=1, num_ws=10, w_dim=16)
    assert E.head_level == [2, 2, 2, 2, 1, 1, 1, 1, 0, 0]
    # the bundled size: under the 20 MB a shipped encoder may take, in float32
    assert Encoder(kind="e4e", img_resolution=64, img_channels=3, num_ws=10, w_dim=256).num_params() * 4 < 20e6


def test_bad_arguments_and_inputs():
    with pytest.raises(ConfigError, match="kind"):
        Encoder(kind="vae")
    with pytest.raises(ConfigError, match="power of two"):
        Encoder(img_resolution=48)
    with pytest.raises(ShapeError, match=r"\[N, 3, 16, 16\]"):
        make("psp")(torch.zeros(1, 3, 32, 32))
    assert LatentDiscriminator(8, hidden=16)(torch.zeros(5, 8)).shape == (5,)


# ---- files ---------------------------------------------------------------------------------------
@pytest.fixture()
def saved(tmp_path):
    G = tiny_generator(0)
    E = make("e4e")
    path = save_encoder(E, tmp_path / "enc", G=G, iterations=4, metrics={"psnr": 20.0})
    return G, E, path


def test_round_trip(saved):
    G, E, path = saved
    loaded = load_encoder(path, G=G)
    assert loaded.iterations == 4 and loaded.metrics == {"psnr": 20.0} and loaded.kind == "e4e"
    want, got = E.state_dict(), loaded.state_dict()
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)  # nothing lost: exact
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():  # same weights; outputs to rounding (kernels may round other storage differently)
        torch.testing.assert_close(loaded(x), E(x), rtol=0, atol=1e-5)
    assert find_encoder(G, "e4e", encoder=path).kind == "e4e"
    with pytest.raises(ConfigError, match="needs psp"):
        find_encoder(G, "psp", encoder=path)


def test_refuses_another_generator(saved):
    _, _, path = saved
    with pytest.raises(CheckpointError, match="another generator"):
        load_encoder(path, G=tiny_generator(1))


def test_refuses_corrupt_and_hostile_files(saved):
    G, _, path = saved
    state = load_file(str(path / "model.safetensors"))
    key = next(iter(state))
    state[key] = torch.full_like(state[key], float("nan"))
    save_file(state, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="NaN"):
        load_encoder(path, G=G)
    (path / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_encoder(path, G=G)
    config = json.loads((path / "config.json").read_text())
    config["encoder"]["init_kwargs"]["widths"] = [10**7] * 4
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="out of range"):
        load_encoder(path)
    (path / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match="config"):
        load_encoder(path)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not an encoder folder"):
        find_encoder(tiny_generator(0), "e4e", encoder=tmp_path / "nowhere")


def test_missing_encoder_says_how_to_get_one(tmp_path):
    G = tiny_generator(3)
    assert list_encoder_files(G) == {}
    with pytest.raises(ConfigError, match="latentshop train-encoder --kind e4e"):
        find_encoder(G, "e4e")
    # the model bundle (what inversion takes its encoders from) says the same
    write_native(tmp_path / "tiny", {"G_ema": NetworkSpec("generator", G.init_kwargs, G.state_dict())})
    bundle = load_model(tmp_path / "tiny")
    assert bundle.encoder_kinds == [] and bundle.encoders == {}
    with pytest.raises(ConfigError, match="latentshop train-encoder --kind e4e"):
        bundle.encoder("e4e")


def test_a_models_own_encoder_folder_is_found(saved, tmp_path):
    G, _, path = saved
    model = tmp_path / "tiny"
    write_native(model, {"G_ema": NetworkSpec("generator", G.init_kwargs, G.state_dict())})
    shutil.copytree(path, model / "encoders" / "e4e")
    bundle = load_model(model)
    assert bundle.encoder_kinds == ["e4e"]
    loaded = bundle.encoder("e4e")
    assert loaded.kind == "e4e" and loaded.iterations == 4 and bundle.encoder("e4e") is loaded  # loaded once
    with pytest.raises(ConfigError, match="no psp encoder"):
        bundle.encoder("psp")
