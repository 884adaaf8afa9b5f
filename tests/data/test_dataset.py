"""``latentshop.data.dataset``: preparing a folder of messy images, and reading datasets back."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SHARED
from latentshop.data import dataset as dataset_mod
from latentshop.data.dataset import ImageFolderDataset, prepare_images, shard_indices
from latentshop.errors import ConfigError, ImageError

RES = 32
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)

# file -> the reason kind it must be skipped for (absent: it must be written)
EXPECTED_SKIPS = {"empty.png": "empty", "text.png": "not-an-image", "tiny.png": "too-small", "truncated.jpg": "corrupt"}
EXPECTED_WRITTEN = [
    "big.png", "cmyk.jpg", "exif.jpg", "gray.png", "i16.png", "pal.png", "rgb.png", "rgba.png", "sub/nested.png"
]  # fmt: skip


def _exif_marker_image() -> Image.Image:
    """Stored 60 wide x 40 high, green, with a red block at the stored top-left corner."""
    a = np.zeros((40, 60, 3), np.uint8)
    a[:] = GREEN
    a[:15, :20] = RED
    return Image.fromarray(a)


def make_messy_folder(root: Path) -> Path:
    """A folder with good images of many modes and several bad files."""
    root.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), BLUE).save(root / "rgb.png")
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[:, :20] = (255, 0, 0, 0)  # left half: fully transparent (red underneath must not show)
    rgba[:, 20:] = (0, 0, 255, 255)  # right half: opaque blue
    Image.fromarray(rgba, "RGBA").save(root / "rgba.png")
    Image.new("L", (40, 40), 100).save(root / "gray.png")
    Image.new("RGB", (40, 40), RED).quantize(4).save(root / "pal.png")
    Image.fromarray(np.full((40, 40), 32896, np.uint16)).save(root / "i16.png")  # 32896 / 257 = 128
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(root / "cmyk.jpg", quality=95)  # red in CMYK
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    _exif_marker_image().save(root / "exif.jpg", quality=95, exif=exif)
    big = np.zeros((100, 300, 3), np.uint8)
    big[:, :100], big[:, 100:200], big[:, 200:] = RED, GREEN, BLUE
    Image.fromarray(big).save(root / "big.png")
    (root / "sub").mkdir()
    Image.new("RGB", (50, 50), GREEN).save(root / "sub" / "nested.png")

    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="JPEG")
    (root / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "text.png").write_text("this is not a picture")
    Image.new("RGB", (4, 4), RED).save(root / "tiny.png")
    (root / "notes.txt").write_text("ignored: not an image suffix")
    (root / "labels.json").write_text(
        json.dumps({"rgb.png": {"kind": "b"}, "gray.png": {"kind": "a"}, "nested.png": {"kind": "c"}})
    )
    return root


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.array(img)


def outputs_by_source(out: Path) -> dict[str, np.ndarray]:
    meta = json.loads((out / "dataset.json").read_text())
    return {f["source"]: read_png(out / f["file"]) for f in meta["files"]}


@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> Path:
    return make_messy_folder(tmp_path_factory.mktemp("messy") / "src")


@pytest.fixture(scope="module")
def prepared(messy, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "out"
    prepare_images(messy, out, res=RES, progress=False)
    return out


def test_prepare_counts_reasons_and_layout(messy, tmp_path):
    out = tmp_path / "out"
    report = prepare_images(messy, out, res=RES, progress=False)
    assert report.out == out and report.written == len(EXPECTED_WRITTEN)
    assert report.considered == len(EXPECTED_WRITTEN) + len(EXPECTED_SKIPS)
    assert {s.source: s.kind for s in report.skipped} == EXPECTED_SKIPS
    assert report.skipped_by_kind() == {"empty": 1, "not-an-image": 1, "too-small": 1, "corrupt": 1}

    meta = json.loads((out / "dataset.json").read_text())
    assert (meta["res"], meta["channels"], meta["count"]) == (RES, 3, len(EXPECTED_WRITTEN))
    assert [f["source"] for f in meta["files"]] == EXPECTED_WRITTEN  # sorted, recursive
    assert [f["file"] for f in meta["files"]] == [f"img{i:06d}.png" for i in range(len(EXPECTED_WRITTEN))]
    assert {s["source"]: s["reason"].split(":")[0] for s in meta["skipped"]} == EXPECTED_SKIPS
    labels = {f["source"]: f.get("labels") for f in meta["files"]}
    assert labels["rgb.png"] == {"kind": "b"} and labels["sub/nested.png"] == {"kind": "c"}  # base-name match
    assert labels["big.png"] is None
    assert sorted(p.name for p in out.iterdir()) == sorted([f["file"] for f in meta["files"]] + ["dataset.json"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left

    for f in meta["files"]:
        with Image.open(out / f["file"]) as img:
            assert img.size == (RES, RES) and img.mode == "RGB"


def test_prepare_converts_modes(prepared):
    img = outputs_by_source(prepared)
    near = lambda a, rgb, tol=6: np.abs(a.astype(int) - np.array(rgb)).max() <= tol  # noqa: E731
    assert near(img["rgb.png"], BLUE, 0)
    assert near(img["gray.png"], (100, 100, 100), 0)  # grayscale replicated to 3 channels
    assert near(img["pal.png"], RED, 0)
    assert near(img["i16.png"], (128, 128, 128), 0)  # 16 bit scaled, not clipped to 255
    assert near(img["cmyk.jpg"], RED, 12)
    assert near(img["sub/nested.png"], GREEN, 0)
    rgba = img["rgba.png"]
    assert near(rgba[:, :12], (255, 255, 255), 0)  # transparent -> white background, no hidden red
    assert near(rgba[:, 20:], BLUE, 0)
    big = img["big.png"]  # 300x100: the centre crop is the green third only
    assert big.shape == (RES, RES, 3) and near(big, GREEN, 2)


def test_prepare_applies_exif_orientation(prepared):
    out = outputs_by_source(prepared)["exif.jpg"].astype(int)
    is_red = lambda p: p[0] > 200 and p[1] < 60  # noqa: E731
    # Orientation 6 turns the stored top-left corner into the displayed top-right corner.
    assert is_red(out[1, RES - 2]), "the marker should be at the top right"
    assert not is_red(out[1, 1]), "the marker is at the top left: EXIF orientation was ignored"
    assert not is_red(out[RES - 2, RES - 2]) and not is_red(out[RES - 2, 1])


def test_prepare_grayscale_output(messy, tmp_path):
    report = prepare_images(messy, tmp_path / "gray", res=16, channels=1, progress=False)
    assert report.written == len(EXPECTED_WRITTEN) + 1  # at res=16 the 4x4 image meets ceil(16 / 4) = 4
    meta = json.loads((tmp_path / "gray" / "dataset.json").read_text())
    assert meta["channels"] == 1
    for f in meta["files"]:
        with Image.open(tmp_path / "gray" / f["file"]) as img:
            assert img.mode == "L" and img.size == (16, 16)
    gray = outputs_by_source(tmp_path / "gray")
    assert abs(int(gray["gray.png"].mean()) - 100) <= 1
    assert abs(int(gray["rgb.png"].mean()) - 29) <= 1  # ITU-R 601 luma of pure blue: 0.114 * 255


def test_prepare_min_size_threshold(messy, tmp_path):
    # res=16: the threshold is ceil(16 / 4) = 4, so the 4x4 image is kept (upscaled).
    report = prepare_images(messy, tmp_path / "o16", res=16, progress=False)
    assert "tiny.png" not in {s.source for s in report.skipped}
    report = prepare_images(messy, tmp_path / "o17", res=17, progress=False)
    assert {s.source: s.kind for s in report.skipped}["tiny.png"] == "too-small"
    report = prepare_images(messy, tmp_path / "o32", res=RES, min_size=2, progress=False)
    assert "tiny.png" not in {s.source for s in report.skipped}


def test_prepare_from_zip_matches_folder(messy, prepared, tmp_path):
    archive = tmp_path / "messy.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(messy.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(messy).as_posix())
        z.writestr("__MACOSX/._rgb.png", b"resource fork junk")
    report = prepare_images(archive, tmp_path / "out", res=RES, progress=False)
    assert report.written == len(EXPECTED_WRITTEN)
    assert {s.source: s.kind for s in report.skipped} == EXPECTED_SKIPS
    a, b = outputs_by_source(prepared), outputs_by_source(tmp_path / "out")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_prepare_is_atomic_on_crash(messy, tmp_path, monkeypatch):
    real_write = dataset_mod._write_png
    calls = []

    def failing_write(img, path):
        if len(calls) == 3:
            raise RuntimeError("simulated crash (disk full)")
        calls.append(path)
        real_write(img, path)

    monkeypatch.setattr(dataset_mod, "_write_png", failing_write)
    with pytest.raises(RuntimeError, match="simulated crash"):
        prepare_images(messy, tmp_path / "out", res=RES, progress=False)
    assert len(calls) == 3
    assert list(tmp_path.iterdir()) == []  # neither OUT nor a temporary folder

    # The same crash while replacing an existing output keeps the old output intact.
    old = tmp_path / "old"
    old.mkdir()
    (old / "keep.txt").write_text("old")
    calls.clear()
    with pytest.raises(RuntimeError):
        prepare_images(messy, old, res=RES, overwrite=True, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["old"] and (old / "keep.txt").read_text() == "old"


def test_prepare_refuses_existing_output_unless_overwrite(messy, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="already exists"):
        prepare_images(messy, out, res=8, progress=False)
    assert (out / "keep.txt").exists()
    report = prepare_images(messy, out, res=8, overwrite=True, progress=False)
    assert not (out / "keep.txt").exists() and report.written > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_prepare_skips_images_over_the_pixel_limit(messy, tmp_path, monkeypatch):
    monkeypatch.setattr(dataset_mod, "MAX_IMAGE_PIXELS", 2000)  # big.png has 30000 pixels
    report = prepare_images(messy, tmp_path / "out", res=RES, progress=False)
    assert {s.source: s.kind for s in report.skipped}["big.png"] == "too-large"


def test_prepare_bad_options(messy, tmp_path):
    with pytest.raises(ConfigError):
        prepare_images(messy, tmp_path / "o", res=0, progress=False)
    with pytest.raises(ConfigError):
        prepare_images(messy, tmp_path / "o", res=8, channels=2, progress=False)
    with pytest.raises(ConfigError, match="does not exist"):
        prepare_images(tmp_path / "missing", tmp_path / "o", res=8, progress=False)
    with pytest.raises(ConfigError, match="split"):
        prepare_images(messy, tmp_path / "o", res=8, split="train", progress=False)  # no split field
    assert not (tmp_path / "o").exists()


def test_dataset_over_prepared_folder(prepared):
    ds = ImageFolderDataset(prepared)
    assert len(ds) == len(EXPECTED_WRITTEN)
    assert (ds.resolution, ds.num_channels, ds.c_dim) == (RES, 3, 0)
    img, label = ds[0]
    assert img.dtype == torch.uint8 and img.shape == (3, RES, RES)
    assert label.dtype == torch.float32 and label.shape == (0,)
    want = torch.from_numpy(read_png(prepared / "img000000.png")).permute(2, 0, 1)
    assert torch.equal(img, want)

    gray = ImageFolderDataset(prepared, channels=1, res=16)
    assert gray[0][0].shape == (1, 16, 16) and gray.image_shape == [1, 16, 16]


def test_dataset_labels_are_one_hot(prepared):
    ds = ImageFolderDataset(prepared, use_labels=True)  # the only label key is "kind"
    assert ds.label_key == "kind" and ds.classes == ["a", "b", "c"] and ds.c_dim == 3
    assert len(ds) == 3 and ds.num_unlabeled == len(EXPECTED_WRITTEN) - 3
    got = {ds.get_details(i)["file"]: ds[i][1].tolist() for i in range(len(ds))}
    files = {f["source"]: f["file"] for f in json.loads((prepared / "dataset.json").read_text())["files"]}
    assert got[files["gray.png"]] == [1.0, 0.0, 0.0]
    assert got[files["rgb.png"]] == [0.0, 1.0, 0.0]
    assert got[files["sub/nested.png"]] == [0.0, 0.0, 1.0]
    fixed = ImageFolderDataset(prepared, use_labels=True, classes=["c", "b"])
    assert len(fixed) == 2 and fixed.c_dim == 2


def test_dataset_xflip_mirrors(prepared):
    ds = ImageFolderDataset(prepared, xflip=True)
    n = len(EXPECTED_WRITTEN)
    assert len(ds) == 2 * n
    for i in range(n):
        assert torch.equal(ds[n + i][0], ds[i][0].flip(-1))  # left-right, not up-down
    assert any(not torch.equal(ds[i][0], ds[i][0].flip(-1)) for i in range(n))  # the check can fail
    assert ds.get_details(n)["xflip"] is True and ds.get_details(n)["file"] == ds.get_details(0)["file"]
    assert torch.equal(ds.get_label(n), ds.get_label(0))
    with pytest.raises(IndexError):
        ds[2 * n]


@pytest.mark.parametrize("n, world", [(18, 3), (10, 3), (5, 4), (2, 3)])
def test_shard_covers_every_index(n, world):
    shards = [shard_indices(n, r, world) for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # same length on every rank
    flat = [i for s in shards for i in s]
    assert set(flat) == set(range(n))
    if n % world == 0:
        assert sorted(flat) == list(range(n))  # exactly once
    dropped = [shard_indices(n, r, world, drop_last=True) for r in range(world)]
    flat = [i for s in dropped for i in s]
    assert len(flat) == len(set(flat)) == n - n % world and len({len(s) for s in dropped}) == 1
    seeded = [shard_indices(n, r, world, seed=1) for r in range(world)]
    assert seeded == [shard_indices(n, r, world, seed=1) for r in range(world)]
    assert set(i for s in seeded for i in s) == set(range(n))
    with pytest.raises(ConfigError):
        shard_indices(n, world, world)


def test_dataset_shard_with_xflip(prepared):
    ds = ImageFolderDataset(prepared, xflip=True)
    shards = [ds.shard(r, 2) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(len(ds)))  # 18 items: exactly once each


def test_dataset_over_plain_folder_and_zip(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    for i in range(3):
        Image.new("L", (24, 24), 10 * i).save(folder / f"{i}.png")
    (folder / "labels.jsonl").write_text(
        "\n".join(json.dumps({"file": f"{i}.png", "cls": i % 2, "split": "train" if i else "test"}) for i in range(3))
    )
    ds = ImageFolderDataset(folder, use_labels=True, label_key="cls")
    assert (len(ds), ds.resolution, ds.num_channels, ds.classes) == (3, 24, 1, [0, 1])
    assert ds[2][0].shape == (1, 24, 24) and int(ds[2][0][0, 0, 0]) == 20
    assert ds[1][1].tolist() == [0.0, 1.0]
    assert len(ImageFolderDataset(folder, split="train")) == 2

    archive = tmp_path / "plain.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(folder.iterdir()):
            z.write(p, p.name)
    zds = ImageFolderDataset(archive, channels=3, limit=2)
    assert len(zds) == 2 and zds[1][0].shape == (3, 24, 24)
    assert torch.equal(zds[1][0][0], ds[1][0][0])
    assert torch.equal(pickle.loads(pickle.dumps(zds))[0][0], zds[0][0])  # goes to DataLoader workers

    Image.new("L", (32, 32)).save(folder / "3.png")
    with pytest.raises(ImageError, match="mixes image sizes"):
        ImageFolderDataset(folder)
    (folder / "3.png").unlink()
    Image.new("L", (24, 30)).save(folder / "3.png")
    with pytest.raises(ImageError, match="not square"):
        ImageFolderDataset(folder)


def test_lfw_faces_subset(tmp_path):
    lfw = SHARED / "data" / "lfw-faces"
    if not (lfw / "labels.jsonl").is_file():
        pytest.skip("../shared/data/lfw-faces is not present")
    ds = ImageFolderDataset(lfw, split="test", limit=24, use_labels=True, label_key="expression")
    assert len(ds) == 24 and (ds.resolution, ds.num_channels) == (128, 1)
    assert "happiness" in ds.classes and "neutral" in ds.classes
    assert all(ds.get_details(i)["labels"]["split"] == "test" for i in range(len(ds)))
    img, label = ds[0]
    assert img.shape == (1, 128, 128) and img.dtype == torch.uint8 and img.float().std() > 10
    assert label.sum() == 1.0 and label.shape == (ds.c_dim,)
    train = ImageFolderDataset(lfw, split="train", limit=4, res=64, use_labels=True, label_key="expression")
    assert train.classes == ds.classes and train[0][0].shape == (1, 64, 64)  # same classes on both splits

    report = prepare_images(lfw, tmp_path / "lfw64", res=64, channels=1, split="test", limit=24, progress=False)
    assert report.written == 24 and report.skipped == ()
    meta = json.loads((tmp_path / "lfw64" / "dataset.json").read_text())
    assert all(f["labels"]["split"] == "test" and "person" in f["labels"] for f in meta["files"])
    prepared = ImageFolderDataset(tmp_path / "lfw64", use_labels=True, label_key="expression", classes=ds.classes)
    assert prepared.image_shape == [1, 64, 64] and len(prepared) <= 24


def test_single_image_errors_name_their_kind(tmp_path):
    from latentshop.data.dataset import load_image, open_image

    cases = {"notes.png": b"not a picture\n" * 20, "empty.jpg": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(ImageError) as e:
        open_image(tmp_path / "notes.png")
    assert e.value.kind == "not-an-image"
    with pytest.raises(ImageError) as e:
        load_image(tmp_path / "empty.jpg")
    assert e.value.kind == "empty"
    Image.new("L", (300, 300)).save(tmp_path / "big.png")
    with pytest.raises(ImageError) as e:
        open_image(tmp_path / "big.png", max_pixels=1000)
    assert e.value.kind == "too-large"
    with pytest.raises(ImageError) as e:
        open_image(tmp_path / "missing.png")
    assert e.value.kind == "unreadable"


def test_preload_decodes_once_and_serves_the_same_items(prepared, monkeypatch):
    from latentshop.data.dataset import ImageFolderDataset

    on_disk = ImageFolderDataset(prepared, xflip=True)
    want = [on_disk[i] for i in range(len(on_disk))]
    ds = ImageFolderDataset(prepared, xflip=True)
    assert not ds.preload(max_bytes=10)  # too big for the budget: stays on disk
    calls = []
    assert ds.preload(progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (len(ds) // 2, len(ds) // 2)
    monkeypatch.setattr(ds, "load_image", lambda i: pytest.fail("a preloaded dataset read a file"))
    for i, (img, label) in enumerate(want):
        got, got_label = ds[i]
        assert torch.equal(got, img) and torch.equal(got_label, label), i  # mirrored copies included
    got[:] = 0  # items are copies: changing one leaves the cache alone
    assert torch.equal(ds[len(ds) - 1][0], want[-1][0])
