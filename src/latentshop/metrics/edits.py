"""Edit quality: does an edit move its attribute, and nothing else?

An edit is measured from renders at ``-strength`` and ``+strength`` (symmetric differences cancel
the reconstruction's own offset) with an evaluator's scores of both:

- **target change** — mean change of the attribute's score per unit of strength, in units of the
  attribute's range (so 0.1 means a tenth of the range per standard deviation of edit);
- **leakage** — mean absolute change of every *other* attribute per unit of strength, in units of
  their ranges, averaged over them;
- **selectivity** — leakage divided by the target change: how much the rest moves per unit the
  attribute moves (lower is better; the fair comparison between methods with different strength
  units);
- **outside-part change** — mean absolute pixel change (8-bit levels) outside the attribute's part
  mask, per unit of strength and per unit of target change, and its ratio to the change inside the
  part (the part masks come from another network than the scores, so this ratio does not depend
  on the evaluator at all).

For faces without part masks (the ``default`` model's grayscale photos), :func:`landmark_edit_effect`
measures an edit by face geometry instead: from the 68 landmarks of dlib's shape predictor (the
iBUG 300-W layout, taken by argument so that any landmark source can be used), the change of the
mouth's width, opening and corner lift (a smile widens the mouth and lifts its corners), and the
mean displacement of the landmarks away from the mouth (leakage), all in units of the
inter-ocular distance.

Example:
    >>> import torch
    >>> lo, hi = torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    >>> hi[..., :2] = 0.5
    >>> region = torch.zeros(2, 1, 4, 4); region[..., :2] = 1
    >>> m = edit_effect(lo, hi, {"a": torch.zeros(2), "b": torch.zeros(2)}, {"a": torch.ones(2), "b": torch.zeros(2)},
    ...                 target="a", strength=1.0, ranges={"a": 1.0, "b": 1.0}, region=region)
    >>> m["target_change"], m["leakage"], m["outside_change"]
    (0.5, 0.0, 0.0)
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from latentshop.errors import ShapeError

__all__ = ["LANDMARKS_AWAY_FROM_MOUTH", "dilate", "edit_effect", "landmark_edit_effect", "mouth_geometry"]

#: The 68-point landmarks that do not follow the mouth: the jaw line without the chin (6-10, which drops
#: when the mouth opens), the brows (17-26), the nose (27-35) and the eyes (36-47). Mouth: 48-67.
LANDMARKS_AWAY_FROM_MOUTH = (*range(0, 6), *range(11, 48))
_OUTER_EYE_CORNERS = (36, 45)  # the 300-W normalisation: the inter-ocular distance
_MOUTH_CORNERS = (48, 54)
_INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))  # upper / lower inner lip, left to right


def dilate(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grow a ``[N, 1, H, W]`` {0, 1} mask by ``pixels`` (square structuring element)."""
    if pixels <= 0:
        return mask
    return F.max_pool2d(mask.float(), 2 * pixels + 1, stride=1, padding=pixels)


def edit_effect(img_minus: torch.Tensor, img_plus: torch.Tensor, scores_minus: Mapping[str, torch.Tensor],
                scores_plus: Mapping[str, torch.Tensor], *, target: str, strength: float, ranges: Mapping[str, float],
                region: torch.Tensor | None = None) -> dict[str, float]:
    """Measures of one edit applied at ``-strength`` and ``+strength`` to the same images.

    Args:
        img_minus, img_plus: renders ``[N, C, H, W]`` in ``[-1, 1]``.
        scores_minus, scores_plus: evaluator scores ``{attribute: [N]}`` of those renders.
        target: the attribute the edit is meant to change.
        strength: the edit strength used (the difference spans ``2 * strength``).
        ranges: each attribute's range (score units per "whole range").
        region: ``[N, 1, H, W]`` {0, 1}: where the attribute lives (``None``: no pixel measure).

    Returns:
        ``target_change``, ``leakage``, ``selectivity``, ``per_attribute`` (signed changes per unit),
        and with ``region`` ``outside_change`` and ``outside_per_target``.
    """
    span = 2.0 * float(strength)
    per = {k: float((scores_plus[k].double() - scores_minus[k].double()).mean()) / span / ranges[k] for k in scores_plus}
    absper = {k: float((scores_plus[k].double() - scores_minus[k].double()).abs().mean()) / abs(span) / ranges[k]
              for k in scores_plus}
    others = [v for k, v in absper.items() if k != target]
    target_change = per[target]
    leakage = sum(others) / len(others) if others else 0.0
    out: dict[str, float | dict] = {
        "target_change": target_change,
        "leakage": leakage,
        "selectivity": leakage / abs(target_change) if target_change != 0 else math.inf,
        "per_attribute": per,
    }
    if region is not None:
        diff = (img_plus.float() - img_minus.float()).abs().mean(1, keepdim=True) * 127.5  # 8-bit levels
        outside = 1.0 - region.float()
        denom = outside.sum().clamp_min(1.0)
        change = float((diff * outside).sum() / denom) / abs(span)
        out["outside_change"] = change
        out["outside_per_target"] = change / abs(target_change) if target_change != 0 else math.inf
        inside = float((diff * region.float()).sum() / region.float().sum().clamp_min(1.0)) / abs(span)
        out["inside_change"] = inside
        out["outside_to_inside"] = change / inside if inside > 0 else math.inf
        out["region_share"] = float(region.float().mean())
    return out  # type: ignore[return-value]


def _as_landmarks(points: torch.Tensor | np.ndarray, n: int | None = None) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(points), dtype=torch.float64)
    if t.ndim != 3 or t.shape[1:] != (68, 2) or (n is not None and t.shape[0] != n):
        want = f"[{n}, 68, 2]" if n is not None else "[N, 68, 2]"
        raise ShapeError(f"landmarks must be {want} (dlib's 68 points, x and y), got {tuple(t.shape)}")
    return t


def mouth_geometry(points: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor]:
    """Mouth shape from 68-point landmarks, in units of the inter-ocular distance (outer eye corners).

    Args:
        points: ``[N, 68, 2]`` landmarks ``(x, y)`` in pixels, y pointing down (dlib's order).

    Returns:
        ``{name: [N]}`` float64: ``mouth_width`` (corner to corner), ``mouth_opening`` (mean gap
        between the inner lips), ``corner_lift`` (how far the corners sit above the inner lips'
        centre; negative when they droop) and ``interocular`` (in pixels).

    Example:
        >>> pts = torch.zeros(1, 68, 2)
        >>> pts[0, 36], pts[0, 45] = torch.tensor([0., 0.]), torch.tensor([10., 0.])
        >>> pts[0, 48], pts[0, 54] = torch.tensor([1., 18.]), torch.tensor([9., 18.])
        >>> pts[0, 61:64, 1], pts[0, 65:68, 1] = 19., 21.
        >>> g = mouth_geometry(pts)
        >>> round(float(g["mouth_width"][0]), 3), round(float(g["mouth_opening"][0]), 3), round(float(g["corner_lift"][0]), 3)
        (0.8, 0.2, 0.2)
    """
    p = _as_landmarks(points)
    iod = (p[:, _OUTER_EYE_CORNERS[1]] - p[:, _OUTER_EYE_CORNERS[0]]).norm(dim=-1).clamp_min(1e-9)  # [N]
    width = (p[:, _MOUTH_CORNERS[1]] - p[:, _MOUTH_CORNERS[0]]).norm(dim=-1)
    opening = torch.stack([(p[:, b] - p[:, a]).norm(dim=-1) for a, b in _INNER_LIP_PAIRS]).mean(0)
    centre_y = torch.stack([p[:, a, 1] + p[:, b, 1] for a, b in _INNER_LIP_PAIRS]).mean(0) / 2
    corners_y = p[:, list(_MOUTH_CORNERS), 1].mean(1)
    return {"mouth_width": width / iod, "mouth_opening": opening / iod, "corner_lift": (centre_y - corners_y) / iod,
            "interocular": iod}


def landmark_edit_effect(img_minus: torch.Tensor, img_plus: torch.Tensor, *, strength: float,
                         landmarks: Callable[[torch.Tensor], torch.Tensor | np.ndarray]) -> dict[str, float]:
    """Face-geometry measures of one edit applied at ``-strength`` and ``+strength`` to the same faces.

    The landmarks come from a separate model (dlib's shape predictor, say) rather than from the
    evaluator that labels the attributes, so these numbers check that evaluator: a smile edit
    should widen the mouth and lift its corners while the landmarks away from the mouth stay put.
    Faces whose landmarks are not finite (``NaN`` rows) are left out.

    Args:
        img_minus, img_plus: renders ``[N, C, H, W]`` in ``[-1, 1]``.
        strength: the edit strength used (the difference spans ``2 * strength``).
        landmarks: images ``[N, C, H, W]`` -> ``[N, 68, 2]`` landmarks ``(x, y)`` in pixels (e.g. dlib's
            shape predictor on each face, as the benchmarks build it from ``latentshop.data.align``).

    Returns:
        ``mouth_width_change``, ``mouth_opening_change``, ``corner_lift_change`` (signed mean change
        per unit of strength, in inter-ocular distances), ``away_from_mouth_shift`` (mean landmark
        displacement over :data:`LANDMARKS_AWAY_FROM_MOUTH`, per unit of strength, same unit) and
        ``landmark_faces`` (faces measured).

    Example:
        >>> def fake(images):  # eyes 10 px apart, a mouth 5 px wide plus 10 px times the image's mean level
        ...     pts = torch.zeros(len(images), 68, 2, dtype=torch.float64)
        ...     pts[:, 45, 0] = 10.0
        ...     pts[:, 54, 0] = 5 + 10 * images.mean((1, 2, 3)).double()
        ...     return pts
        >>> m = landmark_edit_effect(torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.2), strength=1.0, landmarks=fake)
        >>> round(m["mouth_width_change"], 3), m["away_from_mouth_shift"], m["landmark_faces"]
        (0.1, 0.0, 2)
    """
    if img_minus.shape != img_plus.shape:
        raise ShapeError(f"the two renders must have one shape, got {tuple(img_minus.shape)} and {tuple(img_plus.shape)}")
    n, span = img_minus.shape[0], 2.0 * float(strength)
    lo, hi = _as_landmarks(landmarks(img_minus), n), _as_landmarks(landmarks(img_plus), n)
    ok = torch.isfinite(lo).all((1, 2)) & torch.isfinite(hi).all((1, 2))  # [N]
    if not bool(ok.any()):
        return {"mouth_width_change": math.nan, "mouth_opening_change": math.nan, "corner_lift_change": math.nan,
                "away_from_mouth_shift": math.nan, "landmark_faces": 0}
    lo, hi = lo[ok], hi[ok]
    g_lo, g_hi = mouth_geometry(lo), mouth_geometry(hi)
    iod = (g_lo["interocular"] + g_hi["interocular"]) / 2  # [N]
    away = list(LANDMARKS_AWAY_FROM_MOUTH)
    shift = (hi[:, away] - lo[:, away]).norm(dim=-1).mean(1) / iod  # [N]
    out = {f"{k}_change": float((g_hi[k] - g_lo[k]).mean()) / span for k in ("mouth_width", "mouth_opening", "corner_lift")}
    return {**out, "away_from_mouth_shift": float(shift.mean()) / abs(span), "landmark_faces": int(ok.sum())}
