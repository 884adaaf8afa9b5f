"""``latentshop train`` on a small folder of images: a run folder with a loadable model; the same under
``torchrun`` with 2 processes equals 1 process with the same global batch, and resumes exactly."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from latentshop import load_generator
from latentshop.cli.main import app


def test_train_command_on_a_folder(tmp_path):
    data = tmp_path / "imgs"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(data / f"{i}.png")
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--res", "16", "--channels", "3", "--kimg", "0.008", "--batch", "4",
            "--snapshot-kimg", "0.004", "--fp32", "-o", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (out / "checkpoint.pt").exists() and len(list(out.glob("snapshot-*.png"))) == 2
    G = load_generator(out / "model")
    assert (G.img_resolution, G.img_channels) == (16, 3)
    res = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "missing"), "--res", "16", "-o", str(out)])
    assert res.exit_code == 1 and "does not exist" in res.output
    res = CliRunner().invoke(app, ["train", "--preset", "nope", "-o", str(out)])
    assert res.exit_code == 1 and "unknown preset" in res.output
    res = CliRunner().invoke(app, [*args[:-2], "--impl", "turbo", "-o", str(tmp_path / "other")])
    assert res.exit_code == 1 and "--impl must be 'fast' or 'reference'" in res.output


# ---- torchrun ------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(args: list[str], cwd: Path, *, torchrun: bool) -> None:
    """``torchrun --nproc_per_node 2 -m latentshop.cli train ARGS`` (gloo on loopback) or the plain
    ``python -m latentshop.cli train ARGS``, as a user runs them (one thread per process)."""
    cmd = [sys.executable, "-m", "latentshop.cli", "train", *args]
    if torchrun:
        exe = Path(sys.executable).with_name("torchrun")
        if not exe.exists():
            pytest.skip(f"no torchrun beside {sys.executable}")
        cmd = [str(exe), "--nnodes", "1", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), *cmd[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if sys.platform.startswith("linux"):
        env["GLOO_SOCKET_IFNAME"] = "lo"
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"


def _trained(run: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    out = {f"{name}.{k}": v for name in ("G", "D", "G_ema") for k, v in state[name].items()}
    out.update({f"augment.{k}": v for k, v in state["augment"].items()})
    for name in ("G_opt", "D_opt"):
        out.update({f"{name}.{i}.{k}": v for i, s in state[name]["state"].items() for k, v in s.items()})
    out["pl_mean"] = state["pl_mean"]
    out["nimg"] = torch.tensor(state["nimg"])
    return out


def test_torchrun_two_processes_with_ada_equal_one_and_resume_exactly(tmp_path):
    data = tmp_path / "imgs"
    data.mkdir()
    rng = np.random.default_rng(1)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(data / f"{i}.png")
    # 6 steps of a global batch of 8, ADA augmenting from the first step (its p adapted at step 4)
    common = ["--data", str(data), "--res", "16", "--channels", "3", "--cbase", "128", "--cmax", "16", "--batch", "8",
              "--snapshot-kimg", "0.024", "--fp32", "--ada", "--ada-p", "0.5"]

    _train([*common, "--kimg", "0.048", "-o", str(tmp_path / "straight")], tmp_path, torchrun=True)
    _train([*common, "--kimg", "0.024", "-o", str(tmp_path / "resumed")], tmp_path, torchrun=True)  # 3 steps, done
    _train([*common, "--kimg", "0.048", "--resume", "-o", str(tmp_path / "resumed")], tmp_path, torchrun=True)
    _train([*common, "--kimg", "0.048", "-o", str(tmp_path / "single")], tmp_path, torchrun=False)

    straight, resumed, single = (_trained(tmp_path / name) for name in ("straight", "resumed", "single"))
    assert int(straight["nimg"]) == 48 and 0 < float(straight["augment.p"]) != 0.5  # ADA augmented, and adapted p
    assert straight.keys() == resumed.keys() == single.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight), "the resumed 2-process run differs"
    for k in straight:
        assert torch.allclose(straight[k].double(), single[k].double(), atol=1e-4, rtol=1e-4), k
    G2, G1 = load_generator(tmp_path / "straight" / "model"), load_generator(tmp_path / "single" / "model")
    for (k, a), b in zip(G2.state_dict().items(), G1.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), k
