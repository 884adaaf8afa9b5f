"""``latentshop train``: train a StyleGAN2 on a folder of images or on synthetic faces (also under torchrun)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import typer

from latentshop.cli.common import console, handle_errors
from latentshop.errors import ConfigError

__all__ = ["train", "open_training_data"]


def open_training_data(spec: str, *, res: int, channels: int, split: str | None, xflip: bool) -> torch.utils.data.Dataset:
    """A dataset from ``PATH`` (folder or zip of images, prepared or not) or ``synthetic:<domain>``."""
    if spec.startswith("synthetic:"):
        from latentshop.data.synthetic import SyntheticFaces

        return SyntheticFaces(domain=spec.split(":", 1)[1], res=res, channels=channels, xflip=xflip)
    from latentshop.data.dataset import ImageFolderDataset

    if not Path(spec).exists():
        raise ConfigError(f"training data {spec!r} does not exist; give a folder or zip of images, or synthetic:photo|toon|caricature")
    return ImageFolderDataset(spec, res=res, channels=channels, split=split, xflip=xflip)


def open_held_out(spec: str, *, res: int, channels: int, split: str | None, override: str | None) -> torch.utils.data.Dataset | None:
    """Images the run never trains on, for the snapshot metric: ``--held-out``, the synthetic test
    seeds, or the ``test`` split of a dataset trained on its ``train`` split; otherwise none."""
    if override is not None:
        return open_training_data(override, res=res, channels=channels, split=None, xflip=False)
    if spec.startswith("synthetic:"):
        from latentshop.data.synthetic import SyntheticFaces

        return SyntheticFaces(domain=spec.split(":", 1)[1], res=res, channels=channels, n=2048, split="test")
    if split == "train":
        return open_training_data(spec, res=res, channels=channels, split="test", xflip=False)
    return None


@handle_errors
def train(
    preset: Optional[str] = typer.Option(None, help="A model recipe: 'celeba' (real colour faces, 128 px), 'lfw' (grey real faces, 64 px), 'synthetic', or 'default' (the bundled default model's recipe)."),
    data: Optional[str] = typer.Option(None, help="Images: a folder or zip (prepared or not), or synthetic:photo|toon|caricature."),
    outdir: Path = typer.Option(Path("runs/train"), "--outdir", "-o", help="Run folder: checkpoint, snapshots, log, final model."),
    res: Optional[int] = typer.Option(None, help="Resolution (a power of two; the preset's by default)."),
    channels: Optional[int] = typer.Option(None, min=1, max=3, help="Image channels: 1 (grayscale) or 3."),
    cbase: Optional[int] = typer.Option(None, min=16, help="Capacity: min(cbase // res, cmax) channels per block (the preset's by default)."),
    cmax: Optional[int] = typer.Option(None, min=1, help="Maximum channels per block (the preset's by default)."),
    kimg: Optional[float] = typer.Option(None, min=0.001, help="Train until this many thousand real images have been shown."),
    batch: Optional[int] = typer.Option(None, min=1, help="Global batch size (split across torchrun processes)."),
    snapshot_kimg: Optional[float] = typer.Option(None, min=0.001, help="Checkpoint and image grid every this many kimg."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUTDIR/checkpoint.pt (exactly)."),
    held_out: Optional[str] = typer.Option(None, "--held-out", help="Images for the snapshot SWD (default: the data's test split)."),
    inception: Optional[Path] = typer.Option(None, "--inception", help="NVIDIA's inception-2015-12-05.pt: also an FID against the held-out images at each snapshot."),
    verify_inception: bool = typer.Option(True, "--verify-inception/--no-verify-inception", help="Refuse any Inception file but NVIDIA's (SHA-256)."),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--fp32", help="bfloat16 autocast, or float32 (default: whichever trains faster here; bfloat16 pays on AMX CPUs and GPUs, not on CPUs that emulate it)."),
    impl: str = typer.Option("fast", help="Training path: 'fast' (channels-last, fused compiled kernels) or 'reference' (the reference's op order, slower)."),
    threads: Optional[int] = typer.Option(None, min=1, help="CPU threads (default: all cores for one process, an equal share per process under torchrun)."),
    ada: Optional[bool] = typer.Option(None, "--ada/--no-ada", help="Adaptive discriminator augmentation (small datasets)."),
    ada_p: float = typer.Option(0.0, min=0.0, max=1.0, help="ADA's initial augmentation probability (then adapted)."),
    seed: int = typer.Option(0, help="Seed of weights, data order, latents and noise."),
    device: str = typer.Option("auto", help="'auto', 'cpu', 'cuda' or 'cuda:N' (under torchrun: one GPU per process)."),
) -> None:
    """Train a StyleGAN2 generator and discriminator.

    Ctrl-C or SIGTERM finish the current step and write a checkpoint; --resume continues exactly.
    Under torchrun the same command trains data-parallel (gloo on CPUs, NCCL on GPUs).

    Examples:

      latentshop train --preset lfw --data ../shared/data/lfw-faces -o runs/lfw

      latentshop train --preset synthetic --kimg 50 -o runs/synth --resume

      latentshop train --data my_images/ --res 64 --channels 3 --kimg 500 -o runs/mine

      latentshop train --preset lfw --data ../shared/data/lfw-faces --inception inception-2015-12-05.pt -o runs/fid

      torchrun --nproc_per_node 2 -m latentshop.cli train --preset synthetic -o runs/ddp
    """
    from dataclasses import replace

    from latentshop.models.stylegan2 import Discriminator, Generator
    from latentshop.training.distributed import (
        bf16_pays, configure_threads, init_distributed, is_main, shutdown_distributed,
    )
    from latentshop.training.presets import architecture, get_preset
    from latentshop.training.run import run_training

    dev = init_distributed(device)  # under torchrun: joins the process group, one GPU per process on CUDA
    threads = configure_threads(threads)
    if preset is not None:
        p = get_preset(preset)
    else:
        if data is None or res is None:
            raise ConfigError("without --preset, give --data and --res (and --channels)")
        from latentshop.training.presets import PRESETS

        p = replace(PRESETS["synthetic"], name="custom", data=data, res=res, channels=channels or 3, split=None, xflip=False)
    p = replace(p, data=data or p.data, res=res or p.res, channels=channels or p.channels,
                channel_base=cbase or p.channel_base, channel_max=cmax or p.channel_max)
    options = p.options
    precision_note = ""
    if bf16 is None and options.bf16:
        # The recipes train in bfloat16 where it pays; measure whether it does on this machine.
        bf16, speedup = bf16_pays(dev)
        precision_note = f" (bfloat16 convolutions run {speedup:.2f}x float32's speed here)"
    if impl not in ("fast", "reference"):
        raise ConfigError(f"--impl must be 'fast' or 'reference', got {impl!r}")
    options = replace(options, seed=seed, batch_size=batch or options.batch_size, impl=impl,
                      bf16=options.bf16 if bf16 is None else bf16, ada=options.ada if ada is None else ada, ada_p=ada_p)
    run = replace(p.run, total_kimg=kimg or p.run.total_kimg, snapshot_kimg=snapshot_kimg or p.run.snapshot_kimg)

    dataset = open_training_data(p.data, res=p.res, channels=p.channels, split=p.split, xflip=p.xflip)
    G_kwargs, D_kwargs = architecture(p.res, p.channels, z_dim=p.z_dim, mapping_layers=p.mapping_layers,
                                      channel_base=p.channel_base, channel_max=p.channel_max,
                                      c_dim=0)
    torch.manual_seed(seed)
    G, D = Generator(**G_kwargs).to(dev), Discriminator(**D_kwargs).to(dev)
    if is_main():
        console.print(f"training {p.name}: {len(dataset)} images from {p.data}, {p.res} px, {p.channels} channel(s), "
                      f"batch {options.batch_size}, {run.total_kimg} kimg, {'bf16' if options.bf16 else 'fp32'}{precision_note}, "
                      f"{options.impl} path, {threads} thread(s) on {dev}")
    held = open_held_out(p.data, res=p.res, channels=p.channels, split=p.split, override=held_out)
    run_training(G, D, dataset, outdir, options=options, run=run, resume=resume, held_out=held,
                 extra_config={"preset": p.name, "data": p.data, "split": p.split, "xflip": p.xflip},
                 log=lambda line: console.print(line, highlight=False),
                 inception=inception, verify_inception=verify_inception)
    shutdown_distributed()
