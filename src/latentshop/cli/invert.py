"""``latentshop invert`` and ``latentshop render``: find images in a model's latent space, render latents."""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import typer

from latentshop.checkpoints import load_model
from latentshop.cli.common import console, err_console, handle_errors, print_warning, progress
from latentshop.data.dataset import IMAGE_SUFFIXES, load_image
from latentshop.data.images import make_grid, save_image, to_uint8
from latentshop.errors import ConfigError, LatentshopError
from latentshop.fileio import atomic_write_bytes
from latentshop.inversion import (ENCODER_METHODS, INVERSION_METHODS, InversionError, InversionResult, list_inversion_methods,
                                  perceptual_loss)
from latentshop.latents import load_latent, save_latent, synthesize
from latentshop.pipeline import Inversion, Target, invert_targets, load_targets, reconstruction_metrics, render

__all__ = ["invert_command", "render_command", "collect_images", "shard_for_rank"]

INVERT_EXAMPLES = """
Examples:

  latentshop invert face.png --model default --outdir out/inv

  latentshop invert photo.jpg --model default --align --paste-back --outdir out/inv

  latentshop invert group.jpg --model default --align --all-faces --outdir out/group

  latentshop invert photos/ --model synthetic --method w --steps 1000 --batch 8 --outdir out/inv

  latentshop invert photos/ --model default --align --method restyle-e4e --outdir out/fast

  latentshop invert face.png --model default --method e4e+opt --steps 50 --outdir out/hybrid

  latentshop invert face.png --model my.pkl --method e4e --encoder runs/e4e/encoder --outdir out/mine

  torchrun --nproc-per-node 2 -m latentshop.cli invert photos/ --model default --outdir out/inv

Per image NAME it writes NAME.npz (the latent; `latentshop render` renders it), NAME.png (the
reconstruction), NAME-compare.png (target | reconstruction), NAME.json (PSNR, SSIM, MS-SSIM,
perceptual distance, identity with --align) and, with --align, NAME-aligned.png and
NAME.align.json. With --all-faces, NAME is NAME-face1, NAME-face2, ... (largest first). Images
whose NAME.json (NAME-face1.json) exists are skipped, so an interrupted folder resumes.
"""


@dataclass
class _Item:
    path: Path
    name: str


def collect_images(inputs: list[Path]) -> tuple[list[_Item], list[str]]:
    """Image files of ``inputs`` (files, and the image files directly inside folders), each with a
    unique output name; plus notes about what was left out."""
    items: list[_Item] = []
    notes: list[str] = []
    for p in inputs:
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file())
            images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
            if len(images) < len(files):
                notes.append(f"{p}: {len(files) - len(images)} file(s) without an image extension left out")
            if not images:
                notes.append(f"{p}: no image files in this folder")
            items.extend(_Item(f, f.stem) for f in images)
        elif p.exists():
            items.append(_Item(p, p.stem))
        else:
            raise ConfigError(f"{p}: no such file or folder")
    seen: dict[str, int] = {}
    for it in items:
        k = seen.get(it.name, 0)
        seen[it.name] = k + 1
        if k:
            it.name = f"{it.name}-{k}"
    return items, notes


def shard_for_rank(items: list[Any]) -> list[Any]:
    """This process's share under ``torchrun`` (``RANK``/``WORLD_SIZE``): every WORLD_SIZE-th item."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return items[rank::world]


def _write_video(frames: list[np.ndarray], path: Path) -> None:
    import io

    from PIL import Image

    imgs = [Image.fromarray(f if f.shape[2] == 3 else f[..., 0]) for f in frames]
    buf = io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:], duration=60, loop=0)
    atomic_write_bytes(path, buf.getvalue())


@handle_errors
def invert_command(
    images: list[Path] = typer.Argument(..., help="Image files and/or folders of images.", show_default=False),
    model: str = typer.Option("default", "--model", "-m", help="Checkpoint: NVIDIA .pkl, rosinality .pt, latentshop folder, or model name."),
    method: str = typer.Option("w+", help=f"Inversion method: {', '.join(list_inversion_methods())}."),
    steps: Optional[int] = typer.Option(None, min=0, help="Optimisation steps (default: the method's recipe: w 1000, w+ 250, w+noise 250 + 100)."),
    noise_steps: Optional[int] = typer.Option(None, min=0, help="w+noise: steps of the noise-map stage."),
    lr: Optional[float] = typer.Option(None, min=0.0, help="Peak learning rate (default: the method's)."),
    loss: Optional[str] = typer.Option(None, help="Loss weights, e.g. 'perceptual=1,mse=1' (terms: mse, perceptual, ms_ssim)."),
    perceptual: str = typer.Option("mobilenet", help="Perceptual back-end: mobilenet (bundled), vgg16 (with --vgg) or discriminator (the model's own D)."),
    vgg: Optional[Path] = typer.Option(None, "--vgg", help="NVIDIA's vgg16.pt TorchScript file (implies --perceptual vgg16)."),
    outdir: Path = typer.Option(..., "--outdir", "-o", help="Folder for the per-image outputs."),
    align: bool = typer.Option(False, "--align/--no-align", help="Detect and FFHQ-align the face first (dlib)."),
    paste_back: bool = typer.Option(False, "--paste-back", help="With --align: also write NAME-pasted.png, the reconstruction put back into the photo."),
    all_faces: bool = typer.Option(False, "--all-faces", help="With --align: invert every face of a photo (largest first: NAME-face1, NAME-face2, ...), not only the largest."),
    upscale: bool = typer.Option(False, "--upscale", help="Accept images smaller than the model (enlarged; detail is missing)."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="Grayscale image: white pixels count, black ones are ignored."),
    batch: Optional[int] = typer.Option(None, min=1, help="Images inverted at once (default 4 for optimisation, 32 for encoders)."),
    encoder: Optional[Path] = typer.Option(None, "--encoder", help="Encoder methods: an encoder folder (default: the model's bundled one)."),
    iterations: Optional[int] = typer.Option(None, min=1, max=20, help="Encoder passes (restyle-*, e4e+opt; default: the passes the encoder was trained with; psp/e4e: 1)."),
    seed: int = typer.Option(0, help="Seed of the optimisation noise."),
    bf16: bool = typer.Option(False, "--bf16", help="bfloat16 autocast: faster on AMX CPUs and GPUs, slightly less exact."),
    video: bool = typer.Option(False, "--video", help="Also write NAME-optimisation.gif (target | current reconstruction)."),
    device: str = typer.Option("auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'."),
) -> None:
    """Find images in a model's latent space (optimisation, encoders, or an encoder start + optimisation)."""
    entry = INVERSION_METHODS.get(method)
    if batch is None:
        batch = 4 if entry.optimizes else 32
    if (encoder is not None or iterations is not None) and entry.encoder is None:
        raise ConfigError(f"--encoder/--iterations apply to the encoder methods ({', '.join(ENCODER_METHODS)}), not {method}")
    if paste_back and not align:
        raise ConfigError("--paste-back needs --align (the transform comes from the alignment)")
    if all_faces and not align:
        raise ConfigError("--all-faces needs --align: the faces are found by the alignment")
    if vgg is not None:
        perceptual = "vgg16"
    bundle = load_model(model, device=device)
    G, dev = bundle.G, bundle.device
    if encoder is not None:
        E = bundle.use_encoder(encoder)
        if E.kind != entry.encoder:
            raise ConfigError(f"{encoder} is a {E.kind} encoder, the method needs {entry.encoder}; "
                              f"pick --method {E.kind} or another --encoder")
    from latentshop.metrics.perceptual import load_perceptual

    # The loss network (mobilenet at the image's size, as NVIDIA) and the reported metric (mobilenet at 160 px).
    D = bundle.discriminator() if perceptual == "discriminator" else None
    loss_net = load_perceptual("vgg16", device=dev, path=vgg) if vgg is not None else perceptual_loss(G, perceptual, D=D)
    metric_net = load_perceptual("mobilenet", device=dev)
    mask_t = None
    if mask is not None:
        mask_t = (load_image(mask, res=G.img_resolution, channels=1)[None] + 1) / 2

    items, notes = collect_images(images)
    for n in notes:
        err_console.print(f"[yellow]note:[/] {n}")
    items = shard_for_rank(items)
    outdir.mkdir(parents=True, exist_ok=True)
    # NAME.json is written last and marks a photo done; with --all-faces NAME-face1.json does (saved after its other faces)
    todo = [it for it in items if not (outdir / f"{it.name}{'-face1' if all_faces else ''}.json").exists()]
    if len(todo) < len(items):
        console.print(f"{len(items) - len(todo)} image(s) already done in {outdir}: skipped")
    overrides: dict[str, Any] = {"seed": seed, "bf16": bf16}
    if iterations is not None:
        overrides["iterations"] = iterations
    if noise_steps is not None:
        overrides["noise_steps"] = noise_steps
    failures = 0
    stop = threading.Event()
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with progress() as bar:
            for start in range(0, len(todo), batch):
                targets: list[Target] = []
                for it in todo[start:start + batch]:
                    try:
                        targets.extend(load_targets(bundle, it.path, align=align, all_faces=all_faces, upscale=upscale,
                                                    name=it.name, warn=print_warning))
                    except LatentshopError as e:
                        failures += 1
                        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
                if not targets:
                    continue
                target = torch.stack([t.tensor for t in targets]).to(dev)
                label = targets[0].name if len(targets) == 1 else f"{targets[0].name} +{len(targets) - 1}"
                task = bar.add_task(f"{method} {label}", total=None)
                frames: list[list[np.ndarray]] = [[] for _ in targets]

                def callback(state: Any, task: Any = task, target: torch.Tensor = target, frames: list = frames) -> None:
                    bar.update(task, completed=state.step, total=state.total,
                               description=f"{method} {label} [{state.stage}]" + (
                                   f" loss {float(state.losses['total'].mean()):.4f}" if "total" in state.losses else ""))
                    every = max(1, state.total // 40)
                    if video and (state.step % every == 0 or state.step == state.total):
                        rec = to_uint8(synthesize(G, state.latent()))
                        tgt = to_uint8(target)
                        for i in range(len(frames)):
                            frames[i].append(make_grid(np.stack([tgt[i], rec[i]]), cols=2, pad=2))

                try:
                    result = invert_targets(bundle, target, method=method, steps=steps, lr=lr, loss=loss, perceptual=loss_net,
                                            D=D, mask=mask_t, callback=callback, cancel=stop, **overrides)
                except InversionError as e:
                    failures += len(targets)
                    err_console.print(f"[bold red]error:[/] {', '.join(t.name for t in targets)}: {e}", highlight=False, soft_wrap=True)
                    if e.latent is not None:
                        for i, t in enumerate(targets):
                            save_latent(e.latent[i], outdir / f"{t.name}.failed.npz", model=model)
                    continue
                latent = result.latent
                if latent.meta.get("cancelled"):
                    err_console.print("[yellow]stopped:[/] the current batch was not saved; run the same command to resume")
                    raise typer.Exit(130)
                recon = synthesize(result.generator_for(G), latent)
                metrics = reconstruction_metrics(target, recon, latent, metric_net, identity=align)
                order = list(enumerate(targets))
                for i, t in reversed(order) if all_faces else order:  # a photo's first face is saved last (resume)
                    Inversion(t, InversionResult(latent[i], result.generator)).save(
                        outdir, bundle, metrics=metrics[i], recon=recon[i], paste_back=paste_back)
                    if video:
                        _write_video(frames[i], outdir / f"{t.name}-optimisation.gif")
                    m = metrics[i]
                    console.print(f"{t.name}: PSNR {m['psnr']} dB, MS-SSIM {m['ms_ssim']}" +
                                  (f", identity {m['identity']}" if "identity" in m else ""))
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
    if failures:
        raise ConfigError(f"{failures} image(s) failed (see above); the others are in {outdir}")


invert_command.__doc__ = (invert_command.__doc__ or "") + INVERT_EXAMPLES


@handle_errors
def render_command(
    latents: list[Path] = typer.Argument(..., help="Latent files (.npz) written by `latentshop invert` (or the library).", show_default=False),
    model: str = typer.Option("default", "--model", "-m", help="The model the latents were found for."),
    outdir: Path = typer.Option(..., "--outdir", "-o", help="Folder for NAME.png (NAME-K.png for a batch)."),
    trunc: float = typer.Option(1.0, "--trunc", min=0.0, max=2.0, help="Truncation psi towards the mean w (1 = none)."),
    device: str = typer.Option("auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'."),
) -> None:
    """Render saved latents with the model they belong to.

    Example:

      latentshop render out/inv/face.npz --model default --outdir out/render
    """
    bundle = load_model(model, device=device)
    outdir.mkdir(parents=True, exist_ok=True)
    for path in latents:
        imgs = render(bundle, load_latent(path, bundle.G), truncation_psi=trunc)
        stem = path.name[:-4] if path.name.endswith(".npz") else path.stem
        for i, img in enumerate(imgs):
            out = outdir / (f"{stem}.png" if len(imgs) == 1 else f"{stem}-{i}.png")
            save_image(img, out)
            console.print(f"wrote {out}")
