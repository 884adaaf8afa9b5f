"""load_generator / load_discriminator / convert across formats, against the reference outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import NV_FIXTURES, fixture_path, load_npz
from latentshop import CheckpointError, ConfigError, convert_checkpoint, load_discriminator, load_generator, read_checkpoint
from latentshop.checkpoints import NetworkSpec, write_native

ATOL = 1e-4


def max_diff(a: torch.Tensor, b: np.ndarray) -> float:
    return (a.detach().float() - torch.from_numpy(b)).abs().max().item()


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    """The reloaded network holds exactly the same parameters and buffers (storage, not kernels)."""
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


def render(G, z, c=None, psi=1.0):
    with torch.no_grad():
        return G(torch.as_tensor(z), None if c is None else torch.as_tensor(c), truncation_psi=psi, noise_mode="const")


@pytest.mark.parametrize("name", NV_FIXTURES)
def test_nvidia_pickle_end_to_end(name):
    ref = load_npz(f"{name}.ref.npz")
    G = load_generator(fixture_path(f"{name}.pkl"))
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    assert G.checkpoint_info["format"] == "nvidia-pickle" and G.checkpoint_info["network"] == "G_ema"
    assert max_diff(render(G, ref["z"], ref["c"], 0.7), ref["img_psi07_const"]) <= ATOL
    G_raw = load_generator(fixture_path(f"{name}.pkl"), which="G")
    assert max_diff(render(G_raw, ref["z"], ref["c"]), ref["img_G_nonema_psi1_const"]) <= ATOL


def test_discriminator_from_pickle():
    ref = load_npz("nv_c_cond32_c5.D_ref.npz")
    D = load_discriminator(fixture_path("nv_c_cond32_c5.pkl"))
    with torch.no_grad():
        assert max_diff(D(torch.from_numpy(ref["img"]), torch.from_numpy(ref["c"])), ref["logits"]) <= ATOL


def test_rosinality_with_latent_avg_matches_nvidia_references():
    ref = load_npz("nv_b_uncond32_map2.ref.npz")
    G = load_generator(fixture_path("ros_b_from_nv_b.pt"))
    assert G.checkpoint_info["format"] == "rosinality" and not G.checkpoint_info["notes"]
    assert max_diff(render(G, ref["z"], None, 0.7), ref["img_psi07_const"]) <= ATOL


def test_rosinality_without_latent_avg_computes_w_avg():
    ref = load_npz("ros_a_g64.ref.npz")
    G = load_generator(fixture_path("ros_a_g64.pt"))
    assert any("w_avg computed" in n for n in G.checkpoint_info["notes"])
    # Deterministic, and close to the reference's own 2048-sample mean.
    G2 = load_generator(fixture_path("ros_a_g64.pt"))
    assert torch.equal(G.mapping.w_avg, G2.mapping.w_avg)
    assert (G.mapping.w_avg - torch.from_numpy(ref["mean_latent"][0])).abs().max() < 0.1 * ref["mean_latent"].std() + 0.05
    assert max_diff(render(G, ref["z"]), ref["img_t1"]) <= ATOL
    D = load_discriminator(fixture_path("ros_a_g64.pt"))
    assert D.img_resolution == 64


@pytest.mark.parametrize("name", ["nv_a_uncond64.pkl", "nv_c_cond32_c5.pkl", "ros_a_g64.pt"])
def test_convert_to_latentshop_renders_the_same(name, tmp_path):
    src = fixture_path(name)
    out = tmp_path / "model"
    convert_checkpoint(src, out)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["format_version"] == 1 and "G_ema" in cfg["networks"] and "D" in cfg["networks"]
    assert not list(tmp_path.glob(".model*")), "temporary folder left behind"
    for which in ("G_ema", "G"):
        a, b = load_generator(src, which=which), load_generator(out, which=which)
        z = torch.randn(3, a.z_dim, generator=torch.Generator().manual_seed(1))
        c = torch.eye(a.c_dim)[[0, 1, 2]] if a.c_dim else None
        assert_same_state(a, b)
        # Outputs through conv/matmul kernels: equal up to the kernels' rounding (images 1e-4).
        torch.testing.assert_close(render(b, z, c, 0.7), render(a, z, c, 0.7), atol=ATOL, rtol=1e-5)
        assert b.checkpoint_info["format"] == "latentshop"
    img = torch.rand(4, 3, a.img_resolution, a.img_resolution) * 2 - 1
    c = torch.eye(a.c_dim)[[0, 1, 2, 3]] if a.c_dim else None
    D_src, D_out = load_discriminator(src), load_discriminator(out)
    assert_same_state(D_src, D_out)
    with torch.no_grad():
        torch.testing.assert_close(D_out(img, c), D_src(img, c), atol=1e-5, rtol=1e-5)
    with pytest.raises(CheckpointError, match="already exists"):
        convert_checkpoint(src, out)
    convert_checkpoint(src, out, force=True)


def test_convert_to_rosinality_round_trip(tmp_path):
    ref = load_npz("nv_b_uncond32_map2.ref.npz")
    out = tmp_path / "b.pt"
    convert_checkpoint(fixture_path("nv_b_uncond32_map2.pkl"), out, to="rosinality")
    G = load_generator(out)
    assert max_diff(render(G, ref["z"], None, 0.7), ref["img_psi07_const"]) <= ATOL


def test_convert_refuses_what_rosinality_cannot_hold(tmp_path):
    out = tmp_path / "c.pt"
    with pytest.raises((ConfigError, CheckpointError), match="c_dim"):
        convert_checkpoint(fixture_path("nv_c_cond32_c5.pkl"), out, to="rosinality")
    assert not out.exists()


def test_legacy_torch_save_rosinality_file(tmp_path):
    ck = torch.load(fixture_path("ros_b_from_nv_b.pt"), weights_only=True)
    legacy = tmp_path / "legacy.pt"
    torch.save(ck, legacy, _use_new_zipfile_serialization=False)
    assert read_checkpoint(legacy).format == "rosinality"
    ref = load_npz("nv_b_uncond32_map2.ref.npz")
    assert max_diff(render(load_generator(legacy), ref["z"]), ref["img_psi1_const"]) <= ATOL


def test_bad_paths_and_files(tmp_path):
    with pytest.raises(CheckpointError, match="no bundled model"):
        load_generator(tmp_path / "missing.pkl")
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_generator(empty)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.txt"):
        load_generator(text)
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        load_generator(folder)
    with pytest.raises(CheckpointError, match="no discriminator"):
        load_discriminator(fixture_path("ros_b_from_nv_b.pt"))
    with pytest.raises(ConfigError, match="which"):
        load_generator(fixture_path("ros_b_from_nv_b.pt"), which="generator")


def _native_copy(tmp_path):
    out = tmp_path / "m"
    convert_checkpoint(fixture_path("nv_b_uncond32_map2.pkl"), out)
    return out


def test_native_corruption_is_reported(tmp_path):
    out = _native_copy(tmp_path)
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_generator(out)

    out = _native_copy(tmp_path / "v")
    cfg = json.loads((out / "config.json").read_text())
    cfg["format_version"] = 99
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="format_version 99"):
        load_generator(out)


def test_nan_weights_and_wrong_shapes_are_refused(tmp_path):
    ck = read_checkpoint(fixture_path("nv_b_uncond32_map2.pkl"))
    spec = ck.networks["G_ema"]
    bad = dict(spec.state_dict)
    bad["synthesis.b8.conv0.weight"] = bad["synthesis.b8.conv0.weight"].clone()
    bad["synthesis.b8.conv0.weight"][0, 0, 0, 0] = float("nan")
    write_native(tmp_path / "nan", {"G_ema": NetworkSpec("generator", spec.init_kwargs, bad)})
    with pytest.raises(CheckpointError, match="NaN"):
        load_generator(tmp_path / "nan")
    kwargs = json.loads(json.dumps(spec.init_kwargs))
    kwargs["w_dim"] = 32
    write_native(tmp_path / "shape", {"G_ema": NetworkSpec("generator", kwargs, spec.state_dict)})
    with pytest.raises(CheckpointError, match="shape"):
        load_generator(tmp_path / "shape")


def test_hostile_config_cannot_allocate_a_huge_network(tmp_path):
    """Sizes come from config.json; the module is built on the meta device and checked against the tensors first."""
    ck = read_checkpoint(fixture_path("nv_b_uncond32_map2.pkl"))
    spec = ck.networks["G_ema"]
    kwargs = json.loads(json.dumps(spec.init_kwargs))
    kwargs["z_dim"] = kwargs["w_dim"] = 1 << 24  # 2^48-element mapping layers if they were allocated
    write_native(tmp_path / "huge", {"G_ema": NetworkSpec("generator", kwargs, spec.state_dict)})
    with pytest.raises(CheckpointError, match="has shape"):
        load_generator(tmp_path / "huge")
    kwargs["img_resolution"] = 1 << 16  # and thousands of layers
    write_native(tmp_path / "huger", {"G_ema": NetworkSpec("generator", kwargs, spec.state_dict)})
    with pytest.raises(CheckpointError, match="cannot build|does not match"):
        load_generator(tmp_path / "huger")
    kwargs = json.loads(json.dumps(spec.init_kwargs))
    kwargs["z_dim"] = "sixty-four"
    write_native(tmp_path / "typo", {"G_ema": NetworkSpec("generator", kwargs, spec.state_dict)})
    with pytest.raises(CheckpointError, match="cannot build"):
        load_generator(tmp_path / "typo")


def test_half_precision_weights_load_as_float32(tmp_path):
    ck = read_checkpoint(fixture_path("nv_b_uncond32_map2.pkl"))
    spec = ck.networks["G_ema"]
    half = {k: v.half() for k, v in spec.state_dict.items()}
    write_native(tmp_path / "half", {"G_ema": NetworkSpec("generator", spec.init_kwargs, half)})
    G = load_generator(tmp_path / "half")
    assert all(p.dtype == torch.float32 for p in G.state_dict().values())
    ref = load_npz("nv_b_uncond32_map2.ref.npz")
    assert max_diff(render(G, ref["z"]), ref["img_psi1_const"]) < 0.5  # half-precision weights: close, not exact
    ints = dict(spec.state_dict)
    ints["synthesis.b4.conv1.bias"] = ints["synthesis.b4.conv1.bias"].long()
    write_native(tmp_path / "ints", {"G_ema": NetworkSpec("generator", spec.init_kwargs, ints)})
    with pytest.raises(CheckpointError, match="floating-point"):
        load_generator(tmp_path / "ints")
