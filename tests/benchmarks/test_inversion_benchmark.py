"""Smoke test of ``benchmarks/inversion.py``: a few steps per configuration, complete reports."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path


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
    # every row names its run: one id, the date, the commit and whether the tree was dirty
    runs = {r["run"]["id"] for r in rows}
    assert len(runs) == 1 and data["run"]["id"] in runs
    for r in rows:
        assert set(r["run"]) >= {"id", "date", "commit", "dirty", "code_version", "machine"}
    assert s["one_run"] and s["default_time_fraction"] is not None and s["goal_encoder_90pct_at_100x"] is not None
    assert "| run |" in md and f"run `{data['run']['id']}`" in md and "not computed" not in md
    if which == "all":
        assert "identity" in data["real"]["sets"]["lfw-faces test"]["rows"][0]
    assert out["synthetic"]["images"] == 2
    again = bench.main(["synthetic", "--n", "2", "--steps-scale", "0.005", "--out-dir", str(tmp_path / "results"),
                        "--no-docs", "--cache", str(tmp_path / "cache")])
    assert again["synthetic"]["rows"] == rows  # every configuration came from the cache, with the run that measured it
    assert again["run"]["id"] not in runs and again["synthetic"]["summary"]["one_run"]


def _row(label, method, seconds, psnr, run, **kw):
    return {"label": label, "method": method, "seconds_per_image": seconds, "psnr": psnr, "run": run,
            "reference": False, "default": False, "curve": [], **kw}


def test_time_ratios_only_within_one_run():
    bench = _load()
    a, b = bench.new_run(), bench.new_run()
    rows = [_row("w, NVIDIA", "w", 20.0, 22.0, a, reference=True), _row("w+ default", "w+", 4.0, 25.0, a, default=True),
            _row("pSp, 1 pass", "psp", 0.01, 23.0, b), _row("e4e, 1 pass", "e4e", 0.01, 21.0, a)]
    s = bench._summarise(rows)
    assert s["default_time_fraction"] == 0.2 and s["goal_default_quarter_time"] is True and not s["one_run"]
    # pSp is of another run: no speed-up, and e4e (400x, 84 %) alone does not meet the goal: not computed
    assert s["encoders_from_other_runs"] == ["pSp, 1 pass"] and s["best_encoder_speedup"] is None
    assert s["goal_encoder_90pct_at_100x"] is None
    text = bench._summary_lines(s)
    assert "not computed" in text and "2 recorded runs" in text
    rows[2]["run"] = a
    s = bench._summarise(rows)
    assert s["goal_encoder_90pct_at_100x"] is True and s["best_encoder_speedup"] == 400 and s["one_run"]
    rows[0]["run"] = None  # a row from before runs were recorded is never divided by
    s = bench._summarise(rows)
    assert s["default_time_fraction"] is None and s["goal_default_quarter_time"] is None


def test_cache_key_follows_the_code_and_the_targets(tmp_path):
    bench = _load()
    import torch
    from latentshop.models.stylegan2 import Generator

    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3, synthesis_kwargs=dict(channel_base=64, channel_max=8))
    cache, cfg, t = bench.Cache(tmp_path), bench.SYNTHETIC_CONFIGS[1], torch.zeros(2, 3, 8, 8)
    key = cache.key("synthetic", cfg, t, 1.0, G, code="a", instruments={})
    assert key == cache.key("synthetic", cfg, t.clone(), 1.0, G, code="a", instruments={})
    assert key != cache.key("synthetic", cfg, t, 1.0, G, code="b", instruments={})
    assert key != cache.key("synthetic", cfg, t + 0.1, 1.0, G, code="a", instruments={})
    assert key != cache.key("synthetic", cfg, t, 1.0, G, code="a", instruments={"evaluator": "x"})
    code = bench.inversion_code_version()
    assert code == bench.inversion_code_version() and len(code) == 16
    cache.put(key, {"run": {"id": "r"}}, t)
    assert cache.get(key)[0]["run"]["id"] == "r" and bench.Cache(tmp_path, fresh=True).get(key) is None


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
