"""Inversion benchmark: quality versus time of every optimisation method, loss setting and encoder.

    python benchmarks/inversion.py synthetic          # 50 held-out synthetic photo faces, `synthetic` model
    python benchmarks/inversion.py real               # `default` model: lfw-faces test split + align -> invert of ../shared/data/faces
    python benchmarks/inversion.py all

Synthetic side: the targets are renders of held-out seeds (``SEED_START`` + i, never used for
training) with known factors. Every configuration inverts the whole set as one batch, side by side
in one process; reported per configuration: PSNR, SSIM, MS-SSIM, perceptual distance (the bundled
MobileNet), the factor error of the reconstruction (the shipped factor regressor against the true
factors: mean absolute error / factor range for float factors, error rate for the others, averaged
over factors; the regressor's own error on the targets is the floor), and optimisation seconds per
image. PSNR is also recorded along the way (callback snapshots, not timed), which gives the
quality-versus-time plot. The reference is ``w`` with NVIDIA's 1000-step recipe.

Encoders (the bundled pSp and e4e of each model, trained in ReStyle form) run on the same targets:
one pass (``psp``, ``e4e``), ReStyle passes (``restyle-*``: 2 — the passes they were trained
with, their default — 3 and 5) and the hybrid ``e4e+opt`` (ReStyle-e4e start, then 50 or 100 ``w+``
steps; 100 is its default). Their seconds are wall time of the encoder passes
and renders for the whole batch after one warm-up call. The encoder goal: the best encoder reaches
at least 90 % of the default ``w+`` optimisation's PSNR (in dB) at least 100 times faster.

Real side: the same metrics plus dlib identity similarity (cosine of face descriptors) between
target and reconstruction, on the lfw-faces test split (already aligned) and on the photos of
``../shared/data/faces`` (FFHQ-aligned by ``latentshop.data.align`` first; photos with no face are
counted). Identity on a 64-px grayscale crop is upsampled for dlib; compare methods, not absolutes.

Every row records the run that measured it (id, date, git commit, whether the tree had uncommitted
changes, the hash of the code it depends on, the machine); the tables show it. Finished rows are
cached (``--cache``) under a key that includes that code hash, so a changed inversion, model, metric
or op is measured again; ``--fresh`` measures everything again. A time ratio (the default's share of
the reference's time, an encoder's speed-up) is only taken between rows of one run: rows of different
runs are reported side by side, and the goals that need the ratio say "not computed".

Writes ``benchmarks/results/inversion.json`` and ``.md``, ``docs/inversion.md`` and
``docs/images/inversion-quality-time.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from latentshop import load_discriminator, load_evaluator, load_model  # noqa: E402
from latentshop.data.images import atomic_write_bytes, make_grid, save_image, to_uint8  # noqa: E402
from latentshop.inversion import ENCODER_METHODS, invert  # noqa: E402
from latentshop.latents import synthesize  # noqa: E402
from latentshop.metrics.image import ms_ssim, psnr, ssim  # noqa: E402
from latentshop.metrics.perceptual import load_perceptual  # noqa: E402
from provenance import (code_version, machine_info, module_fingerprint, new_run, run_cell, runs_legend,  # noqa: E402
                        same_run, tensor_fingerprint)

__all__ = ["INVERSION_CODE", "machine_info", "main", "public_json"]  # machine_info: re-exported for the other benchmarks

SEED_START = 1_200_000  # held out (>= TEST_SEED_START) and apart from the evaluators' test seeds

#: The library code an inversion row depends on (hashed into its cache key and its run record): the
#: optimiser and encoders (and the registry that finds them), the networks, the metrics, the latents,
#: the ops, checkpoint loading, and the data code that renders, loads and aligns the targets.
INVERSION_CODE = ("src/latentshop/inversion", "src/latentshop/models", "src/latentshop/metrics", "src/latentshop/ops",
                  "src/latentshop/latents.py", "src/latentshop/registry.py", "src/latentshop/checkpoints", "src/latentshop/data/synthetic.py",
                  "src/latentshop/data/align.py", "src/latentshop/data/dataset.py", "src/latentshop/data/images.py")


@dataclass(frozen=True)
class Config:
    label: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)
    perceptual: str = "mobilenet"
    reference: bool = False
    default: bool = False


SYNTHETIC_CONFIGS = [
    Config("w, NVIDIA recipe (1000 steps, perceptual)", "w", reference=True),
    Config("w+ perceptual+mse, 250 steps (default)", "w+", default=True),
    Config("w+ perceptual+mse, 100 steps", "w+", {"steps": 100}),
    Config("w+ perceptual+mse, 500 steps", "w+", {"steps": 500}),
    Config("w+ mse, 250 steps", "w+", {"loss": "mse=1"}),
    Config("w+ perceptual, 250 steps", "w+", {"loss": "perceptual=1"}),
    Config("w+ perceptual+mse+ms_ssim, 250 steps", "w+", {"loss": "perceptual=1,mse=1,ms_ssim=1"}),
    Config("w+ D features+mse, 250 steps", "w+", {"loss": "perceptual=1,mse=1"}, perceptual="discriminator"),
    Config("w+ perceptual+mse, 250 steps, bf16", "w+", {"bf16": True}),
    Config("w+noise, 250 + 100 noise steps", "w+noise"),
]

ENCODER_CONFIGS = [
    Config("pSp, 1 pass", "psp"),
    Config("ReStyle-pSp, 2 passes (its training passes)", "restyle-psp"),
    Config("ReStyle-pSp, 3 passes", "restyle-psp", {"iterations": 3}),
    Config("ReStyle-pSp, 5 passes", "restyle-psp", {"iterations": 5}),
    Config("e4e, 1 pass", "e4e"),
    Config("ReStyle-e4e, 2 passes (its training passes)", "restyle-e4e"),
    Config("ReStyle-e4e, 3 passes", "restyle-e4e", {"iterations": 3}),
    Config("ReStyle-e4e, 5 passes", "restyle-e4e", {"iterations": 5}),
    Config("e4e+opt: ReStyle-e4e start + 50 w+ steps", "e4e+opt", {"steps": 50}),
    Config("e4e+opt: ReStyle-e4e start + 100 w+ steps", "e4e+opt", {"steps": 100}),
]
ENCODER_METHOD_NAMES = ("psp", "e4e", "restyle-psp", "restyle-e4e")
SYNTHETIC_CONFIGS += ENCODER_CONFIGS


def _uses_encoder(method: str) -> bool:
    return method in ENCODER_METHODS


def _encoder_for(bundle: Any, cfg: Config) -> torch.nn.Module | None:
    """The model's encoder that ``cfg``'s method needs (``None`` for optimisation methods)."""
    return bundle.encoder(ENCODER_METHODS[cfg.method][0]) if _uses_encoder(cfg.method) else None

REAL_CONFIGS = [
    Config("w, NVIDIA recipe (1000 steps, perceptual)", "w", reference=True),
    Config("w+ perceptual+mse, 250 steps (default)", "w+", default=True),
    Config("w+ mse, 250 steps", "w+", {"loss": "mse=1"}),
    Config("w+ perceptual+mse+ms_ssim, 250 steps", "w+", {"loss": "perceptual=1,mse=1,ms_ssim=1"}),
    Config("w+noise, 250 + 100 noise steps", "w+noise"),
] + ENCODER_CONFIGS


def public_json(obj: Any) -> Any:
    """``obj`` without its private ``_keys`` (tensors, networks) and with NaN / inf as ``None``: what the JSON report holds."""
    if isinstance(obj, dict):
        return {k: public_json(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, list):
        return [public_json(v) for v in obj]
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    return obj


def _write_atomic(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


# ---- factor error -----------------------------------------------------------------------------
def factor_errors(pred: dict[str, torch.Tensor], factors: list[dict[str, Any]]) -> dict[str, float]:
    """Per factor: mean |error| / range (float; hues wrapped), or the error rate (bool, choice)."""
    from latentshop.data.synthetic import FACTORS
    from latentshop.models.evaluators import CIRCULAR_FACTORS

    out: dict[str, float] = {}
    for name, fac in FACTORS.items():
        true = [f[name] for f in factors]
        if fac.kind == "float":
            t = torch.tensor(true, dtype=torch.float64)
            p = pred[name].double()
            err = p - t
            if name in CIRCULAR_FACTORS:
                err = torch.remainder(err + 0.5, 1.0) - 0.5
            out[name] = float(err.abs().mean() / (fac.high - fac.low))
        elif fac.kind == "bool":
            out[name] = float(((pred[name] > 0.5) != torch.tensor(true)).double().mean())
        else:
            idx = torch.tensor([fac.choices.index(v) for v in true])
            out[name] = float((pred[name] != idx).double().mean())
    return out


# ---- one configuration ------------------------------------------------------------------------
def run_config(G: torch.nn.Module, targets: torch.Tensor, cfg: Config, *, metric_net: torch.nn.Module, D: Any,
               steps_scale: float = 1.0, curve_points: int = 10, extra: Any = None,
               run: dict[str, Any] | None = None, encoder: torch.nn.Module | None = None) -> tuple[dict[str, Any], torch.Tensor]:
    options = dict(cfg.options)
    if steps_scale != 1.0:
        from latentshop.inversion import method_defaults

        base = method_defaults(cfg.method)
        options["steps"] = max(2, int(round(options.get("steps", base.steps) * steps_scale)))
        if base.noise_steps:
            options["noise_steps"] = max(2, int(round(options.get("noise_steps", base.noise_steps) * steps_scale)))
    n = targets.shape[0]
    curve: list[dict[str, float]] = []

    def callback(state: Any) -> None:
        every = max(1, state.total // curve_points)
        if state.step % every == 0 or state.step == state.total:
            rec = synthesize(G, state.latent())
            curve.append({"stage": state.stage, "step": state.step, "seconds_per_image": state.seconds / n,
                          "psnr": float(psnr(rec, targets).mean())})

    uses_encoder = _uses_encoder(cfg.method)
    if uses_encoder:  # warm-up at the timed batch size: the first calls of a shape build its kernels and buffers
        for _ in range(2):
            invert(G, targets, method=cfg.method, encoder=encoder, **{**options, "steps": 1} if cfg.method == "e4e+opt" else options)
    t0 = time.perf_counter()
    lat = invert(G, targets, method=cfg.method, perceptual=cfg.perceptual, D=D, callback=callback, encoder=encoder, **options)
    wall = time.perf_counter() - t0
    rec = synthesize(G, lat)
    if uses_encoder:  # encoder passes are not optimisation steps: one point at the encoder's time, then the optimisation's
        enc = lat.meta.get("encoder_seconds", lat.meta["seconds"]) / n
        passes = [p for p in curve if p["stage"] == "encoder"]
        steps = [dict(p, seconds_per_image=p["seconds_per_image"] + enc) for p in curve if p["stage"] == "latent"]
        curve[:] = ([dict(passes[-1], seconds_per_image=enc)] if passes else []) + steps

    with torch.no_grad():
        row: dict[str, Any] = {
            "label": cfg.label, "method": cfg.method, "perceptual": cfg.perceptual, "options": lat.meta["options"],
            "reference": cfg.reference, "default": cfg.default, "images": n,
            "seconds_per_image": lat.meta["seconds"] / n, "wall_seconds": wall,
            "psnr": float(psnr(rec, targets).mean()), "ssim": float(ssim(rec, targets).mean()),
            "ms_ssim": float(ms_ssim(rec, targets).mean()), "perceptual_mobilenet": float(metric_net(rec, targets).mean()),
            "curve": curve,
        }
    if extra is not None:
        row.update(extra(rec))
    row["run"] = run  # which run measured this row: its timings are only divided by those of the same run
    return row, rec


class Cache:
    """Finished configurations on disk, so an interrupted benchmark resumes where it stopped.

    Keyed by the side, the configuration, the targets (a hash of their pixels), the step scale, the
    code the row depends on (:data:`INVERSION_CODE` and this script's measuring functions, hashed), and
    the fingerprints of the generator, the metric networks and the encoder: changed code, data,
    model, encoder or recipe is measured again. A cached row keeps the run record of the run that measured it.
    With ``fresh``, nothing is read (every configuration is measured again) but finished rows are stored.
    """

    def __init__(self, folder: Path | None, *, fresh: bool = False):
        self.folder = folder
        self.fresh = fresh

    def key(self, side: str, cfg: Config, targets: torch.Tensor, steps_scale: float, G: torch.nn.Module, *,
            code: str | None, instruments: dict[str, Any]) -> str:
        import hashlib

        from latentshop.latents import generator_fingerprint

        parts = [side, cfg.label, cfg.method, cfg.options, cfg.perceptual, int(targets.shape[0]), tensor_fingerprint(targets),
                 steps_scale, generator_fingerprint(G), code, instruments]
        blob = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    def get(self, key: str) -> tuple[dict[str, Any], torch.Tensor] | None:
        if self.folder is None or self.fresh or not (self.folder / f"{key}.json").is_file() or not (self.folder / f"{key}.npy").is_file():
            return None
        return json.loads((self.folder / f"{key}.json").read_text()), torch.from_numpy(np.load(self.folder / f"{key}.npy"))

    def put(self, key: str, row: dict[str, Any], rec: torch.Tensor) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        import io

        buf = io.BytesIO()
        np.save(buf, rec[:8].cpu().numpy())
        atomic_write_bytes(self.folder / f"{key}.npy", buf.getvalue())
        _write_atomic(self.folder / f"{key}.json", json.dumps(row) + "\n")


def cached_run(cache: Cache, side: str, G: torch.nn.Module, targets: torch.Tensor, cfg: Config, *, run: dict[str, Any],
               instruments: dict[str, Any], **kwargs: Any) -> tuple[dict[str, Any], torch.Tensor]:
    inst = dict(instruments, D=module_fingerprint(kwargs.get("D")) if cfg.perceptual == "discriminator" else None,
                encoder=module_fingerprint(kwargs.get("encoder")))  # a retrained encoder is measured again
    key = cache.key(side, cfg, targets, kwargs.get("steps_scale", 1.0), G, code=run.get("code_version"), instruments=inst)
    hit = cache.get(key)
    if hit is not None:
        row = hit[0].get("run") or {}
        print(f"    (from the cache: run {row.get('id')} of {row.get('date')})", flush=True)
        return hit
    row, rec = run_config(G, targets, cfg, run=run, **kwargs)
    cache.put(key, row, rec)
    return row, rec


def time_ratio(num: dict[str, Any], den: dict[str, Any]) -> float | None:
    """``num``'s seconds per image over ``den``'s, or ``None`` when the two rows were not measured in one run."""
    if not same_run(num, den):
        return None
    return num["seconds_per_image"] / max(den["seconds_per_image"], 1e-12)


def _run_ids(rows: list[dict[str, Any]]) -> list[str | None]:
    return list(dict.fromkeys((r.get("run") or {}).get("id") for r in rows))


def _summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The goals of one set of rows. Time ratios are only taken between rows of one run; a goal that
    needs a ratio across runs is ``None`` ("not computed")."""
    ref = next(r for r in rows if r["reference"])
    default = next(r for r in rows if r["default"])
    # Time the default needs to reach the reference's final PSNR (from its own curve).
    reach = next((p["seconds_per_image"] for p in default["curve"] if p["psnr"] >= ref["psnr"]), None)
    best_wplus = max((r for r in rows if r["method"] == "w+"), key=lambda r: r["psnr"])
    fraction = time_ratio(default, ref)
    return {
        "runs": _run_ids(rows), "one_run": same_run(*rows),
        "reference_psnr": ref["psnr"], "reference_seconds_per_image": ref["seconds_per_image"],
        "default_psnr": default["psnr"], "default_seconds_per_image": default["seconds_per_image"],
        "default_time_fraction": fraction,
        "default_reaches_reference_psnr": default["psnr"] >= ref["psnr"],
        "default_seconds_to_reference_psnr": reach,
        "goal_default_quarter_time": None if fraction is None else bool(default["psnr"] >= ref["psnr"] and fraction <= 0.25),
        "default_w_plus_beats_reference": default["psnr"] > ref["psnr"],
        "best_w_plus": best_wplus["label"], "best_w_plus_psnr": best_wplus["psnr"],
        **_encoder_summary(rows, default),
    }


def _encoder_summary(rows: list[dict[str, Any]], default: dict[str, Any]) -> dict[str, Any]:
    """The encoder goal: the best encoder's PSNR as a share of the default w+ optimisation's (in dB), and
    its speed-up, from encoder rows of the default's run only. The goal is met when one of those
    reaches 90 % at 100x; it is ``None`` (not computed) when it is not met by them and some encoder
    rows come from another run."""
    enc = [r for r in rows if r["method"] in ENCODER_METHOD_NAMES]
    if not enc:
        return {}
    speed = {r["label"]: 1 / ratio for r in enc if (ratio := time_ratio(r, default)) is not None}
    other_runs = [r["label"] for r in enc if r["label"] not in speed]
    fast = [r for r in enc if speed.get(r["label"], 0) >= 100]
    best = max(enc, key=lambda r: r["psnr"])
    best_fast = max(fast, key=lambda r: r["psnr"]) if fast else None
    met = bool(best_fast and best_fast["psnr"] >= 0.9 * default["psnr"])
    hybrid = [r for r in rows if r["method"] == "e4e+opt"]
    out = {"best_encoder": best["label"], "best_encoder_psnr": best["psnr"], "best_encoder_psnr_share": best["psnr"] / default["psnr"],
           "best_encoder_speedup": speed.get(best["label"]),
           "best_fast_encoder": best_fast["label"] if best_fast else None,
           "best_fast_encoder_psnr_share": best_fast["psnr"] / default["psnr"] if best_fast else None,
           "best_fast_encoder_speedup": speed[best_fast["label"]] if best_fast else None,
           "encoders_from_other_runs": other_runs,
           "goal_encoder_90pct_at_100x": True if met else (None if other_runs else False)}
    if hybrid:
        h = max(hybrid, key=lambda r: r["psnr"])
        out.update({"best_hybrid": h["label"], "best_hybrid_psnr": h["psnr"], "best_hybrid_seconds_per_image": h["seconds_per_image"],
                    "best_hybrid_time_fraction": time_ratio(h, default)})
    return out


# ---- the two sides ----------------------------------------------------------------------------
def synthetic_targets(n: int, res: int) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    from latentshop.data.synthetic import render_batch

    data, factors, _ = render_batch(range(SEED_START, SEED_START + n), res=res, domain="photo", workers=min(2, os.cpu_count() or 1))
    return torch.from_numpy(data).permute(0, 3, 1, 2).float().div(127.5).sub(1).contiguous(), list(factors)


def bench_synthetic(n: int, *, configs: list[Config] = SYNTHETIC_CONFIGS, model: str = "synthetic", steps_scale: float = 1.0,
                    evaluator: str | None = "synthetic", cache: Cache = Cache(None), run: dict[str, Any] | None = None) -> dict[str, Any]:
    run = run or new_run(code=inversion_code_version())
    bundle = load_model(model)
    G = bundle.G
    D = load_discriminator(model) if any(c.perceptual == "discriminator" for c in configs) else None
    targets, factors = synthetic_targets(n, G.img_resolution)
    metric_net = load_perceptual("mobilenet")
    ev = load_evaluator(evaluator) if evaluator else None

    def extra(rec: torch.Tensor) -> dict[str, Any]:
        if ev is None:
            return {}
        errs = factor_errors(ev.predict(rec), factors)
        return {"factor_error": float(np.mean(list(errs.values()))), "factor_errors": errs}

    floor = extra(targets)
    instruments = {"perceptual": module_fingerprint(metric_net), "evaluator": module_fingerprint(ev)}
    rows, recs = [], {}
    for cfg in configs:
        print(f"[synthetic] {cfg.label} ...", flush=True)
        row, rec = cached_run(cache, "synthetic", G, targets, cfg, run=run, instruments=instruments, metric_net=metric_net, D=D,
                              steps_scale=steps_scale, extra=extra, encoder=_encoder_for(bundle, cfg))
        rows.append(row)
        recs[cfg.label] = rec[:8]
        print(f"    PSNR {row['psnr']:.2f} dB, MS-SSIM {row['ms_ssim']:.3f}, {row['seconds_per_image']:.2f} s/image", flush=True)
    return {"model": model, "images": n, "seed_start": SEED_START, "steps_scale": steps_scale, "factor_error_floor": floor.get("factor_error"),
            "rows": rows, "summary": _summarise(rows), "_recs": recs, "_targets": targets[:8]}


def real_targets(n_test: int, n_photos: int, G: torch.nn.Module) -> dict[str, Any]:
    from latentshop.data.align import NoFaceError, align_face
    from latentshop.data.dataset import load_image

    lfw = SHARED / "data" / "lfw-faces"
    rows = [json.loads(line) for line in (lfw / "labels.jsonl").read_text().splitlines() if line.strip()]
    test = sorted(r["file"] for r in rows if r["split"] == "test")[:n_test]
    lfw_t = torch.stack([load_image(lfw / f, res=G.img_resolution, channels=G.img_channels) for f in test]) if test else None
    faces = SHARED / "data" / "faces"
    photos = sorted(p for p in faces.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:n_photos] if faces.is_dir() else []
    aligned, names, no_face, failed = [], [], [], []
    for p in photos:
        try:
            face = align_face(p, res=G.img_resolution, channels=G.img_channels)
        except NoFaceError:
            no_face.append(p.name)
            continue
        except Exception as e:  # noqa: BLE001 - counted and reported, the benchmark goes on
            failed.append(f"{p.name}: {e}")
            continue
        a = np.asarray(face.image, dtype=np.float32).reshape(G.img_resolution, G.img_resolution, -1)
        aligned.append(torch.from_numpy(a.transpose(2, 0, 1) / 127.5 - 1))
        names.append(p.name)
    return {"lfw": lfw_t, "lfw_files": test, "photos": torch.stack(aligned) if aligned else None, "photo_files": names,
            "no_face": no_face, "failed": failed}


def bench_real(n_test: int, n_photos: int, *, configs: list[Config] = REAL_CONFIGS, model: str = "default",
               steps_scale: float = 1.0, cache: Cache = Cache(None), run: dict[str, Any] | None = None) -> dict[str, Any]:
    from latentshop.metrics.identity import identity_similarities

    run = run or new_run(code=inversion_code_version())
    bundle = load_model(model)
    G = bundle.G
    D = load_discriminator(model) if any(c.perceptual == "discriminator" for c in configs) else None
    t = real_targets(n_test, n_photos, G)
    metric_net = load_perceptual("mobilenet")
    out: dict[str, Any] = {"model": model, "steps_scale": steps_scale, "photos_without_face": t["no_face"], "photos_failed": t["failed"],
                           "sets": {}}
    instruments = {"perceptual": module_fingerprint(metric_net), "identity": "dlib"}
    for set_name, targets in (("lfw-faces test", t["lfw"]), ("photos (aligned)", t["photos"])):
        if targets is None:
            continue

        def extra(rec: torch.Tensor, targets: torch.Tensor = targets) -> dict[str, Any]:
            sims = identity_similarities(targets, rec, aligned=True)
            return {"identity": float(np.nanmean(sims))}

        rows, recs = [], {}
        for cfg in configs:
            print(f"[{set_name}] {cfg.label} ...", flush=True)
            row, rec = cached_run(cache, set_name, G, targets, cfg, run=run, instruments=instruments, metric_net=metric_net, D=D,
                                  steps_scale=steps_scale, extra=extra, encoder=_encoder_for(bundle, cfg))
            rows.append(row)
            recs[cfg.label] = rec[:8]
            print(f"    PSNR {row['psnr']:.2f} dB, identity {row['identity']:.3f}, {row['seconds_per_image']:.2f} s/image", flush=True)
        out["sets"][set_name] = {"images": int(targets.shape[0]), "rows": rows, "summary": _summarise(rows),
                                 "_recs": recs, "_targets": targets[:8]}
    return out


# ---- reporting --------------------------------------------------------------------------------
def _table(rows: list[dict[str, Any]], cols: list[tuple[str, str, Any]]) -> str:
    """Markdown table; a column's format is a ``str.format`` spec, ``""`` (``str``) or a callable of the value."""
    head = "| " + " | ".join(c[1] for c in cols) + " |\n|" + "|".join("---" for _ in cols) + "|\n"
    body = ""
    for r in rows:
        cells = []
        for key, _, fmt in cols:
            v = r.get(key)
            if callable(fmt):
                cells.append(fmt(v))
                continue
            cells.append("–" if v is None or (isinstance(v, float) and math.isnan(v)) else (fmt.format(v) if fmt else str(v)))
        body += "| " + " | ".join(cells) + " |\n"
    return head + body


RUN_COLUMN = ("run", "run", run_cell)
NOT_COMPUTED = "**not computed** (its timings are not from one run; re-run with `--fresh`)"


def _goal(value: bool | None) -> str:
    return NOT_COMPUTED if value is None else f"**{'met' if value else 'not met'}**"


def _summary_lines(s: dict[str, Any]) -> str:
    reach = s["default_seconds_to_reference_psnr"]
    fraction = s.get("default_time_fraction")
    lines = [
        f"- reference (`w`, NVIDIA's 1000 steps): PSNR {s['reference_psnr']:.2f} dB in {s['reference_seconds_per_image']:.2f} s/image",
        f"- default (`w+`): PSNR {s['default_psnr']:.2f} dB in {s['default_seconds_per_image']:.2f} s/image "
        + (f"({100 * fraction:.0f} % of the reference's time)" if fraction is not None else "(not timed in the same run as the reference: no time ratio)")
        + (f"; it passes the reference's final PSNR after {reach:.2f} s/image" if reach is not None else "; it never reaches the reference's PSNR"),
        f"- goal 'default reaches the reference PSNR in <= 1/4 of its time': {_goal(s.get('goal_default_quarter_time'))}; "
        f"'w+ beats w': {_goal(s['default_w_plus_beats_reference'])} (best w+: {s['best_w_plus']}, {s['best_w_plus_psnr']:.2f} dB)",
    ]
    if s.get("best_encoder"):
        fast = (f"the best encoder at ≥ 100× the speed of `w+` is {s['best_fast_encoder']}: "
                f"{100 * s['best_fast_encoder_psnr_share']:.0f} % of its PSNR at {s['best_fast_encoder_speedup']:.0f}×"
                if s.get("best_fast_encoder") else "no encoder of the default's run runs 100× faster than `w+`")
        speedup = s.get("best_encoder_speedup")
        others = s.get("encoders_from_other_runs") or []
        lines.append(f"- encoders: best {s['best_encoder']} with {s['best_encoder_psnr']:.2f} dB "
                     f"({100 * s['best_encoder_psnr_share']:.0f} % of the default's PSNR, "
                     + (f"{speedup:.0f}× faster" if speedup is not None else "speed-up not computed: not timed in the same run") + f"); {fast}"
                     + (f" ({len(others)} encoder rows were not timed in the same run as the default and have no speed-up)" if others else "")
                     + f". Goal '≥ 90 % of w+ PSNR at ≥ 100× its speed': {_goal(s.get('goal_encoder_90pct_at_100x'))}")
    if s.get("best_hybrid"):
        hf = s.get("best_hybrid_time_fraction")
        lines.append(f"- hybrid: {s['best_hybrid']} reaches {s['best_hybrid_psnr']:.2f} dB in {s['best_hybrid_seconds_per_image']:.2f} s/image "
                     f"(default `w+`: {s['default_psnr']:.2f} dB in {s['default_seconds_per_image']:.2f} s"
                     + (f"; {100 * hf:.0f} % of its time)" if hf is not None else "; not timed in the same run: no time ratio)"))
    if not s.get("one_run", False):
        runs = s.get("runs") or []
        known = [r for r in runs if r is not None]
        what = (f"{len(known)} recorded run{'s' if len(known) != 1 else ''}" if known else "") + \
            (" and " if known and None in runs else "") + ("rows with no run record (measured before runs were recorded)" if None in runs else "")
        lines.append(f"- these rows come from {what} (see *run* in the table): time ratios are only taken within one run")
    return "\n".join(lines) + "\n"


def _pct_more(a: dict[str, Any], b: dict[str, Any]) -> str:
    """``12 % more time`` (``a`` against ``b``), or a note that the two rows were not timed in one run."""
    r = time_ratio(a, b)
    return "a time not comparable (not timed in the same run)" if r is None else f"{100 * (r - 1):.0f} % more time"


def _row(rows: list[dict[str, Any]], label_start: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["label"].startswith(label_start)), None)


def defaults_note(result: dict[str, Any]) -> str:
    """How the shipped defaults follow from the figures (for docs/inversion.md)."""
    if "synthetic" not in result:
        return ""
    rows = result["synthetic"]["rows"]
    ref, d = _row(rows, "w, NVIDIA"), _row(rows, "w+ perceptual+mse, 250 steps (default)")
    mse, ms = _row(rows, "w+ mse, 250"), _row(rows, "w+ perceptual+mse+ms_ssim")
    if not (ref and d and mse and ms):
        return ""
    d_ref = time_ratio(d, ref)
    r100, r500 = _row(rows, "w+ perceptual+mse, 100"), _row(rows, "w+ perceptual+mse, 500")
    t500, t500_ref = time_ratio(r500, d), time_ratio(r500, ref)
    lines = ["\n## Choosing the defaults\n\n",
             f"- **Method `w+`** for images: on the synthetic faces it ends {d['psnr'] - ref['psnr']:+.2f} dB above NVIDIA's `w` "
             "projector " + (f"in {100 * d_ref:.0f} % of its time" if d_ref is not None else "(not timed in the same run: no time ratio)")
             + f", with a factor error of {d['factor_error']:.3f} against {ref['factor_error']:.3f}. `w` stays the choice when the "
             "code must lie in W (editing directions are fitted there).\n",
             "- **250 steps**: 100 steps lose "
             f"{d['psnr'] - r100['psnr']:.2f} dB, 500 steps gain {r500['psnr'] - d['psnr']:.2f} dB for "
             + (f"{t500:.1f}× the time" if t500 is not None else "a time not comparable (not timed in the same run)")
             + (f" ({100 * t500_ref:.0f} % of the reference's time)" if t500_ref is not None else "") + ".\n",
             f"- **Loss perceptual + MSE**: MSE alone has the best PSNR ({mse['psnr']:.2f} dB) and is fastest, but the worst "
             f"perceptual distance ({mse['perceptual_mobilenet']:.3f} vs {d['perceptual_mobilenet']:.3f}) and factor error "
             f"({mse['factor_error']:.3f} vs {d['factor_error']:.3f}): it matches pixels, not the face. Adding MS-SSIM "
             f"gives {ms['psnr'] - d['psnr']:+.2f} dB and factor error {ms['factor_error']:.3f} for {_pct_more(ms, d)}"]
    bf = _row(rows, "w+ perceptual+mse, 250 steps, bf16")
    extra_lines = []
    wn = _row(rows, "w+noise")
    if wn:
        extra_lines.append(f"- **`w+noise`** reconstructs best ({wn['psnr']:.2f} dB, factor error {wn['factor_error']:.3f}) for "
                           f"{_pct_more(wn, d)}: the noise maps take up "
                           "the detail the latent cannot express. Those maps are fitted to the unedited pixels and do not follow "
                           "an edit, so `w+` stays the default of `invert`/`edit`; use `--method w+noise` for reconstruction.\n")
    bf_d = time_ratio(bf, d) if bf else None
    if bf:
        extra_lines.append(f"- **float32**: bfloat16 autocast gives {bf['psnr']:.2f} dB (float32: {d['psnr']:.2f} dB) "
                           + (f"in {100 * (1 - bf_d):.0f} % less time" if bf_d is not None else "(not timed in the same run: no time ratio)")
                           + " at 64 px, where the loss networks and small convolutions dominate: `--bf16` is there for larger models.\n")
    real = result.get("real", {}).get("sets", {})
    verdicts = []
    for name, part in real.items():
        a, b = _row(part["rows"], "w+ perceptual+mse, 250 steps (default)"), _row(part["rows"], "w+ perceptual+mse+ms_ssim")
        if a and b:
            verdicts.append(f"{name}: {b['psnr'] - a['psnr']:+.2f} dB, identity {b['identity']:.3f} vs {a['identity']:.3f}")
    lines.append("; on real faces " + "; ".join(verdicts) if verdicts else "")
    lines.append(". The gain is small for the extra time, so the default stays perceptual + MSE; "
                 "`--loss perceptual=1,mse=1,ms_ssim=1` selects the MS-SSIM variant.\n")
    return "".join(lines + extra_lines)


def encoder_note(result: dict[str, Any]) -> str:
    """What the encoder rows say (for docs/inversion.md)."""
    parts = [("synthetic faces", result["synthetic"])] if "synthetic" in result else []
    parts += list(result.get("real", {}).get("sets", {}).items())
    lines = []
    for name, part in parts:
        rows = part["rows"]
        d = next(r for r in rows if r["default"])
        if not any(_uses_encoder(r["method"]) for r in rows):
            continue
        pieces = []
        for kind, title in (("psp", "pSp"), ("e4e", "e4e")):
            one = _row(rows, f"{title}, 1 pass")
            passes = [r for r in rows if r["method"] == f"restyle-{kind}"]
            if one and passes:
                best = max(passes, key=lambda r: r["psnr"])
                ratio = time_ratio(d, one)
                pieces.append(f"{title} {one['psnr']:.2f} dB in one pass ("
                              + (f"{ratio:.0f}× faster than `w+`" if ratio is not None else "not timed in the same run as `w+`")
                              + f"), best with ReStyle at {best['label'].split(', ')[1]}: {best['psnr']:.2f} dB")
        hyb = [r for r in rows if r["method"] == "e4e+opt"]
        if hyb:
            h = max(hyb, key=lambda r: r["options"]["steps"])  # the default recipe (100 steps)
            ratio = time_ratio(h, d)
            pieces.append(f"the hybrid ({h['label'].split(': ')[1]}) {h['psnr']:.2f} dB in {h['seconds_per_image']:.2f} s "
                          f"({h['psnr'] - d['psnr']:+.2f} dB against `w+`"
                          + (f" in {100 * ratio:.0f} % of its time)" if ratio is not None else "; not timed in the same run)"))
        if pieces:
            lines.append(f"- **{name}**: " + "; ".join(pieces) + ".\n")
    if not lines:
        return ""
    return ("\n## Encoders\n\nThe bundled encoders were trained in ReStyle form with 2 passes per batch "
            "(`tools/train_encoders.sh`, about 25 minutes each on this CPU); one pass is the plain pSp / e4e.\n\n" + "".join(lines))


def write_reports(result: dict[str, Any], out_dir: Path, docs_dir: Path | None) -> None:
    _write_atomic(out_dir / "inversion.json", json.dumps(public_json(result), indent=1) + "\n")
    m, run = result["machine"], result.get("run") or {}
    md = ["# Inversion benchmark\n",
          f"Report written {m['date']} (commit `{(run.get('commit') or 'none')[:12]}`{', uncommitted changes' if run.get('dirty') else ''}) "
          f"on {m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads, torch {m['torch']}. Each row was measured by "
          "the run named in its *run* column (date, commit; `*`: uncommitted changes), listed under its table with its machine "
          "and code version; rows of earlier runs come from the result cache, which is keyed by the code they depend on. "
          "Seconds are optimisation time per image with the whole "
          "set as one batch (callback snapshots excluded); for encoders, the wall time of their passes and renders after a "
          "warm-up call, and for the hybrid, encoder plus optimisation. Time ratios are only taken between rows of one run. "
          "Reproduce: `python benchmarks/inversion.py all --fresh`.\n"]
    images = []
    if "synthetic" in result:
        syn = result["synthetic"]
        md.append(f"\n## Synthetic faces (`{syn['model']}` model, {syn['images']} held-out `photo` seeds from {syn['seed_start']})\n\n")
        md.append(_summary_lines(syn["summary"]) + "\n")
        md.append(_table(syn["rows"], [("label", "method / loss", ""), ("seconds_per_image", "s / image", "{:.3g}"),
                                       ("psnr", "PSNR dB", "{:.2f}"), ("ssim", "SSIM", "{:.3f}"), ("ms_ssim", "MS-SSIM", "{:.3f}"),
                                       ("perceptual_mobilenet", "perceptual", "{:.3f}"), ("factor_error", "factor error", "{:.3f}"),
                                       RUN_COLUMN]))
        md.append("\n" + runs_legend(syn["rows"]))
        if syn.get("factor_error_floor") is not None:
            md.append(f"\nFactor error floor (the regressor on the targets themselves): {syn['factor_error_floor']:.3f}.\n")
        images.append(("synthetic", syn))
    if "real" in result:
        real = result["real"]
        md.append(f"\n## Real faces (`{real['model']}` model)\n\n")
        if real["photos_without_face"] or real["photos_failed"]:
            md.append(f"Photos without a detected face (left out): {len(real['photos_without_face'])}; failed: {len(real['photos_failed'])}.\n\n")
        for set_name, s in real["sets"].items():
            md.append(f"\n### {set_name} ({s['images']} images)\n\n" + _summary_lines(s["summary"]) + "\n")
            md.append(_table(s["rows"], [("label", "method / loss", ""), ("seconds_per_image", "s / image", "{:.3g}"),
                                         ("psnr", "PSNR dB", "{:.2f}"), ("ms_ssim", "MS-SSIM", "{:.3f}"),
                                         ("perceptual_mobilenet", "perceptual", "{:.3f}"), ("identity", "identity (cos)", "{:.3f}"),
                                         RUN_COLUMN]))
            md.append("\n" + runs_legend(s["rows"]))
            images.append((set_name, s))
    text = "".join(md)
    _write_atomic(out_dir / "inversion.md", text)
    if docs_dir is not None:
        plot = quality_time_plot(result, docs_dir / "images" / "inversion-quality-time.png")
        sheets = []
        for name, part in images:
            if name.startswith("photos"):  # ../shared/data/faces may be used for measuring, never shipped: no sheet
                continue
            slug = name.split()[0].replace("-", "")
            path = docs_dir / "images" / f"inversion-{slug}.png"
            if "_targets" not in part:  # kept from an earlier run: link the sheet it wrote
                if path.exists():
                    sheets.append(f"\n![{name}: top row targets, then one row per configuration in table order](images/{path.name})\n")
                continue
            rows = [to_uint8(part["_targets"])] + [to_uint8(part["_recs"][r["label"]]) for r in part["rows"]]
            save_image(make_grid(np.concatenate(rows), cols=len(part["_targets"]), pad=1), path)
            sheets.append(f"\n![{name}: top row targets, then one row per configuration in table order](images/{path.name})\n")
        extra = f"\n![PSNR versus optimisation time](images/{Path(plot).name})\n" if plot else ""
        _write_atomic(docs_dir / "inversion.md", text + defaults_note(result) + encoder_note(result) + extra + "".join(sheets))


def quality_time_plot(result: dict[str, Any], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return None
    parts = []
    if "synthetic" in result:
        parts.append(("synthetic faces", result["synthetic"]))
    for name, s in result.get("real", {}).get("sets", {}).items():
        parts.append((name, s))
    fig, axes = plt.subplots(1, len(parts), figsize=(6.5 * len(parts), 4.8), squeeze=False)
    for ax, (name, part) in zip(axes[0], parts):
        for r in part["rows"]:
            xs = [p["seconds_per_image"] for p in r["curve"]]
            ys = [p["psnr"] for p in r["curve"]]
            if r["method"] in ENCODER_METHOD_NAMES:
                ax.plot(xs[-1:], ys[-1:], linestyle="none", marker="*", markersize=10, label=r["label"])
                continue
            style = "-" if r["method"] == "w+" else ":" if r["method"] == "e4e+opt" else "--"
            ax.plot(xs, ys, style, marker=".", label=r["label"], linewidth=2.5 if (r["reference"] or r["default"]) else 1.2)
        s = part["summary"]
        ax.axhline(s["reference_psnr"], color="gray", linewidth=0.8)
        ax.axvline(s["reference_seconds_per_image"] / 4, color="gray", linestyle=":", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("seconds per image (log; encoders: stars)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
    return str(path)


def resummarise(side: dict[str, Any]) -> dict[str, Any]:
    """A side kept from an earlier report, its summaries recomputed from its rows (with today's rules:
    rows without a run record, or of different runs, are not divided by each other)."""
    for part in [side] if "rows" in side else list(side.get("sets", {}).values()):
        part["summary"] = _summarise(part["rows"])
    return side


def inversion_code_version() -> str:
    """The hash of :data:`INVERSION_CODE` and of this script's measuring functions (see :class:`Cache`)."""
    return code_version(INVERSION_CODE, functions=(run_config, factor_errors, synthetic_targets, real_targets, bench_synthetic, bench_real))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("which", choices=["synthetic", "real", "all"])
    ap.add_argument("--n", type=int, default=50, help="synthetic targets")
    ap.add_argument("--n-test", type=int, default=16, help="lfw-faces test images")
    ap.add_argument("--n-photos", type=int, default=20, help="photos of ../shared/data/faces tried")
    ap.add_argument("--steps-scale", type=float, default=1.0, help="scale every step count (quick runs)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    ap.add_argument("--no-docs", action="store_true")
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "bench-cache" / "inversion",
                    help="finished configurations, so an interrupted run resumes ('' for none)")
    ap.add_argument("--fresh", action="store_true", help="measure every configuration again (nothing read from the cache; "
                    "the cache is refreshed): one run, so every time ratio can be taken")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run = new_run(code=inversion_code_version())
    result: dict[str, Any] = {"machine": run["machine"], "run": run, "steps_scale": args.steps_scale}
    previous = args.out_dir / "inversion.json"
    if previous.exists() and args.which != "all":  # keep the other side's last results, with their rows' own runs
        old = json.loads(previous.read_text())
        for key in ("synthetic", "real"):
            if key in old and key != args.which:
                result[key] = resummarise(old[key])
    cache = Cache(args.cache if str(args.cache) else None, fresh=args.fresh)
    if args.which in ("synthetic", "all"):
        result["synthetic"] = bench_synthetic(args.n, steps_scale=args.steps_scale, cache=cache, run=run)
    if args.which in ("real", "all"):
        result["real"] = bench_real(args.n_test, args.n_photos, steps_scale=args.steps_scale, cache=cache, run=run)
    write_reports(result, args.out_dir, None if args.no_docs else DOCS)
    return result


if __name__ == "__main__":
    main()
