"""Evaluator networks: input handling, the factor output layout, classifier and segmenter outputs."""

from __future__ import annotations

import math

import pytest
import torch

from latentshop.data.synthetic import FACTORS, PART_NAMES, render_batch
from latentshop.errors import ConfigError, ShapeError
from latentshop.models.evaluators import (
    CIRCULAR_FACTORS,
    PART_COLOURS,
    ExpressionClassifier,
    FactorRegressor,
    PartSegmenter,
    colour_parts,
    prepare_input,
)

TINY = dict(res=16, widths=(4, 8, 8))


def test_prepare_input_converts_channels_and_size():
    rgb = torch.rand(2, 3, 32, 48) * 2 - 1
    gray = prepare_input(rgb, res=16, channels=1)
    assert gray.shape == (2, 1, 16, 16)
    luma = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert torch.allclose(gray, torch.nn.functional.interpolate(luma, size=(16, 16), mode="area"), atol=1e-6)
    up = prepare_input(torch.zeros(1, 8, 8), res=16, channels=3)  # (C, H, W) with C=1 -> (1, 3, 16, 16)
    assert up.shape == (1, 3, 16, 16)


@pytest.mark.parametrize("bad", [torch.zeros(2, 2, 8, 8), torch.zeros(8, 8), torch.zeros(0, 3, 8, 8)])
def test_prepare_input_rejects_bad_shapes(bad):
    with pytest.raises(ShapeError):
        prepare_input(bad, res=16, channels=3)


def test_prepare_input_rejects_nan():
    x = torch.zeros(1, 3, 8, 8)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ShapeError, match="NaN"):
        prepare_input(x, res=16, channels=3)


def _ideal_output(net: FactorRegressor, factors):
    """The raw output a perfect regressor would give: targets in the output layout, confident logits."""
    t = net.encode_targets(factors)
    cols = []
    for name, kind, width in net.layout:
        if kind == "float":
            cols.append(t[name][:, None])
        elif kind == "circular":
            cols.append(t[name])
        elif kind == "bool":
            cols.append((t[name][:, None] * 2 - 1) * 20)
        else:
            cols.append(torch.nn.functional.one_hot(t[name], width).float() * 20)
    return torch.cat(cols, 1)


def test_factor_layout_round_trip():
    net = FactorRegressor(**TINY)
    _, factors, _ = render_batch([1_000_001, 1_000_002, 1_000_003, 1_000_004], res=32)
    out = _ideal_output(net, factors)
    assert out.shape[1] == net.head.out_features
    values = net.decode(out)
    for name, fac in FACTORS.items():
        for i, f in enumerate(factors):
            if fac.kind == "float":
                got, want = values[name][i].item(), f[name]
                if name in CIRCULAR_FACTORS:
                    assert abs((got - want + 0.5) % 1.0 - 0.5) < 1e-5
                else:
                    assert got == pytest.approx(want, abs=1e-5)
            elif fac.kind == "bool":
                assert (values[name][i].item() > 0.5) == f[name]
            else:
                assert fac.choices[values[name][i].item()] == f[name]
    total, parts = net.loss(out, net.encode_targets(factors))
    for name, kind, _ in net.layout:
        if kind in ("float", "circular"):
            assert parts[name] < 1e-10
    assert total.item() < 1e-3


def test_factor_loss_is_one_minus_r2_scale_for_constant_prediction():
    """A constant mid-range prediction of a uniform factor costs about 1 per float factor (1 - R² = 1)."""
    net = FactorRegressor(**TINY)
    _, factors, _ = render_batch(range(1_000_000, 1_000_400), res=32)
    out = torch.zeros(len(factors), net.head.out_features)
    t = net.encode_targets(factors)
    parts = net.split(out)  # views into out
    parts["smile"] += 0.5
    _, losses = net.loss(out, t)
    assert losses["smile"] == pytest.approx(1.0, abs=0.2)
    assert losses["eye_open"] == pytest.approx(4.0, abs=0.6)  # predicting 0: 12 * E[t^2] = 4


def test_factor_predict_shapes_and_ranges():
    net = FactorRegressor(**TINY)
    pred = net.predict(torch.rand(3, 3, 20, 20) * 2 - 1)
    for name, fac in FACTORS.items():
        assert pred[name].shape == (3,)
        if fac.kind == "float":
            assert (pred[name] >= fac.low).all() and (pred[name] <= fac.high).all()
    assert pred["clothing_pattern_probs"].sum(1).allclose(torch.ones(3))
    assert net.training  # predict restores the mode


def test_expression_classifier_outputs():
    net = ExpressionClassifier(classes=["a", "b", "c"], **TINY)
    p = net.predict_proba(torch.rand(5, 3, 64, 64) * 2 - 1)
    assert p.shape == (5, 3) and torch.allclose(p.sum(1), torch.ones(5))
    assert set(net.predict(torch.zeros(2, 1, 16, 16))) <= {"a", "b", "c"}
    with pytest.raises(ShapeError):
        ExpressionClassifier(classes=["a", "a"])


def test_backbone_rejects_bad_resolution():
    with pytest.raises(ShapeError):
        FactorRegressor(res=48, widths=(4, 4, 4, 4))
    with pytest.raises(ShapeError):
        FactorRegressor(res=32, widths=(4, 4))
    assert math.log2(FactorRegressor(**TINY).res) == 4


# ----------------------------------------------------------------------------------------------
# Part segmenter

TINY_SEG = dict(res=16, widths=(4, 8, 8))


def _varied_segmenter(seed: int = 0) -> PartSegmenter:
    """A tiny segmenter with a random head (it starts at zero) and batch norm calibrated on noise,
    then in eval mode: its labels vary from pixel to pixel and do not depend on the batch."""
    torch.manual_seed(seed)
    net = PartSegmenter(**TINY_SEG)
    with torch.no_grad():
        net.head.weight.normal_(0, 1)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None  # a plain average of the calibration batches
        net(torch.rand(16, 3, 16, 16) * 2 - 1)
    return net.eval()


def test_part_segmenter_shapes():
    net = PartSegmenter(**TINY_SEG)
    assert net.parts == list(PART_NAMES)
    assert net(torch.zeros(2, 3, 16, 16)).shape == (2, len(PART_NAMES), 16, 16)
    assert net(torch.zeros(2, 1, 40, 24)).shape == (2, len(PART_NAMES), 16, 16)  # resampled, gray repeated
    net = PartSegmenter(parts=["a", "b", "c"], res=32, widths=(4, 8, 8, 8))
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("size", [(16, 16), (40, 40), (10, 10), (24, 48)])
def test_part_segmenter_predicts_at_the_input_size(size):
    net = _varied_segmenter()
    img = torch.rand(3, 3, *size) * 2 - 1
    p = net.predict_proba(img)
    assert p.shape == (3, len(PART_NAMES), *size)
    assert torch.allclose(p.sum(1), torch.ones(3, *size), atol=1e-5) and (p >= 0).all()
    labels = net.predict(img)
    assert labels.shape == (3, *size) and labels.dtype == torch.int64
    assert torch.equal(labels, p.argmax(1))
    assert net.predict(img[0]).shape == (1, *size)  # a single (C, H, W) image


def test_part_masks_are_the_union_of_the_named_parts():
    net = _varied_segmenter()
    img = torch.rand(4, 3, 32, 32) * 2 - 1
    labels = net.predict(img)
    assert len(labels.unique()) >= 3  # the test needs varied labels
    a, b = (net.parts[int(i)] for i in labels.unique()[:2])
    masks = net.part_masks(img, [a, b])
    assert masks.shape == (4, 1, 32, 32) and masks.dtype == torch.float32
    want = (labels == net.parts.index(a)) | (labels == net.parts.index(b))
    assert torch.equal(masks[:, 0].bool(), want) and set(masks.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(net.part_masks(img, a), net.part_masks(img, [a]))
    assert net.part_masks(img, []).sum() == 0
    assert net.part_masks(img, net.parts).min() == 1  # every pixel has some part
    with pytest.raises(ConfigError, match="unknown part name.*nose"):
        net.part_masks(img, ["eyes", "nose"])


def test_part_segmenter_batch_equals_single():
    net = _varied_segmenter(1)
    img = torch.rand(5, 3, 24, 24) * 2 - 1
    batch = net.predict_proba(img, batch=5)
    single = torch.cat([net.predict_proba(img[i:i + 1]) for i in range(5)])
    assert torch.allclose(batch, single, atol=1e-5)
    assert torch.allclose(net.predict_proba(img, batch=2), batch, atol=1e-5)


def test_part_segmenter_predict_restores_training_mode():
    net = PartSegmenter(**TINY_SEG)
    net.predict(torch.zeros(1, 3, 16, 16))
    assert net.training


@pytest.mark.parametrize("kwargs", [dict(res=20, widths=(4, 8, 8, 8)), dict(res=16, widths=(4, 4, 4, 4, 4)),
                                    dict(res=16, widths=()), dict(res=16, widths=(4, 0)),
                                    dict(res=16, widths=(4,), parts=["a", "a"]), dict(res=16, widths=(4,), parts=["a"])])
def test_part_segmenter_rejects_bad_arguments(kwargs):
    with pytest.raises(ShapeError):
        PartSegmenter(**kwargs)


def test_default_part_segmenter_is_small():
    net = PartSegmenter()
    size = sum(t.numel() * t.element_size() for t in net.state_dict().values())
    assert size < 2 * 2**20, size
    assert net.init_kwargs == {"parts": list(PART_NAMES), "res": 64, "channels": 3, "widths": [16, 32, 64, 96]}


def test_colour_parts():
    labels = torch.arange(len(PART_COLOURS) + 1).view(1, 1, -1)
    img = colour_parts(labels)
    assert img.shape == (1, 1, len(PART_COLOURS) + 1, 3) and img.dtype == torch.uint8
    assert img[0, 0, 3].tolist() == list(PART_COLOURS[3])
    assert img[0, 0, -1].tolist() == list(PART_COLOURS[0])  # past the palette: from the start again
    assert len(set(PART_COLOURS)) == len(PART_COLOURS) >= len(PART_NAMES)
    with pytest.raises(ShapeError):
        colour_parts(torch.zeros(2, 2))
    with pytest.raises(ShapeError):
        colour_parts(torch.full((2, 2), -1))
