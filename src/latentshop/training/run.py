"""A training run: the loop around :class:`~latentshop.training.loop.Trainer` that a person starts.

It owns the run folder (``options.json``, ``checkpoint.pt``, ``snapshot-<images seen>.png``, ``log.jsonl``
and the final latentshop model in ``model/``), progress reporting (kimg, images/s, losses,
augmentation p, ETA), periodic snapshots, and stopping cleanly: Ctrl-C or SIGTERM finish the
current step, write a checkpoint and return (under ``torchrun`` the ranks agree on the stop, so
they all stop after the same step, whichever of them was signalled). ``resume=True`` continues
from ``checkpoint.pt`` exactly. Under ``torchrun`` only rank 0 writes.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Dataset

from latentshop.checkpoints.native import NetworkSpec, write_native
from latentshop.data.images import atomic_write_bytes, make_grid, save_image, to_uint8
from latentshop.models.stylegan2 import Discriminator, Generator
from latentshop.training.distributed import StopSignals, is_main
from latentshop.training.loop import TrainOptions, Trainer

__all__ = ["RunOptions", "StopSignals", "run_training"]


@dataclass(frozen=True)
class RunOptions:
    """How long to train and how often to report."""

    total_kimg: float = 100.0  # stop after this many thousand real images
    snapshot_kimg: float = 10.0  # checkpoint + image grid + metric every this many thousand images
    log_every: int = 20  # steps between progress lines
    grid_size: int = 16  # images in each snapshot grid (fixed latents)
    metric_images: int = 512  # held-out and generated images for the snapshot SWD (0 disables it)
    keep_snapshots: bool = False  # also keep G_ema of every snapshot (snapshot-KKKKKKKKK.safetensors), for curves over kimg


def _snapshot_grid(G_ema: Generator, z: torch.Tensor, c: torch.Tensor | None, path: Path) -> None:
    with torch.no_grad():
        img = G_ema(z, c, noise_mode="const")
    save_image(make_grid(to_uint8(img)), path)


class _SnapshotMetric:
    """SWD (and FID, given a detector) between G_ema samples (fixed latents) and held-out images, at every snapshot."""

    def __init__(self, G: Generator, held_out: Dataset, count: int, fid: Any = None):
        from latentshop.metrics.swd import SlicedWassersteinDistance

        self.count = min(count, len(held_out))
        self.swd = SlicedWassersteinDistance(G.img_resolution, num_images_hint=self.count)
        self.fid = fid  # a FrechetInceptionDistance, or None
        for start in range(0, self.count, 64):
            batch = torch.stack([torch.as_tensor(held_out[i][0]) for i in range(start, min(start + 64, self.count))])
            self.swd.update(batch, "real")
            if fid is not None:
                fid.update(batch, "real")
        gen = torch.Generator().manual_seed(4321)
        self.z = torch.randn([self.count, G.z_dim], generator=gen)
        self.c = None
        if G.c_dim:
            self.c = torch.stack([torch.as_tensor(held_out[i][1], dtype=torch.float32) for i in range(self.count)])

    @torch.no_grad()
    def __call__(self, G_ema: Generator) -> dict[str, float]:
        self.swd.reset("fake")
        if self.fid is not None:
            self.fid.reset("fake")
        device = G_ema.mapping.fc0.weight.device
        for start in range(0, self.count, 64):
            z = self.z[start : start + 64].to(device)
            c = None if self.c is None else self.c[start : start + 64].to(device)
            images = G_ema(z, c, noise_mode="const", impl="fast").clamp(-1, 1).cpu()
            self.swd.update(images, "fake")
            if self.fid is not None:
                self.fid.update(images, "fake")
        return {**self.swd.compute(), **(self.fid.compute() if self.fid is not None else {})}


def run_training(
    G: Generator,
    D: Discriminator,
    dataset: Dataset,
    outdir: str | Path,
    *,
    options: TrainOptions = TrainOptions(),
    run: RunOptions = RunOptions(),
    resume: bool = False,
    held_out: Dataset | None = None,
    extra_config: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
    inception: str | Path | None = None,
    verify_inception: bool = True,
) -> Trainer:
    """Train until ``run.total_kimg`` (or a stop signal); returns the trainer.

    Args:
        G, D: freshly built networks (their weights are replaced when resuming).
        dataset: items ``(uint8 [C, H, W], label [c_dim])``.
        outdir: the run folder (created).
        options: optimisation settings.
        run: duration and reporting.
        resume: continue from ``outdir/checkpoint.pt`` if it exists.
        held_out: images never trained on, for the snapshot metric (multi-scale SWD, ×1e3).
        extra_config: more facts to store in ``options.json`` (data source, preset).
        log: where progress lines go.
        inception: NVIDIA's ``inception-2015-12-05.pt``: FID against the held-out images at every snapshot too.
        verify_inception: refuse any Inception file but NVIDIA's (see :func:`latentshop.metrics.fid.load_inception`).
    """
    outdir = Path(outdir)
    main = is_main()
    fid = None
    if inception is not None:
        from latentshop.errors import ConfigError
        from latentshop.metrics.fid import FrechetInceptionDistance

        if held_out is None or min(run.metric_images, len(held_out)) < 2:
            raise ConfigError("the snapshot FID (--inception) needs at least 2 held-out images: pass --held-out FOLDER "
                              "(images never trained on), or train on data with a train/test split")
        # every rank checks the file, so that a bad one stops them all instead of leaving the others waiting
        fid = FrechetInceptionDistance(inception, device=next(G.parameters()).device, verify=verify_inception)
        fid = fid if main else None
    preload = getattr(dataset, "preload", None)
    if options.impl == "fast" and callable(preload):
        # Decode the images once (the fast path reads no files while training), where they fit.
        start = time.perf_counter()
        if preload() and main:
            log(f"{len(dataset)} training images decoded into memory in {time.perf_counter() - start:.1f} s")
    trainer = Trainer(G, D, dataset, options)
    ckpt = outdir / "checkpoint.pt"
    if resume and ckpt.exists():
        trainer.resume(ckpt)
        log(f"resumed from {ckpt} at {trainer.nimg / 1000:.1f} kimg")
    if main:
        outdir.mkdir(parents=True, exist_ok=True)
        config = {"train": asdict(options), "run": asdict(run), "G": G.init_kwargs, "D": D.init_kwargs, **(extra_config or {})}
        atomic_write_bytes(outdir / "options.json", (json.dumps(config, indent=2, default=str) + "\n").encode())

    grid_gen = torch.Generator().manual_seed(1234)
    grid_z = torch.randn([run.grid_size, G.z_dim], generator=grid_gen)
    grid_c = None
    if G.c_dim:
        grid_c = torch.eye(G.c_dim)[torch.arange(run.grid_size) % G.c_dim]

    metric = _SnapshotMetric(G, held_out, run.metric_images, fid) if main and held_out is not None and run.metric_images > 0 else None

    total = int(run.total_kimg * 1000)
    next_snapshot = (trainer.nimg // int(run.snapshot_kimg * 1000) + 1) * int(run.snapshot_kimg * 1000)
    start_time, start_nimg = time.perf_counter(), trainer.nimg
    with StopSignals() as stop:
        while trainer.nimg < total and not stop.requested():  # agreed by all ranks
            logs = trainer.train_step()
            if trainer.step % run.log_every == 0 or trainer.nimg >= total:
                elapsed = time.perf_counter() - start_time
                rate = (trainer.nimg - start_nimg) / max(elapsed, 1e-9)
                eta = (total - trainer.nimg) / max(rate, 1e-9)
                entry = {"kimg": trainer.nimg / 1000, "images_per_s": rate, "eta_s": eta, **logs}
                if main:
                    with open(outdir / "log.jsonl", "a") as f:
                        f.write(json.dumps(entry) + "\n")
                    losses = "  ".join(f"{k} {v:.3f}" for k, v in logs.items())
                    log(f"kimg {trainer.nimg / 1000:8.2f}  {rate:6.1f} img/s  {losses}  ETA {eta / 3600:5.2f} h")
            if trainer.nimg >= next_snapshot or trainer.nimg >= total:
                next_snapshot += int(run.snapshot_kimg * 1000)
                trainer.save(ckpt)  # every rank (it gathers their RNG states); rank 0 writes
                if main:
                    _snapshot_grid(trainer.G_ema, grid_z, grid_c, outdir / f"snapshot-{trainer.nimg:09d}.png")
                    if run.keep_snapshots:
                        _keep_snapshot(trainer, outdir / f"snapshot-{trainer.nimg:09d}")
                    if metric is not None:
                        scores = metric(trainer.G_ema)
                        with open(outdir / "metrics.jsonl", "a") as f:
                            f.write(json.dumps({"kimg": trainer.nimg / 1000, **scores}) + "\n")
                        fid_text = f"  FID {scores['fid']:.2f}" if "fid" in scores else ""
                        log(f"snapshot at {trainer.nimg / 1000:.2f} kimg: SWD x1e3 "
                            + " ".join(f"{k} {v:.1f}" for k, v in scores.items() if k != "fid") + fid_text)
    trainer.save(ckpt)
    if main:
        if stop.signal is not None:
            log(stop.stopped(trainer.nimg))
        else:
            export_model(trainer, outdir / "model", extra_config)
            log(f"done: {trainer.nimg / 1000:.1f} kimg; model written to {outdir / 'model'}")
    return trainer


def _keep_snapshot(trainer: Trainer, path: Path) -> None:
    """G_ema of this snapshot as a loadable latentshop folder (no D, no optimiser state)."""
    spec = NetworkSpec("generator", trainer.G_ema.init_kwargs, trainer.G_ema.state_dict())
    write_native(path, {"G_ema": spec}, info={"trained_kimg": trainer.nimg / 1000, "steps": trainer.step}, overwrite=True)


def export_model(trainer: Trainer, path: Path, info: dict[str, Any] | None = None) -> None:
    """Write G_ema and D as a latentshop checkpoint folder (the shippable model; G stays in the checkpoint)."""
    networks = {
        "G_ema": NetworkSpec("generator", trainer.G_ema.init_kwargs, trainer.G_ema.state_dict()),
        "D": NetworkSpec("discriminator", trainer.D.init_kwargs, trainer.D.state_dict()),
    }
    info = {"trained_kimg": trainer.nimg / 1000, "steps": trainer.step, **(info or {})}
    write_native(path, networks, info=info, overwrite=True)
