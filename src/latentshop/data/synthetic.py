"""Synthetic faces: a seeded procedural renderer of face-like portraits whose factors are known.

Every image is drawn from 16 named factors (:data:`FACTORS`): smile, eye openness and size, brow
pose, face width, skin tone, hair colour and length, glasses, beard, age marks, head yaw, light
direction, background hue, clothing hue and clothing pattern. The same factors render in three
domains (:data:`DOMAINS`):

* ``"photo"``: smooth Lambert shading from the light direction, subtle skin, hair and fabric texture;
* ``"toon"``: flat colours, two-tone cel shading and dark outlines;
* ``"caricature"``: exaggerated geometry (bigger head and eyes, stronger jaw, amplified smile and
  brows; the factors keep their meaning), soft shading and thin outlines.

Shapes are signed-distance functions (ellipses, rounded boxes, parabola-like curve bands) evaluated
with numpy on pixel-centre coordinates, and painted back to front with a one-pixel coverage ramp,
so edges are antialiased at any resolution from 32 to 256 px. Small features are evaluated only
inside their bounding boxes; there are no per-pixel Python loops.

Besides the image, every render returns a part label map: ``uint8 [H, W]`` whose values index
:data:`PART_NAMES` (``background, skin, hair, eyes, brows, mouth, glasses, beard, clothing``). A
pixel is labelled with the front-most part that covers at least half of it; ears, neck and nose
are ``skin``, iris and pupils are ``eyes``, age marks are ``skin``.

Determinism: the factors are drawn from ``numpy.random.default_rng(seed)`` (PCG64, identical on all
platforms) with a fixed number of draws, and the photo texture from a separate stream of the same
seed, so overriding one factor leaves every other factor and the texture unchanged. Each factor
acts on its own region only: ``smile`` on the mouth, ``hair_colour`` on hair, brows and beard,
``background_hue`` on the background, and so on (the tests check this), which is what edit
metrics need.

Example:
    >>> face = render(0, res=32)
    >>> face.image.shape, face.image.dtype, face.masks.shape
    ((32, 32, 3), dtype('uint8'), (32, 32))
    >>> sorted(face.factors) == sorted(FACTORS)
    True
    >>> smiling = render(0, res=32, factors={"smile": 1.0})
    >>> smiling.factors["smile"], smiling.factors["hair_colour"] == face.factors["hair_colour"]
    (1.0, True)
"""

from __future__ import annotations

import colorsys
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from latentshop.errors import ConfigError
from latentshop.synthetic_factors import FACTORS, PART_NAMES, PATTERNS, Factor
from latentshop.runtime import current_umask

__all__ = [
    "DOMAINS",
    "FACTORS",
    "MAX_RES",
    "MIN_RES",
    "PART_NAMES",
    "PATTERNS",
    "Factor",
    "SyntheticFace",
    "SyntheticFaces",
    "TEST_SEED_START",
    "render",
    "render_batch",
    "sample_factors",
    "validate_factors",
    "write_synthetic_dataset",
]

DOMAINS: tuple[str, ...] = ("photo", "toon", "caricature")
MIN_RES, MAX_RES = 32, 256
LABELS_FORMAT_VERSION = 1

_BG, _SKIN, _HAIR, _EYES, _BROWS, _MOUTH, _GLASSES, _BEARD, _CLOTHING = range(len(PART_NAMES))


_NUM_DRAWS = len(FACTORS) + 1  # one uniform per factor, plus the beard's presence draw


@dataclass(frozen=True, eq=False)
class SyntheticFace:
    """One rendered synthetic face.

    Args:
        image: ``uint8 [res, res, 3]`` RGB image.
        factors: every factor (sampled or overridden) as plain Python ``float``/``bool``/``str``.
        masks: ``uint8 [res, res]`` part label map; values index :data:`PART_NAMES`.
        domain: one of :data:`DOMAINS`.
        seed: the seed it was rendered from.
    """

    image: np.ndarray
    factors: dict[str, Any]
    masks: np.ndarray
    domain: str
    seed: int


# ----------------------------------------------------------------------------------------------
# Arguments and factors


def _check_res(res: Any) -> int:
    if isinstance(res, bool) or not isinstance(res, (int, np.integer)) or not MIN_RES <= res <= MAX_RES:
        raise ConfigError(f"res must be an integer from {MIN_RES} to {MAX_RES}, got {res!r}")
    return int(res)


def _check_domain(domain: Any) -> str:
    if domain not in DOMAINS:
        raise ConfigError(f"unknown domain {domain!r}; choose one of {', '.join(DOMAINS)}")
    return str(domain)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def sample_factors(rng: np.random.Generator) -> dict[str, Any]:
    """Draw every factor from ``rng`` (always the same number of draws, see :data:`FACTORS`).

    Args:
        rng: a numpy Generator; ``numpy.random.default_rng(seed)`` gives the factors of ``render(seed)``.

    Returns:
        ``{name: value}`` for every name in :data:`FACTORS`, as plain Python values.

    Example:
        >>> f = sample_factors(np.random.default_rng(0))
        >>> f == sample_factors(np.random.default_rng(0)), isinstance(f["glasses"], bool)
        (True, True)
    """
    u = rng.random(_NUM_DRAWS)
    out: dict[str, Any] = {}
    for i, (name, fac) in enumerate(FACTORS.items()):
        if fac.kind == "float":
            out[name] = float(fac.low + (fac.high - fac.low) * u[i])
        elif fac.kind == "bool":
            out[name] = bool(u[i] < 0.3)
        else:
            out[name] = fac.choices[min(int(u[i] * len(fac.choices)), len(fac.choices) - 1)]
    out["beard"] = float(0.05 + 0.95 * out["beard"]) if u[-1] < 0.35 else 0.0
    return out


def validate_factors(factors: Mapping[str, Any]) -> dict[str, Any]:
    """Check a (partial) factor dict and return it with plain Python values.

    Raises:
        ConfigError: an unknown name, a value of the wrong type or out of range.

    Example:
        >>> validate_factors({"smile": np.float32(0.5), "glasses": 1})
        {'smile': 0.5, 'glasses': True}
    """
    if not isinstance(factors, Mapping):
        raise ConfigError(f"factors must be a dict of name -> value, got {type(factors).__name__}")
    out: dict[str, Any] = {}
    for name, value in factors.items():
        fac = FACTORS.get(name)
        if fac is None:
            raise ConfigError(f"unknown factor {name!r}; valid factors: {', '.join(FACTORS)}")
        if fac.kind == "float":
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ConfigError(f"factor {name!r} must be a number in {fac.describe()}, got {value!r}")
            v = float(value)
            if not fac.low <= v <= fac.high:  # also rejects NaN
                raise ConfigError(f"factor {name!r} = {v!r} is out of range; expected a number in {fac.describe()}")
            out[name] = v
        elif fac.kind == "bool":
            if value not in (True, False) or isinstance(value, float):
                raise ConfigError(f"factor {name!r} must be a bool (True/False), got {value!r}")
            out[name] = bool(value)
        else:
            if value not in fac.choices:
                raise ConfigError(f"factor {name!r} = {value!r} is not valid; choose one of {', '.join(fac.choices)}")
            out[name] = str(value)
    return out


# ----------------------------------------------------------------------------------------------
# Drawing: a canvas of float RGB plus a label map, painted back to front


_OUTLINE = np.array([0.10, 0.07, 0.07], np.float32)
_SKIN_PALETTE = np.array(
    [[0.98, 0.84, 0.74], [0.92, 0.73, 0.59], [0.78, 0.56, 0.40], [0.56, 0.37, 0.24], [0.34, 0.21, 0.13]], np.float32
)
_HAIR_PALETTE = np.array(
    [[0.06, 0.05, 0.05], [0.22, 0.13, 0.07], [0.42, 0.26, 0.14], [0.62, 0.29, 0.12], [0.82, 0.64, 0.35], [0.94, 0.88, 0.70]],
    np.float32,
)


def _palette(t: float, palette: np.ndarray) -> np.ndarray:
    pos = t * (len(palette) - 1)
    i = min(int(pos), len(palette) - 2)
    return palette[i] + (pos - i) * (palette[i + 1] - palette[i])


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32)


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float | np.ndarray, ry: float) -> np.ndarray:
    """Approximate signed distance to an ellipse (negative inside; exact on the axes)."""
    dx, dy = x - cx, y - cy  # [1, w], [h, 1]
    k0 = np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2)  # [h, w]
    k1 = np.sqrt((dx / (rx * rx)) ** 2 + (dy / (ry * ry)) ** 2) + 1e-6
    return k0 * (k0 - 1.0) / k1


def _box(x: np.ndarray, y: np.ndarray, cx: float, cy: float, hx: float, hy: float, r: float) -> np.ndarray:
    """Signed distance to a box of half sizes ``(hx, hy)`` with corners rounded by ``r``."""
    qx = np.abs(x - cx) - (hx - r)
    qy = np.abs(y - cy) - (hy - r)
    outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0.0) - r


def _curve(x: np.ndarray, xm: float, ym: float, hw: float, slope: float, bend: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The curve ``y = ym + slope*(x-xm) + bend*q^2`` (``q = (x-xm)/hw`` clipped to ``[-1, 1]``).

    Returns ``(q, y_curve, 1/sqrt(1 + y'^2))``, all ``[1, w]``; ``bend > 0`` bends the ends down.
    """
    q = np.clip((x - xm) / hw, -1.0, 1.0)
    yc = ym + slope * (x - xm) * (np.abs(x - xm) <= hw) + slope * hw * q * (np.abs(x - xm) > hw) + bend * q * q
    inv_norm = 1.0 / np.sqrt(1.0 + (slope + 2.0 * bend * q / hw) ** 2)
    return q, yc, inv_norm


def _band(x: np.ndarray, y: np.ndarray, xm: float, ym: float, hw: float, slope: float, bend: float, thick: float, taper: float = 0.0) -> np.ndarray:
    """Signed distance to a curve stroke of half thickness ``thick`` (``thick*(1-taper)`` at the ends)."""
    q, yc, inv_norm = _curve(x, xm, ym, hw, slope, bend)
    dx = np.maximum(np.abs(x - xm) - hw, 0.0)
    dy = (y - yc) * inv_norm
    return np.sqrt(dx * dx + dy * dy) - thick * (1.0 - taper * q * q)


@dataclass(frozen=True)
class _Window:
    rows: slice
    cols: slice
    x: np.ndarray  # [1, w] pixel-centre x in [-1, 1]
    y: np.ndarray  # [h, 1] pixel-centre y in [-1, 1], pointing down


class _Canvas:
    """Float RGB image and label map; shapes are painted back to front with 1-pixel coverage ramps."""

    def __init__(self, res: int, domain: str):
        self.res = res
        self.px = 2.0 / res  # one pixel in normalised units
        self.inv_px = res / 2.0
        self.domain = domain
        self.img = np.zeros((res, res, 3), np.float32)
        self.lab = np.zeros((res, res), np.uint8)
        c = ((np.arange(res, dtype=np.float32) + 0.5) * self.px - 1.0).astype(np.float32)
        self.xs, self.ys = c, c
        self.full = _Window(slice(0, res), slice(0, res), c[None, :], c[:, None])
        outline = {"photo": 0.0, "toon": max(self.px, 0.022), "caricature": max(0.8 * self.px, 0.014)}
        self.outline = outline[domain]

    def window(self, x0: float, x1: float, y0: float, y1: float) -> _Window | None:
        """The pixels whose centres lie within ``[x0, x1] x [y0, y1]`` plus a 1-pixel margin."""
        n = self.res
        c0 = max(int(math.floor((x0 + 1.0) * self.inv_px - 0.5)) - 1, 0)
        c1 = min(int(math.ceil((x1 + 1.0) * self.inv_px - 0.5)) + 2, n)
        r0 = max(int(math.floor((y0 + 1.0) * self.inv_px - 0.5)) - 1, 0)
        r1 = min(int(math.ceil((y1 + 1.0) * self.inv_px - 0.5)) + 2, n)
        if c0 >= c1 or r0 >= r1:
            return None
        return _Window(slice(r0, r1), slice(c0, c1), self.xs[None, c0:c1], self.ys[r0:r1, None])

    def coverage(self, d: np.ndarray) -> np.ndarray:
        return np.clip(0.5 - d * self.inv_px, 0.0, 1.0)

    def paint(
        self,
        w: _Window,
        d: np.ndarray,
        colour: np.ndarray,
        label: int | None,
        *,
        outline: bool = False,
        alpha: float = 1.0,
    ) -> np.ndarray:
        """Paint the shape ``d <= 0`` with ``colour`` (``(3,)`` or ``[h, w, 3]``); returns its coverage.

        With ``outline`` (toon, caricature), a dark inner stroke follows the shape's edge. ``label``
        is written where the coverage is at least 0.5 (``None`` keeps the labels underneath).
        """
        a = self.coverage(d)
        col = colour
        if outline and self.outline > 0:
            inner = self.coverage(d + self.outline)
            t = (inner / np.maximum(a, 1e-6))[..., None]  # share of the covered area that is fill
            col = _OUTLINE + t * (colour - _OUTLINE)
        img = self.img[w.rows, w.cols]
        a3 = (a * alpha)[..., None] if alpha != 1.0 else a[..., None]
        img += a3 * (col - img)
        if label is not None:
            self.lab[w.rows, w.cols][a >= 0.5] = label
        return a


@dataclass(frozen=True)
class _Shading:
    head: np.ndarray  # [H, W] multiplier for the head (skin, hair and features)
    body: np.ndarray  # [1, W] multiplier for the neck and the clothing
    background: np.ndarray  # [H, W] multiplier for the background


def _shading(cv: _Canvas, light: float, cx: float, cy: float, rx: float, ry: float) -> _Shading:
    """Lambert shading of an ellipsoid head and a cylindrical body, lit from azimuth ``light * 65``."""
    az = light * math.radians(65.0)
    lx, ly, lz = math.sin(az), -0.35, math.cos(az)
    norm = math.sqrt(lx * lx + ly * ly + lz * lz)
    lx, ly, lz = lx / norm, ly / norm, lz / norm
    x, y = cv.full.x, cv.full.y
    nx = np.clip((x - cx) / (rx * 1.25), -1.0, 1.0)  # [1, W]
    ny = np.clip((y - cy) / (ry * 1.25), -1.0, 1.0)  # [H, 1]
    nz = np.sqrt(np.maximum(1.0 - nx * nx - ny * ny, 0.0))  # [H, W]
    ndl = nx * lx + ny * ly + nz * lz
    bx = np.clip(x / 0.95, -1.0, 1.0)
    body_ndl = bx * lx + np.sqrt(1.0 - bx * bx) * lz  # [1, W]
    if cv.domain == "toon":
        # two tones with a ~1 pixel ramp; the gradient of n.l is about 1/r
        head = 0.84 + 0.16 * np.clip((ndl - 0.1) * (rx / (2.0 * cv.px)) + 0.5, 0.0, 1.0)
        body = 0.84 + 0.16 * np.clip((body_ndl - 0.1) * (0.95 / (2.0 * cv.px)) + 0.5, 0.0, 1.0)
        background = np.ones((1, 1), np.float32)
    else:
        soft = cv.domain == "caricature"
        amb, dif = (0.62, 0.42) if soft else (0.50, 0.58)
        head = amb + dif * np.maximum(ndl, 0.0)
        body = amb + dif * np.maximum(body_ndl, 0.0)
        background = 1.0 + (0.10 * lx) * x - 0.06 * y - 0.10 * (x * x + y * y) + 0.05
    return _Shading(head.astype(np.float32), body.astype(np.float32), np.asarray(background, np.float32))


def _draw(f: Mapping[str, Any], res: int, domain: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Render factors ``f`` to ``(uint8 [res, res, 3], uint8 [res, res])``."""
    cv = _Canvas(res, domain)
    photo, toon, car = domain == "photo", domain == "toon", domain == "caricature"
    px = cv.px
    full = cv.full
    ex = 1.6 if car else 1.0  # caricature: factor deviations from neutral are exaggerated

    def exaggerate(v: float, centre: float, lo: float, hi: float) -> float:
        return min(max(centre + ex * (v - centre), lo), hi)

    # ---- geometry (normalised coordinates, y down) -------------------------------------------
    scale = 1.14 if car else 1.0
    cx, cy = 0.0, (-0.10 if car else -0.07)
    fw = exaggerate(f["face_width"], 0.5, -0.3, 1.3)
    rx = (0.335 + 0.09 * fw) * scale  # half width of the upper face
    ry = 0.49 * scale
    jaw = (0.80 + 0.16 * (fw - 0.5)) if not car else (0.78 + 0.30 * (fw - 0.5))  # lower-face width ratio
    theta = f["yaw"] * 0.45  # head turn, radians

    def feature_x(phi: float) -> float:
        return cx + rx * 0.97 * math.sin(phi + theta)

    def squash(phi: float) -> float:
        return max(math.cos(phi + theta) / math.cos(phi), 0.3)

    ey = cy - 0.03 * scale
    eye_scale = 1.45 if car else 1.0
    er = (0.066 + 0.036 * exaggerate(f["eye_size"], 0.5, -0.2, 1.2)) * eye_scale  # eye half width
    eh = 0.60 * er  # eye half height when fully open
    eye_phi = 0.56 if not car else 0.62
    nose_y = cy + 0.17 * scale
    my = cy + 0.29 * scale + (0.02 if car else 0.0)
    mx = feature_x(0.0)
    smile = exaggerate(f["smile"], 0.0, -1.6, 1.6)

    skin = _palette(f["skin_tone"], _SKIN_PALETTE)
    hair = _palette(f["hair_colour"], _HAIR_PALETTE)
    if toon:
        skin = np.clip(skin * 1.04, 0, 1)
    shade = _shading(cv, f["light"], cx, cy, rx, ry)

    if photo:
        noise_rng = np.random.default_rng([seed, 0x7E57])
        noise = noise_rng.standard_normal((res, res), dtype=np.float32)  # [H, W]
        strands = noise_rng.standard_normal(4 * res, dtype=np.float32)
        skin_tex = 1.0 + 0.025 * noise
        # strands run from the crown: the texture is a function of the angle around it
        crown = np.arctan2(full.x - cx, full.y - (cy - 0.62 * ry))  # [H, W] in (-pi, pi]
        hair_tex = 1.0 + 0.06 * strands[((crown + np.pi) * (2 * res / np.pi)).astype(np.intp) % (4 * res)] + 0.05 * noise
        cloth_tex = 1.0 + 0.03 * noise
    else:
        skin_tex = hair_tex = cloth_tex = None

    def shaded(colour: np.ndarray, w: _Window, field: np.ndarray, tex: np.ndarray | None = None) -> np.ndarray:
        s = field[w.rows, w.cols] if field.shape[0] > 1 else field[:, w.cols]
        if tex is not None:
            s = s * tex[w.rows, w.cols]
        return colour * s[..., None]

    def head_col(colour: np.ndarray, w: _Window, tex: np.ndarray | None = None) -> np.ndarray:
        return shaded(colour, w, shade.head, tex)

    # ---- background -------------------------------------------------------------------------
    bg = _hsv(f["background_hue"], 0.30 if not toon else 0.40, 0.88)
    bgs = shade.background
    if bgs.size == 1:
        cv.img[:] = bg
    else:
        cv.img[:] = bg * bgs[..., None]
        if photo:
            cv.img *= (1.0 + 0.01 * noise)[..., None]

    # ---- hair behind the head -----------------------------------------------------------------
    hl = f["hair_length"]
    sx_c = cx + 0.04 * rx * math.sin(theta)
    scy = cy - 0.06 * scale
    srx = rx * 1.10 + 0.015 + 0.03 * hl
    sry = ry * 1.03 + 0.02 * hl
    d_skull = _ellipse(full.x, full.y, sx_c, scy, srx, sry)
    d_back = d_skull
    top = 0.64 if not car else 0.72  # top of the shoulders
    y_end = cy - 0.10 + 1.05 * hl * scale
    if y_end > top - 0.06:
        # hair that reaches the shoulders goes on behind them: an edge of the hair that met the
        # clothing's edge would leave an antialiased crack of background between the two
        y_end = max(y_end, top + 0.12)
    if y_end > scy + 0.02:
        bhx = srx * (1.0 + 0.08 * hl)
        d_back = np.minimum(d_skull, _box(full.x, full.y, sx_c, (scy + y_end) / 2, bhx, (y_end - scy) / 2, min(0.12, (y_end - scy) / 2)))
    cv.paint(full, d_back, head_col(hair * 0.85, full, hair_tex), _HAIR, outline=True)

    # ---- neck and clothing ----------------------------------------------------------------------
    body_w = 0.92 if not car else 0.76
    neck_hw = rx * jaw * 0.62
    wn = cv.window(cx - neck_hw, cx + neck_hw, cy + 0.2, 1.0)
    if wn is not None:
        d_neck = _box(wn.x, wn.y, cx, 0.75, neck_hw, 0.75 - (cy + 0.2 * scale), 0.02)
        cv.paint(wn, d_neck, shaded(skin * 0.86, wn, shade.body, skin_tex), _SKIN, outline=True)
    wc = cv.window(-1.0, 1.0, top - 0.05, 1.0)
    if wc is not None:
        d_body = _box(wc.x, wc.y, cx, top + 0.5, body_w, 0.5, 0.32)
        d_collar = _ellipse(wc.x, wc.y, cx, top - 0.01, neck_hw * 0.92, 0.10)  # narrower than the neck: no background shows
        d_cloth = np.maximum(d_body, -d_collar)
        base = _hsv(f["clothing_hue"], 0.62, 0.62)
        alt = _hsv(f["clothing_hue"], 0.30, 0.92)
        pattern = f["clothing_pattern"]
        colour: np.ndarray = np.broadcast_to(base, (d_cloth.shape[0], d_cloth.shape[1], 3))
        if pattern != "none":
            period = 0.18
            u = wc.x / period
            v = (wc.y - top) / period

            def stripes(t: np.ndarray) -> np.ndarray:  # coverage of stripes half a period wide
                return cv.coverage((np.abs(t - np.floor(t) - 0.5) - 0.25) * period)

            if pattern == "stripes":
                m = np.broadcast_to(stripes(v), d_cloth.shape)
            elif pattern == "checks":
                a, b = stripes(u), stripes(v)
                m = a + b - 2.0 * a * b
            else:
                du = (u - np.floor(u) - 0.5) * period
                dv = (v - np.floor(v) - 0.5) * period
                m = cv.coverage(np.sqrt(du * du + dv * dv) - 0.045)
            colour = base + m[..., None] * (alt - base)
        colour = shaded(colour, wc, shade.body, cloth_tex)
        cv.paint(wc, d_cloth, colour, _CLOTHING, outline=True)

    # ---- ears and face ------------------------------------------------------------------------
    for side in (-1.0, 1.0):
        ew = 0.055 * scale * min(max(1.0 - 1.1 * side * f["yaw"], 0.15), 1.6)
        ecx = cx + side * (rx * 0.97)
        w = cv.window(ecx - ew, ecx + ew, ey - 0.1, ey + 0.14)
        if w is not None:
            cv.paint(w, _ellipse(w.x, w.y, ecx, ey + 0.02, ew, 0.10 * scale), head_col(skin * 0.95, w, skin_tex), _SKIN, outline=True)

    # the face: an egg, wide at the cheekbones and narrower at the jaw
    t = np.clip((full.y - (cy - 0.2 * ry)) / (1.0 * ry), 0.0, 1.0)  # [H, 1]
    frx = rx * (1.0 + (jaw - 1.0) * t * t * (3.0 - 2.0 * t))
    d_face = _ellipse(full.x, full.y, cx, cy, frx, ry)  # [H, W]; the half width varies with y
    cv.paint(full, d_face, head_col(skin, full, skin_tex), _SKIN, outline=True)

    # ---- age marks (skin, painted with partial alpha) -----------------------------------------
    age = f["age"]
    mark = skin * 0.62
    mark_t = max(0.006, 0.32 * px)
    eye_xs = [feature_x(-eye_phi), feature_x(eye_phi)]
    eye_sq = [squash(-eye_phi), squash(eye_phi)]
    if age > 0.0:
        strength = min(1.0, 0.35 + 0.65 * age) * (0.55 if photo else 0.8)
        lines = []
        for i in range(3):  # forehead lines appear one by one as age grows
            if age > 0.12 + 0.28 * i:
                lines.append((mx, cy - 0.36 * ry + 0.05 * i, rx * 0.42, 0.0, -0.012))
        for side, ex_, sq in zip((-1.0, 1.0), eye_xs, eye_sq):
            outer = ex_ + side * er * sq * 1.05
            lines.append((outer + side * 0.03, ey - 0.012, 0.025, side * -0.45, 0.0))  # crow's feet
            lines.append((outer + side * 0.03, ey + 0.018, 0.025, side * 0.45, 0.0))
            lines.append((ex_, ey + eh + 0.035, er * sq * 0.7, 0.0, -0.012))  # under-eye folds
            lines.append((mx + side * 0.10, (nose_y + my) / 2 + 0.005, 0.04, side * 0.9, 0.0))  # smile folds
        for lx, ly, lhw, lslope, lbend in lines:
            reach = lhw * (1 + abs(lslope)) + 0.03
            w = cv.window(lx - reach, lx + reach, ly - reach, ly + reach)
            if w is not None:
                d = _band(w.x, w.y, lx, ly, lhw, lslope, lbend, mark_t, taper=0.6)
                cv.paint(w, d, head_col(mark, w), None, alpha=strength * min(1.0, age * 2.5))

    # ---- nose ------------------------------------------------------------------------------------
    nx_ = feature_x(0.0)
    w = cv.window(nx_ - 0.08, nx_ + 0.08, ey, nose_y + 0.05)
    if w is not None:
        nose_col = head_col(skin * 0.70, w)
        nt = max(0.008, 0.45 * px)
        d = _band(w.x, w.y, nx_, nose_y, 0.035 * scale, 0.0, -0.018, nt, taper=0.5)
        cv.paint(w, d, nose_col, None, alpha=0.85 if photo else 1.0)
        side = 1.0 if f["light"] < 0 else -1.0  # the bridge's shadow is on the side away from the light
        bx = nx_ + side * 0.022 + 0.03 * math.sin(theta)
        d = _box(w.x, w.y, bx, nose_y - 0.07, nt * 0.8, 0.07, nt * 0.8)
        cv.paint(w, d, nose_col, None, alpha=0.35 if photo else 0.0)

    # ---- beard -----------------------------------------------------------------------------------
    beard = f["beard"]
    beard_col = hair * 0.82
    if beard > 0.0:
        fb = 0.3 + 0.7 * beard
        wb = cv.window(cx - rx * 1.05, cx + rx * 1.05, ey, cy + ry + 0.08)
        if wb is not None:
            q = (wb.x - cx) / rx
            yb = np.maximum(my + 0.065 - 0.13 * fb - 0.30 * fb * q * q, ey + 0.07)  # [1, w]
            d_face_w = d_face[wb.rows, wb.cols]
            d = np.maximum(d_face_w + 0.012 * fb, (yb - wb.y) / np.sqrt(1.0 + (0.6 * fb * q / rx) ** 2))
            chin = _ellipse(wb.x, wb.y, cx, cy + ry - 0.01, rx * jaw * 0.55 * fb, 0.035 + 0.05 * fb)
            d = np.minimum(d, chin)
            cv.paint(wb, d, head_col(beard_col, wb, hair_tex), _BEARD)

    # ---- mouth --------------------------------------------------------------------------------
    mhw = (0.105 + 0.025 * max(smile, 0.0)) * scale * squash(0.0)
    bend = -0.045 * smile * scale  # corners up when smiling
    lip_t = max(0.015, 0.55 * px)
    opening = 0.09 * scale * max(smile - 0.25, 0.0) / 0.75
    wm = cv.window(mx - mhw - 0.03, mx + mhw + 0.03, my - 0.1, my + 0.12 + opening)
    if wm is not None:
        q, yc, inv = _curve(wm.x, mx, my, mhw, 0.0, bend)
        yl = yc + opening * (1.0 - q * q)
        d_end = np.abs(wm.x - mx) - mhw
        d_lips = np.maximum(np.maximum((yc - lip_t - wm.y) * inv, (wm.y - yl - 1.35 * lip_t) * inv), d_end)
        d_lips = np.maximum(d_lips, np.minimum(d_end + lip_t, -1.0))  # keep the end caps round-ish
        d_lips = np.minimum(d_lips, np.sqrt(np.maximum(d_end, 0) ** 2 + ((wm.y - yc) * inv) ** 2) - 0.6 * lip_t)
        lips = skin + 0.55 * (np.array([0.74, 0.28, 0.30], np.float32) - skin)
        cv.paint(wm, d_lips, head_col(lips, wm), _MOUTH, outline=True)
        if opening > 0:
            d_in = np.maximum(np.maximum((yc + 0.3 * lip_t - wm.y) * inv, (wm.y - yl + 0.2 * lip_t) * inv), d_end + 0.6 * lip_t)
            cv.paint(wm, d_in, head_col(np.array([0.30, 0.06, 0.08], np.float32), wm), None)
            d_teeth = np.maximum(d_in, (wm.y - (yc + 0.3 * lip_t + 0.45 * opening)) * inv)
            cv.paint(wm, d_teeth, head_col(np.array([0.97, 0.95, 0.90], np.float32), wm), None)
        else:
            d_line = _band(wm.x, wm.y, mx, my, mhw, 0.0, bend, max(0.005, 0.3 * px), taper=0.4)
            cv.paint(wm, d_line, lips * 0.45, None, alpha=0.9)

    # ---- eyes ------------------------------------------------------------------------------
    eo = f["eye_open"]
    ry_eye = eh * (0.06 + 0.94 * eo)
    for ex_, sq in zip(eye_xs, eye_sq):
        erx = er * sq
        we = cv.window(ex_ - erx - 0.02, ex_ + erx + 0.02, ey - eh - 0.02, ey + eh + 0.02)
        if we is not None:
            d_eye = _ellipse(we.x, we.y, ex_, ey, erx, ry_eye)
            if eo > 0.0:
                cv.paint(we, d_eye, head_col(np.array([0.96, 0.95, 0.92], np.float32), we), _EYES)
                ix = ex_ + 0.25 * erx * math.sin(theta)
                ri = 0.62 * eh
                iris = np.array([0.25, 0.35, 0.55] if toon else [0.30, 0.20, 0.12], np.float32)
                cv.paint(we, np.maximum(_ellipse(we.x, we.y, ix, ey, ri * sq, ri), d_eye), head_col(iris, we), None)
                cv.paint(we, np.maximum(_ellipse(we.x, we.y, ix, ey, 0.5 * ri * sq, 0.5 * ri), d_eye), _OUTLINE * 0.5, None)
                hl_r = max(0.12 * ri, 0.35 * px)
                cv.paint(we, np.maximum(_ellipse(we.x, we.y, ix - 0.3 * ri, ey - 0.3 * ri, hl_r, hl_r), d_eye), np.ones(3, np.float32), None, alpha=0.9)
            # the upper lid and lashes: a dark stroke along the top of the eye
            lid_t = max(0.008, 0.4 * px) * (1.6 if not photo else 1.0)
            d_lid = np.maximum(np.abs(d_eye) - lid_t, (we.y - ey) * 1.0 - 0.2 * ry_eye)
            cv.paint(we, d_lid, _OUTLINE * 0.8 + 0.1, None)

    # ---- glasses --------------------------------------------------------------------------------
    if f["glasses"]:
        ft = max(0.011, 0.55 * px) * (1.3 if toon else 1.0)
        lr = eh * 1.05 + 0.045 * eye_scale
        for ex_, sq in zip(eye_xs, eye_sq):
            wg = cv.window(ex_ - lr - 0.02, ex_ + lr + 0.02, ey - lr - 0.02, ey + lr + 0.02)
            if wg is None:
                continue
            d_lens = _ellipse(wg.x, wg.y, ex_, ey + 0.005, lr * max(sq, 0.5) * 1.1, lr * 0.9)
            if not toon:
                cv.paint(wg, d_lens, np.array([0.85, 0.92, 1.0], np.float32), None, alpha=0.18)
            cv.paint(wg, np.abs(d_lens) - ft, _OUTLINE + 0.02, _GLASSES)
        left, right = eye_xs
        lrx_l = lr * max(eye_sq[0], 0.5) * 1.1
        lrx_r = lr * max(eye_sq[1], 0.5) * 1.1
        b0, b1 = left + lrx_l, right - lrx_r
        if b1 > b0:
            wg = cv.window(b0 - 0.02, b1 + 0.02, ey - 0.06, ey + 0.04)
            if wg is not None:
                d = _band(wg.x, wg.y, (b0 + b1) / 2, ey - 0.02, (b1 - b0) / 2 + ft, 0.0, 0.012, ft)
                cv.paint(wg, d, _OUTLINE + 0.02, _GLASSES)
        for edge, ear in ((left - lrx_l, cx - rx * 0.98), (right + lrx_r, cx + rx * 0.98)):
            lo, hi = min(edge, ear), max(edge, ear)
            if hi - lo > 0.01:
                wg = cv.window(lo - 0.02, hi + 0.02, ey - 0.05, ey + 0.02)
                if wg is not None:
                    d = _band(wg.x, wg.y, (lo + hi) / 2, ey - 0.02, (hi - lo) / 2, 0.0, 0.0, ft * 0.9)
                    cv.paint(wg, d, _OUTLINE + 0.02, _GLASSES)

    # ---- brows (over the glasses' frames, under the fringe) -----------------------------------
    brow = exaggerate(f["brow"], 0.0, -1.6, 1.6)
    brow_t = max(0.017, 0.55 * px) * (1.2 if car else 1.0)
    for side, ex_, sq in zip((-1.0, 1.0), eye_xs, eye_sq):
        erx = er * sq
        # the inner end is the one towards the nose
        inner = ex_ - side * erx * 0.55
        outer = ex_ + side * erx * 1.15
        bxm = (inner + outer) / 2
        bhw = abs(outer - inner) / 2
        by = ey - eh - 0.055 * scale - 0.04 * brow * scale
        slope = side * 0.32 * min(brow, 0.0)  # stern brows: inner ends down
        arch = (0.012 + 0.02 * max(brow, 0.0)) * scale  # ends lower than the middle
        wbw = cv.window(bxm - bhw - 0.03, bxm + bhw + 0.03, by - 0.08, by + 0.08)
        if wbw is not None:
            d = _band(wbw.x, wbw.y, bxm, by, bhw, slope, arch, brow_t, taper=0.55)
            cv.paint(wbw, d, head_col(hair * 0.8 + 0.02, wbw, hair_tex), _BROWS)

    # ---- hair over the forehead ---------------------------------------------------------------
    part = cx + rx * 0.3 + 0.25 * rx * math.sin(theta)
    hair_top = cy - ry * (0.60 - 0.16 * hl)
    q = (full.x - part) / rx  # [1, W]
    hline = hair_top + ry * (0.30 + 0.12 * hl) * q * q
    slope = ry * 2.0 * (0.30 + 0.12 * hl) * q / rx
    d_fringe = np.maximum(d_skull, (full.y - hline) / np.sqrt(1.0 + slope * slope))
    cv.paint(full, d_fringe, head_col(hair, full, hair_tex), _HAIR, outline=True)

    image = (np.clip(cv.img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return image, cv.lab


# ----------------------------------------------------------------------------------------------
# Public entry points


def render(seed: int, *, res: int = 64, domain: str = "photo", factors: Mapping[str, Any] | None = None) -> SyntheticFace:
    """Render the synthetic face of ``seed``.

    Args:
        seed: non-negative integer; fixes every factor not in ``factors`` and the photo texture.
        res: image size in pixels, 32 to 256.
        domain: one of :data:`DOMAINS` (``"photo"``, ``"toon"``, ``"caricature"``).
        factors: overrides for some or all factors (see :data:`FACTORS`); the others are sampled
            from ``seed`` exactly as without overrides.

    Returns:
        A :class:`SyntheticFace`: ``image`` ``uint8 [res, res, 3]``, ``factors`` (all of them),
        ``masks`` ``uint8 [res, res]`` indexing :data:`PART_NAMES`, ``domain`` and ``seed``.

    Raises:
        ConfigError: an unknown domain or factor, a value out of range, or ``res`` outside 32-256.

    Example:
        >>> a = render(3, res=32, factors={"glasses": True})
        >>> bool((a.masks == PART_NAMES.index("glasses")).any())
        True
    """
    seed = _check_seed(seed)
    res = _check_res(res)
    domain = _check_domain(domain)
    f = sample_factors(np.random.default_rng(seed))
    if factors:
        f.update(validate_factors(factors))
    elif factors is not None and not isinstance(factors, Mapping):
        raise ConfigError(f"factors must be a dict of name -> value or None, got {type(factors).__name__}")
    image, masks = _draw(f, res, domain, seed)
    return SyntheticFace(image=image, factors=f, masks=masks, domain=domain, seed=seed)


def _render_chunk(args: tuple[list[int], int, str, list[Mapping[str, Any] | None]]) -> list[tuple[np.ndarray, dict, np.ndarray]]:
    seeds, res, domain, overrides = args
    out = []
    for s, o in zip(seeds, overrides):
        face = render(s, res=res, domain=domain, factors=o)
        out.append((face.image, face.factors, face.masks))
    return out


def render_batch(
    seeds: Sequence[int],
    *,
    res: int = 64,
    domain: str = "photo",
    factors: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
    workers: int = 0,
) -> tuple[np.ndarray, list[dict[str, Any]], np.ndarray]:
    """Render many seeds; the same as :func:`render` per seed, stacked.

    Args:
        seeds: the seeds, ``N`` of them.
        res: image size, 32 to 256.
        domain: one of :data:`DOMAINS`.
        factors: overrides applied to every seed (a dict), one dict (or None) per seed, or None.
        workers: 0 renders in this process; ``k > 0`` uses ``k`` worker processes.

    Returns:
        ``(images uint8 [N, res, res, 3], factors list of N dicts, masks uint8 [N, res, res])``.

    Example:
        >>> images, factors, masks = render_batch([0, 1], res=32)
        >>> images.shape, len(factors), masks.shape
        ((2, 32, 32, 3), 2, (2, 32, 32))
    """
    res = _check_res(res)
    domain = _check_domain(domain)
    seeds = [_check_seed(s) for s in seeds]
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"workers must be a non-negative integer, got {workers!r}")
    if factors is None or isinstance(factors, Mapping):
        overrides: list[Mapping[str, Any] | None] = [validate_factors(factors) if factors else None] * len(seeds)
    else:
        overrides = list(factors)
        if len(overrides) != len(seeds):
            raise ConfigError(f"factors has {len(overrides)} entries but there are {len(seeds)} seeds; give one per seed or a single dict")
        overrides = [validate_factors(o) if o else None for o in overrides]
    if workers == 0 or len(seeds) < 2:
        parts = [_render_chunk((seeds, res, domain, overrides))]
    else:
        n_chunks = min(len(seeds), 4 * workers)
        bounds = np.linspace(0, len(seeds), n_chunks + 1).astype(int)
        chunks = [(seeds[a:b], res, domain, overrides[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_render_chunk, chunks))
    rows = [r for part in parts for r in part]
    images = np.zeros((len(rows), res, res, 3), np.uint8)
    masks = np.zeros((len(rows), res, res), np.uint8)
    for i, (img, _, m) in enumerate(rows):
        images[i], masks[i] = img, m
    return images, [r[1] for r in rows], masks


def _labels_header(n: int, res: int, domain: str, start_seed: int) -> dict[str, Any]:
    return {"format_version": LABELS_FORMAT_VERSION, "domain": domain, "res": res, "n": n, "start_seed": start_seed}


def write_synthetic_dataset(
    out_dir: str | os.PathLike,
    *,
    n: int,
    res: int = 64,
    domain: str = "photo",
    start_seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write ``n`` rendered faces as an image folder with a ``labels.json``, atomically.

    The folder holds ``img{seed:06d}.png`` for seeds ``start_seed .. start_seed + n - 1`` and
    ``labels.json``::

        {"format_version": 1, "domain": ..., "res": ..., "n": ..., "start_seed": ...,
         "part_names": [...], "factors": {"img000000.png": {factor: value, ...}, ...}}

    Everything is written into a temporary sibling folder that is renamed to ``out_dir`` at the
    end, so ``out_dir`` is either absent or complete. Re-running over a complete folder written
    with the same ``n``, ``res``, ``domain`` and ``start_seed`` does no work and returns at once; any
    other existing ``out_dir`` (different settings, or not written by this function) is refused.
    Part masks are not written: re-render them with :func:`render` from the seed in the name.

    Args:
        out_dir: the folder to create.
        n: number of images (at least 1).
        res: image size, 32 to 256.
        domain: one of :data:`DOMAINS`.
        start_seed: seed of the first image.
        progress: print progress to stderr.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: bad arguments, or ``out_dir`` exists and is not this dataset.
    """
    out_dir = Path(out_dir)
    res = _check_res(res)
    domain = _check_domain(domain)
    start_seed = _check_seed(start_seed)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    n = int(n)
    header = _labels_header(n, res, domain, start_seed)
    if out_dir.exists():
        labels = out_dir / "labels.json"
        try:
            existing = json.loads(labels.read_text())
            same = all(existing.get(k) == v for k, v in header.items())
        except (OSError, ValueError):
            same = False
        if same and all((out_dir / f"img{start_seed + i:06d}.png").is_file() for i in range(n)):
            if progress:
                print(f"{out_dir} already holds this dataset ({n} images); nothing to do", file=sys.stderr)
            return out_dir
        raise ConfigError(
            f"{out_dir} already exists and is not the requested dataset (n={n}, res={res}, domain={domain!r}, "
            f"start_seed={start_seed}); choose another folder or delete it"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        all_factors: dict[str, dict[str, Any]] = {}
        t0 = last = time.monotonic()
        for i in range(n):
            seed = start_seed + i
            face = render(seed, res=res, domain=domain)
            name = f"img{seed:06d}.png"
            Image.fromarray(face.image).save(tmp / name, format="PNG")
            all_factors[name] = face.factors
            now = time.monotonic()
            if progress and (now - last > 1.0 or i == n - 1):
                last = now
                print(f"\rwrote {i + 1}/{n} images ({(i + 1) / max(now - t0, 1e-9):.0f}/s)", end="", file=sys.stderr)
        if progress:
            print(file=sys.stderr)
        labels = {**header, "part_names": list(PART_NAMES), "factors": all_factors}
        (tmp / "labels.json").write_text(json.dumps(labels, indent=1) + "\n")
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700 folders
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir




TEST_SEED_START = 1_000_000  # seeds from here on are held out: training sets never use them


class SyntheticFaces(torch.utils.data.Dataset):
    """Synthetic faces rendered on the fly, as a training/evaluation dataset.

    Item ``i`` is ``render(start_seed + i)`` (mirrored for the second half when ``xflip``), as
    ``(uint8 [C, res, res], empty label [0])``. The ``train`` split uses seeds from 0, the ``test``
    split seeds from :data:`TEST_SEED_START`, so held-out images are never trained on.

    Args:
        domain: ``"photo"``, ``"toon"`` or ``"caricature"``.
        res: resolution (32-256).
        channels: 3, or 1 for luma.
        n: number of distinct faces.
        split: ``"train"`` or ``"test"``.
        xflip: add mirrored copies (doubles the length).

    Example:
        >>> ds = SyntheticFaces(res=32, n=4)
        >>> ds[0][0].shape, len(ds)
        (torch.Size([3, 32, 32]), 4)
    """

    def __init__(self, *, domain: str = "photo", res: int = 64, channels: int = 3, n: int = 100_000,
                 split: str = "train", xflip: bool = False):
        self.domain = _check_domain(domain)
        self.resolution = _check_res(res)
        if channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {channels}")
        if split not in ("train", "test"):
            raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
        if n < 1 or n > TEST_SEED_START:
            raise ConfigError(f"n must be in 1..{TEST_SEED_START}, got {n}")
        self.num_channels = channels
        self.n = n
        self.start_seed = 0 if split == "train" else TEST_SEED_START
        self.xflip = xflip
        self.c_dim = 0

    def __len__(self) -> int:
        return self.n * (2 if self.xflip else 1)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        face = render(self.start_seed + index % self.n, res=self.resolution, domain=self.domain)
        img = face.image
        if self.num_channels == 1:
            img = np.round(img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))[..., None].astype(np.uint8)
        if index >= self.n:
            img = img[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))), torch.zeros([0])
