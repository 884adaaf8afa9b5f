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

The encoder network is an argument (``encoder=``): :func:`latentshop.load_model` finds and loads
the encoders trained for a model (``bundle.encoder("e4e")``), and :mod:`latentshop.pipeline` hands
the right one to the method; nothing here reads a file.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from latentshop.errors import ConfigError
from latentshop.inversion.base import (
    InversionError,
    InversionMethod,
    InversionOptions,
    InversionResult,
    InversionStep,
    is_cancelled,
    prepare_target,
    register_inversion_method,
)
from latentshop.inversion.optimize import optimize_latents
from latentshop.latents import Latent
from latentshop.models.encoders import Encoder
from latentshop.models.stylegan2 import Generator

__all__ = ["ENCODER_METHODS", "encode"]

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


@torch.no_grad()
def encode(
    G: Generator,
    target: torch.Tensor,
    *,
    encoder: Encoder,
    iterations: int | None = 1,
    batch_size: int = 64,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
    **meta: Any,
) -> Latent:
    """Invert ``target`` with an encoder in ``iterations`` passes.

    Args:
        G: the generator.
        target: ``(N, C, R, R)`` in ``[-1, 1]`` at the generator's resolution (1 or 3 channels).
        encoder: the :class:`~latentshop.models.encoders.Encoder` (``bundle.encoder(kind)``).
        iterations: passes (more than 1 needs an encoder trained in ReStyle form; ``None``: the
            encoder's own number, from its file).
        batch_size: images per encoder call (memory bound).
        callback: ``callback(pass, passes, ws)`` after each pass (ws of the whole batch so far).
        **meta: extra facts for the latent's ``meta``.

    Returns:
        A ``w+`` :class:`~latentshop.latents.Latent`; ``meta`` records the encoder, passes and seconds.
    """
    if "kind" in meta:
        raise ConfigError("encode() takes no kind=: the kind is the encoder's own (encoder.kind); pass the encoder of the "
                          "kind you want, e.g. bundle.encoder('psp')")
    if not isinstance(encoder, Encoder):
        raise ConfigError(f"encode() needs an Encoder network, got {type(encoder).__name__}; load one with "
                          "latentshop.load_model(...).encoder(kind) or checkpoints.load_encoder(folder, G=G)")
    E = encoder
    kind = E.kind
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


def _encoded(G: Generator, target: torch.Tensor, opts: InversionOptions, encoder: Encoder, callback: Any,
             cancel: Any) -> Latent:
    """The encoder's code for ``target`` with the method's passes (reporting each pass)."""
    _, default_passes = ENCODER_METHODS[opts.method]
    passes = opts.iterations if opts.iterations is not None else default_passes
    if is_cancelled(cancel):
        raise InversionError("cancelled before the encoder ran")

    def report(k: int, total: int, ws: torch.Tensor) -> None:
        if callback is not None:
            callback(InversionStep("encoder", k, total, {}, 0.0, lambda ws=ws: Latent.from_ws(G, ws, method=opts.method)))

    return encode(G, target, encoder=encoder, iterations=passes, callback=report, method=opts.method, options=opts.to_dict())


def _encoder_only(G: Generator, target: torch.Tensor, opts: InversionOptions, *, encoder: Encoder, callback: Any, cancel: Any,
                  **_: Any) -> InversionResult:
    return InversionResult(_encoded(G, target, opts, encoder, callback, cancel))


def _encoder_then_optimise(G: Generator, target: torch.Tensor, opts: InversionOptions, *, encoder: Encoder, perceptual: Any,
                           mask: Any, callback: Any, cancel: Any, perceptual_name: str) -> InversionResult:
    coded = _encoded(G, target, opts, encoder, callback, cancel)
    lat = optimize_latents(G, target, opts, perceptual=perceptual, mask=mask, callback=callback, cancel=cancel,
                           init=coded.tensor.to(target.device), perceptual_name=perceptual_name)
    lat.meta.update({"encoder": coded.meta["encoder"], "encoder_seconds": coded.meta["seconds"]})
    lat.meta["seconds"] = round(lat.meta.get("seconds", 0.0) + coded.meta["seconds"], 4)
    return InversionResult(lat)


# Encoders: no optimisation steps. The hybrid refines the encoder's code with a short w+ run that
# starts where the encoder landed: no warm-up, no latent noise, w+'s learning rate (best among
# 0.005-0.1 on held-out synthetic faces) and 100 steps, which match w+'s 250 on synthetic and
# lfw-faces test faces in 40 % of its time (50 steps lose 0.5-2 dB; docs/inversion.md).
for _name, (_kind, _passes) in ENCODER_METHODS.items():
    if _name == "e4e+opt":
        register_inversion_method(InversionMethod(
            _name, _encoder_then_optimise,
            InversionOptions(method=_name, steps=100, lr=0.05, lr_rampup=0.0, latent_noise=0.0, loss={"perceptual": 1.0, "mse": 1.0}),
            encoder=_kind, description="ReStyle-e4e code, then a short w+ optimisation"))
    else:
        register_inversion_method(InversionMethod(
            _name, _encoder_only, InversionOptions(method=_name, steps=0, iterations=_passes), encoder=_kind, optimizes=False,
            description=f"{_kind} encoder, " + ("one pass" if _passes == 1 else "ReStyle passes")))
