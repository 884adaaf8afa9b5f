"""What the editing commands take as input: a saved latent, a seed, or an image (inverted first)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from latentshop.cli.common import console, progress
from latentshop.data.dataset import IMAGE_SUFFIXES, load_image
from latentshop.errors import ConfigError, ImageError
from latentshop.latents import Latent, load_latent
from latentshop.models.stylegan2 import Generator

__all__ = ["Source", "resolve_source", "SOURCE_HELP"]

SOURCE_HELP = "a latent file (.npz from `latentshop invert`), 'seed:N' (a sample of the model), or an image file (inverted first)"


@dataclass
class Source:
    """One input: its latent, a short name, and for images the target and the alignment."""

    latent: Latent
    name: str
    path: Optional[Path] = None
    target: Optional[torch.Tensor] = None  # [C, R, R] in [-1, 1], images only
    face: Any = None  # data.align.AlignedFace with --align
    kind: str = "latent"  # "latent" | "seed" | "image"


def resolve_source(G: Generator, text: str, *, model: str, method: str = "w+", steps: Optional[int] = None,
                   align: bool = False, seed: int = 0, bf16: bool = False, trunc: float = 1.0,
                   quiet: bool = False) -> Source:
    """Turn a command-line input into a :class:`Source`.

    ``seed:N`` (or ``N``) maps ``z`` of seed N (with truncation ``trunc``); a ``.npz`` file is a
    latent (refused if made for another model); anything else must be an image, which is loaded
    (or FFHQ-aligned with ``align``) and inverted with ``method`` (``"auto"``: ``e4e+opt`` when the
    model has an e4e encoder, else ``w+``).
    """
    if method == "auto":
        from latentshop.inversion.encoders import editing_method

        method = editing_method(G)
    m = re.fullmatch(r"(?:seed:)?(\d+)", text.strip())
    path = Path(text)
    if m and not path.exists():
        s = int(m.group(1))
        if G.c_dim:
            raise ConfigError("seed inputs need an unconditional model")
        from latentshop.cli.generate import seed_latents  # generate's mix imports this module

        lat = Latent.from_z(G, seed_latents(G, [s]), seed=s)
        if trunc != 1.0:
            lat = Latent.from_ws(G, lat.ws(G, truncation_psi=trunc), seed=s, truncation_psi=trunc)
        return Source(lat, f"seed{s:04d}", kind="seed")
    if not path.exists():
        raise ConfigError(f"{text}: no such file; give {SOURCE_HELP}")
    if path.suffix == ".npz":
        lat = load_latent(path, G)
        if len(lat) != 1:
            raise ConfigError(f"{path}: holds {len(lat)} latents; editing takes one per input (split the batch with the library)")
        return Source(lat, path.name[:-4], path=path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ImageError(f"{path}: not a latent (.npz) or an image file ({', '.join(sorted(IMAGE_SUFFIXES))})")
    from latentshop.inversion import invert

    res, channels = G.img_resolution, G.img_channels
    face = None
    if align:
        from latentshop.data.align import align_face

        face = align_face(path, res=res, channels=channels)
        a = np.asarray(face.image, dtype=np.uint8).reshape(res, res, -1)
        target = torch.from_numpy(a.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1)
    else:
        target = load_image(path, res=res, channels=channels)
    dev = G.mapping.fc0.weight.device
    with progress() as bar:
        task = bar.add_task(f"inverting {path.name} ({method})", total=None)

        def callback(state: Any) -> None:
            bar.update(task, completed=state.step, total=state.total)

        lat = invert(G, target[None].to(dev), method=method, steps=steps, seed=seed, bf16=bf16, callback=callback)
    if not quiet:
        console.print(f"inverted {path.name} with {method} in {lat.meta.get('seconds', 0):.1f} s")
    return Source(lat.replace(meta={**lat.meta, "source": str(path)}), path.stem, path=path, target=target, face=face, kind="image")
