"""Edit files: ``.npz`` arrays plus one JSON header, tied to a generator.

Direction sets and StyleSpace channel lists are written here. Like latent files they hold no
pickles, and loading with a generator refuses a file made for another one: a direction means
nothing to other weights.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from latentshop.data.images import atomic_write_bytes
from latentshop.editing.edits import EditError
from latentshop.latents import generator_fingerprint, read_header_npz
from latentshop.models.stylegan2 import Generator

__all__ = ["EDIT_FORMAT_VERSION", "MAX_EDIT_FILE_BYTES", "read_edit_file", "write_edit_file"]

EDIT_FORMAT_VERSION = 1
MAX_EDIT_FILE_BYTES = 256 * 2**20


def write_edit_file(path: str | os.PathLike, *, kind: str, generator: str, arrays: Mapping[str, np.ndarray],
                    meta: Mapping[str, Any]) -> Path:
    """Write an edit file atomically (``.npz`` is appended when missing)."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    header = {"format": "latentshop-edits", "format_version": EDIT_FORMAT_VERSION, "kind": kind,
              "generator": generator, "meta": dict(meta)}
    payload = {"header": np.array(json.dumps(header, default=_json_default))}
    for k, v in arrays.items():
        a = np.asarray(v)
        if a.dtype == object:
            raise EditError(f"edit file array {k!r} must be numeric")
        payload[k] = a
    buf = io.BytesIO()
    np.savez_compressed(buf, **payload)
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_edit_file(path: str | os.PathLike, *, kind: str | None, G: Generator | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read an edit file of ``kind`` (``None``: any): ``(header, arrays)``; with ``G``, refuse another generator's file.

    Raises:
        EditError: missing, unreadable, not an edit file, of another kind, holding non-finite
            numbers, or made for another generator.
    """
    path = Path(path)
    header, arrays = read_header_npz(path, max_bytes=MAX_EDIT_FILE_BYTES, error=EditError, what="edit file")
    if header.get("format") != "latentshop-edits":
        raise EditError(f"{path}: not a latentshop edit file")
    if int(header.get("format_version", 0)) > EDIT_FORMAT_VERSION:
        raise EditError(f"{path}: edit format version {header.get('format_version')} is newer than this latentshop; upgrade it")
    if kind is not None and header.get("kind") != kind:
        raise EditError(f"{path}: holds {header.get('kind')!r} edits, not {kind!r}")
    for k, a in arrays.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise EditError(f"{path}: array {k!r} holds NaN or infinite values")
    if G is not None:
        have = generator_fingerprint(G)
        if header.get("generator") != have:
            made = (header.get("meta") or {}).get("model")
            made = f" ({made})" if made else ""
            raise EditError(f"{path}: these edits were made for generator {header.get('generator')}{made}, not for the one "
                            f"in use ({have}); compute them again for this model")
    return header, arrays


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
