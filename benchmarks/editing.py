"""Edit benchmark: does each method move its attribute, and nothing else?

    python benchmarks/editing.py synthetic     # `synthetic` model, every factor, every method
    python benchmarks/editing.py real          # `default` model, expression classes (smile = happiness)
    python benchmarks/editing.py all

Synthetic side: for every attribute the shipped factor regressor scores, on two sets of held-out
faces — generated samples (seeds apart from those the directions were fitted on) and inverted test
renders (held-out seeds, ``w+`` inversion with its default recipe) — each method's edit is rendered
at ``-s`` and ``+s`` and measured with :func:`latentshop.metrics.edits.edit_effect`:

- ``interfacegan`` — the shipped SVM normal; ``interfacegan|keep`` — conditioned on every other
  attribute (InterFaceGAN's conditional manipulation);
- ``ganspace`` / ``sefa`` — the component, layer group (all, coarse, middle, fine) and sign that
  raise the attribute most on a separate calibration set of samples ("matched to the attribute");
- ``stylespace`` — the attribute's best shipped StyleSpace channel.

Directions are pushed ``s = 2`` standard deviations of ``w`` along them, channels ``5`` of their own
spread (one channel moves less than a whole direction; the ratios below do not depend on it).
Reported per attribute and method: target change per unit (fraction of the attribute's range),
leakage (mean absolute change of every other attribute, same units), selectivity (leakage per unit
of target change: lower is better), and the mean pixel change outside the attribute's part (part
segmenter on the renders, dilated 2 px) per unit of strength, per unit of target change and as a
ratio to the change inside the part. The winner of an attribute is the method with the lowest
selectivity among those that move it by at least 0.02 of its range per unit.

Real side: the ``default`` model's expression directions on generated samples and inverted lfw-faces
test photos, with the expression classifier's probabilities as the attributes, dlib identity
similarity between the unedited and the edited face (``+s``), and dlib's 68 landmarks
(:func:`latentshop.metrics.edits.landmark_edit_effect`): the change of the mouth's width, opening
and corner lift, and the shift of the landmarks away from the mouth.

One evaluator labels, chooses and scores on each side (see "What the scores can and cannot show" in
the report); the part segmenter's and dlib's measures are the scores that do not come from it.
Every side records its run (id, date, git commit, dirty tree, machine); a side kept from an earlier
report keeps its own.

Writes ``benchmarks/results/editing.json`` and ``.md``, ``docs/editing-benchmark.md``,
``docs/images/editing-selectivity.png`` and sweep sheets ``docs/images/edit-sweep-*.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from provenance import code_version, new_run  # noqa: E402

from latentshop import load_evaluator, load_model  # noqa: E402
from latentshop.data.images import atomic_write_bytes, make_grid, save_image, to_uint8  # noqa: E402
from latentshop.editing import Edit, edit, sample_ws  # noqa: E402
from latentshop.editing.directions import DirectionSet, attribute_scores  # noqa: E402
from latentshop.editing.edits import layer_groups  # noqa: E402
from latentshop.editing.stylespace import SYNTHETIC_FACTOR_PARTS  # noqa: E402
from latentshop.latents import Latent, synthesize  # noqa: E402
from latentshop.metrics.edits import dilate, edit_effect, landmark_edit_effect  # noqa: E402

SEED_SAMPLES = 2026  # generated faces: torch seed of their z (the directions were fitted on seed 0)
SEED_CALIBRATION = 77  # samples that choose GANSpace / SeFa components
SEED_RENDERS = 1_300_000  # held-out synthetic renders that are inverted (>= the held-out seeds)
DIRECTION_STRENGTH = 2.0
CHANNEL_STRENGTH = 5.0
MIN_TARGET = 0.02  # a method must move the attribute by this share of its range per unit to win
METHODS = ("interfacegan", "interfacegan|keep", "ganspace", "sefa", "stylespace")

#: The attributes measured on the synthetic side, and where each lives (None: everywhere, no pixel measure).
SYNTHETIC_PARTS = {k: v for k, v in SYNTHETIC_FACTOR_PARTS.items() if not k.endswith(":sin")}

#: The library code the figures depend on (its hash goes into each side's run record).
EDITING_CODE = ("src/latentshop/editing", "src/latentshop/inversion", "src/latentshop/models", "src/latentshop/metrics",
                "src/latentshop/ops", "src/latentshop/latents.py", "src/latentshop/registry.py", "src/latentshop/checkpoints",
                "src/latentshop/data")

#: ``extra(base, minus, plus, strength) -> {name: value}``: measures of an edit besides the evaluator's.
Extra = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], dict[str, float]]


@dataclass(frozen=True)
class ModelEdits:
    """The edit sets of a model's files that the benchmark compares."""

    directions: list[Any]  # DirectionSet: interfacegan, ganspace, sefa
    channels: list[Any]  # ChannelSet: StyleSpace channels per attribute


def model_edits(bundle: Any) -> ModelEdits:
    """A model's direction and channel sets (from ``latentshop.load_model(...).edits``)."""
    return ModelEdits(bundle.edits.family_sets("directions"), bundle.edits.family_sets("stylespace"))


def _group(name: str) -> str:
    return name.split(":")[0]


def _ranges_synthetic() -> dict[str, float]:
    from latentshop.data.synthetic import FACTORS

    out = {}
    for name, fac in FACTORS.items():
        if fac.kind == "float":
            out[name] = fac.high - fac.low
    for hue in ("background_hue", "clothing_hue"):
        out.pop(hue, None)
        out[f"{hue}:cos"] = out[f"{hue}:sin"] = 2.0
    out["glasses"] = 1.0
    return out


def _scores(ev: torch.nn.Module, img: torch.Tensor, keys: list[str]) -> dict[str, torch.Tensor]:
    s, _ = attribute_scores(ev, img)
    return {k: s[k] for k in keys}


def _render(G: torch.nn.Module, lat: Latent, batch: int = 128) -> torch.Tensor:
    return torch.cat([synthesize(G, lat[i:i + batch]) for i in range(0, len(lat), batch)])


def match_component(G: torch.nn.Module, dirs: DirectionSet, ev: torch.nn.Module, calib: Latent, keys: list[str],
                    ranges: dict[str, float], *, strength: float) -> dict[str, tuple[str, str, int, float]]:
    """For every attribute, the (component, layer group, sign) of ``dirs`` that raises it most on ``calib``."""
    groups = {k: v for k, v in layer_groups(G).items() if v}
    best: dict[str, tuple[str, str, int, float]] = {}
    for name in dirs.names:
        for gname, layers in groups.items():
            plus = _scores(ev, _render(G, edit(G, calib, [dirs.get(name, strength, layers=layers)])), keys)
            minus = _scores(ev, _render(G, edit(G, calib, [dirs.get(name, -strength, layers=layers)])), keys)
            for k in keys:
                change = float((plus[k] - minus[k]).mean()) / (2 * strength) / ranges[k]
                if k not in best or abs(change) > abs(best[k][3]):
                    best[k] = (name, gname, 1 if change >= 0 else -1, change)
    return best


def _method_edits(G: torch.nn.Module, catalog: Any, attr: str, keys: list[str], matched: dict[str, dict]) -> dict[str, Callable[[float], Edit] | None]:
    """``{method: strength -> Edit}`` for one attribute (``None`` where the method has nothing for it)."""
    ifg = next((d for d in catalog.directions if d.method == "interfacegan"), None)
    out: dict[str, Callable[[float], Edit] | None] = {m: None for m in METHODS}
    if ifg is not None and attr in ifg:
        out["interfacegan"] = lambda s: ifg.get(attr, s)
        keep = [k for k in ifg.names if _group(k) != _group(attr) and k in keys]
        out["interfacegan|keep"] = lambda s: ifg.get(attr, s, keep=keep)
    for method in ("ganspace", "sefa"):
        d = next((d for d in catalog.directions if d.method == method), None)
        if d is not None and attr in matched.get(method, {}):
            name, gname, sign, _ = matched[method][attr]
            layers = layer_groups(G)[gname]
            out[method] = lambda s, d=d, name=name, layers=layers, sign=sign: d.get(name, sign * s, layers=layers)
    for c in catalog.channels:
        if c.attributes.get(attr):
            out["stylespace"] = lambda s, c=c: c.get(attr, s)
    return out


def _strength(method: str) -> float:
    return CHANNEL_STRENGTH if method == "stylespace" else DIRECTION_STRENGTH


def measure_set(G: torch.nn.Module, catalog: Any, ev: torch.nn.Module, lat: Latent, attrs: list[str], keys: list[str],
                ranges: dict[str, float], matched: dict[str, dict], *, regions: Callable[[list[torch.Tensor], str], torch.Tensor | None],
                extra: Extra | None = None,
                methods: tuple[str, ...] = METHODS) -> list[dict[str, Any]]:
    rows = []
    base = _render(G, lat)
    for attr in attrs:
        for method, make in _method_edits(G, catalog, attr, keys, matched).items():
            if make is None or method not in methods:
                continue
            s = _strength(method)
            plus, minus = _render(G, edit(G, lat, [make(s)])), _render(G, edit(G, lat, [make(-s)]))
            sp, sm = _scores(ev, plus, keys), _scores(ev, minus, keys)
            others = {k: v for k, v in sp.items() if _group(k) != _group(attr) or k == attr}
            m = edit_effect(minus, plus, {k: sm[k] for k in others}, others, target=attr, strength=s, ranges=ranges,
                            region=regions([base, plus, minus], attr))
            row = {"attribute": attr, "method": method, "strength": s, **{k: v for k, v in m.items() if k != "per_attribute"},
                   "per_attribute": m["per_attribute"]}
            if method in ("ganspace", "sefa"):
                name, gname, sign, _ = matched[method][attr]
                row["component"] = f"{'-' if sign < 0 else '+'}{name}@{gname}"
            if extra is not None:
                row.update(extra(base, minus, plus, s))
            rows.append(row)
    return rows


def winners(rows: list[dict[str, Any]]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for attr in dict.fromkeys(r["attribute"] for r in rows):
        ok = [r for r in rows if r["attribute"] == attr and r["target_change"] >= MIN_TARGET]
        out[attr] = min(ok, key=lambda r: r["selectivity"])["method"] if ok else None
    return out


# ---- synthetic ----------------------------------------------------------------------------------
def synthetic_inverted(G: torch.nn.Module, n: int, steps: int | None) -> Latent:
    from latentshop.inversion import invert

    return invert(G, held_out_targets("synthetic", G, n), method="w+", steps=steps)


def part_regions() -> tuple[bool, Callable[[list[torch.Tensor], str], torch.Tensor | None]]:
    """``(segmenter installed, regions)``: ``regions(images, attr)`` is where ``attr`` lives in any of
    ``images`` (the part segmenter's masks of its parts, united and dilated 2 px), ``None`` without a
    segmenter or a part (yaw, light)."""
    from latentshop.checkpoints.evaluators import list_evaluators
    from latentshop.data.synthetic import PART_NAMES

    seg = load_evaluator("parts") if "parts" in list_evaluators() else None

    def regions(images: list[torch.Tensor], attr: str) -> torch.Tensor | None:
        parts = SYNTHETIC_PARTS.get(attr)
        if seg is None or parts is None:
            return None
        idx = [PART_NAMES.index(p) for p in parts]
        masks = [torch.isin(seg.predict(img), torch.tensor(idx)).float().unsqueeze(1) for img in images]
        return dilate(torch.stack(masks).amax(0), 2)

    return seg is not None, regions


def bench_synthetic(n_samples: int, n_inverted: int, n_calib: int, *, inv_steps: int | None = None,
                    attrs: list[str] | None = None, model: str = "synthetic", run: dict[str, Any] | None = None) -> dict[str, Any]:
    bundle = load_model(model)
    G = bundle.G
    ev = load_evaluator("synthetic")
    has_segmenter, regions = part_regions()
    catalog = model_edits(bundle)
    ranges = _ranges_synthetic()
    keys = list(ranges)
    attrs = attrs or [a for a in SYNTHETIC_PARTS if a in keys]

    t0 = time.perf_counter()
    calib = Latent.from_ws(G, sample_ws(G, n_calib, seed=SEED_CALIBRATION))
    matched = {}
    for d in catalog.directions:
        if d.method in ("ganspace", "sefa"):
            print(f"[synthetic] matching {d.method} components ...", flush=True)
            matched[d.method] = match_component(G, d, ev, calib, keys, ranges, strength=DIRECTION_STRENGTH)
    sets = {"generated": Latent.from_ws(G, sample_ws(G, n_samples, seed=SEED_SAMPLES))}
    if n_inverted:
        print(f"[synthetic] inverting {n_inverted} held-out renders ...", flush=True)
        sets["inverted"] = synthetic_inverted(G, n_inverted, inv_steps)
    out: dict[str, Any] = {"model": model, "run": run or new_run(code=editing_code_version()), "segmenter": has_segmenter,
                           "attributes": attrs, "sets": {}}
    for set_name, lat in sets.items():
        print(f"[synthetic] measuring on {set_name} ({len(lat)} faces) ...", flush=True)
        rows = measure_set(G, catalog, ev, lat, attrs, keys, ranges, matched, regions=regions)
        out["sets"][set_name] = {"images": len(lat), "rows": rows, "winners": winners(rows)}
    out["seconds"] = time.perf_counter() - t0
    out["_G"], out["_catalog"], out["_matched"] = G, catalog, matched
    return out


# ---- real ---------------------------------------------------------------------------------------
def dlib_landmarks(images: torch.Tensor) -> np.ndarray:
    """dlib's 68 landmarks ``[N, 68, 2]`` (x, y in the images' pixels) of FFHQ-aligned faces.

    Each face is upsampled (Lanczos) to 256 px, as :mod:`latentshop.metrics.identity` does, and the
    landmarks are placed in the fixed box where dlib's detector puts an aligned face
    (``ALIGNED_BOX``), so a face and its edit are measured in the same box.
    """
    from PIL import Image

    from latentshop.data.align import face_landmarks, to_pil
    from latentshop.metrics.identity import ALIGNED_BOX, MIN_SIDE

    out = []
    for img in images:
        pil = to_pil(img.clamp(-1, 1))
        w, h = pil.size
        scale = max(1.0, MIN_SIDE / min(w, h))
        big = pil.resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS) if scale > 1 else pil
        W, H = big.size
        box = (round(ALIGNED_BOX[0] * W), round(ALIGNED_BOX[1] * H), round(ALIGNED_BOX[2] * W), round(ALIGNED_BOX[3] * H))
        out.append(face_landmarks(np.asarray(big), box) / scale)
    return np.stack(out) if out else np.zeros((0, 68, 2))


def _real_setup(catalog: Any) -> tuple[torch.nn.Module, list[str], dict[str, float], list[str], Extra]:
    """The real side's instruments: the expression classifier, its classes as attributes (those with
    an InterFaceGAN direction of validation accuracy >= 0.75), and the measures that do not come from
    it: dlib identity of before vs after, and dlib landmark geometry of ``-s`` vs ``+s``."""
    from latentshop.metrics.identity import identity_similarities

    ev = load_evaluator("expression")
    keys = list(ev.classes)
    ifg = next((d for d in catalog.directions if d.method == "interfacegan"), None)
    attrs = [a for a in keys if ifg is not None and a in ifg and ifg.meta.get("stats", {}).get(a, {}).get("val_accuracy", 0) >= 0.75]

    def independent(base: torch.Tensor, minus: torch.Tensor, plus: torch.Tensor, strength: float) -> dict[str, float]:
        out = {"identity": float(np.nanmean(identity_similarities(base, plus, aligned=True)))}
        out.update(landmark_edit_effect(minus, plus, strength=strength, landmarks=dlib_landmarks))
        return out

    return ev, keys, {k: 1.0 for k in keys}, attrs, independent


def bench_real(n_samples: int, n_inverted: int, n_calib: int, *, inv_steps: int | None = None, model: str = "default",
               run: dict[str, Any] | None = None) -> dict[str, Any]:
    from latentshop.inversion import invert

    bundle = load_model(model)
    G = bundle.G
    catalog = model_edits(bundle)
    ev, keys, ranges, attrs, identity = _real_setup(catalog)
    t0 = time.perf_counter()
    calib = Latent.from_ws(G, sample_ws(G, n_calib, seed=SEED_CALIBRATION))
    matched = {d.method: match_component(G, d, ev, calib, keys, ranges, strength=DIRECTION_STRENGTH)
               for d in catalog.directions if d.method in ("ganspace", "sefa")}
    sets = {"generated": Latent.from_ws(G, sample_ws(G, n_samples, seed=SEED_SAMPLES))}
    lfw = SHARED / "data" / "lfw-faces"
    if n_inverted and lfw.is_dir():
        targets = held_out_targets("real", G, n_inverted)
        print(f"[real] inverting {len(targets)} lfw-faces test photos ...", flush=True)
        sets["inverted"] = invert(G, targets, method="w+", steps=inv_steps)
    out: dict[str, Any] = {"model": model, "run": run or new_run(code=editing_code_version()), "attributes": attrs, "sets": {}}
    for set_name, lat in sets.items():
        print(f"[real] measuring on {set_name} ({len(lat)} faces) ...", flush=True)
        rows = measure_set(G, catalog, ev, lat, attrs, keys, ranges, matched, regions=lambda imgs, a: None, extra=identity)
        out["sets"][set_name] = {"images": len(lat), "rows": rows, "winners": winners(rows)}
    out["seconds"] = time.perf_counter() - t0
    out["_G"], out["_catalog"], out["_matched"] = G, catalog, matched
    return out


# ---- editability of inverted codes ------------------------------------------------------------------
#: the inversion methods whose codes are edited (each inverts the same held-out faces)
INVERSION_METHODS = ("w+", "psp", "e4e", "restyle-psp", "restyle-e4e", "e4e+opt")
EDITABILITY_EDITS = ("interfacegan", "interfacegan|keep")


def held_out_targets(side: str, G: torch.nn.Module, n: int) -> torch.Tensor:
    """The faces that are inverted: held-out synthetic renders, or the first lfw-faces test photos."""
    if side == "synthetic":
        from latentshop.data.synthetic import render_batch

        data, _, _ = render_batch(range(SEED_RENDERS, SEED_RENDERS + n), res=G.img_resolution, domain="photo")
        return torch.from_numpy(data).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    from latentshop.data.dataset import load_image

    lfw = SHARED / "data" / "lfw-faces"
    rows = [json.loads(line) for line in (lfw / "labels.jsonl").read_text().splitlines() if line.strip()]
    files = sorted(r["file"] for r in rows if r["split"] == "test")[:n]
    return torch.stack([load_image(lfw / f, res=G.img_resolution, channels=G.img_channels) for f in files])


def bench_editability(side: str, n: int, *, inv_steps: int | None = None, attrs: list[str] | None = None,
                      run: dict[str, Any] | None = None) -> dict[str, Any]:
    """The same held-out faces inverted by every method, then edited with InterFaceGAN: how far an
    edit moves its attribute and how much it leaks, per inversion method (the codes' editability)."""
    from latentshop.inversion import ENCODER_METHODS, invert
    from latentshop.metrics.image import psnr

    model = "synthetic" if side == "synthetic" else "default"
    bundle = load_model(model)
    G = bundle.G
    catalog = model_edits(bundle)
    if side == "synthetic":
        ev = load_evaluator("synthetic")
        ranges = _ranges_synthetic()
        keys = list(ranges)
        attrs = attrs or [a for a in SYNTHETIC_PARTS if a in keys]
        extra = None
        _, regions = part_regions()
    else:
        ev, keys, ranges, attrs, extra = _real_setup(catalog)
        regions = lambda imgs, a: None  # noqa: E731 - grayscale photos: no part segmenter

    targets = held_out_targets(side, G, n)
    out: dict[str, Any] = {"model": model, "run": run or new_run(code=editing_code_version()), "images": int(targets.shape[0]),
                           "attributes": attrs, "methods": []}
    for method in INVERSION_METHODS:
        print(f"[editability {side}] inverting with {method} ...", flush=True)
        encoder = bundle.encoder(ENCODER_METHODS[method][0]) if method in ENCODER_METHODS else None
        lat = invert(G, targets, method=method, steps=inv_steps if method in ("w+", "e4e+opt") else None, encoder=encoder)
        rec = _render(G, lat)
        rows = measure_set(G, catalog, ev, lat, attrs, keys, ranges, {}, regions=regions, extra=extra, methods=EDITABILITY_EDITS)
        entry: dict[str, Any] = {"method": method, "psnr": float(psnr(rec.clamp(-1, 1), targets).mean()),
                                 "seconds_per_image": lat.meta["seconds"] / len(lat), "rows": rows}
        for e in EDITABILITY_EDITS:
            rs = [r for r in rows if r["method"] == e]
            entry[e] = {"median_target": float(np.median([r["target_change"] for r in rs])),
                        "median_leakage": float(np.median([r["leakage"] for r in rs])),
                        "median_selectivity": float(np.median([r["selectivity"] for r in rs if r["target_change"] > 0] or [float("nan")])),
                        "moved": sum(1 for r in rs if r["target_change"] >= MIN_TARGET), "attributes": len(rs)}
            outside = [r["outside_to_inside"] for r in rs if r.get("outside_to_inside") is not None]
            if outside:  # the part segmenter's: independent of the evaluator
                entry[e]["median_outside_to_inside"] = float(np.median(outside))
            if extra is not None:
                entry[e]["median_identity"] = float(np.nanmedian([r["identity"] for r in rs]))
                entry[e]["median_away_from_mouth_shift"] = float(np.nanmedian([r["away_from_mouth_shift"] for r in rs]))
        out["methods"].append(entry)
        ifg = entry["interfacegan"]
        print(f"    PSNR {entry['psnr']:.2f} dB; InterFaceGAN median target {ifg['median_target']:+.3f}, leakage "
              f"{ifg['median_leakage']:.3f}, selectivity {ifg['median_selectivity']:.2f}", flush=True)
    return out


def _editability_section(result: dict[str, Any]) -> str:
    md = []
    for side in ("synthetic", "real"):
        part = result.get(side, {}).get("editability")
        if not part:
            continue
        what = ("held-out synthetic renders, every factor" if side == "synthetic"
                else f"lfw-faces test photos, expressions {', '.join(part['attributes'])}")
        md.append(f"\n### Editability of inverted codes: {side} (`{part['model']}` model, {part['images']} {what})\n\n"
                  f"{_run_line(part.get('run'))}\n\n"
                  "The same faces inverted by each method, then edited with the shipped InterFaceGAN directions (±"
                  f"{DIRECTION_STRENGTH:g} std). Medians over attributes; selectivity over attributes the edit raises. "
                  + ("*outside / inside px*: the part segmenter's measure (independent of the evaluator).\n\n" if side == "synthetic" else
                     "*identity* and *landmark shift* (away from the mouth, per unit): dlib's measures (independent of the classifier).\n\n"))
        cols = ["inversion", "PSNR dB", "s / image"]
        for e in EDITABILITY_EDITS:
            cols += [f"{e}: target / unit", "leakage / unit", "selectivity", "moved"]
            cols += ["identity", "landmark shift / unit"] if side == "real" else ["outside / inside px"]
        md.append("| " + " | ".join(cols) + " |\n|" + "|".join("---" for _ in cols) + "|\n")
        for m in part["methods"]:
            cells = [m["method"], _fmt(m["psnr"], "{:.2f}"), _fmt(m["seconds_per_image"], "{:.3f}")]
            for e in EDITABILITY_EDITS:
                x = m[e]
                cells += [_fmt(x["median_target"], "{:+.3f}"), _fmt(x["median_leakage"], "{:.3f}"), _fmt(x["median_selectivity"], "{:.2f}"),
                          f"{x['moved']} / {x['attributes']}"]
                cells += ([_fmt(x.get("median_identity"), "{:.3f}"), _fmt(x.get("median_away_from_mouth_shift"), "{:.3f}")]
                          if side == "real" else [_fmt(x.get("median_outside_to_inside"), "{:.2f}")])
            md.append("| " + " | ".join(cells) + " |\n")
    return "".join(md)


def _run_line(run: dict[str, Any] | None) -> str:
    """Which run measured a part of the report (a part kept from an earlier report keeps its run)."""
    if not run:
        return "*Measured before runs were recorded: date, commit and code unknown.*"
    m = run.get("machine") or {}
    return (f"*Measured {run.get('date')} by run `{run.get('id')}` at commit `{(run.get('commit') or 'none')[:12]}`"
            f"{' with uncommitted changes' if run.get('dirty') else ''} (code `{run.get('code_version')}`; {m.get('cpu', '?')}, "
            f"{m.get('torch_threads', '?')} torch threads, torch {m.get('torch', '?')}).*")


#: The caveat every edit report carries (docs/editing-benchmark.md).
SCORES_CAVEAT = """
## What the scores can and cannot show

On each side one evaluator does almost all the work: the factor regressor (`synthetic` evaluator) on
the synthetic side, the expression classifier (`expression`) on the real side. It labelled the
samples the InterFaceGAN directions were fitted on, it chose the StyleSpace channels (relevance and
measured response), it matched the GANSpace and SeFa components on the calibration samples, and it
scores every edit here (*target*, *leakage*, *selectivity*, and so the winners). Conditional
InterFaceGAN (`interfacegan|keep`) is the direction projected off the other attributes' directions,
which were fitted to that same evaluator's labels. These three columns therefore measure how well a
method moves what this evaluator sees, and they favour the methods built from it; a change the
evaluator does not see, or a cue it has learnt to read as the attribute, goes unnoticed. They cannot
show that an edit is disentangled in the image, only in the evaluator's outputs.

The scores that do not come from the labelling evaluator:

- **synthetic faces: the part segmenter** (`parts`, trained on the renderer's part masks, not on
  the factors). *outside / inside px* (the mean pixel change outside the attribute's part over the
  change inside it) and *outside px / unit* come from it alone; *outside px / target* divides by the
  evaluator's target change, so it is only half independent. Caveat: the synthetic model's StyleSpace
  channels were ranked partly by how much of their change falls inside these same part masks
  (`tools/ship_edits.sh`), so for `stylespace` the pixel measure is not independent of how the
  channel was chosen. `yaw` and `light` change the whole face and have no part.
- **real faces: dlib** — identity (face-descriptor cosine of the unedited and the +s face) and the
  68 landmarks of dlib's shape predictor, placed on each face upsampled to 256 px in the fixed box of
  an aligned face: *mouth width*, *mouth open* and *corners* (corner lift) are the changes per unit
  of strength in inter-ocular distances (a smile widens the mouth and lifts its corners, so
  `happiness` should raise both and `neutral` lower them), and *landmark shift* is the mean movement of
  the landmarks away from the mouth (brows, eyes, nose, jaw without the chin) per unit, the leakage.
  The landmarks are placed on 64 px grayscale faces, so they are coarse: compare methods, not
  absolutes; and a real smile also moves the cheeks and narrows the eyes, so a perfect smile edit
  does not have zero shift.
"""


# ---- reporting ----------------------------------------------------------------------------------
def _fmt(v: Any, spec: str) -> str:
    if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))):
        return "–"
    return spec.format(v)


def _table(rows: list[dict[str, Any]], win: dict[str, str | None], *, pixel: bool, identity: bool) -> str:
    cols = ["attribute", "method", "target / unit", "leakage / unit", "selectivity"]
    if pixel:
        cols += ["outside / inside px (segmenter)", "outside px / unit", "outside px / target"]
    if identity:
        cols += ["identity (dlib)", "mouth width / unit", "mouth open / unit", "corners / unit", "landmark shift / unit"]
    md = "| " + " | ".join(cols) + " |\n|" + "|".join("---" for _ in cols) + "|\n"
    for r in rows:
        method = r["method"] + (f" ({r['component']})" if r.get("component") else "")
        if win.get(r["attribute"]) == r["method"]:
            method = f"**{method}**"
        cells = [r["attribute"], method, _fmt(r["target_change"], "{:+.3f}"), _fmt(r["leakage"], "{:.3f}"), _fmt(r["selectivity"], "{:.2f}")]
        if pixel:
            cells += [_fmt(r.get("outside_to_inside"), "{:.2f}"), _fmt(r.get("outside_change"), "{:.2f}"),
                      _fmt(r.get("outside_per_target"), "{:.1f}")]
        if identity:
            cells += [_fmt(r.get("identity"), "{:.3f}"), _fmt(r.get("mouth_width_change"), "{:+.3f}"),
                      _fmt(r.get("mouth_opening_change"), "{:+.3f}"), _fmt(r.get("corner_lift_change"), "{:+.3f}"),
                      _fmt(r.get("away_from_mouth_shift"), "{:.3f}")]
        md += "| " + " | ".join(cells) + " |\n"
    return md


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None and math.isfinite(r[key])]
    return float(np.median(vals)) if vals else None


def _method_summary(rows: list[dict[str, Any]], win: dict[str, str | None], *, side: str = "synthetic") -> str:
    """Per method: how many attributes it moves and its median scores over them (the evaluator's, then
    the independent ones: the part segmenter's on synthetic faces, dlib's on real ones)."""
    indep = ([("outside_to_inside", "median outside / inside px (segmenter)", "{:.2f}"),
              ("outside_per_target", "median outside px / target", "{:.1f}")] if side == "synthetic" else
             [("identity", "median identity (dlib)", "{:.3f}"), ("away_from_mouth_shift", "median landmark shift / unit", "{:.3f}")])
    head = ["method", f"attributes moved (≥ {MIN_TARGET} / unit)", "median selectivity", *(c[1] for c in indep), "wins"]
    md = "| " + " | ".join(head) + " |\n|" + "|".join("---" for _ in head) + "|\n"
    for m in METHODS:
        rs = [r for r in rows if r["method"] == m]
        if not rs:
            continue
        moved = [r for r in rs if r["target_change"] >= MIN_TARGET]
        cells = [m, f"{len(moved)} / {len(rs)}", _fmt(_median(moved, "selectivity"), "{:.2f}")]
        cells += [_fmt(_median(moved, key), spec) for key, _, spec in indep]
        cells.append(str(sum(1 for w in win.values() if w == m)))
        md += "| " + " | ".join(cells) + " |\n"
    return md


def sweep_sheets(part: dict[str, Any], attrs: list[str], prefix: str, docs: Path, keys: list[str]) -> list[str]:
    """One sheet per attribute: a row per method, strengths -3..3 (x 2.5 for channels), one sample."""
    G, catalog, matched = part["_G"], part["_catalog"], part["_matched"]
    lat = Latent.from_ws(G, sample_ws(G, 1, seed=SEED_SAMPLES + 1))
    names = []
    for attr in attrs:
        rows, labels = [], []
        for method, make in _method_edits(G, catalog, attr, keys, matched).items():
            if make is None:
                continue
            k = 2.5 if method == "stylespace" else 1.0
            frames = [to_uint8(synthesize(G, edit(G, lat, [make(k * s)])))[0] for s in np.linspace(-3, 3, 7)]
            rows.extend(frames)
            labels.append(method)
        if not rows:
            continue
        path = docs / "images" / f"edit-sweep-{prefix}-{attr.replace(':', '_')}.png"
        big = np.stack(rows).repeat(2, axis=1).repeat(2, axis=2)  # 2x nearest: 64-px faces are small on a page
        save_image(make_grid(big, cols=7, pad=2), path)
        names.append((attr, path.name, labels))
    return names


def selectivity_plot(result: dict[str, Any], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    parts = [(f"{side} / {name}", s) for side in ("synthetic", "real") if side in result for name, s in result[side]["sets"].items()]
    fig, axes = plt.subplots(len(parts), 1, figsize=(11, 3.2 * len(parts)), squeeze=False)
    for ax, (title, s) in zip(axes[:, 0], parts):
        attrs = list(dict.fromkeys(r["attribute"] for r in s["rows"]))
        width = 0.16
        for j, m in enumerate(METHODS):
            ys = []
            for a in attrs:
                r = next((r for r in s["rows"] if r["attribute"] == a and r["method"] == m), None)
                ys.append(r["selectivity"] if r is not None and r["target_change"] >= MIN_TARGET else np.nan)
            ax.bar(np.arange(len(attrs)) + (j - 2) * width, ys, width, label=m)
        ax.set_xticks(np.arange(len(attrs)))
        ax.set_xticklabels(attrs, rotation=30, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("leakage per unit target (log)")
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="y")
    axes[0, 0].legend(fontsize=7, ncol=5)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)
    return path.name


def write_reports(result: dict[str, Any], out_dir: Path, docs: Path | None) -> None:
    from inversion import public_json

    m = result["machine"]
    md = ["# Edit benchmark\n\n",
          f"Report written {m['date']} on {m['cpu']}, {m['cores']} cores, torch {m['torch']}; each side below names the run that "
          "measured it (a side kept from an earlier report keeps its date and commit). Reproduce: `python benchmarks/editing.py all`. "
          f"Directions are pushed ±{DIRECTION_STRENGTH:g} standard deviations of w along them, StyleSpace channels ±{CHANNEL_STRENGTH:g} of "
          "their own spread; *target* is the attribute's change per unit of strength (share of its range), *leakage* the mean "
          "absolute change of every other attribute (same units), *selectivity* = leakage / target (lower is better). "
          f"Bold: the attribute's winner (lowest selectivity among methods moving it ≥ {MIN_TARGET} / unit). Target, leakage, "
          "selectivity and the winners come from the evaluator that also built the edits; the columns marked segmenter or "
          "dlib do not (see *What the scores can and cannot show*).\n", SCORES_CAVEAT]
    for side, title in (("synthetic", "Synthetic faces (`synthetic` model, factor regressor)"), ("real", "Real faces (`default` model, expression classifier)")):
        if side not in result:
            continue
        part = result[side]
        md.append(f"\n## {title}\n\n{_run_line(part.get('run'))}\n")
        if side == "synthetic":
            md.append("\n*outside px*: mean absolute pixel change (8-bit levels) outside the attribute's part (part segmenter, "
                      "dilated 2 px), per unit of strength, per unit of target change, and over the change inside the part "
                      "(*outside / inside px*, the segmenter's alone). yaw and light change the whole face: no part.\n"
                      if part.get("segmenter") else "\nThe part segmenter is not installed: no pixel measure.\n")
        else:
            md.append("\n*identity*: dlib face-descriptor cosine between the unedited and the edited (+strength) face. "
                      "*mouth width*, *mouth open*, *corners*: change per unit of strength, in inter-ocular distances, of dlib's "
                      "landmark geometry between the -s and +s faces; *landmark shift*: mean movement of the landmarks away from "
                      "the mouth, per unit (same unit).\n")
        for set_name, s in part["sets"].items():
            md.append(f"\n### {set_name} ({s['images']} faces)\n\n")
            md.append(_method_summary(s["rows"], s["winners"], side=side) + "\n")
            md.append(_table(s["rows"], s["winners"], pixel=side == "synthetic" and part.get("segmenter"), identity=side == "real"))
    text = "".join(md) + _editability_section(result)
    atomic_write_bytes(out_dir / "editing.md", text.encode())
    if docs is None:
        atomic_write_bytes(out_dir / "editing.json", (json.dumps(public_json(result), indent=1) + "\n").encode())
        return
    extra = []
    plot = selectivity_plot(result, docs / "images" / "editing-selectivity.png")
    if plot:
        extra.append(f"\n![selectivity per attribute and method](images/{plot})\n")
    if "synthetic" in result and "_G" in result["synthetic"]:
        sheets = sweep_sheets(result["synthetic"], ["smile", "age", "hair_length", "glasses"], "synthetic", docs,
                              list(_ranges_synthetic()))
        result["synthetic"]["sheets"] = [[attr, name, labels] for attr, name, labels in sheets]
    for attr, name, labels in result.get("synthetic", {}).get("sheets", []):
        extra.append(f"\n**{attr}** (rows: {', '.join(labels)}; strength -3 … +3):\n\n![{attr} sweep](images/{name})\n")
    if "real" in result and "_G" in result["real"]:
        sheets = sweep_sheets(result["real"], ["happiness"], "default", docs, list(result["real"]["_catalog"].directions[0].names))
        result["real"]["sheets"] = [[attr, name, labels] for attr, name, labels in sheets]
    for attr, name, labels in result.get("real", {}).get("sheets", []):  # kept from an earlier run when only one side ran
        extra.append(f"\n**{attr}** on the real-face model (rows: {', '.join(labels)}):\n\n![{attr} sweep](images/{name})\n")
    atomic_write_bytes(docs / "editing-benchmark.md", (text + "".join(extra)).encode())
    atomic_write_bytes(out_dir / "editing.json", (json.dumps(public_json(result), indent=1) + "\n").encode())


def editing_code_version() -> str:
    """The hash of :data:`EDITING_CODE` and of this script's measuring functions."""
    return code_version(EDITING_CODE, functions=(measure_set, match_component, _method_edits, bench_synthetic, bench_real,
                                                 bench_editability, dlib_landmarks, _real_setup, part_regions))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("which", choices=["synthetic", "real", "all", "editability"],
                    help="'editability': only the inverted codes' editability (both sides), other results kept")
    ap.add_argument("--n-samples", type=int, default=64, help="generated faces per side")
    ap.add_argument("--n-inverted", type=int, default=16, help="inverted held-out faces per side")
    ap.add_argument("--n-calib", type=int, default=32, help="samples that match GANSpace / SeFa components")
    ap.add_argument("--inv-steps", type=int, default=None, help="inversion steps (default: the w+ recipe)")
    ap.add_argument("--attributes", default=None, help="synthetic: comma-separated subset")
    ap.add_argument("--sides", default="synthetic,real", help="editability: the sides to measure")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run = new_run(code=editing_code_version())
    result: dict[str, Any] = {"machine": run["machine"], "run": run}
    previous = args.out_dir / "editing.json"
    if previous.exists() and args.which != "all":
        old = json.loads(previous.read_text())
        for key in ("synthetic", "real"):
            if key in old and key != args.which:
                result[key] = old[key]
    attrs = args.attributes.split(",") if args.attributes else None
    if args.which in ("synthetic", "all"):
        result["synthetic"] = bench_synthetic(args.n_samples, args.n_inverted, args.n_calib, inv_steps=args.inv_steps, attrs=attrs, run=run)
    if args.which in ("real", "all"):
        result["real"] = bench_real(args.n_samples, args.n_inverted, args.n_calib, inv_steps=args.inv_steps, run=run)
    if args.which in ("editability", "all"):
        for side in ("synthetic", "real"):
            if side in result and side in args.sides.split(","):
                result[side]["editability"] = bench_editability(side, args.n_inverted, inv_steps=args.inv_steps,
                                                                attrs=attrs if side == "synthetic" else None, run=run)
    write_reports(result, args.out_dir, None if args.no_docs else DOCS)
    return result


if __name__ == "__main__":
    main()
