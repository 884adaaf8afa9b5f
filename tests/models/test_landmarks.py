"""The landmark evaluator: pose signs, measures against CelebA's labels, region masks, NaN handling,
its use by InterFaceGAN and its loading by name.

Real faces come from ``../shared/data/celeba-faces`` (read at test time, never copied: CelebA's
licence) and the repository's ``examples/face.jpg``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentshop.checkpoints.evaluators import list_evaluators, load_evaluator
from latentshop.editing.directions import attribute_scores, interfacegan
from latentshop.errors import ConfigError, ShapeError
from latentshop.models.landmarks import (MEASURES, MIRROR_68, REGIONS, LandmarkEvaluator, convex_hull,
                                         mirror_landmarks)
from latentshop.models.stylegan2 import Generator

ROOT = Path(__file__).resolve().parents[2]
CELEBA = ROOT.parent / "shared" / "data" / "celeba-faces"
EXAMPLE = ROOT / "examples" / "face.jpg"

needs_celeba = pytest.mark.skipif(not (CELEBA / "labels.jsonl").is_file(), reason="needs ../shared/data/celeba-faces")


@pytest.fixture(scope="module")
def ev() -> LandmarkEvaluator:
    return LandmarkEvaluator()


@pytest.fixture(scope="module")
def labelled() -> list[dict]:
    if not (CELEBA / "labels.jsonl").is_file():
        pytest.skip("needs ../shared/data/celeba-faces")
    rows = [json.loads(line) for line in (CELEBA / "labels.jsonl").read_text().splitlines()]
    return [r for r in rows if r["attributes"]]


def _celeba(rows: list[dict]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(CELEBA / r["file"]).convert("RGB")) for r in rows])


def _tensor(arrays: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.array(arrays, dtype=np.float32))
    x = x[..., None] if x.ndim == 3 else x
    return (x.permute(0, 3, 1, 2) - 128) / 127.5


def _example(size: int = 128) -> np.ndarray:
    img = Image.open(EXAMPLE).convert("L")
    return np.asarray(img if size == img.size[0] else img.resize((size, size), Image.Resampling.LANCZOS))


@pytest.fixture(scope="module")
def faces(labelled) -> np.ndarray:
    """12 CelebA faces and the example face, 128 px colour."""
    grey = np.repeat(_example()[..., None], 3, -1)
    return np.concatenate([_celeba(labelled[:12]), grey[None]])


def test_mirroring_flips_yaw_and_roll_and_keeps_pitch(ev, faces):
    x = _tensor(faces)
    m, mm = ev.measure(x), ev.measure(x.flip(-1))
    for k in MEASURES:
        assert torch.isfinite(m[k]).all() and torch.isfinite(mm[k]).all(), k
    turned = m["yaw"].abs() > 4
    assert turned.sum() >= 3  # the test needs faces that are clearly turned
    assert (torch.sign(m["yaw"][turned]) == -torch.sign(mm["yaw"][turned])).all()
    assert (m["yaw"] + mm["yaw"]).abs().median() < 2
    assert (m["roll"] + mm["roll"]).abs().max() < 1.5
    assert (m["pitch"] - mm["pitch"]).abs().median() < 2
    for k in ("mouth_open", "mouth_width", "eye_open", "smile_curve"):  # symmetric measures stay
        assert (m[k] - mm[k]).abs().median() < 0.03, k


def test_mirrored_points_are_the_mirror_image():
    assert sorted(MIRROR_68.tolist()) == list(range(68)) and (MIRROR_68[MIRROR_68] == np.arange(68)).all()
    p = np.random.default_rng(0).uniform(0, 64, (2, 68, 2))
    assert np.allclose(mirror_landmarks(mirror_landmarks(p, 64), 64), p)
    m, mm = LandmarkEvaluator.measure_points(p), LandmarkEvaluator.measure_points(mirror_landmarks(p, 64))
    assert torch.allclose(m["roll"], -mm["roll"], atol=1e-4) and torch.allclose(m["yaw"], -mm["yaw"], atol=1e-3)
    assert torch.allclose(m["pitch"], mm["pitch"], atol=1e-3)


def test_rotating_the_image_changes_roll_by_the_angle(ev, faces):
    before = ev.measure(faces[:8])
    turned = np.stack([np.asarray(Image.fromarray(a).rotate(10, resample=Image.Resampling.BICUBIC)) for a in faces[:8]])
    after = ev.measure(turned)
    d = after["roll"] - before["roll"]
    assert (d - 10).abs().max() < 1.5  # PIL turns counter-clockwise: positive roll
    assert (after["yaw"] - before["yaw"]).abs().median() < 3
    assert (after["pitch"] - before["pitch"]).abs().median() < 3


def test_pose_follows_the_points():
    """Points of the 3D model itself, turned: the fit gets the signs and about the angles back."""
    from latentshop.models.landmarks import FACE_MODEL_3D

    def project(yaw: float, pitch: float) -> np.ndarray:
        a, b = np.radians(yaw), np.radians(pitch)
        ry = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
        rx = np.array([[1, 0, 0], [0, np.cos(b), np.sin(b)], [0, -np.sin(b), np.cos(b)]])
        p = np.zeros((68, 2))
        p[36:42], p[42:48] = (-0.5, -0.55), (0.5, -0.55)  # eye centres on a level line
        for i, xyz in FACE_MODEL_3D.items():
            p[i] = (ry @ rx @ np.array(xyz))[:2]
        return 100 + 50 * p

    for yaw, pitch in ((20.0, 0.0), (0.0, 15.0), (-15.0, -10.0)):
        m = LandmarkEvaluator.measure_points(project(yaw, pitch))
        assert float(m["yaw"]) == pytest.approx(yaw, abs=3) and float(m["pitch"]) == pytest.approx(pitch, abs=3)


@needs_celeba
@pytest.mark.parametrize("attribute, measure", [("Mouth_Slightly_Open", "mouth_open"), ("Smiling", "mouth_width"),
                                                ("Smiling", "smile_curve")])
def test_measures_follow_celeba_labels(ev, labelled, attribute, measure):
    pos = [r for r in labelled if r["attributes"][attribute]][:40]
    neg = [r for r in labelled if not r["attributes"][attribute]][:40]
    m = ev.measure(_tensor(np.concatenate([_celeba(pos), _celeba(neg)])))[measure]
    assert torch.isfinite(m).all()
    a, b = m[:40], m[40:]
    assert float(a.mean()) > float(b.mean()) + 0.05 and float(a.median()) > float(b.median())


def test_uint8_arrays_tensors_and_grayscale_agree(ev):
    grey = _example()
    m_arr = ev.measure(grey)
    m_ten = ev.measure(_tensor(grey[None]))
    m_rgb = ev.measure(np.repeat(grey[..., None], 3, -1))
    for k in MEASURES:
        assert float(m_arr[k]) == pytest.approx(float(m_ten[k]), abs=1e-5)
        assert float(m_arr[k]) == pytest.approx(float(m_rgb[k]), abs=1e-5)
    small = ev.measure(_example(64))  # the 64 px grey model's size
    assert all(torch.isfinite(small[k]).all() for k in MEASURES)
    assert abs(float(small["yaw"] - m_arr["yaw"])) < 4 and abs(float(small["mouth_width"] - m_arr["mouth_width"])) < 0.05


def test_no_face_gives_nan_not_an_error(ev):
    flat = torch.zeros(2, 3, 96, 96)
    flat[1] = torch.from_numpy((_example(96).astype(np.float32) - 128) / 127.5)
    m = ev.measure(flat, aligned=False)
    assert all(torch.isnan(m[k][0]) for k in MEASURES)
    assert all(torch.isfinite(m[k][1]) for k in MEASURES)  # the face is found by the detector
    assert np.isnan(ev.landmarks(flat[:1], aligned=False)).all()
    detecting = LandmarkEvaluator(aligned=False)
    masks = detecting.region_masks(flat, ["mouth"])
    assert masks[0].abs().sum() == 0 and masks[1].sum() > 0
    scores, kinds = detecting.attribute_scores(flat)
    assert set(scores) == set(MEASURES) and set(kinds.values()) == {"value"} and torch.isnan(scores["yaw"][0])


def test_bad_input_raises(ev):
    with pytest.raises(ShapeError):
        ev.measure(torch.zeros(2, 2, 32, 32))
    with pytest.raises(ShapeError):
        ev.measure(torch.full((1, 3, 32, 32), float("nan")))
    with pytest.raises(ShapeError):
        ev.measure(np.zeros((32, 32), dtype=np.float32))
    with pytest.raises(ConfigError, match="unknown region"):
        ev.region_masks(_example(), ["ears"])
    with pytest.raises(ConfigError, match="size"):
        ev.region_masks(np.zeros((1, 68, 2)), ["mouth"])


def _centroid_y(mask: torch.Tensor) -> float:
    ys = torch.arange(mask.shape[-2], dtype=torch.float32)[:, None]
    return float((mask * ys).sum() / mask.sum())


def test_region_masks(ev, faces):
    masks = ev.region_masks(faces[:4], REGIONS)
    assert masks.shape == (4, len(REGIONS), 128, 128) and masks.dtype == torch.float32
    assert masks.min() >= 0 and masks.max() <= 1 and ((masks > 0) & (masks < 1)).any()  # soft edges
    r = {name: masks[:, i] for i, name in enumerate(REGIONS)}
    for i in range(4):
        assert _centroid_y(r["mouth"][i]) > _centroid_y(r["nose"][i]) > _centroid_y(r["eyes"][i]) > _centroid_y(r["brows"][i])
        for part in ("eyes", "brows", "nose", "mouth"):  # the face covers the parts
            inside = (r[part][i] * r["face"][i]).sum() / r[part][i].sum()
            assert inside > 0.97, part
    face_share = float(r["face"].mean())
    assert 0.2 < face_share < 0.6  # an aligned face fills a good part of the crop, not all of it
    union = ev.part_masks(_tensor(faces[:4]), ["eyes", "mouth"])
    assert union.shape == (4, 1, 128, 128)
    assert torch.allclose(union[:, 0], torch.maximum(r["eyes"], r["mouth"]), atol=1e-6)
    assert ev.part_masks(_tensor(faces[:1]), []).abs().sum() == 0 and ev.parts == list(REGIONS)
    # from points: the same masks
    pts = ev.landmarks(faces[:1])
    assert torch.allclose(ev.region_masks(pts, REGIONS, size=128), masks[:1], atol=1e-6)


def test_masks_agree_across_resolutions(ev):
    big, small = _example(256), _example(64)
    a = ev.region_masks(big, REGIONS)[0] > 0.5
    b = ev.region_masks(small, REGIONS, size=256)[0] > 0.5
    for i, name in enumerate(REGIONS):
        iou = float((a[i] & b[i]).sum() / (a[i] | b[i]).sum())
        assert iou > 0.8, (name, iou)
    up = torch.nn.functional.interpolate(ev.region_masks(small, REGIONS), size=(256, 256), mode="bilinear") > 0.5
    assert float((up[0] & a).sum() / (up[0] | a).sum()) > 0.8


def test_convex_hull():
    pts = np.random.default_rng(1).normal(size=(200, 2))
    hull = convex_hull(pts)
    edges = np.roll(hull, -1, 0) - hull
    cross = edges[:, None, 0] * (pts[None, :, 1] - hull[:, None, 1]) - edges[:, None, 1] * (pts[None, :, 0] - hull[:, None, 0])
    assert (cross >= -1e-9).all()  # every point on the inner (left) side of every edge


def test_load_by_name_and_attribute_scores(faces):
    assert "landmarks" in list_evaluators()
    net = load_evaluator("landmarks")
    assert isinstance(net, LandmarkEvaluator) and net.kind == "landmarks" and isinstance(net.metrics, dict)
    scores, kinds = attribute_scores(net, _tensor(faces[:2]))  # directions dispatch to the evaluator's own method
    assert set(scores) == set(MEASURES) and all(v.shape == (2,) for v in scores.values())
    assert set(kinds.values()) == {"value"}
    out = net(_tensor(faces[:2]))
    assert out.shape == (2, len(MEASURES)) and torch.allclose(out[:, 0], scores["yaw"])


class _PartlyBlindEvaluator(torch.nn.Module):
    """Scores 'bright' (mean of the left half) but cannot measure the brightest third (NaN); 'blind'
    is never measured."""

    def attribute_scores(self, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        bright = images[..., : images.shape[-1] // 2].float().mean((1, 2, 3))
        seen = bright.clone()
        seen[bright > 0.15] = float("nan")
        return {"bright": seen, "blind": torch.full_like(bright, float("nan"))}, {"bright": "value", "blind": "value"}


def test_interfacegan_leaves_out_unmeasured_samples():
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()
    found = interfacegan(G, _PartlyBlindEvaluator(), n=1500, ratio=0.2, seed=0, batch=500)
    assert found.names == ("bright",)
    stats = found.meta["stats"]
    assert stats["blind"]["unmeasured"] == 1500 and "skipped" in stats["blind"]
    b = stats["bright"]
    assert 150 < b["unmeasured"] < 1350  # the test needs both measured and unmeasured samples
    assert b["per_side"] == int(0.2 * (1500 - b["unmeasured"]))
    assert np.isfinite(b["score_high"]) and b["score_high"] <= 0.15 and b["val_accuracy"] > 0.8
    assert torch.isfinite(found.vectors).all()
