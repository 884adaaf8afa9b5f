"""What every inversion method shares: options, targets, results, and the registry of methods.

An inversion method is one registration (:func:`register_inversion_method`): a name, its recipe
(:class:`InversionOptions` defaults), the encoder kind it needs if any, and a callable

    run(G, target, opts, *, encoder, perceptual, mask, callback, cancel) -> InversionResult

that gets its assets — the generator, an encoder network, a perceptual network — as arguments and
never reads a file: models and their encoders come from :func:`latentshop.load_model`
(``bundle.encoder(kind)``), and :mod:`latentshop.pipeline` hands them over. A method may return a
*tuned generator* with the latent (pivotal tuning, hypernetworks): :class:`InversionResult`
carries both, and :mod:`latentshop.models.fingerprint` keeps the base model's edits and the pivot
latent usable with it.

:func:`invert` is the library's one entry point (a latent); :func:`run_inversion` is the same with
the whole :class:`InversionResult`.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from latentshop.errors import ConfigError, LatentshopError, ShapeError
from latentshop.latents import Latent
from latentshop.models.fingerprint import generator_fingerprint
from latentshop.models.stylegan2 import Generator
from latentshop.registry import Registry

__all__ = [
    "INVERSION_METHODS",
    "InversionError",
    "InversionMethod",
    "InversionOptions",
    "InversionResult",
    "InversionStep",
    "LOSS_TERMS",
    "check_mask",
    "invert",
    "is_cancelled",
    "list_inversion_methods",
    "method_defaults",
    "parse_loss",
    "perceptual_loss",
    "prepare_target",
    "register_inversion_method",
    "run_inversion",
    "w_stats",
]

LOSS_TERMS = ("mse", "perceptual", "ms_ssim")


class InversionError(LatentshopError):
    """Optimisation failed (e.g. the loss became NaN); ``latent`` holds the last good result."""

    def __init__(self, message: str, latent: Latent | None = None):
        super().__init__(message)
        self.latent = latent


@dataclass(frozen=True)
class InversionOptions:
    """How one inversion method runs; :func:`method_defaults` gives each method's recipe."""

    method: str = "w+"  # "w" | "w+" | "w+noise"
    steps: int = 250  # optimisation steps of the latent
    lr: float = 0.1  # peak Adam learning rate
    betas: tuple[float, float] = (0.9, 0.999)  # Adam betas
    lr_rampup: float = 0.05  # fraction of steps to ramp the learning rate up (0: none)
    lr_rampdown: float = 0.25  # fraction of steps of the final cosine ramp down (0: none)
    latent_noise: float = 0.05  # noise added to w, times w's spread, at step 0
    latent_noise_ramp: float = 0.75  # fraction of steps over which that noise decays (quadratically) to 0
    loss: Mapping[str, float] = field(default_factory=lambda: {"perceptual": 1.0})  # weights of LOSS_TERMS
    optimize_noise: bool = False  # optimise the noise maps with the latent (NVIDIA's projector)
    noise_reg: float = 1e5  # weight of the noise maps' autocorrelation penalty (when optimised)
    noise_steps: int = 0  # w+noise: steps of the second stage (noise maps alone, pixel MSE)
    noise_lr: float = 0.1  # w+noise: learning rate of the second stage
    perceptual_size: int | None = None  # input side of the mobilenet back-end (None: the image's, at most 256, as NVIDIA)
    w_avg_samples: int = 10_000  # z samples for the starting point and the spread of w
    seed: int = 0  # seeds the latent noise and the initial noise maps (image i uses seed + i)
    bf16: bool = False  # bfloat16 autocast for synthesis and the loss networks (faster on AMX CPUs / GPUs)
    iterations: int | None = None  # encoder methods: encoder passes (ReStyle; None: the method's default)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["loss"] = dict(self.loss)
        d["betas"] = list(self.betas)
        return d


@dataclass(frozen=True)
class InversionResult:
    """What an inversion found: the latent and, for methods that tune the generator, that generator.

    Attributes:
        latent: the codes (``w`` / ``w+``, with noise maps for some methods); for a tuning method,
            the pivot, which renders with ``generator``.
        generator: the tuned generator (:func:`latentshop.models.fingerprint.tuned_copy` of the
            model's, so the model's edits apply to it), or ``None``: the model's own renders it.
    """

    latent: Latent
    generator: Generator | None = None

    def generator_for(self, G: Generator) -> Generator:
        """The generator that renders :attr:`latent`: the tuned one, else ``G``."""
        return self.generator if self.generator is not None else G


@dataclass(frozen=True)
class InversionMethod:
    """One registered inversion method (see the module docstring for ``run``'s signature)."""

    name: str
    run: Callable[..., InversionResult]
    defaults: InversionOptions
    encoder: str | None = None  # the encoder kind it needs (``None``: none)
    optimizes: bool = True  # runs optimisation steps (so takes a loss, a perceptual network and a mask)
    description: str = ""


INVERSION_METHODS: Registry[InversionMethod] = Registry("inversion method")


def register_inversion_method(method: InversionMethod) -> InversionMethod:
    """Register an inversion method (once, in the module that implements it)."""
    return INVERSION_METHODS.register(method.name, method)


def list_inversion_methods() -> list[str]:
    """Names of the inversion methods (optimisation, encoders, hybrid).

    Example:
        >>> list_inversion_methods()
        ['e4e', 'e4e+opt', 'psp', 'restyle-e4e', 'restyle-psp', 'w', 'w+', 'w+noise']
    """
    return sorted(INVERSION_METHODS.names())


def method_defaults(method: str) -> InversionOptions:
    """The recipe of ``method``."""
    if method not in INVERSION_METHODS:
        raise ConfigError(f"unknown inversion method {method!r}; methods are {', '.join(list_inversion_methods())}")
    return INVERSION_METHODS.get(method).defaults


def parse_loss(text: str | Mapping[str, float]) -> dict[str, float]:
    """Loss weights from ``"perceptual=1,mse=0.5"`` (a bare name means weight 1).

    Example:
        >>> parse_loss("perceptual,mse=0.5")
        {'perceptual': 1.0, 'mse': 0.5}
    """
    if isinstance(text, Mapping):
        items = list(text.items())
    else:
        items = []
        for part in str(text).replace("+", ",").split(","):
            part = part.strip()
            if not part:
                continue
            name, _, value = part.partition("=")
            try:
                items.append((name.strip().replace("-", "_"), float(value) if value else 1.0))
            except ValueError:
                raise ConfigError(f"cannot read the loss weight in {part!r}; write e.g. 'perceptual=1,mse=0.5'") from None
    out: dict[str, float] = {}
    for name, weight in items:
        if name not in LOSS_TERMS:
            raise ConfigError(f"unknown loss term {name!r}; terms are {', '.join(LOSS_TERMS)}")
        if not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"loss weight of {name!r} must be a finite number >= 0, got {weight}")
        out[name] = float(weight)
    if not any(out.values()):
        raise ConfigError("the loss needs at least one term with a positive weight")
    return out


@dataclass
class InversionStep:
    """What a callback sees after each step."""

    stage: str  # "latent" or "noise"
    step: int  # 1-based within the stage
    total: int  # steps of the stage
    losses: dict[str, torch.Tensor]  # per-image terms, [N] each, plus "total"
    seconds: float  # optimisation time so far (callbacks excluded)
    _latent: Callable[[], Latent] = field(repr=False, default=None)  # type: ignore[assignment]

    def latent(self) -> Latent:
        """The current latent (a copy)."""
        return self._latent()


# ---- targets and statistics -------------------------------------------------------------------
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


#: how far outside [-1, 1] a target may stray before it is refused: a generator's own samples (the
#: usual test targets) overshoot to about ±1.6, while [0, 255] pixels are far beyond
RANGE_TOLERANCE = 1.0


def prepare_target(G: Generator, target: torch.Tensor) -> torch.Tensor:
    """Check and convert targets to ``[N, img_channels, R, R]`` float32.

    Colour targets for a one-channel generator become luma (ITU-R 601, as Pillow), gray targets for
    a colour generator are repeated; the resolution must already be the generator's.

    Values must be in ``[-1, 1]`` (``x / 127.5 - 1`` of 8-bit pixels, as every latentshop loader
    gives; a generator's own samples, which overshoot a little, are accepted up to ``±2``). Images
    in ``[0, 255]`` are refused, and so are batches that look like ``[0, 1]`` images — every image
    without a pixel below mid-grey yet spanning a quarter of the range — because they would give a
    plausible-looking but wrong latent.
    """
    if not isinstance(target, torch.Tensor):
        raise ShapeError(f"the target must be a tensor [N, C, H, W] in [-1, 1], got {type(target).__name__}")
    if target.ndim == 3:
        target = target.unsqueeze(0)
    if target.ndim != 4:
        raise ShapeError(f"the target must be [N, C, H, W], got shape {tuple(target.shape)}")
    n, c, h, w = target.shape
    res = G.img_resolution
    if (h, w) != (res, res):
        raise ShapeError(f"the target is {w}x{h} but the model renders {res}x{res}: resize or align it first")
    target = target.float()
    if not torch.isfinite(target).all():
        raise ShapeError("the target holds NaN or infinite values")
    _check_range(target)
    if c == G.img_channels:
        return target
    if c == 3 and G.img_channels == 1:
        return (target * _LUMA.to(target.device)).sum(1, keepdim=True)
    if c == 1 and G.img_channels == 3:
        return target.repeat(1, 3, 1, 1)
    raise ShapeError(f"the target has {c} channels; this model takes {G.img_channels} (1 or 3 channels can be converted)")


def _check_range(target: torch.Tensor) -> None:
    lo, hi = float(target.min()), float(target.max())
    if lo < -1 - RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        scale = " (it looks like [0, 255] pixels: use x / 127.5 - 1)" if lo >= 0 and hi > 2 else ""
        raise ShapeError(f"the target's values run from {lo:.3g} to {hi:.3g}, outside [-1, 1]{scale}; "
                         "latentshop takes images in [-1, 1] (data.images / pipeline.load_target give them)")
    flat = target.flatten(1)
    mins, spans = flat.min(1).values, flat.max(1).values - flat.min(1).values
    if bool((mins >= 0).all()) and bool((spans >= 0.25).all()):
        raise ShapeError(f"the target's values run from {lo:.3g} to {hi:.3g}: every image lacks the darker half of [-1, 1], "
                         "as [0, 1] images do; convert them with x * 2 - 1 (latentshop takes images in [-1, 1])")


_W_STATS: dict[tuple[str, int, str], tuple[torch.Tensor, float]] = {}


@torch.no_grad()
def w_stats(G: Generator, num_samples: int = 10_000) -> tuple[torch.Tensor, float]:
    """Mean ``w [1, w_dim]`` and spread (root mean squared distance to the mean) of ``num_samples``
    mapped ``z`` drawn with NumPy seed 123, as NVIDIA's projector does. Cached per generator."""
    device = G.mapping.fc0.weight.device
    key = (generator_fingerprint(G), num_samples, str(device))
    if key not in _W_STATS:
        z = torch.from_numpy(np.random.RandomState(123).randn(num_samples, G.z_dim)).float().to(device)
        c = None
        if G.c_dim:
            labels = np.random.RandomState(124).randint(G.c_dim, size=num_samples)
            c = F.one_hot(torch.from_numpy(labels), G.c_dim).float().to(device)
        ws = torch.cat([G.mapping(z[i:i + 1000], None if c is None else c[i:i + 1000])[:, 0] for i in range(0, num_samples, 1000)])
        w_avg = ws.mean(0, keepdim=True)
        w_std = float(((ws - w_avg).square().sum() / num_samples) ** 0.5)
        _W_STATS[key] = (w_avg, w_std)
    w_avg, w_std = _W_STATS[key]
    return w_avg.clone(), w_std


# ---- assets -------------------------------------------------------------------------------------
def perceptual_loss(G: Generator, perceptual: str | torch.nn.Module = "mobilenet", *, D: torch.nn.Module | None = None,
                    size: int | None = None) -> torch.nn.Module:
    """The perceptual distance :func:`invert` uses for ``G``: a back-end name made into a module.

    The ``mobilenet`` back-end sees images at their own size (at most 256; ``size`` overrides), as
    NVIDIA's projector feeds its VGG; a module is returned as it is.
    """
    device = G.mapping.fc0.weight.device
    if isinstance(perceptual, torch.nn.Module):
        return perceptual.to(device)
    from latentshop.metrics.perceptual import load_perceptual

    options = {"size": size or max(32, min(G.img_resolution, 256))} if str(perceptual) == "mobilenet" else {}
    return load_perceptual(str(perceptual), device=device, D=D, **options)


def check_mask(mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A mask ``[N or 1, 1, R, R]`` with values in ``[0, 1]`` that keeps at least one pixel, as float32.

    Raises:
        ShapeError: another shape, values outside ``[0, 1]`` (masks are not clamped), NaNs, or an
            all-zero mask (nothing would count).
    """
    n = target.shape[0]
    if not isinstance(mask, torch.Tensor):
        raise ShapeError(f"the mask must be a tensor [N or 1, 1, R, R] in [0, 1], got {type(mask).__name__}")
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[2:] != target.shape[2:] or mask.shape[0] not in (1, n):
        raise ShapeError(f"mask must be [N or 1, 1, {target.shape[2]}, {target.shape[3]}], got {tuple(mask.shape)}")
    mask = mask.float()
    if not torch.isfinite(mask).all():
        raise ShapeError("the mask holds NaN or infinite values")
    lo, hi = float(mask.min()), float(mask.max())
    if lo < 0 or hi > 1:
        raise ShapeError(f"the mask's values run from {lo:.3g} to {hi:.3g}; a mask is in [0, 1] (1: the pixel counts). "
                         "Scale it first (a 0-255 grey image: / 255)")
    if (mask.flatten(1).amax(1) == 0).any():
        raise ShapeError("the mask is all zero for some image: no pixel would count")
    return mask


def is_cancelled(cancel: Any) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


# ---- the entry points ---------------------------------------------------------------------------
def invert(G: Generator, target: torch.Tensor, **kwargs: Any) -> Latent:
    """Find latents whose renderings match ``target`` (see :func:`run_inversion` for the arguments).

    Returns:
        A :class:`~latentshop.latents.Latent` (``w`` or ``w+``, with noise maps for ``w`` and
        ``w+noise``) whose ``meta`` records the method, options, final losses and seconds.

    Raises:
        InversionError: the loss became NaN/inf; ``.latent`` is the last finite state.
        ConfigError: the method tunes the generator (use :func:`run_inversion`, which returns it).
    """
    result = run_inversion(G, target, **kwargs)
    if result.generator is not None:
        raise ConfigError(f"{result.latent.meta.get('method')} tunes the generator: call run_inversion() "
                          "(or pipeline.invert_photo), which returns the tuned generator with the latent")
    return result.latent


def run_inversion(
    G: Generator,
    target: torch.Tensor,
    *,
    method: str | None = None,
    steps: int | None = None,
    lr: float | None = None,
    loss: str | Mapping[str, float] | None = None,
    perceptual: str | torch.nn.Module = "mobilenet",
    D: torch.nn.Module | None = None,
    mask: torch.Tensor | None = None,
    options: InversionOptions | None = None,
    encoder: torch.nn.Module | None = None,
    callback: Callable[[InversionStep], None] | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    **overrides: Any,
) -> InversionResult:
    """Find latents whose renderings match ``target`` with a registered method.

    Args:
        G: the generator (its device is used; it is not modified).
        target: ``[N, C, R, R]`` (or ``[C, R, R]``) in ``[-1, 1]`` at the generator's resolution;
            1 or 3 channels (converted to the model's).
        method: one of :func:`list_inversion_methods` (default ``"w+"``).
        steps: latent steps (default: the method's recipe).
        lr: peak learning rate (default: the method's recipe).
        loss: term weights, e.g. ``"perceptual=1,mse=1"`` (see :data:`LOSS_TERMS`).
        perceptual: perceptual back-end name (``"mobilenet"``, ``"vgg16:PATH"``, ``"discriminator"``)
            or a module ``(a, b) -> [N]``.
        D: the discriminator, for the ``"discriminator"`` back-end.
        mask: ``[N or 1, 1, R, R]`` in ``[0, 1]``: pixels that count (``None``: all).
        options: a full :class:`InversionOptions` (``method``/``steps``/... override its fields).
        encoder: the encoder network for methods that need one (``bundle.encoder("e4e")`` of
            :func:`latentshop.load_model`; a clear error when it is missing).
        callback: called after every step with an :class:`InversionStep`.
        cancel: an Event (or a callable) that stops the run early; the latent so far is returned with
            ``meta["cancelled"] = True``.
        **overrides: any other :class:`InversionOptions` field (``seed``, ``bf16``, ``noise_steps``...).

    Returns:
        An :class:`InversionResult`.
    """
    if options is None:
        opts = method_defaults(method or "w+")
    else:
        opts = options if method is None else replace(options, method=method)
    changes: dict[str, Any] = dict(overrides)
    if steps is not None:
        changes["steps"] = steps
    if lr is not None:
        changes["lr"] = lr
    if loss is not None:
        changes["loss"] = parse_loss(loss)
    unknown = [k for k in changes if k not in InversionOptions.__dataclass_fields__]
    if unknown:
        raise ConfigError(f"unknown inversion option(s) {unknown}; options are {sorted(InversionOptions.__dataclass_fields__)}")
    opts = replace(opts, **changes)
    method_defaults(opts.method)  # validates the name
    entry = INVERSION_METHODS.get(opts.method)
    opts = replace(opts, loss=parse_loss(opts.loss))
    if opts.steps < 0 or opts.noise_steps < 0 or (opts.steps + opts.noise_steps == 0 and entry.optimizes):
        raise ConfigError(f"steps must be >= 0 with at least one step in all, got {opts.steps} (+{opts.noise_steps} noise steps)")
    if not (opts.lr > 0 and math.isfinite(opts.lr)):
        raise ConfigError(f"lr must be a positive number, got {opts.lr}")
    device = G.mapping.fc0.weight.device
    target = prepare_target(G, target).to(device)
    if mask is not None:
        if not entry.optimizes:
            raise ConfigError(f"a mask needs an optimisation method; {opts.method} encodes the whole image (try e4e+opt or w+)")
        mask = check_mask(mask, target).to(device)
    if entry.encoder is not None:
        if encoder is None:
            raise ConfigError(f"{opts.method} needs a {entry.encoder} encoder: pass encoder=bundle.encoder({entry.encoder!r}) "
                              "of latentshop.load_model(...), or use pipeline.invert_photo, which takes it from the model")
        if getattr(encoder, "kind", entry.encoder) != entry.encoder:
            raise ConfigError(f"the given encoder is {encoder.kind}, {opts.method} needs {entry.encoder}")
    net = None
    if entry.optimizes and opts.loss.get("perceptual", 0) > 0:
        net = perceptual_loss(G, perceptual, D=D, size=opts.perceptual_size)
    result = entry.run(G, target, opts, encoder=encoder, perceptual=net, mask=mask, callback=callback, cancel=cancel,
                       perceptual_name=perceptual if isinstance(perceptual, str) else type(perceptual).__name__)
    return result
