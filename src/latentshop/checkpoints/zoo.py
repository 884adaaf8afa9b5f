"""Models known by name: the ones bundled with latentshop, and (later) known public checkpoints.

A name resolves to a local path; nothing is downloaded at run time. The bundled models are
``default`` (real colour faces, 128 px), ``lfw`` (real grey faces, 64 px) and ``synthetic``.
:data:`ALIASES` maps a name to another model's folder when no folder of that name exists.
"""

from __future__ import annotations

import os
from pathlib import Path

from latentshop.errors import CheckpointError

__all__ = ["ALIASES", "BUNDLED_DIR", "canonical_name", "list_models", "resolve_model"]

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "zoo"
#: names that stand for another bundled model while no folder of their own exists
ALIASES: dict[str, str] = {"default": "lfw"}


def list_models() -> list[str]:
    """Names of the models available on this machine without a download (aliases not repeated)."""
    extra = os.environ.get("LATENTSHOP_MODELS")
    roots = [BUNDLED_DIR] + ([Path(extra)] if extra else [])
    names = {p.name for root in roots if root.is_dir() for p in root.iterdir() if (p / "config.json").is_file()}
    return sorted(names)


def canonical_name(name: str) -> str:
    """The model a name stands for: an alias's target while no folder of the alias's own name exists."""
    if name in ALIASES and name not in list_models():
        return canonical_name(ALIASES[name])
    return name


def resolve_model(name: str) -> Path:
    """Path of a model given by name, or a clear error naming what exists."""
    extra = os.environ.get("LATENTSHOP_MODELS")
    for root in [BUNDLED_DIR] + ([Path(extra)] if extra else []):
        candidate = root / name
        if (candidate / "config.json").is_file():
            return candidate
    if name in ALIASES:
        return resolve_model(ALIASES[name])
    known = ", ".join(list_models()) or "none yet"
    raise CheckpointError(
        name,
        f"no such file, and no bundled model has that name (known models: {known}). Give the path of an NVIDIA .pkl, "
        "a rosinality .pt or a latentshop checkpoint folder; `latentshop convert` makes the latter from the former",
    )
