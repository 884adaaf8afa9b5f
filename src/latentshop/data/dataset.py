"""Image-folder datasets: prepare a training set from arbitrary image files, and read it back.

Two halves, split as in NVIDIA's ``dataset_tool.py`` and ``training/dataset.py`` (StyleGAN2-ADA):

- :func:`prepare_images` turns a folder (searched recursively) or a ``.zip`` of arbitrary image files
  (any mode, size or EXIF orientation) into ``OUT/img000000.png ...`` of ``res x res`` pixels plus
  ``OUT/dataset.json``. Files that cannot be used are skipped and listed with a reason, never fatal.
  The output appears all at once or not at all: it is written into a hidden sibling folder
  (``.OUT.tmp-xxxx``) that is renamed to ``OUT`` at the end and removed on any error.
- :class:`ImageFolderDataset` serves a prepared folder -- or any folder or zip of square images of one
  size, such as ``../shared/data/lfw-faces`` -- as ``(image uint8 [C, H, W], label float32 [c_dim])``
  pairs, with mirrored copies (``xflip``) and per-rank shards for distributed training.

Decisions (the defaults; most are arguments):

- Transparency (RGBA, LA, PA, palette images with a transparent colour) is composited on **white**
  (``background=255``): transparent product shots and cut-outs are drawn on white almost everywhere,
  and black would merge with dark hair. Pass ``background=0`` for black.
- 16-bit and 32-bit grayscale (``I;16``, ``I``, ``F``) is scaled to 8 bits (``/257`` for 16-bit
  values; float images in ``[0, 1]`` are multiplied by 255). CMYK, YCbCr and other modes go through
  Pillow's own conversion to RGB; embedded ICC colour profiles are ignored.
- ``channels=3`` replicates grayscale to three channels; ``channels=1`` takes the ITU-R 601 luma of
  colour images (Pillow's ``convert("L")``).
- The square is the centred crop of side ``min(width, height)``, resized with Lanczos
  (``reducing_gap=3``). An image whose shorter side is below ``min_size`` (default ``ceil(res / 4)``)
  is skipped as ``too-small``; larger images below ``res`` are upscaled.
- Images of more than :data:`MAX_IMAGE_PIXELS` pixels (8192 x 8192) or files of more than
  :data:`MAX_FILE_BYTES` are skipped as ``too-large`` before they are decoded (decompression bombs).
  The limit is checked here; Pillow's process-wide ``Image.MAX_IMAGE_PIXELS`` is left as it is.
- Only files with an image suffix (:data:`IMAGE_SUFFIXES`) are considered; other files (``README``,
  label files) and hidden files or folders (``.*``, ``__MACOSX``) are ignored silently. A file with
  an image suffix that is not a usable image is skipped with one of the reasons ``empty``,
  ``not-an-image``, ``corrupt`` (truncated or damaged), ``too-small``, ``too-large``,
  ``unsupported`` (a pixel mode Pillow cannot convert) or ``unreadable`` (the file cannot be read).
- Files are taken in sorted order of their path inside the source, so the output is deterministic.

Labels: a ``labels.json``, ``labels.jsonl`` or ``dataset.json`` at the top of the source, or any file
given as ``labels=``, maps a file's path inside the source to a dict of labels. Accepted layouts:
JSON lines with a ``file`` key per line (lfw-faces), a JSON list of such records, a JSON object
``{path: {key: value}}`` or ``{path: value}`` (read as ``{"label": value}``), NVIDIA's
``{"labels": [[path, value], ...]}``, and our own ``dataset.json``. A path that does not match
exactly is matched by its base name when that name is unique among the labels.

A ``split`` field in the labels (lfw-faces has ``train`` / ``test``, disjoint by person) is honoured by
``split=`` on both :func:`prepare_images` and :class:`ImageFolderDataset`.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import sys
import tempfile
import uuid
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from latentshop.errors import ConfigError, ImageError
from latentshop.runtime import current_umask

__all__ = [
    "fit_image",
    "load_image",
    "normalize_image",
    "open_image",
    "IMAGE_SUFFIXES",
    "MAX_FILE_BYTES",
    "MAX_IMAGE_PIXELS",
    "ImageFolderDataset",
    "PrepareReport",
    "SkippedFile",
    "prepare_images",
    "shard_indices",
]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
MAX_IMAGE_PIXELS = 8192 * 8192  # larger images are skipped before decoding (decompression bombs)
MAX_FILE_BYTES = 256 * 1024 * 1024  # larger files (or zip members) are skipped before reading
DATASET_JSON = "dataset.json"
LABEL_FILES = ("labels.json", "labels.jsonl", DATASET_JSON)  # looked for at the top of a source
FORMAT_VERSION = 1

_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "PA"}) | _HIGH_DEPTH_MODES


@dataclass(frozen=True)
class SkippedFile:
    """A source file that :func:`prepare_images` left out.

    Attributes:
        source: the file's path inside the source folder or zip (POSIX separators).
        reason: ``"<kind>: <detail>"``; ``kind`` is one of ``empty``, ``not-an-image``, ``corrupt``,
            ``too-small``, ``too-large``, ``unsupported``, ``unreadable``.
    """

    source: str
    reason: str

    @property
    def kind(self) -> str:
        """The reason's first word, e.g. ``"corrupt"``."""
        return self.reason.split(":", 1)[0]


@dataclass(frozen=True)
class PrepareReport:
    """What :func:`prepare_images` did.

    Attributes:
        out: the output folder (it exists and is complete).
        written: number of images written (``img000000.png`` ... in ``out``).
        skipped: the image files left out, in source order, each with its reason.
        considered: number of image files looked at (after ``split`` and ``limit``).
    """

    out: Path
    written: int
    skipped: tuple[SkippedFile, ...]
    considered: int

    def skipped_by_kind(self) -> dict[str, int]:
        """Counts of skipped files per reason kind, e.g. ``{"corrupt": 2, "too-small": 1}``."""
        counts: dict[str, int] = {}
        for s in self.skipped:
            counts[s.kind] = counts.get(s.kind, 0) + 1
        return counts


class _Skip(Exception):
    """Internal: the current file is unusable; ``reason`` goes into the report."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.reason = f"{kind}: {detail}"


# --------------------------------------------------------------------------------------------------
# Sources: a folder or a zip, listed as sorted POSIX paths.


class _Source:
    """Read-only view of a folder (recursive) or a ``.zip``; names are sorted POSIX paths inside it.

    The zip handle is opened lazily and not pickled, so a dataset can go to DataLoader workers.
    """

    def __init__(self, path: str | os.PathLike, *, exclude: Path | None = None):
        self.path = Path(path)
        self._exclude = exclude.resolve() if exclude is not None else None
        self._zip: zipfile.ZipFile | None = None
        if self.path.is_dir():
            self.is_zip = False
        elif self.path.is_file():
            if not zipfile.is_zipfile(self.path):
                raise ConfigError(f"{self.path} is neither a folder nor a .zip file; give a folder of images or a zip")
            self.is_zip = True
        else:
            raise ConfigError(f"{self.path} does not exist; give a folder of images or a .zip file")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_zip"] = None
        return state

    def _zipfile(self) -> zipfile.ZipFile:
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        return self._zip

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    @staticmethod
    def _hidden(name: str) -> bool:
        return any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(name).parts)

    def names(self) -> list[str]:
        """All regular files, sorted, skipping hidden ones and the excluded folder."""
        if self.is_zip:
            found = [i.filename for i in self._zipfile().infolist() if not i.is_dir()]
        else:
            found = []
            for root, dirs, files in os.walk(self.path):
                root_path = Path(root)
                dirs[:] = [
                    d
                    for d in dirs
                    if not d.startswith(".") and (self._exclude is None or (root_path / d).resolve() != self._exclude)
                ]
                found.extend((root_path / f).relative_to(self.path).as_posix() for f in files)
        return sorted(n for n in found if not self._hidden(n))

    def has(self, name: str) -> bool:
        if self.is_zip:
            try:
                self._zipfile().getinfo(name)
            except KeyError:
                return False
            return True
        return (self.path / name).is_file()

    def size(self, name: str) -> int:
        if self.is_zip:
            return self._zipfile().getinfo(name).file_size
        return (self.path / name).stat().st_size

    def read(self, name: str) -> bytes:
        if self.is_zip:
            return self._zipfile().read(name)
        return (self.path / name).read_bytes()


def _image_names(source: _Source) -> list[str]:
    return [n for n in source.names() if PurePosixPath(n).suffix.lower() in IMAGE_SUFFIXES]


# --------------------------------------------------------------------------------------------------
# Labels.


def _norm_key(name: str) -> str:
    key = str(name).replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    return key


def _parse_labels(text: str, origin: str) -> dict[str, dict[str, Any]]:
    """Parse one labels file into ``{path: {key: value}}`` (layouts in the module docstring)."""

    def records(items: Sequence[Any]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for item in items:
            if not isinstance(item, dict) or "file" not in item:
                raise ConfigError(f"{origin}: every record needs a 'file' key, got {str(item)[:80]!r}")
            out[_norm_key(item["file"])] = {k: v for k, v in item.items() if k != "file"}
        return out

    try:
        if origin.endswith(".jsonl"):
            return records([json.loads(line) for line in text.splitlines() if line.strip()])
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{origin} is not valid JSON ({e}); fix or remove the labels file") from e
    if isinstance(data, list):
        return records(data)
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a JSON object or list of records, got {type(data).__name__}")
    if "files" in data and isinstance(data["files"], list):  # our dataset.json
        return {_norm_key(f["file"]): dict(f.get("labels", {})) for f in data["files"]}
    if "labels" in data and (data["labels"] is None or isinstance(data["labels"], list)):  # NVIDIA
        return {_norm_key(name): {"label": value} for name, value in (data["labels"] or [])}
    return {_norm_key(k): (dict(v) if isinstance(v, dict) else {"label": v}) for k, v in data.items()}


class _LabelIndex:
    """Looks labels up by exact path, then by base name when that name is unique."""

    def __init__(self, table: dict[str, dict[str, Any]]):
        self.table = table
        by_name: dict[str, str | None] = {}
        for key in table:
            base = PurePosixPath(key).name
            by_name[base] = None if base in by_name else key  # None marks an ambiguous base name
        self._by_name = by_name

    def __bool__(self) -> bool:
        return bool(self.table)

    def get(self, name: str) -> dict[str, Any] | None:
        key = _norm_key(name)
        if key in self.table:
            return self.table[key]
        full = self._by_name.get(PurePosixPath(key).name)
        return self.table[full] if full is not None else None


def _load_labels(source: _Source, labels: str | os.PathLike | None) -> _LabelIndex:
    if labels is not None:
        path = Path(labels)
        if not path.is_file():
            raise ConfigError(f"labels file {path} does not exist; give a labels.json or labels.jsonl file")
        return _LabelIndex(_parse_labels(path.read_text(encoding="utf-8"), str(path)))
    for name in LABEL_FILES:
        if source.has(name):
            text = source.read(name).decode("utf-8")
            return _LabelIndex(_parse_labels(text, f"{source.path}/{name}"))
    return _LabelIndex({})


def _filter_split(
    entries: list[tuple[str, dict[str, Any]]], split: str | None, origin: object
) -> list[tuple[str, dict[str, Any]]]:
    if split is None:
        return entries
    if not any("split" in lab for _, lab in entries):
        raise ConfigError(f"split={split!r} was asked for, but no label in {origin} has a 'split' field")
    return [(name, lab) for name, lab in entries if lab.get("split") == split]


# --------------------------------------------------------------------------------------------------
# Decoding: bytes -> an 8-bit "L" or "RGB" image, upright.


def _decode(data: bytes, *, max_pixels: int) -> Image.Image:
    """Decode, check the size before the pixels, load, and apply the EXIF orientation."""
    if not data:
        raise _Skip("empty", "the file has 0 bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise _Skip("not-an-image", "Pillow cannot identify an image in this file") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise _Skip("too-large", str(e)) from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise _Skip("corrupt", f"{type(e).__name__}: {e}") from None
        w, h = img.size
        if w * h > max_pixels:
            raise _Skip("too-large", f"{w}x{h} pixels is more than the limit of {max_pixels}")
        if w < 1 or h < 1:
            raise _Skip("corrupt", f"the image claims a size of {w}x{h}")
        try:
            img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise _Skip("too-large", str(e)) from None
        except Exception as e:  # decoders raise OSError, SyntaxError, ValueError, struct.error, ...
            raise _Skip("corrupt", f"{type(e).__name__}: {e}") from None
    return _upright(img)


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """``I;16*``, ``I`` or ``F`` grayscale to 8-bit ``L``."""
    a = np.asarray(img).astype(np.float64)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if img.mode.startswith("I;16"):
        a = a / 257.0
    elif img.mode == "F" and lo >= 0.0 and hi <= 1.0:
        a = a * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        pass
    elif img.mode == "I" and lo >= 0.0 and hi <= 65535.0:
        a = a / 257.0
    else:  # anything else: stretch the range that is there
        a = (a - lo) / max(hi - lo, 1e-12) * 255.0
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), mode="L")


def _on_background(img: Image.Image, background: int) -> Image.Image:
    """Composite an image with alpha (``LA`` or ``RGBA``) onto a flat grey level."""
    base_mode = "L" if img.mode == "LA" else "RGB"
    out = Image.new(base_mode, img.size, background if base_mode == "L" else (background,) * 3)
    out.paste(img.convert(base_mode), mask=img.getchannel("A"))
    return out


def _to_l_or_rgb(img: Image.Image, background: int) -> Image.Image:
    """Any Pillow mode to 8-bit ``L`` or ``RGB`` (alpha composited on ``background``)."""
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode in _HIGH_DEPTH_MODES:
        return _high_depth_to_l(img)
    if mode == "P":
        has_alpha = "transparency" in img.info or img.palette is not None and img.palette.mode == "RGBA"
        return _to_l_or_rgb(img.convert("RGBA" if has_alpha else "RGB"), background)
    if mode in ("PA", "RGBa", "RGBX"):
        return _to_l_or_rgb(img.convert("RGBA" if mode != "RGBX" else "RGB"), background)
    if mode == "La":
        return _to_l_or_rgb(img.convert("LA"), background)
    if mode in ("LA", "RGBA"):
        return _on_background(img, background)
    try:  # CMYK, YCbCr, HSV, LAB, ...: Pillow's conversion, no colour management
        return img.convert("RGB")
    except (ValueError, OSError) as e:
        raise _Skip("unsupported", f"cannot convert pixel mode {mode!r} to RGB ({e})") from None


def _upright(img: Image.Image) -> Image.Image:
    """``img`` turned as its EXIF orientation says (and the tag dropped); itself when there is none."""
    try:
        if img.getexif().get(0x0112, 1) in (1, None):
            return img
        return ImageOps.exif_transpose(img)
    except Exception:  # a damaged EXIF block must not cost a good image; keep it as stored
        return img


def normalize_image(img: Image.Image, *, background: int = 255) -> Image.Image:
    """A decoded Pillow image, of any mode, as :func:`open_image` reads a file: upright (its EXIF
    orientation applied) and 8-bit ``L`` (grayscale modes) or ``RGB``.

    16-bit grayscale (``I;16``, and ``I`` with values up to 65535) is scaled by ``1/257`` so that
    0..65535 becomes 0..255; palettes are resolved; CMYK, YCbCr and other modes go through Pillow's
    conversion; transparency (``RGBA``, ``LA``, ``PA``, a palette's transparent colour) is composited
    on the grey level ``background`` (white by default). ``L`` and ``RGB`` images without an
    orientation come back as they are.

    Raises:
        ImageError: a pixel mode Pillow cannot convert (``kind="unsupported"``).

    Example:
        >>> normalize_image(Image.new("RGBA", (2, 2), (255, 0, 0, 0))).getpixel((0, 0))
        (255, 255, 255)
    """
    _check_options(1, 3, background)
    try:
        return _to_l_or_rgb(_upright(img), background)
    except _Skip as e:
        raise ImageError(f"{_describe_image(img)}: {e.reason}", kind=e.kind) from None


def _describe_image(img: Image.Image) -> str:
    return getattr(img, "filename", "") or f"the {img.mode} image"


def _to_channels(img: Image.Image, channels: int) -> Image.Image:
    return img.convert("RGB" if channels == 3 else "L")


def _square_resize(img: Image.Image, res: int) -> Image.Image:
    """Centre-crop to the shorter side and resize to ``res x res`` (Lanczos)."""
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    if s == res and w == h:
        return img
    if w != h:  # crop first: resize(box=...) would let the filter see pixels outside the square
        img = img.crop((left, top, left + s, top + s))
    return img.resize((res, res), Image.Resampling.LANCZOS, reducing_gap=3.0)


def fit_image(img: Image.Image, *, res: int, channels: int) -> Image.Image:
    """A decoded image as a model's input: ``channels`` (1: luma, 3: RGB), centre-cropped to a square
    and resized to ``res x res`` (Lanczos), as :func:`load_image` does for a file."""
    _check_options(res, channels, 255)
    return _square_resize(_to_channels(img, channels), res)


def _prepare_one(
    data: bytes, *, res: int, channels: int, background: int, min_size: int, max_pixels: int
) -> Image.Image:
    """One file's bytes to a ``res x res`` ``L``/``RGB`` image, or :class:`_Skip`."""
    img = _decode(data, max_pixels=max_pixels)
    w, h = img.size
    if min(w, h) < min_size:
        raise _Skip("too-small", f"{w}x{h}; the shorter side must be at least {min_size} px for res={res}")
    try:
        img = _to_channels(_to_l_or_rgb(img, background), channels)
        return _square_resize(img, res)
    except _Skip:
        raise
    except Exception as e:  # a decoder that fails late (lazy tiles) or an odd mode
        raise _Skip("corrupt", f"{type(e).__name__}: {e}") from None


def load_image(path: str | os.PathLike, *, res: int | None = None, channels: int = 3, background: int = 255,
               max_pixels: int = MAX_IMAGE_PIXELS) -> torch.Tensor:
    """Read one image file as a tensor ``(channels, H, W)`` in ``[-1, 1]``.

    The file is decoded with the same checks as :func:`prepare_images` (size before pixels, EXIF
    orientation, any pixel mode to ``L``/``RGB``, alpha composited on ``background``).

    Args:
        path: the image file.
        res: centre-crop and resize to ``res x res`` (Lanczos); ``None`` keeps the image as it is.
        channels: 1 (luma) or 3.

    Raises:
        ImageError: the file is missing, not an image, corrupt, or too large.
    """
    _check_options(res or 1, channels, background)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: cannot read the file ({e.strerror or e})", kind="unreadable") from None
    try:
        img = _to_channels(_to_l_or_rgb(_decode(data, max_pixels=max_pixels), background), channels)
        if res is not None:
            img = _square_resize(img, res)
    except _Skip as e:
        raise ImageError(f"{path}: {e.reason}", kind=e.kind) from None
    a = np.asarray(img, dtype=np.float32).reshape(img.size[1], img.size[0], channels)
    return torch.from_numpy(a.transpose(2, 0, 1).copy()).div_(127.5).sub_(1.0)


def open_image(path: str | os.PathLike, *, background: int = 255, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Read one image file as an 8-bit Pillow image of mode ``L`` (grayscale files) or ``RGB``.

    The same decoding and checks as :func:`load_image` (size before pixels, EXIF orientation, any
    pixel mode to ``L``/``RGB``, alpha composited on ``background``), without resizing.

    Raises:
        ImageError: the file is missing, not an image, corrupt, or too large.
    """
    _check_options(1, 3, background)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: cannot read the file ({e.strerror or e})", kind="unreadable") from None
    try:
        return _to_l_or_rgb(_decode(data, max_pixels=max_pixels), background)
    except _Skip as e:
        raise ImageError(f"{path}: {e.reason}", kind=e.kind) from None


def _write_png(img: Image.Image, path: Path) -> None:
    """Write one output image; a module function so tests can make it fail."""
    img.save(path, format="PNG")


# --------------------------------------------------------------------------------------------------
# prepare_images


def _check_options(res: int, channels: int, background: int) -> None:
    if not isinstance(res, int) or isinstance(res, bool) or res < 1:
        raise ConfigError(f"res must be a positive integer (e.g. 64), got {res!r}")
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    if not 0 <= background <= 255:
        raise ConfigError(f"background must be a grey level in [0, 255], got {background!r}")


def _progress_iter(items: Sequence[str], enabled: bool, what: str) -> Iterator[str]:
    """Iterate with a rich progress bar on stderr (only when stderr is a terminal)."""
    if not enabled or not sys.stderr.isatty():
        yield from items
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=len(items))
        for item in items:
            yield item
            bar.advance(task)


def _commit(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` folder to ``out``, replacing ``out`` only when allowed."""
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise ConfigError(f"{out} already exists; choose another folder or pass overwrite=True")
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old, out)
            raise
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    else:
        os.replace(tmp, out)


def prepare_images(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    res: int,
    channels: int = 3,
    labels: str | os.PathLike | None = None,
    split: str | None = None,
    limit: int | None = None,
    background: int = 255,
    min_size: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareReport:
    """Make a clean ``res x res`` training set from a folder or zip of arbitrary images.

    Every image is decoded safely, turned upright (EXIF), converted to ``channels`` 8-bit channels
    (transparency composited on ``background``), centre-cropped to a square and resized with Lanczos.
    Files that cannot be used are skipped and listed with a reason; an error while writing removes
    everything written so far, so ``out`` either is complete or does not exist.

    Output: ``out/img000000.png ...`` (``(res, res)`` grayscale or ``(res, res, 3)`` RGB, numbered in
    sorted source order without gaps) and ``out/dataset.json``::

        {"format_version": 1, "res": 64, "channels": 3, "count": 2, "source": "/abs/src",
         "options": {...}, "files": [{"file": "img000000.png", "source": "a/x.jpg", "labels": {...}}, ...],
         "skipped": [{"source": "b.png", "reason": "corrupt: ..."}]}

    Args:
        src: a folder (searched recursively, hidden entries ignored) or a ``.zip`` of images with the
            suffixes in :data:`IMAGE_SUFFIXES`.
        out: the folder to create. It must not exist unless ``overwrite`` is true.
        res: output side in pixels, e.g. 64.
        channels: 3 for RGB (grayscale is replicated), 1 for grayscale (luma of colour images).
        labels: a labels file (JSON or JSON lines, see the module docstring); by default
            ``labels.json`` / ``labels.jsonl`` / ``dataset.json`` at the top of ``src`` when present.
            Each written file keeps its labels in ``dataset.json``.
        split: keep only files whose labels have ``"split": split`` (e.g. ``"train"``).
        limit: process only the first ``limit`` image files (after ``split``), e.g. for a quick subset.
        background: grey level in ``[0, 255]`` under transparent pixels (255 = white).
        min_size: skip images whose shorter side is below this many pixels; default ``ceil(res / 4)``.
        overwrite: replace an existing ``out`` (only once the new one is complete).
        progress: show a progress bar on stderr when it is a terminal.

    Returns:
        A :class:`PrepareReport` with the number written and the skipped files.

    Raises:
        ConfigError: bad options, a missing ``src``, an existing ``out`` without ``overwrite``, or a
            malformed labels file.
    """
    _check_options(res, channels, background)
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be >= 0, got {limit}")
    min_size = max(1, math.ceil(res / 4)) if min_size is None else int(min_size)
    src_path, out_path = Path(src), Path(out)
    if out_path.exists() and not overwrite:
        raise ConfigError(f"{out_path} already exists; choose another folder or pass overwrite=True")
    if src_path.exists() and out_path.resolve() == src_path.resolve():
        raise ConfigError(f"the output folder {out_path} is the source itself; write somewhere else")

    source = _Source(src_path, exclude=out_path)
    try:
        index = _load_labels(source, labels)
        entries = [(name, index.get(name) or {}) for name in _image_names(source)]
        entries = _filter_split(entries, split, labels or src_path)
        if limit is not None:
            entries = entries[:limit]

        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.tmp-", dir=out_path.parent))
        try:
            files: list[dict[str, Any]] = []
            skipped: list[SkippedFile] = []
            labels_of = dict(entries)
            for name in _progress_iter([n for n, _ in entries], progress, "prepare"):
                try:
                    try:
                        nbytes = source.size(name)
                        if nbytes > MAX_FILE_BYTES:
                            raise _Skip("too-large", f"{nbytes} bytes is more than the limit of {MAX_FILE_BYTES}")
                        data = source.read(name)
                    except (OSError, zipfile.BadZipFile, RuntimeError) as e:
                        raise _Skip("unreadable", f"{type(e).__name__}: {e}") from None
                    img = _prepare_one(
                        data, res=res, channels=channels, background=background, min_size=min_size,
                        max_pixels=MAX_IMAGE_PIXELS,
                    )
                except _Skip as skip:
                    skipped.append(SkippedFile(name, skip.reason))
                    continue
                file_name = f"img{len(files):06d}.png"
                _write_png(img, tmp / file_name)
                entry: dict[str, Any] = {"file": file_name, "source": name}
                if labels_of[name]:
                    entry["labels"] = labels_of[name]
                files.append(entry)
            meta = {
                "format_version": FORMAT_VERSION,
                "res": res,
                "channels": channels,
                "count": len(files),
                "source": src_path.resolve().as_posix(),
                "options": {"background": background, "min_size": min_size, "split": split, "limit": limit},
                "files": files,
                "skipped": [{"source": s.source, "reason": s.reason} for s in skipped],
            }
            (tmp / DATASET_JSON).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
            os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700 folders; give the usual permissions
            _commit(tmp, out_path, overwrite)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        source.close()
    return PrepareReport(out=out_path, written=len(files), skipped=tuple(skipped), considered=len(entries))




# --------------------------------------------------------------------------------------------------
# Sharding


def shard_indices(
    n: int, rank: int, world_size: int, *, drop_last: bool = False, seed: int | None = None
) -> list[int]:
    """The indices of ``range(n)`` that rank ``rank`` of ``world_size`` processes.

    Ranks take every ``world_size``-th index (like ``torch.utils.data.DistributedSampler``), so every
    rank gets the same number of indices. When ``n`` is not a multiple of ``world_size``:
    ``drop_last=False`` wraps around and repeats the first ``world_size - n % world_size`` indices
    (every index is used at least once, those few twice); ``drop_last=True`` drops the last
    ``n % world_size`` indices (every index at most once). With ``n`` a multiple of ``world_size``
    each index goes to exactly one rank either way. ``seed`` permutes the order first
    (deterministically: the same on every rank).

    Example:
        >>> shard_indices(10, 0, 3)
        [0, 3, 6, 9]
        >>> shard_indices(10, 2, 3)
        [2, 5, 8, 1]
        >>> shard_indices(10, 2, 3, drop_last=True)
        [2, 5, 8]
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    order = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
    if drop_last:
        order = order[: n - n % world_size]
    elif n % world_size and n > 0:
        total = math.ceil(n / world_size) * world_size
        order = np.resize(order, total)  # np.resize repeats from the start
    return [int(i) for i in order[rank::world_size]]


# --------------------------------------------------------------------------------------------------
# ImageFolderDataset


def _native_channels(mode: str) -> int:
    return 1 if mode in _GRAY_MODES else 3


class ImageFolderDataset(torch.utils.data.Dataset):
    """Images and labels from a prepared folder, or from a folder/zip of square images of one size.

    A folder (or zip) holding ``dataset.json`` is read as written by :func:`prepare_images`. Any
    other folder or zip is read directly: every image must be square and of one size (else
    :class:`~latentshop.errors.ImageError`; run :func:`prepare_images` first), and labels come from a
    ``labels.json`` / ``labels.jsonl`` at its top, as for lfw-faces::

        ds = ImageFolderDataset("../shared/data/lfw-faces", split="train", res=64,
                                use_labels=True, label_key="expression")
        img, c = ds[0]  # uint8 [1, 64, 64], float32 one-hot [ds.c_dim]

    Items are ``(image, label)``: ``image`` a ``uint8`` tensor ``(C, H, W)`` in ``[0, 255]``;
    ``label`` a ``float32`` one-hot vector ``(c_dim,)`` over :attr:`classes` when ``use_labels``,
    else an empty tensor ``(0,)``. With ``xflip`` the dataset has ``2 * N`` items: item ``N + i`` is
    item ``i`` mirrored left-right (NVIDIA's ``ImageFolderDataset``).

    Args:
        path: a prepared folder, a folder of images, or a ``.zip`` of either.
        res: output side; default the images' own. Other sizes are resized on loading (Lanczos).
        channels: 1 or 3; default the stored channels (prepared) or the first image's (1 for
            grayscale modes, else 3). Images are converted on loading.
        xflip: add mirrored copies.
        use_labels: return one-hot labels of ``label_key``.
        label_key: the categorical label to use; default the only key there is, or ``"label"``.
        classes: the class values, in one-hot order; default all values of ``label_key`` among the
            labels (before ``split`` and ``limit``, so a train and a test dataset agree), sorted.
            With ``use_labels``, images whose value is missing or not in ``classes`` are left out;
            :attr:`num_unlabeled` counts them.
        split: keep only images whose labels have ``"split": split``.
        limit: keep only the first ``limit`` images (after ``split`` and label filtering).
        background: grey level under transparent pixels, as in :func:`prepare_images`.

    Attributes:
        resolution: ``H == W`` of the returned images.
        num_channels: ``C`` of the returned images.
        c_dim: length of the label vector (0 without labels).
        classes: the class values, in one-hot order (empty without labels).
        image_shape: ``[C, H, W]``.
        label_shape: ``[c_dim]``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        res: int | None = None,
        channels: int | None = None,
        xflip: bool = False,
        use_labels: bool = False,
        label_key: str | None = None,
        classes: Sequence[Any] | None = None,
        split: str | None = None,
        limit: int | None = None,
        background: int = 255,
    ):
        self.path = Path(path)
        self.name = self.path.stem
        self._source = _Source(self.path)
        self._background = int(background)
        if channels is not None and channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {channels!r}")
        if res is not None and (not isinstance(res, int) or res < 1):
            raise ConfigError(f"res must be a positive integer, got {res!r}")

        stored_res: int | None = None
        stored_channels: int | None = None
        if self._source.has(DATASET_JSON):
            meta = json.loads(self._source.read(DATASET_JSON).decode("utf-8"))
            if not isinstance(meta, dict) or "files" not in meta or "res" not in meta:
                raise ConfigError(f"{self.path}/{DATASET_JSON} is not a prepared-dataset file; run prepare_images")
            self.prepared = True
            stored_res, stored_channels = int(meta["res"]), int(meta.get("channels", 3))
            entries = [(f["file"], dict(f.get("labels", {}))) for f in meta["files"]]
        else:
            self.prepared = False
            index = _load_labels(self._source, None)
            entries = [(name, index.get(name) or {}) for name in _image_names(self._source)]
        if not entries:
            raise ImageError(f"no images found in {self.path} (suffixes: {', '.join(sorted(IMAGE_SUFFIXES))})")

        self.label_key: str | None = None
        self.classes: list[Any] = []
        self.num_unlabeled = 0
        if use_labels:
            self.label_key = label_key or self._default_label_key(entries)
            self.classes = list(classes) if classes is not None else self._collect_classes(entries, self.label_key)
        entries = _filter_split(entries, split, self.path)
        if use_labels:
            class_set = set(self.classes)
            kept = [(n, lab) for n, lab in entries if _hashable(lab.get(self.label_key)) in class_set]
            self.num_unlabeled = len(entries) - len(kept)
            entries = kept
        if limit is not None:
            entries = entries[: max(0, limit)]
        if not entries:
            raise ImageError(f"no images left in {self.path} after split={split!r}, labels and limit={limit!r}")

        if stored_res is None:
            stored_res, stored_channels = self._scan_sizes([n for n, _ in entries])
        self._native_res = stored_res
        self.resolution = int(res) if res is not None else stored_res
        self.num_channels = int(channels) if channels is not None else int(stored_channels)
        self._names = [n for n, _ in entries]
        self._file_labels = [lab for _, lab in entries]
        self.c_dim = len(self.classes)
        onehot = np.zeros((len(entries), self.c_dim), dtype=np.float32)
        if use_labels:
            position = {c: i for i, c in enumerate(self.classes)}
            for row, (_, lab) in enumerate(entries):
                onehot[row, position[_hashable(lab.get(self.label_key))]] = 1.0
        self._onehot = torch.from_numpy(onehot)  # [N, c_dim]
        self.xflip = bool(xflip)

    # -- construction helpers -------------------------------------------------------------------

    @staticmethod
    def _default_label_key(entries: list[tuple[str, dict[str, Any]]]) -> str:
        keys = sorted({k for _, lab in entries for k in lab})
        if len(keys) == 1:
            return keys[0]
        if "label" in keys:
            return "label"
        if not keys:
            raise ConfigError("use_labels=True, but the images have no labels (no labels.json / labels.jsonl)")
        raise ConfigError(f"use_labels=True needs label_key=, one of {keys}")

    @staticmethod
    def _collect_classes(entries: list[tuple[str, dict[str, Any]]], key: str) -> list[Any]:
        values = set()
        for name, lab in entries:
            value = lab.get(key)
            if isinstance(value, (list, dict)):
                raise ConfigError(
                    f"label {key!r} of {name} is {value!r}; only categorical (scalar) labels are supported"
                )
            if value is not None:
                values.add(value)
        if not values:
            raise ConfigError(f"no image has a value for label {key!r}")
        try:
            return sorted(values)
        except TypeError:  # mixed types: order by their text
            return sorted(values, key=str)

    def _scan_sizes(self, names: list[str]) -> tuple[int, int]:
        """Read the headers: every image square and of one size; channels from the first one."""
        first: tuple[str, tuple[int, int]] | None = None
        channels = 3
        for name in names:
            try:
                with Image.open(io.BytesIO(self._source.read(name))) as img:
                    (w, h), mode = img.size, img.mode
                    size = (h, w) if _has_rotation(img) else (w, h)  # as load_image will see it
            except Exception as e:
                raise ImageError(
                    f"{self.path}/{name} cannot be read ({type(e).__name__}: {e}); run prepare_images on the folder"
                ) from e
            if size[0] != size[1]:
                raise ImageError(
                    f"{self.path}/{name} is {size[0]}x{size[1]}, not square; run prepare_images to crop and resize"
                )
            if first is None:
                first, channels = (name, size), _native_channels(mode)
            elif size != first[1]:
                raise ImageError(
                    f"{self.path} mixes image sizes ({first[0]} is {first[1][0]} px, {name} is {size[0]} px); "
                    "run prepare_images to make them one size"
                )
        assert first is not None
        return first[1][0], channels

    # -- the Dataset protocol -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._names) * (2 if self.xflip else 1)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``idx``: image ``uint8 (C, H, W)`` and label ``float32 (c_dim,)``."""
        n = len(self._names)
        if not -len(self) <= idx < len(self):
            raise IndexError(f"index {idx} out of range for a dataset of {len(self)} items")
        idx %= len(self)
        raw, flip = idx % n, idx >= n
        cache = getattr(self, "_cache", None)
        if cache is not None:  # decoded once by preload()
            image = cache[raw]
            return (image.flip(2) if flip else image.clone()), self._onehot[raw].clone()
        image = self.load_image(raw)  # [C, H, W]
        if flip:
            image = image[:, :, ::-1]
        return torch.from_numpy(np.ascontiguousarray(image)), self._onehot[raw].clone()

    def preload(self, *, max_bytes: int = 4 << 30, progress: Callable[[int, int], None] | None = None) -> bool:
        """Decode every image once into one ``uint8`` tensor in memory, so that training reads no
        files and decodes nothing; mirrored copies are flipped when read. Returns whether the images
        are in memory: a dataset larger than ``max_bytes`` (default 4 GiB) stays on disk.

        Args:
            max_bytes: the most memory the decoded images may take.
            progress: called as ``progress(done, total)`` while decoding.
        """
        if getattr(self, "_cache", None) is not None:
            return True
        n = len(self._names)
        c, r = self.num_channels, self.resolution
        if n * c * r * r > max_bytes:
            return False
        cache = torch.empty([n, c, r, r], dtype=torch.uint8)
        for i in range(n):
            cache[i] = torch.from_numpy(self.load_image(i))
            if progress is not None and (i % 256 == 255 or i == n - 1):
                progress(i + 1, n)
        self._cache = cache
        return True

    def load_image(self, raw_idx: int) -> np.ndarray:
        """Image ``raw_idx`` (without mirroring) as ``uint8`` ``(C, H, W)``."""
        name = self._names[raw_idx]
        try:
            img = _decode(self._source.read(name), max_pixels=MAX_IMAGE_PIXELS)
            img = _to_channels(_to_l_or_rgb(img, self._background), self.num_channels)
        except _Skip as skip:
            raise ImageError(f"{self.path}/{name}: {skip.reason}") from None
        if img.size != (self._native_res, self._native_res):
            raise ImageError(
                f"{self.path}/{name} is {img.size[0]}x{img.size[1]}, expected {self._native_res} px square; "
                "the folder changed since the dataset was opened"
            )
        if self.resolution != self._native_res:
            img = _square_resize(img, self.resolution)
        array = np.array(img, dtype=np.uint8)  # a writable copy, so torch.from_numpy is safe
        return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)

    def get_label(self, idx: int) -> torch.Tensor:
        """One-hot label ``float32 (c_dim,)`` of item ``idx`` (mirrored copies share it)."""
        return self._onehot[idx % len(self._names)].clone()

    def get_details(self, idx: int) -> dict[str, Any]:
        """File name (inside the folder), mirroring flag and all labels of item ``idx``."""
        n = len(self._names)
        return {"file": self._names[idx % n], "xflip": idx % len(self) >= n, "labels": dict(self._file_labels[idx % n])}

    def shard(self, rank: int, world_size: int, *, drop_last: bool = False, seed: int | None = None) -> list[int]:
        """Indices for rank ``rank`` of ``world_size``; see :func:`shard_indices` (equal lengths)."""
        return shard_indices(len(self), rank, world_size, drop_last=drop_last, seed=seed)

    @property
    def image_shape(self) -> list[int]:
        return [self.num_channels, self.resolution, self.resolution]

    @property
    def label_shape(self) -> list[int]:
        return [self.c_dim]

    @property
    def has_labels(self) -> bool:
        return self.c_dim > 0

    def close(self) -> None:
        """Close the zip file, if any (it reopens on the next read)."""
        self._source.close()

    def __repr__(self) -> str:
        return (
            f"ImageFolderDataset({str(self.path)!r}, len={len(self)}, image_shape={self.image_shape}, "
            f"c_dim={self.c_dim}, xflip={self.xflip})"
        )


def _hashable(value: Any) -> Any:
    return value if not isinstance(value, (list, dict)) else None


def _has_rotation(img: Image.Image) -> bool:
    """Whether the EXIF orientation swaps width and height (values 5 to 8)."""
    try:
        return img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except Exception:
        return False
