"""Edit measures: the evaluator-based ``edit_effect`` and the landmark geometry that checks it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from latentshop.errors import ShapeError
from latentshop.metrics.edits import LANDMARKS_AWAY_FROM_MOUTH, edit_effect, landmark_edit_effect, mouth_geometry

REPO = Path(__file__).resolve().parents[2]


def _face(width: float = 8.0, opening: float = 2.0, lift: float = 0.0, dx: float = 0.0) -> np.ndarray:
    """68 landmarks with outer eye corners 10 px apart, a mouth of the given width, inner-lip gap and
    corner lift (px), and everything away from the mouth moved right by ``dx``."""
    pts = np.zeros((68, 2))
    pts[:48] = np.stack([np.linspace(0, 10, 48), np.linspace(0, 12, 48)], 1)  # anything, as long as it is fixed
    pts[36], pts[45] = (0.0, 5.0), (10.0, 5.0)
    pts[[i for i in range(6, 11)], 0] += 100.0  # the chin: not part of the shift measure
    pts[list(LANDMARKS_AWAY_FROM_MOUTH), 0] += dx
    centre = 20.0
    pts[48], pts[54] = (5 - width / 2, centre - lift), (5 + width / 2, centre - lift)
    pts[61:64] = [(4, centre - opening / 2), (5, centre - opening / 2), (6, centre - opening / 2)]
    pts[65:68] = [(6, centre + opening / 2), (5, centre + opening / 2), (4, centre + opening / 2)]
    return pts


def test_mouth_geometry_in_interocular_units():
    g = mouth_geometry(np.stack([_face(8, 2, 0), _face(6, 0, 1.5)]))
    assert torch.allclose(g["mouth_width"], torch.tensor([0.8, 0.6], dtype=torch.float64))
    assert torch.allclose(g["mouth_opening"], torch.tensor([0.2, 0.0], dtype=torch.float64))
    assert torch.allclose(g["corner_lift"], torch.tensor([0.0, 0.15], dtype=torch.float64))
    assert torch.allclose(g["interocular"], torch.tensor([10.0, 10.0], dtype=torch.float64))
    # twice the size, same face: the same numbers
    g2 = mouth_geometry(2 * np.stack([_face(8, 2, 0)]))
    assert torch.allclose(g2["mouth_width"], g["mouth_width"][:1])


def _by_level(faces: dict[float, np.ndarray]):
    """A landmark 'detector' for images of one grey level each: level -> landmarks."""
    def landmarks(images: torch.Tensor) -> np.ndarray:
        return np.stack([faces[round(float(img.mean()), 3)] for img in images])
    return landmarks


def _images(*levels: float) -> torch.Tensor:
    return torch.stack([torch.full((1, 8, 8), v) for v in levels])


def test_smile_without_leakage_is_measured_exactly():
    # -s: a closed, narrow mouth; +s: wider by 2 px, open by 1 px, corners up by 1 px; nothing else moves
    lm = _by_level({-0.5: _face(6, 0, 0), 0.5: _face(8, 1, 1)})
    m = landmark_edit_effect(_images(-0.5, -0.5), _images(0.5, 0.5), strength=2.0, landmarks=lm)
    assert math.isclose(m["mouth_width_change"], 0.2 / 4)
    assert math.isclose(m["mouth_opening_change"], 0.1 / 4)
    assert math.isclose(m["corner_lift_change"], 0.1 / 4)
    assert m["away_from_mouth_shift"] == 0.0 and m["landmark_faces"] == 2


def test_leakage_is_the_shift_away_from_the_mouth():
    # the mouth stays, the rest of the face moves 3 px: 0.3 inter-ocular distances over a span of 2
    lm = _by_level({-0.5: _face(), 0.5: _face(dx=3.0)})
    m = landmark_edit_effect(_images(-0.5), _images(0.5), strength=1.0, landmarks=lm)
    assert m["mouth_width_change"] == 0.0 and m["mouth_opening_change"] == 0.0
    assert math.isclose(m["away_from_mouth_shift"], 0.3 / 2)


def test_faces_without_landmarks_are_left_out():
    lost = np.full((68, 2), np.nan)
    lm = _by_level({-0.5: _face(6), 0.5: _face(8), 0.25: lost, -0.25: _face(6)})
    m = landmark_edit_effect(_images(-0.5, -0.25), _images(0.5, 0.25), strength=1.0, landmarks=lm)
    assert m["landmark_faces"] == 1 and math.isclose(m["mouth_width_change"], 0.1)
    none = landmark_edit_effect(_images(0.25), _images(0.25), strength=1.0, landmarks=lm)
    assert none["landmark_faces"] == 0 and math.isnan(none["mouth_width_change"])


def test_bad_landmarks_raise():
    with pytest.raises(ShapeError, match=r"\[2, 68, 2\]"):
        landmark_edit_effect(_images(0, 0), _images(0, 0), strength=1.0, landmarks=lambda imgs: np.zeros((2, 5, 2)))
    with pytest.raises(ShapeError, match="one shape"):
        landmark_edit_effect(_images(0), _images(0, 0), strength=1.0, landmarks=lambda imgs: np.zeros((len(imgs), 68, 2)))


def test_dlib_landmarks_see_a_moved_face_as_leakage():
    """With dlib's shape predictor on a real face: the same face scores zero; the face moved 16 px
    (at 256 px) keeps its mouth and shows the shift away from the mouth."""
    pytest.importorskip("dlib")
    from PIL import Image

    from latentshop.data.align import detect_faces

    face = np.asarray(Image.open(REPO / "examples" / "face.jpg").convert("L").resize((256, 256), Image.Resampling.LANCZOS))
    moved = np.zeros_like(face)
    moved[:, 16:] = face[:, :-16]
    pictures = {0.0: face, 1.0: moved}

    def landmarks(images: torch.Tensor) -> np.ndarray:  # the images only say which picture to look at
        return np.stack([detect_faces(pictures[float(img.mean())])[0].landmarks for img in images])

    same = landmark_edit_effect(_images(0.0), _images(0.0), strength=1.0, landmarks=landmarks)
    assert same["mouth_width_change"] == 0.0 and same["away_from_mouth_shift"] == 0.0
    m = landmark_edit_effect(_images(0.0), _images(1.0), strength=1.0, landmarks=landmarks)
    iod = float(mouth_geometry(landmarks(_images(0.0)))["interocular"][0])
    assert m["away_from_mouth_shift"] == pytest.approx(16 / iod / 2, rel=0.25)
    assert abs(m["mouth_width_change"]) < 0.02 and abs(m["mouth_opening_change"]) < 0.02


def test_edit_effect_outside_to_inside():
    lo, hi = torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    hi[..., :2] = 0.4  # inside the part
    hi[..., 3] = 0.1  # outside it
    region = torch.zeros(1, 1, 4, 4)
    region[..., :2] = 1
    m = edit_effect(lo, hi, {"a": torch.zeros(1)}, {"a": torch.ones(1)}, target="a", strength=1.0, ranges={"a": 1.0}, region=region)
    assert math.isclose(m["inside_change"], 0.4 * 127.5 / 2, rel_tol=1e-6)
    assert math.isclose(m["outside_to_inside"], (0.1 / 2) / 0.4, rel_tol=1e-6)  # half the outside pixels moved by 0.1
