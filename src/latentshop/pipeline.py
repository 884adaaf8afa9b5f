"""The main job, in one place: photo → target → latent → edits → images and files.

Everything works over a :class:`~latentshop.checkpoints.ModelBundle` from
:func:`latentshop.load_model`, which holds the generator and the parts the job needs (encoders,
edit catalog, evaluators), each read once. The command line (``edit``, ``invert``, ``mix``,
``interpolate``, ``render``) and the studio call these functions and hold no pipeline logic of
their own:

- :func:`load_target` — an image file or a decoded image → the model's input (FFHQ-aligned with
  ``align``), remembering the photo and the alignment for paste-back; :func:`load_targets` gives
  one per face with ``all_faces``;
- :func:`choose_method` — the inversion method for a job (``auto``: the hybrid ``e4e+opt`` when
  the model has an e4e encoder, else ``w+``);
- :func:`invert_targets` / :func:`invert_photo` — a registered inversion method with its assets
  taken from the bundle; the result may carry a tuned generator;
- :func:`resolve_input` — what an editing command takes: a latent file, ``seed:N``, or an image
  (inverted first); :func:`resolve_inputs` gives one per face of a photo with ``all_faces``;
- :func:`edit_photo` → :class:`EditResult` (``.save(outdir)``: the edited image, before/after,
  paste-back, sweeps, the latent and a JSON record, each written atomically);
- :func:`evaluate_generator` — generation-quality metrics (SWD, FID) of a model against real images
  (``latentshop evaluate``).

Example:
    >>> import latentshop
    >>> bundle = latentshop.load_model("synthetic", device="cpu")
    >>> result = edit_photo(bundle, "seed:3", ["smile=+2"])
    >>> result.after.shape, result.latent.space
    ((64, 64, 3), 'w+')
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from latentshop.checkpoints.bundle import ModelBundle
from latentshop.data.align import AlignedFace, NoFaceError, align_face, paste_back, save_alignment
from latentshop.data.dataset import IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, fit_image, normalize_image, open_image
from latentshop.data.images import make_grid, save_image, to_uint8
from latentshop.editing.catalog import SANE_STRENGTH, parse_edit_spec, parse_sweep
from latentshop.editing.edits import Edit, edit
from latentshop.errors import ConfigError, ImageError
from latentshop.fileio import atomic_write_bytes
from latentshop.inversion import INVERSION_METHODS, InversionResult, run_inversion
from latentshop.latents import Latent, load_latent, save_latent, seed_z, synthesize
from latentshop.models.stylegan2 import Generator

__all__ = [
    "EditResult",
    "Inversion",
    "SOURCE_HELP",
    "Source",
    "Sweep",
    "Target",
    "choose_method",
    "build_metrics",
    "edit_photo",
    "evaluate_generator",
    "fid_needs_inception",
    "invert_photo",
    "invert_targets",
    "load_target",
    "load_targets",
    "make_edits",
    "min_source_side",
    "parse_metrics",
    "paste_into_photo",
    "reconstruction_metrics",
    "render",
    "resolve_input",
    "resolve_inputs",
    "seed_latent",
]

SOURCE_HELP = "a latent file (.npz from `latentshop invert`), 'seed:N' (a sample of the model), or an image file (inverted first)"


# ---- targets --------------------------------------------------------------------------------------
#: the smallest source the model is given: a photo's shorter side (or, aligned, the face's crop square
#: in the photo) of at least a quarter of the model's resolution, the rule of ``data.prepare_images``
MIN_SIDE_FRACTION = 0.25
#: sources of at least this share of the resolution count as full size (resampling 120 px to 128 loses nothing)
FULL_SIDE_FRACTION = 0.9


def min_source_side(res: int) -> int:
    """The smallest photo side (or aligned face square, in photo pixels) accepted for a model of
    resolution ``res``: ``ceil(res / 4)``; anything between that and 90 % of ``res`` is enlarged with
    a warning (:func:`load_target`).

    Example:
        >>> min_source_side(128), min_source_side(64)
        (32, 16)
    """
    return max(1, math.ceil(res * MIN_SIDE_FRACTION))


@dataclass
class Target:
    """A photo as a model's input.

    Attributes:
        tensor: ``[C, R, R]`` in ``[-1, 1]`` at the model's resolution and channels (on the CPU).
        name: a short name for output files (the file's stem; ``STEM-faceK`` for the K-th largest face
            with ``all_faces``).
        path: the file it came from, if any.
        face: the FFHQ alignment (:class:`~latentshop.data.align.AlignedFace`) with ``align``.
        photo: the decoded photo the face was aligned in (for paste-back), with ``align``.
        face_index: with ``all_faces``, the face's rank by size in the photo (1: the largest).
        warnings: what :func:`load_target` warned about (e.g. an enlarged small photo).
    """

    tensor: torch.Tensor
    name: str
    path: Path | None = None
    face: AlignedFace | None = None
    photo: Image.Image | None = field(default=None, repr=False)
    face_index: int | None = None
    warnings: list[str] = field(default_factory=list)

    def uint8(self) -> np.ndarray:
        """The target as ``uint8 [R, R, C]``."""
        return to_uint8(self.tensor[None])[0]


def load_target(bundle: ModelBundle, image: str | os.PathLike | Image.Image | np.ndarray, *, align: bool = False,
                upscale: bool = True, name: str | None = None, max_pixels: int = MAX_IMAGE_PIXELS,
                warn: Callable[[str], None] | None = None) -> Target:
    """An image as the model's input: decoded with the file checks, FFHQ-aligned with ``align``
    (dlib; the largest face), else centre-cropped and resized to the model's resolution, in its channels.

    Colour: any photo becomes the model's channels (``G.img_channels``). Files and Pillow images of
    any mode are read as :func:`~latentshop.data.dataset.normalize_image` says: upright (EXIF
    orientation), 16-bit grey scaled to 8 bits (0..65535 to 0..255), palettes resolved, CMYK
    converted, **transparency composited on white** (as ``prepare_images`` does for the training
    sets). A grey photo for a colour model is repeated into three equal channels; a colour photo for
    a grey model becomes its ITU-R 601 luma.

    Size: the source is the photo's shorter side, or with ``align`` the side of the face's crop
    square in the photo. Below :func:`min_source_side` (a quarter of the model's resolution) it is
    refused (``ImageError``, ``kind="too-small"``); below 90 % of the resolution it is enlarged with
    a warning (``warn``), or refused without ``upscale``.

    Args:
        bundle: the model.
        image: an image file, a decoded Pillow image (any mode) or a ``uint8`` array ``(H, W[, 1|3|4])``.
        align: detect the face and crop it as FFHQ does (the photo is kept for paste-back).
        upscale: accept sources smaller than the model (enlarged, with a warning; detail is missing).
        name: the output name (default: the file's stem, else ``"image"``).
        max_pixels: larger images are refused before their pixels are decoded.
        warn: called with each warning (default: :func:`warnings.warn`); they are kept in
            :attr:`Target.warnings` too.

    Raises:
        ImageError: the file is missing, not an image, corrupt or too large; too small (or smaller
            than the model without ``upscale``); with ``align``, no face was found (``NoFaceError``).
    """
    return _load_targets(bundle, image, align=align, all_faces=False, upscale=upscale, name=name, max_pixels=max_pixels,
                         warn=warn)[0]


def load_targets(bundle: ModelBundle, image: str | os.PathLike | Image.Image | np.ndarray, *, align: bool = False,
                 all_faces: bool = False, upscale: bool = True, name: str | None = None,
                 max_pixels: int = MAX_IMAGE_PIXELS, warn: Callable[[str], None] | None = None) -> list[Target]:
    """:func:`load_target` for every face of a photo with ``all_faces`` (which needs ``align``): one
    target per face, largest first, named ``NAME-face1``, ``NAME-face2``, ... by size. A face other
    than the largest that is too small is left out with a warning (the largest one raises, as in
    :func:`load_target`). Without ``all_faces``: a list of the one :func:`load_target` gives.

    Example:
        >>> targets = load_targets(bundle, "group.jpg", align=True, all_faces=True)  # doctest: +SKIP
        >>> [t.name for t in targets]  # doctest: +SKIP
        ['group-face1', 'group-face2']
    """
    if all_faces and not align:
        raise ConfigError("--all-faces needs --align: the faces are found by the alignment")
    return _load_targets(bundle, image, align=align, all_faces=all_faces, upscale=upscale, name=name,
                         max_pixels=max_pixels, warn=warn)


def _load_targets(bundle: ModelBundle, image: str | os.PathLike | Image.Image | np.ndarray, *, align: bool,
                  all_faces: bool, upscale: bool, name: str | None, max_pixels: int,
                  warn: Callable[[str], None] | None) -> list[Target]:
    G = bundle.G
    res, channels = G.img_resolution, G.img_channels
    path = None
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        img = open_image(path, max_pixels=max_pixels)
    elif isinstance(image, Image.Image):
        img = normalize_image(image)  # as a file would be read: upright, 8-bit L or RGB, alpha on white
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise ImageError(f"an image array must be uint8 (H, W[, 1|3|4]), got {image.dtype} {image.shape}")
        img = normalize_image(Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image))
    else:
        raise ImageError(f"cannot read an image from {type(image).__name__}: give a file, a Pillow image or a uint8 array")
    stem = name or (path.stem if path is not None else "image")
    where = str(path) if path is not None else "the image"
    if not align:
        w, h = img.size
        noted = _check_source_size(min(w, h), res, upscale=upscale, what=f"{where}: the image is {w}x{h}",
                                   need="its shorter side needs")
        a = np.asarray(fit_image(img, res=res, channels=channels), dtype=np.uint8).reshape(res, res, channels)
        return [_noted(Target(_to_tensor(a), stem, path), noted, warn)]
    try:
        found = align_face(img, res=res, channels=channels, all_faces=all_faces)  # the decoded photo: the file is read once
    except NoFaceError:
        if path is None:
            raise
        raise NoFaceError(str(path)) from None  # named by its file
    faces = found if isinstance(found, list) else [found]
    out: list[Target] = []
    for k, face in enumerate(faces, start=1):
        label = f"face {k} of {len(faces)}" if all_faces else "the face"
        side = float(np.hypot(*(face.quad[3] - face.quad[0])))  # the crop square's side in photo pixels
        try:
            noted = _check_source_size(round(side), res, upscale=upscale, need="the face's square needs",
                                       what=f"{where}: {label} is about {round(side)} px across (its FFHQ crop square)")
        except ImageError as e:
            if k == 1:
                raise
            _warn(f"{e}; this face is left out", warn)
            continue
        a = np.asarray(face.image, dtype=np.uint8).reshape(res, res, -1)
        out.append(_noted(Target(_to_tensor(a), f"{stem}-face{k}" if all_faces else stem, path, face, img,
                                 face_index=k if all_faces else None), noted, warn))
    return out


def _check_source_size(side: int, res: int, *, upscale: bool, what: str, need: str) -> str | None:
    """Refuse a source of ``side`` pixels that is too small for a ``res`` model; the warning to give
    when it is enlarged, else ``None``. ``what`` describes the source, ``need`` names its measure."""
    least = min_source_side(res)
    if side < least:
        raise ImageError(f"{what}, too small for the model's {res}x{res} input ({need} at least {least} px, "
                         f"{res} px for full detail); use a larger photo, or one taken closer to the face", kind="too-small")
    if side >= FULL_SIDE_FRACTION * res:
        return None
    if not upscale:
        raise ImageError(f"{what}, smaller than the model's {res}x{res}; pass --upscale to enlarge it anyway "
                         "(detail will be missing), or use a larger photo", kind="too-small")
    return (f"{what}, smaller than the model's {res}x{res}: enlarged {res / max(side, 1):.1f}x, so fine detail "
            "will be missing (a larger photo gives a better result)")


def _warn(text: str, warn: Callable[[str], None] | None) -> None:
    if warn is not None:
        warn(text)
    else:
        warnings.warn(text, UserWarning, stacklevel=5)


def _noted(target: Target, text: str | None, warn: Callable[[str], None] | None) -> Target:
    if text is not None:
        target.warnings.append(text)
        _warn(text, warn)
    return target


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1)


def paste_into_photo(target: Target, image: np.ndarray) -> Image.Image:
    """An aligned model output (``uint8 [R, R, C]``) put back into the target's photo (feathered; a
    grey edit keeps the photo's colours). The target must have been loaded with ``align``."""
    if target.face is None or target.photo is None:
        raise ConfigError("paste-back needs an aligned photo (--align): the transform comes from the alignment")
    return paste_back(target.photo, image if image.shape[2] == 3 else image[..., 0], target.face)


# ---- inversion --------------------------------------------------------------------------------------
#: what each job inverts with when asked for "auto": (with an e4e encoder, with a pSp encoder only, with none)
_AUTO = {"edit": ("e4e+opt", "w+", "w+"), "quick": ("restyle-e4e", "restyle-psp", "w+"), "refine": ("e4e+opt", "w+", "w+")}


def choose_method(bundle: ModelBundle, method: str = "auto", *, purpose: str = "edit") -> str:
    """The inversion method for a job.

    ``auto`` gives, for ``purpose="edit"`` (images about to be edited) and ``"refine"``, the hybrid
    ``e4e+opt`` when the model has an e4e encoder (faster than ``w+`` and its codes edit more
    selectively, docs/encoders.md), else ``w+``; for ``"quick"`` (a first code in milliseconds), the
    ReStyle encoder the model has, else ``w+``. Any registered name is returned as it is.
    """
    if method != "auto":
        INVERSION_METHODS.get(method)  # a clear error for an unknown name
        return method
    if purpose not in _AUTO:
        raise ConfigError(f"unknown purpose {purpose!r}; purposes are {', '.join(_AUTO)}")
    kinds = bundle.encoder_kinds
    with_e4e, with_psp, plain = _AUTO[purpose]
    return with_e4e if "e4e" in kinds else with_psp if "psp" in kinds else plain


def invert_targets(bundle: ModelBundle, targets: Sequence[Target] | torch.Tensor, *, method: str = "auto",
                   purpose: str = "edit", perceptual: str | torch.nn.Module = "mobilenet", **kwargs: Any) -> InversionResult:
    """Invert a batch of targets with ``method``; the bundle gives the method's encoder (and D for the
    ``discriminator`` perceptual back-end). ``kwargs`` go to :func:`~latentshop.inversion.run_inversion`
    (``steps``, ``mask``, ``callback``, ``cancel``, ``seed``, ``bf16``...)."""
    method = choose_method(bundle, method, purpose=purpose)
    entry = INVERSION_METHODS.get(method)
    if entry.encoder is not None and kwargs.get("encoder") is None:
        kwargs["encoder"] = bundle.encoder(entry.encoder)
    if perceptual == "discriminator" and kwargs.get("D") is None:
        kwargs["D"] = bundle.discriminator()
    x = targets if isinstance(targets, torch.Tensor) else torch.stack([t.tensor for t in targets])
    return run_inversion(bundle.G, x.to(bundle.device), method=method, perceptual=perceptual, **kwargs)


@dataclass
class Inversion:
    """One photo's inversion: its target and what the method found."""

    target: Target
    result: InversionResult

    @property
    def latent(self) -> Latent:
        return self.result.latent

    def generator(self, bundle: ModelBundle) -> Generator:
        """The generator that renders the latent (a tuned one, or the model's)."""
        return self.result.generator_for(bundle.G)

    def save(self, outdir: str | os.PathLike, bundle: ModelBundle, *, metrics: dict[str, Any] | None = None,
             recon: torch.Tensor | None = None, paste_back: bool = False) -> dict[str, Path]:
        """Write NAME.npz (the latent), NAME.png (the reconstruction), NAME-compare.png (target |
        reconstruction), with an alignment NAME-aligned.png and NAME.align.json, NAME-pasted.png
        with ``paste_back``, and last NAME.json (``metrics``), whose presence marks the photo done."""
        outdir = Path(outdir)
        name = self.target.name
        if recon is None:
            recon = synthesize(self.generator(bundle), self.latent)[0]
        rec8, tgt8 = to_uint8(recon.cpu()[None])[0], self.target.uint8()
        out = {"latent": save_latent(self.latent, outdir / f"{name}.npz", model=bundle.name)}
        save_image(rec8, out.setdefault("reconstruction", outdir / f"{name}.png"))
        save_image(make_grid(np.stack([tgt8, rec8]), cols=2, pad=2), out.setdefault("compare", outdir / f"{name}-compare.png"))
        if self.target.face is not None:
            save_image(tgt8, out.setdefault("aligned", outdir / f"{name}-aligned.png"))
            out["alignment"] = save_alignment(self.target.face, outdir / f"{name}.align.json")
            if paste_back:
                pasted = paste_into_photo(self.target, rec8)
                save_image(np.atleast_3d(np.asarray(pasted)), out.setdefault("pasted", outdir / f"{name}-pasted.png"))
        record = dict(metrics or {}, source=str(self.target.path) if self.target.path else None, model=bundle.name)
        if self.target.face_index is not None:
            record["face"] = self.target.face_index  # rank by size in the photo (all_faces)
        if self.target.warnings:
            record["warnings"] = list(self.target.warnings)
        atomic_write_bytes(out.setdefault("record", outdir / f"{name}.json"), (json.dumps(record, indent=2) + "\n").encode())
        return out


def invert_photo(bundle: ModelBundle, image: str | os.PathLike | Image.Image | np.ndarray | Target, *, align: bool = False,
                 method: str = "auto", purpose: str = "edit", **kwargs: Any) -> Inversion:
    """Load (:func:`load_target`) and invert one photo.

    Example:
        >>> import latentshop
        >>> bundle = latentshop.load_model("synthetic", device="cpu")
        >>> inv = invert_photo(bundle, latentshop.pipeline.render(bundle, seed_latent(bundle, 4))[0], method="e4e")
        >>> inv.latent.space, inv.latent.meta["method"]
        ('w+', 'e4e')
    """
    target = image if isinstance(image, Target) else load_target(bundle, image, align=align)
    result = invert_targets(bundle, [target], method=method, purpose=purpose, **kwargs)
    lat = result.latent
    if target.path is not None:
        lat = lat.replace(meta={**lat.meta, "source": str(target.path)})
    return Inversion(target, InversionResult(lat, result.generator))


def reconstruction_metrics(targets: torch.Tensor, recon: torch.Tensor, latent: Latent, perceptual_net: Any, *,
                           identity: bool = False) -> list[dict[str, Any]]:
    """Per image: PSNR, SSIM, MS-SSIM, the perceptual distance (and dlib identity with ``identity``),
    with the inversion's method, seconds, steps and final losses."""
    from latentshop.metrics.image import ms_ssim, psnr, ssim

    with torch.no_grad():
        values = {
            "psnr": psnr(recon, targets).tolist(),
            "ssim": ssim(recon, targets).tolist(),
            "ms_ssim": ms_ssim(recon, targets).tolist(),
            "perceptual_mobilenet": perceptual_net(recon, targets).tolist(),
        }
    if identity:
        from latentshop.metrics.identity import identity_similarities

        values["identity"] = [float(x) for x in identity_similarities(targets.cpu(), recon.cpu(), aligned=True)]
    out = []
    for i in range(targets.shape[0]):
        m: dict[str, Any] = {k: (None if not np.isfinite(v[i]) else round(float(v[i]), 5)) for k, v in values.items()}
        m.update(method=latent.meta.get("method"), seconds=latent.meta.get("seconds"),
                 steps=latent.meta.get("options", {}).get("steps"), batch=targets.shape[0],
                 losses={k: vals[i] for k, vals in latent.meta.get("losses", {}).items()})
        out.append(m)
    return out


# ---- inputs of the editing jobs ---------------------------------------------------------------------
def seed_latent(bundle: ModelBundle | Generator, seed: int, *, truncation_psi: float = 1.0) -> Latent:
    """The sample of seed ``seed`` (``z`` from ``np.random.RandomState(seed)``, as NVIDIA's
    ``generate.py``); with truncation, its ``w+`` latent. Needs an unconditional model."""
    G = bundle.G if isinstance(bundle, ModelBundle) else bundle
    if G.c_dim:
        raise ConfigError("seed inputs need an unconditional model (this one is conditional: pass a class label)")
    lat = Latent.from_z(G, seed_z(G, [int(seed)]).to(G.mapping.fc0.weight.device), seed=int(seed))
    if truncation_psi != 1.0:
        lat = Latent.from_ws(G, lat.ws(G, truncation_psi=truncation_psi), seed=int(seed), truncation_psi=truncation_psi)
    return lat


@dataclass
class Source:
    """One input of an editing job: its latent, a short name, and for images the target."""

    latent: Latent
    name: str
    kind: str = "latent"  # "latent" | "seed" | "image"
    target: Target | None = None
    generator: Generator | None = None  # a tuned generator that renders the latent (None: the model's)
    text: str = ""  # what was asked for


def resolve_input(bundle: ModelBundle, item: str | os.PathLike | Latent | Target, *, method: str = "auto",
                  steps: int | None = None, align: bool = False, trunc: float = 1.0,
                  callback: Callable[[Any], None] | None = None, warn: Callable[[str], None] | None = None,
                  **kwargs: Any) -> Source:
    """Turn an input into a :class:`Source`.

    ``seed:N`` (or ``N``) maps ``z`` of seed N (truncated by ``trunc``); a ``.npz`` file is a latent
    (refused if made for another model); a :class:`Latent` or :class:`Target` is taken as it is;
    anything else must be an image file, loaded (:func:`load_target`, FFHQ-aligned with ``align``;
    ``warn`` gets its warnings) and inverted with ``method`` (:func:`choose_method`). ``kwargs`` go
    to the inversion (``bf16``, ``seed``, ``cancel``...).
    """
    if isinstance(item, Latent):
        item.check(bundle.G)
        return Source(item, "latent", text="latent")
    if isinstance(item, Target):
        inv = invert_photo(bundle, item, method=method, steps=steps, callback=callback, **kwargs)
        return Source(inv.latent, item.name, "image", item, inv.result.generator, text=item.name)
    text = str(item)
    m = re.fullmatch(r"(?:seed:)?(\d+)", text.strip())
    path = Path(text)
    if m and not path.exists():
        s = int(m.group(1))
        return Source(seed_latent(bundle, s, truncation_psi=trunc), f"seed{s:04d}", "seed", text=text)
    if not path.exists():
        raise ConfigError(f"{text}: no such file; give {SOURCE_HELP}")
    if path.suffix == ".npz":
        lat = load_latent(path, bundle.G)
        if len(lat) != 1:
            raise ConfigError(f"{path}: holds {len(lat)} latents; editing takes one per input (split the batch with the library)")
        return Source(lat, path.name[:-4], text=text)
    _check_image_suffix(path)
    target = load_target(bundle, path, align=align, warn=warn)
    inv = invert_photo(bundle, target, method=method, steps=steps, callback=callback, **kwargs)
    return Source(inv.latent, path.stem, "image", target, inv.result.generator, text=text)


def resolve_inputs(bundle: ModelBundle, item: str | os.PathLike | Latent | Target, *, all_faces: bool = False,
                   align: bool = False, warn: Callable[[str], None] | None = None, **kwargs: Any) -> list[Source]:
    """:func:`resolve_input` for every face of a photo: with ``all_faces`` (and ``align``), an image
    file gives one :class:`Source` per face, largest first, named ``NAME-face1``, ``NAME-face2``, ...
    (:func:`load_targets`), each inverted; any other input (and any input without ``all_faces``)
    gives a list of the one :func:`resolve_input` gives. ``kwargs`` are :func:`resolve_input`'s.

    Example:
        >>> sources = resolve_inputs(bundle, "group.jpg", align=True, all_faces=True)  # doctest: +SKIP
        >>> results = [edit_photo(bundle, src, ["smile=+2"]) for src in sources]  # doctest: +SKIP
    """
    path = Path(str(item)) if isinstance(item, (str, os.PathLike)) else None
    if not all_faces or path is None or not path.is_file() or path.suffix == ".npz":
        return [resolve_input(bundle, item, align=align, warn=warn, **kwargs)]
    _check_image_suffix(path)
    kwargs.pop("trunc", None)  # seeds only
    out = []
    for target in load_targets(bundle, path, align=align, all_faces=True, warn=warn):
        inv = invert_photo(bundle, target, **kwargs)
        out.append(Source(inv.latent, target.name, "image", target, inv.result.generator, text=str(item)))
    return out


def _check_image_suffix(path: Path) -> None:
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ImageError(f"{path}: not a latent (.npz) or an image file ({', '.join(sorted(IMAGE_SUFFIXES))})")


# ---- edits ------------------------------------------------------------------------------------------
def _parse_spec(spec: str | tuple[str, float, str | None]) -> tuple[str, float, str | None]:
    name, strength, layers = parse_edit_spec(spec) if isinstance(spec, str) else spec
    return name, float(strength), layers


def make_edits(bundle: ModelBundle, specs: Sequence[str | tuple[str, float, str | None] | Edit], *,
               keep: Sequence[str] = ()) -> tuple[list[Edit], list[str]]:
    """Edits from ``NAME=STRENGTH[@LAYERS]`` texts (or ``(name, strength, layers)`` or ready edits),
    in order, with ``keep``'s InterFaceGAN attributes held fixed. Returns ``(edits, warnings)``: a
    strength beyond ±:data:`~latentshop.editing.catalog.SANE_STRENGTH` standard deviations warns.

    Raises:
        EditError: an unreadable text, an unknown name (the message lists the model's) or ``keep``.
    """
    bundle.edits.check_names(list(keep), "--keep")
    out, warnings = [], []
    for spec in specs:
        if isinstance(spec, Edit):
            out.append(spec)
            continue
        name, strength, layers = _parse_spec(spec)
        out.append(bundle.edits.make(bundle.G, name, strength, layers=layers, keep=keep))
        if abs(strength) > SANE_STRENGTH:
            warnings.append(f"{name}={strength:g} is beyond ±{SANE_STRENGTH:g} standard deviations; expect artefacts")
    return out, warnings


def render(bundle: ModelBundle, latent: Latent, edits: Sequence[Edit] = (), *, generator: Generator | None = None,
           **kwargs: Any) -> np.ndarray:
    """``latent`` with ``edits`` applied, rendered: ``uint8 [N, R, R, C]`` (``kwargs``: truncation_psi,
    noise_mode, bf16 of :func:`~latentshop.latents.synthesize`; ``generator``: a tuned one)."""
    G = generator if generator is not None else bundle.G
    with torch.no_grad():
        lat = edit(G, latent, list(edits)) if edits else latent
        return to_uint8(synthesize(G, lat, **kwargs))


@dataclass
class Sweep:
    """One edit swept over strengths, on top of the others: a row of frames."""

    name: str
    strengths: list[float]
    layers: str | None
    frames: np.ndarray  # uint8 [K, R, R, C]


@dataclass
class EditResult:
    """An edited input: the latents, the pictures and what to write (:meth:`save`)."""

    model: str
    source: Source
    edits: list[Edit]
    latent: Latent  # the edited latent
    before: np.ndarray  # uint8 [R, R, C]: the input's rendering
    after: np.ndarray  # uint8 [R, R, C]: the edited rendering
    specs: list[dict[str, Any]] = field(default_factory=list)  # the edits as asked: name, strength, layers
    keep: list[str] = field(default_factory=list)
    sweeps: list[Sweep] = field(default_factory=list)
    pasted: Image.Image | None = None  # the edited face back in the photo (paste_back)
    record: dict[str, Any] = field(default_factory=dict)  # extra facts for the JSON record

    @property
    def name(self) -> str:
        return self.source.name

    def save(self, outdir: str | os.PathLike, *, name: str | None = None) -> dict[str, Path]:
        """Write NAME-edited.png, NAME-before-after.png (the target too, for an image), NAME-edited.npz,
        NAME-sweep-EDIT.png per sweep, NAME-edited-pasted.png (with paste-back) and last NAME-edit.json;
        every file atomically. Returns the paths by role."""
        outdir = Path(outdir)
        name = name or self.name
        out: dict[str, Path] = {}
        save_image(self.after, out.setdefault("edited", outdir / f"{name}-edited.png"))
        strip = [self.source.target.uint8()] if self.source.target is not None else []
        save_image(make_grid(np.stack(strip + [self.before, self.after]), cols=len(strip) + 2, pad=2),
                   out.setdefault("before_after", outdir / f"{name}-before-after.png"))
        described = [e.describe() for e in self.edits]
        out["latent"] = save_latent(self.latent.replace(meta={**self.latent.meta, "edits": described}),
                                    outdir / f"{name}-edited.npz", model=self.model)
        for sw in self.sweeps:
            slug = sw.name.replace(":", "_").replace("/", "_")
            save_image(make_grid(sw.frames, cols=len(sw.frames), pad=2), out.setdefault(f"sweep:{sw.name}", outdir / f"{name}-sweep-{slug}.png"))
        if self.pasted is not None:
            save_image(np.atleast_3d(np.asarray(self.pasted)), out.setdefault("pasted", outdir / f"{name}-edited-pasted.png"))
        record = {"input": self.source.text or self.source.name, "model": self.model, "edits": self.specs,
                  "applied": described, "keep": self.keep,
                  "sweeps": [{"name": s.name, "strengths": s.strengths, "layers": s.layers} for s in self.sweeps],
                  **self.record}
        atomic_write_bytes(out.setdefault("record", outdir / f"{name}-edit.json"), (json.dumps(record, indent=2) + "\n").encode())
        return out


def edit_photo(bundle: ModelBundle, image_or_latent: str | os.PathLike | Latent | Target | Source,
               edits: Sequence[str | tuple[str, float, str | None] | Edit], *, method: str = "auto",
               steps: int | None = None, align: bool = False, paste_back: bool = False, keep: Sequence[str] = (),
               sweeps: Sequence[str | tuple[str, Sequence[float], str | None]] = (), trunc: float = 1.0,
               warn: Callable[[str], None] | None = None, **kwargs: Any) -> EditResult:
    """The main job: an input (a photo, a latent, ``seed:N``) edited with named edits, rendered.

    Args:
        bundle: the model (:func:`latentshop.load_model`).
        image_or_latent: what to edit (see :func:`resolve_input`), or a resolved :class:`Source`.
        edits: ``NAME=STRENGTH[@LAYERS]`` texts, ``(name, strength, layers)`` or :class:`~latentshop.editing.Edit`\\ s, applied in order.
        method: inversion method of image inputs (:func:`choose_method`).
        steps: inversion steps (default: the method's).
        align: FFHQ-align image inputs first (needed for ``paste_back``).
        paste_back: also put the edited face back into the photo.
        keep: InterFaceGAN attributes to hold fixed (conditional manipulation).
        sweeps: ``NAME=LOW:HIGH:COUNT[@LAYERS]`` (or ``(name, strengths, layers)``): rows of frames,
            each on top of ``edits``.
        trunc: truncation of seed inputs.
        warn: called with each warning: strengths beyond the trained region (at once, before any work),
            a photo enlarged to the model's size (when it is loaded). They are in the JSON record too.
        **kwargs: for the inversion (``callback``, ``cancel``, ``bf16``, ``seed``...).

    Every face of a photo: ``[edit_photo(bundle, src, edits) for src in resolve_inputs(bundle, photo,
    align=True, all_faces=True)]`` (the sources are named ``NAME-face1``, ``NAME-face2``, ...).

    Raises:
        EditError: an unknown edit, sweep or ``keep`` name (checked before any inversion).
    """
    if paste_back and not align and not (isinstance(image_or_latent, (Target, Source)) and _target_of(image_or_latent)):
        raise ConfigError("--paste-back needs --align (the transform comes from the alignment)")
    edit_list, warnings = make_edits(bundle, edits, keep=keep)
    sweep_specs = [parse_sweep(s) if isinstance(s, str) else (s[0], [float(v) for v in s[1]], s[2]) for s in sweeps]
    for sname, values, layers in sweep_specs:
        bundle.edits.make(bundle.G, sname, 1.0, layers=layers, keep=keep)  # unknown names fail before any work
        if max(abs(v) for v in values) > SANE_STRENGTH:
            warnings.append(f"the sweep of {sname} goes beyond ±{SANE_STRENGTH:g} standard deviations")
    for w in warnings if warn is not None else ():
        warn(w)
    src = image_or_latent if isinstance(image_or_latent, Source) else resolve_input(
        bundle, image_or_latent, method=method, steps=steps, align=align, trunc=trunc, warn=warn, **kwargs)
    G = src.generator if src.generator is not None else bundle.G
    with torch.no_grad():
        after_lat = edit(G, src.latent, edit_list)
    before, after = render(bundle, src.latent, generator=G)[0], render(bundle, after_lat, generator=G)[0]
    rows = []
    for sname, values, layers in sweep_specs:
        frames = [render(bundle, after_lat, [bundle.edits.make(G, sname, v, layers=layers, keep=keep)], generator=G)[0]
                  for v in values]
        rows.append(Sweep(sname, list(values), layers, np.stack(frames)))
    pasted = paste_into_photo(src.target, after) if paste_back and src.target is not None and src.target.face is not None else None
    specs = [{"applied": spec.describe()} if isinstance(spec, Edit)
             else dict(zip(("name", "strength", "layers"), _parse_spec(spec))) for spec in edits]
    record: dict[str, Any] = {}
    if src.target is not None and src.target.face_index is not None:
        record["face"] = src.target.face_index  # rank by size in the photo (--all-faces)
    warnings = (src.target.warnings if src.target is not None else []) + warnings
    if warnings:
        record["warnings"] = warnings
    return EditResult(bundle.name, src, edit_list, after_lat, before, after, specs=specs, keep=list(keep), sweeps=rows,
                      pasted=pasted, record=record)


def _target_of(x: Target | Source) -> bool:
    t = x if isinstance(x, Target) else x.target
    return t is not None and t.face is not None


# ---- measuring a generator ------------------------------------------------------------------------
def parse_metrics(text: str) -> list[str]:
    """``"swd,fid"`` -> ``["swd", "fid"]``, each a registered image-set metric (see ``list_metrics()``).

    Example:
        >>> parse_metrics("swd, fid")
        ['swd', 'fid']
    """
    from latentshop.metrics import list_metrics

    names = list(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [n for n in names if n not in list_metrics()]
    if unknown or not names:
        raise ConfigError(f"--metrics {text!r}: unknown metric(s) {', '.join(unknown) or '(none given)'}; "
                          f"choose from {', '.join(list_metrics())}, comma-separated")
    return names


@torch.no_grad()
def evaluate_generator(
    G: Generator,
    real: torch.utils.data.Dataset,
    *,
    metrics: dict[str, Any],
    n: int,
    seed: int = 0,
    truncation_psi: float = 1.0,
    noise_mode: str = "random",
    batch: int = 32,
    on_progress: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    """Score ``G`` against real images with set metrics (``update(images, which)`` and ``compute()``).

    Args:
        G: the generator; its samples come from seeds ``seed .. seed + n - 1`` (``latentshop generate``'s
            latents); conditional models get classes drawn uniformly at random (seeded).
        real: items ``(uint8 (C, H, W), label)`` at the generator's resolution and channels; ``min(n, len(real))``
            of them, a random subset (seeded) when there are more.
        metrics: name -> metric object, e.g. ``{"swd": SlicedWassersteinDistance(64)}``.
        n: generated images; also the most real images used.
        seed: first latent seed; also seeds the real subset, the classes and random noise.
        truncation_psi: 1 for the model's full distribution (the usual protocol).
        noise_mode: ``"random"`` (NVIDIA's metric protocol; seeded per batch, so the numbers depend on
            ``batch`` too), ``"const"`` or ``"none"``.
        batch: images rendered and scored at a time.
        on_progress: called with ``("real" | "fake", images done in this call)``.

    Returns:
        ``{"metrics": {...all metrics' values...}, "n_real": int, "n_fake": int}``.
    """
    if len(real) == 0:
        raise ConfigError("the real image folder holds no images")
    device = G.mapping.fc0.weight.device
    n_real = min(n, len(real))
    order = list(range(n_real))
    if n_real < len(real):
        order = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))[:n_real].sort().values.tolist()
    for start in range(0, n_real, batch):
        images = torch.stack([torch.as_tensor(real[i][0]) for i in order[start : start + batch]])
        for metric in metrics.values():
            metric.update(images, "real")
        if on_progress:
            on_progress("real", images.shape[0])
    classes = torch.randint(G.c_dim, (n,), generator=torch.Generator().manual_seed(seed)) if G.c_dim else None
    for start in range(0, n, batch):
        count = min(batch, n - start)
        z = seed_z(G, range(seed + start, seed + start + count)).to(device)
        c = None if classes is None else torch.eye(G.c_dim)[classes[start : start + count]].to(device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # leave the caller's RNG be
            torch.manual_seed(seed + start)  # the random noise maps of this batch
            images = G(z, c, truncation_psi=truncation_psi, noise_mode=noise_mode, impl="fast").float().clamp(-1, 1).cpu()
        for metric in metrics.values():
            metric.update(images, "fake")
        if on_progress:
            on_progress("fake", count)
    values: dict[str, float] = {}
    for metric in metrics.values():
        values.update(metric.compute())
    return {"metrics": values, "n_real": n_real, "n_fake": n}


def fid_needs_inception() -> ConfigError:
    from latentshop.metrics.fid import INCEPTION_FILENAME, INCEPTION_URL

    return ConfigError(f"--metrics fid needs NVIDIA's Inception detector: download {INCEPTION_FILENAME} from {INCEPTION_URL} "
                       "yourself (latentshop downloads nothing) and pass --inception PATH, or leave fid out of --metrics")


def build_metrics(names: Sequence[str], *, resolution: int, n: int, seed: int, inception: Optional[Path],
                  verify_inception: bool, device: str | torch.device) -> dict[str, Any]:
    """The metric objects for ``names`` (the Inception file is checked here, before any image is made)."""
    from latentshop.metrics import get_metric

    out: dict[str, Any] = {}
    for name in names:
        if name == "fid":
            if inception is None:
                raise fid_needs_inception()
            out[name] = get_metric("fid")(inception, device=device, verify=verify_inception)
        elif name == "swd":
            out[name] = get_metric("swd")(resolution, num_images_hint=n, seed=seed)
        elif name == "kid-mobilenet":
            out[name] = get_metric(name)(device=device, seed=seed)
        else:  # a metric registered later needs its own wiring here
            raise ConfigError(f"metric {name!r} is registered but `latentshop evaluate` does not know how to set it up")
    return out
