"""Training recipes of the colour real-face evaluators, on small slices of celeba-faces."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from latentshop.training import face_evaluators as fe

CELEBA = Path(__file__).resolve().parents[3] / "shared" / "data" / "celeba-faces"
needs_data = pytest.mark.skipif(not (CELEBA / "labels.jsonl").is_file(), reason="needs ../shared/data/celeba-faces")


def test_joint_logistic_fit_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 12))
    y = x[:, :3] @ rng.normal(size=(3, 3)) + rng.normal(size=(400, 3)) > 0.8
    y[:, 2] = x[:, 0] > 1.5  # unbalanced: balanced weights matter
    mean, std, W, b = fe._fit_heads(x, y, 0.05)
    z = (x - mean) / std
    for j in range(3):
        ref = LogisticRegression(C=0.05, class_weight="balanced", max_iter=5000, tol=1e-10).fit(z, y[:, j])
        assert np.abs(ref.coef_[0] - W[j]).max() < 1e-4 and abs(ref.intercept_[0] - b[j]) < 1e-4


def test_arcface_adds_the_angular_margin_to_the_true_class_only():
    emb = torch.nn.functional.normalize(torch.tensor([[1.0, 1.0], [1.0, -0.2]]), dim=1)
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    logits = fe._arcface_logits(emb, centres, labels, s=10.0, m=0.3)
    cos = emb @ centres.T
    theta0 = math.acos(float(cos[0, 0]))
    assert logits[0, 0].item() == pytest.approx(10 * math.cos(theta0 + 0.3), rel=1e-5)
    assert logits[0, 1].item() == pytest.approx(10 * float(cos[0, 1]), rel=1e-5)
    # sample 1: theta > pi - m for its class? no (cos -0.196): margin applies; logits stay below the plain cosine
    assert logits[1, 1] < 10 * cos[1, 1]


@needs_data
def test_attribute_classifier_learns_gender_from_a_slice():
    net, info = fe.train_attribute_classifier(CELEBA, C=0.01, limit=160)
    assert info["images"] == 160 and info["C"] == 0.01
    assert info["cross_validation"]["Male"]["auc"] > 0.8  # the easiest attribute, even from 160 photos
    metrics = fe.evaluate_attribute_classifier(net, CELEBA, cross_validation=info["cross_validation"])
    assert metrics["images"] == 149 and metrics["attributes"]["Male"]["auc"] > 0.8
    assert set(metrics["usable"]) <= set(net.attributes)


@needs_data
def test_identity_training_lowers_the_margin_loss():
    losses = []
    o = replace(fe.IDENTITY_FIT, steps=12, warmup=2, batch_size=16, dim=32)
    net, info = fe.train_identity_embedder(CELEBA, options=o, limit=100, progress=lambda s, loss: losses.append(loss))
    assert len(losses) == 12 and np.mean(losses[-4:]) < np.mean(losses[:4])
    m = fe.evaluate_identity_embedder(net, CELEBA, limit=40, dlib=False)
    assert 0 <= m["auc"] <= 1 and m["pairs"] == 40 * 39 // 2


@needs_data
def test_shipped_attribute_classifier_on_the_test_split():
    from latentshop.checkpoints.evaluators import load_evaluator

    net = load_evaluator("celeba")
    metrics = fe.evaluate_attribute_classifier(net, CELEBA)
    for name in ("Smiling", "Male", "Eyeglasses", "Blond_Hair", "Wearing_Hat"):
        assert metrics["attributes"][name]["auc"] > 0.85, (name, metrics["attributes"][name])
