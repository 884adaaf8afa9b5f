"""``latentshop train-encoder``: train a pSp / e4e (ReStyle) encoder for a generator (also under torchrun)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch
import typer

from latentshop.cli.common import console, handle_errors
from latentshop.errors import ConfigError

__all__ = ["train_encoder_command"]


def _held_out(spec: str, split: str | None, G, n: int) -> torch.Tensor | None:
    """Held-out targets for the snapshots: the synthetic test seeds, or the ``test`` split of data
    trained on its ``train`` split; ``None`` otherwise (the trainer then uses generator samples)."""
    from latentshop.cli.train import open_held_out

    ds = open_held_out(spec, res=G.img_resolution, channels=G.img_channels, split=split, override=None)
    if ds is None or len(ds) == 0:
        return None
    idx = torch.linspace(0, len(ds) - 1, min(n, len(ds))).long()
    return torch.stack([torch.as_tensor(ds[int(i)][0]) for i in idx]).float() / 127.5 - 1


@handle_errors
def train_encoder_command(
    kind: str = typer.Option("e4e", help="Encoder: 'e4e' (base w + offsets, edits well) or 'psp' (one code per layer)."),
    model: str = typer.Option("default", "--model", "-m", help="The generator: NVIDIA .pkl, rosinality .pt, latentshop folder or name."),
    data: Optional[str] = typer.Option(None, help="Real images: a folder/zip, or synthetic:photo|toon|caricature. "
                                                  "Without it, the generator's own samples only."),
    split: Optional[str] = typer.Option(None, help="Train on this split of a labelled folder (lfw-faces: 'train')."),
    outdir: Path = typer.Option(Path("runs/encoder"), "--outdir", "-o", help="Run folder: checkpoint, snapshots, log, encoder/."),
    kimg: float = typer.Option(60.0, min=0.001, help="Train for this many thousand images (real + samples)."),
    batch: int = typer.Option(16, min=1, help="Global batch size (split across torchrun processes)."),
    sample_fraction: Optional[float] = typer.Option(None, min=0.0, max=1.0,
                                                    help="Share of each batch from the generator (default 0.5 with --data, else 1)."),
    restyle: bool = typer.Option(True, "--restyle/--no-restyle", help="ReStyle input (image + reconstruction) and iterative passes."),
    iterations: int = typer.Option(2, min=1, max=10, help="ReStyle passes per training batch (1 with --no-restyle)."),
    lr: float = typer.Option(3e-4, min=1e-7, help="Adam learning rate (cosine ramp-down over the last 30 %)."),
    perceptual: float = typer.Option(0.8, min=0.0, help="Weight of the perceptual distance."),
    mse: float = typer.Option(1.0, min=0.0, help="Weight of the pixel MSE."),
    ms_ssim: float = typer.Option(0.0, min=0.0, help="Weight of 1 - MS-SSIM."),
    identity: float = typer.Option(0.0, min=0.0, help="Weight of the identity loss, 1 - cosine of identity embeddings (pSp/e4e use 0.1 on faces)."),
    identity_net: str = typer.Option("identity", "--identity-net", help="Identity embedding: an evaluator name or folder (the bundled 'identity' is trained on colour faces)."),
    latent: float = typer.Option(0.1, min=0.0, help="Weight of the latent loss on generator samples."),
    width: int = typer.Option(32, min=4, max=256, help="Backbone stem width (stages double it up to 8x)."),
    style_channels: int = typer.Option(96, min=8, max=1024, help="Channels of the feature pyramid and style heads."),
    blocks: int = typer.Option(1, min=1, max=8, help="Residual blocks per backbone stage."),
    progressive_every: int = typer.Option(100, min=1, help="e4e: steps between switching on the next layer's offset."),
    snapshot_kimg: float = typer.Option(5.0, min=0.001, help="Checkpoint, sheet and held-out PSNR every this many kimg."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUTDIR/checkpoint.pt (exactly)."),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--fp32", help="bfloat16 autocast, or float32 (default: whichever trains faster here; bfloat16 pays on AMX CPUs and GPUs)."),
    threads: Optional[int] = typer.Option(None, min=1, help="CPU threads (default: all cores for one process, an equal share per process under torchrun)."),
    seed: int = typer.Option(0, help="Seed of weights, data order and samples."),
    device: str = typer.Option("auto", help="'auto', 'cpu', 'cuda' or 'cuda:N' (under torchrun: one GPU per process)."),
) -> None:
    """Train an encoder that inverts a generator in one pass (pSp, e4e; ReStyle iterations).

    The run folder gets a checkpoint every snapshot (Ctrl-C or SIGTERM write one too; --resume
    continues exactly), a sheet of held-out targets with each pass's reconstruction, and at the end
    the encoder in OUTDIR/encoder, usable with `latentshop invert --method e4e --encoder OUTDIR/encoder`.

    Examples:

      latentshop train-encoder --kind e4e --model default --data ../shared/data/lfw-faces --split train -o runs/e4e

      latentshop train-encoder --kind psp --model synthetic --data synthetic:photo --kimg 40 -o runs/psp

      latentshop train-encoder --kind e4e --model my.pkl -o runs/e4e-mine      # generator samples only

      torchrun --nproc_per_node 2 -m latentshop.cli train-encoder --kind e4e --model synthetic -o runs/ddp
    """
    from latentshop.checkpoints import load_generator
    from latentshop.cli.train import open_training_data
    from latentshop.training.distributed import (
        bf16_pays, configure_threads, init_distributed, is_main, shutdown_distributed,
    )
    from latentshop.training.encoder import EncoderTrainOptions, train_encoder

    dev = init_distributed(device)  # under torchrun: joins the process group, one GPU per process on CUDA
    threads = configure_threads(threads)
    if bf16 is None:
        bf16, _ = bf16_pays(dev)
    if not restyle and iterations != 1:
        iterations = 1
    G = load_generator(model, device=dev)
    fraction = sample_fraction if sample_fraction is not None else (0.5 if data else 1.0)
    dataset = None
    if data is not None:
        dataset = open_training_data(data, res=G.img_resolution, channels=G.img_channels, split=split, xflip=True)
    elif fraction < 1:
        raise ConfigError("--sample-fraction below 1 needs real images: give --data")
    options = replace(EncoderTrainOptions(), kind=kind, restyle=restyle, iterations=iterations, batch_size=batch,
                      sample_fraction=fraction, total_kimg=kimg, lr=lr, perceptual=perceptual, mse=mse, ms_ssim=ms_ssim,
                      identity=identity, identity_net=identity_net,
                      latent=latent, progressive_every=progressive_every, bf16=bf16, seed=seed)
    arch = dict(widths=[width, width * 2, width * 4, width * 8], blocks=blocks, style_channels=style_channels)
    if is_main():
        console.print(f"encoder for {model} ({G.img_resolution} px, {G.num_ws} ws) on "
                      f"{(str(len(dataset)) + ' images from ' + data) if dataset is not None else 'generator samples'}, "
                      f"{'bf16' if bf16 else 'fp32'}, {threads} thread(s) on {dev}")
    held = _held_out(data, split, G, 16) if data else None
    train_encoder(G, dataset, outdir, options=options, arch=arch, held_out=held, snapshot_kimg=snapshot_kimg, resume=resume,
                  extra_config={"model": model, "data": data or "generator samples", "split": split},
                  log=lambda line: console.print(line, highlight=False))
    shutdown_distributed()
