"""Evaluator training and scoring: the loops learn, the scores mean what they say, the shipped ones work."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from latentshop.checkpoints.evaluators import load_evaluator
from latentshop.data.synthetic import DOMAINS, FACTORS, PART_NAMES, TEST_SEED_START, render_batch
from latentshop.errors import ConfigError, ShapeError
from latentshop.models.evaluators import ExpressionClassifier, FactorRegressor, PartSegmenter
from latentshop.training import evaluators as ev

from conftest import SHARED

FACES = SHARED / "data" / "lfw-faces"
TINY = dict(res=32, widths=(8, 16, 16, 32))


def _need_faces():
    if not FACES.is_dir():
        pytest.skip("../shared/data/lfw-faces is not present (it is beside the checkout in CI)")


def test_factor_scores_perfect_and_circular():
    _, factors, _ = render_batch(range(1_000_000, 1_000_050), res=32)
    perfect = {}
    for name, fac in FACTORS.items():
        vals = [f[name] for f in factors]
        if fac.kind == "float":
            perfect[name] = torch.tensor(vals, dtype=torch.float32)
        elif fac.kind == "bool":
            perfect[name] = torch.tensor([float(v) for v in vals])
        else:
            perfect[name] = torch.tensor([fac.choices.index(v) for v in vals])
    scores = ev.factor_scores(perfect, factors)
    assert all(s == pytest.approx(1.0, abs=1e-6) for s in scores.values())
    # a hue off by a whole turn is still right; one off by half a turn is as wrong as it gets
    wrapped = dict(perfect, background_hue=(perfect["background_hue"] + 1.0))
    assert ev.factor_scores(wrapped, factors)["background_hue"] == pytest.approx(1.0, abs=1e-5)
    opposite = dict(perfect, background_hue=(perfect["background_hue"] + 0.5) % 1.0)
    assert ev.factor_scores(opposite, factors)["background_hue"] < -1.0
    mean = dict(perfect, smile=torch.full((50,), float(torch.tensor([f["smile"] for f in factors]).mean())))
    assert ev.factor_scores(mean, factors)["smile"] == pytest.approx(0.0, abs=1e-6)


def test_factor_regressor_learns():
    opts = ev.FitOptions(steps=60, batch_size=32, lr=3e-3, bf16=False)
    net, info = ev.train_factor_regressor(n_per_domain=64, res=32, options=opts, net=FactorRegressor(**TINY))
    assert info["images"] == 64 * len(DOMAINS) and info["steps"] == 60
    images, factors, _ = ev.render_factor_data(64, res=32)  # the training images
    t = net.encode_targets(factors)
    loss_trained, _ = net.loss(net.eval()(ev._to_float(images)), t)
    loss_untrained, _ = FactorRegressor(**TINY).eval().loss(FactorRegressor(**TINY).eval()(ev._to_float(images)), t)
    assert loss_trained < 0.7 * loss_untrained


def test_evaluate_factor_regressor_uses_held_out_seeds(monkeypatch):
    seen = []
    real = ev.render_batch

    def spy(seeds, **kw):
        seen.extend(seeds)
        return real(seeds, **kw)

    monkeypatch.setattr(ev, "render_batch", spy)
    out = ev.evaluate_factor_regressor(FactorRegressor(**TINY), n_per_domain=8, res=32)
    assert set(out) == set(DOMAINS) | {"all"} and set(out["all"]) == set(FACTORS)
    assert min(seen) >= ev.FACTOR_EVAL_SEED_START and len(set(seen)) == 8 * len(DOMAINS)


def test_expression_data_and_training():
    _need_faces()
    x, y = ev.load_expression_data(str(FACES), split="test", res=32, limit=60)
    assert x.dtype == torch.uint8 and x.shape[1:] == (1, 32, 32) and len(x) == len(y) <= 60
    assert y.max() < len(ev.EXPRESSION_CLASSES)
    opts = ev.FitOptions(steps=4, batch_size=8, bf16=False)
    net, info = ev.train_expression_classifier(str(FACES), res=32, options=opts, limit=40,
                                               net=ExpressionClassifier(classes=ev.EXPRESSION_CLASSES, **TINY))
    assert info["images"] <= 40 and sum(info["class_counts"].values()) == info["images"]
    res = ev.evaluate_expression_classifier(net, str(FACES), res=32)
    assert res["images"] == sum(res["support"].values()) == sum(map(sum, res["confusion"]))
    assert 0 <= res["balanced_accuracy"] <= 1 and set(res["recall"]) <= set(ev.EXPRESSION_CLASSES)


def test_shipped_factor_regressor_reads_held_out_faces():
    """The shipped evaluator on faces it never saw: float factors well predicted in every domain."""
    net = load_evaluator("synthetic")
    out = ev.evaluate_factor_regressor(net, n_per_domain=40)
    for domain in DOMAINS:
        for name in ("smile", "skin_tone", "hair_length", "yaw", "background_hue"):
            assert out[domain][name] > 0.8, (domain, name, out[domain][name])
        assert out[domain]["glasses"] > 0.9


def test_shipped_expression_classifier_beats_chance_on_test_split():
    _need_faces()
    net = load_evaluator("expression")
    res = ev.evaluate_expression_classifier(net, str(FACES))
    majority = max(res["support"].values()) / res["images"]
    assert res["accuracy"] > majority + 0.1
    assert res["recall"]["happiness"] > 0.8 and res["recall"]["neutral"] > 0.6


# ----------------------------------------------------------------------------------------------
# Part segmenter

TINY_SEG = dict(res=32, widths=(8, 16, 16))
TINY_COUNTS = {"photo": 32, "toon": 16, "caricature": 16}


def test_part_scores_perfect_and_known():
    _, _, masks = render_batch(range(1_000_000, 1_000_006), res=32)
    masks = torch.from_numpy(masks)
    perfect = ev.part_scores(masks, masks, PART_NAMES)
    assert perfect["pixel_accuracy"] == 1.0 and perfect["mean_iou"] == 1.0
    assert set(perfect["iou"]) == {PART_NAMES[i] for i in masks.unique().tolist()}  # absent parts left out
    true = torch.tensor([[[0, 0, 1, 1], [2, 2, 2, 2]]])
    pred = torch.tensor([[[0, 1, 1, 1], [2, 2, 2, 0]]])
    s = ev.part_scores(pred, true, ["a", "b", "c"])
    assert s["pixel_accuracy"] == pytest.approx(6 / 8)
    assert s["iou"] == pytest.approx({"a": 1 / 3, "b": 2 / 3, "c": 3 / 4})
    assert s["mean_iou"] == pytest.approx((1 / 3 + 2 / 3 + 3 / 4) / 3)
    with pytest.raises(ShapeError, match="shape"):
        ev.part_scores(pred[:, :1], true, ["a", "b", "c"])
    with pytest.raises(ShapeError, match="0..1"):
        ev.part_scores(pred, true, ["a", "b"])


def test_label_maps_move_with_their_images():
    """The augmentation shifts and mirrors each mask exactly as its image."""
    masks = torch.randint(0, 9, (6, 16, 16), dtype=torch.uint8)
    images = (masks * 25)[:, None].expand(-1, 3, -1, -1).contiguous()  # every channel spells the label
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            seen.append(x.clone())
            return self.w * x

    def loss_fn(out, target):
        seen.append(target)
        return out.sum()

    opts = ev.FitOptions(steps=3, batch_size=6, max_shift=3, noise=0.0, bf16=False)
    ev._fit(Probe(), images, loss_fn, opts, device=torch.device("cpu"), xflip=True, photometric=False,
            progress=None, label_maps=masks)
    moved = 0
    for x, target in zip(seen[0::2], seen[1::2]):
        assert target.dtype == torch.int64 and target.shape == (6, 16, 16)
        assert torch.equal(((x[:, 0] + 1) * 127.5 / 25).round().long(), target)
        moved += int((target != masks.long()).any())
    assert moved  # the batches were in fact moved


def test_part_segmenter_learns():
    opts = ev.FitOptions(steps=80, batch_size=16, lr=5e-3, bf16=False)
    net, info = ev.train_part_segmenter(counts=TINY_COUNTS, res=32, options=opts, net=PartSegmenter(**TINY_SEG))
    assert info["images"] == 64 and info["steps"] == 80
    assert set(info["part_share"]) == set(PART_NAMES) and sum(info["part_share"].values()) == pytest.approx(1, abs=1e-3)
    images, masks, _ = ev.render_part_data(TINY_COUNTS, res=32)  # the training images
    loss = F.cross_entropy(net.eval()(ev._to_float(images)), masks.long())
    assert loss < 0.6 * math.log(len(PART_NAMES))  # an untrained segmenter predicts uniformly: log(9)


def test_part_segmenter_training_refuses_bad_settings():
    with pytest.raises(ConfigError, match="held-out"):
        ev.train_part_segmenter(counts={"photo": TEST_SEED_START, "toon": 1})
    with pytest.raises(ConfigError, match="parts"):
        ev.train_part_segmenter(counts=TINY_COUNTS, res=32, net=PartSegmenter(parts=["a", "b"], **TINY_SEG))
    with pytest.raises(ConfigError, match="res"):
        ev.train_part_segmenter(counts=TINY_COUNTS, res=64, net=PartSegmenter(**TINY_SEG))
    with pytest.raises(ConfigError, match="positive"):
        ev.render_part_data({"photo": 0}, res=32)


def test_evaluate_part_segmenter_uses_held_out_seeds(monkeypatch):
    seen = []
    real = ev.render_batch

    def spy(seeds, **kw):
        seen.extend(seeds)
        return real(seeds, **kw)

    monkeypatch.setattr(ev, "render_batch", spy)
    torch.manual_seed(0)
    net = PartSegmenter(**TINY_SEG)
    with torch.no_grad():
        net.head.weight.normal_()
    out = ev.evaluate_part_segmenter(net, n_per_domain=4, res=32)
    assert set(out) == set(DOMAINS) | {"all"}
    assert min(seen) >= ev.PART_EVAL_SEED_START and len(set(seen)) == 4 * len(DOMAINS)
    for scores in out.values():
        assert 0 <= scores["pixel_accuracy"] <= 1 and 0 <= scores["mean_iou"] <= 1
        assert scores["iou"] and set(scores["iou"]) <= set(PART_NAMES)
        assert all(0 <= v <= 1 for v in scores["iou"].values())
