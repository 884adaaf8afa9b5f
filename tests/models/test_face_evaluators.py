"""The colour real-face evaluators: CelebA attributes and the identity embedding (networks, files)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from latentshop.checkpoints.evaluators import load_evaluator, save_evaluator
from latentshop.errors import ConfigError, ShapeError
from latentshop.models.face_evaluators import EDIT_NAMES, AttributeClassifier, IdentityEmbedder, to_mobilenet_input


def test_mobilenet_input_matches_the_tflite_scaling_and_resizes():
    img = torch.linspace(-1, 1, 9).view(1, 1, 3, 3).expand(1, 3, 3, 3)
    pixels = (img + 1) * 127.5
    assert torch.allclose(to_mobilenet_input(img, 3), (pixels - 128) / 128)  # (pixel - 128) / 128, as TFLite
    grey = to_mobilenet_input(torch.zeros(2, 1, 40, 40), 64)
    assert grey.shape == (2, 3, 64, 64) and torch.allclose(grey, torch.full_like(grey, (127.5 - 128) / 128))
    with pytest.raises(ShapeError):
        to_mobilenet_input(torch.zeros(1, 4, 8, 8), 32)


def test_attribute_classifier_scores_edit_names_and_round_trips(tmp_path):
    torch.manual_seed(0)
    net = AttributeClassifier(attributes=["Smiling", "Young", "No_Beard", "Male"])
    torch.nn.init.normal_(net.head.weight, std=0.05)
    x = torch.rand(3, 3, 96, 96) * 2 - 1
    scores, kinds = net.attribute_scores(x)
    assert set(kinds.values()) == {"prob"}
    assert {"Smiling", "smile", "age", "beard", "gender"} <= set(scores)
    assert torch.allclose(scores["age"], 1 - scores["Young"]) and torch.allclose(scores["beard"], 1 - scores["No_Beard"])
    assert torch.allclose(scores["smile"], scores["Smiling"]) and "glasses" not in scores  # no Eyeglasses here
    assert set(EDIT_NAMES) >= {"smile", "age", "gender", "glasses", "beard", "bald", "blond", "bangs", "mouth_open", "makeup", "hat"}
    path = save_evaluator(net, tmp_path / "attr", metrics={"usable": ["Smiling"]})
    back = load_evaluator(path)
    assert isinstance(back, AttributeClassifier) and back.metrics["usable"] == ["Smiling"]
    assert torch.allclose(back.predict_proba(x), net.eval().predict_proba(x), atol=1e-6)
    with pytest.raises(ConfigError):
        AttributeClassifier(attributes=["a", "a"])


def test_identity_embedder_is_unit_length_and_differentiable(tmp_path):
    torch.manual_seed(0)
    net = IdentityEmbedder(dim=32).eval()
    for p in net.trunk.parameters():  # a fresh trunk is all zeros (its weights always come from a file)
        torch.nn.init.normal_(p, std=0.2)
    a = (torch.rand(2, 3, 128, 128) * 2 - 1).requires_grad_(True)
    b = torch.rand(2, 3, 128, 128) * 2 - 1
    sim = net.similarity(a, b)
    assert sim.shape == (2,) and (sim.abs() <= 1 + 1e-5).all()
    (1 - sim).sum().backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    grey = net.embed_images(torch.zeros(1, 1, 64, 64))
    assert grey.shape == (1, 32) and math.isclose(float(grey.norm()), 1.0, rel_tol=1e-5)
    path = save_evaluator(net, tmp_path / "id")
    back = load_evaluator(path)
    assert isinstance(back, IdentityEmbedder)
    assert torch.allclose(back.embed_images(b), net.embed_images(b), atol=1e-5)


def test_corrupt_attribute_names_are_refused(tmp_path):
    import json

    from latentshop.errors import CheckpointError

    net = AttributeClassifier(attributes=["Smiling"])
    path = save_evaluator(net, tmp_path / "attr")
    cfg = json.loads((path / "config.json").read_text())
    cfg["evaluator"]["init_kwargs"]["attributes"] = [str(i) for i in range(100_000)]
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="out of range"):
        load_evaluator(path)


@pytest.mark.parametrize("name", ["celeba", "identity"])
def test_shipped_face_evaluators_record_their_scores(name):
    net = load_evaluator(name)
    if name == "celeba":
        assert {"Smiling", "Male", "Eyeglasses", "Young"} <= set(net.metrics["usable"])
        assert net.metrics["attributes"]["Male"]["auc"] > 0.9
        assert "non-commercial" in net.info["data"]
    else:
        assert net.metrics["auc"] > 0.9 and net.metrics["dlib"]["auc"] > 0.9
        assert "non-commercial" in net.info["data"]
    assert np.isfinite(net.metrics.get("mean_auc", net.metrics.get("auc")))
