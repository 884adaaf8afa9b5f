"""The edits a model offers by name, and the ``NAME=STRENGTH[@LAYERS]`` text that asks for one.

A model's edit files live beside it: ``<model folder>/edits/*.npz`` for latentshop folders (the
bundled models ship theirs there), ``<file>.edits/*.npz`` beside a ``.pkl`` or ``.pt``; more can
be given explicitly. :func:`latentshop.checkpoints.load_model` reads them into the bundle's
:class:`~latentshop.registry.EditCatalog` (``bundle.edits``), which asks each registered edit family's
sets for a name. The names the shipped families give:

- InterFaceGAN attributes by their own name (``smile``, ``age``, ``glasses``...), plus aliases;
- ``ganspace:K`` and ``sefa:K`` components;
- ``stylespace:ATTRIBUTE`` — the best StyleSpace channel found for that attribute
  (``stylespace:ATTRIBUTE:RANK`` the others), signed so that positive raises the attribute;
- ``s:LAYER:CHANNEL`` — any single style channel (``s:b16.conv1:45``), in its standard deviations.

Example:
    >>> parse_edit_spec("smile=+2")
    ('smile', 2.0, None)
    >>> parse_edit_spec("ganspace:0=-1.5@coarse")
    ('ganspace:0', -1.5, 'coarse')
"""

from __future__ import annotations

import re

import torch

from latentshop.errors import EditError
from latentshop.registry import EditCatalog

__all__ = ["EditCatalog", "SANE_STRENGTH", "parse_edit_spec", "parse_sweep"]

#: Strengths (in standard deviations) beyond this leave the region the generator was trained on.
SANE_STRENGTH = 5.0


def parse_edit_spec(text: str) -> tuple[str, float, str | None]:
    """``"NAME=STRENGTH[@LAYERS]"`` -> ``(name, strength, layers or None)``."""
    m = re.fullmatch(r"\s*([^=@\s]+)\s*=\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*(?:@\s*(\S+))?\s*", text)
    if not m:
        raise EditError(f"cannot read the edit {text!r}: write NAME=STRENGTH, e.g. smile=+2, age=-1.5 or ganspace:0=3@coarse")
    return m.group(1), float(m.group(2)), m.group(3)


def parse_sweep(text: str) -> tuple[str, list[float], str | None]:
    """``"NAME=LOW:HIGH:COUNT[@LAYERS]"`` -> ``(name, strengths, layers)``.

    Example:
        >>> parse_sweep("smile=-3:3:7")
        ('smile', [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0], None)
    """
    num = r"[-+]?[0-9]*\.?[0-9]+"
    m = re.fullmatch(rf"\s*([^=@\s]+)\s*=\s*({num}):({num}):(\d+)\s*(?:@\s*(\S+))?\s*", text)
    if not m or int(m.group(4)) < 2:
        raise EditError(f"cannot read the sweep {text!r}: write NAME=LOW:HIGH:COUNT with COUNT >= 2, e.g. smile=-3:3:7")
    low, high, count = float(m.group(2)), float(m.group(3)), int(m.group(4))
    return m.group(1), [round(float(x), 6) for x in torch.linspace(low, high, count).tolist()], m.group(5)
