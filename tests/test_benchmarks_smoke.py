"""Smoke test of ``benchmarks/generator_speed.py``: quick mode on a tiny generator writes complete results."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("generator_speed", REPO / "benchmarks" / "generator_speed.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_generator_speed_quick(tmp_path):
    bench = _load_benchmark()
    tiny = bench.GeneratorConfig(
        "tiny16",
        dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
             mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8, conv_clamp=256)),
    )
    out = bench.main(["--quick", "--rounds", "1", "--batch-sizes", "1", "2", "--out-dir", str(tmp_path)], configs=[tiny])

    data = json.loads((tmp_path / "generator_speed.json").read_text())
    assert data == json.loads(json.dumps(out))
    for key in ("cpu", "cores", "torch", "torch_threads", "date"):
        assert key in data["machine"]
    assert data["machine"]["quick"] is True
    # 2 batch sizes x 2 dtypes x 3 impls (reference, fast, fast without torch.compile).
    assert len(data["results"]) == 12
    for row in data["results"]:
        for key in ("generator", "batch", "dtype", "impl", "images_per_s", "achieved_gflops", "limit_gflops", "fraction_of_limit"):
            assert key in row, key
        assert row["images_per_s"] > 0 and row["limit_gflops"] > 0
        if row["dtype"] == "bfloat16":
            assert row["psnr_vs_float32_db"] > 20
        if row["impl"].startswith("fast") and row["dtype"] == "float32":
            assert row["max_abs_diff_vs_reference"] < 1e-4
    assert data["targets"] == []  # targets are judged on the 256 px generator only
    bench.TARGET_GENERATOR = "tiny16"
    assert {t["dtype"] for t in bench.check_targets(data["results"], 2)} == {"float32", "bfloat16"}
    table = (tmp_path / "generator_speed.md").read_text()
    assert "| tiny16 | 2 | bfloat16 | fast |" in table
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries
