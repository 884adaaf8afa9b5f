"""Smoke test of ``benchmarks/editing.py``: tiny sets, every method measured, complete reports."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from conftest import SHARED

REPO = Path(__file__).resolve().parents[2]


def _load():
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("editing_benchmark", REPO / "benchmarks" / "editing.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_quick_run_measures_every_method(tmp_path):
    bench = _load()
    which = "all" if (SHARED / "data" / "lfw-faces").is_dir() else "synthetic"
    out = bench.main([which, "--n-samples", "3", "--n-inverted", "2", "--n-calib", "2", "--inv-steps", "2",
                      "--attributes", "smile,glasses", "--out-dir", str(tmp_path), "--no-docs"])
    syn = out["synthetic"]["sets"]
    assert set(syn) == {"generated", "inverted"}
    methods = {(r["attribute"], r["method"]) for r in syn["generated"]["rows"]}
    for attr in ("smile", "glasses"):
        for m in bench.METHODS:
            assert (attr, m) in methods, (attr, m)
    row = next(r for r in syn["generated"]["rows"] if r["attribute"] == "smile")
    for key in ("target_change", "leakage", "selectivity", "outside_change", "outside_to_inside", "inside_change"):
        assert key in row  # the part segmenter's outside / inside ratio: the score the labelling evaluator does not give
    saved = json.loads((tmp_path / "editing.json").read_text())
    assert saved["synthetic"]["sets"]["generated"]["winners"].keys() == {"smile", "glasses"}
    md = (tmp_path / "editing.md").read_text()
    assert "| smile |" in md and "selectivity" in md
    assert "What the scores can and cannot show" in md and "outside / inside px (segmenter)" in md
    # every side names the run that measured it
    run = saved["run"]
    assert saved["synthetic"]["run"]["id"] == run["id"] and set(run) >= {"id", "date", "commit", "dirty", "code_version"}
    assert f"run `{run['id']}`" in md
    # the codes of every inversion method, edited (e4e's editability against w+ optimisation's)
    ed = out["synthetic"]["editability"]
    assert [m["method"] for m in ed["methods"]] == list(bench.INVERSION_METHODS)
    for m in ed["methods"]:
        assert m["psnr"] > 0 and m["interfacegan"]["attributes"] == 2 and m["interfacegan"]["median_leakage"] >= 0
    assert "Editability of inverted codes" in md and "| e4e |" in md
    if which == "all":
        assert out["real"]["editability"]["methods"][0]["interfacegan"]["median_identity"] > 0
        real = out["real"]["sets"]["generated"]["rows"]
        assert any(r["attribute"] == "happiness" for r in real) and all("identity" in r for r in real)
        for r in real:  # dlib's landmarks: the smile and leakage measures that do not come from the expression classifier
            assert r["landmark_faces"] == 3 and r["away_from_mouth_shift"] >= 0
            assert all(isinstance(r[k], float) for k in ("mouth_width_change", "mouth_opening_change", "corner_lift_change"))
        assert "landmark shift / unit" in md and out["real"]["editability"]["methods"][0]["interfacegan"]["median_away_from_mouth_shift"] >= 0
