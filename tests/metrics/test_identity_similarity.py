"""Identity similarity with dlib's face-recognition ResNet on lfw-faces (aligned, grayscale, 128 px)."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SHARED
from latentshop.data.align import NoFaceError
from latentshop.errors import ShapeError
from latentshop.metrics.identity import (
    SAME_PERSON_DISTANCE,
    face_embedding,
    face_embeddings,
    identity_distance,
    identity_distances,
    identity_similarities,
    identity_similarity,
)

LFW = SHARED / "data" / "lfw-faces"


@pytest.fixture(scope="module")
def people() -> dict[str, list]:
    """Four test-split persons with at least two photos each: {person: [path, path]}."""
    if not (LFW / "labels.jsonl").is_file():
        pytest.skip("../shared/data/lfw-faces is not present")
    by = collections.defaultdict(list)
    for line in (LFW / "labels.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["person"] and rec["split"] == "test":
            by[rec["person"]].append(LFW / rec["file"])
    names = sorted(p for p, files in by.items() if len(files) >= 2)[:4]
    return {p: sorted(by[p])[:2] for p in names}


def as_tensor(path, res: int) -> torch.Tensor:
    """A file as (1, res, res) in [-1, 1], like a 1-channel generator's output."""
    a = np.asarray(Image.open(path).convert("L").resize((res, res), Image.Resampling.LANCZOS), dtype=np.float32)
    return torch.from_numpy(a)[None] / 127.5 - 1


def test_same_image_is_one(people):
    path = next(iter(people.values()))[0]
    e = face_embedding(path)
    assert e.shape == (128,) and e.dtype == np.float64 and np.isfinite(e).all()
    assert identity_similarity(path, path) == pytest.approx(1.0, abs=1e-6)
    assert identity_distance(path, path) == pytest.approx(0.0, abs=1e-6)


def test_same_person_closer_than_different_people(people):
    names = list(people)
    emb = {p: face_embeddings(people[p]) for p in names}  # (2, 128) per person
    cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    same = [cos(*emb[p]) for p in names]
    different = [cos(emb[a][0], emb[b][0]) for i, a in enumerate(names) for b in names[i + 1:]]
    assert np.mean(same) > np.mean(different) + 0.05, (same, different)
    assert min(same) > max(different) - 0.02
    same_d = [np.linalg.norm(emb[p][0] - emb[p][1]) for p in names]
    assert np.mean(same_d) < SAME_PERSON_DISTANCE


def test_small_gray_tensors_batched(people):
    """64 px grayscale tensors, as the default model makes them: upsampled, with the aligned fallback."""
    names = list(people)
    a = torch.stack([as_tensor(people[p][0], 64) for p in names])  # (N, 1, 64, 64)
    b = torch.stack([as_tensor(people[p][1], 64) for p in names])
    b_shuffled = b[[1, 2, 3, 0]]
    sim_same = identity_similarities(a, b)
    sim_diff = identity_similarities(a, b_shuffled)
    assert sim_same.shape == (4,) and sim_same.mean() > sim_diff.mean() + 0.05
    dist = identity_distances(a, b)
    np.testing.assert_allclose(dist[0], identity_distance(a[0], b[0]), rtol=1e-5, atol=1e-6)
    # the batch equals one image at a time; uint8 arrays (N, H, W, C) give the same as tensors
    np.testing.assert_allclose(sim_same[1], identity_similarity(a[1], b[1]), rtol=1e-5, atol=1e-6)
    u8 = ((a.permute(0, 2, 3, 1) + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
    np.testing.assert_allclose(face_embeddings(u8)[0], face_embedding(a[0]), atol=0.05)
    with pytest.raises(ShapeError):
        identity_similarities(a, b[:2])


def test_aligned_fallback_and_strict_mode():
    blank = np.full((64, 64), 128, np.uint8)  # no face to detect
    e = face_embedding(blank)  # falls back to the FFHQ-aligned face box
    assert e.shape == (128,) and np.isfinite(e).all()
    np.testing.assert_allclose(e, face_embedding(blank, aligned=True))
    with pytest.raises(NoFaceError, match="aligned=True"):
        face_embedding(blank, aligned=False)
