"""Style mixing, layer-wise crossover and interpolation between latents of one generator.

- :func:`style_mix` — a target latent with chosen ``ws`` layers (or their style codes) taken from
  a source latent: coarse layers carry pose and face shape, middle ones features, fine ones colour
  (Karras et al. 2019, section 3.1). A thin wrapper around :class:`~latentshop.editing.edits.StyleMix`.
- :func:`crossover` — both children of a layer-wise crossover of two latents.
- :func:`interpolate` / :func:`path` — frames between two (or more) latents: linear in W, W+ and
  S, spherical in Z, where codes are Gaussian and a straight line would pass through unlikely,
  low-norm points (the slerp of NVIDIA's perceptual path length).

Layers are ``ws`` indices or the names :func:`~latentshop.editing.edits.parse_layers` reads
(``"coarse"``, ``"middle"``, ``"fine"``, ``"0-3"``, ``"4,6"``).

Example:
    >>> import torch
    >>> from latentshop.latents import Latent
    >>> from latentshop.models.stylegan2 import Generator
    >>> G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
    ...               synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()
    >>> a, b = Latent.from_z(G, torch.randn(1, 8)), Latent.from_z(G, torch.randn(1, 8))
    >>> mixed = style_mix(G, a, b, "coarse")
    >>> bool(torch.equal(mixed.tensor[:, :4], b.ws(G)[:, :4]))
    True
    >>> frames = interpolate(G, a, b, frames=5)
    >>> frames.space, len(frames)
    ('w+', 5)
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence

import torch

from latentshop.editing.edits import EditError, StyleMix, parse_layers
from latentshop.errors import ShapeError
from latentshop.latents import SPACES, Latent
from latentshop.models.stylegan2 import Generator

__all__ = ["INTERPOLATION_METHODS", "crossover", "interpolate", "path", "style_mix"]

INTERPOLATION_METHODS = ("lerp", "slerp")


def _layers(G: Generator, layers: str | int | Sequence[int]) -> tuple[int, ...]:
    if layers is None:
        raise EditError("no layers given: name them, e.g. 'coarse', 'middle', 'fine', '0-3' or [4, 5]")
    if isinstance(layers, int):
        layers = (layers,)
    out = parse_layers(G, layers)
    assert out is not None
    return out


def style_mix(G: Generator, target: Latent, source: Latent, layers: str | int | Sequence[int]) -> Latent:
    """``target`` with the ``ws`` layers ``layers`` taken from ``source``.

    Args:
        G: the generator both latents belong to.
        target: ``N`` images in any space; it gives every layer not in ``layers`` and its noise maps.
        source: one image (used for all targets) or ``N``.
        layers: ``ws`` indices or names (``"coarse"``, ``"fine"``, ``"4-7"``...).

    Returns:
        A ``w+`` latent, or an ``s`` latent when either input is one (then the style codes of
        every style layer reading one of ``layers`` are taken).

    Raises:
        EditError: unknown layer names or indices out of range.
        LatentError: a latent belongs to another generator.
        ShapeError: ``source`` holds neither one image nor ``N``.

    Example:
        >>> import torch
        >>> from latentshop.latents import Latent
        >>> from latentshop.models.stylegan2 import Generator
        >>> G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
        ...               synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()
        >>> t, s = Latent.from_z(G, torch.randn(2, 8)), Latent.from_z(G, torch.randn(1, 8))
        >>> style_mix(G, t, s, [0, 1]).tensor.shape
        torch.Size([2, 6, 8])
    """
    target.check(G)
    source.check(G)
    return StyleMix(source, _layers(G, layers)).apply(G, target)


def _broadcast(lat: Latent, n: int) -> Latent:
    return lat if len(lat) == n else Latent.cat([lat] * n)


def crossover(G: Generator, a: Latent, b: Latent, layers: str | int | Sequence[int]) -> tuple[Latent, Latent]:
    """Both children of a layer-wise crossover: ``(a×b, b×a)``.

    ``a×b`` is ``a`` everywhere except ``layers``, which come from ``b``: exactly
    ``style_mix(G, a, b, layers)``. ``b×a`` is the complement, ``b`` with ``layers`` from ``a``
    (``style_mix(G, b, a, layers)``), so together the children hold every layer of both parents once.
    Each child keeps the noise maps of the parent it takes the other layers from. A one-image
    parent is paired with every image of the other.

    Raises:
        EditError: bad layers.
        LatentError: a latent belongs to another generator.
        ShapeError: the parents hold different numbers of images (other than one).

    Example:
        >>> import torch
        >>> from latentshop.latents import Latent
        >>> from latentshop.models.stylegan2 import Generator
        >>> G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
        ...               synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()
        >>> a, b = Latent.from_z(G, torch.randn(1, 8)), Latent.from_z(G, torch.randn(1, 8))
        >>> ab, ba = crossover(G, a, b, "0-2")
        >>> bool(torch.equal(ab.tensor[:, 3:], a.ws(G)[:, 3:])), bool(torch.equal(ba.tensor[:, :3], a.ws(G)[:, :3]))
        (True, True)
    """
    a.check(G)
    b.check(G)
    n = max(len(a), len(b))
    if min(len(a), len(b)) not in (1, n):
        raise ShapeError(f"crossover parents hold {len(a)} and {len(b)} images; give the same number, or one for either")
    a, b = _broadcast(a, n), _broadcast(b, n)
    sel = _layers(G, layers)
    return style_mix(G, a, b, sel), style_mix(G, b, a, sel)


# ---- interpolation ----------------------------------------------------------------------------
def _weights(frames: int) -> torch.Tensor:
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 2:
        raise EditError(f"frames must be a whole number >= 2 (the two ends are included), got {frames!r}")
    return torch.linspace(0.0, 1.0, frames)


def _lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``(1 - t) a + t b`` for each ``t``: ``a, b [1, ...]`` -> ``[T, ...]`` (exact at both ends)."""
    t = t.to(a.device).view(-1, *([1] * (a.ndim - 1)))
    return (1 - t) * a + t * b


def _slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of the directions of ``a, b [1, D]``, linear of their norms -> ``[T, D]``."""
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    if float(na.min()) == 0 or float(nb.min()) == 0:
        raise EditError("slerp needs non-zero z vectors; interpolate this latent with method='lerp'")
    ua, ub = a / na, b / nb
    cos = (ua * ub).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(cos)  # [1, 1]
    sin = torch.sin(omega)
    t = t.to(a.device).view(-1, 1)
    if float(sin) < 1e-6:
        if float(cos) < 0:
            raise EditError("the two z vectors point in opposite directions: the spherical path between them is not "
                            "defined; use method='lerp' or another latent")
        u = _lerp(ua, ub, t)  # (nearly) the same direction
    else:
        u = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / sin
        u = u / u.norm(dim=-1, keepdim=True)
    return u * _lerp(na, nb, t)


def _one(lat: Latent, what: str) -> None:
    if len(lat) != 1:
        raise ShapeError(f"{what} holds {len(lat)} images; interpolation takes one latent per end (index it: lat[i])")


def _in_space(G: Generator, lat: Latent, space: str, what: str) -> Latent:
    order = {s: i for i, s in enumerate(SPACES)}
    if order[lat.space] > order[space]:
        raise EditError(
            f"cannot interpolate in {space!r}: {what} is a {lat.space!r} latent, and latents only convert "
            f"z -> w -> w+ -> s; use space={lat.space!r} (or a later one)"
        )
    return lat.to_space(G, space)


def interpolate(G: Generator, a: Latent, b: Latent, *, frames: int, space: str = "w+",
                method: Optional[Literal["lerp", "slerp"]] = None) -> Latent:
    """``frames`` latents from ``a`` to ``b`` (both included), for a video or a figure.

    Args:
        G: the generator both latents belong to.
        a, b: one image each, in a space that converts to ``space`` (``z`` → ``w`` → ``w+`` → ``s``).
        frames: number of latents returned, ``>= 2``; the first equals ``a``, the last ``b``.
        space: where to interpolate: ``"z"``, ``"w"``, ``"w+"`` or ``"s"``.
        method: ``"slerp"`` (Z only: the directions move along the great circle, the norms
            linearly, so every frame stays a typical Gaussian sample) or ``"lerp"`` (straight
            lines); ``None`` picks slerp in Z and lerp elsewhere.

    Returns:
        A ``frames``-image latent in ``space``. Noise maps are interpolated linearly when both
        ends have them (same layers) and dropped otherwise (frames render with the model's
        stored noise). Labels ``c`` of a conditional model are interpolated in Z.

    Raises:
        EditError: ``frames < 2``, an unknown space or method, slerp outside Z, or a latent that
            cannot be converted to ``space``.
        LatentError: a latent belongs to another generator (or the two to different ones).
        ShapeError: an end holds more than one image.

    Example:
        >>> import torch
        >>> from latentshop.latents import Latent
        >>> from latentshop.models.stylegan2 import Generator
        >>> G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
        ...               synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()
        >>> a, b = Latent.from_z(G, torch.randn(1, 8)), Latent.from_z(G, torch.randn(1, 8))
        >>> z = interpolate(G, a, b, frames=4, space="z")
        >>> z.space, z.meta["interpolation"]["method"], bool(torch.equal(z.tensor[-1], b.tensor[0]))
        ('z', 'slerp', True)
    """
    if space not in SPACES:
        raise EditError(f"unknown space {space!r}; interpolate in one of {', '.join(SPACES)}")
    if method is None or method == "auto":
        method = "slerp" if space == "z" else "lerp"
    if method not in INTERPOLATION_METHODS:
        raise EditError(f"unknown interpolation method {method!r}; use 'lerp' or 'slerp' (or None for the default)")
    if method == "slerp" and space != "z":
        raise EditError(f"slerp is for Gaussian z latents; {space!r} is interpolated linearly: use method='lerp' or space='z'")
    t = _weights(frames)
    a.check(G)
    b.check(G)
    _one(a, "latent a")
    _one(b, "latent b")
    a, b = _in_space(G, a, space, "latent a"), _in_space(G, b, space, "latent b")
    with torch.no_grad():
        ta, tb = a.tensor.float(), b.tensor.float().to(a.tensor.device)
        out = _slerp(ta, tb, t) if method == "slerp" else _lerp(ta, tb, t)
        out[0], out[-1] = ta[0], tb[0]  # the ends are the inputs, bit for bit
        noise = None
        if a.noise is not None and b.noise is not None and set(a.noise) == set(b.noise):
            noise = {k: _lerp(a.noise[k][:1].float(), b.noise[k][:1].float().to(a.noise[k].device), t) for k in a.noise}
        c = None
        if space == "z" and (a.c is not None or b.c is not None):
            if a.c is None or b.c is None:
                raise EditError("one z latent has labels c and the other has none; give both the labels of the conditional model")
            c = _lerp(a.c[:1].float(), b.c[:1].float().to(a.c.device), t)
    meta = {"interpolation": {"method": method, "space": space, "frames": frames}}
    return Latent(out, space, a.generator, noise=noise, c=c, meta=meta)


def path(G: Generator, latents: Sequence[Latent], *, frames_per_segment: int, space: str = "w+",
         method: Optional[Literal["lerp", "slerp"]] = None, loop: bool = False) -> Latent:
    """Frames through several keyframes: :func:`interpolate` from each latent to the next.

    Args:
        G: the generator of every latent.
        latents: two or more one-image latents (the keyframes), in order.
        frames_per_segment: frames from one keyframe to the next, both included (``>= 2``);
            a keyframe shared by two segments appears once, so ``K`` keyframes give
            ``(K - 1) * (frames_per_segment - 1) + 1`` frames.
        space, method: as for :func:`interpolate`.
        loop: also go from the last keyframe back to the first (the first frame is not repeated
            at the end, so the video loops seamlessly).

    Returns:
        One latent holding all the frames. Noise maps are kept only when every keyframe has the
        same noise layers.

    Raises:
        EditError: fewer than two keyframes, or anything :func:`interpolate` refuses.

    Example:
        >>> import torch
        >>> from latentshop.latents import Latent
        >>> from latentshop.models.stylegan2 import Generator
        >>> G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
        ...               synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()
        >>> keys = [Latent.from_z(G, torch.randn(1, 8)) for _ in range(3)]
        >>> len(path(G, keys, frames_per_segment=5)), len(path(G, keys, frames_per_segment=5, loop=True))
        (9, 12)
    """
    keys = list(latents)
    if len(keys) < 2:
        raise EditError(f"a path needs at least two keyframes, got {len(keys)}")
    _weights(frames_per_segment)
    layer_sets = {None if k.noise is None else frozenset(k.noise) for k in keys}
    if len(layer_sets) != 1 or None in layer_sets:
        keys = [k.replace(noise=None) for k in keys]
    pairs = list(zip(keys[:-1], keys[1:]))
    if loop:
        pairs.append((keys[-1], keys[0]))
    segments = []
    for i, (a, b) in enumerate(pairs):
        seg = interpolate(G, a, b, frames=frames_per_segment, space=space, method=method)
        last = i == len(pairs) - 1
        segments.append(seg if last and not loop else seg[: frames_per_segment - 1])
    out = Latent.cat(segments)
    meta = dict(out.meta)
    meta["interpolation"] = {**meta["interpolation"], "frames": len(out), "keyframes": len(keys),
                             "frames_per_segment": frames_per_segment, "loop": loop}
    return out.replace(meta=meta)
