"""Photos as the model's input: every pixel mode, EXIF, small photos, several faces, no face.

The photos are made on the fly (Pillow / numpy in ``tmp_path``) and loaded with
:func:`latentshop.pipeline.load_target` for a colour and a grey model; what each should become is
worked out from the model's own ``G.img_channels``. Transparency is composited on white.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import latentshop
from latentshop import pipeline
from latentshop.checkpoints.native import NetworkSpec, write_native
from latentshop.cli.main import app
from latentshop.data.align import NoFaceError, align_face, detect_faces
from latentshop.errors import ConfigError, ImageError
from latentshop.models.stylegan2 import Generator

REPO = Path(__file__).resolve().parents[1]
FACE = REPO / "examples" / "face.jpg"
ASTRONAUT = REPO / "examples" / "astronaut.png"
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, Pillow's convert("L")
runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_grey(tmp_path_factory):
    """A 32-px one-channel model folder: a grey model whatever the bundled ones become."""
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=32, img_channels=1,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()
    path = tmp_path_factory.mktemp("model") / "grey"
    write_native(path, {"G_ema": NetworkSpec("generator", G.init_kwargs, G.state_dict())})
    return path


_BUNDLES: dict[str, object] = {}


@pytest.fixture(params=["synthetic", "default", "tiny-grey"])
def bundle(request, tiny_grey):
    name = request.param
    if name not in _BUNDLES:
        _BUNDLES[name] = latentshop.load_model(str(tiny_grey) if name == "tiny-grey" else name, device="cpu")
    return _BUNDLES[name]


@pytest.fixture(scope="module")
def synthetic():
    if "synthetic" not in _BUNDLES:
        _BUNDLES["synthetic"] = latentshop.load_model("synthetic", device="cpu")
    return _BUNDLES["synthetic"]


def _expect(rgb, channels: int) -> np.ndarray:
    """What an RGB colour (or grey level) should be for a model with ``channels``."""
    rgb = np.broadcast_to(np.asarray(rgb, dtype=np.float64), (3,))
    return rgb if channels == 3 else np.array([rgb @ LUMA])


def _pixels(bundle, source, **kw) -> np.ndarray:
    """The target as float ``[R, R, C]`` in 0..255."""
    t = pipeline.load_target(bundle, source, **kw)
    assert t.tensor.shape == (bundle.G.img_channels, bundle.G.img_resolution, bundle.G.img_resolution)
    return t.uint8().astype(np.float64)


def _both(bundle, img: Image.Image, path: Path, **save) -> list[np.ndarray]:
    """The target of ``img`` saved as ``path`` and of the file's decoded Pillow image (same rules)."""
    img.save(path, **save)
    return [_pixels(bundle, path), _pixels(bundle, Image.open(path))]


# ---- pixel modes ------------------------------------------------------------------------------------
def test_grey_photo_gives_equal_channels(bundle, tmp_path):
    res, c = bundle.G.img_resolution, bundle.G.img_channels
    for a in _both(bundle, Image.new("L", (res, res), 100), tmp_path / "grey.png"):
        np.testing.assert_allclose(a, np.full((res, res, c), 100.0), atol=0.5)


def test_colour_photo_gives_the_models_channels(bundle, tmp_path):
    res, c = bundle.G.img_resolution, bundle.G.img_channels
    for a in _both(bundle, Image.new("RGB", (res, res), (200, 40, 10)), tmp_path / "colour.png"):
        np.testing.assert_allclose(a.reshape(-1, c).mean(0), _expect((200, 40, 10), c), atol=1.0)  # luma 83.4 for grey


@pytest.mark.parametrize("cmyk, rgb", [((0, 255, 255, 0), (255, 0, 0)), ((255, 255, 0, 0), (0, 0, 255)),
                                       ((0, 0, 0, 128), (127, 127, 127))])
def test_cmyk_jpeg_is_not_inverted(bundle, tmp_path, cmyk, rgb):
    res, c = bundle.G.img_resolution, bundle.G.img_channels
    img = Image.new("CMYK", (res, res), cmyk)
    for a in _both(bundle, img, tmp_path / "cmyk.jpg", quality=100):
        assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
        np.testing.assert_allclose(a.reshape(-1, c).mean(0), _expect(rgb, c), atol=3.0)


def test_alpha_is_composited_on_white(bundle, tmp_path):
    res, c = bundle.G.img_resolution, bundle.G.img_channels
    half = res // 2
    rgba = np.zeros((res, res, 4), np.uint8)
    rgba[:, :half] = (255, 0, 0, 0)  # fully transparent red: white
    rgba[:, half:] = (0, 0, 0, 128)  # half-transparent black over white: 127
    for a in _both(bundle, Image.fromarray(rgba, "RGBA"), tmp_path / "rgba.png"):
        np.testing.assert_allclose(a[:, 1:half - 1].reshape(-1, c).mean(0), _expect(255, c), atol=1.0)
        np.testing.assert_allclose(a[:, half + 1:-1].reshape(-1, c).mean(0), _expect(127, c), atol=1.0)
    la = np.zeros((res, res, 2), np.uint8)
    la[:, :half] = (0, 0)
    la[:, half:] = (200, 255)
    for a in _both(bundle, Image.fromarray(la, "LA"), tmp_path / "la.png"):
        np.testing.assert_allclose(a[:, 1:half - 1], 255.0, atol=1.0)
        np.testing.assert_allclose(a[:, half + 1:-1], 200.0, atol=1.0)


def test_16_bit_grey_keeps_its_full_range(bundle, tmp_path):
    res, c = bundle.G.img_resolution, bundle.G.img_channels
    ramp = np.rint(np.linspace(0, 65535, res)).astype(np.uint16)
    a16 = np.tile(ramp, (res, 1))
    want = np.tile(np.rint(ramp / 257.0), (res, 1))[:, :, None].repeat(c, 2)
    path = tmp_path / "deep.png"
    Image.fromarray(a16).save(path)
    assert Image.open(path).mode.startswith("I;16")
    for a in (_pixels(bundle, path), _pixels(bundle, Image.open(path)),
              _pixels(bundle, Image.fromarray(a16.astype(np.int32)))):  # 32-bit "I" with 16-bit values
        assert a.max() == 255 and a.min() == 0  # the whole range, not clipped to white
        np.testing.assert_allclose(a, want, atol=1.0)


def test_palette_colours_are_resolved(bundle, tmp_path):
    res, c = bundle.G.img_resolution, bundle.G.img_channels
    half = res // 2
    idx = np.zeros((res, res), np.uint8)
    idx[:, half:] = 1
    img = Image.fromarray(idx, "P")
    img.putpalette([200, 40, 10, 0, 180, 60] + [0] * 762)
    for a in _both(bundle, img, tmp_path / "palette.png"):
        np.testing.assert_allclose(a[:, 1:half - 1].reshape(-1, c).mean(0), _expect((200, 40, 10), c), atol=1.0)
        np.testing.assert_allclose(a[:, half + 1:-1].reshape(-1, c).mean(0), _expect((0, 180, 60), c), atol=1.0)
    for a in _both(bundle, img, tmp_path / "palette-t.png", transparency=1):  # index 1 is transparent: white
        np.testing.assert_allclose(a[:, 1:half - 1].reshape(-1, c).mean(0), _expect((200, 40, 10), c), atol=1.0)
        np.testing.assert_allclose(a[:, half + 1:-1].reshape(-1, c).mean(0), _expect(255, c), atol=1.0)


def test_exif_orientation_is_honoured(bundle, tmp_path):
    res = bundle.G.img_resolution
    stored = np.full((res, 2 * res), 230, np.uint8)
    stored[:, :res] = 20  # stored landscape: left half dark
    img = Image.fromarray(stored, "L")
    exif = img.getexif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: the left half is on top
    for a in _both(bundle, img, tmp_path / "turned.jpg", exif=exif, quality=95):
        assert a[: res // 3].mean() < 40 and a[-res // 3:].mean() > 210


# ---- photo size ---------------------------------------------------------------------------------------
def test_small_photo_is_enlarged_with_a_warning(bundle, tmp_path):
    res = bundle.G.img_resolution
    side = res // 2
    path = tmp_path / "small.png"
    Image.new("RGB", (side, side + 4), (90, 120, 150)).save(path)
    said: list[str] = []
    t = pipeline.load_target(bundle, path, warn=said.append)
    assert t.tensor.shape[1:] == (res, res)
    assert len(said) == 1 and f"{side}x{side + 4}" in said[0] and "enlarged 2.0x" in said[0] and t.warnings == said
    with pytest.warns(UserWarning, match="enlarged"):  # without a callback: the warnings module
        pipeline.load_target(bundle, path)
    with pytest.raises(ImageError, match="--upscale") as info:
        pipeline.load_target(bundle, path, upscale=False)
    assert info.value.kind == "too-small"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a photo (nearly) as large as the model: no warning
        for side in (res, -(-res * 9 // 10)):
            Image.new("RGB", (side, side)).save(tmp_path / "ok.png")
            assert pipeline.load_target(bundle, tmp_path / "ok.png", upscale=False).warnings == []


def test_tiny_photo_is_refused_naming_its_size_and_the_fix(bundle, tmp_path):
    res = bundle.G.img_resolution
    least = pipeline.min_source_side(res)
    assert least == -(-res // 4)
    path = tmp_path / "tiny.png"
    Image.new("RGB", (least - 1, 3 * least), (90, 120, 150)).save(path)
    with pytest.raises(ImageError, match=rf"tiny.png: the image is {least - 1}x{3 * least}, too small .* at least {least} px") as info:
        pipeline.load_target(bundle, path)
    assert info.value.kind == "too-small" and "use a larger photo" in str(info.value)
    Image.new("RGB", (least, least)).save(path)  # exactly the least: enlarged
    assert pipeline.load_target(bundle, path, warn=lambda _: None).tensor.shape[1:] == (res, res)


def test_small_aligned_face_warns(synthetic, tmp_path):
    res = synthetic.G.img_resolution
    s = int(res * 0.8)  # the face's crop square comes out about 0.8 of the model's side
    canvas = Image.new("RGB", (3 * s, 3 * s), (128, 128, 128))
    canvas.paste(Image.open(FACE).convert("RGB").resize((s, s), Image.Resampling.LANCZOS), (s, s))
    canvas.save(tmp_path / "far.png")
    said: list[str] = []
    t = pipeline.load_target(synthetic, tmp_path / "far.png", align=True, warn=said.append)
    assert t.face is not None and len(said) == 1 and "px across" in said[0] and "enlarged" in said[0]
    with pytest.raises(ImageError, match="--upscale"):
        pipeline.load_target(synthetic, tmp_path / "far.png", align=True, upscale=False)


def test_small_photo_warning_reaches_the_cli_user(synthetic, tmp_path):
    res = synthetic.G.img_resolution
    Image.new("RGB", (res // 2, res // 2), (90, 120, 150)).save(tmp_path / "small.png")
    r = runner.invoke(app, ["edit", str(tmp_path / "small.png"), "--model", "synthetic", "--method", "e4e",
                            "--edit", "smile=+1", "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert "warning:" in r.output and "enlarged 2.0x" in r.output
    record = json.loads((tmp_path / "out" / "small-edit.json").read_text())
    assert any("enlarged" in w for w in record["warnings"])
    Image.new("RGB", (4, 4)).save(tmp_path / "tiny.png")
    r = runner.invoke(app, ["edit", str(tmp_path / "tiny.png"), "--model", "synthetic", "--method", "e4e",
                            "--edit", "smile=+1", "-o", str(tmp_path / "out")])
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and "tiny.png: the image is 4x4, too small" in lines[0]


# ---- several faces ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_faces(tmp_path_factory):
    """examples/face.jpg at 200 px (left) and 128 px (right), side by side."""
    face = Image.open(FACE).convert("RGB")
    canvas = Image.new("RGB", (388, 240), (128, 128, 128))
    canvas.paste(face.resize((200, 200), Image.Resampling.LANCZOS), (20, 20))
    canvas.paste(face.resize((128, 128), Image.Resampling.LANCZOS), (240, 56))
    path = tmp_path_factory.mktemp("photos") / "two.png"
    canvas.save(path)
    found = detect_faces(path)
    assert len(found) == 2, [f.box for f in found]  # dlib finds both
    return path


def test_largest_face_unless_all_faces(synthetic, two_faces):
    t = pipeline.load_target(synthetic, two_faces, align=True)
    assert t.name == "two" and t.face_index is None and t.face.box[2] < 220  # the larger, left face
    ts = pipeline.load_targets(synthetic, two_faces, align=True, all_faces=True)
    assert [x.name for x in ts] == ["two-face1", "two-face2"] and [x.face_index for x in ts] == [1, 2]
    assert ts[0].face.box == t.face.box and ts[1].face.box[0] > 220  # then the smaller, right face
    assert torch.equal(ts[0].tensor, t.tensor)
    assert len(pipeline.load_targets(synthetic, two_faces, align=True)) == 1
    with pytest.raises(ConfigError, match="--all-faces needs --align"):
        pipeline.load_targets(synthetic, two_faces, all_faces=True)


def test_a_smaller_face_that_does_not_fit_is_left_out(tmp_path):
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=128, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=1024, channel_max=8)).eval()
    write_native(tmp_path / "m128", {"G_ema": NetworkSpec("generator", G.init_kwargs, G.state_dict())})
    bundle = latentshop.load_model(str(tmp_path / "m128"), device="cpu")
    face = Image.open(FACE).convert("RGB")
    canvas = Image.new("RGB", (360, 240), (128, 128, 128))
    canvas.paste(face.resize((200, 200), Image.Resampling.LANCZOS), (20, 20))
    canvas.paste(face.resize((100, 100), Image.Resampling.LANCZOS), (240, 70))  # its square: about 98 px < 0.9 * 128
    canvas.save(tmp_path / "pair.png")
    said: list[str] = []
    ts = pipeline.load_targets(bundle, tmp_path / "pair.png", align=True, all_faces=True, upscale=False, warn=said.append)
    assert [t.name for t in ts] == ["pair-face1"]
    assert len(said) == 1 and "face 2 of 2 is about" in said[0] and said[0].endswith("this face is left out")
    said.clear()
    ts = pipeline.load_targets(bundle, tmp_path / "pair.png", align=True, all_faces=True, warn=said.append)
    assert [t.name for t in ts] == ["pair-face1", "pair-face2"] and ts[0].warnings == []
    assert ts[1].warnings == said and "face 2 of 2" in said[0] and "enlarged 1.3x" in said[0]


def test_edit_cli_all_faces(two_faces, tmp_path):
    common = ["--model", "synthetic", "--align", "--method", "e4e", "--edit", "smile=+1"]
    r = runner.invoke(app, ["edit", str(two_faces), *common, "-o", str(tmp_path / "one")])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "one").glob("*-edited.png")) == ["two-edited.png"]
    r = runner.invoke(app, ["edit", str(two_faces), *common, "--all-faces", "--paste-back", "-o", str(tmp_path / "all")])
    assert r.exit_code == 0, r.output
    out = tmp_path / "all"
    assert sorted(p.name for p in out.glob("*-edited.png")) == ["two-face1-edited.png", "two-face2-edited.png"]
    for k in (1, 2):
        assert json.loads((out / f"two-face{k}-edit.json").read_text())["face"] == k
        assert Image.open(out / f"two-face{k}-edited-pasted.png").size == Image.open(two_faces).size
    a, b = (np.asarray(Image.open(out / f"two-face{k}-edited.png"), dtype=np.float64) for k in (1, 2))
    assert np.abs(a - b).mean() > 0  # two inversions, not one face twice
    r = runner.invoke(app, ["edit", str(two_faces), "--model", "synthetic", "--all-faces", "--edit", "smile=+1",
                            "-o", str(tmp_path / "x")])
    assert r.exit_code == 1 and "--all-faces needs --align" in r.output


def test_invert_cli_all_faces_and_resume(two_faces, tmp_path):
    args = ["invert", str(two_faces), "--model", "synthetic", "--align", "--all-faces", "--method", "e4e",
            "--outdir", str(tmp_path)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    for k in (1, 2):
        for suffix in (".npz", ".png", "-aligned.png", ".align.json", ".json"):
            assert (tmp_path / f"two-face{k}{suffix}").is_file(), (k, suffix)
        assert json.loads((tmp_path / f"two-face{k}.json").read_text())["face"] == k
    assert not (tmp_path / "two.json").exists()
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "1 image(s) already done" in r.output


# ---- no face ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["noise", "flat"])
def test_no_face_is_one_line_from_the_cli(tmp_path, kind):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) if kind == "noise" else np.full((240, 320, 3), 140, np.uint8)
    path = tmp_path / f"{kind}.png"
    Image.fromarray(pixels).save(path)
    r = runner.invoke(app, ["edit", str(path), "--model", "synthetic", "--align", "--edit", "smile=+1",
                            "-o", str(tmp_path / "out")])
    assert r.exit_code == 1
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0] == f"error: {NoFaceError(str(path))}"
    assert "Traceback" not in r.output and not list((tmp_path / "out").glob("*.png"))


# ---- the example photo ------------------------------------------------------------------------------------
def test_astronaut_example_aligns_to_a_colour_face(synthetic):
    assert Image.open(ASTRONAUT).size == (512, 512) and Image.open(ASTRONAUT).mode == "RGB"
    face = align_face(ASTRONAUT, res=128, channels=3)
    left, top, right, bottom = face.box
    assert 150 < left < right < 300 and 50 < top < bottom < 220  # the face in the upper middle
    a = np.asarray(face.image, dtype=np.float64)
    assert face.image.mode == "RGB" and face.image.size == (128, 128) and not face.padded
    assert np.abs(a[..., 0] - a[..., 2]).mean() > 10  # colour: the channels differ
    t = pipeline.load_target(synthetic, ASTRONAUT, align=True)
    assert t.warnings == [] and np.abs(t.uint8()[..., 0].astype(int) - t.uint8()[..., 2]).mean() > 10
