"""Perceptual (deep-feature) distances between images, for inversion losses and benchmarks.

One interface, :class:`PerceptualDistance` (``forward(a, b, *, mask=None) -> (N,)``), three back-ends
made by :func:`load_perceptual` (names from :func:`list_perceptual`):

- ``mobilenet`` (default): the ImageNet MobileNetV2 shipped with latentshop (ported from the
  quantized TFLite file of google-coral/test_data, :mod:`latentshop.models.mobilenet`). The
  distance follows LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a
  Perceptual Metric", CVPR 2018) without its learned channel weights, which do not exist for this
  network: at the ends of the five stages (output strides 2, 4, 8, 16, 32: ``blocks.0``, ``.2``,
  ``.5``, ``.12``, ``.16``, widths 16, 24, 32, 96, 320) each feature vector is unit-normalised over
  channels, the squared difference is summed over channels (so each layer lies in ``[0, 4]``),
  averaged over positions, and the layers are averaged uniformly.
  Images are resized to ``size`` = 160 px first (bilinear). Measured on 64-px faces (see
  ``docs/perceptual.md``): 160 px costs half of 224 px per image pair on the CPU (22 vs 44 ms
  forward, 79 vs 153 ms forward+backward) and ranks noise/blur/shift distortions like 224 px does
  (Spearman 0.992; 128 px: 0.987; no resize, 64 px: 0.962, where the stride-32 map is 2x2 and the
  network sees faces far smaller than its ImageNet objects); 160 keeps that map at 5x5.
- ``vgg16``: NVIDIA's LPIPS-VGG16 TorchScript file ``vgg16.pt`` (stylegan2-ada-pytorch's
  projector), supplied by the user: called as ``vgg16(img, resize_images=False, return_lpips=True)``
  on images scaled to ``[0, 255]`` (area-downsampled to 256 px when larger, as the projector does),
  distance = squared difference of the returned ``(N, F)`` features summed over ``F``.
- ``discriminator``: the blocks of a given StyleGAN2 :class:`~latentshop.models.stylegan2.Discriminator`
  (the output of every ``b{res}`` block, before the minibatch-dependent epilogue), with the same
  normalised-feature formula; images are resized to the discriminator's resolution and channels.

Images are ``(N, C, H, W)`` in ``[-1, 1]``, ``C`` 1 (repeated to RGB) or 3, any size; gradients flow
to the images (the networks' own parameters are frozen). ``mask (N, 1, H, W)`` in ``[0, 1]`` weights
the positions of each feature map (resized to it by area averaging); the vgg16 back-end returns
flattened features, so there the mask is applied to the pixels instead (both images are set to 0,
mid-gray, outside it).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from latentshop.errors import CheckpointError, ConfigError, ShapeError
from latentshop.models.mobilenet import STAGE_ENDS, ConvLayer, MobileNetV2, dequantize
from latentshop.runtime import resolve_device

__all__ = [
    "PERCEPTUAL_DIR", "VGG16_URL", "DiscriminatorDistance", "MobileNetDistance", "PerceptualDistance",
    "VGG16Distance", "list_perceptual", "load_mobilenet", "load_perceptual", "normalized_feature_distance",
]

PERCEPTUAL_DIR = Path(__file__).resolve().parent.parent / "zoo" / "perceptual"
VGG16_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt"
_VGG16_HOW_TO_GET = (
    f"the vgg16 back-end needs NVIDIA's LPIPS-VGG16 TorchScript file 'vgg16.pt' from {VGG16_URL} . "
    "latentshop downloads nothing: fetch it yourself (loading it runs TorchScript code from the file, so "
    "only use NVIDIA's own) and pass its path, e.g. load_perceptual('vgg16', path='vgg16.pt')"
)
_EPS = 1e-10
_MAX_CLASSES = 100_000


def _check_images(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3) or not x.is_floating_point():
        got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ShapeError(f"{name} must be a float (N, C, H, W) tensor with C 1 or 3, in [-1, 1]; got {got}")
    return x.to(torch.float32)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (antialiased when shrinking); identity when the size already matches."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[2] or size[1] < x.shape[3]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def normalized_feature_distance(fa: Sequence[torch.Tensor], fb: Sequence[torch.Tensor],
                                mask: torch.Tensor | None = None) -> torch.Tensor:
    """LPIPS's formula with uniform weights: per layer, unit-normalise over channels, squared difference
    summed over channels, (masked) mean over positions; then the mean over layers.

    Args:
        fa: feature maps ``(N, C_l, h_l, w_l)`` of the first images, one per layer.
        fb: the same layers for the second images.
        mask: optional ``(N, 1, H, W)`` weights in ``[0, 1]``, area-resized to each layer.

    Returns:
        ``(N,)`` distances in ``[0, 4]``.

    Example:
        >>> f = [torch.randn(2, 8, 4, 4)]
        >>> normalized_feature_distance(f, f).tolist()
        [0.0, 0.0]
    """
    total = 0.0
    for a, b in zip(fa, fb, strict=True):
        a = a.float() * torch.rsqrt(a.float().square().sum(dim=1, keepdim=True) + _EPS)
        b = b.float() * torch.rsqrt(b.float().square().sum(dim=1, keepdim=True) + _EPS)
        d = (a - b).square().sum(dim=1, keepdim=True)  # [N, 1, h, w]
        if mask is None:
            total = total + d.mean(dim=(1, 2, 3))
        else:
            m = F.adaptive_avg_pool2d(mask.to(d), d.shape[2:])  # area resize (exact when sizes divide)
            total = total + (d * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp(min=1e-8)
    return total / len(fa)


class PerceptualDistance(nn.Module):
    """Base class of the perceptual distances: ``forward(a, b, *, mask=None) -> (N,)``.

    Subclasses implement :meth:`features`; the distance is :func:`normalized_feature_distance` of
    the two images' features unless a subclass overrides :meth:`distance`.
    """

    name: str = ""

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of ``(N, C, H, W)`` images in ``[-1, 1]`` (already checked)."""
        raise NotImplementedError

    def distance(self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        n = a.shape[0]
        feats = self.features(torch.cat([a, b]))  # one pass for both images
        return normalized_feature_distance([f[:n] for f in feats], [f[n:] for f in feats], mask)

    def forward(self, a: torch.Tensor, b: torch.Tensor, *, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Distance between ``a`` and ``b``.

        Args:
            a: ``(N, C, H, W)`` in ``[-1, 1]``, ``C`` 1 or 3.
            b: the same shape as ``a`` (``N`` may be 1 to compare every image of ``a`` with one target).
            mask: optional ``(N, 1, H, W)`` (or ``(1, 1, H, W)``) weights in ``[0, 1]`` of the pixels that count.

        Returns:
            ``(N,)`` distances, 0 for identical images.
        """
        a, b = _check_images(a, "a"), _check_images(b, "b")
        if a.shape[1:] != b.shape[1:] or b.shape[0] not in (1, a.shape[0]):
            raise ShapeError(f"a and b must have the same shape (or b a batch of 1), got {tuple(a.shape)} and {tuple(b.shape)}")
        b = b.expand_as(a)
        if a.shape[1] == 1:
            a, b = a.repeat(1, 3, 1, 1), b.repeat(1, 3, 1, 1)
        if mask is not None:
            if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[2:] != a.shape[2:] or mask.shape[0] not in (1, a.shape[0]):
                raise ShapeError(f"mask must be (N, 1, H, W) like the images {tuple(a.shape)}, got {tuple(mask.shape)}")
            mask = mask.to(device=a.device, dtype=torch.float32).expand(a.shape[0], 1, *a.shape[2:])
        return self.distance(a, b, mask)


class MobileNetDistance(PerceptualDistance):
    """LPIPS-like distance on MobileNetV2 stage outputs (see the module docstring).

    Args:
        net: a :class:`~latentshop.models.mobilenet.MobileNetV2` with ImageNet weights (:func:`load_mobilenet`).
        size: the side images are resized to before the network (160 by default; 224 is the trained size).
        layers: the layers compared (default: the ends of the five stages).
    """

    name = "mobilenet"

    def __init__(self, net: MobileNetV2, *, size: int = 160, layers: Sequence[str] | None = None):
        super().__init__()
        if not isinstance(size, int) or not 32 <= size <= 1024:
            raise ConfigError(f"size must be an int in [32, 1024], got {size!r}")
        self.net = net.eval().requires_grad_(False)
        self.size = size
        self.layers = list(layers) if layers is not None else list(STAGE_ENDS.values())
        unknown = [n for n in self.layers if n not in net.layer_names()]
        if unknown or not self.layers:
            raise ConfigError(f"unknown MobileNetV2 layers {unknown or self.layers}; known: {', '.join(net.layer_names())}")

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = _resize(x, (self.size, self.size))
        x = (x * 127.5 + 127.5 - 128.0) * (1.0 / 128.0)  # [-1, 1] -> pixels [0, 255] -> TFLite input
        return list(self.net.features(x, self.layers).values())

    def extra_repr(self) -> str:
        return f"size={self.size}, layers={self.layers}"


class VGG16Distance(PerceptualDistance):
    """NVIDIA's LPIPS-VGG16 TorchScript module behind the common interface (see the module docstring).

    Args:
        vgg16: a module called as ``vgg16(img_255 (N, 3, H, W), resize_images=False, return_lpips=True)``
            returning ``(N, F)`` features whose squared distance is LPIPS.
    """

    name = "vgg16"

    def __init__(self, vgg16: nn.Module, *, path: str = "vgg16.pt"):
        super().__init__()
        self.vgg16 = vgg16.eval()
        for p in self.vgg16.parameters():
            p.requires_grad_(False)
        self.path = path

    def lpips_features(self, x: torch.Tensor) -> torch.Tensor:
        x = (x + 1) * 127.5  # [-1, 1] -> [0, 255], the projector's convention
        if x.shape[2] > 256:
            x = F.interpolate(x, size=(256, 256), mode="area")
        f = self.vgg16(x, resize_images=False, return_lpips=True)
        if not isinstance(f, torch.Tensor) or f.ndim != 2 or f.shape[0] != x.shape[0]:
            got = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise CheckpointError(self.path, f"returned {got} for {x.shape[0]} images; expected (N, F). {_VGG16_HOW_TO_GET}")
        return f

    def distance(self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is not None:  # features are flat: mask the pixels (0 = mid-gray outside the mask)
            a, b = a * mask, b * mask
        n = a.shape[0]
        f = self.lpips_features(torch.cat([a, b]))
        return (f[:n] - f[n:]).float().square().sum(dim=1)


class DiscriminatorDistance(PerceptualDistance):
    """Normalised-feature distance on the blocks of a StyleGAN2 discriminator (see the module docstring).

    Args:
        D: a :class:`~latentshop.models.stylegan2.Discriminator`; a frozen copy is kept, so training
            ``D`` afterwards changes nothing here.
        copy_D: set False to use ``D`` itself (it is then put in eval mode and frozen).
    """

    name = "discriminator"

    def __init__(self, D: nn.Module, *, copy_D: bool = True):
        super().__init__()
        for attr in ("block_resolutions", "img_resolution", "img_channels"):
            if not hasattr(D, attr):
                raise ConfigError(f"the discriminator back-end needs a StyleGAN2 Discriminator, got {type(D).__name__}")
        self.D = (copy.deepcopy(D) if copy_D else D).eval().requires_grad_(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        D = self.D
        x = _resize(x, (D.img_resolution, D.img_resolution))
        if D.img_channels == 1:
            x = x.mean(dim=1, keepdim=True)
        elif D.img_channels != 3:
            raise ConfigError(f"the discriminator back-end supports 1- or 3-channel discriminators, got {D.img_channels}")
        feats, h, img = [], None, x
        for res in D.block_resolutions:
            h, img = getattr(D, f"b{res}")(h, img, force_fp32=True)
            feats.append(h)
        return feats


def _read_config(folder: Path) -> dict:
    try:
        config = json.loads((folder / "config.json").read_text())
    except FileNotFoundError:
        raise CheckpointError(folder, "no config.json here; expected a perceptual-network folder (config.json + model.safetensors)")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(folder / "config.json", f"cannot read the config ({e})")
    net = config.get("network") if isinstance(config, dict) else None
    if not isinstance(net, dict) or net.get("kind") != "mobilenet_v2" or not isinstance(net.get("init_kwargs"), dict):
        raise CheckpointError(folder / "config.json", "not a mobilenet_v2 perceptual-network config")
    if not isinstance(config.get("format_version"), int) or config["format_version"] > 1:
        raise CheckpointError(folder / "config.json", f"format_version {config.get('format_version')!r} is newer than this latentshop reads; upgrade")
    kw = net["init_kwargs"]
    if set(kw) - {"width_multiplier", "num_classes"} or not isinstance(kw.get("num_classes", 1001), int) \
            or not 0 < kw.get("num_classes", 1001) <= _MAX_CLASSES or not 0 < float(kw.get("width_multiplier", 1.0)) <= 4:
        raise CheckpointError(folder / "config.json", f"architecture arguments out of range: {kw}")
    return config


def load_mobilenet(path: str | os.PathLike | None = None, *, device: str | torch.device = "cpu",
                   quantize_activations: bool = False) -> MobileNetV2:
    """Load the shipped (or a converted) MobileNetV2, dequantizing its uint8 weights.

    Args:
        path: a folder written by ``tools/convert_mobilenet.py``; ``None`` for the shipped one.
        device: where the network lives.
        quantize_activations: simulate the TFLite interpreter's 8-bit activations (for conformance
            checks; rounding makes the network non-differentiable).

    Returns:
        The network in eval mode without gradients; ``net.labels`` holds the class names and
        ``net.config`` the folder's config.

    Raises:
        CheckpointError: missing, corrupt or mismatching files (the weights' sha256 is checked).

    Example:
        >>> net = load_mobilenet()
        >>> net.labels[286]
        'Egyptian cat'
    """
    folder = Path(path) if path is not None else PERCEPTUAL_DIR / "mobilenet_v2"
    config = _read_config(folder)
    weights = folder / "model.safetensors"
    try:
        data = weights.read_bytes()
    except OSError as e:
        raise CheckpointError(weights, f"cannot read the weights ({e})")
    expected = config.get("weights", {}).get("sha256")
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise CheckpointError(weights, "sha256 differs from the one in config.json: the file is corrupt or was replaced; reconvert it")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(weights, f"cannot read the weights: corrupt safetensors file ({e})")
    with torch.device("meta"):
        net = MobileNetV2(**config["network"]["init_kwargs"])
    layers = {n: m for n, m in net.named_modules() if isinstance(m, ConvLayer)}
    want = {f"{n}.{k}" for n in layers for k in ("weight_q", "weight_scale", "weight_zero_point", "bias_q", "bias_scale")}
    if set(state) != want:
        raise CheckpointError(weights, f"tensors do not match the architecture: missing {sorted(want - set(state))[:5]}, "
                                       f"unexpected {sorted(set(state) - want)[:5]}")
    dequantized = {}
    for n, layer in layers.items():
        q, s, z = state[f"{n}.weight_q"], state[f"{n}.weight_scale"], state[f"{n}.weight_zero_point"]
        bq, bs = state[f"{n}.bias_q"], state[f"{n}.bias_scale"]
        out = layer.weight.shape[0]
        if (q.dtype != torch.uint8 or tuple(q.shape) != tuple(layer.weight.shape) or bq.dtype != torch.int32
                or tuple(bq.shape) != (out,) or s.numel() not in (1, out) or z.shape != s.shape or bs.numel() not in (1, out)):
            raise CheckpointError(weights, f"{n}: stored tensors {tuple(q.shape)} {q.dtype} / {tuple(bq.shape)} {bq.dtype} "
                                           f"do not fit the layer {tuple(layer.weight.shape)}")
        dequantized[f"{n}.weight"] = dequantize(q, s, z)
        dequantized[f"{n}.bias"] = dequantize(bq, bs, torch.zeros_like(bs))
    for key, t in dequantized.items():
        if not torch.isfinite(t).all():
            raise CheckpointError(weights, f"{key} has non-finite values")
    net.load_state_dict(dequantized, strict=True, assign=True)
    if quantize_activations:
        net.set_activation_quantization(config.get("activation_quantization"))
    net.labels = list(config.get("labels", []))
    net.config = config
    return net.eval().requires_grad_(False).to(resolve_device(device))


def _load_vgg16(path: str | os.PathLike, device: torch.device) -> nn.Module:
    p = Path(path).expanduser()
    if not p.is_file():
        what = "is a folder, not a file" if p.is_dir() else "does not exist"
        raise CheckpointError(p, f"{what}. {_VGG16_HOW_TO_GET}")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=DeprecationWarning)
            module = torch.jit.load(str(p), map_location="cpu")
    except Exception as e:  # torch raises RuntimeError, ValueError or zip errors for a bad file
        raise CheckpointError(p, f"is not a TorchScript file ({type(e).__name__}: {e}). {_VGG16_HOW_TO_GET}") from e
    return module.to(device)


def _make_mobilenet(path: str | os.PathLike | None, device: torch.device, D: nn.Module | None, **options) -> PerceptualDistance:
    return MobileNetDistance(load_mobilenet(path, device=device), **options)


def _make_vgg16(path: str | os.PathLike | None, device: torch.device, D: nn.Module | None, **options) -> PerceptualDistance:
    if path is None:
        raise ConfigError(f"no vgg16.pt given: {_VGG16_HOW_TO_GET}")
    return VGG16Distance(_load_vgg16(path, device), path=str(path), **options)


def _make_discriminator(path: str | os.PathLike | None, device: torch.device, D: nn.Module | None, **options) -> PerceptualDistance:
    if D is None:
        raise ConfigError("the discriminator back-end needs the discriminator: load_perceptual('discriminator', D=D) "
                          "(e.g. D = latentshop.checkpoints.load_discriminator(...))")
    return DiscriminatorDistance(D, **options).to(device)


_BACKENDS: dict[str, Callable[..., PerceptualDistance]] = {
    "discriminator": _make_discriminator,  # DiscriminatorDistance(D)
    "mobilenet": _make_mobilenet,  # MobileNetDistance(load_mobilenet(path), size=160)
    "vgg16": _make_vgg16,  # VGG16Distance(torch.jit.load(path))
}


def list_perceptual() -> list[str]:
    """Names of the perceptual-distance back-ends.

    Example:
        >>> list_perceptual()
        ['discriminator', 'mobilenet', 'vgg16']
    """
    return sorted(_BACKENDS)


def load_perceptual(name_or_path: str | os.PathLike = "mobilenet", *, device: str | torch.device = "cpu",
                    D: nn.Module | None = None, path: str | os.PathLike | None = None, **options) -> PerceptualDistance:
    """Make a perceptual distance by back-end name, or from a file or folder.

    Args:
        name_or_path: ``"mobilenet"`` (default), ``"vgg16"``, ``"discriminator"`` (see
            :func:`list_perceptual`); or a path: a ``.pt`` file is NVIDIA's ``vgg16.pt``, a folder
            is a converted MobileNetV2.
        device: where the network runs (``"auto"``, ``"cpu"``, ``"cuda"``, ...).
        D: the discriminator for the ``discriminator`` back-end.
        path: the file or folder for the named back-end (``vgg16.pt`` is required for ``vgg16``;
            a converted folder replaces the shipped MobileNetV2).
        **options: passed to the back-end's class (e.g. ``size=224`` for mobilenet).

    Returns:
        A :class:`PerceptualDistance` in eval mode with frozen parameters.

    Raises:
        ConfigError: an unknown name (the message lists the known ones), or a missing ``D``/``path``.
        CheckpointError: a file that is missing or unreadable (for vgg16 the message says where to get it).

    Example:
        >>> dist = load_perceptual("mobilenet")
        >>> x = torch.rand(2, 3, 64, 64) * 2 - 1
        >>> dist(x, x).tolist()
        [0.0, 0.0]
    """
    dev = resolve_device(device)
    name = os.fspath(name_or_path)
    if name not in _BACKENDS:
        p = Path(name).expanduser()
        if p.suffix == ".pt" or p.is_file():
            name, path = "vgg16", p
        elif p.is_dir():
            name, path = "mobilenet", p
        else:
            raise ConfigError(f"unknown perceptual back-end {name!r}; known: {', '.join(list_perceptual())} "
                              "(or a path to vgg16.pt or to a converted MobileNetV2 folder)")
    try:
        return _BACKENDS[name](path, dev, D, **options)
    except TypeError as e:
        raise ConfigError(f"bad options for the {name} back-end: {e}") from None
