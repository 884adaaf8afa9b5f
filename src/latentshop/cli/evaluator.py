"""``latentshop evaluator``: train, test and apply the evaluators (synthetic factors, expressions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from latentshop.cli.common import console, handle_errors, progress

__all__ = ["evaluator_app"]

evaluator_app = typer.Typer(help="Evaluators that label images for measurement: 'synthetic' (factors) and 'expression'.",
                            no_args_is_help=True)

DEFAULT_FACES = "../shared/data/lfw-faces"


def _check_name(name: str) -> None:
    from latentshop.errors import ConfigError

    if name not in ("synthetic", "expression"):
        raise ConfigError(f"unknown evaluator {name!r}; choose 'synthetic' or 'expression'")


@evaluator_app.command("train")
@handle_errors
def train(
    name: str = typer.Argument(..., help="'synthetic' (factor regressor) or 'expression' (lfw-faces classifier)."),
    out: Path = typer.Option(..., "--out", "-o", help="Evaluator folder to write (atomically)."),
    data: str = typer.Option(DEFAULT_FACES, help="lfw-faces folder (for 'expression')."),
    steps: Optional[int] = typer.Option(None, min=1, help="Optimiser steps (default: the recipe's)."),
    n_per_domain: int = typer.Option(20_000, min=10, help="Training faces rendered per domain (for 'synthetic')."),
    device: str = typer.Option("auto", help="'auto', 'cpu' or 'cuda[:N]'."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing folder."),
) -> None:
    """Train an evaluator with its fixed recipe, test it on held-out data, and save both.

    Examples:

      latentshop evaluator train synthetic -o runs/eval-synthetic

      latentshop evaluator train expression --data ../shared/data/lfw-faces -o runs/eval-expression
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
            net, info = ev.train_factor_regressor(n_per_domain=n_per_domain, options=opts, device=dev,
                                                  progress=lambda s, loss: bar.update(task, completed=s, description=f"loss {loss:.3f}"))
        metrics = ev.evaluate_factor_regressor(net)
    else:
        opts = ev.EXPRESSION_FIT if steps is None else replace(ev.EXPRESSION_FIT, steps=steps)
        with progress() as bar:
            task = bar.add_task("training", total=opts.steps)
            net, info = ev.train_expression_classifier(data, options=opts, device=dev,
                                                       progress=lambda s, loss: bar.update(task, completed=s, description=f"loss {loss:.3f}"))
        metrics = ev.evaluate_expression_classifier(net, data)
    path = save_evaluator(net, out, metrics=metrics, info=info, overwrite=overwrite)
    console.print(json.dumps(metrics, indent=1)[:3000])
    console.print(f"wrote {path}")


@evaluator_app.command("test")
@handle_errors
def test(
    name: str = typer.Argument(..., help="A shipped evaluator name or an evaluator folder."),
    data: str = typer.Option(DEFAULT_FACES, help="lfw-faces folder (for an expression classifier)."),
    n_per_domain: int = typer.Option(1000, min=10, help="Held-out faces per domain (for a factor regressor)."),
) -> None:
    """Measure an evaluator on held-out data (synthetic seeds it never saw / the lfw-faces test split).

    Examples:

      latentshop evaluator test synthetic

      latentshop evaluator test expression --data ../shared/data/lfw-faces
    """
    from latentshop.checkpoints.evaluators import load_evaluator
    from latentshop.models.evaluators import FactorRegressor
    from latentshop.training import evaluators as ev

    net = load_evaluator(name)
    if isinstance(net, FactorRegressor):
        metrics = ev.evaluate_factor_regressor(net, n_per_domain=n_per_domain)
    else:
        metrics = ev.evaluate_expression_classifier(net, data)
    console.print(json.dumps(metrics, indent=1))


@evaluator_app.command("predict")
@handle_errors
def predict(
    name: str = typer.Argument(..., help="A shipped evaluator name or an evaluator folder."),
    images: List[Path] = typer.Argument(..., help="Image files."),
) -> None:
    """Label image files: factor values (synthetic) or expression probabilities, one JSON line each.

    Examples:

      latentshop evaluator predict expression face.png

      latentshop evaluator predict synthetic out/seed0001.png out/seed0002.png
    """
    import torch

    from latentshop.checkpoints.evaluators import load_evaluator
    from latentshop.data.dataset import load_image
    from latentshop.models.evaluators import FactorRegressor

    net = load_evaluator(name)
    for path in images:
        x = load_image(path, channels=net.channels)[None]
        if isinstance(net, FactorRegressor):
            vals = {k: (v[0].tolist() if v.ndim > 1 else v[0].item()) for k, v in net.predict(x).items()}
            if "clothing_pattern" in vals:
                vals["clothing_pattern"] = net.factors["clothing_pattern"].choices[int(vals["clothing_pattern"])]
            row = {"file": str(path), **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in vals.items()}}
        else:
            probs = net.predict_proba(x)[0]
            row = {"file": str(path), "expression": net.classes[int(torch.argmax(probs))],
                   "probs": {c: round(float(p), 4) for c, p in zip(net.classes, probs)}}
        typer.echo(json.dumps(row))
