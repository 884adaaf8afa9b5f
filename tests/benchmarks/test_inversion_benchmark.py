"""Smoke test of ``benchmarks/inversion.py``: a few steps per configuration, complete reports."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from conftest import SHARED

REPO = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("inversion_benchmark", REPO / "benchmarks" / "inversion.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_complete_reports(tmp_path):
    bench = _load()
    which = "all" if (SHARED / "data" / "faces").is_dir() else "synthetic"
    out = bench.main([which, "--n", "2", "--n-test", "2", "--n-photos", "2", "--steps-scale", "0.005",
                      "--out-dir", str(tmp_path / "results"), "--no-docs", "--cache", str(tmp_path / "cache")])
    assert list((tmp_path / "cache").glob("*.json"))  # finished configurations are kept for a resume
    data = json.loads((tmp_path / "results" / "inversion.json").read_text())
    rows = data["synthetic"]["rows"]
    assert [r["label"] for r in rows] == [c.label for c in bench.SYNTHETIC_CONFIGS]
    assert sum(r["reference"] for r in rows) == 1 and sum(r["default"] for r in rows) == 1
    for r in rows:
        assert r["seconds_per_image"] > 0 and r["curve"] and 0 <= r["factor_error"] <= 1
        assert r["psnr"] > 0 and 0 < r["ms_ssim"] <= 1
    s = data["synthetic"]["summary"]
    assert set(s) >= {"reference_psnr", "default_time_fraction", "goal_default_quarter_time"}
    md = (tmp_path / "results" / "inversion.md").read_text()
    assert "| w, NVIDIA recipe" in md and "goal" in md
    if which == "all":
        assert "identity" in data["real"]["sets"]["lfw-faces test"]["rows"][0]
    assert out["synthetic"]["images"] == 2
    again = bench.main(["synthetic", "--n", "2", "--steps-scale", "0.005", "--out-dir", str(tmp_path / "results"),
                        "--no-docs", "--cache", str(tmp_path / "cache")])
    assert again["synthetic"]["rows"] == rows  # every configuration came from the cache


def test_factor_errors_are_zero_for_the_truth():
    bench = _load()
    import torch
    from latentshop.data.synthetic import FACTORS, render

    factors = [render(s, res=32).factors for s in (1, 2, 3)]
    pred = {}
    for name, fac in FACTORS.items():
        vals = [f[name] for f in factors]
        if fac.kind == "choice":
            pred[name] = torch.tensor([fac.choices.index(v) for v in vals])
        else:
            pred[name] = torch.tensor([float(v) for v in vals])
    errs = bench.factor_errors(pred, factors)
    assert set(errs) == set(FACTORS) and max(errs.values()) < 1e-6
