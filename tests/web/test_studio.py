"""The studio's sessions and actions, without a browser (tests/web/test_browser.py drives the page)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import fixture_path
from latentshop.editing import edit
from latentshop.errors import ConfigError
from latentshop.latents import load_latent, synthesize
from latentshop.web.studio import GROUPS, Studio, StudioError, find_models

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "face.jpg"


@pytest.fixture(autouse=True)
def _keep_thread_count():
    """Studio actions set one CPU thread on the thread that runs them (here pytest's): restore it,
    so that later tests do not run single-threaded."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    st = Studio(["lfw", "synthetic"], device="cpu", root=tmp_path_factory.mktemp("studio"), max_upload_bytes=200_000)
    yield st
    st.close()


def _upload(studio: Studio, src: Path | bytes, name: str) -> Path:
    """Put a file where the web server stores uploads."""
    folder = studio.uploads / "abc123"
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / name
    if isinstance(src, bytes):
        dst.write_bytes(src)
    else:
        shutil.copyfile(src, dst)
    return dst


def test_sliders_cover_every_edit_of_the_model(studio):
    entry = studio.model("lfw")
    names = entry.edit_names()
    directions = {n for d in entry.catalog.family_sets("directions") for n in d.names}
    assert directions <= set(names)  # every direction gets a slider (aliases share their target's)
    assert len(entry.sliders["ganspace"]) == 20 and len(entry.sliders["sefa"]) == 20
    assert {"anger", "happiness", "neutral"} <= {s.name for s in entry.sliders["attributes"]}
    # the StyleSpace panel: the top channels of each attribute the model's channel file has
    ss = entry.sliders["stylespace"]
    channel_sets = entry.catalog.family_sets("stylespace")
    attrs = {a for c in channel_sets for a in c.attributes}
    assert ss and {s.label.split(" · ")[0] for s in ss} == attrs
    best = channel_sets[0].attributes["happiness"][0]
    spec = next(s for s in ss if s.label.endswith(f"channel {best.layer}:{best.channel}"))
    # the slider drives the channel set's own edit, signed so that moving right raises the attribute
    made = entry.catalog.make(entry.G, spec.name, 1.0)
    assert (made.layer, made.channel) == (best.layer, best.channel)
    assert made.delta == (1.0 if best.sign >= 0 else -1.0)
    counts = studio.slot_counts()
    assert set(counts) == set(GROUPS)
    assert counts["attributes"] >= max(len(studio.model(m).sliders["attributes"]) for m in studio.model_names)


def test_render_is_the_library_edit_of_the_cached_latent(studio):
    s = studio.new_session("render1", model="lfw")
    before = studio.random_face(s, seed=5)
    assert before.shape == (64, 64, 1) and before.dtype == np.uint8
    assert np.array_equal(before, studio.before(s))
    G, catalog = studio.model("lfw").G, studio.model("lfw").catalog
    after = studio.render(s, {"happiness": 2.0, "ganspace:0": 0.0})
    lat = edit(G, s.latent, [catalog.make(G, "happiness", 2.0)])
    from latentshop.data.images import to_uint8

    assert np.array_equal(after, to_uint8(synthesize(G, lat))[0])
    assert np.abs(after.astype(int) - before.astype(int)).mean() > 0.5
    # the latent is cached: rendering does not change it
    assert np.array_equal(studio.render(s, {}), before)


def test_render_refuses_unknown_edits_and_bad_numbers(studio):
    s = studio.new_session("render2", model="lfw")
    with pytest.raises(StudioError, match="nothing to edit"):
        studio.render(s, {})
    studio.random_face(s, seed=1)
    with pytest.raises(StudioError, match="unknown edit 'age'"):
        studio.render(s, {"age": 1.0})
    with pytest.raises(StudioError, match="must be a number"):
        studio.render(s, {"happiness": float("nan")})
    with pytest.raises(StudioError, match="truncation"):
        studio.render(s, {}, truncation=float("inf"))


def test_truncation_and_style_mixing(studio):
    s = studio.new_session("mix", model="lfw")
    base = studio.random_face(s, seed=2)
    avg = studio.render(s, {}, truncation=0.0)
    assert not np.array_equal(avg, base)
    s2 = studio.new_session("mix-other", model="lfw")
    assert not np.array_equal(studio.random_face(s2, seed=9), base)
    # truncation 0 is the average face whatever the seed
    assert np.array_equal(studio.render(s2, {}, truncation=0.0), avg)
    src = studio.set_mix_source(s, seed=9)
    assert np.array_equal(src, studio.before(s2))
    assert np.array_equal(studio.render(s, {}, mix_layers="none"), base)
    coarse = studio.render(s, {}, mix_layers="coarse")
    fine = studio.render(s, {}, mix_layers="fine")
    assert not np.array_equal(coarse, base) and not np.array_equal(coarse, fine)
    with pytest.raises(StudioError, match="layer group"):
        studio.render(s, {}, mix_layers="everything")
    assert studio.set_mix_source(s) is None and s.mix is None


def test_photo_upload_aligns_and_encodes(studio):
    s = studio.new_session("photo", model="lfw")
    up = _upload(studio, EXAMPLE, "face.jpg")
    target = studio.load_photo(s, upload=up, align=True)
    assert not up.exists()  # an upload is deleted once read
    assert s.source.startswith("face.jpg")
    assert target.shape == (64, 64, 1)
    assert s.latent is not None and s.latent.meta.get("method") == "restyle-e4e"
    rec = studio.before(s).astype(float)
    # the encoder's code resembles the photo far better than the average face does
    avg = studio.render(s, {}, truncation=0.0).astype(float)
    assert np.abs(rec - target).mean() < 0.8 * np.abs(avg - target).mean()


def test_bad_uploads_get_clear_messages(studio):
    s = studio.new_session("bad", model="lfw")
    with pytest.raises(StudioError, match="not an image"):
        studio.load_photo(s, upload=_upload(studio, b"this is not a picture\n" * 10, "notes.png"))
    with pytest.raises(StudioError, match="not an image"):
        studio.load_photo(s, upload=_upload(studio, b"", "empty.jpg"))
    big = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    p = _upload(studio, b"", "big.png")
    Image.fromarray(big).save(p)
    assert p.stat().st_size > studio.max_upload_bytes
    with pytest.raises(StudioError, match="too large"):
        studio.load_photo(s, upload=p)
    # a picture without a face: a smooth gradient
    grad = np.tile(np.linspace(0, 255, 300, dtype=np.uint8), (300, 1))
    p = _upload(studio, b"", "sky.png")
    Image.fromarray(grad).save(p)
    with pytest.raises(StudioError, match="No face found"):
        studio.load_photo(s, upload=p, align=True)
    assert not p.exists()  # refused uploads are deleted too
    # the same picture without alignment is simply resized and encoded
    p = _upload(studio, b"", "sky.png")
    Image.fromarray(grad).save(p)
    studio.load_photo(s, upload=p, align=False)
    assert s.latent is not None


def test_client_paths_are_never_opened(studio, tmp_path):
    s = studio.new_session("paths", model="lfw")
    outside = tmp_path / "secret.jpg"
    shutil.copyfile(EXAMPLE, outside)
    for path in (outside, studio.uploads / ".." / ".." / "secret.jpg", "/etc/passwd", "", None):
        with pytest.raises(StudioError):
            studio.load_photo(s, upload=path)
    link = studio.uploads / "abc123" / "link.jpg"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(outside)  # a link out of the upload folder is refused too
    with pytest.raises(StudioError, match="not an upload"):
        studio.load_photo(s, upload=link)
    with pytest.raises(StudioError, match="unknown example"):
        studio.load_photo(s, example="../../etc/passwd")
    assert s.latent is None


def test_pictures_for_the_page_live_in_the_session_folder(studio):
    s = studio.new_session("views", model="lfw")
    img = studio.random_face(s, seed=7)
    paths = [studio.view_file(s, img, "after") for _ in range(6)]
    assert len(set(paths)) == 6 and all(p.is_relative_to(s.folder) for p in paths)
    assert [p.exists() for p in paths] == [False, False, True, True, True, True]  # the last 4 are kept
    assert np.array_equal(np.asarray(Image.open(paths[-1]))[..., None], img)
    assert studio.view_file(s, None, "after") is None
    with pytest.raises(StudioError):
        studio.view_file(s, img, "../x")


def test_another_sessions_files_are_not_uploads(studio):
    a, b = studio.new_session("owner", model="lfw"), studio.new_session("thief", model="lfw")
    studio.load_photo(a, example="face.jpg")
    files = studio.export(a, {})
    with pytest.raises(StudioError, match="not an upload"):
        studio.load_photo(b, upload=files["png"])


def test_sessions_are_isolated_and_cleaned_up(tmp_path):
    st = Studio(["lfw"], device="cpu", root=tmp_path / "root")
    a, b = st.new_session("tabA"), st.new_session("tabB")
    assert a.folder != b.folder and a.folder.parent == b.folder.parent == st.sessions_dir
    img_a = st.random_face(a, seed=1)
    st.random_face(b, seed=2)
    assert np.array_equal(st.render(a, {}), img_a)  # b's picture did not replace a's
    files = st.export(a, {"happiness": 1.0})
    assert all(p.parent == a.folder for p in files.values())
    assert not any(b.folder.iterdir())
    st.end_session("tabA")
    assert not a.folder.exists() and b.folder.exists()
    assert st.session("tabA").latent is None  # a new visit starts empty
    with pytest.raises(StudioError):
        st.new_session("../escape")
    st.close()
    assert (tmp_path / "root" / "sessions").exists() is True  # a root the caller gave is kept...
    assert not any((tmp_path / "root" / "sessions").iterdir())  # ...but emptied
    own = Studio(["lfw"], device="cpu")
    root = own.root
    own.random_face(own.new_session("x"), seed=0)
    own.close()
    assert not root.exists()


def test_idle_sessions_are_swept(tmp_path):
    st = Studio(["lfw"], device="cpu", root=tmp_path)
    s = st.new_session("old")
    s.touched -= 10
    st.sweep_sessions(ttl_s=5)
    assert "old" not in st.session_ids() and not s.folder.exists()


def test_export_writes_png_latent_and_gif(studio):
    s = studio.new_session("export", model="lfw")
    studio.load_photo(s, example="face.jpg", align=True)
    values = {"happiness": 2.0}
    files = studio.export(s, values, sweep="ganspace:0", sweep_frames=5)
    png = np.asarray(Image.open(files["png"]))
    assert png.shape == (64, 64) and np.array_equal(png, studio.render(s, values)[..., 0])
    G = studio.model("lfw").G
    lat = load_latent(files["latent"], G)
    from latentshop.data.images import to_uint8

    assert np.array_equal(to_uint8(synthesize(G, lat))[0][..., 0], png)
    gif = Image.open(files["gif"])
    assert gif.n_frames == 8 and min(gif.size) >= 256  # 5 there, 3 back
    with pytest.raises(StudioError, match="sweep"):
        studio.export(s, values, sweep="nope")


def test_refine_improves_and_can_be_cancelled(studio):
    s = studio.new_session("refine", model="lfw")
    target = studio.load_photo(s, example="face.jpg", align=True).astype(float)
    err0 = np.abs(studio.before(s) - target).mean()
    seen, previews = [], []
    assert studio.refine(s, steps=20, callback=lambda k, t: seen.append((k, t)), preview=previews.append, preview_every=5) is True
    assert seen and seen[-1][1] == 20
    assert len(previews) == 4 and all(p.generator == s.latent.generator for p in previews)
    assert np.array_equal(studio.before(s, previews[-1]), studio.before(s))  # the last preview is the result
    assert np.abs(studio.before(s) - target).mean() < err0
    assert "refined" in s.source
    # stop after a few steps: the code so far is kept and marked
    s.cancel.clear()
    steps = []

    def stop_at_3(k, t):
        steps.append(k)
        if k == 3:
            studio.cancel(s)

    assert studio.refine(s, steps=200, callback=stop_at_3) is False
    assert max(steps) < 10 and s.latent.meta.get("cancelled") is True
    # a stop that came before the run began leaves the code alone
    kept = s.latent
    assert studio.refine(s, steps=50) is False and s.latent is kept
    s.cancel.clear()
    studio.random_face(s, seed=0)
    with pytest.raises(StudioError, match="needs a photo"):
        studio.refine(s)


def test_refine_of_one_session_does_not_block_another(studio):
    a = studio.new_session("slow", model="lfw")
    b = studio.new_session("fast", model="lfw")
    studio.load_photo(a, example="face.jpg")
    studio.random_face(b, seed=3)
    started, finished = threading.Event(), threading.Event()

    def run():
        studio.refine(a, steps=400, callback=lambda k, t: started.set())
        finished.set()

    t = threading.Thread(target=run)
    t.start()
    assert started.wait(60)
    img = studio.render(b, {"happiness": 1.5})  # served while a's optimisation runs
    assert img.shape == (64, 64, 1) and not finished.is_set()
    studio.cancel(a)
    t.join(60)
    assert finished.is_set()


def test_model_switch_drops_the_old_pictures(studio):
    s = studio.new_session("switch", model="lfw")
    studio.random_face(s, seed=1)
    entry = studio.set_model(s, "synthetic")
    assert s.latent is None and s.model == "synthetic"
    img = studio.random_face(s, seed=1)
    assert img.shape[:2] == (entry.G.img_resolution,) * 2
    with pytest.raises(StudioError, match="unknown model"):
        studio.set_model(s, "/etc/passwd")


def test_models_dir_lists_checkpoints(tmp_path):
    (tmp_path / "a.pkl").write_bytes(b"x")
    (tmp_path / "b.pt").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"x")
    assert [p.name for p in find_models(tmp_path)] == ["a.pkl", "b.pt", "mine"]
    st = Studio(["lfw"], models_dir=tmp_path, device="cpu", root=tmp_path / "root")
    assert st.model_names == ["lfw", str(tmp_path / "a.pkl"), str(tmp_path / "b.pt"), str(folder)]
    from latentshop.errors import CheckpointError

    with pytest.raises(CheckpointError):  # a broken checkpoint fails with the loader's message
        st.model(str(tmp_path / "a.pkl"))
    # at start-up the broken ones leave the picker, with their reasons
    errors = st.load_all()
    assert st.model_names == ["lfw"] and set(errors) == {str(tmp_path / n) for n in ("a.pkl", "b.pt", "mine")}
    assert st.slot_counts()["ganspace"] == 20
    st.close()
    broken = Studio([str(tmp_path / "a.pkl")], device="cpu", root=tmp_path / "root2")
    with pytest.raises(ConfigError, match="no model could be loaded"):
        broken.load_all()
    broken.close()


def test_default_models_are_the_bundled_ones(tmp_path):
    st = Studio(device="cpu", root=tmp_path)
    assert st.model_names[0] == "default" and "synthetic" in st.model_names
    st.close()


def test_mixing_source_from_a_photo(studio):
    s = studio.new_session("mix-photo", model="lfw")
    base = studio.random_face(s, seed=11)
    src = studio.set_mix_source(s, upload=_upload(studio, EXAMPLE, "second.jpg"), align=True)
    assert src.shape == base.shape and s.mix_name == "second.jpg"
    assert not np.array_equal(studio.render(s, {}, mix_layers="coarse"), base)
    with pytest.raises(StudioError, match="No face"):
        grad = np.tile(np.linspace(0, 255, 300, dtype=np.uint8), (300, 1))
        p = _upload(studio, b"", "plain.png")
        Image.fromarray(grad).save(p)
        studio.set_mix_source(s, upload=p, align=True)
    assert s.mix_name == "second.jpg"  # a failed second photo keeps the first


def test_too_many_tabs_drop_the_longest_idle(tmp_path, monkeypatch):
    import latentshop.web.studio as mod

    monkeypatch.setattr(mod, "MAX_SESSIONS", 3)
    st = Studio(["lfw"], device="cpu", root=tmp_path)
    for i in range(3):
        st.new_session(f"t{i}").touched -= 100 - i
    st.new_session("t3")
    assert sorted(st.session_ids()) == ["t1", "t2", "t3"]
    st.close()


def test_stylespace_sliders_raise_their_attribute(studio):
    s = studio.new_session("ss", model="lfw")
    studio.random_face(s, seed=6)
    entry = studio.model("lfw")
    spec = next(sp for sp in entry.sliders["stylespace"] if sp.label.startswith("happiness"))
    ch = entry.catalog.family_sets("stylespace")[0].get("happiness", 3.0)  # the channel set's own signed edit
    from latentshop.data.images import to_uint8

    want = to_uint8(synthesize(entry.G, edit(entry.G, s.latent, [ch])))[0]
    assert np.array_equal(studio.render(s, {spec.name: 3.0}), want)


def test_cached_latent_is_not_modified_by_edits(studio):
    s = studio.new_session("immutable", model="lfw")
    studio.random_face(s, seed=4)
    t0 = s.latent.tensor.clone()
    for v in (-3.0, 3.0):
        studio.render(s, {"ganspace:1": v, "stylespace:happiness:0": v}, truncation=0.5)
    assert torch.equal(s.latent.tensor, t0)


def test_a_users_checkpoint_without_edits_or_encoders(tmp_path):
    pkl = str(fixture_path("nv_a_uncond64.pkl"))
    cond = str(fixture_path("nv_c_cond32_c5.pkl"))
    st = Studio([pkl, cond], device="cpu", root=tmp_path / "root")
    assert st.load_all() == {}
    entry = st.model(pkl)
    assert entry.edit_names() == [] and entry.fast_method is None and entry.refine_method == "w+"
    s = st.new_session("user", model=pkl)
    img = st.random_face(s, seed=1)
    assert img.shape == (64, 64, 3)
    up = st.uploads / "u1" / "face.jpg"
    up.parent.mkdir(parents=True)
    shutil.copyfile(EXAMPLE, up)
    st.load_photo(s, upload=up, align=False)  # no encoder: a short w+ run gives the code
    assert "w+" in s.source and s.latent is not None
    files = st.export(s, {})
    assert "gif" not in files and files["png"].exists()  # no edits, nothing to sweep
    c = st.new_session("cond", model=cond)
    with pytest.raises(StudioError, match="unconditional"):
        st.random_face(c, seed=0)
    st.close()
