"""The ``Latent`` type: a point in a generator's latent space, tied to that generator, and its file.

A latent is a tensor plus its space — ``z`` ``[N, z_dim]``, ``w`` ``[N, w_dim]``, ``w+``
``[N, num_ws, w_dim]`` or ``s`` (every modulated layer's style code, concatenated in synthesis
order, ``[N, sum C]``) — the fingerprint of the generator it belongs to, and optional per-image noise
maps (what ``w+noise`` inversion and NVIDIA's projector optimise). It is rendered by
:func:`synthesize`.

Files are ``.npz`` (no pickles: numeric arrays and one JSON string) holding the tensor, the noise
maps and the metadata; :func:`load_latent` refuses a file made for another generator, because a
code only means something to the weights that produced it.

Example:
    >>> import torch
    >>> from latentshop.models.stylegan2 import Generator
    >>> G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3,
    ...               synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()
    >>> lat = Latent.from_z(G, torch.randn(2, 8))
    >>> lat.to_space(G, "w+").tensor.shape
    torch.Size([2, 4, 8])
    >>> synthesize(G, lat).shape
    torch.Size([2, 3, 8, 8])
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from latentshop.fileio import atomic_write_bytes, read_header_npz
from latentshop.errors import ConfigError, LatentshopError, ShapeError
from latentshop.models.fingerprint import generator_fingerprint, generator_lineage
from latentshop.models.stylegan2 import Generator

__all__ = [
    "LATENT_FORMAT_VERSION",
    "SPACES",
    "Latent",
    "LatentError",
    "generator_fingerprint",
    "generator_lineage",
    "load_latent",
    "save_latent",
    "seed_z",
    "synthesize",
]

LATENT_FORMAT_VERSION = 1
SPACES = ("z", "w", "w+", "s")


class LatentError(LatentshopError):
    """A latent file is unreadable, or belongs to a different generator."""


def _style_layers(G: Generator) -> list[tuple[str, int]]:
    synthesis = G.synthesis
    return [(name, synthesis.get_submodule(name).affine.out_features) for name in synthesis.layer_ws]


@dataclass(frozen=True)
class Latent:
    """A batch of latent codes of one generator.

    Args:
        tensor: ``z`` ``[N, z_dim]``, ``w`` ``[N, w_dim]``, ``w+`` ``[N, num_ws, w_dim]`` or
            ``s`` ``[N, sum of style widths]`` (layer order of ``G.synthesis.layer_ws``).
        space: one of :data:`SPACES`.
        generator: :func:`generator_fingerprint` of the generator.
        noise: optional explicit noise maps ``{layer: [N, 1, R, R]}`` (unscaled, as
            ``G.synthesis(noise_mode=...)`` takes them); ``None`` renders with the stored maps.
        c: labels ``[N, c_dim]`` of a conditional generator (used when mapping ``z``).
        meta: JSON-serialisable notes (how it was found, losses, source image names...).
    """

    tensor: torch.Tensor
    space: str
    generator: str
    noise: Mapping[str, torch.Tensor] | None = None
    c: torch.Tensor | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ConfigError(f"unknown latent space {self.space!r}; spaces are {', '.join(SPACES)}")
        want = 3 if self.space == "w+" else 2
        if self.tensor.ndim != want:
            raise ShapeError(f"a {self.space!r} latent has {want} dimensions, got shape {tuple(self.tensor.shape)}")

    def __len__(self) -> int:
        return int(self.tensor.shape[0])

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_z(cls, G: Generator, z: torch.Tensor, c: torch.Tensor | None = None, **meta: Any) -> "Latent":
        _check_width(z, G.z_dim, "z")
        return cls(z.detach().float(), "z", generator_fingerprint(G), c=None if c is None else c.detach().float(), meta=meta)

    @classmethod
    def from_ws(cls, G: Generator, ws: torch.Tensor, *, noise: Mapping[str, torch.Tensor] | None = None, **meta: Any) -> "Latent":
        """A ``w+`` latent from ``ws [N, num_ws, w_dim]`` (or ``w`` from ``[N, w_dim]``)."""
        space = "w" if ws.ndim == 2 else "w+"
        _check_width(ws, G.w_dim, space)
        if space == "w+" and ws.shape[1] != G.num_ws:
            raise ShapeError(f"ws must be [N, {G.num_ws}, {G.w_dim}] for this generator, got {tuple(ws.shape)}")
        return cls(ws.detach().float(), space, generator_fingerprint(G), noise=_detach_noise(noise), meta=meta)

    @classmethod
    def from_styles(cls, G: Generator, styles: Mapping[str, torch.Tensor], *, noise: Mapping[str, torch.Tensor] | None = None,
                    **meta: Any) -> "Latent":
        """An ``s`` latent from style codes as ``G.styles(ws)`` returns them."""
        missing = [name for name, _ in _style_layers(G) if name not in styles]
        if missing:
            raise ShapeError(f"style codes lack layers {missing}")
        flat = torch.cat([styles[name].detach().float() for name, _ in _style_layers(G)], dim=1)
        return cls(flat, "s", generator_fingerprint(G), noise=_detach_noise(noise), meta=meta)

    def replace(self, **changes: Any) -> "Latent":
        return dataclasses.replace(self, **changes)

    # ---- conversion ---------------------------------------------------------------------------
    def check(self, G: Generator) -> None:
        """Raise :class:`LatentError` unless this latent belongs to ``G``: found for ``G`` itself, or for
        the base model ``G`` was tuned from (a pivot renders with its tuned generator; see
        :func:`~latentshop.models.fingerprint.generator_lineage`)."""
        if self.generator not in generator_lineage(G):
            have = generator_fingerprint(G)
            made = self.meta.get("model")
            made = f" ({made})" if made else ""
            raise LatentError(
                f"this latent was found for generator {self.generator}{made}, not for the one in use ({have}); "
                "invert the image again with this model, or render with the model it was made for"
            )

    def ws(self, G: Generator, *, truncation_psi: float = 1.0) -> torch.Tensor:
        """``ws [N, num_ws, w_dim]`` (not defined for ``s`` latents)."""
        self.check(G)
        device = G.mapping.fc0.weight.device
        t = self.tensor.to(device)
        if self.space == "z":
            c = None if self.c is None else self.c.to(device)
            return G.mapping(t, c, truncation_psi=truncation_psi)
        if truncation_psi != 1.0:
            w_avg = G.mapping.w_avg.to(device)
            t = w_avg.lerp(t, truncation_psi)
        if self.space == "w":
            return t.unsqueeze(1).repeat(1, G.num_ws, 1)
        if self.space == "w+":
            return t
        raise ConfigError("an 's' latent has no ws; render it with synthesize() or edit its style codes")

    def styles(self, G: Generator) -> dict[str, torch.Tensor]:
        """Style codes ``{layer: [N, C]}`` of this latent."""
        if self.space != "s":
            return G.styles(self.ws(G))
        self.check(G)
        device = G.mapping.fc0.weight.device
        out, start = {}, 0
        for name, width in _style_layers(G):
            out[name] = self.tensor[:, start:start + width].to(device)
            start += width
        if start != self.tensor.shape[1]:
            raise ShapeError(f"an 's' latent of this generator has {start} values per image, got {self.tensor.shape[1]}")
        return out

    def to_space(self, G: Generator, space: str) -> "Latent":
        """The same images in another space: ``z``→``w``→``w+``→``s`` (never backwards)."""
        order = {s: i for i, s in enumerate(SPACES)}
        if space not in order:
            raise ConfigError(f"unknown latent space {space!r}; spaces are {', '.join(SPACES)}")
        if order[space] < order[self.space]:
            raise ConfigError(f"cannot convert a {self.space!r} latent to {space!r} (the mapping is not invertible)")
        if space == self.space:
            return self
        with torch.no_grad():
            if space == "s":
                return Latent.from_styles(G, self.styles(G), noise=self.noise, **self.meta)
            ws = self.ws(G)
            lat = Latent.from_ws(G, ws if space == "w+" else ws[:, 0], noise=self.noise, **self.meta)
        return lat

    def __getitem__(self, index: int | slice) -> "Latent":
        sl = slice(index, index + 1) if isinstance(index, int) else index
        noise = None if self.noise is None else {k: v[sl] for k, v in self.noise.items()}
        return dataclasses.replace(self, tensor=self.tensor[sl], noise=noise, c=None if self.c is None else self.c[sl])

    @staticmethod
    def cat(latents: "list[Latent]") -> "Latent":
        """Join latents of one generator and space along the batch."""
        if not latents:
            raise ConfigError("nothing to join")
        first = latents[0]
        for lat in latents[1:]:
            if lat.space != first.space or lat.generator != first.generator or (lat.noise is None) != (first.noise is None):
                raise ConfigError("latents of different spaces, generators or noise settings cannot be joined")
        noise = None if first.noise is None else {k: torch.cat([lat.noise[k] for lat in latents]) for k in first.noise}
        c = None if first.c is None else torch.cat([lat.c for lat in latents])
        return dataclasses.replace(first, tensor=torch.cat([lat.tensor for lat in latents]), noise=noise, c=c)


def seed_z(G: Generator, seeds: Sequence[int]) -> torch.Tensor:
    """``z [len(seeds), z_dim]`` on the CPU, row i from ``np.random.RandomState(seeds[i])``, as NVIDIA's
    ``generate.py`` draws it, so seed N gives the same image here as there.

    Example:
        >>> from latentshop.models.stylegan2 import Generator
        >>> G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3,
        ...               synthesis_kwargs=dict(channel_base=64, channel_max=8))
        >>> seed_z(G, [0, 1]).shape
        torch.Size([2, 8])
    """
    return torch.from_numpy(np.stack([np.random.RandomState(int(s) % 2**32).randn(G.z_dim) for s in seeds])).float()


def _check_width(t: torch.Tensor, width: int, what: str) -> None:
    if t.ndim < 2 or t.shape[-1] != width:
        raise ShapeError(f"{what} must be [N, ..., {width}] for this generator, got {tuple(t.shape)}")


def _detach_noise(noise: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
    return None if noise is None else {k: v.detach().float() for k, v in noise.items()}


def synthesize(G: Generator, latent: Latent, *, truncation_psi: float = 1.0, noise_mode: str = "const",
               bf16: bool = False) -> torch.Tensor:
    """Render a latent: ``[N, img_channels, R, R]`` in about ``[-1, 1]``, float32, without gradients.

    The latent's own noise maps are used when it has them; otherwise ``noise_mode``.
    """
    latent.check(G)
    device = G.mapping.fc0.weight.device
    ctx = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    with torch.no_grad():
        noise: Any = noise_mode
        if latent.noise is not None:
            noise = {k: v.to(device) for k, v in latent.noise.items()}
        if latent.space == "s":
            styles = latent.styles(G)
            with ctx:
                return G.synthesis(styles=styles, noise_mode=noise, impl="fast").float()
        ws = latent.ws(G, truncation_psi=truncation_psi)
        with ctx:
            return G.synthesis(ws, noise_mode=noise, impl="fast").float()


# ---- files ------------------------------------------------------------------------------------
def save_latent(latent: Latent, path: str | os.PathLike, *, model: str | None = None) -> Path:
    """Write ``latent`` to ``path`` (``.npz``; atomic). ``model`` records where the generator came from."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    meta = dict(latent.meta)
    if model is not None:
        meta["model"] = str(model)
    header = {
        "format": "latentshop-latent",
        "format_version": LATENT_FORMAT_VERSION,
        "space": latent.space,
        "generator": latent.generator,
        "noise_layers": sorted(latent.noise) if latent.noise is not None else None,
        "meta": meta,
    }
    arrays: dict[str, np.ndarray] = {
        "header": np.array(json.dumps(header, default=_json_default)),
        "latent": latent.tensor.detach().cpu().float().numpy(),
    }
    if latent.c is not None:
        arrays["c"] = latent.c.detach().cpu().float().numpy()
    for name, v in (latent.noise or {}).items():
        arrays[f"noise/{name}"] = v.detach().cpu().float().numpy()
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    return str(obj)


# A latent file of a 1024-px StyleGAN2 with all noise maps is a few MB; refuse absurd sizes early.
MAX_LATENT_FILE_BYTES = 512 * 2**20


def load_latent(path: str | os.PathLike, G: Generator | None = None) -> Latent:
    """Read a latent file; with ``G``, refuse it unless it belongs to ``G``.

    Raises:
        LatentError: not a latentshop latent file, corrupt, or made for another generator.
    """
    path = Path(path)
    header, arrays = read_header_npz(path, max_bytes=MAX_LATENT_FILE_BYTES, error=LatentError, what="latent file")
    if "latent" not in arrays:
        raise LatentError(f"{path}: not a latentshop latent file (no header/latent arrays)")
    try:
        tensor = torch.from_numpy(arrays["latent"].astype(np.float32))
        c = torch.from_numpy(arrays["c"].astype(np.float32)) if "c" in arrays else None
        noise = None
        if header.get("noise_layers") is not None:
            noise = {}
            for name in header["noise_layers"]:
                key = f"noise/{name}"
                if key not in arrays:
                    raise LatentError(f"{path}: noise map {name!r} is missing")
                noise[name] = torch.from_numpy(arrays[key].astype(np.float32))
    except (ValueError, TypeError, AttributeError) as e:
        raise LatentError(f"{path}: not a readable latent file ({e})") from None
    if header.get("format") != "latentshop-latent":
        raise LatentError(f"{path}: not a latentshop latent file")
    if int(header.get("format_version", 0)) > LATENT_FORMAT_VERSION:
        raise LatentError(f"{path}: latent format version {header.get('format_version')} is newer than this latentshop; upgrade it")
    if not torch.isfinite(tensor).all():
        raise LatentError(f"{path}: the latent holds NaN or infinite values")
    try:
        latent = Latent(tensor, str(header["space"]), str(header["generator"]), noise=noise, c=c, meta=dict(header.get("meta") or {}))
    except (ConfigError, ShapeError, KeyError) as e:
        raise LatentError(f"{path}: {e}") from None
    if G is not None:
        try:
            latent.check(G)
        except LatentError as e:
            raise LatentError(f"{path}: {e}") from None
        _check_against(latent, G, path)
    return latent


def _check_against(latent: Latent, G: Generator, path: Path) -> None:
    n = len(latent)
    widths = {"z": (G.z_dim,), "w": (G.w_dim,), "w+": (G.num_ws, G.w_dim), "s": (sum(w for _, w in _style_layers(G)),)}
    if tuple(latent.tensor.shape[1:]) != widths[latent.space]:
        raise LatentError(f"{path}: shape {tuple(latent.tensor.shape)} does not fit this generator's {latent.space!r} space")
    if latent.noise is not None:
        layers = G.synthesis.noise_layers()
        for name, res in layers.items():
            v = latent.noise.get(name)
            if v is None or tuple(v.shape) not in ((n, 1, res, res), (1, 1, res, res)):
                raise LatentError(f"{path}: noise map {name!r} is missing or has the wrong shape")
