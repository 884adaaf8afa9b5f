"""Measure a bundled model: seed grid, SWD against its held-out split, and its samples' label mix.

    python benchmarks/model_quality.py default   --run runs/default     # real faces (lfw-faces test split)
    python benchmarks/model_quality.py synthetic --run runs/synthetic   # synthetic:photo (held-out seeds)

For every model:

- a seed grid (seeds 0-31, ``psi`` 1 and 0.7, constant noise) in ``docs/images/<name>-seeds*.png``;
- multi-scale SWD (x 1e3, progressive-GAN protocol, :mod:`latentshop.metrics.swd`) between
  ``n_swd`` samples and the held-out split, and, as the floor the estimator reaches with the
  same number of images, between the training split and the held-out split;
- ``synthetic``: the shipped factor regressor's per-factor mean and std on ``n`` samples
  versus on ``n`` held-out renders (and the renders' true factors), with the differences;
- ``default``: the shipped expression classifier's class mix on ``n`` samples versus on the real
  photos, beside the label mix of the data;
- the training time, summed from the run's ``log.jsonl`` (``--run``).

Writes ``benchmarks/results/model_<name>.json`` and ``.md``; ``docs/models.md`` gathers the
markdown of every model measured so far.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"
SHARED = ROOT.parent / "shared"
LFW = SHARED / "data" / "lfw-faces"
CELEBA = SHARED / "data" / "celeba-faces"
sys.path.insert(0, str(ROOT / "src"))

from latentshop import load_evaluator, load_generator  # noqa: E402
from latentshop.checkpoints.zoo import resolve_model  # noqa: E402
from latentshop.data.images import make_grid, save_image, to_uint8  # noqa: E402
from latentshop.latents import seed_z  # noqa: E402
from latentshop.metrics.swd import sliced_wasserstein  # noqa: E402

N_DEFAULT = 5000
MODELS = ("default", "lfw", "synthetic")  # in docs/models.md order


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@torch.no_grad()
def sample(G: torch.nn.Module, n: int, *, seed: int = 123, batch: int = 250, psi: float = 1.0) -> torch.Tensor:
    """``n`` samples (random z, random noise), float in ``[-1, 1]``, on the CPU."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, n, batch):
        z = torch.randn([min(batch, n - i), G.z_dim], generator=gen)
        torch.manual_seed(seed + i)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            img = G(z, None, truncation_psi=psi, noise_mode="random", impl="fast")
        out.append(img.float().clamp(-1, 1))
    return torch.cat(out)


def seed_grids(G: torch.nn.Module, name: str) -> list[str]:
    paths = []
    for psi, suffix in ((1.0, ""), (0.7, "-psi0.7")):
        with torch.no_grad():
            img = G(seed_z(G, range(32)), None, truncation_psi=psi, noise_mode="const")
        path = DOCS / "images" / f"{name}-seeds{suffix}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(make_grid(to_uint8(img), cols=8), path)
        paths.append(str(path.relative_to(ROOT)))
    return paths


def training_hours(run: Path | None) -> dict[str, Any] | None:
    """Hours of training summed over the log's intervals (kimg step / images per second)."""
    if run is None or not (run / "log.jsonl").is_file():
        return None
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "kimg" in r and "images_per_s" in r]
    seconds, prev = 0.0, 0.0
    for r in rows:
        if r["kimg"] > prev and r["images_per_s"] > 0:
            seconds += (r["kimg"] - prev) * 1000 / r["images_per_s"]
        prev = r["kimg"]
    ips = [r["images_per_s"] for r in rows]
    out = {"kimg": prev, "hours": round(seconds / 3600, 2), "median_images_per_s": round(float(np.median(ips)), 2)}
    options = run / "options.json"
    if options.is_file():
        train = json.loads(options.read_text()).get("train", {})
        out["precision"] = "bfloat16 autocast" if train.get("bf16") else "float32"
        out["path"] = train.get("impl", "reference")
    return out


def _uint8_to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(127.5).sub(1)


# ----------------------------------------------------------------------------------------------


def measure_synthetic(G: torch.nn.Module, n: int, n_swd: int) -> dict[str, Any]:
    from latentshop.data.synthetic import FACTORS, TEST_SEED_START, render_batch

    workers = min(2, os.cpu_count() or 1)
    t0 = time.perf_counter()
    data, factors, _ = render_batch(range(TEST_SEED_START, TEST_SEED_START + n), res=G.img_resolution, workers=workers)
    data = torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()
    train_ref, _, _ = render_batch(range(0, n_swd), res=G.img_resolution, workers=workers)
    train_ref = torch.from_numpy(train_ref).permute(0, 3, 1, 2).contiguous()
    fake = sample(G, n)
    swd = sliced_wasserstein(data[:n_swd], fake[:n_swd])
    floor = sliced_wasserstein(data[:n_swd], train_ref)

    ev = load_evaluator("synthetic")
    p_data = ev.predict(_uint8_to_float(data))
    p_fake = ev.predict(fake)
    rows = []
    for name, fac in FACTORS.items():
        if fac.kind == "choice":
            k = len(fac.choices)
            f_d = torch.bincount(p_data[name], minlength=k).double() / n
            f_f = torch.bincount(p_fake[name], minlength=k).double() / n
            truth = torch.tensor([fac.choices.index(f[name]) for f in factors])
            f_t = torch.bincount(truth, minlength=k).double() / n
            rows.append({"factor": name, "kind": "choice", "truth": f_t.tolist(), "data": f_d.tolist(), "samples": f_f.tolist(),
                         "total_variation": float(0.5 * (f_d - f_f).abs().sum())})
            continue
        truth = torch.tensor([float(f[name]) for f in factors])
        d, f = p_data[name].double(), p_fake[name].double()
        if fac.kind == "bool":
            d, f = (d > 0.5).double(), (f > 0.5).double()
        rows.append({"factor": name, "kind": fac.kind,
                     "truth_mean": float(truth.mean()), "truth_std": float(truth.std()),
                     "data_mean": float(d.mean()), "data_std": float(d.std()),
                     "samples_mean": float(f.mean()), "samples_std": float(f.std()),
                     "diff_mean": float(f.mean() - d.mean()), "diff_std": float(f.std() - d.std())})
    return {"swd": swd, "swd_floor_train_vs_test": floor, "factors": rows, "n": n, "n_swd": n_swd,
            "seconds": round(time.perf_counter() - t0, 1)}


def _celeba_split(split: str, res: int, channels: int) -> torch.Tensor:
    from latentshop.data.dataset import ImageFolderDataset

    ds = ImageFolderDataset(CELEBA, split=split, res=res, channels=channels)
    return torch.stack([ds[i][0] for i in range(len(ds))])


def _kid(real_f: torch.Tensor, fake_f: torch.Tensor) -> float:
    from latentshop.metrics.kid import kernel_distance

    return kernel_distance(real_f, fake_f, num_subsets=100, max_subset_size=1000)


def measure_celeba(G: torch.nn.Module, n: int, n_swd: int, *, snapshots: list[Path] | None = None) -> dict[str, Any]:
    """SWD and the MobileNet KID against the held-out test split, each with its real-vs-real floor;
    the ``celeba`` attribute mix of samples versus test photos; the curve over kept training snapshots."""
    from latentshop.metrics.kid import mobilenet_features
    from latentshop.metrics.perceptual import load_mobilenet

    t0 = time.perf_counter()
    res, ch = G.img_resolution, G.img_channels
    test = _celeba_split("test", res, ch)
    train = _celeba_split("train", res, ch)
    k = min(n_swd, len(test))
    gen = torch.Generator().manual_seed(0)
    train_k = train[torch.randperm(len(train), generator=gen)[:k]]
    net = load_mobilenet()
    f_test, f_train = mobilenet_features(test, net=net), mobilenet_features(train_k, net=net)
    fake = sample(G, max(k, n))
    out: dict[str, Any] = {
        "n_swd": k, "n": n,
        "swd": sliced_wasserstein(test[:k], fake[:k]),
        "swd_floor_train_vs_test": sliced_wasserstein(test[:k], train_k),
        "kid_mobilenet": _kid(f_test, mobilenet_features(fake[:k], net=net)),
        "kid_mobilenet_floor_train_vs_test": _kid(f_test, f_train),
        "kid_mobilenet_psi0.7": _kid(f_test, mobilenet_features(sample(G, k, psi=0.7), net=net)),
    }
    try:
        ev = load_evaluator("celeba")
    except Exception:  # noqa: BLE001 - measured once the evaluator is shipped
        ev = None
    if ev is not None:
        p_test = ev.predict_proba(_uint8_to_float(test))
        p_fake = ev.predict_proba(fake[:n])
        usable = ev.metrics.get("usable", ev.attributes)
        out["attribute_mix"] = [{"attribute": a, "test_photos": float((p_test[:, i] > 0.5).double().mean()),
                                 "samples": float((p_fake[:, i] > 0.5).double().mean())}
                                for i, a in enumerate(ev.attributes) if a in usable]
    curve = []
    for snap in snapshots or []:
        Gs = load_generator(snap)
        f = sample(Gs, k)
        curve.append({"kimg": json.loads((snap / "config.json").read_text())["info"]["trained_kimg"],
                      "swd_avg": sliced_wasserstein(test[:k], f)["swd_avg"],
                      "kid_mobilenet": _kid(f_test, mobilenet_features(f, net=net))})
        print(f"snapshot {snap.name}: {curve[-1]}", flush=True)
    out["curve"] = curve
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def measure_default(G: torch.nn.Module, n: int, n_swd: int) -> dict[str, Any]:
    from latentshop.data.dataset import ImageFolderDataset
    from latentshop.training.evaluators import EXPRESSION_CLASSES, load_expression_data

    t0 = time.perf_counter()
    res = G.img_resolution

    ds = ImageFolderDataset(LFW, res=res, channels=G.img_channels)  # every photo, decoded once
    every = torch.stack([ds[i][0] for i in range(len(ds))])
    details = [ds.get_details(i)["labels"] for i in range(len(ds))]
    labels = [d.get("expression") for d in details]
    test = every[[i for i, d in enumerate(details) if d.get("split") == "test"]]
    train = every[[i for i, d in enumerate(details) if d.get("split") == "train"]]
    fake = sample(G, max(n, n_swd))
    k = min(n_swd, len(test))
    gen = torch.Generator().manual_seed(0)
    swd = sliced_wasserstein(test[:k], fake[:k])
    floor = sliced_wasserstein(test[:k], train[torch.randperm(len(train), generator=gen)[:k]])

    ev = load_evaluator("expression")
    classes = list(ev.classes)
    p_real = torch.bincount(ev.predict_proba(_uint8_to_float(every)).argmax(1), minlength=len(classes)).double()
    p_fake = torch.bincount(ev.predict_proba(fake[:n]).argmax(1), minlength=len(classes)).double()
    # The label mix as the classifier's training code reads the labels (its spelling variants mapped),
    # split by split: photos outside its classes, or with no split, count as "other".
    per_class = torch.zeros(len(EXPRESSION_CLASSES), dtype=torch.float64)
    for split in sorted({d.get("split") for d in details} - {None}):
        _, ys = load_expression_data(str(LFW), split=split, res=res)
        per_class += torch.bincount(ys, minlength=len(EXPRESSION_CLASSES)).double()
    lab_counts = torch.tensor([float(per_class[EXPRESSION_CLASSES.index(c)]) if c in EXPRESSION_CLASSES else 0.0 for c in classes],
                              dtype=torch.float64)
    other = len(labels) - int(per_class.sum())
    mix = [{"class": c, "labels": float(lab_counts[i] / len(labels)), "real_predicted": float(p_real[i] / len(every)),
            "samples_predicted": float(p_fake[i] / n)} for i, c in enumerate(classes)]
    tv = float(0.5 * (p_real / len(every) - p_fake / n).abs().sum())
    return {"swd": swd, "swd_floor_train_vs_test": floor, "n_swd": k, "n": n, "expression_mix": mix,
            "labels_other_fraction": other / len(labels), "total_variation_real_vs_samples": tv,
            "seconds": round(time.perf_counter() - t0, 1)}


# ----------------------------------------------------------------------------------------------


def _swd_line(r: dict[str, Any]) -> str:
    s, f = r["swd"], r["swd_floor_train_vs_test"]
    levels = [k for k in s if k != "swd_avg"]
    cells = " | ".join(f"{s[k]:.2f} ({f[k]:.2f})" for k in levels + ["swd_avg"])
    return (f"| {' | '.join(k.replace('swd_', '') + ' px' for k in levels)} | average |\n"
            f"|{'---|' * (len(levels) + 1)}\n| {cells} |\n\n"
            f"SWD x 1e3 between {r['n_swd']} samples (psi 1, random noise) and {r['n_swd']} held-out images; in brackets the same "
            f"estimator between held-out and training images — the floor a perfect model would reach.\n")


def markdown(name: str, r: dict[str, Any]) -> str:
    lines = [f"## `{name}`\n"]
    info = r.get("model_info", {})
    lines.append(f"{info.get('description', '')}\n")
    if info.get("status"):
        lines.append(f"**Status:** {info['status']}\n")
    for p in r["grids"]:
        lines.append(f"![{name} seeds 0-31]({Path(p).relative_to('docs')})\n")
    lines.append("Seeds 0-31: psi 1 (first grid) and psi 0.7 (second), constant noise.\n")
    if r.get("training"):
        t = r["training"]
        lines.append(f"Training: {t['kimg']:.0f} kimg in {t['hours']:.1f} h on this 2-core CPU "
                     f"(median {t['median_images_per_s']:.1f} images/s, {t.get('precision', 'bfloat16 autocast')}).\n")
    lines.append("### SWD against the held-out split\n")
    lines.append(_swd_line(r))
    if "kid_mobilenet" in r:
        lines.append("### Kernel distance on MobileNetV2 features (not the standard Inception KID)\n")
        lines.append("| samples | KID x 1e3 | floor: train vs test photos |\n|---|---|---|")
        lines.append(f"| psi 1 | {r['kid_mobilenet'] * 1e3:.2f} | {r['kid_mobilenet_floor_train_vs_test'] * 1e3:.2f} |")
        lines.append(f"| psi 0.7 | {r['kid_mobilenet_psi0.7'] * 1e3:.2f} | |")
        lines.append(f"\nKID's unbiased estimator (cubic kernel, 100 subsets of up to 1000) between {r['n_swd']} samples and the "
                     f"{r['n_swd']} held-out test photos, on the bundled ImageNet MobileNetV2's pooled 1280-D features at 224 px "
                     "(`latentshop evaluate --metrics kid-mobilenet`). Only comparable with values measured the same way.\n")
    if r.get("curve"):
        lines.append("### Over training\n")
        lines.append(f"![SWD and KID over kimg](images/{name}-curve.png)\n")
        lines.append("| kimg | SWD avg x 1e3 | KID (MobileNet) x 1e3 |\n|---|---|---|")
        for row in r["curve"]:
            lines.append(f"| {row['kimg']:.0f} | {row['swd_avg']:.2f} | {row['kid_mobilenet'] * 1e3:.2f} |")
        lines.append("")
    if r.get("attribute_mix"):
        lines.append("### Attribute mix: samples versus test photos (the `celeba` evaluator)\n")
        lines.append("| attribute | test photos | samples |\n|---|---|---|")
        for row in r["attribute_mix"]:
            lines.append(f"| {row['attribute']} | {row['test_photos']:.1%} | {row['samples']:.1%} |")
        lines.append(f"\nShare of images the classifier calls positive (balanced threshold 0.5), {r['n']} samples; usable attributes only.\n")
    if "factors" in r:
        lines.append("### Factor distribution: samples versus data (the `synthetic` evaluator)\n")
        lines.append(f"Evaluator predictions on {r['n']} samples and on {r['n']} held-out renders; `truth` is the renders' "
                     "actual factors. Floats: mean / std; glasses: rate. Hues are periodic; their linear mean/std is shown.\n")
        lines.append("| factor | truth mean / std | data (evaluator) mean / std | samples mean / std | Δ mean | Δ std |")
        lines.append("|---|---|---|---|---|---|")
        for row in r["factors"]:
            if row["kind"] == "choice":
                fmt = lambda v: " ".join(f"{x:.2f}" for x in v)  # noqa: E731
                lines.append(f"| {row['factor']} (class freq.) | {fmt(row['truth'])} | {fmt(row['data'])} | {fmt(row['samples'])} | "
                             f"TV {row['total_variation']:.3f} | |")
            else:
                lines.append(f"| {row['factor']} | {row['truth_mean']:.3f} / {row['truth_std']:.3f} | {row['data_mean']:.3f} / "
                             f"{row['data_std']:.3f} | {row['samples_mean']:.3f} / {row['samples_std']:.3f} | "
                             f"{row['diff_mean']:+.3f} | {row['diff_std']:+.3f} |")
        lines.append("")
    if "expression_mix" in r:
        lines.append("### Expression mix: samples versus data (the `expression` evaluator)\n")
        lines.append("| class | labels (all photos) | predicted on the photos | predicted on samples |")
        lines.append("|---|---|---|---|")
        for row in r["expression_mix"]:
            lines.append(f"| {row['class']} | {row['labels']:.1%} | {row['real_predicted']:.1%} | {row['samples_predicted']:.1%} |")
        lines.append(f"\n{r['n']} samples; labels outside these classes (fear, contempt, missing): {r['labels_other_fraction']:.1%}. "
                     f"Total variation between the predicted mixes on photos and on samples: {r['total_variation_real_vs_samples']:.3f}.\n")
    return "\n".join(lines)


def evaluator_docs() -> Path:
    """``docs/evaluators.md`` from the shipped evaluators' stored held-out scores."""
    from latentshop.data.synthetic import DOMAINS, FACTORS

    syn, expr = load_evaluator("synthetic"), load_evaluator("expression")
    m, info = syn.metrics, syn.info
    lines = ["# The evaluators\n",
             "Fixed instruments that label images for measurement; they are never the thing being measured and are "
             "never tuned on generator samples or edits. `latentshop.load_evaluator(name)` loads them; "
             "`latentshop evaluator test NAME` re-measures them; `latentshop evaluator train NAME -o DIR` retrains "
             "them with the same recipe. This file is generated by `benchmarks/model_quality.py evaluators` from the "
             "scores stored with the shipped weights.\n",
             "## `synthetic` — factor regressor\n",
             f"Trained on {info.get('data')} ({info.get('steps')} steps of batch {info.get('batch_size')}, "
             f"{info.get('seconds', 0) / 60:.0f} min on this CPU). Scored on 1000 held-out seeds per domain (from 1,500,000): "
             "R² for float factors (hues: with the wrapped, circular error), accuracy for `glasses` and `clothing_pattern`.\n",
             "| factor | " + " | ".join(DOMAINS) + " | all |", "|---|" + "---|" * (len(DOMAINS) + 1)]
    for name, fac in FACTORS.items():
        kind = "R²" if fac.kind == "float" else "acc."
        lines.append(f"| {name} ({kind}) | " + " | ".join(f"{m[d][name]:.3f}" for d in (*DOMAINS, "all")) + " |")
    e, einfo = expr.metrics, expr.info
    lines += ["", "## `expression` — expression classifier\n",
              f"Trained on the lfw-faces train split ({einfo.get('images')} labelled photos, 64 px grayscale, "
              f"{einfo.get('steps')} steps of batch {einfo.get('batch_size')}, class-weighted cross-entropy; "
              "`fear` and `contempt` are left out: 14 and 9 training photos, none in the test split). "
              f"Scored on the test split ({e['images']} photos of persons never seen in training):\n",
              f"accuracy **{e['accuracy']:.3f}** (always answering the majority class: "
              f"{max(e['support'].values()) / e['images']:.3f}), balanced accuracy (mean per-class recall) "
              f"**{e['balanced_accuracy']:.3f}**.\n",
              "| class | test photos | recall |", "|---|---|---|"]
    for c in expr.classes:
        lines.append(f"| {c} | {e['support'][c]} | {e['recall'].get(c, float('nan')):.3f} |")
    lines += ["", "Confusion matrix (rows: true class, columns: predicted; order " + ", ".join(expr.classes) + "):\n", "```"]
    lines += [" ".join(f"{v:4d}" for v in row) for row in e["confusion"]]
    lines += ["```", ""]
    try:
        seg = load_evaluator("parts")
    except Exception:  # noqa: BLE001 - not shipped yet
        seg = None
    if seg is not None:
        pm, pinfo = seg.metrics, seg.info
        lines += ["## `parts` — part segmenter\n",
                  f"A small U-Net over the same backbone stages, trained on synthetic renders whose part masks are known "
                  f"({pinfo.get('data', 'all domains')}; {pinfo.get('steps')} steps of batch {pinfo.get('batch_size')}, "
                  f"{pinfo.get('seconds', 0) / 60:.0f} min on this CPU). It gives the masks that StyleSpace's locality and the edit "
                  "benchmark's outside-the-part measure use on generated faces. Scored on 1000 held-out seeds per domain "
                  "(from 1,500,000): IoU per part over all pixels, mean IoU and pixel accuracy.\n",
                  "| part | " + " | ".join(DOMAINS) + " | all |", "|---|" + "---|" * (len(DOMAINS) + 1)]
        for part in seg.parts:
            lines.append(f"| {part} | " + " | ".join(f"{pm[d]['iou'].get(part, float('nan')):.3f}" for d in (*DOMAINS, "all")) + " |")
        lines.append("| **mean IoU** | " + " | ".join(f"**{pm[d]['mean_iou']:.3f}**" for d in (*DOMAINS, "all")) + " |")
        lines.append("| pixel accuracy | " + " | ".join(f"{pm[d]['pixel_accuracy']:.3f}" for d in (*DOMAINS, "all")) + " |")
        lines.append("")
    lines += _face_evaluator_docs()
    path = DOCS / "evaluators.md"
    kept = ""
    if path.is_file() and HAND_WRITTEN in path.read_text():
        kept = path.read_text().split(HAND_WRITTEN, 1)[1]
    _write_atomic(path, "\n".join(lines) + "\n" + HAND_WRITTEN + kept)
    return path


HAND_WRITTEN = "<!-- Sections below this line are written by hand; benchmarks/model_quality.py keeps them. -->"
#: the attributes the `default` model's InterFaceGAN edits come from (edit name: CelebA attribute)
EDIT_ATTRIBUTES = ("Smiling", "Young", "Male", "Eyeglasses", "No_Beard", "Bald", "Blond_Hair", "Bangs",
                   "Mouth_Slightly_Open", "Heavy_Makeup", "Wearing_Hat")


def _face_evaluator_docs() -> list[str]:
    lines: list[str] = []
    try:
        att = load_evaluator("celeba")
    except Exception:  # noqa: BLE001 - not shipped yet
        att = None
    if att is not None:
        m, info = att.metrics, att.info
        cv = info.get("cross_validation", {})
        lines += ["## `celeba` — CelebA attribute classifier (colour faces)\n",
                  f"{info.get('recipe', '')}; regularisation C = {info.get('C')} chosen by cross-validation "
                  f"(mean cross-validated AUC: {', '.join(f'C {c}: {v:.3f}' for c, v in info.get('C_grid_mean_auc', {}).items())}). Trained on the {info.get('images')} labelled train "
                  f"photos of celeba-faces ({info.get('persons')} persons) and their mirror images, "
                  f"{info.get('seconds', 0) / 60:.0f} min on this CPU. Its data is CelebA: non-commercial research use.\n",
                  f"Scored on the test split's {m['images']} labelled photos (persons never seen) and by 5-fold "
                  f"cross-validation on the train photos grouped by person (the test split is small, so the "
                  f"cross-validated figures are the steadier ones). Mean test AUC **{m['mean_auc']:.3f}**. "
                  f"**Usable** ({m['usable_rule']}): {len(m['usable'])} of {len(att.attributes)}; CelebA's labels "
                  "are noisy, and the attributes marked *no* are too unreliable to edit or measure with.\n",
                  "| attribute | test AUC | test balanced acc. | test positives | CV AUC | CV balanced acc. | train rate | usable |",
                  "|---|---|---|---|---|---|---|---|"]
        order = sorted(att.attributes, key=lambda a: (a not in m["usable"], a not in EDIT_ATTRIBUTES, -cv.get(a, {}).get("auc", 0)))
        for a in order:
            t, c = m["attributes"][a], cv.get(a, {})
            lines.append(f"| {a}{' (edit)' if a in EDIT_ATTRIBUTES else ''} | {t['auc']:.3f} | {t['balanced_accuracy']:.3f} | "
                         f"{t['positives']} | {c.get('auc', float('nan')):.3f} | {c.get('balanced_accuracy', float('nan')):.3f} | "
                         f"{c.get('positive_rate', float('nan')):.2f} | {'yes' if a in m['usable'] else 'no'} |")
        lines.append("")
    try:
        ident = load_evaluator("identity")
    except Exception:  # noqa: BLE001 - not shipped yet
        ident = None
    if ident is not None:
        m, info = ident.metrics, ident.info
        o = info.get("options", {})
        lines += ["## `identity` — face-identity embedding (colour faces)\n",
                  f"{info.get('recipe', '')}: ArcFace loss (s = {o.get('scale')}, m = {o.get('margin')}), "
                  f"{o.get('steps')} steps of batch {o.get('batch_size')}, {info.get('images')} photos of "
                  f"{info.get('persons')} persons, {info.get('seconds', 0) / 60:.0f} min on this CPU; a {o.get('dim')}-D unit "
                  "embedding, differentiable, the identity loss of the encoders, pivotal tuning and caricature. Data: "
                  "CelebA (non-commercial research use).\n",
                  f"Verified on every pair of the test split's {m['images']} photos ({m['persons']} persons never trained on, "
                  f"{m['pairs']} pairs of which {m['same_pairs']} same-person): same- versus different-person ROC AUC "
                  f"**{m['auc']:.3f}** (mean cosine {m['same_mean']:.2f} same, {m['different_mean']:.2f} different); dlib's "
                  f"face-recognition network on the same pairs: **{m.get('dlib', {}).get('auc', float('nan')):.3f}**; the two "
                  f"similarities correlate at {m.get('correlation_with_dlib', float('nan')):.2f}.\n"]
    return lines


def curve_plot(curve: list[dict[str, Any]], path: Path) -> None:
    """SWD and KID over training kimg, as a small PNG drawn with Pillow."""
    from PIL import Image, ImageDraw

    w, h, pad = 640, 300, 40
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    kimg = [c["kimg"] for c in curve]
    x0, x1 = min(kimg), max(max(kimg), min(kimg) + 1)
    for key, colour, label in (("swd_avg", (200, 40, 40), "SWD avg"), ("kid_mobilenet", (40, 80, 200), "KID (MobileNet)")):
        vals = [c[key] for c in curve]
        lo, hi = min(0.0, min(vals)), max(vals) or 1.0
        pts = [(pad + (k - x0) / (x1 - x0) * (w - 2 * pad), h - pad - (v - lo) / (hi - lo) * (h - 2 * pad)) for k, v in zip(kimg, vals)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for p in pts:
            draw.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=colour)
        draw.text((pad + (0 if key == "swd_avg" else 200), 8), f"{label} (0 .. {hi:.3g})", fill=colour)
    draw.line([(pad, h - pad), (w - pad, h - pad)], fill="black")
    draw.text((pad, h - pad + 8), f"{x0:.0f} kimg", fill="black")
    draw.text((w - pad - 60, h - pad + 8), f"{x1:.0f} kimg", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def write_docs() -> Path:
    parts = ["# The bundled models\n",
             "Measured by `benchmarks/model_quality.py` (this file is generated; the numbers are in "
             "`benchmarks/results/model_*.json`). Reproduce a model from scratch with "
             "`latentshop train --preset NAME -o runs/NAME`.\n"]
    for name in MODELS:
        md = RESULTS / f"model_{name}.md"
        if md.is_file():
            parts.append(md.read_text())
    path = DOCS / "models.md"
    _write_atomic(path, "\n".join(parts))
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", choices=[*MODELS, "evaluators", "docs"],
                    help="a model to measure; 'evaluators' or 'docs' only rewrite docs/evaluators.md or docs/models.md from stored results")
    ap.add_argument("--run", type=Path, default=None, help="the training run folder (for the training time)")
    ap.add_argument("--n", type=int, default=N_DEFAULT, help="samples for the label distributions")
    ap.add_argument("--n-swd", type=int, default=2048, help="images per set for SWD (default: capped by the held-out split)")
    args = ap.parse_args(argv)
    if args.model == "evaluators":
        print(f"wrote {evaluator_docs()}")
        return {}
    if args.model == "docs":  # re-render from the stored JSON and the shipped configs' info
        for name in MODELS:
            path = RESULTS / f"model_{name}.json"
            if path.is_file():
                result = json.loads(path.read_text())
                result["model_info"] = json.loads((resolve_model(name) / "config.json").read_text()).get("info", {})
                _write_atomic(RESULTS / f"model_{name}.md", markdown(name, result))
        print(f"wrote {write_docs()}")
        return {}
    torch.manual_seed(0)
    G = load_generator(args.model)
    result: dict[str, Any] = {"model": args.model, "torch": torch.__version__, "threads": torch.get_num_threads(),
                              "machine": platform.processor() or platform.machine()}
    cfg = json.loads((resolve_model(args.model) / "config.json").read_text())
    result["model_info"] = cfg.get("info", {})
    result["grids"] = seed_grids(G, args.model)
    result["training"] = training_hours(args.run) or result["model_info"].get("training")
    if args.model == "synthetic":
        result.update(measure_synthetic(G, args.n, args.n_swd))
    elif G.img_channels == 3:  # the colour real-face model (celeba-faces)
        snaps = sorted(args.run.glob("snapshot-*[0-9]")) if args.run is not None else []
        result.update(measure_celeba(G, args.n, args.n_swd, snapshots=[p for p in snaps if (p / "config.json").is_file()]))
        if result["curve"]:
            curve_plot(result["curve"], DOCS / "images" / f"{args.model}-curve.png")
    else:
        result.update(measure_default(G, args.n, args.n_swd))
    _write_atomic(RESULTS / f"model_{args.model}.json", json.dumps(result, indent=1) + "\n")
    _write_atomic(RESULTS / f"model_{args.model}.md", markdown(args.model, result))
    print(markdown(args.model, result))
    print(f"wrote {write_docs()}")
    return result


if __name__ == "__main__":
    main()
