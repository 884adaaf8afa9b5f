"""The edits a model offers by name, and the ``NAME=STRENGTH[@LAYERS]`` text that asks for one.

A model's edit files live beside it: ``<model folder>/edits/*.npz`` for latentshop folders (the
bundled models ship theirs there), ``<file>.edits/*.npz`` beside a ``.pkl`` or ``.pt``; more can
be given explicitly. Names:

- InterFaceGAN attributes by their own name (``smile``, ``age``, ``glasses``...), plus aliases;
- ``ganspace:K`` and ``sefa:K`` components;
- ``stylespace:ATTRIBUTE`` — the best StyleSpace channel found for that attribute;
- ``s:LAYER:CHANNEL`` — any single style channel (``s:b16.conv1:45``), in its standard deviations.

Example:
    >>> parse_edit_spec("smile=+2")
    ('smile', 2.0, None)
    >>> parse_edit_spec("ganspace:0=-1.5@coarse")
    ('ganspace:0', -1.5, 'coarse')
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from latentshop.editing.directions import DirectionSet, load_directions
from latentshop.editing.edits import Edit, EditError, parse_layers
from latentshop.editing.files import read_edit_file
from latentshop.editing.stylespace import ChannelSet, load_channels, style_std
from latentshop.latents import generator_fingerprint
from latentshop.models.stylegan2 import Generator

__all__ = ["EditCatalog", "SANE_STRENGTH", "edit_files_for", "load_catalog", "parse_edit_spec", "parse_sweep"]

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


def edit_files_for(model: str | os.PathLike) -> list[Path]:
    """The edit files stored beside a model (its ``edits`` folder), sorted; none if it has none."""
    from latentshop.checkpoints.loader import _resolve_path

    try:
        p = _resolve_path(model)
    except Exception:  # noqa: BLE001 - a model that cannot be found has no edit files; loading it reports why
        return []
    folder = p / "edits" if p.is_dir() else p.with_name(p.name + ".edits")
    return sorted(folder.glob("*.npz")) if folder.is_dir() else []


@dataclass
class EditCatalog:
    """Every named edit available for one generator."""

    directions: list[DirectionSet] = field(default_factory=list)
    channels: list[ChannelSet] = field(default_factory=list)
    _std: dict | None = None

    def names(self) -> list[str]:
        out: list[str] = []
        for d in self.directions:
            out.extend(d.all_names())
        for c in self.channels:
            out.extend(c.names())
        return out

    def describe(self) -> list[tuple[str, str]]:
        """``(name, what it is)`` for listings."""
        rows = []
        for d in self.directions:
            stats = (d.meta.get("stats") or {}) if isinstance(d.meta, dict) else {}
            for name in d.names:
                s = stats.get(name, {})
                note = f"{d.method}"
                if "val_accuracy" in s:
                    note += f", SVM accuracy {s['val_accuracy']:.2f}"
                if "explained_variance_ratio" in s:
                    note += f", {100 * s['explained_variance_ratio']:.1f} % of w variance"
                rows.append((name, note))
            for alias, target in d.aliases.items():
                rows.append((alias, f"= {target}"))
        for c in self.channels:
            for attr, chans in c.attributes.items():
                if chans:
                    rows.append((f"stylespace:{attr}", f"channel {chans[0].name}, effect {chans[0].effect:.3f} per std"))
        return rows

    def make(self, G: Generator, name: str, strength: float, *, layers: str | None = None, keep: Sequence[str] = ()) -> Edit:
        """The edit ``name`` at ``strength``.

        Raises:
            EditError: an unknown name (the message lists the available ones and the closest match).
        """
        if name.startswith("s:"):
            m = re.fullmatch(r"s:([\w.]+):(\d+)", name)
            if not m:
                raise EditError(f"cannot read the channel {name!r}: write s:LAYER:CHANNEL, e.g. s:b16.conv1:45")
            if layers:
                raise EditError("a channel edit has its own layer; drop the @LAYERS")
            if self._std is None:
                self._std = {k: v.cpu() for k, v in style_std(G).items()}
            return ChannelSet(generator_fingerprint(G), {}, self._std).channel_edit(m.group(1), int(m.group(2)), strength)
        if name.startswith("stylespace:"):
            attr = name.split(":", 1)[1]
            for d in self.directions:  # the same aliases as the directions (smile -> happiness)
                attr = d.aliases.get(attr, attr)
            for c in self.channels:
                if attr in c.attributes:
                    if layers:
                        raise EditError("a StyleSpace edit has its own layer; drop the @LAYERS")
                    return c.get(attr, strength)
        for d in self.directions:
            if name in d:
                extra = [k for k in keep if k in d]
                return d.get(name, strength, layers=parse_layers(G, layers) if layers else None, keep=extra)
        known = self.names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        listing = ", ".join(known) if known else "none (compute some with `latentshop directions compute`)"
        raise EditError(f"unknown edit {name!r}.{hint} This model has: {listing}; and s:LAYER:CHANNEL for any style channel")


def load_catalog(G: Generator, model: str | os.PathLike | None = None, files: Sequence[str | os.PathLike] = ()) -> EditCatalog:
    """The edits of ``G``: the files beside ``model`` plus ``files``; each is checked against ``G``.

    Files beside the model that belong to another generator are skipped (they are stale); files
    given explicitly are refused with an error instead.
    """
    cat = EditCatalog()
    beside = edit_files_for(model) if model is not None else []
    for path, explicit in [(p, False) for p in beside] + [(Path(p), True) for p in files]:
        try:
            header, _ = read_edit_file(path, kind=None, G=G)
        except EditError:
            if explicit:
                raise
            continue
        if header["kind"] == "directions":
            cat.directions.append(load_directions(path, G))
        elif header["kind"] == "channels":
            cat.channels.append(load_channels(path, G))
        elif explicit:
            raise EditError(f"{path}: holds {header['kind']!r} edits, which `edit` cannot apply")
    return cat

