"""Models known by name: the ones bundled with latentshop, and (later) known public checkpoints.

A name resolves to a local path; nothing is downloaded at run time. The bundled ``default``
model arrives with the training work (see the README); until then no name is registered.
"""

from __future__ import annotations

import os
from pathlib import Path

from latentshop.errors import CheckpointError

__all__ = ["list_models", "resolve_model", "BUNDLED_DIR"]

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "zoo"


def list_models() -> list[str]:
    """Names of the models available on this machine without a download."""
    extra = os.environ.get("LATENTSHOP_MODELS")
    roots = [BUNDLED_DIR] + ([Path(extra)] if extra else [])
    names = {p.name for root in roots if root.is_dir() for p in root.iterdir() if (p / "config.json").is_file()}
    return sorted(names)


def resolve_model(name: str) -> Path:
    """Path of a model given by name, or a clear error naming what exists."""
    extra = os.environ.get("LATENTSHOP_MODELS")
    for root in [BUNDLED_DIR] + ([Path(extra)] if extra else []):
        candidate = root / name
        if (candidate / "config.json").is_file():
            return candidate
    known = ", ".join(list_models()) or "none yet"
    raise CheckpointError(
        name,
        f"no such file, and no bundled model has that name (known models: {known}). Give the path of an NVIDIA .pkl, "
        "a rosinality .pt or a latentshop checkpoint folder; `latentshop convert` makes the latter from the former",
    )
