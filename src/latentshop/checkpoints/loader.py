"""One entry point for every checkpoint format: read, build, load, convert.

Formats are recognised from the file's first bytes, not its name:

* a folder with ``config.json`` + ``model.safetensors`` — latentshop's own format;
* a pickle — an NVIDIA stylegan2-ada-pytorch / stylegan3-repo StyleGAN2 snapshot
  (read by :mod:`latentshop.checkpoints.nvidia`, which executes nothing from the file);
* a ``torch.save`` file (zip or legacy) — a rosinality stylegan2-pytorch checkpoint
  (read by :mod:`latentshop.checkpoints.rosinality` with ``weights_only=True``).

Every reader yields networks in NVIDIA's parameter layout, which is latentshop's own, so
building a module is a strict ``load_state_dict``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latentshop.checkpoints.native import NetworkSpec, is_native, read_native, write_native
from latentshop.errors import CheckpointError, ConfigError
from latentshop.models.stylegan2 import Discriminator, Generator
from latentshop.runtime import resolve_device

__all__ = [
    "Checkpoint",
    "read_checkpoint",
    "build_network",
    "load_generator",
    "load_discriminator",
    "network_from_checkpoint",
    "resolve_checkpoint_path",
    "convert_checkpoint",
    "compute_w_avg",
    "list_checkpoint_formats",
    "W_AVG_SAMPLES",
]

W_AVG_SAMPLES = 10_000  # z samples averaged when a checkpoint carries no w_avg
W_AVG_SEED = 0

_GENERATOR_KEYS = {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs"}
_LEGACY_TORCH_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_NETWORK_ALIASES = {"g_ema": "G_ema", "g": "G", "d": "D", "G_ema": "G_ema", "G": "G", "D": "D"}


@dataclass
class Checkpoint:
    """What a checkpoint file holds, in latentshop's vocabulary.

    Attributes:
        path: the file or folder read.
        format: ``"latentshop"``, ``"nvidia-pickle"`` or ``"rosinality"``.
        networks: ``{"G_ema": NetworkSpec, "G": ..., "D": ...}`` — whichever the file has.
        training_set_kwargs: what the file says of its training data, if anything.
        notes: facts worth telling the user (e.g. a computed ``w_avg``).
    """

    path: str
    format: str
    networks: dict[str, NetworkSpec]
    training_set_kwargs: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def list_checkpoint_formats() -> list[str]:
    """Names of the checkpoint formats latentshop reads."""
    return ["latentshop", "nvidia-pickle", "rosinality"]


def _sniff(path: Path) -> str:
    if is_native(path):
        return "latentshop"
    if path.is_dir():
        raise CheckpointError(path, "is a folder without config.json; expected a latentshop checkpoint folder or a checkpoint file")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        raise CheckpointError(path, "no such file; give the path of a .pkl (NVIDIA), .pt (rosinality) or latentshop folder")
    except OSError as e:
        raise CheckpointError(path, f"cannot be read ({e.strerror or e})")
    if not head:
        raise CheckpointError(path, "is empty (0 bytes); the download or copy was probably interrupted")
    if head.startswith(b"PK\x03\x04"):
        return "rosinality"
    if head[:1] == b"\x80" and head[2:4] == b"\x8a\x0a" and head[4:14] == _LEGACY_TORCH_MAGIC:
        return "rosinality"
    if head[:1] == b"\x80":
        return "nvidia-pickle"
    raise CheckpointError(
        path, "is not a checkpoint latentshop knows: neither a pickle (NVIDIA .pkl), a torch.save file (rosinality .pt) nor a latentshop folder"
    )


def _generator_kwargs(init_kwargs: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """NVIDIA Generator kwargs in latentshop's form (the stylegan3 repo passes synthesis kwargs at top level)."""
    kwargs = {k: v for k, v in init_kwargs.items() if k in _GENERATOR_KEYS}
    synthesis = dict(kwargs.get("synthesis_kwargs") or {})
    for k, v in init_kwargs.items():
        if k not in _GENERATOR_KEYS:
            synthesis[k] = v
    if "fused_modconv_default" in synthesis:
        # stylegan3-repo option choosing grouped vs. activation modulation; numerically equivalent.
        notes.append(f"ignored fused_modconv_default={synthesis.pop('fused_modconv_default')!r} (numerically equivalent)")
    kwargs["synthesis_kwargs"] = synthesis
    kwargs.setdefault("mapping_kwargs", {})
    return kwargs


def _kind_of(class_name: str) -> str | None:
    if class_name.endswith(".Generator"):
        return "generator"
    if class_name.endswith(".Discriminator"):
        return "discriminator"
    return None


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read any supported checkpoint into :class:`Checkpoint` (no module is built).

    Raises:
        CheckpointError: missing, corrupt, hostile or unsupported file — the message names the file.
    """
    p = Path(path)
    fmt = _sniff(p)
    notes: list[str] = []
    if fmt == "latentshop":
        networks, config = read_native(p)
        notes.extend(str(n) for n in (config.get("info") or {}).get("notes", []))
        return Checkpoint(str(p), fmt, networks, config.get("training_set_kwargs"), notes)

    if fmt == "nvidia-pickle":
        from latentshop.checkpoints.nvidia import read_nvidia_pickle

        snap = read_nvidia_pickle(p)
        networks = {}
        for name, rec in snap.networks.items():
            kind = _kind_of(rec.class_name)
            if kind is None:
                raise CheckpointError(p, f"network {name!r} is a {rec.class_name!r}, which latentshop cannot build")
            kwargs = _generator_kwargs(rec.init_kwargs, notes) if kind == "generator" else dict(rec.init_kwargs)
            networks[name] = NetworkSpec(kind, kwargs, dict(rec.state_dict))
        return Checkpoint(str(p), fmt, networks, snap.training_set_kwargs, notes)

    from latentshop.checkpoints import rosinality as ros

    ck = ros.read_rosinality(p)
    networks = {}
    for key in ("g_ema", "g"):
        sd = getattr(ck, key)
        if sd is None:
            continue
        latent_avg = ck.latent_avg if key == "g_ema" else None
        kwargs, state = ros.generator_from_rosinality(sd, latent_avg=latent_avg, path=str(p))
        if "mapping.w_avg" not in state:
            w_dim = int(kwargs["w_dim"])
            G = _build(NetworkSpec("generator", kwargs, {**state, "mapping.w_avg": torch.zeros([w_dim])}), p)
            state["mapping.w_avg"] = compute_w_avg(G)
            notes.append(
                f"{_NETWORK_ALIASES[key]}: the file has no latent_avg; w_avg computed as the mean of "
                f"{W_AVG_SAMPLES} mapped samples (seed {W_AVG_SEED})"
            )
        networks[_NETWORK_ALIASES[key]] = NetworkSpec("generator", kwargs, state)
    if ck.d is not None:
        kwargs, state = ros.discriminator_from_rosinality(ck.d, path=str(p))
        networks["D"] = NetworkSpec("discriminator", kwargs, state)
    if not networks:
        raise CheckpointError(p, "holds no generator or discriminator ('g_ema', 'g' or 'd')")
    training = None
    if ck.args and "size" in ck.args:
        training = {"resolution": ck.args["size"], "path": ck.args.get("path")}
    return Checkpoint(str(p), fmt, networks, training, notes)


_BUILD_ERRORS = (TypeError, ValueError, KeyError, AttributeError, OverflowError, ZeroDivisionError, RuntimeError, ConfigError)


def _build(spec: NetworkSpec, path: Any) -> nn.Module:
    """Build the module on the meta device (no memory, no random init), check the stored tensors
    against it, then adopt them: a hostile or mistaken config cannot make us allocate a huge network."""
    cls = Generator if spec.kind == "generator" else Discriminator
    try:
        with torch.device("meta"):
            net = cls(**spec.init_kwargs)
    except _BUILD_ERRORS as e:
        raise CheckpointError(path, f"cannot build a {cls.__name__} from the stored arguments {spec.init_kwargs}: {e}")
    own = net.state_dict()
    missing = sorted(set(own) - set(spec.state_dict))
    unexpected = sorted(set(spec.state_dict) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            path,
            f"{cls.__name__} state does not match its architecture: missing keys {missing[:8]}"
            f"{'...' if len(missing) > 8 else ''}, unexpected keys {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}",
        )
    state = {}
    for k, v in spec.state_dict.items():
        if not isinstance(v, torch.Tensor) or not v.is_floating_point():
            raise CheckpointError(path, f"tensor {k!r} is not a floating-point tensor ({getattr(v, 'dtype', type(v).__name__)})")
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(path, f"tensor {k!r} has shape {tuple(v.shape)}, the architecture needs {tuple(own[k].shape)}")
        if not torch.isfinite(v).all():
            raise CheckpointError(path, f"tensor {k!r} contains NaN or Inf values; the checkpoint is corrupt")
        state[k] = v.detach().to(device="cpu", dtype=torch.float32).clone()  # own storage, float32 as the modules compute
    net.load_state_dict(state, strict=True, assign=True)
    return net.eval().requires_grad_(False)


def build_network(spec: NetworkSpec, *, device: str | torch.device = "cpu", path: Any = "<checkpoint>") -> nn.Module:
    """Build and strictly load the module a :class:`NetworkSpec` describes (eval mode, no grads)."""
    return _build(spec, path).to(resolve_device(device))


@torch.no_grad()
def compute_w_avg(G: Generator, *, num_samples: int = W_AVG_SAMPLES, seed: int = W_AVG_SEED, batch: int = 1000) -> torch.Tensor:
    """Mean of ``mapping(z)`` over ``num_samples`` fixed Gaussian ``z`` (deterministic for a seed)."""
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros([G.w_dim], dtype=torch.float64)
    device = G.mapping.fc0.weight.device
    for start in range(0, num_samples, batch):
        n = min(batch, num_samples - start)
        z = torch.randn([n, G.z_dim], generator=gen).to(device)
        c = None
        if G.c_dim > 0:
            c = torch.nn.functional.one_hot(torch.randint(G.c_dim, [n], generator=gen), G.c_dim).float().to(device)
        total += G.mapping(z, c, update_w_avg=False)[:, 0].double().sum(0).cpu()
    return (total / num_samples).float()


def _pick(ck: Checkpoint, which: str, kind: str) -> tuple[str, NetworkSpec]:
    name = _NETWORK_ALIASES.get(which)
    if name is None:
        raise ConfigError(f"which={which!r} is not a network name; use 'G_ema', 'G' or 'D'")
    spec = ck.networks.get(name)
    if spec is None or spec.kind != kind:
        have = ", ".join(sorted(ck.networks)) or "nothing"
        raise CheckpointError(ck.path, f"has no {kind} named {name!r} (it holds: {have})")
    return name, spec


def _attach_info(net: nn.Module, ck: Checkpoint, name: str) -> nn.Module:
    net.checkpoint_info = {
        "path": ck.path,
        "format": ck.format,
        "network": name,
        "networks_in_file": sorted(ck.networks),
        "training_set_kwargs": ck.training_set_kwargs,
        "notes": list(ck.notes),
    }
    return net


def resolve_checkpoint_path(path_or_name: str | os.PathLike) -> Path:
    """The file or folder of a checkpoint given by path, or of a model known by name (a clear error otherwise)."""
    p = Path(path_or_name)
    if p.exists():
        return p
    from latentshop.checkpoints.zoo import resolve_model

    return resolve_model(str(path_or_name))


def load_generator(path_or_name: str | os.PathLike, *, device: str | torch.device = "cpu", which: str = "G_ema") -> Generator:
    """Load a StyleGAN2 generator from any supported checkpoint, or a bundled model by name.

    Args:
        path_or_name: a ``.pkl`` (NVIDIA), ``.pt`` (rosinality), latentshop folder, or a model name.
        device: ``"cpu"``, ``"cuda"``, ``"auto"``...
        which: ``"G_ema"`` (the averaged weights, for inference) or ``"G"``.

    Returns:
        A :class:`~latentshop.models.stylegan2.Generator` in eval mode with ``checkpoint_info``.

    Raises:
        CheckpointError: the file cannot be read or holds no such generator.
    """
    return network_from_checkpoint(read_checkpoint(resolve_checkpoint_path(path_or_name)), "generator", which=which, device=device)


def load_discriminator(path_or_name: str | os.PathLike, *, device: str | torch.device = "cpu", which: str = "D") -> Discriminator:
    """Load a StyleGAN2 discriminator (see :func:`load_generator`)."""
    return network_from_checkpoint(read_checkpoint(resolve_checkpoint_path(path_or_name)), "discriminator", which=which,
                                   device=device)


def network_from_checkpoint(ck: Checkpoint, kind: str, *, which: str, device: str | torch.device = "cpu") -> nn.Module:
    """Build the ``kind`` (``"generator"`` / ``"discriminator"``) network ``which`` of a read checkpoint."""
    name, spec = _pick(ck, which, kind)
    return _attach_info(build_network(spec, device=device, path=ck.path), ck, name)


def convert_checkpoint(
    src: str | os.PathLike, dst: str | os.PathLike, *, to: str = "latentshop", force: bool = False
) -> Checkpoint:
    """Convert a checkpoint to latentshop's format (a folder) or to rosinality's ``.pt``.

    Every network is validated by building it before anything is written; the output is written
    atomically. Returns the checkpoint that was read.
    """
    ck = read_checkpoint(resolve_checkpoint_path(src))
    for name, spec in ck.networks.items():
        _build(spec, ck.path)  # fail before writing anything
    out = Path(dst)
    if out.exists() and not force:
        raise CheckpointError(out, "already exists; pass --force to replace it")
    if to == "latentshop":
        info = {"source": os.path.abspath(ck.path), "source_format": ck.format, "notes": ck.notes}
        write_native(out, ck.networks, training_set_kwargs=ck.training_set_kwargs, info=info, overwrite=force)
    elif to == "rosinality":
        from latentshop.checkpoints import rosinality as ros

        if "G_ema" not in ck.networks:
            raise CheckpointError(ck.path, "has no G_ema, which a rosinality checkpoint needs as 'g_ema'")
        g_ema, latent_avg = ros.generator_to_rosinality(ck.networks["G_ema"].init_kwargs, ck.networks["G_ema"].state_dict)
        g = ros.generator_to_rosinality(ck.networks["G"].init_kwargs, ck.networks["G"].state_dict)[0] if "G" in ck.networks else None
        d = ros.discriminator_to_rosinality(ck.networks["D"].init_kwargs, ck.networks["D"].state_dict) if "D" in ck.networks else None
        ros.write_rosinality(out, g_ema=g_ema, latent_avg=latent_avg, g=g, d=d)
    else:
        raise ConfigError(f"unknown target format {to!r}; use 'latentshop' or 'rosinality'")
    return ck
