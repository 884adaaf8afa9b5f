"""Saving and loading evaluators, hostile folders, and the shipped evaluators' quality."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from latentshop.checkpoints.evaluators import list_evaluators, load_evaluator, save_evaluator
from latentshop.errors import CheckpointError
from latentshop.models.evaluators import ExpressionClassifier, FactorRegressor, PartSegmenter

TINY = dict(res=16, widths=(4, 8, 8))
TINY_SEG = dict(res=16, widths=(4, 8))


def _assert_same_state(a, b):
    """Exactly the same parameters and buffers after the round trip (storage, not kernels)."""
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


def _assert_same_labels(got, want, proba, margin=1e-4):
    """Labels agree wherever the top two probabilities are further apart than kernel rounding."""
    top2 = proba.topk(2, dim=1).values  # (N, 2, H, W)
    clear = (top2[:, 0] - top2[:, 1]) > margin
    assert clear.float().mean() > 0.9, "too few clear-cut pixels for the check to mean anything"
    assert torch.equal(got[clear], want[clear])


def _perturbed(net):
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
    return net.eval()


@pytest.mark.parametrize("make", [lambda: FactorRegressor(**TINY), lambda: ExpressionClassifier(classes=["x", "y"], **TINY),
                                  lambda: PartSegmenter(**TINY_SEG), lambda: PartSegmenter(parts=["a", "b", "c"], **TINY_SEG)])
def test_round_trip(tmp_path, make):
    torch.manual_seed(0)
    net = _perturbed(make())
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    path = save_evaluator(net, tmp_path / "ev", metrics={"accuracy": 0.5}, info={"steps": 1})
    back = load_evaluator(path)
    assert type(back) is type(net) and back.metrics == {"accuracy": 0.5}
    _assert_same_state(back, net)
    with torch.no_grad():
        torch.testing.assert_close(back(x), net(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(CheckpointError, match="already exists"):
        save_evaluator(net, path)


def _saved(tmp_path):
    return save_evaluator(FactorRegressor(**TINY), tmp_path / "ev")


def test_segmenter_round_trip_keeps_parts_and_predictions(tmp_path):
    torch.manual_seed(1)
    net = _perturbed(PartSegmenter(parts=["bg", "face", "hair"], **TINY_SEG))
    path = save_evaluator(net, tmp_path / "seg", metrics={"all": {"mean_iou": 0.5}})
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["evaluator"] == {"kind": "part-segmenter",
                                "init_kwargs": {"parts": ["bg", "face", "hair"], "res": 16, "channels": 3, "widths": [4, 8]}}
    back = load_evaluator(path)
    assert back.parts == net.parts and not back.training
    x = torch.rand(2, 3, 28, 20) * 2 - 1
    _assert_same_state(back, net)
    proba = net.predict_proba(x)
    torch.testing.assert_close(back.predict_proba(x), proba, atol=1e-5, rtol=1e-5)
    _assert_same_labels(back.predict(x), net.predict(x), proba)
    _assert_same_labels(back.part_masks(x, ["face"])[:, 0], net.part_masks(x, ["face"])[:, 0], proba)


@pytest.mark.parametrize("change, match", [
    ({"parts": [f"p{i}" for i in range(100_000)]}, "out of range"),  # a huge output layer
    ({"parts": "background"}, "out of range"),
    ({"parts": [1, 2, 3]}, "out of range"),
    ({"widths": [4] * 40}, "out of range"),  # a deep net
    ({"widths": [4, 8, 8, 8, 8]}, "cannot build"),  # more halvings than res 16 allows
    ({"parts": ["a", "a"]}, "cannot build"),
    ({"res": 4}, "out of range"),
    ({"colour": True}, "cannot build"),
])
def test_corrupt_segmenter_config_refused(tmp_path, change, match):
    path = save_evaluator(PartSegmenter(**TINY_SEG), tmp_path / "seg")
    cfg = json.loads((path / "config.json").read_text())
    cfg["evaluator"]["init_kwargs"].update(change)
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=match):
        load_evaluator(path)


def test_segmenter_weights_of_another_part_list_refused(tmp_path):
    path = save_evaluator(PartSegmenter(**TINY_SEG), tmp_path / "seg")
    cfg = json.loads((path / "config.json").read_text())
    cfg["evaluator"]["init_kwargs"]["parts"] = ["a", "b", "c"]  # 3 logits; the weights hold 9
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"head\.(weight|bias).*needs \(3"):
        load_evaluator(path)


def test_unknown_name_lists_shipped(tmp_path):
    with pytest.raises(CheckpointError, match="shipped"):
        load_evaluator("no-such-evaluator")


def test_huge_widths_refused_before_building(tmp_path):
    path = _saved(tmp_path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["evaluator"]["init_kwargs"]["widths"] = [4, 8, 10**7]
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="out of range"):
        load_evaluator(path)


def test_wrong_kind_and_version(tmp_path):
    path = _saved(tmp_path)
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, "evaluator": {"kind": "os.system", "init_kwargs": {}}}))
    with pytest.raises(CheckpointError, match="not an evaluator"):
        load_evaluator(path)
    (path / "config.json").write_text(json.dumps({**cfg, "format_version": 99}))
    with pytest.raises(CheckpointError, match="upgrade"):
        load_evaluator(path)


def test_corrupt_and_mismatched_weights(tmp_path):
    path = _saved(tmp_path)
    weights = path / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_evaluator(path)
    state = FactorRegressor(**TINY).state_dict()
    state["head.bias"] = torch.full_like(state["head.bias"], float("nan"))
    save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
    with pytest.raises(CheckpointError, match="NaN"):
        load_evaluator(path)
    del state["head.bias"]
    save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
    with pytest.raises(CheckpointError, match="missing"):
        load_evaluator(path)
    weights.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_evaluator(path)


def test_evaluators_are_shipped():
    assert {"synthetic", "expression"} <= set(list_evaluators())
    import latentshop

    assert isinstance(latentshop.load_evaluator("synthetic"), FactorRegressor)
    assert isinstance(latentshop.load_evaluator("expression"), ExpressionClassifier)


def test_shipped_part_segmenter_finds_the_parts_of_held_out_renders():
    from latentshop.data.synthetic import PART_NAMES, render_batch
    from latentshop.models.evaluators import PartSegmenter
    from latentshop.training.evaluators import part_scores

    assert "parts" in list_evaluators()
    seg = load_evaluator("parts")
    assert isinstance(seg, PartSegmenter) and list(seg.parts) == list(PART_NAMES)
    images, _, masks = render_batch(range(1_600_000, 1_600_040), res=64, domain="photo")
    img = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    scores = part_scores(seg.predict(img), torch.from_numpy(masks).long(), seg.parts)
    assert scores["pixel_accuracy"] > 0.9
    assert scores["iou"]["mouth"] > 0.5 and scores["iou"]["hair"] > 0.7
