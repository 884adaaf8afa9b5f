"""``latentshop interpolate``: a video through two or more latents (seeds, latent files, images)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from latentshop.checkpoints import load_model
from latentshop.cli.common import cli_input, console, handle_errors, progress
from latentshop.data.images import save_image, to_uint8
from latentshop.data.video import contact_sheet, require_ffmpeg, write_gif, write_mp4
from latentshop.editing.mixing import path as latent_path
from latentshop.errors import ConfigError
from latentshop.inversion import list_inversion_methods
from latentshop.fileio import atomic_write_bytes
from latentshop.latents import SPACES, save_latent, synthesize
from latentshop.pipeline import SOURCE_HELP

__all__ = ["interpolate_command", "InterpolationSpace", "InterpolationMethod", "VideoFormat"]


class InterpolationSpace(str, Enum):
    z = "z"
    w = "w"
    w_plus = "w+"
    s = "s"


class InterpolationMethod(str, Enum):
    auto = "auto"
    lerp = "lerp"
    slerp = "slerp"


class VideoFormat(str, Enum):
    gif = "gif"
    mp4 = "mp4"
    both = "both"


@handle_errors
def interpolate_command(
    inputs: list[str] = typer.Argument(..., help=f"Two or more keyframes, in order; each is {SOURCE_HELP}.", show_default=False),
    model: str = typer.Option("default", "--model", "-m", help="Checkpoint: NVIDIA .pkl, rosinality .pt, latentshop folder, or model name."),
    frames: int = typer.Option(30, min=2, help="Frames from one input to the next, both ends included (two inputs: the whole video)."),
    outdir: Path = typer.Option(..., "--outdir", "-o", help="Folder for interpolation.gif/.mp4, interpolation-sheet.png, interpolation.npz."),
    space: InterpolationSpace = typer.Option(InterpolationSpace.w_plus, help="Latent space of the path; z needs z inputs (seeds without --trunc)."),
    method: InterpolationMethod = typer.Option(InterpolationMethod.auto, help="auto: slerp in z, lerp in w / w+ / s."),
    format_: VideoFormat = typer.Option(VideoFormat.gif, "--format", help="Video file(s) to write."),
    fps: float = typer.Option(15.0, min=0.5, max=120.0, help="Frames per second (GIF plays at most 50)."),
    loop: bool = typer.Option(False, "--loop/--no-loop", help="Go back from the last input to the first: a seamless loop."),
    sheet: int = typer.Option(8, min=1, help="Frames on interpolation-sheet.png, evenly spaced."),
    trunc: float = typer.Option(1.0, "--trunc", min=0.0, max=2.0, help="Truncation psi of seed inputs (makes them w+ latents)."),
    method_invert: str = typer.Option("auto", "--method-invert", help=f"Inversion of image inputs: auto: e4e+opt when the model has an e4e encoder, else w+, or one of {', '.join(list_inversion_methods())}."),
    steps: Optional[int] = typer.Option(None, min=0, help="Inversion steps for image inputs (default: the method's recipe)."),
    align: bool = typer.Option(False, "--align", help="FFHQ-align image inputs (dlib) before inverting them."),
    batch: int = typer.Option(8, min=1, help="Frames rendered at once."),
    bf16: bool = typer.Option(False, "--bf16", help="bfloat16 autocast: faster on AMX CPUs and GPUs, slightly less exact."),
    device: str = typer.Option("auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'."),
) -> None:
    """Interpolate between latents and write a video, a contact sheet and the frames' latents.

    Inputs are seeds, latent files from `latentshop invert`, or images (inverted first). W / W+ / S
    paths are straight lines; Z paths are spherical (slerp), as in StyleGAN's path-length metric.

    Examples:

      latentshop interpolate seed:1 seed:2 --model ffhq.pkl --frames 60 --format both -o out/interp

      latentshop interpolate seed:1 seed:2 seed:3 --space z --loop --fps 24 -m ffhq.pkl -o out/loop

      latentshop interpolate out/inv/me.npz out/inv/you.npz --model default --format mp4 -o out/morph

      latentshop interpolate me.jpg you.jpg --align --method-invert w+ --steps 500 -m default -o out/morph
    """
    if len(inputs) < 2:
        raise ConfigError(f"give at least two inputs to interpolate between, got {len(inputs)}")
    if format_ in (VideoFormat.mp4, VideoFormat.both):
        require_ffmpeg()  # before any inversion or rendering
    bundle = load_model(model, device=device)
    G = bundle.G
    order = {s: i for i, s in enumerate(SPACES)}
    sources = []
    for text in inputs:
        src = cli_input(bundle, text, method=method_invert, steps=steps, align=align, bf16=bf16, trunc=trunc)
        if order[src.latent.space] > order[space.value]:
            hint = " (seeds are z latents only without --trunc)" if src.kind == "seed" else ""
            raise ConfigError(f"{text}: is a {src.latent.space!r} latent and cannot be interpolated in {space.value!r}{hint}; "
                              f"use --space {src.latent.space}")
        sources.append(src)
    lat = latent_path(G, [s.latent for s in sources], frames_per_segment=frames, space=space.value,
                      method=None if method == InterpolationMethod.auto else method.value, loop=loop)
    lat = lat.replace(meta={**lat.meta, "inputs": list(inputs)})
    outdir.mkdir(parents=True, exist_ok=True)
    options = dict(model=model, inputs=list(inputs), frames=frames, space=space.value, method=lat.meta["interpolation"]["method"],
                   format=format_.value, fps=fps, loop=loop, trunc=trunc, method_invert=method_invert, steps=steps, align=align,
                   bf16=bf16, device=device)
    atomic_write_bytes(outdir / "options.json", (json.dumps(options, indent=2, default=str) + "\n").encode())

    images = []
    with progress() as bar:
        task = bar.add_task("rendering", total=len(lat))
        for start in range(0, len(lat), batch):
            images.append(to_uint8(synthesize(G, lat[start:start + batch], bf16=bf16)))
            bar.advance(task, min(batch, len(lat) - start))
    video = np.concatenate(images)
    written = []
    save_latent(lat, outdir / "interpolation.npz", model=model)
    written.append("interpolation.npz")
    if format_ in (VideoFormat.gif, VideoFormat.both):
        write_gif(video, outdir / "interpolation.gif", fps=fps)
        written.append("interpolation.gif")
    if format_ in (VideoFormat.mp4, VideoFormat.both):
        write_mp4(video, outdir / "interpolation.mp4", fps=fps)
        written.append("interpolation.mp4")
    save_image(contact_sheet(video, cols=8, count=sheet), outdir / "interpolation-sheet.png")
    written.append("interpolation-sheet.png")
    console.print(f"{len(video)} frames through {', '.join(s.name for s in sources)}: wrote {', '.join(written)} to {outdir}")
