"""File plumbing every layer shares: atomic writes and ``.npz`` files with a JSON header.

Like :mod:`latentshop.errors` and :mod:`latentshop.runtime`, this module imports nothing else of
latentshop's, so any layer may use it.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from latentshop.errors import LatentshopError
from latentshop.runtime import current_umask

__all__ = ["atomic_write_bytes", "read_header_npz"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary sibling file and a rename (never a half file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_header_npz(path: Path, *, max_bytes: int, error: type[LatentshopError], what: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(header, other arrays)`` of an ``.npz`` file with a JSON ``header`` array (latent and edit files).

    No pickles are loaded; a missing, oversized, truncated or header-less file raises ``error``
    naming the file and ``what`` it should have been.
    """
    try:
        size = path.stat().st_size
    except OSError as e:
        raise error(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    if size > max_bytes:
        raise error(f"{path}: {size} bytes is too large for a {what}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "header" not in npz.files:
                raise error(f"{path}: not a latentshop {what} (no header)")
            header = json.loads(str(npz["header"]))
            arrays = {k: np.array(npz[k]) for k in npz.files if k != "header"}
    except error:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise error(f"{path}: not a readable {what} ({e})") from None
    if not isinstance(header, dict):
        raise error(f"{path}: not a latentshop {what}")
    return header, arrays
