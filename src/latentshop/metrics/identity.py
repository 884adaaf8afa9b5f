"""Identity similarity of faces with dlib's face-recognition ResNet.

dlib's ``dlib_face_recognition_resnet_model_v1`` (a ResNet-29 trained with a metric loss on about 3
million faces; 99.38 % on the LFW benchmark) maps a face to a 128-number descriptor. Descriptors of one
person lie close together: dlib's rule is that a Euclidean distance below
:data:`SAME_PERSON_DISTANCE` (0.6) means the same person. Here, :func:`identity_similarity` reports the
cosine similarity of two descriptors (1 for the same image) and :func:`identity_distance` the
Euclidean distance. Descriptors are not of unit length (their norm is about 1.4), so the 0.6 distance
threshold is a cosine similarity of roughly 0.9. On the 128 px grayscale lfw-faces test split, two
photos of one person score about 0.95 (distance 0.4-0.5) and photos of two people about 0.84
(distance 0.75-0.85).

For each image: the face is found with :func:`latentshop.faces.detect_faces` (largest face), its
68 landmarks placed by dlib's shape predictor, and ``compute_face_descriptor`` cuts the aligned
150 x 150 chip (padding 0.25) that the network reads. Images smaller than 256 px are first upsampled
(Lanczos) to 256 px, because dlib's detector does not find faces under about 40 px and landmarks are
placed poorly on 64 px crops. Where the detector still finds no face -- often in small FFHQ-aligned
crops such as the ``default`` model's 64 px grayscale samples -- the image is taken to be FFHQ-aligned
and the face box is the place dlib's detector puts it in such crops (:data:`ALIGNED_BOX`); pass
``aligned=True`` to always use that box (steadier for comparing a generated face with its edit) or
``aligned=False`` to raise :class:`~latentshop.faces.NoFaceError` instead.

Grayscale images are repeated into three channels (the network was trained on colour photos; it still
separates people in grayscale, with a somewhat smaller margin).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Union

import numpy as np
import torch
from PIL import Image, ImageOps

from latentshop.errors import ImageError, ShapeError
from latentshop.faces import NoFaceError, detect_faces, face_landmarks, recognizer

__all__ = [
    "ALIGNED_BOX",
    "SAME_PERSON_DISTANCE",
    "face_embedding",
    "face_embeddings",
    "identity_distance",
    "identity_distances",
    "identity_similarity",
    "identity_similarities",
]

SAME_PERSON_DISTANCE = 0.6  # dlib's threshold: descriptors closer than this are the same person
ALIGNED_BOX = (0.20, 0.31, 0.78, 0.88)  # dlib's face box in FFHQ-aligned crops (mean over lfw-faces and faces/), fractions of the side
MIN_SIDE = 256  # smaller images are upsampled to this before detection

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]
ImageBatch = Union[torch.Tensor, np.ndarray, Sequence[ImageLike]]


def _as_pil(image: ImageLike) -> Image.Image:
    """A file (EXIF orientation applied), Pillow image, uint8 array ``(H, W[, 1|3])`` or tensor
    ``(C, H, W)`` / ``(1, C, H, W)`` in ``[-1, 1]`` as a Pillow image."""
    if isinstance(image, (str, os.PathLike)):
        try:
            with Image.open(image) as f:
                return ImageOps.exif_transpose(f).convert("RGB")
        except (OSError, ValueError) as e:
            raise ImageError(f"{image}: cannot read the image ({e})") from None
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, torch.Tensor):
        t = image[0] if image.ndim == 4 and image.shape[0] == 1 else image
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise ImageError(f"expected an image tensor (C, H, W) or (1, C, H, W) with C = 1 or 3, got {tuple(image.shape)}")
        image = (t.detach().float().cpu() * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim in (2, 3):
        return Image.fromarray(np.ascontiguousarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image))
    raise ImageError(f"cannot read an image from {type(image).__name__}; give a path, PIL image, uint8 array or tensor in [-1, 1]")


def _prepare(image: ImageLike) -> np.ndarray:
    """An image as a contiguous uint8 RGB array of at least :data:`MIN_SIDE` px on its shorter side."""
    pil = _as_pil(image)
    w, h = pil.size
    if min(w, h) < MIN_SIDE:
        scale = MIN_SIDE / min(w, h)
        pil = pil.resize((max(MIN_SIDE, round(w * scale)), max(MIN_SIDE, round(h * scale))), Image.Resampling.LANCZOS)
    return np.ascontiguousarray(np.asarray(pil.convert("RGB")))


def face_embedding(image: ImageLike, *, aligned: bool | None = None, num_jitters: int = 0) -> np.ndarray:
    """dlib's 128-number face descriptor of the (largest) face of an image.

    Args:
        image: a path, Pillow image, uint8 array ``(H, W[, C])`` or tensor ``(C, H, W)`` /
            ``(1, C, H, W)`` in ``[-1, 1]``.
        aligned: ``None`` detects the face and falls back to :data:`ALIGNED_BOX` when none is found;
            ``True`` uses :data:`ALIGNED_BOX` without detecting (FFHQ-aligned crops); ``False`` detects
            and raises when there is no face.
        num_jitters: dlib's test-time augmentation (average over this many jittered chips; 0 is off).

    Returns:
        ``(128,)`` float64 descriptor (norm about 1.4).

    Raises:
        NoFaceError: no face was found and ``aligned=False``.

    Example:
        >>> face_embedding(torch.zeros(1, 64, 64)).shape  # doctest: +SKIP
        (128,)
    """
    import dlib

    array = _prepare(image)
    h, w = array.shape[:2]
    faces = detect_faces(array) if aligned is not True else []
    if faces:
        box, lm = faces[0].box, faces[0].landmarks
    elif aligned is False:
        source = str(image) if isinstance(image, (str, os.PathLike)) else "the image"
        raise NoFaceError(source, "for FFHQ-aligned crops pass aligned=True")
    else:
        box = (round(ALIGNED_BOX[0] * w), round(ALIGNED_BOX[1] * h), round(ALIGNED_BOX[2] * w), round(ALIGNED_BOX[3] * h))
        lm = face_landmarks(array, box)
    shape = dlib.full_object_detection(dlib.rectangle(*box), [dlib.point(int(x), int(y)) for x, y in lm])
    descriptor = recognizer().compute_face_descriptor(array, shape, num_jitters)
    return np.array(descriptor, dtype=np.float64)


def _as_list(images: ImageBatch) -> list[ImageLike]:
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ShapeError(f"expected images (N, C, H, W) in [-1, 1] with C = 1 or 3, got {tuple(images.shape)}")
        return list(images)
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[3] not in (1, 3):
            raise ShapeError(f"expected uint8 images (N, H, W, C) with C = 1 or 3, got {images.shape}")
        return list(images)
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images]
    return list(images)


def face_embeddings(images: ImageBatch, *, aligned: bool | None = None, num_jitters: int = 0) -> np.ndarray:
    """:func:`face_embedding` of each image of a batch: ``(N, 128)``.

    Args:
        images: a tensor ``(N, C, H, W)`` in ``[-1, 1]``, a uint8 array ``(N, H, W, C)``, or a sequence
            of anything :func:`face_embedding` takes.
        aligned, num_jitters: as in :func:`face_embedding`.
    """
    items = _as_list(images)
    if not items:
        return np.zeros((0, 128))
    return np.stack([face_embedding(im, aligned=aligned, num_jitters=num_jitters) for im in items])


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)


def identity_similarity(a: ImageLike, b: ImageLike, *, aligned: bool | None = None) -> float:
    """Cosine similarity of the face descriptors of two images, in ``[-1, 1]`` (1: the same face).

    Photos of one person score roughly above 0.9 (dlib's distance threshold 0.6); see the module docstring.

    Example:
        >>> identity_similarity("a.png", "a.png")  # doctest: +SKIP
        1.0
    """
    return float(_cosine(face_embedding(a, aligned=aligned), face_embedding(b, aligned=aligned)))


def identity_distance(a: ImageLike, b: ImageLike, *, aligned: bool | None = None) -> float:
    """Euclidean distance of the face descriptors of two images; below :data:`SAME_PERSON_DISTANCE`
    (0.6) dlib calls them the same person."""
    return float(np.linalg.norm(face_embedding(a, aligned=aligned) - face_embedding(b, aligned=aligned)))


def _pairs(a: ImageBatch, b: ImageBatch, aligned: bool | None) -> tuple[np.ndarray, np.ndarray]:
    ea, eb = face_embeddings(a, aligned=aligned), face_embeddings(b, aligned=aligned)
    if len(ea) != len(eb):
        raise ShapeError(f"the two batches must have the same number of images, got {len(ea)} and {len(eb)}")
    return ea, eb


def identity_similarities(a: ImageBatch, b: ImageBatch, *, aligned: bool | None = None) -> np.ndarray:
    """Cosine similarity of each pair ``(a[i], b[i])``: ``(N,)`` float64.

    Args:
        a, b: batches of the same length (tensors ``(N, C, H, W)`` in ``[-1, 1]``, uint8 arrays
            ``(N, H, W, C)`` or sequences of images), e.g. generated faces and their edits.
        aligned: as in :func:`face_embedding`.
    """
    return _cosine(*_pairs(a, b, aligned))


def identity_distances(a: ImageBatch, b: ImageBatch, *, aligned: bool | None = None) -> np.ndarray:
    """Euclidean descriptor distance of each pair ``(a[i], b[i])``: ``(N,)`` (same person below 0.6)."""
    ea, eb = _pairs(a, b, aligned)
    return np.linalg.norm(ea - eb, axis=-1)
