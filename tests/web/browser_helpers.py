"""Start a studio on a free loopback port and drive it with Debian's Chromium through Playwright.

Used by the browser tests and by benchmarks/studio_latency.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("LATENTSHOP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# as the env notes say: headless, no sandbox (root), and nothing that phones home on a closed network
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
                 "--metrics-recording-only", "--no-default-browser-check"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    import importlib.util

    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install playwright)"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


class Server:
    """A ``latentshop studio`` subprocess; its temporary root lies under ``tmp``."""

    def __init__(self, tmp: Path, *args: str, timeout: float = 180.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.tmp = tmp
        self.log = tmp / "studio.log"
        env = {**os.environ, "TMPDIR": str(tmp), "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "latentshop.cli", "studio", "--port", str(self.port),
                                      "--device", "cpu", *args], cwd=REPO, env=env,
                                     stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the studio exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the studio did not answer in {timeout:.0f} s:\n{self.log.read_text()}")
            time.sleep(0.5)

    def root(self) -> Path:
        """The studio's temporary root (made by the subprocess under ``tmp``)."""
        roots = sorted(self.tmp.glob("latentshop-studio-*"))
        assert len(roots) == 1, roots
        return roots[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextmanager
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def open_page(b: object, url: str, *, width: int = 1300, height: int = 1500) -> object:
    """A page of a new browser context (its own cookies and storage: a separate visitor)."""
    ctx = b.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    page = ctx.new_page()
    page.goto(url)
    page.wait_for_selector("#status")
    page.wait_for_function("document.querySelector('#status').innerText.includes('Load a photo')")
    return page


def status(page: object) -> str:
    return page.inner_text("#status")


def wait_status(page: object, text: str, timeout: float = 60.0) -> str:
    page.wait_for_function("t => document.querySelector('#status').innerText.includes(t)", arg=text,
                           timeout=timeout * 1000)
    return status(page)


def image_src(page: object, elem_id: str) -> str | None:
    return page.evaluate(f"() => {{ const i = document.querySelector('#{elem_id} img'); return i ? i.src : null; }}")


def image_bytes(page: object, elem_id: str) -> bytes:
    src = image_src(page, elem_id)
    assert src, f"no image in #{elem_id}"
    return page.request.get(src).body()


# Arm a timer on the next pointer release and wait for the After image to change and load.
ARM_JS = """() => { window.__t = null; window.__done = null;
  const img = () => document.querySelector('#after img');
  window.__old = img() ? img().src : null;
  document.addEventListener('pointerup', () => { window.__t = performance.now(); }, {capture: true, once: true});
  const check = () => { const i = img();
    if (i && i.src !== window.__old && i.complete && i.naturalWidth > 0) { window.__done = performance.now(); return; }
    requestAnimationFrame(check); };
  requestAnimationFrame(check); }"""


def move_slider(page: object, elem_id: str, fraction: float, *, timeout: float = 30.0) -> float | None:
    """Click the slider's track at ``fraction`` of its width (press and release), wait for the new
    After image, and return the milliseconds from release to the loaded image; ``None`` when the
    click left the slider's value as it was (the page still re-renders, and that is waited for)."""
    track = page.locator(f"#{elem_id} input[type=range]")
    track.scroll_into_view_if_needed()
    box = track.bounding_box()
    old = track.input_value()
    page.evaluate(ARM_JS)
    page.mouse.click(box["x"] + fraction * box["width"], box["y"] + box["height"] / 2)
    new = track.input_value()
    try:
        page.wait_for_function("window.__done !== null", timeout=timeout * 1000)
    except Exception as e:
        raise AssertionError(f"no new After image after moving {elem_id} from {old} to {new}; status: {status(page)!r}") from e
    return None if new == old else float(page.evaluate("window.__done - window.__t"))
