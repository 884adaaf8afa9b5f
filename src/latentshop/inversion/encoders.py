"""Encoder inversion: pSp, e4e and ReStyle passes, and the hybrid ``e4e+opt``.

Methods (reached through :func:`latentshop.inversion.invert`):

- ``psp`` / ``e4e`` — one pass of the generator's pSp / e4e encoder, from the average latent (and,
  for an encoder trained in ReStyle form, the average image);
- ``restyle-psp`` / ``restyle-e4e`` — ReStyle: ``iterations`` passes (by default the number the
  encoder was trained with, which its file records), each seeing the target and the previous
  reconstruction and adding a residual to the latent;
- ``e4e+opt`` — the ReStyle-e4e code as the starting point of a short ``w+`` optimisation (the
  hybrid of "encoder start, then optimise", e.g. Zhu et al. 2020's in-domain inversion): the
  encoder lands near the answer inside the region edits were fitted on, the optimisation adds the
  detail it missed.

The encoder comes from ``encoder=`` (a folder or a loaded network) or is found among the bundled
ones by the generator's fingerprint (:func:`latentshop.checkpoints.encoders.find_encoder`).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import torch

from latentshop.errors import ConfigError
from latentshop.latents import Latent
from latentshop.models.encoders import Encoder
from latentshop.models.stylegan2 import Generator

__all__ = ["ENCODER_METHODS", "editing_method", "encode"]

#: method -> (encoder kind, passes; ``None``: the encoder's own, the number it was trained with —
#: ReStyle infers with its training passes, and benchmarks/inversion.py finds more passes than that
#: drift for the bundled encoders)
ENCODER_METHODS: dict[str, tuple[str, int | None]] = {
    "psp": ("psp", 1),
    "e4e": ("e4e", 1),
    "restyle-psp": ("psp", None),
    "restyle-e4e": ("e4e", None),
    "e4e+opt": ("e4e", None),
}


def editing_method(G: Generator) -> str:
    """The inversion method for images that are going to be edited: ``e4e+opt`` when an e4e encoder
    was trained for ``G`` (faster than ``w+`` and its codes edit more selectively, see
    docs/encoders.md), else ``w+``."""
    from latentshop.checkpoints.encoders import list_encoder_files

    return "e4e+opt" if "e4e" in list_encoder_files(G) else "w+"


@torch.no_grad()
def encode(
    G: Generator,
    target: torch.Tensor,
    *,
    kind: str = "e4e",
    iterations: int | None = 1,
    encoder: str | os.PathLike | Encoder | None = None,
    batch_size: int = 64,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
    **meta: Any,
) -> Latent:
    """Invert ``target`` with an encoder in ``iterations`` passes.

    Args:
        G: the generator.
        target: ``(N, C, R, R)`` in ``[-1, 1]`` at the generator's resolution (1 or 3 channels).
        kind: ``"psp"`` or ``"e4e"``.
        iterations: passes (more than 1 needs an encoder trained in ReStyle form; ``None``: the
            encoder's own number, from its file).
        encoder: a folder, a loaded :class:`~latentshop.models.encoders.Encoder`, or ``None`` for the
            one bundled for ``G``.
        batch_size: images per encoder call (memory bound).
        callback: ``callback(pass, passes, ws)`` after each pass (ws of the whole batch so far).
        **meta: extra facts for the latent's ``meta``.

    Returns:
        A ``w+`` :class:`~latentshop.latents.Latent`; ``meta`` records the encoder, passes and seconds.
    """
    from latentshop.checkpoints.encoders import find_encoder
    from latentshop.inversion.optimize import prepare_target

    E = find_encoder(G, kind, encoder=encoder)
    if iterations is None:
        iterations = int(getattr(E, "iterations", 1)) if E.restyle else 1
    if iterations < 1:
        raise ConfigError(f"iterations must be >= 1, got {iterations}")
    if iterations > 1 and not E.restyle:
        raise ConfigError(f"this {E.kind} encoder was not trained in ReStyle form: it runs one pass only (--iterations 1)")
    device = G.mapping.fc0.weight.device
    E = E.to(device)
    target = prepare_target(G, target).to(device)
    t0 = time.perf_counter()
    outside = 0.0  # time spent in the callback, not encoding
    chunks = []
    for start in range(0, target.shape[0], batch_size):
        x = target[start: start + batch_size]
        ws, img = E.start_ws(x.shape[0]).to(device), E.start_image(x.shape[0]).to(device)
        for it in range(iterations):
            ws = E(x, ws, img)
            if E.restyle and it < iterations - 1:
                img = G.synthesis(ws, noise_mode="const", impl="fast").float()
            if callback is not None:
                t1 = time.perf_counter()
                callback(it + 1, iterations, ws)
                outside += time.perf_counter() - t1
        chunks.append(ws)
    ws = torch.cat(chunks)
    if not torch.isfinite(ws).all():
        raise ConfigError("the encoder produced NaN or infinite codes: the encoder file or the input is broken")
    seconds = time.perf_counter() - t0 - outside
    info = {"kind": E.kind, "iterations": iterations, "path": str(getattr(E, "path", "")) or None}
    return Latent.from_ws(G, ws, **{"method": meta.pop("method", kind if iterations == 1 else f"restyle-{kind}"),
                                    "encoder": info, "seconds": round(seconds, 4), **meta})
