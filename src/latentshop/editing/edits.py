"""Edits as data: small frozen objects that map a :class:`~latentshop.latents.Latent` to a ``Latent``.

An edit list is what the command line parses (``--edit smile=+2 --edit yaw=-1``) and what the
studio's sliders build; :func:`edit` applies one in order. Every edit works on any latent space:

- :class:`Direction` — add ``strength`` times a unit vector of W to chosen layers of ``w+``
  (InterFaceGAN, GANSpace, SeFa). Strength is in units of the spread of the generator's ``w``
  along the direction (``scale``, its standard deviation), so ``+2`` means two standard deviations
  whatever the model. On an ``s`` latent the same change is applied through the style affines,
  which are affine in ``w``: the result equals editing in W+ and then converting.
- :class:`ChannelEdit` — move one StyleSpace channel (Wu et al. 2021) by ``delta`` of its standard
  deviation; the latent becomes an ``s`` latent.
- :class:`StyleMix` — take chosen ``ws`` layers (or their style codes) from another latent.
- :class:`Truncate` — move towards the mean ``w`` (``psi`` < 1) or away from it.

Layer indices are ``ws`` indices (``0 .. num_ws - 1``); :func:`layer_groups` names the usual
coarse / middle / fine ranges and :func:`parse_layers` reads ``"coarse"``, ``"0-3"`` or ``"4,5,8-9"``.

Example:
    >>> import torch
    >>> from latentshop.latents import Latent
    >>> from latentshop.models.stylegan2 import Generator
    >>> G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
    ...               synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()
    >>> lat = Latent.from_z(G, torch.randn(2, 8))
    >>> d = Direction("up", torch.eye(8)[0], strength=2.0, layers=(0, 1))
    >>> out = edit(G, lat, [d])
    >>> out.space, (out.tensor[:, :2, 0] - lat.ws(G)[:, :2, 0]).round().tolist()
    ('w+', [[2.0, 2.0], [2.0, 2.0]])
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import torch

from latentshop.errors import EditError, ShapeError
from latentshop.latents import Latent
from latentshop.models.fingerprint import accepts, generator_fingerprint
from latentshop.models.stylegan2 import Generator

__all__ = [
    "ChannelEdit",
    "Direction",
    "Edit",
    "EditError",
    "StyleMix",
    "Truncate",
    "edit",
    "layer_groups",
    "parse_layers",
    "style_layer_ws",
]


# ---- layers -----------------------------------------------------------------------------------
def layer_groups(G: Generator) -> dict[str, tuple[int, ...]]:
    """The StyleGAN paper's layer groups as ``ws`` indices.

    Resolution ``r`` owns ``ws`` ``2*(log2 r - 2)`` and the one after it (NVIDIA's counting), so
    coarse = 4²-8² (``ws`` 0-3), middle = 16²-32² (4-7), fine = 64² and up (8 to the end); a small
    model simply has fewer fine layers.

    Example:
        >>> from latentshop.models.stylegan2 import Generator
        >>> G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=64, img_channels=3,
        ...               synthesis_kwargs=dict(channel_base=64, channel_max=8))
        >>> layer_groups(G)["fine"], layer_groups(G)["all"][-1]
        ((8, 9), 9)
    """
    n = G.num_ws
    groups = {
        "coarse": tuple(i for i in range(0, 4) if i < n),
        "middle": tuple(i for i in range(4, 8) if i < n),
        "fine": tuple(range(8, n)),
        "all": tuple(range(n)),
    }
    return groups


def parse_layers(G: Generator, spec: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``ws`` indices from ``"coarse"``, ``"middle,fine"``, ``"0-3"``, ``"4,5,8-9"``, a sequence, or ``None`` (all).

    Raises:
        EditError: an unknown group name or an index outside ``0 .. num_ws - 1``.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        groups = layer_groups(G)
        out: list[int] = []
        for part in spec.replace(" ", "").split(","):
            if not part:
                continue
            if part in groups:
                out.extend(groups[part])
                continue
            m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not m:
                raise EditError(f"cannot read layers {spec!r}: use coarse, middle, fine, all, or ws indices like '0-3' or '4,6'")
            a = int(m.group(1))
            b = int(m.group(2)) if m.group(2) is not None else a
            if b < a:
                raise EditError(f"layer range {part!r} runs backwards; write it as {b}-{a}")
            out.extend(range(a, b + 1))
        layers = out
    else:
        layers = [int(i) for i in spec]
    bad = [i for i in layers if not 0 <= i < G.num_ws]
    if bad:
        raise EditError(f"layers {bad} are out of range: this model has ws 0..{G.num_ws - 1}")
    if not layers:
        raise EditError(f"no layers in {spec!r}")
    return tuple(sorted(set(layers)))


def style_layer_ws(G: Generator) -> dict[str, int]:
    """Style layer name -> the ``ws`` index it reads (``{"b4.conv1": 0, "b4.torgb": 1, ...}``)."""
    return dict(G.synthesis.layer_ws)


def _affine_linear(G: Generator, layer: str, dw: torch.Tensor) -> torch.Tensor:
    """The change of ``layer``'s style code for a change ``dw [..., w_dim]`` of its ``w`` (no bias)."""
    fc = G.synthesis.get_submodule(layer).affine
    weight = fc.weight.to(dw.device, torch.float32) * fc.weight_gain
    return dw.float() @ weight.t()


# ---- the edits --------------------------------------------------------------------------------
class Edit:
    """Base class: ``edit.apply(G, latent) -> Latent``. Subclasses are frozen dataclasses."""

    generator: str | None = None

    def apply(self, G: Generator, latent: Latent) -> Latent:  # pragma: no cover - abstract
        raise NotImplementedError

    def check(self, G: Generator) -> None:
        """Refuse a generator other than the one this edit was made for (when it records one); a
        generator tuned from that one is accepted (``models.fingerprint``: tuning keeps W)."""
        if self.generator is not None and not accepts(G, self.generator):
            raise EditError(
                f"{self.describe()} was made for generator {self.generator}, not for the one in use "
                f"({generator_fingerprint(G)}); compute the direction again for this model"
            )

    def describe(self) -> str:
        return type(self).__name__


def _check_finite(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise EditError(f"{what} must be a finite number, got {value}")
    return value


@dataclass(frozen=True, eq=False)
class Direction(Edit):
    """Move along a direction of W.

    Args:
        name: what the direction changes (``"smile"``, ``"ganspace:3"``...).
        vector: ``[w_dim]``; normalised to unit length.
        strength: how far, in units of ``scale``.
        layers: ``ws`` indices to change (``None``: all).
        scale: the length of one unit of strength in W (the standard deviation of ``w`` along
            ``vector`` for the directions latentshop computes).
        generator: fingerprint of the generator the direction belongs to (``None``: any).
    """

    name: str
    vector: torch.Tensor
    strength: float = 1.0
    layers: tuple[int, ...] | None = None
    scale: float = 1.0
    generator: str | None = None

    def __post_init__(self) -> None:
        v = torch.as_tensor(self.vector, dtype=torch.float32).flatten()
        norm = float(v.norm())
        if not math.isfinite(norm) or norm == 0:
            raise EditError(f"direction {self.name!r} has a zero or non-finite vector")
        object.__setattr__(self, "vector", v / norm)
        object.__setattr__(self, "strength", _check_finite(self.strength, f"the strength of {self.name!r}"))
        object.__setattr__(self, "scale", _check_finite(self.scale, f"the scale of {self.name!r}"))
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))

    def describe(self) -> str:
        return f"direction {self.name!r}"

    def with_strength(self, strength: float) -> "Direction":
        return Direction(self.name, self.vector, strength, self.layers, self.scale, self.generator)

    def delta(self) -> torch.Tensor:
        """The change of ``w``: ``[w_dim]``."""
        return self.vector * (self.strength * self.scale)

    def apply(self, G: Generator, latent: Latent) -> Latent:
        self.check(G)
        if self.vector.numel() != G.w_dim:
            raise EditError(f"{self.describe()} has {self.vector.numel()} values but this model's w has {G.w_dim}")
        layers = parse_layers(G, self.layers) or tuple(range(G.num_ws))
        dw = self.delta()
        if latent.space == "s":
            layer_ws = style_layer_ws(G)
            styles = latent.styles(G)
            out = {}
            for name, s in styles.items():
                out[name] = s + _affine_linear(G, name, dw.to(s.device)) if layer_ws[name] in layers else s
            return Latent.from_styles(G, out, noise=latent.noise, **latent.meta)
        with torch.no_grad():
            ws = latent.ws(G).clone()
            ws[:, list(layers)] += dw.to(ws.device)
        return Latent.from_ws(G, ws, noise=latent.noise, **latent.meta)


@dataclass(frozen=True, eq=False)
class ChannelEdit(Edit):
    """Move one StyleSpace channel.

    Args:
        layer: style layer name (``"b16.conv1"``; see ``G.styles``).
        channel: channel index in that layer.
        delta: how far, in units of ``scale``.
        scale: one unit (the channel's standard deviation over samples for found channels).
        generator: fingerprint of the generator (``None``: any).
    """

    layer: str
    channel: int
    delta: float = 1.0
    scale: float = 1.0
    generator: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "delta", _check_finite(self.delta, f"the strength of channel {self.layer}:{self.channel}"))
        object.__setattr__(self, "scale", _check_finite(self.scale, f"the scale of channel {self.layer}:{self.channel}"))
        object.__setattr__(self, "channel", int(self.channel))

    @property
    def name(self) -> str:
        return f"{self.layer}:{self.channel}"

    def describe(self) -> str:
        return f"channel {self.name}"

    def with_strength(self, delta: float) -> "ChannelEdit":
        return ChannelEdit(self.layer, self.channel, delta, self.scale, self.generator)

    def apply(self, G: Generator, latent: Latent) -> Latent:
        self.check(G)
        widths = {name: G.synthesis.get_submodule(name).affine.out_features for name in G.synthesis.layer_ws}
        if self.layer not in widths:
            raise EditError(f"unknown style layer {self.layer!r}; layers are {', '.join(widths)}")
        if not 0 <= self.channel < widths[self.layer]:
            raise EditError(f"channel {self.channel} is out of range: {self.layer} has channels 0..{widths[self.layer] - 1}")
        with torch.no_grad():
            styles = {k: v.clone() for k, v in latent.styles(G).items()}
            styles[self.layer][:, self.channel] += self.delta * self.scale
        return Latent.from_styles(G, styles, noise=latent.noise, **latent.meta)


@dataclass(frozen=True, eq=False)
class StyleMix(Edit):
    """Take the ``layers`` of ``source`` (one latent for all images, or one per image).

    On ``w``/``w+`` latents the ``ws`` rows are copied; when either side is an ``s`` latent, the
    style codes of every style layer reading one of ``layers`` are copied.
    """

    source: Latent
    layers: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))
        object.__setattr__(self, "generator", self.source.generator)

    def describe(self) -> str:
        return f"style mix of ws {list(self.layers)}"

    def apply(self, G: Generator, latent: Latent) -> Latent:
        self.check(G)
        layers = parse_layers(G, self.layers)
        n, m = len(latent), len(self.source)
        if m not in (1, n):
            raise ShapeError(f"a style-mix source holds {m} images; give one, or one per target image ({n})")
        if latent.space == "s" or self.source.space == "s":
            layer_ws = style_layer_ws(G)
            target, source = latent.styles(G), self.source.styles(G)
            out = {}
            for name, s in target.items():
                out[name] = source[name].expand_as(s).clone() if layer_ws[name] in layers else s
            return Latent.from_styles(G, out, noise=latent.noise, **latent.meta)
        with torch.no_grad():
            ws = latent.ws(G).clone()
            src = self.source.ws(G).to(ws.device)
            ws[:, list(layers)] = src[:, list(layers)].expand(n, -1, -1)
        return Latent.from_ws(G, ws, noise=latent.noise, **latent.meta)


@dataclass(frozen=True, eq=False)
class Truncate(Edit):
    """The truncation trick on a found latent: ``w_avg + psi * (w - w_avg)`` on ``layers`` (``None``: all)."""

    psi: float
    layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "psi", _check_finite(self.psi, "truncation psi"))

    def describe(self) -> str:
        return f"truncation {self.psi:g}"

    def apply(self, G: Generator, latent: Latent) -> Latent:
        layers = parse_layers(G, self.layers) or tuple(range(G.num_ws))
        if latent.space == "s":
            layer_ws = style_layer_ws(G)
            w_avg = G.mapping.w_avg.float()
            avg = G.styles(w_avg.view(1, 1, -1).repeat(1, G.num_ws, 1).to(G.mapping.fc0.weight.device))
            out = {}
            for name, s in latent.styles(G).items():
                out[name] = avg[name].to(s.device).lerp(s, self.psi) if layer_ws[name] in layers else s
            return Latent.from_styles(G, out, noise=latent.noise, **latent.meta)
        with torch.no_grad():
            ws = latent.ws(G).clone()
            w_avg = G.mapping.w_avg.to(ws.device, torch.float32)
            ws[:, list(layers)] = w_avg.lerp(ws[:, list(layers)], self.psi)
        return Latent.from_ws(G, ws, noise=latent.noise, **latent.meta)


def edit(G: Generator, latent: Latent, edits: Sequence[Edit] | Edit) -> Latent:
    """Apply ``edits`` to ``latent`` in order; the result keeps the latent's noise maps and notes.

    A ``z`` or ``w`` latent becomes ``w+`` (or ``s`` after a channel edit); an empty list returns
    the latent unchanged.

    Raises:
        EditError: an edit made for another generator, or with bad layers / strengths.
        LatentError: the latent belongs to another generator.
    """
    if isinstance(edits, Edit):
        edits = [edits]
    latent.check(G)
    for e in edits:
        if not isinstance(e, Edit):
            raise EditError(f"not an edit: {e!r}")
        latent = e.apply(G, latent)
    return latent
