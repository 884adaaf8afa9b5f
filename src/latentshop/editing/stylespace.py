"""StyleSpace: edits of single style channels, and finding the channels that control an attribute.

Wu, Lischinski & Shechtman 2021, "StyleSpace Analysis: Disentangled Controls for StyleGAN Image
Generation". The S space is every modulated layer's affine output (``G.styles``); moving one
channel often changes one local attribute. Two ways of finding channels, as in the paper:

- **Locally active channels** (:func:`channel_locality`): push each channel of a few samples by a
  few of its standard deviations, take the magnitude of the pixel change as the channel's effect
  map, and measure which share of it falls inside each semantic part (masks from the synthetic
  part segmenter, or any masks the caller gives). The paper uses gradient maps thresholded against
  a face parser; finite differences at the edit's own size measure the change a user would see.
- **Attribute-specific channels** (:func:`find_channels`): score samples with an evaluator, take
  the most positive examples, and rank channels by ``|mean over positives - mean over all| / std``
  (the paper's relevance), then confirm the top candidates by the evaluator's measured response to
  pushing them (change of the attribute per standard deviation, and of every other attribute).

Results are a :class:`ChannelSet`, stored as an edit file tied to its generator.

Example:
    >>> import torch
    >>> from latentshop.models.stylegan2 import Generator
    >>> G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
    ...               synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()
    >>> std = style_std(G, n=500)
    >>> sorted(std)[:2], std["b4.conv1"].shape
    (['b16.conv0', 'b16.conv1'], torch.Size([8]))
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from latentshop.editing.directions import attribute_scores, sample_ws
from latentshop.editing.edits import ChannelEdit, EditError
from latentshop.models.fingerprint import generator_fingerprint
from latentshop.registry import EditControl, EditFamily, register_edit_family
from latentshop.models.stylegan2 import Generator

__all__ = [
    "FACE_ATTRIBUTE_REGIONS",
    "SYNTHETIC_FACTOR_PARTS",
    "ChannelInfo",
    "ChannelSet",
    "channel_locality",
    "STYLESPACE_CONTROLS",
    "StyleChannels",
    "find_channels",
    "style_std",
    "style_widths",
]


#: Where each attribute of the synthetic faces lives (part names of the renderer); ``None``: everywhere.
SYNTHETIC_FACTOR_PARTS: Mapping[str, tuple[str, ...] | None] = {
    "smile": ("mouth",), "eye_open": ("eyes",), "eye_size": ("eyes",), "brow": ("brows",),
    "face_width": ("skin", "background"), "skin_tone": ("skin",), "hair_colour": ("hair", "brows", "beard"),
    "hair_length": ("hair", "background", "clothing"), "glasses": ("glasses", "eyes"), "beard": ("beard", "skin"),
    "age": ("skin",), "yaw": None, "light": None, "background_hue:cos": ("background",), "background_hue:sin": ("background",),
    "clothing_hue:cos": ("clothing",), "clothing_hue:sin": ("clothing",),
}


#: Where each edit of real faces lives, in the landmark evaluator's regions; ``None``: everywhere (or outside the face).
FACE_ATTRIBUTE_REGIONS: Mapping[str, tuple[str, ...] | None] = {
    "smile": ("mouth",), "mouth_open": ("mouth",), "mouth_width": ("mouth",), "smile_curve": ("mouth",),
    "glasses": ("eyes", "brows", "nose"), "eye_open": ("eyes",), "brow_raise": ("brows",), "makeup": ("eyes", "mouth"),
    "beard": ("face",), "age": ("face",), "gender": None, "bald": None, "blond": None, "bangs": None, "hat": None,
    "yaw": None, "pitch": None, "roll": None,
}


def style_widths(G: Generator) -> dict[str, int]:
    """Style layer name -> number of channels, in synthesis order."""
    return {name: G.synthesis.get_submodule(name).affine.out_features for name in G.synthesis.layer_ws}


def style_std(G: Generator, *, n: int = 10_000, seed: int = 0) -> dict[str, torch.Tensor]:
    """Per-channel standard deviation of the style codes of ``n`` samples: ``{layer: [C]}`` (the unit of channel edits)."""
    ws = sample_ws(G, n, seed=seed)
    out: dict[str, list[torch.Tensor]] = {}
    device = G.mapping.fc0.weight.device
    with torch.no_grad():
        for start in range(0, n, 4096):
            w = ws[start:start + 4096].to(device).unsqueeze(1).repeat(1, G.num_ws, 1)
            for k, v in G.styles(w).items():
                out.setdefault(k, []).append(v.float().cpu())
    return {k: torch.cat(v).std(0) for k, v in out.items()}


@dataclass(frozen=True)
class ChannelInfo:
    """One found channel: where it is, which way raises the attribute, and what it does."""

    layer: str
    channel: int
    sign: int = 1  # +1: a positive delta raises the attribute
    relevance: float = 0.0  # |mean(positives) - mean(all)| / std
    effect: float = float("nan")  # change of the attribute's score per +1 std along `sign`
    leakage: float = float("nan")  # mean |change| of the other attributes per +1 std
    locality: Mapping[str, float] = field(default_factory=dict)  # share of the pixel change inside each part

    @property
    def name(self) -> str:
        return f"{self.layer}:{self.channel}"

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "channel": self.channel, "sign": self.sign, "relevance": self.relevance,
                "effect": None if not np.isfinite(self.effect) else self.effect,
                "leakage": None if not np.isfinite(self.leakage) else self.leakage, "locality": dict(self.locality)}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "ChannelInfo":
        nan = float("nan")
        return ChannelInfo(str(d["layer"]), int(d["channel"]), int(d.get("sign", 1)), float(d.get("relevance", 0.0)),
                           nan if d.get("effect") is None else float(d["effect"]),
                           nan if d.get("leakage") is None else float(d["leakage"]),
                           {str(k): float(v) for k, v in (d.get("locality") or {}).items()})


@dataclass(frozen=True, eq=False)
class ChannelSet:
    """Channels found per attribute (best first), and the style spread that sets their unit.

    Args:
        generator: fingerprint of the generator.
        attributes: ``{attribute: [ChannelInfo, ...]}`` best first.
        std: ``{layer: [C]}`` per-channel standard deviation of the style codes.
        meta: notes (model, evaluator, samples).
    """

    generator: str
    attributes: Mapping[str, Sequence[ChannelInfo]]
    std: Mapping[str, torch.Tensor]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def names(self) -> list[str]:
        """Edit names: ``stylespace:<attribute>`` (its best channel)."""
        return [f"stylespace:{a}" for a, chans in self.attributes.items() if chans]

    def channel_edit(self, layer: str, channel: int, strength: float) -> ChannelEdit:
        """A :class:`ChannelEdit` of ``strength`` standard deviations of that channel."""
        if layer not in self.std:
            raise EditError(f"unknown style layer {layer!r}; layers are {', '.join(self.std)}")
        width = self.std[layer].numel()
        if not 0 <= channel < width:
            raise EditError(f"channel {channel} is out of range: {layer} has channels 0..{width - 1}")
        return ChannelEdit(layer, channel, strength, float(self.std[layer][channel]), self.generator)

    # ---- the edit-family protocol (latentshop.registry.EditSet) ----------------------------------
    family = "stylespace"

    def edit_names(self) -> list[str]:
        return self.names()

    def describe(self) -> list[tuple[str, str]]:
        return [(f"stylespace:{a}", f"channel {chans[0].name}, effect {chans[0].effect:.3f} per std")
                for a, chans in self.attributes.items() if chans]

    def make(self, G: Generator, name: str, strength: float, *, layers: str | None = None,
             keep: Sequence[str] = ()) -> ChannelEdit | None:
        """``stylespace:ATTRIBUTE`` (its best channel) or ``stylespace:ATTRIBUTE:RANK``, signed so that a
        positive strength raises the attribute; ``None`` for other names."""
        m = re.fullmatch(r"stylespace:(.+?)(?::(\d+))?", name)
        if not m or m.group(1) not in self.attributes:
            return None
        if layers:
            raise EditError("a StyleSpace edit has its own layer; drop the @LAYERS")
        return self.get(m.group(1), strength, rank=int(m.group(2) or 0))

    def controls(self) -> list[EditControl]:
        """The top :data:`STYLESPACE_CONTROLS` channels of every attribute (a channel that tops two
        attributes once), named ``stylespace:ATTRIBUTE:RANK``; moving right raises the attribute."""
        out, seen = [], set()
        for attr, chans in self.attributes.items():
            for rank, info in enumerate(list(chans)[:STYLESPACE_CONTROLS]):
                if (info.layer, info.channel) in seen:
                    continue
                seen.add((info.layer, info.channel))
                out.append(EditControl("stylespace", f"stylespace:{attr}:{rank}",
                                       f"{attr} · channel {info.layer}:{info.channel}", limit=10.0))
        return out

    def to_record(self) -> tuple[str, dict[str, np.ndarray], dict[str, Any]]:
        """``(kind, arrays, meta)`` of this set's edit file (``checkpoints.save_edit_set`` writes it)."""
        meta = dict(self.meta)
        meta["attributes"] = {a: [c.to_dict() for c in chans] for a, chans in self.attributes.items()}
        meta["layers"] = list(self.std)
        return "channels", {f"std/{k}": v.numpy().astype(np.float32) for k, v in self.std.items()}, meta

    def get(self, attribute: str, strength: float = 1.0, *, rank: int = 0) -> ChannelEdit:
        """The ``rank``-th channel of ``attribute``, signed so that positive strength raises it."""
        chans = self.attributes.get(attribute)
        if not chans:
            raise EditError(f"no StyleSpace channels for {attribute!r}; found for {', '.join(self.attributes) or 'none'}")
        if not 0 <= rank < len(chans):
            raise EditError(f"{attribute!r} has {len(chans)} channels; rank {rank} is out of range")
        info = chans[rank]
        return self.channel_edit(info.layer, info.channel, strength * info.sign)


def _channels_from_record(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray], path: str,
                          G: Generator | None = None) -> ChannelSet:
    """A channel set from an edit file's header and arrays (read by ``checkpoints.read_edit_file``)."""
    meta = dict(header.get("meta") or {})
    try:
        layers = [str(x) for x in meta.pop("layers")]
        std = {k: torch.from_numpy(arrays[f"std/{k}"]) for k in layers}
        attributes = {str(a): [ChannelInfo.from_dict(c) for c in chans] for a, chans in meta.pop("attributes").items()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise EditError(f"{path}: incomplete channel file ({e})") from None
    for a, chans in attributes.items():
        for c in chans:
            if c.layer not in std or not 0 <= c.channel < std[c.layer].numel():
                raise EditError(f"{path}: channel {c.name} of {a!r} is not in the file's layers")
    if G is not None:
        widths = style_widths(G)
        if {k: v.numel() for k, v in std.items()} != widths:
            raise EditError(f"{path}: the style layers do not match this model's")
    return ChannelSet(str(header["generator"]), attributes, std, meta)


class StyleChannels:
    """The built-in edit set every model has: ``s:LAYER:CHANNEL``, any single style channel, in
    standard deviations of that channel over the model's samples (:func:`style_std`, computed on
    first use)."""

    family = "stylespace"

    def __init__(self, G: Generator):
        self.generator = generator_fingerprint(G)
        self._std: dict[str, torch.Tensor] | None = None

    def edit_names(self) -> list[str]:
        return []

    def describe(self) -> list[tuple[str, str]]:
        return [("s:LAYER:CHANNEL", "any single style channel (e.g. s:b16.conv1:3)")]

    def controls(self) -> list[EditControl]:
        return []

    def make(self, G: Generator, name: str, strength: float, *, layers: str | None = None,
             keep: Sequence[str] = ()) -> ChannelEdit | None:
        if not name.startswith("s:"):
            return None
        m = re.fullmatch(r"s:([\w.]+):(\d+)", name)
        if not m:
            raise EditError(f"cannot read the channel {name!r}: write s:LAYER:CHANNEL, e.g. s:b16.conv1:45")
        if layers:
            raise EditError("a channel edit has its own layer; drop the @LAYERS")
        if self._std is None:
            self._std = {k: v.cpu() for k, v in style_std(G).items()}
        return ChannelSet(self.generator, {}, self._std).channel_edit(m.group(1), int(m.group(2)), strength)


#: StyleSpace channels each attribute of a channel set offers as controls (sliders), best first
STYLESPACE_CONTROLS = 3

register_edit_family(EditFamily(
    name="stylespace", file_kind="channels", from_record=_channels_from_record, builtin=StyleChannels,
    groups=(("stylespace", "StyleSpace channels"),)))


# ---- finding channels ---------------------------------------------------------------------------
def _styles_of(G: Generator, ws: torch.Tensor) -> dict[str, torch.Tensor]:
    device = G.mapping.fc0.weight.device
    with torch.no_grad():
        return {k: v.float() for k, v in G.styles(ws.to(device).unsqueeze(1).repeat(1, G.num_ws, 1)).items()}


def _render(G: Generator, styles: Mapping[str, torch.Tensor], batch: int = 256) -> torch.Tensor:
    n = next(iter(styles.values())).shape[0]
    out = []
    with torch.no_grad():
        for start in range(0, n, batch):
            part = {k: v[start:start + batch] for k, v in styles.items()}
            out.append(G.synthesis(styles=part, noise_mode="const", impl="fast").float().cpu())
    return torch.cat(out)


def _pushed(styles: Mapping[str, torch.Tensor], layer: str, channel: int, delta: float) -> dict[str, torch.Tensor]:
    out = dict(styles)
    s = styles[layer].clone()
    s[:, channel] += delta
    out[layer] = s
    return out


def channel_locality(G: Generator, ws: torch.Tensor, masks: Mapping[str, torch.Tensor], *, channels: Sequence[tuple[str, int]] | None = None,
                     std: Mapping[str, torch.Tensor] | None = None, push: float = 5.0,
                     progress: Callable[[int], None] | None = None) -> dict[tuple[str, int], dict[str, float]]:
    """Share of each channel's pixel change that falls inside each part.

    Args:
        G: the generator.
        ws: ``[N, w_dim]`` samples to test on (a handful is enough).
        masks: ``{part: [N, 1, R, R]}`` in ``{0, 1}`` for the samples' images.
        channels: ``(layer, channel)`` pairs (default: every channel).
        std: per-channel style spread (default: :func:`style_std`).
        push: how many standard deviations each channel is moved.
        progress: called with 1 after each channel.

    Returns:
        ``{(layer, channel): {part: share, ..., "_magnitude": mean |change| per pixel}}``; shares of
        one channel sum to at most 1 (parts may overlap or leave pixels out).
    """
    std = std or style_std(G)
    base_styles = _styles_of(G, ws)
    base = _render(G, base_styles)
    if channels is None:
        channels = [(name, c) for name, width in style_widths(G).items() for c in range(width)]
    parts = {k: v.float().cpu() for k, v in masks.items()}
    out: dict[tuple[str, int], dict[str, float]] = {}
    for layer, c in channels:
        img = _render(G, _pushed(base_styles, layer, c, push * float(std[layer][c])))
        effect = (img - base).abs().sum(1, keepdim=True)  # [N, 1, R, R]
        total = effect.sum((1, 2, 3)).clamp_min(1e-12)
        row = {part: float(((effect * m).sum((1, 2, 3)) / total).mean()) for part, m in parts.items()}
        row["_magnitude"] = float(effect.mean() / G.img_channels)
        out[(layer, c)] = row
        if progress is not None:
            progress(1)
    return out


def find_channels(G: Generator, evaluator: torch.nn.Module, attributes: Sequence[str], *, n: int = 5000, positives: int = 50,
                  candidates: int = 30, top: int = 10, verify_samples: int = 32, push: float = 5.0, seed: int = 0,
                  std: Mapping[str, torch.Tensor] | None = None, include_torgb: bool = False,
                  part_masks: Callable[[torch.Tensor], Mapping[str, torch.Tensor]] | None = None,
                  parts: Mapping[str, Sequence[str]] | None = None, locality_samples: int = 8,
                  progress: Callable[[str, int, int], None] | None = None, model: str | None = None) -> ChannelSet:
    """Attribute-specific StyleSpace channels, confirmed by the evaluator's response.

    Candidates per attribute are the ``candidates`` most relevant channels (``|mean over the
    positives - mean over all| / std``, the paper's attribute-specific detection) and, when
    ``part_masks`` and the attribute's ``parts`` are given, also the ``candidates`` channels whose
    pixel change falls most inside those parts (the paper's locally-active detection, measured on
    ``locality_samples`` samples over every channel). Each candidate is pushed by ``±push``
    standard deviations on ``verify_samples`` samples and scored; channels are kept by their
    effect on the attribute, times the share of their change inside its parts when those are known.

    Args:
        G: the generator.
        evaluator: a latentshop evaluator (see :func:`~latentshop.editing.directions.attribute_scores`).
        attributes: names the evaluator scores (``"smile"``, ``"happiness"``, ``"glasses"``...).
        n: samples scored to find the positive examples.
        positives: how many of the highest-scoring samples are the positives.
        candidates: channels per attribute taken by each detection, then pushed and measured.
        top: channels kept per attribute.
        verify_samples: samples the candidates are pushed on.
        push: the push, in standard deviations, used for measuring (reported per 1 std).
        seed: seeds the samples.
        std: per-channel style spread (default: computed from ``n`` samples).
        include_torgb: also consider the ToRGB layers' codes (colour rather than shape).
        part_masks: images ``[N, C, R, R]`` -> ``{part: [N, 1, R, R]}`` (e.g. the part segmenter's);
            with it every kept channel's :func:`channel_locality` is stored in ``ChannelInfo.locality``.
        parts: ``{attribute: [part, ...]}``: where each attribute lives (``smile``: ``mouth``).
        locality_samples: samples for the locally-active detection over every channel.
        progress: called as ``progress(stage, done, total)``.
        model: recorded in the result.
    """
    ws = sample_ws(G, n, seed=seed)
    device = G.mapping.fc0.weight.device
    styles = {k: v.cpu() for k, v in _styles_of(G, ws).items()}
    std = std or {k: v.std(0) for k, v in styles.items()}
    imgs = _render(G, {k: v.to(device) for k, v in styles.items()})
    scores, _ = attribute_scores(evaluator, imgs)
    unknown = [a for a in attributes if a not in scores]
    if unknown:
        raise EditError(f"the evaluator does not score {unknown}; it scores {', '.join(scores)}")
    parts = {a: list(p) for a, p in (parts or {}).items() if p} if part_masks is not None else {}
    layers = [k for k in styles if include_torgb or not k.endswith("torgb")]
    flat = torch.cat([styles[k] for k in layers], 1)  # [n, total]
    index = [(k, c) for k in layers for c in range(styles[k].shape[1])]
    mu, sd = flat.mean(0), flat.std(0).clamp_min(1e-8)
    v_ws = ws[:verify_samples]
    v_styles = {k: v[:verify_samples].to(device) for k, v in styles.items()}
    local: dict[tuple[str, int], dict[str, float]] = {}
    if any(a in parts for a in attributes):
        masks = part_masks(imgs[:locality_samples])
        done = 0

        def tick(k: int) -> None:
            nonlocal done
            done += k
            if progress is not None:
                progress("locality", done, len(index))

        local = channel_locality(G, ws[:locality_samples], masks, channels=index, std=std, push=push, progress=tick)
    found: dict[str, list[ChannelInfo]] = {}
    for ai, attr in enumerate(attributes):
        order = torch.argsort(scores[attr], descending=True)[:positives]
        rel_signed = (flat[order].mean(0) - mu) / sd
        cand = torch.argsort(rel_signed.abs(), descending=True)[:candidates].tolist()
        inside: dict[int, float] = {}
        if attr in parts and local:
            share = torch.tensor([sum(local[ix].get(p, 0.0) for p in parts[attr]) for ix in index])
            magnitude = torch.tensor([local[ix]["_magnitude"] for ix in index])
            share = torch.where(magnitude >= magnitude.median(), share, torch.zeros_like(share))  # ignore near-inert channels
            cand = list(dict.fromkeys(cand + torch.argsort(share, descending=True)[:candidates].tolist()))
            inside = {i: float(share[i]) for i in cand}
        infos = []
        for j, idx in enumerate(cand):
            layer, c = index[idx]
            sign = 1 if float(rel_signed[idx]) >= 0 else -1
            delta = push * float(std[layer][c])
            up = attribute_scores(evaluator, _render(G, _pushed(v_styles, layer, c, sign * delta)))[0]
            down = attribute_scores(evaluator, _render(G, _pushed(v_styles, layer, c, -sign * delta)))[0]
            effect = float((up[attr] - down[attr]).mean()) / (2 * push)
            others = [float((up[o] - down[o]).abs().mean()) / (2 * push) for o in up if o != attr]
            infos.append((ChannelInfo(layer, c, sign if effect >= 0 else -sign, float(rel_signed[idx].abs()), abs(effect),
                                      float(np.mean(others)) if others else float("nan")), abs(effect) * inside.get(idx, 1.0)))
            if progress is not None:
                progress(attr, j + 1, len(cand))
        infos.sort(key=lambda pair: pair[1], reverse=True)
        found[attr] = [info for info, _ in infos[:top]]
    if part_masks is not None:
        masks = part_masks(imgs[:verify_samples])
        wanted = sorted({(i.layer, i.channel) for infos in found.values() for i in infos})
        loc = channel_locality(G, v_ws, masks, channels=wanted, std=std, push=push)
        found = {a: [dataclasses.replace(i, locality={k: round(v, 4) for k, v in loc[(i.layer, i.channel)].items()})
                     for i in infos] for a, infos in found.items()}
    return ChannelSet(generator_fingerprint(G), found, {k: v.float() for k, v in std.items()},
                      meta={"model": model, "samples": n, "positives": positives, "candidates": candidates,
                            "verify_samples": verify_samples, "push": push, "seed": seed, "parts": parts,
                            "evaluator": getattr(evaluator, "kind", type(evaluator).__name__)})
