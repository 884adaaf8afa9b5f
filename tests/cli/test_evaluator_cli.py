"""``latentshop evaluator``: predict, test and train (tiny) from the command line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from latentshop.cli.main import app
from latentshop.data.images import save_image
from latentshop.data.synthetic import FACTORS, PATTERNS, render

runner = CliRunner()


def test_predict_synthetic_reads_factors(tmp_path):
    face = render(1_000_123, res=64, factors={"glasses": True, "clothing_pattern": PATTERNS[0], "yaw": 0.8})
    save_image(face.image, tmp_path / "a.png")
    res = runner.invoke(app, ["evaluator", "predict", "synthetic", str(tmp_path / "a.png")])
    assert res.exit_code == 0, res.output
    row = json.loads(res.output.strip().splitlines()[0])
    assert set(FACTORS) <= set(row)
    assert row["glasses"] > 0.5 and row["clothing_pattern"] == PATTERNS[0] and row["yaw"] > 0.4


def test_predict_expression_and_bad_input(tmp_path):
    face = render(1_000_124, res=64)
    save_image(face.image, tmp_path / "a.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    res = runner.invoke(app, ["evaluator", "predict", "expression", str(tmp_path / "a.png")])
    assert res.exit_code == 0, res.output
    row = json.loads(res.output)
    assert abs(sum(row["probs"].values()) - 1) < 1e-3 and row["expression"] in row["probs"]
    res = runner.invoke(app, ["evaluator", "predict", "expression", str(tmp_path / "bad.png")])
    assert res.exit_code == 1 and "bad.png" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["evaluator", "predict", "no-such-evaluator", str(tmp_path / "a.png")])
    assert res.exit_code == 1 and "shipped" in res.output


def test_train_tiny_synthetic(tmp_path):
    res = runner.invoke(app, ["evaluator", "train", "synthetic", "--steps", "2", "--n-per-domain", "10", "--device", "cpu",
                              "-o", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "ev" / "config.json").read_text())
    assert cfg["evaluator"]["kind"] == "factor-regressor" and cfg["info"]["steps"] == 2
    assert set(cfg["metrics"]["all"]) == set(FACTORS)
    res = runner.invoke(app, ["evaluator", "train", "mood", "-o", str(tmp_path / "x")])
    assert res.exit_code == 1 and "unknown evaluator" in res.output
