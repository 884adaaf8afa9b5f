"""latentshop's own checkpoint format: a folder with ``model.safetensors`` and ``config.json``.

``model.safetensors`` holds every network's tensors under a prefix (``G_ema.``, ``G.``, ``D.``);
``config.json`` holds ``format_version``, each network's architecture name and constructor
arguments, and what is known of the training set. Nothing in either file is executable, and the
folder is written atomically (a temporary sibling folder renamed into place).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from latentshop.errors import CheckpointError
from latentshop.runtime import current_umask

__all__ = ["FORMAT_VERSION", "CONFIG_NAME", "WEIGHTS_NAME", "NetworkSpec", "is_native", "read_native", "write_native", "write_folder"]

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ARCHITECTURES = {"generator": "stylegan2.Generator", "discriminator": "stylegan2.Discriminator"}


@dataclass
class NetworkSpec:
    """One network of a checkpoint, in latentshop's vocabulary (NVIDIA's parameter names).

    Attributes:
        kind: ``"generator"`` or ``"discriminator"``.
        init_kwargs: constructor arguments of :class:`~latentshop.models.stylegan2.Generator` /
            :class:`~latentshop.models.stylegan2.Discriminator`.
        state_dict: tensors by parameter/buffer name.
    """

    kind: str
    init_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor] = field(repr=False)


def is_native(path: str | os.PathLike) -> bool:
    """True when ``path`` is a latentshop checkpoint folder (or its ``model.safetensors``/``config.json``)."""
    p = Path(path)
    if p.is_file() and p.name in (WEIGHTS_NAME, CONFIG_NAME):
        p = p.parent
    return p.is_dir() and (p / CONFIG_NAME).is_file()


def _folder(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.parent if p.is_file() and p.name in (WEIGHTS_NAME, CONFIG_NAME) else p


def read_native(path: str | os.PathLike) -> tuple[dict[str, NetworkSpec], dict[str, Any]]:
    """Read a latentshop checkpoint folder.

    Args:
        path: the folder, or its ``config.json`` / ``model.safetensors``.

    Returns:
        ``(networks, config)``: the networks by name (``G_ema``, ``G``, ``D``) and the whole config.

    Raises:
        CheckpointError: a file is missing, unreadable, of a newer format, or inconsistent.
    """
    folder = _folder(path)
    cfg_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    try:
        config = json.loads(cfg_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(folder, f"no {CONFIG_NAME} in this folder; a latentshop checkpoint has {CONFIG_NAME} and {WEIGHTS_NAME}")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(cfg_path, f"cannot read the config ({e})")
    if not isinstance(config, dict) or not isinstance(config.get("networks"), dict):
        raise CheckpointError(cfg_path, "not a latentshop config: it has no 'networks' table")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            cfg_path, f"format_version {version!r} is not supported by this latentshop (reads up to {FORMAT_VERSION}); upgrade latentshop"
        )
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except FileNotFoundError:
        raise CheckpointError(folder, f"{WEIGHTS_NAME} is missing beside {CONFIG_NAME}")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(weights_path, f"cannot read the weights: corrupt or truncated safetensors file ({e})")

    networks: dict[str, NetworkSpec] = {}
    for name, entry in config["networks"].items():
        kind = entry.get("kind") if isinstance(entry, dict) else None
        if kind not in ARCHITECTURES or not isinstance(entry.get("init_kwargs"), dict):
            raise CheckpointError(cfg_path, f"network {name!r} has no valid 'kind'/'init_kwargs' entry")
        prefix = f"{name}."
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not state:
            raise CheckpointError(weights_path, f"no tensors for network {name!r} (expected keys starting with {prefix!r})")
        networks[name] = NetworkSpec(kind, entry["init_kwargs"], state)
    return networks, config


def write_native(
    path: str | os.PathLike,
    networks: dict[str, NetworkSpec],
    *,
    training_set_kwargs: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write networks as a latentshop checkpoint folder, atomically.

    Args:
        path: destination folder (created; its parent must exist or is created).
        networks: by name, e.g. ``{"G_ema": spec, "D": spec}``.
        training_set_kwargs: what is known of the training data (resolution, labels, ...).
        info: free-form provenance (source file, notes).
        overwrite: replace an existing folder.

    Returns:
        The folder written.
    """
    from latentshop.version import __version__

    config = {
        "format_version": FORMAT_VERSION,
        "library": f"latentshop {__version__}",
        "networks": {
            name: {"kind": spec.kind, "architecture": ARCHITECTURES[spec.kind], "init_kwargs": jsonable(spec.init_kwargs)}
            for name, spec in networks.items()
        },
        "training_set_kwargs": jsonable(training_set_kwargs),
        "info": jsonable(info or {}),
    }
    tensors = {f"{name}.{k}": v for name, spec in networks.items() for k, v in spec.state_dict.items()}
    return write_folder(path, tensors, config, overwrite=overwrite)  # checks for an existing folder first


def write_folder(path: str | os.PathLike, tensors: dict[str, torch.Tensor], config: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write ``model.safetensors`` + ``config.json`` as one folder, atomically.

    The files go to a temporary sibling folder that is renamed into place, so a reader never sees a
    half-written checkpoint and an existing one is replaced only once the new one is complete.
    """
    out = Path(path)
    if out.exists() and not overwrite:
        raise CheckpointError(out, "already exists; choose another output or pass overwrite=True (--force)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp / WEIGHTS_NAME),
                  metadata={"format": "pt", "latentshop_format_version": str(FORMAT_VERSION)})
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        mask = current_umask()
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes a private folder; publish it with the usual permissions
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~mask)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def jsonable(obj: Any) -> Any:
    """Plain JSON types from nested dicts/lists/tuples/numbers (dict keys become strings)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


# ---- folders of one network (evaluators, encoders) ------------------------------------------------
def read_network_config(path: str | os.PathLike, key: str, kinds: Any, what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config, config[key])`` of a one-network folder whose ``config[key]`` holds ``kind`` (one of
    ``kinds``) and ``init_kwargs``; a clear :class:`CheckpointError` for a missing, unreadable,
    foreign or too new config. ``what`` names the thing ("an evaluator", "an encoder")."""
    p = Path(path)
    try:
        config = json.loads((p / CONFIG_NAME).read_text())
    except FileNotFoundError:
        raise CheckpointError(p, f"no {CONFIG_NAME} here: not {what} folder")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(p / CONFIG_NAME, f"cannot read the config ({e})")
    entry = config.get(key) if isinstance(config, dict) else None
    if not isinstance(entry, dict) or entry.get("kind") not in kinds or not isinstance(entry.get("init_kwargs"), dict):
        raise CheckpointError(p / CONFIG_NAME, f"not {what} config (kinds: {', '.join(kinds)})")
    if not isinstance(config.get("format_version"), int) or config["format_version"] > FORMAT_VERSION:
        raise CheckpointError(p / CONFIG_NAME, f"format_version {config.get('format_version')!r} is newer than this latentshop reads; upgrade")
    return config, entry


def read_network_weights(path: str | os.PathLike, own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of a one-network folder, checked against the built network's ``own`` state dict:
    the same names and shapes, floating point where ``own`` is, and finite (float32 on return)."""
    p = Path(path)
    try:
        state = load_file(str(p / WEIGHTS_NAME), device="cpu")
    except FileNotFoundError:
        raise CheckpointError(p, f"{WEIGHTS_NAME} is missing beside {CONFIG_NAME}")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(p / WEIGHTS_NAME, f"cannot read the weights: corrupt or truncated safetensors file ({e})")
    if set(own) != set(state):
        raise CheckpointError(p, f"weights do not match the architecture: missing {sorted(set(own) - set(state))[:5]}, "
                                 f"unexpected {sorted(set(state) - set(own))[:5]}")
    for k, v in state.items():
        if v.shape != own[k].shape or v.is_floating_point() != own[k].is_floating_point():
            raise CheckpointError(p, f"tensor {k!r} has shape {tuple(v.shape)} ({v.dtype}), the architecture needs "
                                     f"{tuple(own[k].shape)} ({own[k].dtype})")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(p, f"tensor {k!r} contains NaN or Inf values; the file is corrupt")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
