"""How live the studio feels: slider release to new image, measured in a real browser.

Starts ``latentshop studio`` on a free loopback port, opens it in Debian's headless Chromium through
Playwright (as the browser tests do), loads the example photo and then, for ``--moves`` slider
moves spread over the attribute, GANSpace, SeFa and StyleSpace sliders, clicks the slider's track
(press and release) and times, in the page, from the ``pointerup`` event to the moment the new
After image has loaded (``img.complete`` with a new ``src``). That interval holds the whole round
trip: the release event, Gradio's queue, the studio's edit + one synthesis pass from the cached
latent, PNG encoding, the event stream back to the page and the image fetch.

It also times, once each, the things a visitor waits for: photo upload to reconstruction (align +
ReStyle encoder), "Random face", "Prepare downloads" (PNG, latent, 16-frame GIF) and "Refine" at
100 steps; and the server-side synthesis pass alone, to show the overhead of the web round trip.

Run:
    python benchmarks/studio_latency.py                  # the default model, 40 moves (about a minute)
    python benchmarks/studio_latency.py --moves 10 --screenshots docs/images

Writes ``benchmarks/results/studio_latency.json`` and ``.md``; ``--screenshots DIR`` also saves
``studio.png`` (a photo after a few slider moves) and ``studio-no-face.png`` (the no-face message).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO / "tests" / "web"))

import browser_helpers as bh  # noqa: E402

GOAL_MS = 150.0
SLIDERS = ["s-attributes-0", "s-attributes-1", "s-attributes-2", "s-ganspace-0", "s-ganspace-1", "s-sefa-0",
           "s-stylespace-0", "s-stylespace-1"]


def _server_synthesis_ms(model: str, n: int = 30) -> float:
    import torch

    from latentshop import load_model
    from latentshop.editing import edit
    from latentshop.latents import Latent, synthesize

    bundle = load_model(model)
    G, cat = bundle.G, bundle.edits
    lat = Latent.from_z(G, torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0)))
    times = []
    with torch.no_grad():
        for i in range(n + 3):
            t = time.perf_counter()
            synthesize(G, edit(G, lat, [cat.make(G, "happiness" if model == "default" else cat.names()[0], 1.0 + i % 3)]))
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times[3:])


def run(*, model: str = "default", moves: int = 40, screenshots: Path | None = None) -> dict[str, Any]:
    why = bh.missing()
    if why:
        raise SystemExit(f"the studio benchmark needs a browser: {why}")
    tmp = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    t0 = time.perf_counter()
    srv = bh.Server(tmp, "--model", model)
    startup_s = time.perf_counter() - t0
    once: dict[str, float] = {}
    lat: list[dict[str, Any]] = []
    try:
        with bh.browser() as b:
            t = time.perf_counter()
            page = bh.open_page(b, srv.url, height=3000)  # every slider and the After image on screen (images load lazily)
            once["page_load_s"] = time.perf_counter() - t
            t = time.perf_counter()
            page.set_input_files("#upload input[type=file]", str(REPO / "examples" / "face.jpg"))
            bh.wait_status(page, "Loaded")
            once["upload_to_reconstruction_s"] = time.perf_counter() - t
            for title in ("GANSpace", "SeFa", "StyleSpace channels"):  # open the closed panels
                page.get_by_text(title, exact=True).click()
            page.wait_for_selector(f"#{SLIDERS[-1]} input[type=range]", state="visible")
            page.wait_for_timeout(1000)  # let the panels finish opening before clicking at positions
            for k in range(3):  # warm-up: first renders pay for lazy set-up (not 0.5: strength 0 changes nothing)
                bh.move_slider(page, SLIDERS[k], (0.3, 0.7, 0.85)[k])
            for k in range(4 * moves):
                if len(lat) == moves:
                    break
                sid = SLIDERS[k % len(SLIDERS)]
                u = ((k * 7919) % 97) / 96  # spread over the track, away from the middle (strength 0 changes nothing)
                frac = 0.1 + 0.3 * u if k % 2 else 0.6 + 0.3 * u
                ms = bh.move_slider(page, sid, frac)
                if ms is None:  # the click did not change the value
                    continue
                lat.append({"slider": sid, "fraction": round(frac, 3), "ms": round(ms, 1)})
            if screenshots is not None:
                screenshots.mkdir(parents=True, exist_ok=True)
                for title in ("GANSpace", "SeFa"):  # close the long panels again for the picture
                    page.get_by_text(title, exact=True).click()
                page.click("#reset")
                page.wait_for_timeout(1000)
                bh.move_slider(page, "s-attributes-1", 0.9)
                page.evaluate("window.scrollTo(0, 0)")
                page.screenshot(path=str(screenshots / "studio.png"), clip={"x": 0, "y": 0, "width": 1300, "height": 1100})
            t = time.perf_counter()
            page.click("#export")
            bh.wait_status(page, "Downloads ready")
            once["prepare_downloads_s"] = time.perf_counter() - t
            t = time.perf_counter()
            page.click("#refine")
            bh.wait_status(page, "Refined", timeout=300)
            once["refine_100_steps_s"] = time.perf_counter() - t
            t = time.perf_counter()
            page.click("#random")
            bh.wait_status(page, "A sample")
            once["random_face_s"] = time.perf_counter() - t
            if screenshots is not None:
                from PIL import Image
                import numpy as np

                p = tmp / "sky.png"
                Image.fromarray(np.tile(np.linspace(0, 255, 300, dtype=np.uint8), (300, 1))).save(p)
                page.set_input_files("#upload input[type=file]", str(p))
                bh.wait_status(page, "No face")
                page.evaluate("window.scrollTo(0, 0)")
                page.screenshot(path=str(screenshots / "studio-no-face.png"), clip={"x": 0, "y": 0, "width": 1300, "height": 520})
    finally:
        srv.stop()
    ms = [r["ms"] for r in lat]
    qs = statistics.quantiles(ms, n=10) if len(ms) >= 2 else [ms[0]] * 9
    synth = _server_synthesis_ms(model)
    return {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "browser": "Debian chromium, headless, via Playwright", "date": _dt.date.today().isoformat()},
        "model": model,
        "moves": len(lat),
        "slider_to_image_ms": {"median": round(statistics.median(ms), 1), "p10": round(qs[0], 1), "p90": round(qs[-1], 1),
                               "min": min(ms), "max": max(ms), "mean": round(statistics.fmean(ms), 1)},
        "goal_ms": GOAL_MS,
        "goal_met": statistics.median(ms) <= GOAL_MS,
        "server_edit_and_synthesis_ms": round(synth, 1),
        "startup_s": round(startup_s, 1),
        "once": {k: round(v, 2) for k, v in once.items()},
        "per_move": lat,
    }


def to_markdown(out: dict[str, Any]) -> str:
    s = out["slider_to_image_ms"]
    rows = [
        f"# Studio latency ({out['model']} model)",
        "",
        f"{out['machine']['cores']} cores, {out['machine']['browser']}, {out['machine']['date']}. "
        "Generated by `benchmarks/studio_latency.py`.",
        "",
        "| slider release → new image | median | p10 | p90 | min | max | goal |",
        "|---|---|---|---|---|---|---|",
        f"| {out['moves']} moves | **{s['median']:.0f} ms** | {s['p10']:.0f} | {s['p90']:.0f} | {s['min']:.0f} | {s['max']:.0f} | "
        f"≤ {out['goal_ms']:.0f} ms: {'met' if out['goal_met'] else 'not met'} |",
        "",
        f"Of that, the edit and the one synthesis pass take {out['server_edit_and_synthesis_ms']:.0f} ms on the server; "
        "the rest is the web round trip (Gradio's queue, PNG encoding, the event stream and the image fetch).",
        "",
        "| action | seconds |",
        "|---|---|",
    ]
    names = {"page_load_s": "page load", "upload_to_reconstruction_s": "upload → aligned, encoded, shown",
             "prepare_downloads_s": "prepare downloads (PNG, latent, GIF)", "refine_100_steps_s": "refine, 100 steps",
             "random_face_s": "random face"}
    for k, v in out["once"].items():
        rows.append(f"| {names.get(k, k)} | {v:.2f} |")
    rows.append(f"| studio start-up (model loading) | {out['startup_s']:.1f} |")
    return "\n".join(rows) + "\n"


def write_results(out: dict[str, Any], out_dir: Path = RESULTS) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = out_dir / "studio_latency.json", out_dir / "studio_latency.md"
    for path, text in zip(paths, (json.dumps(out, indent=2) + "\n", to_markdown(out))):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return paths


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--moves", type=int, default=40)
    ap.add_argument("--screenshots", type=Path, default=None)
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    out = run(model=args.model, moves=args.moves, screenshots=args.screenshots)
    json_path, md_path = write_results(out, args.out_dir)
    print(to_markdown(out))
    print(f"wrote {json_path} and {md_path}")
    return out


if __name__ == "__main__":
    main()
