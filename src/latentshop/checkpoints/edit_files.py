"""Edit files: ``.npz`` arrays plus one JSON header, tied to a generator.

Direction sets, StyleSpace channel lists (and every later edit family) are stored here. Like latent
files they hold no pickles, and reading with a generator refuses a file made for another one: a
direction means nothing to other weights. A generator *tuned* from the file's generator accepts it
(:mod:`latentshop.models.fingerprint`: tuning keeps the latent space the edits were found in).

The header's ``kind`` names the edit family that reads the file (:data:`latentshop.registry.EDIT_FAMILIES`);
an edit family's object turns itself into a file record with ``to_record()`` and back with the
family's ``from_record``, so this module knows no family by name.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from latentshop.errors import EditError
from latentshop.fileio import atomic_write_bytes, read_header_npz
from latentshop.models.fingerprint import accepts, generator_fingerprint
from latentshop.registry import EditSet, family_for_file_kind

__all__ = [
    "EDIT_FORMAT_VERSION",
    "MAX_EDIT_FILE_BYTES",
    "edit_files_beside",
    "load_channels",
    "load_directions",
    "load_edit_set",
    "read_edit_file",
    "save_channels",
    "save_directions",
    "save_edit_set",
    "write_edit_file",
]

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


def read_edit_file(path: str | os.PathLike, *, kind: str | None, G: Any = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read an edit file of ``kind`` (``None``: any): ``(header, arrays)``; with ``G``, refuse another generator's file.

    Raises:
        EditError: missing, unreadable, not an edit file, of another kind, holding non-finite
            numbers, or made for a generator ``G`` does not descend from.
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
    if G is not None and not accepts(G, header.get("generator")):
        made = (header.get("meta") or {}).get("model")
        made = f" ({made})" if made else ""
        raise EditError(f"{path}: these edits were made for generator {header.get('generator')}{made}, not for the one "
                        f"in use ({generator_fingerprint(G)}); compute them again for this model")
    return header, arrays


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def save_edit_set(edit_set: Any, path: str | os.PathLike, *, model: str | None = None) -> Path:
    """Write any edit family's object (its ``to_record()``) as an edit file; ``model`` records where its generator came from."""
    kind, arrays, meta = edit_set.to_record()
    meta = dict(meta)
    if model is not None:
        meta["model"] = str(model)
    return write_edit_file(path, kind=kind, generator=edit_set.generator, arrays=arrays, meta=meta)


def load_edit_set(path: str | os.PathLike, G: Any = None, *, kind: str | None = None) -> EditSet:
    """Read an edit file into its family's object (a direction set, a channel set...).

    Raises:
        EditError: unreadable, of another ``kind`` than asked, of a kind no registered family reads,
            or another generator's.
    """
    header, arrays = read_edit_file(path, kind=kind, G=G)
    family = family_for_file_kind(str(header.get("kind")))
    if family is None or family.from_record is None:
        raise EditError(f"{path}: holds {header.get('kind')!r} edits, which no edit family of this latentshop reads")
    return family.from_record(header, arrays, str(path), G)


def save_directions(directions: Any, path: str | os.PathLike, *, model: str | None = None) -> Path:
    """Write a :class:`~latentshop.editing.directions.DirectionSet` (``.npz`` + JSON header; atomic)."""
    return save_edit_set(directions, path, model=model)


def load_directions(path: str | os.PathLike, G: Any = None) -> Any:
    """Read a direction set; with ``G``, refuse one made for another generator."""
    return load_edit_set(path, G, kind="directions")


def save_channels(channels: Any, path: str | os.PathLike, *, model: str | None = None) -> Path:
    """Write a :class:`~latentshop.editing.stylespace.ChannelSet` (``.npz`` + JSON header; atomic)."""
    return save_edit_set(channels, path, model=model)


def load_channels(path: str | os.PathLike, G: Any = None) -> Any:
    """Read a StyleSpace channel set; with ``G``, refuse one made for another generator."""
    return load_edit_set(path, G, kind="channels")


def edit_files_beside(model_path: str | os.PathLike) -> list[Path]:
    """The edit files stored with a model, sorted: ``<folder>/edits/*.npz`` for a latentshop folder,
    ``<file>.edits/*.npz`` beside a ``.pkl`` or ``.pt``; none if it has none."""
    p = Path(model_path)
    folder = p / "edits" if p.is_dir() else p.with_name(p.name + ".edits")
    return sorted(folder.glob("*.npz")) if folder.is_dir() else []


def read_edit_sets(G: Any, paths: Sequence[str | os.PathLike], *, explicit: bool) -> list[EditSet]:
    """The edit sets of ``paths`` for ``G``. Files found beside a model (``explicit=False``) that belong
    to another generator or that no family reads are skipped (they are stale); files a person named
    are refused with an error instead."""
    out = []
    for p in paths:
        try:
            out.append(load_edit_set(p, G))
        except EditError:
            if explicit:
                raise
    return out
