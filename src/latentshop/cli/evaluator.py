"""``latentshop evaluator``: train, test and apply the evaluators (synthetic factors, expressions, face parts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from latentshop.cli.common import console, handle_errors, progress

__all__ = ["evaluator_app"]

evaluator_app = typer.Typer(help="Evaluators that label images for measurement: 'synthetic' (factors), 'expression', "
                                 "'parts' (face part segmentation), 'celeba' (CelebA's 40 attributes of colour faces), "
                                 "'identity' (a face-identity embedding) and 'landmarks' (face measures from dlib's "
                                 "68 points).", no_args_is_help=True)

DEFAULT_FACES = "../shared/data/lfw-faces"
CELEBA_FACES = "../shared/data/celeba-faces"
_NAMES = ("synthetic", "expression", "parts", "celeba", "identity")


def _check_name(name: str) -> None:
    from latentshop.errors import ConfigError

    if name not in _NAMES:
        raise ConfigError(f"unknown evaluator {name!r}; choose one of {', '.join(repr(n) for n in _NAMES)}")


@evaluator_app.command("train")
@handle_errors
def train(
    name: str = typer.Argument(..., help="'synthetic' (factor regressor), 'expression' (lfw-faces classifier), "
                                         "'parts' (part segmenter), 'celeba' (attribute classifier) or 'identity' "
                                         "(identity embedding)."),
    out: Path = typer.Option(..., "--out", "-o", help="Evaluator folder to write (atomically)."),
    data: Optional[str] = typer.Option(None, help=f"Data folder: lfw-faces for 'expression' (default {DEFAULT_FACES}), "
                                                  f"celeba-faces for 'celeba' and 'identity' (default {CELEBA_FACES})."),
    steps: Optional[int] = typer.Option(None, min=1, help="Optimiser steps (default: the recipe's)."),
    n_per_domain: Optional[int] = typer.Option(
        None, min=10, help="Training faces rendered per domain (default: 20000 for 'synthetic'; for 'parts' "
                           "16000 photo + 6000 toon + 6000 caricature)."),
    workers: int = typer.Option(0, min=0, help="Render worker processes for synthetic data (0: this process)."),
    device: str = typer.Option("auto", help="'auto', 'cpu' or 'cuda[:N]'."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing folder."),
) -> None:
    """Train an evaluator with its fixed recipe, test it on held-out data, and save both.

    Examples:

      latentshop evaluator train synthetic -o runs/eval-synthetic

      latentshop evaluator train expression --data ../shared/data/lfw-faces -o runs/eval-expression

      latentshop evaluator train parts -o runs/eval-parts

      latentshop evaluator train celeba --data ../shared/data/celeba-faces -o runs/eval-celeba

      latentshop evaluator train identity -o runs/eval-identity --steps 4000
    """
    from dataclasses import replace

    from latentshop.checkpoints.evaluators import save_evaluator
    from latentshop.runtime import resolve_device
    from latentshop.training import evaluators as ev

    _check_name(name)
    dev = resolve_device(device)
    if name == "synthetic":
        opts = ev.FACTOR_FIT if steps is None else replace(ev.FACTOR_FIT, steps=steps)
        with progress() as bar:
            task = bar.add_task("training", total=opts.steps)
            net, info = ev.train_factor_regressor(n_per_domain=n_per_domain or 20_000, options=opts, device=dev,
                                                  workers=workers,
                                                  progress=lambda s, loss: bar.update(task, completed=s, description=f"loss {loss:.3f}"))
        metrics = ev.evaluate_factor_regressor(net, workers=workers)
    elif name == "celeba":
        from latentshop.training import face_evaluators as fe

        with progress() as bar:
            task = bar.add_task("features", total=None)
            net, info = fe.train_attribute_classifier(
                data or CELEBA_FACES, progress=lambda stage, done, total: bar.update(task, completed=done, total=total, description=stage))
        metrics = fe.evaluate_attribute_classifier(net, data or CELEBA_FACES, cross_validation=info["cross_validation"])
    elif name == "identity":
        from latentshop.training import face_evaluators as fe

        opts = fe.IDENTITY_FIT if steps is None else replace(fe.IDENTITY_FIT, steps=steps)
        with progress() as bar:
            task = bar.add_task("training", total=opts.steps)
            net, info = fe.train_identity_embedder(data or CELEBA_FACES, options=opts, device=dev,
                                                   progress=lambda s, loss: bar.update(task, completed=s, description=f"loss {loss:.3f}"))
        metrics = fe.evaluate_identity_embedder(net, data or CELEBA_FACES)
    elif name == "parts":
        from latentshop.data.synthetic import DOMAINS

        opts = ev.PARTS_FIT if steps is None else replace(ev.PARTS_FIT, steps=steps)
        counts = ev.PART_COUNTS if n_per_domain is None else {d: n_per_domain for d in DOMAINS}
        with progress() as bar:
            task = bar.add_task("training", total=opts.steps)
            net, info = ev.train_part_segmenter(counts=counts, options=opts, device=dev, workers=workers,
                                                progress=lambda s, loss: bar.update(task, completed=s, description=f"loss {loss:.3f}"))
        metrics = ev.evaluate_part_segmenter(net, workers=workers)
    else:
        opts = ev.EXPRESSION_FIT if steps is None else replace(ev.EXPRESSION_FIT, steps=steps)
        with progress() as bar:
            task = bar.add_task("training", total=opts.steps)
            net, info = ev.train_expression_classifier(data or DEFAULT_FACES, options=opts, device=dev,
                                                       progress=lambda s, loss: bar.update(task, completed=s, description=f"loss {loss:.3f}"))
        metrics = ev.evaluate_expression_classifier(net, data or DEFAULT_FACES)
    path = save_evaluator(net, out, metrics=metrics, info=info, overwrite=overwrite)
    console.print(json.dumps(metrics, indent=1)[:3000])
    console.print(f"wrote {path}")


@evaluator_app.command("test")
@handle_errors
def test(
    name: str = typer.Argument(..., help="A shipped evaluator name or an evaluator folder."),
    data: Optional[str] = typer.Option(None, help=f"lfw-faces folder for an expression classifier (default {DEFAULT_FACES}); "
                                                  f"celeba-faces for 'celeba' and 'identity' (default {CELEBA_FACES})."),
    n_per_domain: int = typer.Option(1000, min=10, help="Held-out faces per domain (for a factor regressor or a part segmenter)."),
) -> None:
    """Measure an evaluator on held-out data (synthetic seeds it never saw / the lfw-faces test split).

    Examples:

      latentshop evaluator test synthetic

      latentshop evaluator test expression --data ../shared/data/lfw-faces

      latentshop evaluator test parts --n-per-domain 300

      latentshop evaluator test celeba

      latentshop evaluator test identity
    """
    from latentshop.checkpoints.evaluators import load_evaluator
    from latentshop.models.evaluators import FactorRegressor, PartSegmenter
    from latentshop.training import evaluators as ev

    net = load_evaluator(name)
    if net.kind == "landmarks":
        from latentshop.errors import ConfigError

        raise ConfigError("the landmark evaluator is not trained, so it has no held-out test; its checks are in "
                          "docs/evaluators.md (try `latentshop evaluator predict landmarks IMAGE`)")
    if isinstance(net, FactorRegressor):
        metrics = ev.evaluate_factor_regressor(net, n_per_domain=n_per_domain)
    elif isinstance(net, PartSegmenter):
        metrics = ev.evaluate_part_segmenter(net, n_per_domain=n_per_domain)
    elif net.kind in ("attributes", "identity"):
        from latentshop.training import face_evaluators as fe

        if net.kind == "attributes":
            metrics = fe.evaluate_attribute_classifier(net, data or CELEBA_FACES, cross_validation=net.info.get("cross_validation"))
        else:
            metrics = fe.evaluate_identity_embedder(net, data or CELEBA_FACES)
    else:
        metrics = ev.evaluate_expression_classifier(net, data or DEFAULT_FACES)
    console.print(json.dumps(metrics, indent=1))


@evaluator_app.command("predict")
@handle_errors
def predict(
    name: str = typer.Argument(..., help="A shipped evaluator name or an evaluator folder."),
    images: List[Path] = typer.Argument(..., help="Image files."),
    label_maps: Optional[Path] = typer.Option(
        None, help="Folder to write a colour part label map per image, <name>_parts.png (part segmenters only)."),
    detect: bool = typer.Option(False, "--detect", help="landmarks only: find the largest face with dlib's detector "
                                                        "first (photos that are not aligned face crops)."),
) -> None:
    """Label image files: factor values (synthetic), expression probabilities, part areas (the
    share of the image's pixels each part covers) or face measures (landmarks: NaN, written null,
    where no usable face is found), one JSON line each.

    Examples:

      latentshop evaluator predict expression face.png

      latentshop evaluator predict synthetic out/seed0001.png out/seed0002.png

      latentshop evaluator predict parts out/seed0001.png --label-maps out/parts

      latentshop evaluator predict landmarks out/seed0001.png examples/face.jpg

      latentshop evaluator predict landmarks photo.jpg --detect
    """
    import torch

    from latentshop.checkpoints.evaluators import load_evaluator
    from latentshop.data.dataset import load_image
    from latentshop.data.images import save_image
    from latentshop.errors import ConfigError
    from latentshop.models.evaluators import FactorRegressor, PartSegmenter, colour_parts
    from latentshop.models.landmarks import LandmarkEvaluator

    net = load_evaluator(name)
    if detect and not isinstance(net, LandmarkEvaluator):
        raise ConfigError(f"--detect needs the landmark evaluator ('landmarks'); {name!r} is a {net.kind}")
    if isinstance(net, LandmarkEvaluator):
        for path in images:
            x = load_image(path, channels=3)[None]
            vals = net.measure(x, aligned=not detect)
            row = {"file": str(path), **{k: (None if v[0].isnan() else round(float(v[0]), 4)) for k, v in vals.items()}}
            typer.echo(json.dumps(row))
        return
    if label_maps is not None and not isinstance(net, PartSegmenter):
        raise ConfigError(f"--label-maps needs a part segmenter (such as 'parts'); {name!r} is a {net.kind}")
    if label_maps is not None:
        label_maps.mkdir(parents=True, exist_ok=True)
    for path in images:
        x = load_image(path, channels=net.channels)[None]
        if isinstance(net, PartSegmenter):
            labels = net.predict(x)[0]  # [H, W]
            share = torch.bincount(labels.flatten(), minlength=len(net.parts)).double() / labels.numel()
            row = {"file": str(path), "areas": {p: round(float(a), 5) for p, a in zip(net.parts, share)}}
            if label_maps is not None:
                out_path = label_maps / f"{path.stem}_parts.png"
                save_image(colour_parts(labels).numpy(), out_path)
                row["label_map"] = str(out_path)
        elif isinstance(net, FactorRegressor):
            vals = {k: (v[0].tolist() if v.ndim > 1 else v[0].item()) for k, v in net.predict(x).items()}
            if "clothing_pattern" in vals:
                vals["clothing_pattern"] = net.factors["clothing_pattern"].choices[int(vals["clothing_pattern"])]
            row = {"file": str(path), **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in vals.items()}}
        elif net.kind == "attributes":
            probs = net.predict_proba(x)[0]
            usable = set(net.metrics.get("usable", net.attributes))
            row = {"file": str(path), "attributes": {a: round(float(p), 4) for a, p in zip(net.attributes, probs) if a in usable}}
        elif net.kind == "identity":
            row = {"file": str(path), "embedding": [round(float(v), 5) for v in net.embed_images(x)[0]]}
        else:
            probs = net.predict_proba(x)[0]
            row = {"file": str(path), "expression": net.classes[int(torch.argmax(probs))],
                   "probs": {c: round(float(p), 4) for c, p in zip(net.classes, probs)}}
        typer.echo(json.dumps(row))
