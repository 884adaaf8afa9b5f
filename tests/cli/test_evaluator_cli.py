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


def test_predict_landmarks_prints_measures_and_null_without_a_face(tmp_path):
    from pathlib import Path

    import numpy as np

    from latentshop.models.landmarks import MEASURES

    face = str(Path(__file__).resolve().parents[2] / "examples" / "face.jpg")
    save_image(np.full((96, 96, 3), 128, dtype=np.uint8), tmp_path / "flat.png")
    res = runner.invoke(app, ["evaluator", "predict", "landmarks", face])
    assert res.exit_code == 0, res.output
    row = json.loads(res.output)
    assert set(MEASURES) <= set(row) and all(isinstance(row[k], float) for k in MEASURES)
    res = runner.invoke(app, ["evaluator", "predict", "landmarks", str(tmp_path / "flat.png"), "--detect"])
    assert res.exit_code == 0, res.output
    assert all(v is None for k, v in json.loads(res.output).items() if k != "file")
    res = runner.invoke(app, ["evaluator", "predict", "expression", face, "--detect"])
    assert res.exit_code == 1 and "landmark" in res.output
