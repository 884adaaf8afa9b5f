"""Tests of ``latentshop.checkpoints.rosinality`` against the ``ros_*`` and ``nv_*`` fixtures.

Fixture facts used here are in ``../shared/fixtures/README.md`` §3 (ros_a_g64), §4 (ros_b_from_nv_b,
name mapping) and the discriminator section.
"""

from __future__ import annotations

import io
import os
import pickle
import shlex
import zipfile
from pathlib import Path

import pytest
import torch

from latentshop.checkpoints.rosinality import (
    RosinalityCheckpoint,
    discriminator_from_rosinality,
    discriminator_to_rosinality,
    generator_from_rosinality,
    generator_to_rosinality,
    read_rosinality,
    write_rosinality,
)
from latentshop.errors import CheckpointError, ConfigError
from latentshop.models.stylegan2 import Discriminator, Generator

from conftest import fixture_path, load_json, load_npz

# Outputs are compared with tolerances, never exactly: the references were computed on another CPU.
# Measured on the development machine (docs/architecture.md): images 6.4e-6, latents 2.4e-7, D 4.8e-7.
IMG_ATOL = 1e-4  # fixtures README §2.5/§3.2: images
LAT_ATOL = 1e-5  # latents
D_ATOL = 1e-4  # discriminator section §4.5


def _tensors(name: str) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in load_npz(name).items()}


def _assert_state_equal(got: dict, want: dict, *, same_order: bool = False) -> None:
    assert set(got) == set(want), (sorted(set(got) - set(want))[:5], sorted(set(want) - set(got))[:5])
    if same_order:
        assert list(got) == list(want)
    for k, v in want.items():
        v = torch.as_tensor(v)
        assert got[k].shape == v.shape, k
        assert got[k].dtype == v.dtype, k
        assert torch.equal(got[k], v), k


@pytest.fixture(scope="module")
def ros_a() -> RosinalityCheckpoint:
    return read_rosinality(fixture_path("ros_a_g64.pt"))


@pytest.fixture(scope="module")
def ros_b() -> RosinalityCheckpoint:
    return read_rosinality(fixture_path("ros_b_from_nv_b.pt"))


@pytest.fixture(scope="module")
def ros_a_ref() -> dict[str, torch.Tensor]:
    return _tensors("ros_a_g64.ref.npz")


def _build_g(sd: dict, latent_avg: torch.Tensor) -> Generator:
    init_kwargs, state = generator_from_rosinality(sd, latent_avg=latent_avg)
    G = Generator(**init_kwargs).eval()
    G.load_state_dict(state, strict=True)
    return G


@pytest.fixture(scope="module")
def ros_a_G(ros_a, ros_a_ref) -> Generator:
    return _build_g(ros_a.g_ema, ros_a_ref["mean_latent"][0])


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------


def test_read_train_checkpoint(ros_a):
    want = _tensors("ros_a_g64.g_ema_state.npz")
    assert len(want) == 91
    _assert_state_equal(ros_a.g_ema, want, same_order=True)
    _assert_state_equal(ros_a.d, _tensors("ros_a_g64.D_state.npz"), same_order=True)
    assert set(ros_a.g) == set(ros_a.g_ema)
    assert not torch.equal(ros_a.g["conv1.conv.weight"], ros_a.g_ema["conv1.conv.weight"])
    assert not torch.equal(ros_a.g["noises.noise_3"], ros_a.g_ema["noises.noise_3"])  # accumulate skips buffers
    assert ros_a.latent_avg is None  # train.py writes none
    assert isinstance(ros_a.args, dict) and ros_a.args["latent"] == 64 and ros_a.args["n_mlp"] == 4
    assert ros_a.other_keys == ("g_optim", "d_optim", "ada_aug_p")
    assert ros_a.path.endswith("ros_a_g64.pt")


def test_read_exported_checkpoint(ros_b):
    assert ros_b.g is None and ros_b.d is None and ros_b.args is None
    assert ros_b.other_keys == ()
    assert ros_b.latent_avg.shape == (64,)
    assert torch.equal(ros_b.latent_avg, _tensors("nv_b_uncond32_map2.G_ema_state.npz")["mapping.w_avg"])


# ------------------------------------------------------------------------------------------------
# Conversion, exact
# ------------------------------------------------------------------------------------------------


def test_exported_file_converts_back_to_nvidia_exactly(ros_b):
    init_kwargs, state = generator_from_rosinality(ros_b.g_ema, latent_avg=ros_b.latent_avg, path=ros_b.path)
    nv = load_json("nv_b_uncond32_map2.kwargs.json")
    _assert_state_equal(state, _tensors("nv_b_uncond32_map2.G_ema_state.npz"))
    assert list(state) == nv["state_dict_keys_in_order"]
    assert (init_kwargs["z_dim"], init_kwargs["w_dim"], init_kwargs["c_dim"]) == (64, 64, 0)
    assert (init_kwargs["img_resolution"], init_kwargs["img_channels"]) == (32, 3)
    assert init_kwargs["mapping_kwargs"] == {"num_layers": 2, "lr_multiplier": 0.01}
    sk = init_kwargs["synthesis_kwargs"]
    assert (sk["channel_base"], sk["channel_max"]) == (512, 32)
    assert (sk["num_fp16_res"], sk["conv_clamp"], sk["architecture"]) == (0, None, "skip")
    G = Generator(**init_kwargs)
    assert G.synthesis.channels_dict == {4: 32, 8: 32, 16: 32, 32: 16}
    assert list(G.state_dict()) == list(state)


def test_nvidia_export_matches_public_converter(ros_b):
    nv = load_json("nv_b_uncond32_map2.kwargs.json")
    g_ema, latent_avg = generator_to_rosinality(nv["init_kwargs"], _tensors("nv_b_uncond32_map2.G_ema_state.npz"))
    _assert_state_equal(g_ema, ros_b.g_ema)
    assert torch.equal(latent_avg, ros_b.latent_avg)


def test_ros_a_round_trip(ros_a, ros_a_ref):
    latent_avg = ros_a_ref["mean_latent"][0]
    init_kwargs, state = generator_from_rosinality(ros_a.g_ema, latent_avg=latent_avg)
    sk = init_kwargs["synthesis_kwargs"]
    assert Generator(**init_kwargs).synthesis.channels_dict == {4: 32, 8: 32, 16: 32, 32: 32, 64: 16}
    assert "channels" not in sk  # {..32: 32, 64: 16} is channel_base 1024, channel_max 32
    assert init_kwargs["mapping_kwargs"]["num_layers"] == 4
    g_ema, back_avg = generator_to_rosinality(init_kwargs, state)
    _assert_state_equal(g_ema, ros_a.g_ema, same_order=True)
    assert torch.equal(back_avg, latent_avg)

    init_kwargs, state = generator_from_rosinality(ros_a.g)
    assert "mapping.w_avg" not in state
    g, back_avg = generator_to_rosinality(init_kwargs, state)
    _assert_state_equal(g, ros_a.g, same_order=True)
    assert back_avg is None

    d_kwargs, d_state = discriminator_from_rosinality(ros_a.d)
    _assert_state_equal(discriminator_to_rosinality(d_kwargs, d_state), ros_a.d, same_order=True)


def test_nvidia_discriminator_round_trip():
    nv = load_json("nv_a_uncond64.kwargs.json")["D"]["init_kwargs"]
    state = _tensors("nv_a_uncond64.D_state.npz")
    with pytest.raises(ConfigError, match="conv_clamp"):
        discriminator_to_rosinality(nv, state)
    d = discriminator_to_rosinality({**nv, "conv_clamp": None}, state)
    assert d["convs.1.conv2.1.weight"].shape == (16, 8, 3, 3)
    d_kwargs, back = discriminator_from_rosinality(d)
    _assert_state_equal(back, state, same_order=True)
    assert (d_kwargs["channel_base"], d_kwargs["channel_max"]) == (512, 64)
    assert d_kwargs["epilogue_kwargs"] == {"mbstd_group_size": 4, "mbstd_num_channels": 1}
    D = Discriminator(**d_kwargs)
    D.load_state_dict(back, strict=True)
    assert list(D.state_dict()) == list(back)


def test_widths_without_a_formula_use_channels():
    widths = {4: 16, 8: 32, 16: 8}
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                  mapping_kwargs={"num_layers": 3}, synthesis_kwargs={"channels": widths})
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=3, channels=widths)
    g_ema, latent_avg = generator_to_rosinality(G.init_kwargs, G.state_dict())
    assert g_ema["convs.0.conv.weight"].shape == (1, 32, 16, 3, 3)
    init_kwargs, state = generator_from_rosinality(g_ema, latent_avg=latent_avg)
    assert init_kwargs["synthesis_kwargs"]["channels"] == widths
    _assert_state_equal(state, G.state_dict(), same_order=True)
    d_kwargs, d_state = discriminator_from_rosinality(discriminator_to_rosinality(D.init_kwargs, D.state_dict()))
    assert d_kwargs["channels"] == widths
    _assert_state_equal(d_state, D.state_dict(), same_order=True)


@pytest.mark.parametrize(
    ("fixture", "change", "match"),
    [
        ("nv_c_cond32_c5", {}, "c_dim"),
        ("nv_d_uncond16_clamp", {}, "conv_clamp"),
        ("nv_b_uncond32_map2", {"img_channels": 1}, "img_channels"),
        ("nv_b_uncond32_map2", {"w_dim": 32}, "z_dim"),
        ("nv_b_uncond32_map2", {"synthesis_kwargs": {"architecture": "resnet"}}, "architecture"),
        ("nv_b_uncond32_map2", {"mapping_kwargs": {"num_layers": 2, "lr_multiplier": 1.0}}, "lr_multiplier"),
    ],
)
def test_export_refuses_what_rosinality_cannot_express(fixture, change, match):
    init_kwargs = {**load_json(f"{fixture}.kwargs.json")["init_kwargs"], **change}
    with pytest.raises(ConfigError, match=match):
        generator_to_rosinality(init_kwargs, _tensors(f"{fixture}.G_ema_state.npz"))


def test_export_checks_state_against_kwargs():
    nv = load_json("nv_b_uncond32_map2.kwargs.json")["init_kwargs"]
    state = _tensors("nv_b_uncond32_map2.G_ema_state.npz")
    wrong = {**nv, "synthesis_kwargs": {**nv["synthesis_kwargs"], "channel_max": 64}}
    with pytest.raises(CheckpointError, match="widths"):
        generator_to_rosinality(wrong, state)
    del state["synthesis.b8.conv1.noise_const"]
    with pytest.raises(CheckpointError, match="noise_const"):
        generator_to_rosinality(nv, state)


def test_rejects_other_blur_kernels(ros_a):
    k = torch.tensor([1.0, 2.0, 2.0, 1.0])
    k = torch.outer(k, k) / 36
    g = dict(ros_a.g_ema)
    g["to_rgbs.1.upsample.kernel"] = k * 4
    with pytest.raises(CheckpointError, match=r"to_rgbs\.1\.upsample\.kernel.*\[1, 3, 3, 1\]"):
        generator_from_rosinality(g, path="x.pt")
    g = dict(ros_a.g_ema)
    g["convs.2.conv.blur.kernel"] = ros_a.g_ema["convs.2.conv.blur.kernel"] / 4  # Blur without the gain
    with pytest.raises(CheckpointError, match="blur"):
        generator_from_rosinality(g)
    d = dict(ros_a.d)
    d["convs.2.skip.0.kernel"] = k
    with pytest.raises(CheckpointError, match=r"convs\.2\.skip\.0\.kernel"):
        discriminator_from_rosinality(d)


def test_rejects_wrong_layouts(ros_a):
    g = dict(ros_a.g_ema)
    del g["noises.noise_4"]
    with pytest.raises(CheckpointError, match="noises.noise_4"):
        generator_from_rosinality(g, path="x.pt")
    g = dict(ros_a.g_ema, **{"convs.1.conv.weight": torch.zeros(1, 32, 16, 3, 3)})
    with pytest.raises(CheckpointError, match=r"convs\.1\.conv\.weight"):
        generator_from_rosinality(g)
    with pytest.raises(CheckpointError, match="not a rosinality Generator"):
        generator_from_rosinality(_tensors("nv_b_uncond32_map2.G_ema_state.npz"))
    with pytest.raises(CheckpointError, match="latent_avg"):
        generator_from_rosinality(ros_a.g_ema, latent_avg=torch.zeros(32))
    with pytest.raises(CheckpointError, match="not a rosinality Discriminator"):
        discriminator_from_rosinality(ros_a.g_ema)


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------


def test_write_then_read(tmp_path, ros_a, ros_b):
    path = tmp_path / "out.pt"
    write_rosinality(path, g_ema=ros_b.g_ema, latent_avg=ros_b.latent_avg)
    raw = torch.load(path, map_location="cpu", weights_only=True)  # no allow-list needed
    assert list(raw) == ["g_ema", "latent_avg"]
    back = read_rosinality(path)
    _assert_state_equal(back.g_ema, ros_b.g_ema, same_order=True)
    assert torch.equal(back.latent_avg, ros_b.latent_avg)
    assert back.other_keys == ()

    write_rosinality(path, g_ema=ros_a.g_ema, g=ros_a.g, d=ros_a.d)  # replaces the file
    back = read_rosinality(path)
    assert back.latent_avg is None
    _assert_state_equal(back.g, ros_a.g, same_order=True)
    _assert_state_equal(back.d, ros_a.d, same_order=True)
    assert sorted(os.listdir(tmp_path)) == ["out.pt"]  # no temporary left behind


def test_write_refuses_bad_state(tmp_path, ros_a, ros_b):
    path = tmp_path / "out.pt"
    with pytest.raises(CheckpointError, match="out.pt"):
        write_rosinality(path, g_ema=ros_a.d)
    with pytest.raises(CheckpointError, match="latent_avg"):
        write_rosinality(path, g_ema=ros_b.g_ema, latent_avg=torch.zeros(3))
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------------
# Bad and hostile files
# ------------------------------------------------------------------------------------------------


class _Reduce:
    """Pickles as ``func(*args)``: what a hostile checkpoint's data.pkl does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _torch_zip_with(data_pkl: bytes) -> bytes:
    """A ``torch.save`` zip whose ``data.pkl`` record is replaced by ``data_pkl``."""
    buf = io.BytesIO()
    torch.save({"g_ema": {"x": torch.zeros(2)}}, buf)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, data_pkl if info.filename.endswith("/data.pkl") else src.read(info))
    return out.getvalue()


def _payloads(canary: Path) -> dict[str, bytes]:
    code = f"open({str(canary)!r}, 'w').write('pwned')"
    return {
        "system": pickle.dumps({"g_ema": _Reduce(os.system, f"touch {shlex.quote(str(canary))}")}, protocol=2),
        "eval": pickle.dumps({"g_ema": _Reduce(eval, code)}, protocol=2),
    }


@pytest.mark.parametrize("kind", ["system", "eval"])
@pytest.mark.parametrize("container", ["zip", "raw"])
def test_hostile_pickle_is_refused_and_never_runs(tmp_path, kind, container):
    control = tmp_path / "control"
    pickle.loads(_payloads(control)[kind])  # the payload is live: unrestricted unpickling runs it
    assert control.exists()

    canary = tmp_path / "canary"
    payload = _payloads(canary)[kind]
    path = tmp_path / "evil.pt"
    path.write_bytes(_torch_zip_with(payload) if container == "zip" else payload)
    with pytest.raises(CheckpointError, match=kind) as err:  # refused at the GLOBAL, by name
        read_rosinality(path)
    assert err.value.path == str(path)
    assert not canary.exists()


def test_bad_files(tmp_path):
    good = fixture_path("ros_b_from_nv_b.pt").read_bytes()
    cases = {
        "missing.pt": None,
        "text.pt": b"this is not a checkpoint\n" * 10,
        "empty.pt": b"",
        "truncated.pt": good[: len(good) // 2],
        "folder.pt": "dir",
    }
    for name, data in cases.items():
        path = tmp_path / name
        if data == "dir":
            path.mkdir()
        elif data is not None:
            path.write_bytes(data)
        with pytest.raises(CheckpointError) as err:
            read_rosinality(path)
        assert err.value.path == str(path), name

    def saved(obj) -> Path:
        path = tmp_path / "saved.pt"
        torch.save(obj, path)
        return path

    with pytest.raises(CheckpointError, match="no 'g_ema' or 'g'"):
        read_rosinality(saved({"state_dict": {"w": torch.zeros(1)}}))
    with pytest.raises(CheckpointError, match="top level is a list"):
        read_rosinality(saved([torch.zeros(1)]))
    with pytest.raises(CheckpointError, match="'g_ema'.*not a rosinality Generator"):
        read_rosinality(saved({"g_ema": {"weight": torch.zeros(1)}}))
    with pytest.raises(CheckpointError, match="'g_ema' is a Tensor"):
        read_rosinality(saved({"g_ema": torch.zeros(1)}))
    nv = {k: torch.from_numpy(v) for k, v in load_npz("nv_b_uncond32_map2.G_ema_state.npz").items()}
    with pytest.raises(CheckpointError, match="'g'.*not a rosinality Generator"):
        read_rosinality(saved({"g": nv}))


# ------------------------------------------------------------------------------------------------
# Numerics: our Generator/Discriminator on converted rosinality weights vs rosinality's outputs
# ------------------------------------------------------------------------------------------------


@torch.no_grad()
def test_mapping_matches(ros_a_G, ros_a_ref):
    ws = ros_a_G.mapping(ros_a_ref["z"], None)
    torch.testing.assert_close(ws[:, 0], ros_a_ref["w"], rtol=0, atol=LAT_ATOL)
    torch.testing.assert_close(ws, ros_a_ref["latent_t1"], rtol=0, atol=LAT_ATOL)
    ws = ros_a_G.mapping(ros_a_ref["z"], None, truncation_psi=0.7)
    torch.testing.assert_close(ws, ros_a_ref["latent_t07"], rtol=0, atol=LAT_ATOL)


@torch.no_grad()
@pytest.mark.parametrize(
    ("ref", "psi", "noise_mode"),
    [("img_t1", 1.0, "const"), ("img_t07", 0.7, "const"), ("img_t1_zero_noise", 1.0, "none")],
)
def test_images_match(ros_a_G, ros_a_ref, ref, psi, noise_mode):
    ws = ros_a_G.mapping(ros_a_ref["z"], None, truncation_psi=psi)
    img = ros_a_G.synthesis(ws, noise_mode=noise_mode)
    torch.testing.assert_close(img, ros_a_ref[ref], rtol=0, atol=IMG_ATOL)


@torch.no_grad()
def test_style_mixing_matches(ros_a_G, ros_a_ref):
    img = ros_a_G.synthesis(ros_a_ref["wplus_mix_k2"], noise_mode="const")
    torch.testing.assert_close(img, ros_a_ref["img_wplus_mix_k2"], rtol=0, atol=IMG_ATOL)
    z = ros_a_ref["z"]
    ws = torch.cat([ros_a_G.mapping(z, None)[:, :5], ros_a_G.mapping(z[[1, 2, 3, 0]], None)[:, 5:]], dim=1)
    torch.testing.assert_close(ws, ros_a_ref["latent_mix_inject5"], rtol=0, atol=LAT_ATOL)
    img = ros_a_G.synthesis(ws, noise_mode="const")
    torch.testing.assert_close(img, ros_a_ref["img_mix_inject5"], rtol=0, atol=IMG_ATOL)


@torch.no_grad()
def test_non_ema_generator_matches(ros_a, ros_a_ref):
    G = _build_g(ros_a.g, ros_a_ref["mean_latent"][0])
    img = G.synthesis(G.mapping(ros_a_ref["z"], None), noise_mode="const")
    torch.testing.assert_close(img, ros_a_ref["img_g_nonema_t1"], rtol=0, atol=IMG_ATOL)


@torch.no_grad()
def test_discriminator_matches(ros_a):
    ref = _tensors("ros_a_g64.D_ref.npz")
    meta = load_json("ros_a_g64.D_ref.json")
    assert meta["inputs"]["uniform_seed"] == 505020
    uniform = torch.rand([2, 3, 64, 64], generator=torch.Generator().manual_seed(505020)) * 2 - 1
    # exact: stored inputs against torch's serial CPU generator and another stored array (no kernels)
    torch.testing.assert_close(ref["img"][2:], uniform, rtol=0, atol=0)
    torch.testing.assert_close(ref["img"][:2], _tensors("ros_a_g64.ref.npz")["img_t1"][:2], rtol=0, atol=0)

    init_kwargs, state = discriminator_from_rosinality(ros_a.d, path=ros_a.path)
    D = Discriminator(**init_kwargs).eval()
    D.load_state_dict(state, strict=True)
    seen = {}
    D.b4.register_forward_pre_hook(lambda module, args: seen.__setitem__("x", args[0]))
    logits = D(ref["img"], ref["c"])
    torch.testing.assert_close(seen["x"], ref["x_b4_in"], rtol=0, atol=D_ATOL)
    torch.testing.assert_close(logits, ref["logits"], rtol=0, atol=D_ATOL)
    single = torch.cat([D(ref["img"][i : i + 1], ref["c"][i : i + 1]) for i in range(4)])
    torch.testing.assert_close(single, ref["logits_single"], rtol=0, atol=D_ATOL)
