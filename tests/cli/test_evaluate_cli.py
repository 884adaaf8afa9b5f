"""``latentshop evaluate`` (SWD, FID with a stand-in detector) and the FID of ``latentshop train``'s snapshots."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

import latentshop.metrics.fid as fid_module
from cli_helpers import tiny_model_folder
from latentshop.cli.main import app
from latentshop.metrics.fid import file_sha256


class StandIn(torch.nn.Module):
    """NVIDIA's calling convention, uint8 (N, 3, H, W) -> (N, 16) features; not NVIDIA's file."""

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return F.adaptive_avg_pool2d(img.to(torch.float32) / 255, 4).flatten(1)[:, :16]


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    path = tmp_path_factory.mktemp("fid") / "stand-in.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(StandIn()), str(path))
    return path


def image_folder(path, n: int, res: int):
    path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (res, res, 3), dtype=np.uint8)).save(path / f"{i}.png")
    return path


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    model, _ = tiny_model_folder(tmp_path_factory, seed=0)  # 32 px
    return model, image_folder(tmp_path_factory.mktemp("real") / "imgs", 10, 32)


def test_evaluate_swd_and_fid(model_and_data, detector, tmp_path, monkeypatch):
    model, data = model_and_data
    base = ["evaluate", "--model", str(model), "--data", str(data), "--n", "6", "--batch", "4", "--device", "cpu"]
    out = tmp_path / "m.json"
    res = CliRunner().invoke(app, base + ["--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert set(report["metrics"]) == {"swd_32", "swd_16", "swd_avg"} and report["metrics"]["swd_avg"] > 0
    assert (report["n_real"], report["n_fake"], report["inception"]) == (6, 6, None)

    res = CliRunner().invoke(app, base + ["--metrics", "swd,fid"])
    assert res.exit_code == 1 and "--inception PATH" in res.output  # fid without the detector
    res = CliRunner().invoke(app, base + ["--metrics", "fid", "--inception", str(detector)])
    assert res.exit_code == 1 and "SHA-256" in res.output and "--no-verify-inception" in res.output  # not NVIDIA's

    monkeypatch.setattr(fid_module, "INCEPTION_SHA256", file_sha256(detector))  # trust the stand-in
    res = CliRunner().invoke(app, base + ["--metrics", "swd,fid", "--inception", str(detector)])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)  # no --out: the JSON on stdout
    assert report["metrics"]["fid"] > 0 and "swd_avg" in report["metrics"]
    assert report["inception"]["sha256_verified"] is True


def test_train_snapshots_log_fid_with_inception(tmp_path, detector):
    data = image_folder(tmp_path / "imgs", 6, 16)
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--held-out", str(data), "--res", "16", "--cbase", "128", "--cmax", "16",
            "--kimg", "0.008", "--batch", "4", "--snapshot-kimg", "0.004", "--fp32", "-o", str(out),
            "--inception", str(detector), "--no-verify-inception"]
    with pytest.warns(UserWarning, match="not checked against the SHA-256"):
        res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["fid"] >= 0 and "swd_avg" in r for r in rows)
    assert "FID" in res.output
