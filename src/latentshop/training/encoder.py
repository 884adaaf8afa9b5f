"""Training pSp / e4e / ReStyle encoders against a frozen generator.

A batch mixes real images (a folder, or synthetic renders) with the generator's own samples, whose
true latent is known (``sample_fraction``). Every image gets the reconstruction losses (pixel MSE,
a perceptual distance — the inversion back-ends — and optionally 1 - MS-SSIM); samples add a
latent loss (squared error of ``ws`` against the true ``w``, in units of ``w``'s per-dimension
variance). e4e adds its two regularisers (Tov et al. 2021): the L2 norm of the per-layer offsets
``w_i - w_0``, which are switched on one layer at a time (progressive training), and a
non-saturating loss from a latent discriminator that learns to tell mapped ``w`` from the encoder's
codes (R1-regularised on the real ``w``). With ``restyle`` each batch runs ``iterations`` ReStyle
passes (Alaluf et al. 2021): pass ``t`` sees the target and pass ``t-1``'s reconstruction (both
detached), every pass is scored, and the gradients of all passes are summed before one step.

Identity loss: pSp/e4e use an ArcFace network for faces. latentshop's identity model is dlib's
descriptor network, which is not differentiable in PyTorch, so identity is measured
(:mod:`latentshop.metrics.identity`) but not trained on.

Like the GAN trainer, every random number comes from generators the checkpoint holds, so a resumed
run continues bit for bit (on the CPU), and under ``torchrun`` every rank draws the global batch and
keeps its strided share, with one gradient all-reduce per network per step.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import Dataset

from latentshop.data.images import atomic_write_bytes, make_grid, save_image, to_uint8
from latentshop.errors import CheckpointError, ConfigError
from latentshop.inversion.optimize import perceptual_loss, prepare_target, w_stats
from latentshop.latents import generator_fingerprint
from latentshop.models.encoders import ENCODER_KINDS, Encoder, LatentDiscriminator
from latentshop.models.stylegan2 import Generator
from latentshop.ops import fused
from latentshop.training.distributed import StopSignals, all_reduce_gradients, atomic_torch_save, is_main
from latentshop.training.loss import SharedRandom

__all__ = ["ENCODER_CHECKPOINT_FORMAT", "EncoderTrainOptions", "EncoderTrainer", "train_encoder", "build_encoder"]

ENCODER_CHECKPOINT_FORMAT = "latentshop-encoder-training-v1"


@dataclass(frozen=True)
class EncoderTrainOptions:
    """The encoder recipe (loss weights follow pSp / e4e / ReStyle; the schedule is sized for CPUs)."""

    kind: str = "e4e"  # "psp" | "e4e"
    restyle: bool = True  # ReStyle input (image + current reconstruction) and iterative passes
    iterations: int = 2  # ReStyle passes per batch (1 without restyle)
    batch_size: int = 16  # images per step (real + samples, global under torchrun)
    sample_fraction: float = 0.5  # share of each batch drawn from the generator (true latent known); 1: samples only
    truncation_psi: float = 1.0  # truncation of those samples
    total_kimg: float = 60.0  # training length in thousands of images (sets the learning-rate ramp-down)
    lr: float = 3e-4  # Adam learning rate of the encoder
    betas: tuple[float, float] = (0.9, 0.999)  # Adam betas
    lr_rampup: float = 0.02  # fraction of training with a linear warm-up
    lr_rampdown: float = 0.3  # fraction of training with the final cosine ramp-down
    mse: float = 1.0  # pixel MSE weight (pSp's L2 lambda)
    perceptual: float = 0.8  # perceptual distance weight (pSp's LPIPS lambda)
    perceptual_net: str = "mobilenet"  # perceptual back-end (see latentshop.metrics.perceptual)
    ms_ssim: float = 0.0  # 1 - MS-SSIM weight
    identity: float = 0.0  # 1 - identity cosine weight (pSp / e4e's ArcFace loss, lambda 0.1 on faces); needs identity_net
    identity_net: str = "identity"  # evaluator name or folder of the identity embedding (latentshop.models.face_evaluators)
    latent: float = 0.1  # ws loss on generator samples (per-dimension variance units)
    delta_reg: float = 2e-4  # e4e: weight of the offsets' L2 norms (e4e's delta_norm_lambda)
    adv: float = 0.1  # e4e: weight of the latent discriminator's loss (e4e's w_discriminator_lambda)
    d_lr: float = 2e-5  # e4e: latent discriminator learning rate
    r1_gamma: float = 10.0  # e4e: R1 weight on real w
    d_reg_interval: int = 16  # e4e: R1 every this many steps (lazy, scaled by the interval)
    progressive_start: int = 200  # e4e: steps with the base w only, before the first offset
    progressive_every: int = 100  # e4e: steps between switching on the next layer's offset
    seed: int = 0  # seeds weights, data order and samples
    bf16: bool = True  # bfloat16 autocast for encoder and synthesis (float32 statistics and losses)

    def validate(self) -> None:
        if self.kind not in ENCODER_KINDS:
            raise ConfigError(f"unknown encoder kind {self.kind!r}; kinds are {', '.join(ENCODER_KINDS)}")
        if self.iterations < 1 or (not self.restyle and self.iterations != 1):
            raise ConfigError(f"iterations must be >= 1 (and 1 without --restyle), got {self.iterations}")
        if not 0 <= self.sample_fraction <= 1:
            raise ConfigError(f"sample_fraction must be in [0, 1], got {self.sample_fraction}")
        if self.batch_size < 1 or self.total_kimg <= 0 or not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"batch size, total_kimg and lr must be positive (got {self.batch_size}, {self.total_kimg}, {self.lr})")


def build_encoder(G: Generator, options: EncoderTrainOptions, **arch: Any) -> Encoder:
    """An untrained encoder for ``G``, its starting point (mean ``w``, its rendering) filled in."""
    E = Encoder(kind=options.kind, img_resolution=G.img_resolution, img_channels=G.img_channels, num_ws=G.num_ws,
                w_dim=G.w_dim, restyle=options.restyle, **arch)
    device = G.mapping.fc0.weight.device
    w_avg, _ = w_stats(G)
    with torch.no_grad():
        E.w_avg.copy_(w_avg[0].cpu())
        E.avg_image.copy_(G.synthesis(w_avg.to(device).unsqueeze(1).repeat(1, G.num_ws, 1), noise_mode="const")[0].cpu())
    return E.to(device)


class EncoderTrainer:
    """Trains ``E`` to invert the frozen ``G``.

    Args:
        G: the generator (frozen; not modified).
        E: the encoder (from :func:`build_encoder`).
        dataset: real images ``(uint8 [C, H, W], label)`` at ``G``'s resolution, or ``None`` when
            ``options.sample_fraction == 1``.
        options: the recipe.
    """

    def __init__(self, G: Generator, E: Encoder, dataset: Dataset | None, options: EncoderTrainOptions = EncoderTrainOptions()):
        options.validate()
        if dataset is None and options.sample_fraction < 1:
            raise ConfigError("no real images given: pass a dataset (--data) or train on samples only (--sample-fraction 1)")
        if dataset is not None and len(dataset) == 0:
            raise ConfigError("the training dataset is empty")
        if E.kind != options.kind or E.restyle != options.restyle:
            raise ConfigError(f"the encoder is {E.kind} (restyle={E.restyle}) but the options say {options.kind} (restyle={options.restyle})")
        self.G = G.eval().requires_grad_(False)
        self.E = E.train()
        E.iterations = options.iterations  # its passes at inference (saved in the encoder's config)
        self.options = options
        self.dataset = dataset
        distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if distributed else 0
        self.world_size = dist.get_world_size() if distributed else 1
        self.n_samples = round(options.batch_size * options.sample_fraction)
        self.n_real = options.batch_size - self.n_samples
        if self.n_real % self.world_size or self.n_samples % self.world_size:
            raise ConfigError(f"the batch's {self.n_real} real images and {self.n_samples} samples must each divide among "
                              f"{self.world_size} processes; change --batch or --sample-fraction")
        self.random = SharedRandom(torch.Generator().manual_seed(options.seed), self.rank, self.world_size)
        self.opt = torch.optim.Adam(E.parameters(), lr=options.lr, betas=options.betas)
        self.D: LatentDiscriminator | None = None
        self.D_opt: torch.optim.Adam | None = None
        if options.kind == "e4e" and options.adv > 0:
            torch.manual_seed(options.seed + 99)
            self.D = LatentDiscriminator(G.w_dim).to(self.device).train()
            self.D_opt = torch.optim.Adam(self.D.parameters(), lr=options.d_lr, betas=(0.9, 0.999))
        self.perceptual = perceptual_loss(G, options.perceptual_net) if options.perceptual > 0 else None
        if self.perceptual is not None:
            self.perceptual.requires_grad_(False)
        self.identity_net = None
        if options.identity > 0:
            from latentshop.checkpoints.evaluators import load_evaluator

            net = load_evaluator(options.identity_net, device=self.device)
            if getattr(net, "kind", None) != "identity":
                raise ConfigError(f"--identity-net must be an identity embedding (such as 'identity'); "
                                  f"{options.identity_net!r} is a {getattr(net, 'kind', type(net).__name__)}")
            self.identity_net = net
        _, w_std = w_stats(G)
        self.w_var = w_std**2 / G.w_dim  # per-dimension variance of w: the latent loss's unit
        self.step = 0
        self.nimg = 0
        self.total_steps = max(1, math.ceil(options.total_kimg * 1000 / options.batch_size))
        self.generator_fingerprint = generator_fingerprint(G)

    @property
    def device(self) -> torch.device:
        return self.G.mapping.fc0.weight.device

    # -- schedule ----------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        o = self.options
        t = step / self.total_steps
        ramp = 1.0
        if o.lr_rampdown > 0:
            ramp = 0.5 - 0.5 * math.cos(min(1.0, max(0.0, (1.0 - t) / o.lr_rampdown)) * math.pi)
        if o.lr_rampup > 0:
            ramp *= min(1.0, t / o.lr_rampup)
        return max(o.lr * ramp, o.lr * 1e-3)

    def num_deltas(self, step: int) -> int | None:
        """e4e's active offsets at ``step`` (``None``: pSp, all layers free)."""
        o = self.options
        if o.kind != "e4e":
            return None
        if step < o.progressive_start:
            return 0
        return min(self.G.num_ws - 1, (step - o.progressive_start) // max(1, o.progressive_every) + 1)

    # -- data --------------------------------------------------------------------------------------
    def _real(self) -> torch.Tensor:
        idx = self.random.integers(self.n_real // self.world_size, len(self.dataset))
        img = torch.stack([torch.as_tensor(self.dataset[int(i)][0]) for i in idx]).float() / 127.5 - 1
        return prepare_target(self.G, img.to(self.device))

    @torch.no_grad()
    def _samples(self) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.random.normal(self.n_samples // self.world_size, self.G.z_dim, device=self.device)
        ws = self.G.mapping(z, None, truncation_psi=self.options.truncation_psi)
        return self.G.synthesis(ws, noise_mode="const", impl="fast").float(), ws

    def batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This rank's targets ``[n, C, R, R]`` (real first) and the samples' true ``ws``."""
        parts, ws_true = [], None
        if self.n_real:
            parts.append(self._real())
        if self.n_samples:
            img, ws_true = self._samples()
            parts.append(img)
        return torch.cat(parts), ws_true

    # -- losses ------------------------------------------------------------------------------------
    def reconstruction_losses(self, img: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        o = self.options
        out = {"mse": (img.float() - target).square().mean()}
        if self.perceptual is not None:
            out["perceptual"] = self.perceptual(img, target).float().mean()
        if o.ms_ssim > 0:
            from latentshop.metrics.image import ms_ssim

            out["ms_ssim"] = (1 - ms_ssim(img.float().clamp(-1, 1), target)).mean()
        if self.identity_net is not None:
            with torch.no_grad():
                ref = self.identity_net(target)
            out["identity"] = (1 - (self.identity_net(img.float()) * ref).sum(1)).mean()
        return out

    # -- one step ----------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One optimiser step of the encoder (all ReStyle passes), then one of the latent discriminator."""
        with fused.autograd_compile():  # the synthesis path's fused kernels compile, backward included
            return self._train_step()

    def _train_step(self) -> dict[str, float]:
        o = self.options
        G, E = self.G, self.E
        target, ws_true = self.batch()
        n = target.shape[0]
        nd = self.num_deltas(self.step)
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        self.opt.zero_grad(set_to_none=True)
        E.requires_grad_(True)
        logs: dict[str, float] = {}
        ws_prev, img_prev = E.start_ws(n).to(self.device), E.start_image(n).to(self.device)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=o.bf16)
        for it in range(o.iterations):
            with autocast:
                ws = E(target, ws_prev, img_prev, num_deltas=nd)
                img = G.synthesis(ws, noise_mode="const", impl="fast")
            ws = ws.float()
            terms = self.reconstruction_losses(img, target)
            total = (o.mse * terms["mse"] + o.perceptual * terms.get("perceptual", 0) + o.ms_ssim * terms.get("ms_ssim", 0)
                     + o.identity * terms.get("identity", 0))
            if ws_true is not None and o.latent > 0:
                terms["latent"] = (ws[n - ws_true.shape[0]:] - ws_true).square().mean() / self.w_var
                total = total + o.latent * terms["latent"]
            if o.kind == "e4e":
                deltas = E.deltas(ws)
                terms["delta"] = deltas.norm(dim=2).sum(1).mean()
                total = total + o.delta_reg * terms["delta"]
                if self.D is not None:
                    active = ws[:, : (nd or 0) + 1].reshape(-1, ws.shape[-1])
                    self.D.requires_grad_(False)
                    terms["adv"] = F.softplus(-self.D(active)).mean()
                    total = total + o.adv * terms["adv"]
            if not torch.isfinite(total):
                raise ConfigError(f"the encoder loss became {float(total)} at step {self.step}; lower --lr")
            total.backward()
            ws_prev, img_prev = ws.detach(), img.detach().float()
            if it == o.iterations - 1 or it == 0:
                suffix = "" if it == o.iterations - 1 else "_1"
                logs.update({f"{k}{suffix}": float(v.detach()) for k, v in terms.items() if not suffix or k == "mse"})
        E.requires_grad_(False)
        if self.world_size > 1:
            all_reduce_gradients(E, self.world_size)
        for p in E.parameters():
            if p.grad is not None:
                torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
        self.opt.step()
        if self.D is not None:
            logs.update(self._discriminator_step(ws_prev, nd or 0))
        self.step += 1
        self.nimg += o.batch_size
        if nd is not None:
            logs["deltas"] = float(nd)
        return logs

    def _discriminator_step(self, ws_fake: torch.Tensor, nd: int) -> dict[str, float]:
        o = self.options
        assert self.D is not None and self.D_opt is not None
        with torch.no_grad():
            z = self.random.normal(self.options.batch_size // self.world_size, self.G.z_dim, device=self.device)
            w_real = self.G.mapping(z, None)[:, 0]
        fake = ws_fake[:, : nd + 1].reshape(-1, ws_fake.shape[-1])
        self.D.requires_grad_(True)
        self.D_opt.zero_grad(set_to_none=True)
        loss = F.softplus(self.D(fake)).mean() + F.softplus(-self.D(w_real)).mean()
        logs = {"loss_D": float(loss.detach())}
        if o.r1_gamma > 0 and o.d_reg_interval > 0 and self.step % o.d_reg_interval == 0:
            real = w_real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.D(real).sum(), real, create_graph=True)
            r1 = grad.square().sum(1).mean()
            loss = loss + o.r1_gamma / 2 * r1 * o.d_reg_interval
            logs["r1"] = float(r1.detach())
        loss.backward()
        self.D.requires_grad_(False)
        if self.world_size > 1:
            all_reduce_gradients(self.D, self.world_size)
        self.D_opt.step()
        return logs

    # -- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly."""
        return {
            "format": ENCODER_CHECKPOINT_FORMAT,
            "E_init_kwargs": self.E.init_kwargs,
            "generator_fingerprint": self.generator_fingerprint,
            "options": asdict(self.options),
            "E": self.E.state_dict(),
            "opt": self.opt.state_dict(),
            "D": None if self.D is None else self.D.state_dict(),
            "D_opt": None if self.D_opt is None else self.D_opt.state_dict(),
            "step": self.step,
            "nimg": self.nimg,
            "rng": {"shared": self.random.generator.get_state(), "torch": torch.get_rng_state()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != ENCODER_CHECKPOINT_FORMAT:
            raise CheckpointError("<encoder checkpoint>", f"format {state.get('format')!r} is not {ENCODER_CHECKPOINT_FORMAT!r}")
        self.E.load_state_dict(state["E"])
        self.opt.load_state_dict(state["opt"])
        if self.D is not None and state.get("D") is not None:
            self.D.load_state_dict(state["D"])
            self.D_opt.load_state_dict(state["D_opt"])
        self.step = int(state["step"])
        self.nimg = int(state["nimg"])
        self.random.generator.set_state(state["rng"]["shared"])
        torch.set_rng_state(state["rng"]["torch"])

    def save(self, path: str | Path) -> None:
        atomic_torch_save(self.state_dict(), Path(path))

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint of :meth:`save` (read with ``weights_only=True``)."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CheckpointError(path, "no such encoder training checkpoint")
        except Exception as e:  # noqa: BLE001 - any failure of the restricted loader is the file's
            raise CheckpointError(path, f"cannot be read as a latentshop encoder training checkpoint ({type(e).__name__}: {str(e)[:200]})")
        if not isinstance(state, dict) or state.get("format") != ENCODER_CHECKPOINT_FORMAT:
            raise CheckpointError(path, "is not a latentshop encoder training checkpoint")
        if state.get("generator_fingerprint") != self.generator_fingerprint:
            raise CheckpointError(path, "was trained against another generator; resume with the same --model or start a new run")
        if state.get("E_init_kwargs") != self.E.init_kwargs:
            raise CheckpointError(path, f"was written for another encoder architecture ({state.get('E_init_kwargs')}); "
                                        "match --kind/--restyle/--width or start a new run")
        self.load_state_dict(state)


# ---- a run ----------------------------------------------------------------------------------------
class _HeldOut:
    """Fixed held-out targets: a reconstruction sheet and PSNR at one and at all passes."""

    def __init__(self, G: Generator, images: torch.Tensor):
        self.G = G
        self.images = images

    @torch.no_grad()
    def __call__(self, E: Encoder, iterations: int, sheet: Path | None) -> dict[str, float]:
        from latentshop.metrics.image import psnr

        was_training = E.training
        E.eval()
        x = self.images.to(self.G.mapping.fc0.weight.device)
        ws, img = E.start_ws(x.shape[0]).to(x.device), E.start_image(x.shape[0]).to(x.device)
        rows, scores = [x], {}
        for it in range(iterations):
            ws = E(x, ws, img)
            img = self.G.synthesis(ws, noise_mode="const", impl="fast").clamp(-1, 1)
            rows.append(img)
            if it == 0 or it == iterations - 1:
                scores[f"psnr_{it + 1}"] = float(psnr(img, x).mean())
        E.train(was_training)
        if sheet is not None:
            k = min(8, x.shape[0])
            grid = torch.cat([r[:k] for r in rows])
            save_image(make_grid(to_uint8(grid), cols=k), sheet)
        return scores


def train_encoder(
    G: Generator,
    dataset: Dataset | None,
    outdir: str | Path,
    *,
    options: EncoderTrainOptions = EncoderTrainOptions(),
    arch: dict[str, Any] | None = None,
    held_out: torch.Tensor | None = None,
    snapshot_kimg: float = 5.0,
    log_every: int = 20,
    resume: bool = False,
    extra_config: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> EncoderTrainer:
    """Train an encoder for ``G`` until ``options.total_kimg`` (or a stop signal); returns the trainer.

    The run folder holds ``options.json``, ``checkpoint.pt`` (exact resume), ``log.jsonl``,
    ``metrics.jsonl`` (held-out PSNR), ``snapshot-<images>.png`` (targets, then each pass's
    reconstruction) and, at the end, the encoder in ``encoder/`` (see
    :func:`latentshop.checkpoints.encoders.save_encoder`). Ctrl-C / SIGTERM finish the step, write
    the checkpoint and return (under ``torchrun`` all ranks stop after the same step, whichever of
    them was signalled). Under ``torchrun`` only rank 0 writes.

    Args:
        G: the frozen generator.
        dataset: real images at ``G``'s resolution (``None`` with ``sample_fraction=1``).
        outdir: the run folder.
        options: the recipe.
        arch: encoder size (``widths``, ``blocks``, ``style_channels``).
        held_out: ``[N, C, R, R]`` targets in ``[-1, 1]`` never trained on (default: 16 samples of
            ``G`` from seeds no training batch uses).
        snapshot_kimg: checkpoint, sheet and held-out PSNR every this many thousand images.
        log_every: steps between progress lines.
        resume: continue from ``outdir/checkpoint.pt`` when it exists.
        extra_config: more facts for ``options.json`` and the encoder's ``info``.
        log: where progress lines go.
    """
    from latentshop.checkpoints.encoders import save_encoder

    outdir = Path(outdir)
    main = is_main()
    torch.manual_seed(options.seed)
    E = build_encoder(G, options, **(arch or {}))
    trainer = EncoderTrainer(G, E, dataset, options)
    ckpt = outdir / "checkpoint.pt"
    if resume and ckpt.exists():
        trainer.resume(ckpt)
        log(f"resumed from {ckpt} at {trainer.nimg / 1000:.2f} kimg")
    if held_out is None:
        with torch.no_grad():
            z = torch.randn([16, G.z_dim], generator=torch.Generator().manual_seed(987_654))
            held_out = G(z.to(trainer.device), None, noise_mode="const").clamp(-1, 1).cpu()
    held = _HeldOut(G, prepare_target(G, held_out.to(trainer.device)))
    if main:
        outdir.mkdir(parents=True, exist_ok=True)
        config = {"train": asdict(options), "arch": E.init_kwargs, "generator_fingerprint": trainer.generator_fingerprint,
                  "params": E.num_params(), **(extra_config or {})}
        atomic_write_bytes(outdir / "options.json", (json.dumps(config, indent=2, default=str) + "\n").encode())
        log(f"training a {options.kind}{' (ReStyle)' if options.restyle else ''} encoder, {E.num_params() / 1e6:.2f}M parameters, "
            f"{options.total_kimg} kimg, batch {options.batch_size} ({trainer.n_samples} generator samples)")

    total = int(options.total_kimg * 1000)
    every = max(1, int(snapshot_kimg * 1000))
    next_snapshot = (trainer.nimg // every + 1) * every
    start_time, start_nimg = time.perf_counter(), trainer.nimg
    with StopSignals() as stop:
        while trainer.nimg < total and not stop.requested():  # agreed by all ranks
            logs = trainer.train_step()
            if main and (trainer.step % log_every == 0 or trainer.nimg >= total):
                elapsed = time.perf_counter() - start_time
                rate = (trainer.nimg - start_nimg) / max(elapsed, 1e-9)
                eta = (total - trainer.nimg) / max(rate, 1e-9)
                entry = {"kimg": trainer.nimg / 1000, "step": trainer.step, "images_per_s": rate, "eta_s": eta, **logs}
                with open(outdir / "log.jsonl", "a") as f:
                    f.write(json.dumps(entry) + "\n")
                shown = "  ".join(f"{k} {v:.4f}" for k, v in logs.items())
                log(f"kimg {trainer.nimg / 1000:7.2f}  {rate:5.1f} img/s  {shown}  ETA {eta / 60:5.1f} min")
            if trainer.nimg >= next_snapshot or trainer.nimg >= total:
                next_snapshot += every
                if main:
                    trainer.save(ckpt)
                    scores = held(trainer.E, options.iterations, outdir / f"snapshot-{trainer.nimg:08d}.png")
                    with open(outdir / "metrics.jsonl", "a") as f:
                        f.write(json.dumps({"kimg": trainer.nimg / 1000, **scores}) + "\n")
                    log(f"snapshot at {trainer.nimg / 1000:.2f} kimg: held-out " + "  ".join(f"{k} {v:.2f} dB" for k, v in scores.items()))
    if main:
        trainer.save(ckpt)
        if stop.signal is not None:
            log(stop.stopped(trainer.nimg))
        else:
            scores = held(trainer.E, options.iterations, None)
            info = {"trained_kimg": trainer.nimg / 1000, "steps": trainer.step, "train": asdict(options),
                    "training_seconds": round(time.perf_counter() - start_time, 1), **(extra_config or {})}
            save_encoder(trainer.E, outdir / "encoder", G=G, iterations=options.iterations,
                         metrics={"held_out": scores}, info=info, overwrite=True)
            log(f"done: {trainer.nimg / 1000:.1f} kimg; encoder written to {outdir / 'encoder'}")
    return trainer
