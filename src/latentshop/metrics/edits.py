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
  mask, per unit of strength and per unit of target change.

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
from typing import Mapping

import torch
import torch.nn.functional as F

__all__ = ["dilate", "edit_effect"]


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
        out["region_share"] = float(region.float().mean())
    return out  # type: ignore[return-value]
