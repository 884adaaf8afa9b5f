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
(an e4e start, then a short ``w+`` optimisation with :func:`optimize_latents`) run through the same
:func:`~latentshop.inversion.invert`; they live in :mod:`latentshop.inversion.encoders`.

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
    >>> target = G(torch.randn(1, 8)).detach().clamp(-1, 1)
    >>> from latentshop.inversion import invert
    >>> lat = invert(G, target, method="w+", steps=20, loss="mse=1", w_avg_samples=100)
    >>> lat.space, tuple(lat.tensor.shape)
    ('w+', (1, 4, 8))
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import replace
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

from latentshop.inversion.base import (
    InversionError,
    InversionMethod,
    InversionOptions,
    InversionResult,
    InversionStep,
    is_cancelled,
    perceptual_loss,
    prepare_target,
    register_inversion_method,
    w_stats,
)
from latentshop.latents import Latent
from latentshop.models.stylegan2 import Generator

__all__ = ["optimize_latents", "perceptual_loss", "prepare_target", "w_stats"]


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


# ---- the optimisation -------------------------------------------------------------------------
def optimize_latents(G: Generator, target: torch.Tensor, opts: InversionOptions, *, perceptual: torch.nn.Module | None = None,
                     mask: torch.Tensor | None = None, callback: Callable[[InversionStep], None] | None = None,
                     cancel: Any = None, init: torch.Tensor | None = None, perceptual_name: str = "mobilenet") -> Latent:
    """Optimise latents for checked targets (``prepare_target``) with the recipe ``opts``.

    Args:
        G: the generator; it is frozen during the run and left as it was found.
        target: ``[N, C, R, R]`` in ``[-1, 1]`` on ``G``'s device.
        opts: the full recipe (:func:`~latentshop.inversion.method_defaults` and overrides).
        perceptual: the perceptual network, when the loss has a perceptual term.
        mask: a checked mask (``check_mask``) or ``None``.
        callback, cancel: as :func:`~latentshop.inversion.run_inversion`.
        init: ``[N, num_ws, w_dim]`` starting codes (an encoder's) instead of the mean ``w``.
        perceptual_name: what the latent's ``meta`` records as the perceptual back-end.

    Returns:
        The latent (``meta``: method, options, losses, seconds; ``cancelled`` when stopped).
    """
    loss_fn = _Loss(target, opts.loss, perceptual, mask)
    seeds = [opts.seed + i for i in range(target.shape[0])]
    requires = [p.requires_grad for p in G.parameters()]
    G.requires_grad_(False)  # gradients flow to the latents only
    try:
        return _run(G, target, opts, loss_fn, seeds, target.device, callback, cancel, perceptual_name, init=init)
    finally:
        for p, r in zip(G.parameters(), requires):
            p.requires_grad_(r)


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

    meta: dict[str, Any] = {"method": opts.method, "options": opts.to_dict(), "perceptual": perceptual}
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
        if is_cancelled(cancel):
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
            if is_cancelled(cancel):
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


def _optimisation(G: Generator, target: torch.Tensor, opts: InversionOptions, *, encoder: Any, perceptual: Any, mask: Any,
                  callback: Any, cancel: Any, perceptual_name: str) -> InversionResult:
    return InversionResult(optimize_latents(G, target, opts, perceptual=perceptual, mask=mask, callback=callback,
                                            cancel=cancel, perceptual_name=perceptual_name))


# Each method's recipe. ``w`` is NVIDIA's projector (stylegan2-ada-pytorch defaults: 1000 steps, lr
# 0.1, latent noise 0.05 over 75 %, noise regularisation 1e5, perceptual loss only). The ``w+``
# settings were chosen by benchmarks/inversion.py (docs/inversion.md).
for _m in (
    InversionMethod("w", _optimisation, InversionOptions(method="w", steps=1000, lr=0.1, latent_noise=0.05,
                                                          loss={"perceptual": 1.0}, optimize_noise=True),
                    description="NVIDIA's projector: one w per image, with noise maps"),
    InversionMethod("w+", _optimisation, InversionOptions(method="w+", steps=250, lr=0.05, latent_noise=0.05,
                                                           loss={"perceptual": 1.0, "mse": 1.0}),
                    description="Image2StyleGAN: one w per layer"),
    InversionMethod("w+noise", _optimisation, InversionOptions(method="w+noise", steps=250, lr=0.05, latent_noise=0.05,
                                                                loss={"perceptual": 1.0, "mse": 1.0}, noise_steps=100, noise_lr=0.05),
                    description="Image2StyleGAN++: w+, then the noise maps"),
):
    register_inversion_method(_m)
