"""``latentshop generate`` and ``latentshop mix``: render images and style-mixing figures."""

from __future__ import annotations

import json
import re
from contextlib import nullcontext
from enum import Enum
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import typer

from latentshop.checkpoints import load_generator
from latentshop.checkpoints import load_model
from latentshop.cli.common import cli_input, console, handle_errors, parse_range, progress
from latentshop.data.images import make_grid, save_image, to_uint8
from latentshop.editing.edits import EditError, parse_layers
from latentshop.editing.mixing import style_mix
from latentshop.errors import ConfigError
from latentshop.inversion import list_inversion_methods
from latentshop.fileio import atomic_write_bytes
from latentshop.latents import Latent, seed_z, synthesize
from latentshop.pipeline import SOURCE_HELP
from latentshop.models.stylegan2 import Generator
from latentshop.ops import fast

COMPILE_HELP = "Compile the fast path's element-wise kernels (torch.compile): some seconds once, then faster; for big jobs."

__all__ = ["generate", "mix", "NoiseMode", "Precision"]


class NoiseMode(str, Enum):
    const = "const"
    random = "random"
    none = "none"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"


def _labels(G: Generator, class_idx: Optional[int], n: int) -> Optional[torch.Tensor]:
    if G.c_dim == 0:
        if class_idx is not None:
            console.print("[yellow]warning:[/] --class ignored: this model is unconditional")
        return None
    if class_idx is None:
        raise ConfigError(f"this model is conditional on {G.c_dim} classes: pass --class K with 0 <= K < {G.c_dim}")
    if not 0 <= class_idx < G.c_dim:
        raise ConfigError(f"--class {class_idx} is out of range: this model has classes 0..{G.c_dim - 1}")
    c = torch.zeros([n, G.c_dim])
    c[:, class_idx] = 1
    return c


def _render(G: Generator, ws: torch.Tensor, *, noise_mode: str, precision: Precision) -> torch.Tensor:
    device = G.mapping.fc0.weight.device
    ctx = torch.autocast(device.type, dtype=torch.bfloat16) if precision == Precision.bf16 else nullcontext()
    with torch.no_grad(), ctx:
        return G.synthesis(ws.to(device), noise_mode=noise_mode, impl="fast").float()


def _write_run_options(outdir: Path, options: dict) -> None:
    atomic_write_bytes(outdir / "options.json", (json.dumps(options, indent=2, default=str) + "\n").encode())


@handle_errors
def generate(
    model: str = typer.Option(..., "--model", "-m", help="Checkpoint: NVIDIA .pkl, rosinality .pt, latentshop folder, or model name."),
    seeds: str = typer.Option("0-7", help="Seeds to render, e.g. '0-7' or '1,5,9-12'."),
    trunc: float = typer.Option(1.0, "--trunc", min=0.0, max=2.0, help="Truncation psi (1 = none; 0.5-0.7 gives typical images)."),
    trunc_cutoff: Optional[int] = typer.Option(None, "--trunc-cutoff", min=0, help="Truncate only the first N ws (coarse layers)."),
    class_idx: Optional[int] = typer.Option(None, "--class", help="Class label for conditional models."),
    noise_mode: NoiseMode = typer.Option(NoiseMode.const, "--noise-mode", help="Per-layer noise: stored maps, fresh random, or off."),
    outdir: Path = typer.Option(..., "--outdir", "-o", help="Folder for seedNNNN.png, grid.png and options.json."),
    batch: int = typer.Option(8, min=1, help="Images rendered at once."),
    grid: bool = typer.Option(True, help="Also write grid.png with all images."),
    precision: Precision = typer.Option(Precision.fp32, help="bf16 is faster on CPUs with AMX / on GPUs, slightly less exact."),
    compile_: bool = typer.Option(False, "--compile/--no-compile", help=COMPILE_HELP),
    device: str = typer.Option("auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'."),
) -> None:
    """Render one image per seed (and a grid).

    Examples:

      latentshop generate --model ffhq.pkl --seeds 0-7 --trunc 0.7 --outdir out/

      latentshop generate --model cond.pkl --class 3 --seeds 10,11 --noise-mode none -o out/
    """
    seed_list = parse_range(seeds, what="seeds")
    fast.set_compile(compile_)
    G = load_generator(model, device=device)
    outdir.mkdir(parents=True, exist_ok=True)
    _write_run_options(outdir, dict(model=model, seeds=seed_list, trunc=trunc, trunc_cutoff=trunc_cutoff, class_idx=class_idx,
                                    noise_mode=noise_mode.value, precision=precision.value, device=device))
    all_images = []
    with progress() as bar:
        task = bar.add_task("generating", total=len(seed_list))
        for start in range(0, len(seed_list), batch):
            chunk = seed_list[start : start + batch]
            z = seed_z(G, chunk)
            c = _labels(G, class_idx, len(chunk))
            device_ = G.mapping.fc0.weight.device
            with torch.no_grad():
                ws = G.mapping(z.to(device_), None if c is None else c.to(device_), truncation_psi=trunc, truncation_cutoff=trunc_cutoff)
            images = to_uint8(_render(G, ws, noise_mode=noise_mode.value, precision=precision))
            for seed, img in zip(chunk, images):
                save_image(img, outdir / f"seed{seed:04d}.png")
            all_images.append(images)
            bar.advance(task, len(chunk))
    if grid:
        save_image(make_grid(np.concatenate(all_images)), outdir / "grid.png")
    console.print(f"wrote {len(seed_list)} image(s){' and grid.png' if grid else ''} to {outdir}")


def _mix_items(text: str, option: str) -> list[tuple[str, object]]:
    """``--rows`` / ``--cols`` items: ``("seed", N)`` for ``N``, ``seed:N`` and ranges ``A-B``
    (unless a file of that name exists), ``("input", text)`` for anything else."""
    items: list[tuple[str, object]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not Path(part).exists():
            if re.fullmatch(r"(?:seed:)?\d+", part):
                items.append(("seed", int(part.removeprefix("seed:"))))
                continue
            if re.fullmatch(r"\d+\s*-\s*\d+", part):
                items.extend(("seed", s) for s in parse_range(part, what=f"{option} seeds"))
                continue
        items.append(("input", part))
    if not items:
        raise ConfigError(f"{option} {text!r} names no inputs; give seeds like '1,2,5-7' or {SOURCE_HELP}, comma-separated")
    return items


def _render_latents(G: Generator, latents: list[Latent], *, noise_mode: str, precision: Precision) -> np.ndarray:
    """``uint8 [N, H, W, C]``; one batch when the latents can be joined, else one by one."""
    try:
        batches = [Latent.cat(latents)]
    except ConfigError:
        batches = latents
    bf16 = precision == Precision.bf16
    return np.concatenate([to_uint8(synthesize(G, lat, noise_mode=noise_mode, bf16=bf16)) for lat in batches])


@handle_errors
def mix(
    model: str = typer.Option(..., "--model", "-m", help="Checkpoint path or model name."),
    rows: str = typer.Option(..., help=f"Row inputs, comma-separated: seeds ('85,100', '1-4', 'seed:7') or {SOURCE_HELP}. They give the layers not in --styles."),
    cols: str = typer.Option(..., help="Column inputs, as --rows. They give the layers listed in --styles."),
    styles: str = typer.Option("0-3", help="ws taken from the column input: coarse (0-3), middle (4-7), fine (8+), all, or indices like '0-6' / '4,5'."),
    trunc: float = typer.Option(1.0, "--trunc", min=0.0, max=2.0, help="Truncation psi of seed inputs."),
    class_idx: Optional[int] = typer.Option(None, "--class", help="Class label for conditional models."),
    noise_mode: NoiseMode = typer.Option(NoiseMode.const, "--noise-mode", help="Per-layer noise (latents with their own noise maps keep them)."),
    outdir: Path = typer.Option(..., "--outdir", "-o", help="Folder for the figure and its cells."),
    precision: Precision = typer.Option(Precision.fp32, help="fp32 or bf16."),
    method_invert: str = typer.Option("auto", "--method-invert", help=f"Inversion method of image inputs: auto: e4e+opt when the model has an e4e encoder, else w+, or one of {', '.join(list_inversion_methods())}."),
    steps: Optional[int] = typer.Option(None, min=0, help="Inversion steps of image inputs (default: the method's recipe)."),
    align: bool = typer.Option(False, "--align", help="FFHQ-align image inputs (dlib) before inverting them."),
    compile_: bool = typer.Option(False, "--compile/--no-compile", help=COMPILE_HELP),
    device: str = typer.Option("auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'."),
) -> None:
    """Style-mixing figure as in the StyleGAN paper: row inputs x column inputs.

    The top row shows the column inputs, the left column the row inputs; each cell renders the row
    input with the ws listed in --styles taken from the column input. Inputs are seeds, latent
    files from `latentshop invert`, or images (inverted first); plain numbers are seeds.

    Examples:

      latentshop mix --model ffhq.pkl --rows 85,100,75 --cols 55,821,1789 --styles 0-6 -o out/

      latentshop mix --model default --rows out/inv/me.npz,seed:3 --cols seed:55,seed:821 --styles coarse -o out/

      latentshop mix --model default --rows me.jpg --cols 1-4 --styles middle,fine --align -o out/
    """
    row_items, col_items = _mix_items(rows, "--rows"), _mix_items(cols, "--cols")
    fast.set_compile(compile_)
    bundle = load_model(model, device=device)
    G = bundle.G
    try:
        layers = list(parse_layers(G, styles) or ())
    except EditError as e:
        raise ConfigError(f"--styles {styles!r}: {e}") from None
    outdir.mkdir(parents=True, exist_ok=True)
    _write_run_options(outdir, dict(model=model, rows=[v for _, v in row_items], cols=[v for _, v in col_items], styles=layers,
                                    trunc=trunc, noise_mode=noise_mode.value, precision=precision.value, method_invert=method_invert,
                                    steps=steps, align=align, device=device))
    lat_of: dict[tuple[str, object], Latent] = {}
    name_of: dict[tuple[str, object], str] = {}
    seeds = sorted({v for k, v in row_items + col_items if k == "seed"})
    if seeds:
        device_ = G.mapping.fc0.weight.device
        c = _labels(G, class_idx, len(seeds))
        with torch.no_grad():
            all_ws = G.mapping(seed_z(G, seeds).to(device_), None if c is None else c.to(device_), truncation_psi=trunc)
        for i, s in enumerate(seeds):
            lat_of["seed", s] = Latent.from_ws(G, all_ws[i:i + 1], seed=s)
            name_of["seed", s] = str(s)
    used = set(name_of.values())
    for key in dict.fromkeys(row_items + col_items):
        if key[0] != "input":
            continue
        src = cli_input(bundle, str(key[1]), method=method_invert, steps=steps, align=align, bf16=precision == Precision.bf16)
        name, k = src.name, 2
        while name in used:  # two inputs with one stem (a.npz, a.png): keep both cells
            name, k = f"{src.name}_{k}", k + 1
        used.add(name)
        lat_of[key], name_of[key] = src.latent, name
    keys = list(dict.fromkeys(row_items + col_items))
    img_of = dict(zip(keys, _render_latents(G, [lat_of[k] for k in keys], noise_mode=noise_mode.value, precision=precision)))
    cells = {}
    with progress() as bar:
        task = bar.add_task("mixing", total=len(row_items))
        for r in row_items:
            mixed = [style_mix(G, lat_of[r], lat_of[q], layers) for q in col_items]
            for q, img in zip(col_items, _render_latents(G, mixed, noise_mode=noise_mode.value, precision=precision)):
                cells[r, q] = img
                save_image(img, outdir / f"{name_of[r]}-{name_of[q]}.png")
            bar.advance(task)
    h, w, ch = img_of[keys[0]].shape
    blank = np.full((h, w, ch), 255, np.uint8)
    tiles = [blank] + [img_of[q] for q in col_items]
    for r in row_items:
        tiles += [img_of[r]] + [cells[r, q] for q in col_items]
    save_image(make_grid(np.stack(tiles), cols=len(col_items) + 1), outdir / "grid.png")
    console.print(f"wrote a {len(row_items)}x{len(col_items)} style-mixing figure to {outdir / 'grid.png'}")
