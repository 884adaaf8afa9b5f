"""The vocabulary of the synthetic faces: their factors of variation and their part names.

The renderer (:mod:`latentshop.data.synthetic`) draws faces from these factors and labels their
parts; the evaluators (:mod:`latentshop.models.evaluators`) predict them. Both use this module,
which, like :mod:`latentshop.errors`, imports nothing else of latentshop's.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

__all__ = ["FACTORS", "PART_NAMES", "PATTERNS", "Factor"]

PART_NAMES: tuple[str, ...] = ("background", "skin", "hair", "eyes", "brows", "mouth", "glasses", "beard", "clothing")
PATTERNS: tuple[str, ...] = ("none", "stripes", "dots", "checks")


@dataclass(frozen=True)
class Factor:
    """One factor of variation of the synthetic faces.

    Args:
        name: the key in factor dicts.
        kind: ``"float"`` (a value in ``[low, high]``), ``"bool"`` or ``"choice"`` (one of ``choices``).
        low: smallest value of a float factor.
        high: largest value of a float factor.
        choices: the values of a choice factor.
        meaning: one line on what the factor does to the image.
    """

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    meaning: str = ""

    def describe(self) -> str:
        """``"[low, high]"``, ``"bool"`` or ``"one of a|b|c"``."""
        if self.kind == "float":
            return f"[{self.low:g}, {self.high:g}]"
        if self.kind == "bool":
            return "bool"
        return "one of " + "|".join(self.choices)


def _float(name: str, low: float, high: float, meaning: str) -> tuple[str, Factor]:
    return name, Factor(name, "float", float(low), float(high), (), meaning)


#: name -> :class:`Factor`, in sampling order. Float factors are sampled uniformly in their range;
#: ``glasses`` is True with probability 0.3; ``beard`` is 0 with probability 0.65, else uniform in
#: ``[0.05, 1]``; ``clothing_pattern`` is uniform over its choices.
FACTORS: Mapping[str, Factor] = MappingProxyType(dict([
    _float("smile", -1, 1, "mouth curvature: -1 frown, 0 neutral, 1 broad open smile"),
    _float("eye_open", 0, 1, "eyelid opening: 0 closed, 1 wide open"),
    _float("eye_size", 0, 1, "eye width: 0 small, 1 large"),
    _float("brow", -1, 1, "brow pose: -1 low, inner ends down (stern), 1 raised and arched (surprised)"),
    _float("face_width", 0, 1, "face and jaw width: 0 narrow, 1 wide"),
    _float("skin_tone", 0, 1, "skin colour: 0 lightest, 1 darkest (luminance decreases monotonically)"),
    _float("hair_colour", 0, 1, "hair, brow and beard colour: 0 black, dark brown, brown, auburn, blonde, 1 platinum"),
    _float("hair_length", 0, 1, "hair length and volume: 0 short cap, 1 long hair down to the shoulders"),
    ("glasses", Factor("glasses", "bool", meaning="dark-framed round glasses over the eyes")),
    _float("beard", 0, 1, "beard: 0 clean-shaven; >0 a beard whose fullness grows from chin beard to full beard"),
    _float("age", 0, 1, "age marks: 0 none, 1 strong forehead lines, crow's feet, under-eye and smile folds"),
    _float("yaw", -1, 1, "head turn: -1 facing image left, 0 frontal, 1 facing image right (about +-26 degrees)"),
    _float("light", -1, 1, "light azimuth: -1 from image left, 0 frontal, 1 from image right"),
    _float("background_hue", 0, 1, "hue of the pastel background colour"),
    _float("clothing_hue", 0, 1, "hue of the clothing colour"),
    ("clothing_pattern", Factor("clothing_pattern", "choice", choices=PATTERNS, meaning="clothing pattern")),
]))
