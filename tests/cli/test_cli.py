"""The ``latentshop`` command line, run in-process (typer's CliRunner) and once as a real process."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import fixture_path
from latentshop import load_generator
from latentshop.cli.common import parse_range
from latentshop.cli.main import app
from latentshop.latents import seed_z

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_parse_range():
    assert parse_range("0-3,7") == [0, 1, 2, 3, 7]


def test_generate_writes_images_matching_the_library(tmp_path):
    model = fixture_path("nv_a_uncond64.pkl")
    res = run("generate", "--model", model, "--seeds", "3-5", "--trunc", "0.7", "--outdir", tmp_path, "--device", "cpu")
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in tmp_path.glob("*.png"))
    assert files == ["grid.png", "seed0003.png", "seed0004.png", "seed0005.png"]
    assert Image.open(tmp_path / "grid.png").size == (128, 128)  # 3 images -> 2x2 grid of 64 px
    G = load_generator(model)
    with torch.no_grad():
        img = G(seed_z(G, [4]), truncation_psi=0.7, noise_mode="const")
    want = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    got = np.asarray(Image.open(tmp_path / "seed0004.png"))
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # fast path vs reference: rounding only
    assert (tmp_path / "options.json").exists()


def test_seed_z_matches_nvidia_generate():
    G = load_generator(fixture_path("nv_b_uncond32_map2.pkl"))
    z = seed_z(G, [7])
    assert np.allclose(z[0].numpy(), np.random.RandomState(7).randn(G.z_dim).astype(np.float32))


def test_generate_conditional_needs_class(tmp_path):
    model = fixture_path("nv_c_cond32_c5.pkl")
    res = run("generate", "--model", model, "--seeds", "0", "--outdir", tmp_path)
    assert res.exit_code == 1 and "--class" in res.output
    res = run("generate", "--model", model, "--seeds", "0,1", "--class", "4", "--outdir", tmp_path, "--no-grid")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["seed0000.png", "seed0001.png"]


def test_mix_figure(tmp_path):
    model = fixture_path("nv_b_uncond32_map2.pkl")
    res = run("mix", "--model", model, "--rows", "1,2", "--cols", "3,4,5", "--styles", "0-3", "--outdir", tmp_path)
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "grid.png").size == (4 * 32, 3 * 32)
    assert len(list(tmp_path.glob("*-*.png"))) == 6
    # A cell takes ws 0-3 from the column seed and the rest from the row seed.
    G = load_generator(model)
    with torch.no_grad():
        ws = G.mapping(seed_z(G, [1, 3]))
        mixed = torch.cat([ws[1:, :4], ws[:1, 4:]], dim=1)
        img = G.synthesis(mixed)
    want = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert np.abs(np.asarray(Image.open(tmp_path / "1-3.png")).astype(int) - want).max() <= 1
    res = run("mix", "--model", model, "--rows", "1", "--cols", "2", "--styles", "0-99", "--outdir", tmp_path)
    assert res.exit_code == 1 and "out of range" in res.output


def test_info_and_convert(tmp_path):
    res = run("info", fixture_path("nv_a_uncond64.pkl"), "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "num_ws" in res.output and "10" in res.output and "nvidia-pickle" in res.output
    assert "[1, 3, 64, 64] on cpu" in res.output
    out = tmp_path / "m"
    res = run("convert", fixture_path("ros_a_g64.pt"), out)
    assert res.exit_code == 0, res.output
    assert (out / "model.safetensors").exists() and "w_avg computed" in res.output
    res = run("convert", out, tmp_path / "back.pt", "--to", "rosinality")
    assert res.exit_code == 0, res.output
    res = run("info", tmp_path / "back.pt")
    assert res.exit_code == 0 and "rosinality" in res.output


def test_errors_are_one_line_without_traceback(tmp_path):
    res = run("generate", "--model", tmp_path / "nope.pkl", "--outdir", tmp_path)
    assert res.exit_code == 1
    assert "error:" in res.output and "Traceback" not in res.output
    res = run("generate", "--model", fixture_path("nv_b_uncond32_map2.pkl"), "--seeds", "a-b", "--outdir", tmp_path)
    assert res.exit_code == 1 and "seeds" in res.output
    res = run("generate", "--model", fixture_path("nv_b_uncond32_map2.pkl"), "--device", "cuda:7", "--outdir", tmp_path)
    assert res.exit_code == 1 and "cuda" in res.output.lower()


def test_console_script_runs_as_a_process(tmp_path):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"\x80\x04garbage")
    proc = subprocess.run([sys.executable, "-m", "latentshop.cli", "info", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "bad.pkl" in proc.stderr and "Traceback" not in proc.stderr
    help_ = subprocess.run([sys.executable, "-m", "latentshop.cli", "generate", "--help"], capture_output=True, text=True)
    assert help_.returncode == 0 and "--seeds" in help_.stdout
