"""Read, convert and write rosinality ``stylegan2-pytorch`` checkpoints.

rosinality/stylegan2-pytorch (``model.py``, ``train.py``) saves ``torch.save`` zip files holding
plain state dicts: ``{'g', 'd', 'g_ema', 'g_optim', 'd_optim', 'args', 'ada_aug_p'}`` from
``train.py``, or ``{'g_ema', 'latent_avg'[, 'g', 'd']}`` from ``convert_weight.py`` and NVIDIA
exporters such as dvschultz's ``export_weights.py``. This module:

* reads them with ``torch.load(..., weights_only=True)`` (only ``argparse.Namespace`` is added to
  the allow-list, for ``train.py``'s ``args``), so nothing in the file is ever executed;
* renames the generator and discriminator state dicts to the NVIDIA stylegan2-ada-pytorch names
  used by :mod:`latentshop.models.stylegan2`, inferring every width from tensor shapes (rosinality
  files carry no architecture description that can be trusted: ``args`` is optional and
  ``train.py`` hard-codes 512/8 there);
* exports NVIDIA-style state back to rosinality names, exactly as ``export_weights.py`` does, and
  writes a checkpoint that rosinality's ``Generator`` loads with ``strict=True``.

The two PyTorch ports use the same weight layout: no spatial flip and no ``mod_bias`` offset is
needed between them (both were applied when each was converted from TensorFlow). rosinality's
up-sampling blur kernels hold the normalized ``[1, 3, 3, 1]`` filter times 4 (the up-sampling
gain), NVIDIA's ``resample_filter`` buffers the normalized filter itself.

Example (needs a checkpoint file)::

    from latentshop.checkpoints.rosinality import read_rosinality, generator_from_rosinality
    ckpt = read_rosinality("stylegan2-ffhq-config-f.pt")
    init_kwargs, state = generator_from_rosinality(ckpt.g_ema, latent_avg=ckpt.latent_avg, path=ckpt.path)
"""

from __future__ import annotations

import argparse
import math
import os
import re
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from latentshop.errors import CheckpointError, ConfigError

__all__ = [
    "RosinalityCheckpoint",
    "read_rosinality",
    "generator_from_rosinality",
    "discriminator_from_rosinality",
    "generator_to_rosinality",
    "discriminator_to_rosinality",
    "write_rosinality",
]

_STATE = "<state>"
_KNOWN_KEYS = ("g_ema", "g", "d", "latent_avg", "args")
_LR_MLP = 0.01  # rosinality Generator's lr_mlp default; train.py never changes it
_MBSTD_GROUP = 4  # rosinality Discriminator.stddev_group (hard-coded)
_MBSTD_FEAT = 1  # rosinality Discriminator.stddev_feat (hard-coded)


def _filter() -> Tensor:
    """The normalized ``[1, 3, 3, 1]`` outer product (NVIDIA ``setup_filter``, rosinality ``make_kernel``)."""
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k[:, None] * k[None, :]
    return k / k.sum()  # [4, 4]; exact in float32 (multiples of 1/64)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RosinalityCheckpoint:
    """The contents of a rosinality ``.pt`` checkpoint, as plain tensors (no modules).

    Attributes:
        path: the file that was read.
        g_ema: the EMA generator's state dict in rosinality names, or ``None``.
        g: the training generator's state dict, or ``None``.
        d: the discriminator's state dict, or ``None``.
        latent_avg: ``[style_dim]`` average W from top-level ``latent_avg`` (written by
            ``convert_weight.py`` and NVIDIA exporters; ``train.py`` files have none), or ``None``.
        args: ``vars()`` of ``train.py``'s ``argparse.Namespace`` (or the dict stored), or ``None``.
            Informational only: stock ``train.py`` records ``latent=512, n_mlp=8`` whatever the
            network, so widths are always read from tensor shapes instead.
        other_keys: the remaining top-level keys in file order, e.g. ``('g_optim', 'd_optim',
            'ada_aug_p')``.
    """

    path: str
    g_ema: dict[str, Tensor] | None
    g: dict[str, Tensor] | None
    d: dict[str, Tensor] | None
    latent_avg: Tensor | None
    args: dict | None
    other_keys: tuple[str, ...]


def _load_error_detail(exc: BaseException) -> str:
    """One informative line out of a ``torch.load`` exception (its messages run to paragraphs).

    The restricted unpickler's advice to retry with ``weights_only=False`` is deliberately dropped.
    """
    text = str(exc)
    match = re.search(r"GLOBAL ([\w.]+)", text)
    if match:
        return f"it refers to {match.group(1)}, which the restricted loader does not allow"
    match = re.search(r"WeightsUnpickler error: ([^\n]*)", text)
    line = match.group(1) if match else ""
    if not line and not text.startswith("Weights only load failed"):
        line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        line = line.split(". ")[0]
    line = line[:200]
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def read_rosinality(path: str | os.PathLike) -> RosinalityCheckpoint:
    """Read a rosinality ``stylegan2-pytorch`` checkpoint without executing anything from it.

    The file is opened with ``torch.load(map_location="cpu", weights_only=True)`` with only
    ``argparse.Namespace`` allowed beyond tensors and containers. Every network present is checked
    against rosinality's key layout and shapes.

    Args:
        path: a ``.pt`` file written by rosinality's ``train.py`` or ``convert_weight.py``, or by
            :func:`write_rosinality`.

    Returns:
        The checkpoint's networks (rosinality names), ``latent_avg``, ``args`` and other keys.

    Raises:
        CheckpointError: the file is missing, not a ``torch.save`` file, truncated, refers to
            anything other than tensors and plain containers (a hostile or foreign pickle), has
            neither ``'g_ema'`` nor ``'g'``, or holds state dicts of another layout.

    Example:
        ckpt = read_rosinality("550000.pt")
        sorted(ckpt.other_keys)  # ['ada_aug_p', 'd_optim', 'g_optim']
    """
    path_str = str(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path_str, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(path_str, "file not found") from None
    except Exception as exc:  # noqa: BLE001 - any failure of the restricted loader is the file's fault
        raise CheckpointError(
            path_str,
            "cannot be read as a rosinality checkpoint with torch.load(weights_only=True) "
            f"({_load_error_detail(exc)}). Expected a zip file written by torch.save holding only "
            "tensors and plain containers; this file is corrupt, truncated, of another format, or "
            "refers to code (nothing from it was executed).",
        ) from None

    if not isinstance(obj, Mapping):
        raise CheckpointError(
            path_str,
            f"top level is a {type(obj).__name__}, expected a dict with 'g_ema' and/or 'g' "
            "(rosinality train.py / convert_weight.py layout)",
        )
    keys = [str(k) for k in obj.keys()]
    if "g_ema" not in obj and "g" not in obj:
        raise CheckpointError(
            path_str,
            f"no 'g_ema' or 'g' key (found {keys[:10]}); not a rosinality generator checkpoint",
        )

    def state(name: str) -> dict[str, Tensor] | None:
        if name not in obj:
            return None
        sd = obj[name]
        if not isinstance(sd, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()
        ):
            raise CheckpointError(
                path_str, f"'{name}' is a {type(sd).__name__}, expected a dict of name -> tensor"
            )
        return dict(sd)

    g_ema, g, d = state("g_ema"), state("g"), state("d")
    style_dims = set()
    for name, sd in (("g_ema", g_ema), ("g", g)):
        if sd is not None:
            try:
                style_dims.add(_parse_ros_generator(sd, _STATE)["style_dim"])
            except CheckpointError as exc:
                raise CheckpointError(path_str, f"'{name}': {exc.reason}") from None
    if d is not None:
        try:
            _parse_ros_discriminator(d, _STATE)
        except CheckpointError as exc:
            raise CheckpointError(path_str, f"'d': {exc.reason}") from None

    latent_avg = obj.get("latent_avg")
    if latent_avg is not None:
        if not isinstance(latent_avg, Tensor):
            raise CheckpointError(
                path_str, f"'latent_avg' is a {type(latent_avg).__name__}, expected a tensor"
            )
        latent_avg = latent_avg.reshape(-1) if latent_avg.ndim == 2 and latent_avg.shape[0] == 1 else latent_avg
        if latent_avg.ndim != 1 or any(latent_avg.shape[0] != s for s in style_dims):
            raise CheckpointError(
                path_str,
                f"'latent_avg' has shape {list(latent_avg.shape)}, expected [style_dim] with "
                f"style_dim {sorted(style_dims)}",
            )

    args = obj.get("args")
    if isinstance(args, argparse.Namespace):
        args = dict(vars(args))
    elif isinstance(args, Mapping):
        args = dict(args)
    else:
        args = None

    return RosinalityCheckpoint(
        path=path_str,
        g_ema=g_ema,
        g=g,
        d=d,
        latent_avg=latent_avg,
        args=args,
        other_keys=tuple(k for k in keys if k not in _KNOWN_KEYS),
    )


# --------------------------------------------------------------------------------------------
# Key tables
# --------------------------------------------------------------------------------------------


def _ros_g_shapes(style_dim: int, n_mlp: int, widths: dict[int, int]) -> OrderedDict[str, tuple]:
    """Every rosinality generator key with its shape, in ``Generator.state_dict()`` order."""
    d = style_dim
    res_list = sorted(widths)
    shapes: OrderedDict[str, tuple] = OrderedDict()
    for i in range(1, n_mlp + 1):
        shapes[f"style.{i}.weight"] = (d, d)
        shapes[f"style.{i}.bias"] = (d,)
    c4 = widths[4]
    shapes["input.input"] = (1, c4, 4, 4)

    def styled(prefix: str, cin: int, cout: int, up: bool) -> None:
        shapes[f"{prefix}.conv.weight"] = (1, cout, cin, 3, 3)
        if up:
            shapes[f"{prefix}.conv.blur.kernel"] = (4, 4)
        shapes[f"{prefix}.conv.modulation.weight"] = (cin, d)
        shapes[f"{prefix}.conv.modulation.bias"] = (cin,)
        shapes[f"{prefix}.noise.weight"] = (1,)
        shapes[f"{prefix}.activate.bias"] = (cout,)

    def to_rgb(prefix: str, cin: int, up: bool) -> None:
        shapes[f"{prefix}.bias"] = (1, 3, 1, 1)
        if up:
            shapes[f"{prefix}.upsample.kernel"] = (4, 4)
        shapes[f"{prefix}.conv.weight"] = (1, 3, cin, 1, 1)
        shapes[f"{prefix}.conv.modulation.weight"] = (cin, d)
        shapes[f"{prefix}.conv.modulation.bias"] = (cin,)

    styled("conv1", c4, c4, False)
    to_rgb("to_rgb1", c4, False)
    cin = c4
    for j, res in enumerate(res_list[1:]):
        styled(f"convs.{2 * j}", cin, widths[res], True)
        styled(f"convs.{2 * j + 1}", widths[res], widths[res], False)
        cin = widths[res]
    for j, res in enumerate(res_list[1:]):
        to_rgb(f"to_rgbs.{j}", widths[res], True)
    shapes["noises.noise_0"] = (1, 1, 4, 4)
    for j, res in enumerate(res_list[1:]):
        shapes[f"noises.noise_{2 * j + 1}"] = (1, 1, res, res)
        shapes[f"noises.noise_{2 * j + 2}"] = (1, 1, res, res)
    return shapes


def _g_layers(res_list: list[int]) -> list[tuple[str, str, int, int, bool]]:
    """Synthesis layers as ``(nvidia prefix, rosinality prefix, noise index, resolution, up)``."""
    layers = [("synthesis.b4.conv1", "conv1", 0, 4, False)]
    for j, res in enumerate(res_list[1:]):
        layers.append((f"synthesis.b{res}.conv0", f"convs.{2 * j}", 2 * j + 1, res, True))
        layers.append((f"synthesis.b{res}.conv1", f"convs.{2 * j + 1}", 2 * j + 2, res, False))
    return layers


def _g_torgbs(res_list: list[int]) -> list[tuple[str, str, int, bool]]:
    """ToRGB layers as ``(nvidia prefix, rosinality prefix, resolution, up)``."""
    out = [("synthesis.b4.torgb", "to_rgb1", 4, False)]
    out += [(f"synthesis.b{r}.torgb", f"to_rgbs.{j}", r, True) for j, r in enumerate(res_list[1:])]
    return out


def _nv_g_shapes(
    w_dim: int, num_layers: int, widths: dict[int, int], *, w_avg: bool
) -> OrderedDict[str, tuple]:
    """Every NVIDIA generator key with its shape, in ``Generator.state_dict()`` order."""
    d = w_dim
    shapes: OrderedDict[str, tuple] = OrderedDict()
    cin = 0
    for res in sorted(widths):
        b = f"synthesis.b{res}"
        cout = widths[res]
        if res == 4:
            shapes[f"{b}.const"] = (cout, 4, 4)
        shapes[f"{b}.resample_filter"] = (4, 4)
        names = [("conv1", cout)] if res == 4 else [("conv0", cin), ("conv1", cout)]
        for name, c in names:
            p = f"{b}.{name}"
            shapes[f"{p}.weight"] = (cout, c, 3, 3)
            shapes[f"{p}.noise_strength"] = ()
            shapes[f"{p}.bias"] = (cout,)
            shapes[f"{p}.resample_filter"] = (4, 4)
            shapes[f"{p}.noise_const"] = (res, res)
            shapes[f"{p}.affine.weight"] = (c, d)
            shapes[f"{p}.affine.bias"] = (c,)
        shapes[f"{b}.torgb.weight"] = (3, cout, 1, 1)
        shapes[f"{b}.torgb.bias"] = (3,)
        shapes[f"{b}.torgb.affine.weight"] = (cout, d)
        shapes[f"{b}.torgb.affine.bias"] = (cout,)
        cin = cout
    if w_avg:
        shapes["mapping.w_avg"] = (d,)
    for i in range(num_layers):
        shapes[f"mapping.fc{i}.weight"] = (d, d)
        shapes[f"mapping.fc{i}.bias"] = (d,)
    return shapes


def _d_blocks(img_resolution: int) -> list[tuple[int, int]]:
    """Discriminator blocks as ``(resolution, rosinality ResBlock index)``, largest first."""
    res_list = [2**i for i in range(int(math.log2(img_resolution)), 2, -1)]
    return [(res, j + 1) for j, res in enumerate(res_list)]


def _ros_d_shapes(widths: dict[int, int]) -> OrderedDict[str, tuple]:
    """Every rosinality discriminator key with its shape, in ``state_dict()`` order."""
    img_res = max(widths)
    shapes: OrderedDict[str, tuple] = OrderedDict()
    shapes["convs.0.0.weight"] = (widths[img_res], 3, 1, 1)
    shapes["convs.0.1.bias"] = (widths[img_res],)
    for res, j in _d_blocks(img_res):
        cin, cout = widths[res], widths[res // 2]
        p = f"convs.{j}"
        shapes[f"{p}.conv1.0.weight"] = (cin, cin, 3, 3)
        shapes[f"{p}.conv1.1.bias"] = (cin,)
        shapes[f"{p}.conv2.0.kernel"] = (4, 4)
        shapes[f"{p}.conv2.1.weight"] = (cout, cin, 3, 3)
        shapes[f"{p}.conv2.2.bias"] = (cout,)
        shapes[f"{p}.skip.0.kernel"] = (4, 4)
        shapes[f"{p}.skip.1.weight"] = (cout, cin, 1, 1)
    c4 = widths[4]
    shapes["final_conv.0.weight"] = (c4, c4 + _MBSTD_FEAT, 3, 3)
    shapes["final_conv.1.bias"] = (c4,)
    shapes["final_linear.0.weight"] = (c4, c4 * 16)
    shapes["final_linear.0.bias"] = (c4,)
    shapes["final_linear.1.weight"] = (1, c4)
    shapes["final_linear.1.bias"] = (1,)
    return shapes


def _d_pairs(img_resolution: int) -> list[tuple[str, str]]:
    """``(nvidia key, rosinality key)`` for every D tensor with a counterpart, NVIDIA order."""
    pairs = []
    for res, j in _d_blocks(img_resolution):
        b, p = f"b{res}", f"convs.{j}"
        if res == img_resolution:
            pairs += [(f"{b}.fromrgb.weight", "convs.0.0.weight"), (f"{b}.fromrgb.bias", "convs.0.1.bias")]
        pairs += [
            (f"{b}.conv0.weight", f"{p}.conv1.0.weight"),
            (f"{b}.conv0.bias", f"{p}.conv1.1.bias"),
            (f"{b}.conv1.weight", f"{p}.conv2.1.weight"),
            (f"{b}.conv1.bias", f"{p}.conv2.2.bias"),
            (f"{b}.conv1.resample_filter", f"{p}.conv2.0.kernel"),
            (f"{b}.skip.weight", f"{p}.skip.1.weight"),
            (f"{b}.skip.resample_filter", f"{p}.skip.0.kernel"),
        ]
    pairs += [
        ("b4.conv.weight", "final_conv.0.weight"),
        ("b4.conv.bias", "final_conv.1.bias"),
        ("b4.fc.weight", "final_linear.0.weight"),
        ("b4.fc.bias", "final_linear.0.bias"),
        ("b4.out.weight", "final_linear.1.weight"),
        ("b4.out.bias", "final_linear.1.bias"),
    ]
    return pairs


def _nv_d_keys(img_resolution: int) -> list[str]:
    """Every NVIDIA discriminator key in ``state_dict()`` order (resnet, unconditional)."""
    keys = []
    for res, _ in _d_blocks(img_resolution):
        b = f"b{res}"
        keys.append(f"{b}.resample_filter")
        if res == img_resolution:
            keys += [f"{b}.fromrgb.weight", f"{b}.fromrgb.bias", f"{b}.fromrgb.resample_filter"]
        for name in ("conv0", "conv1"):
            keys += [f"{b}.{name}.weight", f"{b}.{name}.bias", f"{b}.{name}.resample_filter"]
        keys += [f"{b}.skip.weight", f"{b}.skip.resample_filter"]
    keys += ["b4.conv.weight", "b4.conv.bias", "b4.conv.resample_filter"]
    keys += ["b4.fc.weight", "b4.fc.bias", "b4.out.weight", "b4.out.bias"]
    return keys


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _shape_of(sd: Mapping[str, Tensor], key: str, ndim: int, path: str) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(path, f"missing key '{key}'")
    t = sd[key]
    if not isinstance(t, Tensor) or t.ndim != ndim:
        got = list(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise CheckpointError(path, f"'{key}' is {got}, expected a {ndim}-d tensor")
    return tuple(t.shape)


def _check_layout(
    sd: Mapping[str, Tensor], expected: Mapping[str, tuple], path: str, what: str
) -> None:
    """Raise unless ``sd`` has exactly the keys of ``expected`` with exactly those shapes."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        raise CheckpointError(
            path,
            f"not a {what} state dict: {len(missing)} missing key(s) {missing[:5]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:5]}",
        )
    for key, shape in expected.items():
        t = sd[key]
        if not isinstance(t, Tensor):
            raise CheckpointError(path, f"'{key}' is a {type(t).__name__}, expected a tensor")
        if tuple(t.shape) != tuple(shape):
            raise CheckpointError(
                path, f"'{key}' has shape {list(t.shape)}, expected {list(shape)} ({what})"
            )


def _check_filter(t: Tensor, scale: float, key: str, path: str) -> None:
    """Raise unless ``t`` is the normalized ``[1, 3, 3, 1]`` filter times ``scale``."""
    ref = _filter() * scale
    if tuple(t.shape) != (4, 4) or not torch.allclose(t.detach().float().cpu(), ref, rtol=0, atol=1e-6):
        raise CheckpointError(
            path,
            f"'{key}' is not the [1, 3, 3, 1] blur kernel (normalized, x{scale:g}); only "
            "blur_kernel=[1, 3, 3, 1] (the StyleGAN2 default) can be converted",
        )


def _out(t: Tensor, shape: tuple[int, ...]) -> Tensor:
    """A detached, contiguous copy of ``t`` reshaped to ``shape`` (never a view of the input)."""
    return t.detach().reshape(shape).clone(memory_format=torch.contiguous_format)


def _width_kwargs(widths: dict[int, int]) -> dict[str, Any]:
    """``channel_base``/``channel_max`` reproducing ``widths`` exactly, else ``{'channels': widths}``.

    NVIDIA's width at resolution ``r`` is ``min(channel_base // r, channel_max)``. Taking
    ``channel_max`` = the widest layer loses nothing; ``channel_base`` must then satisfy
    ``channel_base // r == w`` where ``w < channel_max`` and ``channel_base // r >= channel_max``
    elsewhere. The stock-like ``widths[max_res] * max_res`` is preferred when it works.
    """
    cmax = max(widths.values())
    top = max(widths)
    # the smallest base meeting every lower bound is the other candidate worth trying
    lowest = max(w * r if w < cmax else cmax * r for r, w in widths.items())
    for base in (widths[top] * top, lowest):
        if all(min(base // r, cmax) == w for r, w in widths.items()):
            return {"channel_base": base, "channel_max": cmax}
    return {"channels": dict(sorted(widths.items()))}


def _nv_widths(kwargs: Mapping[str, Any], res_list: list[int]) -> dict[int, int]:
    """Widths NVIDIA's constructor (or our ``channels`` extension) would build."""
    channels = kwargs.get("channels")
    if channels is not None:
        channels = {int(k): int(v) for k, v in channels.items()}
        missing = [r for r in res_list if r not in channels]
        if missing:
            raise ConfigError(f"'channels' has no width for resolution(s) {missing}")
        return {r: channels[r] for r in res_list}
    base = int(kwargs.get("channel_base", 32768))
    cmax = int(kwargs.get("channel_max", 512))
    return {r: min(base // r, cmax) for r in res_list}


def _resolution_list(img_resolution: Any, what: str) -> list[int]:
    try:
        res = int(img_resolution)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: img_resolution={img_resolution!r} is not an integer") from None
    if res < 8 or res & (res - 1):
        raise ConfigError(f"{what}: img_resolution={res}, expected a power of two >= 8")
    return [2**i for i in range(2, int(math.log2(res)) + 1)]


# --------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------


def _parse_ros_generator(sd: Mapping[str, Tensor], path: str) -> dict[str, Any]:
    """Infer ``style_dim``, ``n_mlp`` and widths from a rosinality generator state, and validate it."""
    if not isinstance(sd, Mapping):
        raise CheckpointError(path, f"generator state is a {type(sd).__name__}, expected a dict")
    style_idx = sorted(
        int(m.group(1)) for k in sd if (m := re.fullmatch(r"style\.(\d+)\.weight", str(k)))
    )
    if not style_idx:
        raise CheckpointError(
            path,
            "no 'style.1.weight': not a rosinality Generator state dict (expected keys such as "
            "'style.1.weight', 'input.input', 'conv1.conv.weight', 'to_rgb1.bias')",
        )
    n_mlp = len(style_idx)
    if style_idx != list(range(1, n_mlp + 1)):
        raise CheckpointError(path, f"mapping layers are style.{style_idx}, expected style.1..{n_mlp}")
    style_dim = _shape_of(sd, "style.1.weight", 2, path)[1]
    n_up = len({m.group(1) for k in sd if (m := re.match(r"to_rgbs\.(\d+)\.", str(k)))})
    widths = {4: _shape_of(sd, "input.input", 4, path)[1]}
    for j in range(n_up):
        widths[8 * 2**j] = _shape_of(sd, f"convs.{2 * j}.conv.weight", 5, path)[1]
    _check_layout(sd, _ros_g_shapes(style_dim, n_mlp, widths), path, "rosinality Generator")
    for j in range(n_up):
        _check_filter(sd[f"convs.{2 * j}.conv.blur.kernel"], 4.0, f"convs.{2 * j}.conv.blur.kernel", path)
        _check_filter(sd[f"to_rgbs.{j}.upsample.kernel"], 4.0, f"to_rgbs.{j}.upsample.kernel", path)
    return {"style_dim": style_dim, "n_mlp": n_mlp, "widths": widths}


def generator_from_rosinality(
    sd: Mapping[str, Tensor], *, latent_avg: Tensor | None = None, path: str = _STATE
) -> tuple[dict, OrderedDict[str, Tensor]]:
    """Convert a rosinality ``Generator`` state dict to NVIDIA stylegan2-ada-pytorch names.

    ``z_dim = w_dim = style_dim``, the number of mapping layers, ``img_resolution`` and every
    width are read from tensor shapes. Widths become ``channel_base``/``channel_max`` when one pair
    reproduces them exactly, else ``synthesis_kwargs['channels']``.

    Args:
        sd: ``checkpoint['g_ema']`` (or ``['g']``) in rosinality names.
        latent_avg: ``[style_dim]`` average W; becomes ``mapping.w_avg`` (omitted when ``None``).
        path: the file the state came from, for error messages.

    Returns:
        ``(init_kwargs, state)``: keyword arguments of
        :class:`latentshop.models.stylegan2.Generator` and its full state dict (every
        ``resample_filter`` and ``noise_const`` buffer included), in ``state_dict()`` order.

    Raises:
        CheckpointError: the state is not a rosinality generator (missing or unexpected keys,
            inconsistent shapes) or uses a blur kernel other than ``[1, 3, 3, 1]``.

    Example:
        ckpt = read_rosinality("ros.pt")
        kwargs, state = generator_from_rosinality(ckpt.g_ema, latent_avg=ckpt.latent_avg)
        G = Generator(**kwargs); G.load_state_dict(state)
    """
    info = _parse_ros_generator(sd, path)
    d, n_mlp, widths = info["style_dim"], info["n_mlp"], info["widths"]
    res_list = sorted(widths)
    if latent_avg is not None:
        latent_avg = latent_avg.reshape(-1) if latent_avg.ndim == 2 and latent_avg.shape[0] == 1 else latent_avg
        if tuple(latent_avg.shape) != (d,):
            raise CheckpointError(
                path, f"latent_avg has shape {list(latent_avg.shape)}, expected [{d}] (style_dim)"
            )

    shapes = _nv_g_shapes(d, n_mlp, widths, w_avg=latent_avg is not None)
    out: dict[str, Tensor] = {}
    rf = _filter()
    for res in res_list:
        out[f"synthesis.b{res}.resample_filter"] = rf.clone()
    out["synthesis.b4.const"] = _out(sd["input.input"], shapes["synthesis.b4.const"])
    for nv, ros, k, res, _up in _g_layers(res_list):
        out[f"{nv}.weight"] = _out(sd[f"{ros}.conv.weight"], shapes[f"{nv}.weight"])
        out[f"{nv}.noise_strength"] = _out(sd[f"{ros}.noise.weight"], ())
        out[f"{nv}.bias"] = _out(sd[f"{ros}.activate.bias"], shapes[f"{nv}.bias"])
        out[f"{nv}.resample_filter"] = rf.clone()
        out[f"{nv}.noise_const"] = _out(sd[f"noises.noise_{k}"], (res, res))
        out[f"{nv}.affine.weight"] = _out(sd[f"{ros}.conv.modulation.weight"], shapes[f"{nv}.affine.weight"])
        out[f"{nv}.affine.bias"] = _out(sd[f"{ros}.conv.modulation.bias"], shapes[f"{nv}.affine.bias"])
    for nv, ros, _res, _up in _g_torgbs(res_list):
        out[f"{nv}.weight"] = _out(sd[f"{ros}.conv.weight"], shapes[f"{nv}.weight"])
        out[f"{nv}.bias"] = _out(sd[f"{ros}.bias"], (3,))
        out[f"{nv}.affine.weight"] = _out(sd[f"{ros}.conv.modulation.weight"], shapes[f"{nv}.affine.weight"])
        out[f"{nv}.affine.bias"] = _out(sd[f"{ros}.conv.modulation.bias"], shapes[f"{nv}.affine.bias"])
    if latent_avg is not None:
        out["mapping.w_avg"] = _out(latent_avg, (d,))
    for i in range(n_mlp):
        out[f"mapping.fc{i}.weight"] = _out(sd[f"style.{i + 1}.weight"], (d, d))
        out[f"mapping.fc{i}.bias"] = _out(sd[f"style.{i + 1}.bias"], (d,))
    assert set(out) == set(shapes), "internal: NVIDIA key table and conversion disagree"
    state = OrderedDict((k, out[k]) for k in shapes)

    init_kwargs = {
        "z_dim": d,
        "c_dim": 0,
        "w_dim": d,
        "img_resolution": res_list[-1],
        "img_channels": 3,
        "mapping_kwargs": {"num_layers": n_mlp, "lr_multiplier": _LR_MLP},
        "synthesis_kwargs": {
            **_width_kwargs(widths),
            "num_fp16_res": 0,
            "conv_clamp": None,
            "architecture": "skip",
        },
    }
    return init_kwargs, state


def _check_nv_generator_kwargs(init_kwargs: Mapping[str, Any]) -> list[int]:
    """Refuse what rosinality's ``Generator`` cannot express; return the block resolutions."""
    what = "rosinality export"
    if int(init_kwargs.get("c_dim", 0)) != 0:
        raise ConfigError(f"{what}: c_dim={init_kwargs['c_dim']}; rosinality's Generator has no label input")
    if int(init_kwargs.get("img_channels", 3)) != 3:
        raise ConfigError(f"{what}: img_channels={init_kwargs['img_channels']}; rosinality's ToRGB is fixed at 3")
    z_dim, w_dim = init_kwargs.get("z_dim"), init_kwargs.get("w_dim")
    if z_dim != w_dim:
        raise ConfigError(f"{what}: z_dim={z_dim} != w_dim={w_dim}; rosinality uses one style_dim for both")
    mk = dict(init_kwargs.get("mapping_kwargs") or {})
    if mk.get("layer_features") not in (None, w_dim):
        raise ConfigError(f"{what}: mapping layer_features={mk['layer_features']}; rosinality uses style_dim")
    if mk.get("activation", "lrelu") != "lrelu":
        raise ConfigError(f"{what}: mapping activation={mk['activation']!r}; rosinality uses lrelu")
    if not math.isclose(float(mk.get("lr_multiplier", _LR_MLP)), _LR_MLP):
        raise ConfigError(
            f"{what}: mapping lr_multiplier={mk['lr_multiplier']}; rosinality's Generator is built "
            f"with lr_mlp={_LR_MLP}, and the file cannot record another value"
        )
    if int(mk.get("num_layers", 8)) < 1:
        raise ConfigError(f"{what}: mapping num_layers={mk['num_layers']}, expected >= 1")
    sk = dict(init_kwargs.get("synthesis_kwargs") or {})
    if sk.get("conv_clamp") is not None:
        raise ConfigError(
            f"{what}: conv_clamp={sk['conv_clamp']}; rosinality has no activation clamping, so "
            "the exported generator would compute different images"
        )
    if sk.get("architecture", "skip") != "skip":
        raise ConfigError(f"{what}: architecture={sk['architecture']!r}; rosinality's Generator is 'skip' only")
    if list(sk.get("resample_filter", [1, 3, 3, 1])) != [1, 3, 3, 1]:
        raise ConfigError(f"{what}: resample_filter={sk['resample_filter']}; only [1, 3, 3, 1] is supported")
    if sk.get("use_noise", True) is not True:
        raise ConfigError(f"{what}: use_noise=False; rosinality always has noise inputs")
    return _resolution_list(init_kwargs.get("img_resolution"), what)


def generator_to_rosinality(
    init_kwargs: Mapping[str, Any], state: Mapping[str, Tensor]
) -> tuple[dict[str, Tensor], Tensor | None]:
    """Convert an NVIDIA-style generator state to rosinality names (``export_weights.py``'s mapping).

    Args:
        init_kwargs: the generator's constructor arguments (NVIDIA stylegan2-ada-pytorch names,
            optionally with ``synthesis_kwargs['channels']``).
        state: its ``state_dict()`` (NVIDIA names); ``mapping.w_avg`` is optional.

    Returns:
        ``(g_ema, latent_avg)``: a state dict that rosinality's
        ``Generator(img_resolution, w_dim, num_layers)`` (with these widths) loads with
        ``strict=True``, in its ``state_dict()`` order, and ``mapping.w_avg`` (``[w_dim]``) or
        ``None``.

    Raises:
        ConfigError: the architecture is one rosinality cannot express: ``c_dim > 0``,
            ``conv_clamp`` set, architecture other than ``'skip'``, ``img_channels != 3``,
            ``z_dim != w_dim``, or a non-standard mapping network.
        CheckpointError: the state does not match the architecture (missing, unexpected or
            mis-shaped keys, a resample filter other than ``[1, 3, 3, 1]``).

    Example:
        g_ema, latent_avg = generator_to_rosinality(G.init_kwargs, G.state_dict())
        write_rosinality("out.pt", g_ema=g_ema, latent_avg=latent_avg)
    """
    res_list = _check_nv_generator_kwargs(init_kwargs)
    sk = dict(init_kwargs.get("synthesis_kwargs") or {})
    num_layers = int(dict(init_kwargs.get("mapping_kwargs") or {}).get("num_layers", 8))
    d = int(init_kwargs["w_dim"])
    widths = {4: _shape_of(state, "synthesis.b4.const", 3, _STATE)[0]}
    for res in res_list[1:]:
        widths[res] = _shape_of(state, f"synthesis.b{res}.conv0.weight", 4, _STATE)[0]
    expected_widths = _nv_widths(sk, res_list)
    if widths != expected_widths:
        raise CheckpointError(
            _STATE, f"state has widths {widths} but init_kwargs build {expected_widths}"
        )
    has_avg = "mapping.w_avg" in state
    _check_layout(state, _nv_g_shapes(d, num_layers, widths, w_avg=has_avg), _STATE, "NVIDIA Generator")
    for key in state:
        if key.endswith("resample_filter"):
            _check_filter(state[key], 1.0, key, _STATE)

    shapes = _ros_g_shapes(d, num_layers, widths)
    out: dict[str, Tensor] = {}
    for i in range(num_layers):
        out[f"style.{i + 1}.weight"] = _out(state[f"mapping.fc{i}.weight"], (d, d))
        out[f"style.{i + 1}.bias"] = _out(state[f"mapping.fc{i}.bias"], (d,))
    out["input.input"] = _out(state["synthesis.b4.const"], shapes["input.input"])
    for nv, ros, k, _res, up in _g_layers(res_list):
        out[f"{ros}.conv.weight"] = _out(state[f"{nv}.weight"], shapes[f"{ros}.conv.weight"])
        if up:
            out[f"{ros}.conv.blur.kernel"] = _out(state[f"{nv}.resample_filter"] * 4, (4, 4))
        mod = f"{ros}.conv.modulation"
        out[f"{mod}.weight"] = _out(state[f"{nv}.affine.weight"], shapes[f"{mod}.weight"])
        out[f"{mod}.bias"] = _out(state[f"{nv}.affine.bias"], shapes[f"{mod}.bias"])
        out[f"{ros}.noise.weight"] = _out(state[f"{nv}.noise_strength"], (1,))
        out[f"{ros}.activate.bias"] = _out(state[f"{nv}.bias"], shapes[f"{ros}.activate.bias"])
        out[f"noises.noise_{k}"] = _out(state[f"{nv}.noise_const"], shapes[f"noises.noise_{k}"])
    for nv, ros, res, up in _g_torgbs(res_list):
        out[f"{ros}.bias"] = _out(state[f"{nv}.bias"], (1, 3, 1, 1))
        if up:
            # the skip branch up-samples with the block's filter
            out[f"{ros}.upsample.kernel"] = _out(state[f"synthesis.b{res}.resample_filter"] * 4, (4, 4))
        out[f"{ros}.conv.weight"] = _out(state[f"{nv}.weight"], shapes[f"{ros}.conv.weight"])
        mod = f"{ros}.conv.modulation"
        out[f"{mod}.weight"] = _out(state[f"{nv}.affine.weight"], shapes[f"{mod}.weight"])
        out[f"{mod}.bias"] = _out(state[f"{nv}.affine.bias"], shapes[f"{mod}.bias"])
    assert set(out) == set(shapes), "internal: rosinality key table and export disagree"
    g_ema = {k: out[k] for k in shapes}
    latent_avg = _out(state["mapping.w_avg"], (d,)) if has_avg else None
    return g_ema, latent_avg


# --------------------------------------------------------------------------------------------
# Discriminator
# --------------------------------------------------------------------------------------------


def _parse_ros_discriminator(sd: Mapping[str, Tensor], path: str) -> dict[int, int]:
    """Infer the widths of a rosinality ``Discriminator`` from its state and validate it."""
    if not isinstance(sd, Mapping):
        raise CheckpointError(path, f"discriminator state is a {type(sd).__name__}, expected a dict")
    n_res = len({m.group(1) for k in sd if (m := re.match(r"convs\.(\d+)\.conv1\.", str(k)))})
    if n_res < 1:
        raise CheckpointError(
            path,
            "no 'convs.1.conv1.0.weight': not a rosinality Discriminator state dict (expected keys "
            "such as 'convs.0.0.weight', 'convs.1.conv2.1.weight', 'final_linear.1.bias')",
        )
    img_res = 4 * 2**n_res
    widths = {img_res: _shape_of(sd, "convs.0.0.weight", 4, path)[0]}
    for res, j in _d_blocks(img_res):
        widths[res // 2] = _shape_of(sd, f"convs.{j}.conv2.1.weight", 4, path)[0]
    _check_layout(sd, _ros_d_shapes(widths), path, "rosinality Discriminator")
    for _res, j in _d_blocks(img_res):
        for name in ("conv2", "skip"):
            key = f"convs.{j}.{name}.0.kernel"
            _check_filter(sd[key], 1.0, key, path)
    return widths


def discriminator_from_rosinality(
    sd: Mapping[str, Tensor], *, path: str = _STATE
) -> tuple[dict, OrderedDict[str, Tensor]]:
    """Convert a rosinality ``Discriminator`` state dict to NVIDIA stylegan2-ada-pytorch names.

    rosinality's ``ResBlock`` returns ``(conv2(conv1(x)) + skip(x)) / sqrt(2)``; NVIDIA's resnet
    block applies ``gain=sqrt(0.5)`` to ``skip`` and to ``conv1``'s (positively homogeneous)
    activation, which is the same function. The minibatch-stddev layer is rosinality's fixed
    ``stddev_group=4, stddev_feat=1``.

    Args:
        sd: ``checkpoint['d']`` in rosinality names.
        path: the file the state came from, for error messages.

    Returns:
        ``(init_kwargs, state)`` for :class:`latentshop.models.stylegan2.Discriminator`, the
        state in ``state_dict()`` order with every ``resample_filter`` buffer.

    Raises:
        CheckpointError: the state is not a rosinality discriminator, or its blur kernels are not
            ``[1, 3, 3, 1]``.

    Example:
        kwargs, state = discriminator_from_rosinality(read_rosinality("ros.pt").d)
    """
    widths = _parse_ros_discriminator(sd, path)
    img_res = max(widths)
    rf = _filter()
    out: dict[str, Tensor] = {}
    for nv, ros in _d_pairs(img_res):
        if nv.endswith("resample_filter"):
            continue
        out[nv] = _out(sd[ros], tuple(sd[ros].shape))
    state: OrderedDict[str, Tensor] = OrderedDict()
    for key in _nv_d_keys(img_res):
        state[key] = rf.clone() if key.endswith("resample_filter") else out.pop(key)
    assert not out, "internal: D key tables disagree"
    init_kwargs = {
        "c_dim": 0,
        "img_resolution": img_res,
        "img_channels": 3,
        "architecture": "resnet",
        **_width_kwargs(widths),
        "num_fp16_res": 0,
        "conv_clamp": None,
        "block_kwargs": {},
        "mapping_kwargs": {},
        "epilogue_kwargs": {"mbstd_group_size": _MBSTD_GROUP, "mbstd_num_channels": _MBSTD_FEAT},
    }
    return init_kwargs, state


def discriminator_to_rosinality(
    init_kwargs: Mapping[str, Any], state: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """Convert an NVIDIA-style discriminator state to rosinality's ``Discriminator`` names.

    Args:
        init_kwargs: the discriminator's constructor arguments (NVIDIA names, optionally with
            ``channels``).
        state: its ``state_dict()``.

    Returns:
        A state dict that rosinality's ``Discriminator(img_resolution)`` (with these widths) loads
        with ``strict=True``, in its ``state_dict()`` order.

    Raises:
        ConfigError: ``c_dim > 0``, ``conv_clamp`` set, architecture other than ``'resnet'``,
            ``img_channels != 3``, or a minibatch-stddev layer other than group 4 / 1 channel.
        CheckpointError: the state does not match the architecture.

    Example:
        d = discriminator_to_rosinality(D.init_kwargs, D.state_dict())
    """
    what = "rosinality export"
    if int(init_kwargs.get("c_dim", 0)) != 0:
        raise ConfigError(f"{what}: c_dim={init_kwargs['c_dim']}; rosinality's Discriminator has no label input")
    if int(init_kwargs.get("img_channels", 3)) != 3:
        raise ConfigError(f"{what}: img_channels={init_kwargs['img_channels']}; rosinality's fromRGB takes 3")
    if init_kwargs.get("architecture", "resnet") != "resnet":
        raise ConfigError(
            f"{what}: architecture={init_kwargs['architecture']!r}; rosinality's Discriminator is 'resnet' only"
        )
    if init_kwargs.get("conv_clamp") is not None:
        raise ConfigError(f"{what}: conv_clamp={init_kwargs['conv_clamp']}; rosinality has no activation clamping")
    ek = dict(init_kwargs.get("epilogue_kwargs") or {})
    group, feat = ek.get("mbstd_group_size", 4), ek.get("mbstd_num_channels", 1)
    if (group, feat) != (_MBSTD_GROUP, _MBSTD_FEAT):
        raise ConfigError(
            f"{what}: mbstd_group_size={group}, mbstd_num_channels={feat}; rosinality hard-codes "
            f"stddev_group={_MBSTD_GROUP}, stddev_feat={_MBSTD_FEAT}"
        )
    for kw in ("block_kwargs", "epilogue_kwargs"):
        sub = dict(init_kwargs.get(kw) or {})
        if sub.get("activation", "lrelu") != "lrelu":
            raise ConfigError(f"{what}: {kw} activation={sub['activation']!r}; rosinality uses lrelu")
        if list(sub.get("resample_filter", [1, 3, 3, 1])) != [1, 3, 3, 1]:
            raise ConfigError(f"{what}: resample_filter={sub['resample_filter']}; only [1, 3, 3, 1] is supported")
    res_list = _resolution_list(init_kwargs.get("img_resolution"), what)
    img_res = res_list[-1]
    widths = {img_res: _shape_of(state, f"b{img_res}.fromrgb.weight", 4, _STATE)[0]}
    for res, _j in _d_blocks(img_res):
        widths[res // 2] = _shape_of(state, f"b{res}.conv1.weight", 4, _STATE)[0]
    expected_widths = _nv_widths(init_kwargs, res_list)
    if widths != expected_widths:
        raise CheckpointError(_STATE, f"state has widths {widths} but init_kwargs build {expected_widths}")
    ros_shapes = _ros_d_shapes(widths)
    pairs = _d_pairs(img_res)
    nv_shapes = {nv: ros_shapes[ros] for nv, ros in pairs}
    nv_shapes.update({k: (4, 4) for k in _nv_d_keys(img_res) if k.endswith("resample_filter")})
    _check_layout(state, nv_shapes, _STATE, "NVIDIA Discriminator")
    for key in state:
        if key.endswith("resample_filter"):
            _check_filter(state[key], 1.0, key, _STATE)
    out = {ros: _out(state[nv], ros_shapes[ros]) for nv, ros in pairs}
    return {k: out[k] for k in ros_shapes}


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_rosinality(
    path: str | os.PathLike,
    *,
    g_ema: Mapping[str, Tensor],
    latent_avg: Tensor | None = None,
    g: Mapping[str, Tensor] | None = None,
    d: Mapping[str, Tensor] | None = None,
) -> None:
    """Write a rosinality checkpoint ``{'g_ema', 'latent_avg'[, 'g', 'd']}`` atomically.

    The layout is that of ``convert_weight.py`` / ``export_weights.py``; it loads with
    ``torch.load(weights_only=True)`` and into rosinality's ``Generator`` with ``strict=True``. The
    file is written to a temporary name in the same folder and renamed over ``path``, so a reader
    never sees a partial file.

    Args:
        path: destination ``.pt`` file.
        g_ema: generator state in rosinality names (e.g. from :func:`generator_to_rosinality`).
        latent_avg: ``[style_dim]`` average W, or ``None`` (the key is then omitted).
        g: optional non-EMA generator state in rosinality names.
        d: optional discriminator state in rosinality names.

    Raises:
        CheckpointError: a state dict is not in rosinality's layout, or the file cannot be written.

    Example:
        g_ema, avg = generator_to_rosinality(G.init_kwargs, G.state_dict())
        write_rosinality("G.pt", g_ema=g_ema, latent_avg=avg)
    """
    path = Path(path)
    payload: dict[str, Any] = {}
    style_dim = _parse_ros_generator(g_ema, str(path))["style_dim"]
    payload["g_ema"] = {k: _out(v, tuple(v.shape)).cpu() for k, v in g_ema.items()}
    if latent_avg is not None:
        if not isinstance(latent_avg, Tensor) or tuple(latent_avg.shape) != (style_dim,):
            got = list(latent_avg.shape) if isinstance(latent_avg, Tensor) else type(latent_avg).__name__
            raise CheckpointError(path, f"latent_avg is {got}, expected a tensor of shape [{style_dim}]")
        payload["latent_avg"] = _out(latent_avg, (style_dim,)).cpu()
    if g is not None:
        _parse_ros_generator(g, str(path))
        payload["g"] = {k: _out(v, tuple(v.shape)).cpu() for k, v in g.items()}
    if d is not None:
        _parse_ros_discriminator(d, str(path))
        payload["d"] = {k: _out(v, tuple(v.shape)).cpu() for k, v in d.items()}

    folder = path.parent if str(path.parent) else Path(".")
    tmp_name = None
    try:
        with tempfile.NamedTemporaryFile(
            dir=folder, prefix=f".{path.name}.", suffix=".tmp", delete=False
        ) as f:
            tmp_name = f.name
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        raise CheckpointError(path, f"cannot write: {exc}") from None
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
