"""Saving, loading and finding encoders (:mod:`latentshop.models.encoders`).

An encoder is a folder like a latentshop checkpoint: ``model.safetensors`` + ``config.json``. The
config names the kind and constructor arguments, the **fingerprint of the generator** it was
trained for (an encoder means nothing to other weights, so it is refused on any other generator),
its default number of ReStyle passes and what it was measured to do. The bundled encoders live in
``zoo/<model>/encoders/<kind>/``; :func:`find_encoder` finds the one for a generator.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from latentshop.checkpoints.native import (FORMAT_VERSION, WEIGHTS_NAME, jsonable, read_network_config, read_network_weights,
                                           write_folder)
from latentshop.checkpoints.zoo import BUNDLED_DIR
from latentshop.errors import CheckpointError, ConfigError, ShapeError
from latentshop.models.fingerprint import accepts, generator_fingerprint
from latentshop.models.encoders import ENCODER_KINDS, Encoder
from latentshop.models.stylegan2 import Generator

__all__ = ["cached_load_encoder", "find_encoder", "list_encoder_files", "load_encoder", "no_encoder_error", "save_encoder"]

_MAX_WIDTH, _MAX_STAGES, _MAX_RES, _MAX_WS, _MAX_BLOCKS = 2048, 10, 1024, 64, 16


def save_encoder(E: Encoder, path: str | os.PathLike, *, G: Generator, iterations: int = 1,
                 metrics: dict[str, Any] | None = None, info: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write an encoder folder atomically, tied to ``G``'s fingerprint.

    Args:
        E: the encoder.
        path: the folder to write.
        G: the generator it inverts.
        iterations: its default number of passes (ReStyle; 1 for a plain encoder).
        metrics: measured quality (held-out PSNR...).
        info: provenance (data, steps, seconds).
        overwrite: replace an existing folder.
    """
    from latentshop.version import __version__

    config = {
        "format_version": FORMAT_VERSION,
        "library": f"latentshop {__version__}",
        "encoder": {"kind": E.kind, "init_kwargs": jsonable(E.init_kwargs)},
        "generator_fingerprint": generator_fingerprint(G),
        "iterations": int(iterations),
        "metrics": jsonable(metrics or {}),
        "info": jsonable(info or {}),
    }
    return write_folder(path, E.state_dict(), config, overwrite=overwrite)


def _read_config(p: Path) -> dict[str, Any]:
    return read_network_config(p, "encoder", ENCODER_KINDS, "an encoder")[0]


def _check_kwargs(kwargs: dict[str, Any], path: Path) -> None:
    widths = kwargs.get("widths", [])
    ok = (isinstance(widths, list) and 4 <= len(widths) <= _MAX_STAGES
          and all(isinstance(c, int) and 0 < c <= _MAX_WIDTH for c in widths)
          and isinstance(kwargs.get("img_resolution"), int) and 16 <= kwargs["img_resolution"] <= _MAX_RES
          and isinstance(kwargs.get("num_ws"), int) and 0 < kwargs["num_ws"] <= _MAX_WS
          and isinstance(kwargs.get("w_dim"), int) and 0 < kwargs["w_dim"] <= 4 * _MAX_WIDTH
          and isinstance(kwargs.get("style_channels", 96), int) and 0 < kwargs.get("style_channels", 96) <= _MAX_WIDTH
          and isinstance(kwargs.get("blocks", 1), int) and 0 < kwargs.get("blocks", 1) <= _MAX_BLOCKS)
    if not ok:
        raise CheckpointError(path, f"encoder arguments out of range: {kwargs}")


def load_encoder(path: str | os.PathLike, *, G: Generator | None = None, device: str | torch.device | None = None) -> Encoder:
    """Load an encoder folder; with ``G``, refuse it unless it was trained for ``G``.

    Returns the network in eval mode without gradients, with ``.iterations`` (its default passes),
    ``.metrics`` and ``.info`` from the config. ``device`` defaults to ``G``'s (else the CPU).
    """
    p = Path(path)
    config = _read_config(p)
    entry = config["encoder"]
    kwargs = dict(entry["init_kwargs"], kind=entry["kind"])
    _check_kwargs(kwargs, p)
    if G is not None:
        theirs, ours = config.get("generator_fingerprint"), generator_fingerprint(G)
        if not accepts(G, theirs):  # trained for G, or for the base model G was tuned from
            raise CheckpointError(p, f"was trained for another generator (fingerprint {theirs}, this one is {ours}); "
                                     "use that model's encoder or train one with `latentshop train-encoder --model ...`")
        if (kwargs["img_resolution"], kwargs["img_channels"], kwargs["num_ws"], kwargs["w_dim"]) != (
                G.img_resolution, G.img_channels, G.num_ws, G.w_dim):
            raise CheckpointError(p, "its input/output shape does not match the generator")
    try:
        with torch.device("meta"):
            E = Encoder(**kwargs)
    except (TypeError, ValueError, RuntimeError, ShapeError, ConfigError) as e:
        raise CheckpointError(p, f"cannot build a {entry['kind']} encoder from {entry['init_kwargs']}: {e}")
    E.load_state_dict(read_network_weights(p, E.state_dict()), strict=True, assign=True)
    iterations = config.get("iterations", 1)
    E.iterations = iterations if isinstance(iterations, int) and 1 <= iterations <= 100 else 1
    E.metrics = config.get("metrics", {})
    E.info = config.get("info", {})
    E.path = p
    if device is None:
        device = G.mapping.fc0.weight.device if G is not None else "cpu"
    return E.eval().requires_grad_(False).to(device)


def _encoder_roots() -> list[Path]:
    extra = os.environ.get("LATENTSHOP_MODELS")
    roots = [BUNDLED_DIR] + ([Path(extra)] if extra else [])
    return [m / "encoders" for root in roots if root.is_dir() for m in sorted(root.iterdir()) if (m / "encoders").is_dir()]


def list_encoder_files(G: Generator | None = None, *, beside: str | os.PathLike | None = None) -> dict[str, Path]:
    """Encoder folders known here (bundled models' ``encoders/``, ``$LATENTSHOP_MODELS``), by
    ``<model>/<name>``; with ``G``, only those trained for it (or for the model it was tuned from),
    by name (``psp``, ``e4e``...). ``beside``: a model's file or folder whose own encoders
    (``<folder>/encoders/``, ``<file>.encoders/``) come first."""
    found: dict[str, Path] = {}
    roots = _encoder_roots()
    if beside is not None:
        b = Path(beside)
        own = b / "encoders" if b.is_dir() else b.with_name(b.name + ".encoders")
        if own.is_dir():
            roots = [own] + [r for r in roots if r.resolve() != own.resolve()]
    for root in roots:
        for folder in sorted(root.iterdir()):
            try:
                config = _read_config(folder)
            except CheckpointError:
                continue
            if G is None:
                found[f"{root.parent.name}/{folder.name}"] = folder
            elif accepts(G, config.get("generator_fingerprint")):
                found.setdefault(folder.name, folder)
    return found


_LOADED: dict[tuple[str, int, str, str], Encoder] = {}


def cached_load_encoder(path: Path, G: Generator) -> Encoder:
    """An encoder folder loaded once per file version, generator and device (a folder of images or an
    interactive session calls this for every batch)."""
    try:
        stamp = (path / WEIGHTS_NAME).stat().st_mtime_ns
    except OSError:
        return load_encoder(path, G=G)  # says what is missing
    key = (str(path), stamp, generator_fingerprint(G), str(G.mapping.fc0.weight.device))
    if key not in _LOADED:
        if len(_LOADED) >= 8:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = load_encoder(path, G=G)
    return _LOADED[key]


def find_encoder(G: Generator, kind: str, *, encoder: str | os.PathLike | Encoder | None = None) -> Encoder:
    """The encoder of ``kind`` for ``G``: ``encoder`` (a folder or a loaded network) if given, else the
    bundled/registered one trained for ``G``; a clear error says how to get one otherwise."""
    if isinstance(encoder, Encoder):
        if encoder.kind != kind:
            raise ConfigError(f"the given encoder is {encoder.kind}, the method needs {kind}")
        return encoder
    if encoder is not None:
        E = cached_load_encoder(Path(encoder), G)
        if E.kind != kind:
            raise ConfigError(f"{encoder} is a {E.kind} encoder, the method needs {kind}; pick --method {E.kind} or another --encoder")
        return E
    known = list_encoder_files(G)
    if kind in known:
        return cached_load_encoder(known[kind], G)
    raise no_encoder_error(kind, known)


def no_encoder_error(kind: str, have: Any) -> ConfigError:
    """The error for a generator without a ``kind`` encoder (``have``: the kinds it has), saying how to get one."""
    listing = ", ".join(sorted(have)) or "none"
    return ConfigError(f"no {kind} encoder was trained for this generator (encoders for it: {listing}). Train one with "
                       f"`latentshop train-encoder --kind {kind} --model MODEL --outdir runs/{kind}` and pass "
                       f"--encoder runs/{kind}/encoder, or use an optimisation method (--method w+)")
