"""FFHQ face alignment on real photos (``../shared/data/faces``, ``../shared/data/lfw-faces``), paste-back
and the alignment JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED
from latentshop.data.align import (
    AlignedFace,
    NoFaceError,
    align_face,
    detect_faces,
    face_quad,
    load_alignment,
    paste_back,
    save_alignment,
)
from latentshop.errors import ConfigError, ImageError

FACES = SHARED / "data" / "faces"
LFW = SHARED / "data" / "lfw-faces"
TWO_FACES = "GFPGAN__inputs_whole_imgs_Blake_Lively.jpg"  # 700 x 464, two faces, the larger one near the top
IN_THE_WILD = ["deepface__tests_unit_dataset_img51.jpg", TWO_FACES]


def photo(name: str):
    path = FACES / name
    if not path.is_file():
        pytest.skip(f"{path} is not present (../shared/data/faces is beside the checkout)")
    return path


def eye_centres(landmarks: np.ndarray) -> np.ndarray:
    """Continuous coordinates ``(2, 2)`` of the left and right eye centres."""
    return np.stack([landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)]) + 0.5


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


@pytest.mark.parametrize("name", IN_THE_WILD)
def test_in_the_wild_eyes_land_at_ffhq_positions(name):
    face = align_face(photo(name), res=256)
    assert face.image.size == (256, 256) and face.image.mode == "RGB"
    found = detect_faces(face.image)
    assert len(found) >= 1
    eyes = eye_centres(found[0].landmarks) / 256
    # where the transform says the photo's eyes must land, and FFHQ's canonical place (eyes level,
    # symmetric about the middle, a quarter of the side apart, a little above the centre)
    expected = face.to_aligned(eye_centres(face.landmarks)) / 256
    np.testing.assert_allclose(eyes, expected, atol=0.02)
    np.testing.assert_allclose(eyes, [[0.375, 0.475], [0.625, 0.475]], atol=0.03)


def test_quad_follows_the_ffhq_recipe():
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48] = (40.0, 50.0), (60.0, 50.0)  # eyes 20 px apart
    lm[48], lm[54] = (42.0, 70.0), (58.0, 70.0)  # mouth 20 px below the eyes
    quad = face_quad(lm)
    # half side max(2.0 * 20, 1.8 * 20) = 40, centre 0.1 of the way from eyes to mouth: (50, 52)
    np.testing.assert_allclose(quad, [[10, 12], [10, 92], [90, 92], [90, 12]])
    lm[48:55, 1] = 100.0  # mouth 50 px below: 1.8 * 50 = 90 wins, the centre moves 5 px down
    np.testing.assert_allclose(face_quad(lm), [[-40, -35], [-40, 145], [140, 145], [140, -35]])
    # a face turned by 30 degrees gives the same square turned by 30 degrees
    t = np.deg2rad(30)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    np.testing.assert_allclose(face_quad(lm @ rot.T), face_quad(lm) @ rot.T, atol=1e-9)


def test_shrunk_crop_keeps_the_transform_exact():
    """A large face at res=64 goes through FFHQ's integer shrink; the stored quad stays in photo pixels."""
    path = photo("deepface__tests_unit_dataset_img13.jpg")  # 2048 x 1364, face of about 450 px
    face = align_face(path, res=64)
    unshrunk = face_quad(face.landmarks) + 0.5
    side = np.hypot(*(unshrunk[3] - unshrunk[0]))
    assert side / 64 * 0.5 >= 2  # the shrink path ran
    np.testing.assert_allclose(face.quad, unshrunk, atol=0.01 * side)
    assert face.photo_size == (2048, 1364) and not face.padded


def test_already_aligned_face_is_nearly_unchanged():
    names = ["Aaron_Eckhart_0001", "Aaron_Patterson_0001", "Aaron_Peirsol_0004", "Abdel_Madi_Shabneh_0001"]
    corr = []
    for name in names:
        path = LFW / "images" / f"{name}.jpg"
        if not path.is_file():
            pytest.skip("../shared/data/lfw-faces is not present")
        face = align_face(path, res=128)  # 128 px: found only by the upsampled second pass
        assert face.image.mode == "L" and face.image.size == (128, 128)
        a = np.asarray(Image.open(path), dtype=np.float64).ravel()
        corr.append(np.corrcoef(a, np.asarray(face.image, dtype=np.float64).ravel())[0, 1])
        np.testing.assert_allclose(face.quad, [[0, 0], [0, 128], [128, 128], [128, 0]], atol=4)
    assert min(corr) > 0.98, corr


@pytest.mark.parametrize("kind", ["blank", "noise"])
def test_no_face_raises_naming_the_file(tmp_path, kind):
    rng = np.random.default_rng(0)
    pixels = np.full((240, 320, 3), 128, np.uint8) if kind == "blank" else rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    path = tmp_path / f"{kind}.png"
    Image.fromarray(pixels).save(path)
    with pytest.raises(NoFaceError, match=f"{kind}.png: no face found") as info:
        align_face(path, res=64)
    assert isinstance(info.value, ImageError) and "--no-align" in str(info.value)
    with pytest.raises(NoFaceError, match="no face found"):
        align_face(pixels, res=64)


def test_several_faces_largest_first():
    path = photo(TWO_FACES)
    faces = align_face(path, res=64, all_faces=True)
    assert isinstance(faces, list) and len(faces) == 2
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces]
    assert areas == sorted(areas, reverse=True)
    largest = align_face(path, res=64)
    assert isinstance(largest, AlignedFace) and largest.box == faces[0].box
    np.testing.assert_array_equal(np.asarray(largest.image), np.asarray(faces[0].image))
    assert faces[0].source == str(path)


def test_channels_luma_and_repeat():
    pil = Image.open(photo(IN_THE_WILD[0])).convert("RGB")
    rgb = align_face(pil, res=64)
    gray = align_face(pil, res=64, channels=1)
    assert rgb.image.mode == "RGB" and gray.image.mode == "L"
    luma = np.asarray(rgb.image.convert("L"), dtype=np.float64)
    assert np.abs(luma - np.asarray(gray.image, dtype=np.float64)).mean() < 1.5
    from_gray = align_face(pil.convert("L"), res=64, channels=3)
    a = np.asarray(from_gray.image)
    assert from_gray.image.mode == "RGB" and (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
    with pytest.raises(ConfigError, match="channels"):
        align_face(pil, res=64, channels=2)


def test_paste_back_round_trip():
    path = photo(TWO_FACES)
    original = np.asarray(Image.open(path).convert("RGB"))
    face = align_face(path, res=512)  # about the face square's size in the photo: little resampling loss
    assert face.padded  # the square leaves the photo at the top
    out = np.asarray(paste_back(path, face.image, face))
    x0, y0, x1, y1 = face.box
    assert psnr(out[y0:y1, x0:x1], original[y0:y1, x0:x1]) > 35
    # outside the square's bounding box nothing changes
    q = face.quad
    outside = np.ones(original.shape[:2], bool)
    outside[max(int(q[:, 1].min()), 0):int(np.ceil(q[:, 1].max())), max(int(q[:, 0].min()), 0):int(np.ceil(q[:, 0].max()))] = False
    np.testing.assert_array_equal(out[outside], original[outside])


def test_paste_back_gray_edit_keeps_the_photos_colours():
    path = photo(TWO_FACES)
    face = align_face(path, res=256, channels=1)
    edited = Image.fromarray(255 - np.asarray(face.image))  # a drastic grayscale "edit": the negative
    out = paste_back(path, edited, face, feather=0.05)
    assert out.mode == "RGB"
    x0, y0, x1, y1 = face.box
    before = np.asarray(Image.open(path).convert("YCbCr"), dtype=np.float64)[y0:y1, x0:x1]
    after = np.asarray(out.convert("YCbCr"), dtype=np.float64)[y0:y1, x0:x1]
    assert np.abs(after[..., 0] - before[..., 0]).mean() > 40  # the luma is the edit's
    # the chroma stays the photo's, except where a clipped channel could not take the new luma
    assert np.median(np.abs(after[..., 1:] - before[..., 1:])) <= 2


def test_alignment_json_round_trip(tmp_path):
    path = photo(IN_THE_WILD[0])
    face = align_face(path, res=64)
    again = AlignedFace.from_json(face.to_json())
    assert again.image is None and again.res == 64 and again.photo_size == face.photo_size
    assert again.box == face.box and again.source == str(path) and again.padded == face.padded
    np.testing.assert_array_equal(again.quad, face.quad)
    np.testing.assert_array_equal(again.landmarks, face.landmarks)
    file = save_alignment(face, tmp_path / "face.align.json")
    loaded = load_alignment(file)
    np.testing.assert_array_equal(loaded.quad, face.quad)
    a = np.asarray(paste_back(path, face.image, face))
    b = np.asarray(paste_back(path, face.image, loaded))
    np.testing.assert_array_equal(a, b)
    # the two coordinate maps are inverses
    pts = np.array([[0.0, 0.0], [32.0, 40.0], [64.0, 64.0]])
    np.testing.assert_allclose(face.to_aligned(face.to_photo(pts)), pts, atol=1e-9)
    bad = json.loads(face.to_json())
    bad["quad"] = bad["quad"][:3]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="bad.json"):
        load_alignment(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="aligned in a"):
        paste_back(Image.new("RGB", (10, 10)), face.image, face)
