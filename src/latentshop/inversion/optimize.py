"""Optimisation-based inversion: find the latent whose rendering matches a target image.

Methods (:func:`list_inversion_methods`):

- ``w`` — NVIDIA's projector (Karras et al. 2020, "Analyzing and Improving the Image Quality of
  StyleGAN", appendix D; stylegan2-ada-pytorch ``projector.py``): one ``w`` per image, started at
  the mean of 10,000 mapped samples, Adam with a learning-rate ramp up (first 5 %) and cosine ramp
  down (last 25 %), Gaussian noise added to ``w`` that decays to zero over the first 75 % of the
  steps (scaled by the spread of ``w``), and the per-layer noise maps optimised too, held to
  white noise by a multi-scale autocorrelation penalty and renormalised after every step.
- ``w+`` — Image2StyleGAN (Abdal et al. 2019): one ``w`` per synthesis layer (W+), started at the
  mean ``w``, pixel MSE plus a perceptual distance; the noise maps stay the generator's own.
- ``w+noise`` — Image2StyleGAN++ (Abdal et al. 2020): ``w+`` first, then the noise maps alone
  with a pixel loss (MSE), which restores detail the latent cannot express.

The encoder methods ``psp``, ``e4e``, ``restyle-psp``, ``restyle-e4e`` and the hybrid ``e4e+opt``
(an e4e start, then a short ``w+`` optimisation) run through the same :func:`invert`; they live in
:mod:`latentshop.inversion.encoders`.

All take an optional ``mask`` of the pixels that count (local edits, inpainting). Losses are a
weighted sum of pixel MSE, 1 - MS-SSIM and a perceptual distance from one of the back-ends of
:mod:`latentshop.metrics.perceptual` (a MobileNet by default; a VGG16 TorchScript file; the
checkpoint's own discriminator). A batch of targets is optimised at once: each image has its own
latent and Adam's updates are per element, so images do not influence one another.

Example:
    >>> import torch
    >>> from latentshop.models.stylegan2 import Generator
    >>> G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3,
    ...               synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()
    >>> target = G(torch.randn(1, 8)).detach()
    >>> lat = invert(G, target, method="w+", steps=20, loss="mse=1", w_avg_samples=100)
    >>> lat.space, tuple(lat.tensor.shape)
    ('w+', (1, 4, 8))
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from latentshop.errors import ConfigError, LatentshopError, ShapeError
from latentshop.latents import Latent, generator_fingerprint
from latentshop.models.stylegan2 import Generator

__all__ = [
    "InversionError",
    "InversionOptions",
    "InversionStep",
    "LOSS_TERMS",
    "invert",
    "list_inversion_methods",
    "method_defaults",
    "parse_loss",
    "perceptual_loss",
    "prepare_target",
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


# Each method's recipe. ``w`` is NVIDIA's projector (stylegan2-ada-pytorch defaults: 1000 steps, lr
# 0.1, latent noise 0.05 over 75 %, noise regularisation 1e5, perceptual loss only). The ``w+``
# settings were chosen by benchmarks/inversion.py (docs/inversion.md).
_METHODS: dict[str, InversionOptions] = {
    "w": InversionOptions(method="w", steps=1000, lr=0.1, latent_noise=0.05, loss={"perceptual": 1.0}, optimize_noise=True),
    "w+": InversionOptions(method="w+", steps=250, lr=0.05, latent_noise=0.05, loss={"perceptual": 1.0, "mse": 1.0}),
    "w+noise": InversionOptions(method="w+noise", steps=250, lr=0.05, latent_noise=0.05, loss={"perceptual": 1.0, "mse": 1.0},
                                noise_steps=100, noise_lr=0.05),
    # Encoders: no optimisation steps. The hybrid refines the encoder's code with a short w+ run that
    # starts where the encoder landed: no warm-up, no latent noise, w+'s learning rate (best among
    # 0.005-0.1 on held-out synthetic faces) and 100 steps, which match w+'s 250 on synthetic and
    # lfw-faces test faces in 40 % of its time (50 steps lose 0.5-2 dB; docs/inversion.md).
    "psp": InversionOptions(method="psp", steps=0, iterations=1),
    "e4e": InversionOptions(method="e4e", steps=0, iterations=1),
    "restyle-psp": InversionOptions(method="restyle-psp", steps=0),
    "restyle-e4e": InversionOptions(method="restyle-e4e", steps=0),
    "e4e+opt": InversionOptions(method="e4e+opt", steps=100, lr=0.05, lr_rampup=0.0, latent_noise=0.0,
                                loss={"perceptual": 1.0, "mse": 1.0}),
}


def list_inversion_methods() -> list[str]:
    """Names of the inversion methods (optimisation, encoders, hybrid).

    Example:
        >>> list_inversion_methods()
        ['e4e', 'e4e+opt', 'psp', 'restyle-e4e', 'restyle-psp', 'w', 'w+', 'w+noise']
    """
    return sorted(_METHODS)


def method_defaults(method: str) -> InversionOptions:
    """The recipe of ``method`` (see the module docstring)."""
    try:
        return _METHODS[method]
    except KeyError:
        raise ConfigError(f"unknown inversion method {method!r}; methods are {', '.join(list_inversion_methods())}") from None


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


def prepare_target(G: Generator, target: torch.Tensor) -> torch.Tensor:
    """Check and convert targets to ``[N, img_channels, R, R]`` float32.

    Colour targets for a one-channel generator become luma (ITU-R 601, as Pillow), gray targets for
    a colour generator are repeated; the resolution must already be the generator's.
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
    if c == G.img_channels:
        return target
    if c == 3 and G.img_channels == 1:
        return (target * _LUMA.to(target.device)).sum(1, keepdim=True)
    if c == 1 and G.img_channels == 3:
        return target.repeat(1, 3, 1, 1)
    raise ShapeError(f"the target has {c} channels; this model takes {G.img_channels} (1 or 3 channels can be converted)")


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


# ---- losses -----------------------------------------------------------------------------------
def _noise_regularizer(noise: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Per-image sum over layers and scales of squared one-pixel autocorrelations ([N])."""
    total = 0
    for v in noise.values():
        x = v
        while True:
            total = total + (x * torch.roll(x, 1, dims=3)).mean(dim=(1, 2, 3)).square()
            total = total + (x * torch.roll(x, 1, dims=2)).mean(dim=(1, 2, 3)).square()
            if x.shape[2] <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return total


def _normalize_noise_(noise: Mapping[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for v in noise.values():
            v -= v.mean(dim=(1, 2, 3), keepdim=True)
            v *= v.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()


class _Loss:
    """Weighted per-image loss against fixed targets ([N] per term)."""

    def __init__(self, target: torch.Tensor, weights: Mapping[str, float], perceptual: torch.nn.Module | None,
                 mask: torch.Tensor | None):
        self.weights = {k: v for k, v in weights.items() if v > 0}
        self.mask = mask
        self.target = target
        self.perceptual = perceptual
        self.masked_target = target if mask is None else target * mask

    def __call__(self, img: torch.Tensor, terms: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        weights = self.weights if terms is None else {k: 1.0 for k in terms}
        out: dict[str, torch.Tensor] = {}
        masked = img if self.mask is None else img * self.mask
        total = 0
        for name, wt in weights.items():
            if name == "mse":
                diff = (img.float() - self.target).square()
                if self.mask is None:
                    value = diff.mean(dim=(1, 2, 3))
                else:
                    m = self.mask.expand_as(diff)
                    value = (diff * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp_min(1e-8)
            elif name == "ms_ssim":
                from latentshop.metrics.image import ms_ssim

                value = 1 - ms_ssim(masked.float(), self.masked_target)
            else:
                assert self.perceptual is not None
                value = self.perceptual(masked, self.masked_target).float()
            out[name] = value.detach()
            total = total + wt * value
        out["total"] = total
        return out


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


def _lr_at(t: float, opts: InversionOptions) -> float:
    ramp = 1.0
    if opts.lr_rampdown > 0:
        ramp = min(1.0, (1.0 - t) / opts.lr_rampdown)
        ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if opts.lr_rampup > 0:
        ramp *= min(1.0, t / opts.lr_rampup)
    return opts.lr * ramp


def _randn(shape: tuple[int, ...], seeds: list[int], device: torch.device) -> torch.Tensor:
    """Per-image Gaussian draws: image i's values depend on its seed only (batch-independent)."""
    rows = [torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds]
    return torch.stack(rows).to(device)


def _is_cancelled(cancel: Any) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


# ---- the optimisation -------------------------------------------------------------------------
def invert(
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
    encoder: Any = None,
    callback: Callable[[InversionStep], None] | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    **overrides: Any,
) -> Latent:
    """Find latents whose renderings match ``target``.

    Args:
        G: the generator (its device is used; it is not modified).
        target: ``[N, C, R, R]`` (or ``[C, R, R]``) in ``[-1, 1]`` at the generator's resolution;
            1 or 3 channels (converted to the model's).
        method: ``"w"``, ``"w+"`` (default), ``"w+noise"``, or an encoder method: ``"psp"``,
            ``"e4e"``, ``"restyle-psp"``, ``"restyle-e4e"``, ``"e4e+opt"`` (see the module docstring).
        steps: latent steps (default: the method's recipe).
        lr: peak learning rate (default: the method's recipe).
        loss: term weights, e.g. ``"perceptual=1,mse=1"`` (see :data:`LOSS_TERMS`).
        perceptual: perceptual back-end name (``"mobilenet"``, ``"vgg16:PATH"``, ``"discriminator"``)
            or a module ``(a, b) -> [N]``.
        D: the discriminator, for the ``"discriminator"`` back-end.
        mask: ``[N or 1, 1, R, R]`` in ``[0, 1]``: pixels that count (``None``: all).
        options: a full :class:`InversionOptions` (``method``/``steps``/... override its fields).
        encoder: encoder methods: an encoder folder or a loaded encoder (default: the one bundled
            for ``G``, found by its fingerprint).
        callback: called after every step with an :class:`InversionStep`.
        cancel: an Event (or a callable) that stops the run early; the latent so far is returned with
            ``meta["cancelled"] = True``.
        **overrides: any other :class:`InversionOptions` field (``seed``, ``bf16``, ``noise_steps``...).

    Returns:
        A :class:`~latentshop.latents.Latent` (``w`` or ``w+``, with noise maps for ``w`` and
        ``w+noise``) whose ``meta`` records the method, options, final losses and seconds.

    Raises:
        InversionError: the loss became NaN/inf; ``.latent`` is the last finite state.
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
    opts = replace(opts, loss=parse_loss(opts.loss))
    from latentshop.inversion.encoders import ENCODER_METHODS

    encoder_only = opts.method in ENCODER_METHODS and opts.method != "e4e+opt"
    if opts.steps < 0 or opts.noise_steps < 0 or (opts.steps + opts.noise_steps == 0 and not encoder_only):
        raise ConfigError(f"steps must be >= 0 with at least one step in all, got {opts.steps} (+{opts.noise_steps} noise steps)")
    if not (opts.lr > 0 and math.isfinite(opts.lr)):
        raise ConfigError(f"lr must be a positive number, got {opts.lr}")

    device = G.mapping.fc0.weight.device
    target = prepare_target(G, target).to(device)
    n = target.shape[0]
    init: torch.Tensor | None = None
    encoder_meta: dict[str, Any] = {}
    if opts.method in ENCODER_METHODS:
        from latentshop.inversion.encoders import encode

        if mask is not None and encoder_only:
            raise ConfigError(f"a mask needs an optimisation method; {opts.method} encodes the whole image (try e4e+opt or w+)")

        kind, default_passes = ENCODER_METHODS[opts.method]
        passes = opts.iterations if opts.iterations is not None else default_passes
        if _is_cancelled(cancel):
            raise InversionError("cancelled before the encoder ran")

        def report(k: int, total: int, ws: torch.Tensor) -> None:
            if callback is not None:
                callback(InversionStep("encoder", k, total, {}, 0.0, lambda ws=ws: Latent.from_ws(G, ws, method=opts.method)))

        coded = encode(G, target, kind=kind, iterations=passes, encoder=encoder, callback=report, method=opts.method,
                       options=opts.to_dict())
        if encoder_only:
            return coded
        init = coded.tensor.to(device)
        encoder_meta = {"encoder": coded.meta["encoder"], "encoder_seconds": coded.meta["seconds"]}
    if mask is not None:
        if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[2:] != target.shape[2:] or mask.shape[0] not in (1, n):
            raise ShapeError(f"mask must be [N or 1, 1, {G.img_resolution}, {G.img_resolution}], got {tuple(mask.shape)}")
        mask = mask.float().clamp(0, 1).to(device)
    needs_perceptual = opts.loss.get("perceptual", 0) > 0
    net = perceptual_loss(G, perceptual, D=D, size=opts.perceptual_size) if needs_perceptual else None
    loss_fn = _Loss(target, opts.loss, net, mask)
    seeds = [opts.seed + i for i in range(n)]

    # Frozen generator: gradients flow to the latents only.
    requires = [p.requires_grad for p in G.parameters()]
    G.requires_grad_(False)
    try:
        lat = _run(G, target, opts, loss_fn, seeds, device, callback, cancel, perceptual, init=init)
    finally:
        for p, r in zip(G.parameters(), requires):
            p.requires_grad_(r)
    if encoder_meta:
        lat.meta.update(encoder_meta)
        lat.meta["seconds"] = round(lat.meta.get("seconds", 0.0) + encoder_meta["encoder_seconds"], 4)
    return lat


def _run(G: Generator, target: torch.Tensor, opts: InversionOptions, loss_fn: _Loss, seeds: list[int], device: torch.device,
         callback: Callable[[InversionStep], None] | None, cancel: Any, perceptual: Any, *,
         init: torch.Tensor | None = None) -> Latent:
    n = target.shape[0]
    w_avg, w_std = w_stats(G, opts.w_avg_samples)
    plus = opts.method != "w"
    if init is not None:
        start = init.detach().clone()  # [N, num_ws, w_dim]: an encoder's code
    else:
        start = w_avg.to(device).unsqueeze(1).repeat(n, G.num_ws if plus else 1, 1)  # [N, num_ws | 1, w_dim]
    w_opt = start.clone().requires_grad_(True)
    layers = G.synthesis.noise_layers()
    noise: dict[str, torch.Tensor] | None = None
    if opts.optimize_noise:
        noise = {name: _randn((1, r, r), [s * 1000 + k for s in seeds], device).requires_grad_(True)
                 for k, (name, r) in enumerate(layers.items())}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if opts.bf16 else nullcontext()

    meta: dict[str, Any] = {"method": opts.method, "options": opts.to_dict(),
                            "perceptual": perceptual if isinstance(perceptual, str) else type(perceptual).__name__}
    seconds = 0.0
    last_good = {"w": w_opt.detach().clone(), "noise": None if noise is None else {k: v.detach().clone() for k, v in noise.items()}}
    final_losses: dict[str, torch.Tensor] = {}
    cancelled = False

    def make_latent(w: torch.Tensor, nz: Mapping[str, torch.Tensor] | None, **extra: Any) -> Latent:
        w = w.detach().clone()
        lat_meta = dict(meta, **extra)
        if plus:
            return Latent.from_ws(G, w, noise=nz, **lat_meta)
        return Latent.from_ws(G, w[:, 0], noise=nz, **lat_meta)

    def render(w: torch.Tensor, nz: Mapping[str, torch.Tensor] | str) -> torch.Tensor:
        ws = w if plus else w.expand(-1, G.num_ws, -1)
        with autocast:
            return G.synthesis(ws, noise_mode=nz, impl="fast")

    def fail(stage: str, step: int) -> None:
        lat = make_latent(last_good["w"], last_good["noise"], failed_at={"stage": stage, "step": step})
        raise InversionError(
            f"the loss became NaN or infinite at {stage} step {step}; the last finite latent is kept. "
            "Lower the learning rate (--lr) or check the target image", lat)

    # Stage 1: the latent (and, for NVIDIA's recipe, the noise maps).
    params = [w_opt] + (list(noise.values()) if noise is not None else [])
    opt = torch.optim.Adam(params, lr=opts.lr, betas=opts.betas)
    latent_noise = [torch.Generator().manual_seed(s + 7_777_777) for s in seeds]
    for step in range(opts.steps):
        if _is_cancelled(cancel):
            cancelled = True
            break
        t0 = time.perf_counter()
        t = step / opts.steps
        for group in opt.param_groups:
            group["lr"] = _lr_at(t, opts)
        scale = w_std * opts.latent_noise * max(0.0, 1.0 - t / opts.latent_noise_ramp) ** 2 if opts.latent_noise_ramp > 0 else 0.0
        w_in = w_opt
        if scale > 0:
            draws = torch.stack([torch.randn(w_opt.shape[1:], generator=g) for g in latent_noise]).to(device)
            w_in = w_opt + draws * scale
        img = render(w_in, noise if noise is not None else "const")
        losses = loss_fn(img)
        total = losses["total"]
        if noise is not None and opts.noise_reg > 0:
            reg = _noise_regularizer(noise)
            losses["noise_reg"] = reg.detach()
            total = total + opts.noise_reg * reg
            losses["total"] = total
        if not torch.isfinite(total).all():
            fail("latent", step + 1)
        opt.zero_grad(set_to_none=True)
        total.sum().backward()
        opt.step()
        if noise is not None:
            _normalize_noise_(noise)
        if not torch.isfinite(w_opt).all() or (noise is not None and not all(torch.isfinite(v).all() for v in noise.values())):
            fail("latent", step + 1)
        last_good = {"w": w_opt.detach().clone(), "noise": None if noise is None else {k: v.detach().clone() for k, v in noise.items()}}
        seconds += time.perf_counter() - t0
        final_losses = {k: v.detach() for k, v in losses.items()}
        if callback is not None:
            snap = last_good
            callback(InversionStep("latent", step + 1, opts.steps, final_losses, seconds,
                                   lambda snap=snap: make_latent(snap["w"], snap["noise"])))

    # Stage 2 (w+noise): the noise maps alone, pixel loss, starting from the generator's own maps.
    if opts.noise_steps > 0 and not cancelled:
        w_fixed = w_opt.detach()
        noise = {name: G.synthesis.get_submodule(name).noise_const.detach().to(device).view(1, 1, r, r).repeat(n, 1, 1, 1)
                 .requires_grad_(True) for name, r in layers.items()}
        opt = torch.optim.Adam(list(noise.values()), lr=opts.noise_lr, betas=opts.betas)
        stage_opts = replace(opts, lr=opts.noise_lr)
        for step in range(opts.noise_steps):
            if _is_cancelled(cancel):
                cancelled = True
                break
            t0 = time.perf_counter()
            for group in opt.param_groups:
                group["lr"] = _lr_at(step / opts.noise_steps, stage_opts)
            img = render(w_fixed, noise)
            losses = loss_fn(img, ("mse",))
            if not torch.isfinite(losses["total"]).all():
                fail("noise", step + 1)
            opt.zero_grad(set_to_none=True)
            losses["total"].sum().backward()
            opt.step()
            if not all(torch.isfinite(v).all() for v in noise.values()):
                fail("noise", step + 1)
            last_good = {"w": w_fixed, "noise": {k: v.detach().clone() for k, v in noise.items()}}
            seconds += time.perf_counter() - t0
            final_losses = {k: v.detach() for k, v in losses.items()}
            if callback is not None:
                snap = last_good
                callback(InversionStep("noise", step + 1, opts.noise_steps, final_losses, seconds,
                                       lambda snap=snap: make_latent(snap["w"], snap["noise"])))

    extra: dict[str, Any] = {"seconds": round(seconds, 3),
                             "losses": {k: [round(float(x), 6) for x in v.flatten()] for k, v in final_losses.items()}}
    if cancelled:
        extra["cancelled"] = True
    return make_latent(last_good["w"], last_good["noise"], **extra)
