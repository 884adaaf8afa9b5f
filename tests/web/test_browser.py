"""The studio in a real browser: Debian's Chromium, driven by Playwright, against ``latentshop studio``
started on a free loopback port.

They run wherever Chromium (``/usr/bin/chromium``, or ``$LATENTSHOP_CHROMIUM``) and Playwright are
present, whatever ``CI`` says. Where one is missing they are skipped, and tests/web/conftest.py prints
the reason (``apt-get install chromium``) as one line of the pytest summary; in CI (``CI=true``),
whose .ci/run installs both, a missing browser fails instead.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browser_helpers import (REPO, Server, browser, image_bytes, image_src, missing, move_slider, open_page,
                                       status, wait_status)

EXAMPLE = REPO / "examples" / "face.jpg"

_why = missing()
if _why and os.environ.get("CI") != "true":  # in CI the tests run and fail, so a broken set-up shows
    pytest.skip(f"browser tests need Chromium and Playwright: {_why}", allow_module_level=True)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("studio")
    os.environ["GRADIO_HEARTBEAT_INTERVAL"] = "1"  # the subprocess notices a closed tab within a second
    srv = Server(tmp, "--model", "default", "--model", "synthetic", "--max-upload-mb", "1")
    yield srv
    srv.stop()
    assert not list(tmp.glob("latentshop-studio-*")), "the studio left its temporary folder behind"


@pytest.fixture(scope="module")
def chromium():
    with browser() as b:
        yield b


def _png(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    return np.asarray(img)


def _files(tmp_path: Path) -> dict[str, Path]:
    gradient = tmp_path / "sky.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 300, dtype=np.uint8), (300, 1))).save(gradient)
    text = tmp_path / "notes.png"
    text.write_text("not a picture\n" * 50)
    big = tmp_path / "huge.jpg"
    big.write_bytes(np.random.default_rng(0).integers(0, 255, 1_500_000, dtype=np.uint8).tobytes())
    return {"gradient": gradient, "text": text, "big": big}


def _sessions(server: Server) -> list[Path]:
    return sorted((server.root() / "sessions").iterdir())


def test_upload_reconstruct_slide_and_download(server, chromium, tmp_path):
    page = open_page(chromium, server.url)
    page.set_input_files("#upload input[type=file]", str(EXAMPLE))
    wait_status(page, "Loaded")
    assert "restyle-e4e" in status(page)
    photo, before = _png(image_bytes(page, "photo")), _png(image_bytes(page, "before"))
    assert photo.shape == before.shape == (64, 64)
    assert np.array_equal(_png(image_bytes(page, "after")), before)  # no edit yet
    old = image_src(page, "after")
    move_slider(page, "s-attributes-1", 0.95)  # happiness, near +5
    assert image_src(page, "after") != old
    after = _png(image_bytes(page, "after"))
    assert np.abs(after.astype(int) - before.astype(int)).mean() > 1.0
    page.screenshot(path=str(tmp_path / "studio.png"))

    page.click("#export")
    wait_status(page, "Downloads ready")
    got = {}
    for key in ("dl-png", "dl-latent", "dl-gif"):
        with page.expect_download() as info:
            page.click(f"#{key}")
        path = tmp_path / info.value.suggested_filename
        info.value.save_as(path)
        got[key] = path
    png = np.asarray(Image.open(got["dl-png"]))
    assert got["dl-png"].suffix == ".png" and np.array_equal(png, after)
    from latentshop.checkpoints import load_generator
    from latentshop.data.images import to_uint8
    from latentshop.latents import load_latent, synthesize

    G = load_generator("default")
    lat = load_latent(got["dl-latent"], G)
    # the latent renders the downloaded image (here with this process's threads, the studio with one: a
    # pixel may round the other way)
    assert np.abs(to_uint8(synthesize(G, lat))[0][..., 0].astype(int) - png.astype(int)).max() <= 1
    gif = Image.open(got["dl-gif"])
    assert gif.format == "GIF" and gif.n_frames > 2
    # nothing the session made lies outside its folder: the upload is gone once read, and every
    # picture the page showed is served from the session's folder
    folders = _sessions(server)
    assert any((f / got["dl-png"].name).exists() for f in folders)
    root = server.root()
    # (Gradio's upload parser leaves an empty temporary file behind; it goes with the root at exit)
    stray = [p for p in root.rglob("*") if p.is_file() and not p.is_relative_to(root / "sessions") and p.stat().st_size]
    assert stray == []
    assert image_src(page, "after").split("file=", 1)[1].startswith(str(root / "sessions"))
    page.context.close()


def test_bad_uploads_show_their_messages(server, chromium, tmp_path):
    files = _files(tmp_path)
    page = open_page(chromium, server.url)
    page.set_input_files("#upload input[type=file]", str(files["gradient"]))
    assert "No face found" in wait_status(page, "No face")
    page.set_input_files("#upload input[type=file]", str(files["text"]))
    assert "not an image" in wait_status(page, "not an image")
    page.set_input_files("#upload input[type=file]", str(files["big"]))
    page.wait_for_selector("text=exceed the maximum allowed size", timeout=30_000)  # refused before it is stored
    assert image_src(page, "before") is None  # nothing was loaded by any of them
    page.screenshot(path=str(tmp_path / "no-face.png"))
    page.context.close()


def test_two_visitors_do_not_see_each_other(server, chromium):
    a, b = open_page(chromium, server.url), open_page(chromium, server.url)
    a.click("#use-example")
    wait_status(a, "Loaded")
    a_before = image_bytes(a, "before")
    b.click("#random")
    wait_status(b, "A sample of the model")
    assert image_src(b, "photo") is None  # b has no photo: a's did not leak into b's page
    move_slider(b, "s-attributes-0", 0.9)
    assert image_bytes(a, "before") == a_before and image_bytes(a, "after") == a_before
    assert image_bytes(b, "before") != a_before
    # each tab has its own folder, and closing a tab deletes it
    time.sleep(0.5)
    n = len(_sessions(server))
    assert n >= 2
    b.context.close()
    deadline = time.monotonic() + 30
    while len(_sessions(server)) >= n and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(_sessions(server)) == n - 1
    a.context.close()


def test_refine_shows_progress_can_stop_and_does_not_block_others(server, chromium):
    a, b = open_page(chromium, server.url), open_page(chromium, server.url)
    a.click("#use-example")
    wait_status(a, "Loaded")
    b.click("#random")
    wait_status(b, "A sample")
    steps = a.locator("#steps input[type=number]")
    steps.fill("500")
    steps.press("Enter")
    first = image_src(a, "before")
    a.click("#refine")
    wait_status(a, "Refining… step", timeout=30)
    bar = a.locator("#refine-progress progress")  # the progress bar moves
    bar.wait_for(timeout=30_000)
    v0 = int(bar.get_attribute("value"))
    a.wait_for_function("v => Number(document.querySelector('#refine-progress progress').value) > v", arg=v0, timeout=30_000)
    assert int(bar.get_attribute("max")) == 500
    # and the code so far is shown live
    a.wait_for_function("o => { const i = document.querySelector('#before img'); return i && i.src !== o; }", arg=first,
                        timeout=30_000)
    move_slider(b, "s-attributes-1", 0.8, timeout=20)  # b's slider is served while a optimises
    assert "Refined" not in status(a) and "Stopped" not in status(a)
    a.click("#cancel")
    assert "Stopped early" in wait_status(a, "Stopped early", timeout=60)
    a.context.close()
    b.context.close()


def test_model_picker_switches_sliders(server, chromium):
    page = open_page(chromium, server.url)
    assert page.locator("#s-attributes-0 label, #s-attributes-0 span").first.inner_text().startswith("anger")
    page.click("#model input")
    page.click("ul[role=listbox] >> text=synthetic")
    wait_status(page, "Model synthetic")
    labels = page.inner_text("#s-attributes-0")
    assert "anger" not in labels
    page.click("#random")
    wait_status(page, "A sample")
    assert _png(image_bytes(page, "before")).shape == (64, 64, 3)
    page.context.close()


def test_style_mixing_and_truncation_in_the_page(server, chromium):
    page = open_page(chromium, server.url)
    page.click("#random")
    wait_status(page, "A sample")
    page.get_by_text("Style mixing and truncation", exact=True).click()
    page.wait_for_selector("#mix-seed-btn", state="visible")
    seed = page.locator("#mix-seed input")
    # the panel's widgets get their initial values as it opens, which can overwrite an early fill
    for _ in range(20):
        seed.fill("7")
        seed.press("Tab")
        page.wait_for_timeout(250)
        if seed.input_value() == "7":
            break
    assert seed.input_value() == "7"
    page.click("#mix-seed-btn")
    wait_status(page, "Second picture: seed 7")
    assert image_src(page, "mix-img") is not None
    plain = _png(image_bytes(page, "after"))
    old = image_src(page, "after")
    page.locator("#mix-layers").get_by_text("coarse", exact=True).click()
    page.wait_for_function("o => { const i = document.querySelector('#after img'); return i && i.src !== o; }", arg=old,
                           timeout=30_000)
    mixed = _png(image_bytes(page, "after"))
    assert not np.array_equal(mixed, plain)
    move_slider(page, "truncation", 0.05)  # near psi 0: towards the average face
    assert not np.array_equal(_png(image_bytes(page, "after")), mixed)
    page.context.close()
