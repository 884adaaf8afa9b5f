"""data/synthetic.py: determinism, shapes, part masks, local factor effects, antialiasing, dataset writing."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

import latentshop.data.synthetic as synthetic
from latentshop.data.synthetic import (
    DOMAINS,
    FACTORS,
    PART_NAMES,
    PATTERNS,
    render,
    render_batch,
    sample_factors,
    write_synthetic_dataset,
)
from latentshop.errors import ConfigError

PART = {name: i for i, name in enumerate(PART_NAMES)}
SEEDS = (0, 1, 2, 3, 4, 5)


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation of ``[H, W]`` by a ``(2r+1)^2`` square."""
    h, w = mask.shape
    padded = np.pad(mask, r)
    out = np.zeros_like(mask)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= padded[dy : dy + h, dx : dx + w]
    return out


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a != b).any(axis=-1)


def assert_local(a: np.ndarray, b: np.ndarray, region: np.ndarray, what: str) -> None:
    """Images ``a`` and ``b`` differ only on ``region`` (plus its antialiased border).

    Thin slivers and tips of a part (under half a pixel wide) are labelled with the part below
    but still blend in the part's colour, so a few pixels near the part may change, and
    antialiased cracks between other parts may leak a rounding-level change further away.
    """
    d = np.abs(a.astype(np.int16) - b).max(axis=-1)
    stray = (d > 0) & ~dilate(region, 1)
    assert stray.mean() < 0.005, f"{what}: {stray.sum()} pixels changed outside the part"
    far = ~dilate(region, 3)
    assert d[far].max(initial=0) <= 3, f"{what}: a pixel far from the part changed by {d[far].max()} levels"


def luminance(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def test_same_seed_same_face_and_different_seeds_differ():
    a, b, c = render(7), render(7), render(8)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks) and a.factors == b.factors
    assert a.seed == 7 and a.domain == "photo"
    assert a.factors != c.factors
    assert changed(a.image, c.image).mean() > 0.1


def test_factors_are_complete_plain_and_in_range():
    rng = np.random.default_rng(123)
    seen_patterns, seen_glasses, seen_beard = set(), set(), set()
    for _ in range(200):
        f = sample_factors(rng)
        assert list(f) == list(FACTORS)
        for name, value in f.items():
            fac = FACTORS[name]
            if fac.kind == "float":
                assert type(value) is float and fac.low <= value <= fac.high, (name, value)
            elif fac.kind == "bool":
                assert type(value) is bool
            else:
                assert type(value) is str and value in fac.choices
        seen_patterns.add(f["clothing_pattern"])
        seen_glasses.add(f["glasses"])
        seen_beard.add(f["beard"] > 0)
    assert seen_patterns == set(PATTERNS) and seen_glasses == {True, False} and seen_beard == {True, False}
    assert json.loads(json.dumps(f)) == f


def test_overrides_keep_every_other_factor():
    base = render(11).factors
    edited = render(11, factors={"smile": 1.0, "clothing_pattern": "dots"}).factors
    assert edited == {**base, "smile": 1.0, "clothing_pattern": "dots"}


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("res", [32, 64, 256])
def test_shapes_dtypes_and_valid_labels(domain, res):
    face = render(2, res=res, domain=domain)
    assert face.image.shape == (res, res, 3) and face.image.dtype == np.uint8
    assert face.masks.shape == (res, res) and face.masks.dtype == np.uint8
    assert face.masks.max() < len(PART_NAMES)
    present = {PART_NAMES[i] for i in np.unique(face.masks)}
    assert {"background", "skin", "hair", "brows", "mouth", "clothing"} <= present
    images, factors, masks = render_batch([2, 3], res=res, domain=domain)
    assert images.shape == (2, res, res, 3) and masks.shape == (2, res, res) and images.dtype == masks.dtype == np.uint8
    assert np.array_equal(images[0], face.image) and np.array_equal(masks[0], face.masks) and factors[0] == face.factors


@pytest.mark.parametrize("domain", DOMAINS)
def test_glasses_and_beard_masks_present_iff_factor(domain):
    for seed in SEEDS:
        for glasses in (False, True):
            for beard in (0.0, 0.05, 0.8):
                face = render(seed, res=32, domain=domain, factors={"glasses": glasses, "beard": beard})
                assert (face.masks == PART["glasses"]).any() == glasses, (seed, glasses, beard)
                assert (face.masks == PART["beard"]).any() == (beard > 0), (seed, glasses, beard)


@pytest.mark.parametrize("domain", DOMAINS)
def test_smile_changes_only_the_mouth_region(domain):
    for seed in SEEDS:
        a = render(seed, domain=domain, factors={"smile": 1.0})
        b = render(seed, domain=domain, factors={"smile": -1.0})
        mouth = (a.masks == PART["mouth"]) | (b.masks == PART["mouth"])
        diff = changed(a.image, b.image)
        assert diff.sum() > 20
        assert not (diff & ~dilate(mouth, 2)).any(), f"seed {seed}: smile changed pixels away from the mouth"
        assert np.array_equal(a.masks[~dilate(mouth, 1)], b.masks[~dilate(mouth, 1)])


@pytest.mark.parametrize("domain", DOMAINS)
def test_hair_colour_changes_only_hair_brows_and_beard(domain):
    for seed in SEEDS:
        a = render(seed, domain=domain, factors={"hair_colour": 0.0})
        b = render(seed, domain=domain, factors={"hair_colour": 1.0})
        assert np.array_equal(a.masks, b.masks)
        hairy = np.isin(a.masks, [PART["hair"], PART["brows"], PART["beard"]])
        diff = changed(a.image, b.image)
        assert diff[a.masks == PART["hair"]].mean() > 0.75  # toon/caricature outlines keep their colour
        assert_local(a.image, b.image, hairy, f"seed {seed}")


@pytest.mark.parametrize("domain", DOMAINS)
def test_background_hue_changes_only_the_background(domain):
    for seed in SEEDS:
        a = render(seed, domain=domain, factors={"background_hue": 0.1})
        b = render(seed, domain=domain, factors={"background_hue": 0.6})
        assert np.array_equal(a.masks, b.masks)
        background = a.masks == PART["background"]
        diff = changed(a.image, b.image)
        assert diff[background].mean() > 0.95
        assert_local(a.image, b.image, background, f"seed {seed}")


@pytest.mark.parametrize("domain", DOMAINS)
def test_eye_open_and_hair_length_grow_their_parts(domain):
    for seed in SEEDS:
        eyes = [
            (render(seed, domain=domain, factors={"eye_open": v, "glasses": False}).masks == PART["eyes"]).sum()
            for v in (0.0, 0.3, 0.6, 1.0)
        ]
        assert all(x < y for x, y in zip(eyes, eyes[1:])), (seed, eyes)
        hair = [(render(seed, domain=domain, factors={"hair_length": v}).masks == PART["hair"]).sum() for v in (0.0, 0.33, 0.66, 1.0)]
        assert all(x < y for x, y in zip(hair, hair[1:])), (seed, hair)


@pytest.mark.parametrize("domain", DOMAINS)
def test_skin_tone_orders_skin_luminance(domain):
    for seed in SEEDS:
        faces = [render(seed, domain=domain, factors={"skin_tone": v}) for v in (0.0, 0.5, 1.0)]
        lum = [luminance(f.image[f.masks == PART["skin"]]).mean() for f in faces]
        assert lum[0] > lum[1] > lum[2], (seed, lum)


def test_edges_are_antialiased():
    # Toon colours are flat, so without antialiasing the pixels on part boundaries would take
    # the colours of the parts' interiors; with it most of them are in between.
    face = render(4, res=64, domain="toon", factors={"clothing_pattern": "none", "age": 0.0})
    m = face.masks
    edge = np.zeros_like(m, dtype=bool)
    edge[:, 1:] |= m[:, 1:] != m[:, :-1]
    edge[:, :-1] |= m[:, 1:] != m[:, :-1]
    edge[1:] |= m[1:] != m[:-1]
    edge[:-1] |= m[1:] != m[:-1]
    interior = ~dilate(edge, 1)
    colours = face.image.reshape(-1, 3).astype(np.int32) @ np.array([1, 256, 65536])
    interior_colours = set(np.unique(colours[interior.ravel()]).tolist())
    edge_colours = colours[edge.ravel()]
    fresh = np.array([c not in interior_colours for c in edge_colours.tolist()])
    assert edge.sum() > 100 and fresh.mean() > 0.5
    assert len(np.unique(colours)) > 100


def test_bad_arguments_raise_config_error():
    with pytest.raises(ConfigError, match="photo, toon, caricature"):
        render(0, domain="anime")
    with pytest.raises(ConfigError, match="smile"):
        render(0, factors={"grin": 1.0})
    with pytest.raises(ConfigError, match=r"\[-1, 1\]"):
        render(0, factors={"smile": 1.5})
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        render(0, factors={"eye_open": float("nan")})
    with pytest.raises(ConfigError, match="bool"):
        render(0, factors={"glasses": "yes"})
    with pytest.raises(ConfigError, match="stripes"):
        render(0, factors={"clothing_pattern": "plaid"})
    for res in (16, 300, 64.0, True):
        with pytest.raises(ConfigError, match="32 to 256"):
            render(0, res=res)
    with pytest.raises(ConfigError, match="seed"):
        render(-1)
    with pytest.raises(ConfigError, match="one per seed"):
        render_batch([0, 1], res=32, factors=[{"smile": 0.0}])
    with pytest.raises(ConfigError, match="n must be"):
        write_synthetic_dataset("unused", n=0, res=32)


def test_render_batch_overrides_and_workers():
    seeds = [5, 9, 12]
    per_seed = [{"smile": 1.0}, None, {"glasses": True}]
    images, factors, masks = render_batch(seeds, res=32, domain="toon", factors=per_seed)
    for i, (seed, o) in enumerate(zip(seeds, per_seed)):
        face = render(seed, res=32, domain="toon", factors=o)
        assert np.array_equal(images[i], face.image) and np.array_equal(masks[i], face.masks) and factors[i] == face.factors
    pooled = render_batch(seeds, res=32, domain="toon", factors=per_seed, workers=2)
    assert np.array_equal(pooled[0], images) and pooled[1] == factors and np.array_equal(pooled[2], masks)


def test_write_synthetic_dataset_round_trip(tmp_path):
    out = write_synthetic_dataset(tmp_path / "ds", n=4, res=32, domain="caricature", start_seed=10, progress=False)
    assert out == tmp_path / "ds"
    assert sorted(os.listdir(tmp_path)) == ["ds"]  # the temporary folder was renamed, nothing left over
    names = [f"img{s:06d}.png" for s in range(10, 14)]
    assert sorted(os.listdir(out)) == sorted(names + ["labels.json"])
    labels = json.loads((out / "labels.json").read_text())
    assert labels["domain"] == "caricature" and labels["res"] == 32 and labels["part_names"] == list(PART_NAMES)
    assert sorted(labels["factors"]) == names
    for seed, name in zip(range(10, 14), names):
        face = render(seed, res=32, domain="caricature")
        assert labels["factors"][name] == face.factors
        assert np.array_equal(np.asarray(Image.open(out / name).convert("RGB")), face.image)

    # A re-run over the complete folder does nothing; a different request is refused.
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert write_synthetic_dataset(out, n=4, res=32, domain="caricature", start_seed=10, progress=False) == out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamp
    with pytest.raises(ConfigError, match="already exists"):
        write_synthetic_dataset(out, n=5, res=32, domain="caricature", start_seed=10, progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(ConfigError, match="already exists"):
        write_synthetic_dataset(tmp_path / "other", n=1, res=32, progress=False)


def test_write_synthetic_dataset_failure_leaves_nothing(tmp_path, monkeypatch):
    real = synthetic.render
    calls = []

    def failing(seed, **kwargs):
        calls.append(seed)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return real(seed, **kwargs)

    monkeypatch.setattr(synthetic, "render", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_synthetic_dataset(tmp_path / "ds", n=5, res=32, progress=False)
    assert os.listdir(tmp_path) == []


def test_speed_benchmark_quick(tmp_path):
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "synthetic_speed.py"
    spec = importlib.util.spec_from_file_location("synthetic_speed", path)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    out = bench.main(["--quick", "--resolutions", "32", "64", "--out-dir", str(tmp_path)])
    data = json.loads((tmp_path / "synthetic_speed.json").read_text())
    assert data == json.loads(json.dumps(out))
    assert {(r["domain"], r["res"]) for r in data["results"]} == {(d, r) for d in DOMAINS for r in (32, 64)}
    assert all(r["images_per_s"] > 0 for r in data["results"]) and len(data["targets"]) == 3
    for key in ("cpu", "numpy", "torch", "python", "date"):
        assert key in data["machine"]
    assert "| toon | 64 |" in (tmp_path / "synthetic_speed.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic_speed.json", "synthetic_speed.md"]
