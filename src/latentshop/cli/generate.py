"""``latentshop generate`` and ``latentshop mix``: render images and style-mixing figures."""

from __future__ import annotations

import json
from contextlib import nullcontext
from enum import Enum
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import typer

from latentshop.checkpoints import load_generator
from latentshop.cli.common import console, handle_errors, parse_range, progress
from latentshop.data.images import atomic_write_bytes, make_grid, save_image, to_uint8
from latentshop.errors import ConfigError
from latentshop.models.stylegan2 import Generator
from latentshop.ops import fast

COMPILE_HELP = "Compile the fast path's element-wise kernels (torch.compile): some seconds once, then faster; for big jobs."

__all__ = ["generate", "mix", "seed_latents", "NoiseMode", "Precision"]


class NoiseMode(str, Enum):
    const = "const"
    random = "random"
    none = "none"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"


def seed_latents(G: Generator, seeds: list[int]) -> torch.Tensor:
    """``z [len(seeds), z_dim]``, each row from ``np.random.RandomState(seed)`` (as NVIDIA's ``generate.py``),
    so seed N gives the same image here as there."""
    return torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in seeds])).float()


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
            z = seed_latents(G, chunk)
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


@handle_errors
def mix(
    model: str = typer.Option(..., "--model", "-m", help="Checkpoint path or model name."),
    rows: str = typer.Option(..., help="Row seeds: they give the layers not listed in --styles."),
    cols: str = typer.Option(..., help="Column seeds: they give the layers listed in --styles."),
    styles: str = typer.Option("0-3", help="ws indices taken from the column seed: 0-3 coarse, 4-7 middle, 8+ fine."),
    trunc: float = typer.Option(1.0, "--trunc", min=0.0, max=2.0, help="Truncation psi."),
    class_idx: Optional[int] = typer.Option(None, "--class", help="Class label for conditional models."),
    noise_mode: NoiseMode = typer.Option(NoiseMode.const, "--noise-mode", help="Per-layer noise."),
    outdir: Path = typer.Option(..., "--outdir", "-o", help="Folder for the figure and its cells."),
    precision: Precision = typer.Option(Precision.fp32, help="fp32 or bf16."),
    compile_: bool = typer.Option(False, "--compile/--no-compile", help=COMPILE_HELP),
    device: str = typer.Option("auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'."),
) -> None:
    """Style-mixing figure as in the StyleGAN paper: row seeds x column seeds.

    The top row shows the column seeds, the left column the row seeds; each cell renders the row
    seed with the ws listed in --styles taken from the column seed.

    Example:

      latentshop mix --model ffhq.pkl --rows 85,100,75 --cols 55,821,1789 --styles 0-6 -o out/
    """
    row_seeds, col_seeds = parse_range(rows, what="row seeds"), parse_range(cols, what="column seeds")
    fast.set_compile(compile_)
    G = load_generator(model, device=device)
    layers = parse_range(styles, what="style layers")
    bad = [i for i in layers if i >= G.num_ws]
    if bad:
        raise ConfigError(f"--styles {bad} out of range: this model has ws 0..{G.num_ws - 1}")
    outdir.mkdir(parents=True, exist_ok=True)
    _write_run_options(outdir, dict(model=model, rows=row_seeds, cols=col_seeds, styles=layers, trunc=trunc,
                                    noise_mode=noise_mode.value, precision=precision.value, device=device))
    seeds = sorted(set(row_seeds + col_seeds))
    device_ = G.mapping.fc0.weight.device
    c = _labels(G, class_idx, len(seeds))
    with torch.no_grad():
        all_ws = G.mapping(seed_latents(G, seeds).to(device_), None if c is None else c.to(device_), truncation_psi=trunc)
    ws_of = dict(zip(seeds, all_ws))
    img_of = dict(zip(seeds, to_uint8(_render(G, all_ws, noise_mode=noise_mode.value, precision=precision))))
    cells = {}
    with progress() as bar:
        task = bar.add_task("mixing", total=len(row_seeds))
        for r in row_seeds:
            ws = torch.stack([ws_of[r]] * len(col_seeds)).clone()
            ws[:, layers] = torch.stack([ws_of[q][layers] for q in col_seeds])
            for q, img in zip(col_seeds, to_uint8(_render(G, ws, noise_mode=noise_mode.value, precision=precision))):
                cells[r, q] = img
                save_image(img, outdir / f"{r}-{q}.png")
            bar.advance(task)
    h, w, ch = img_of[seeds[0]].shape
    blank = np.full((h, w, ch), 255, np.uint8)
    tiles = [blank] + [img_of[q] for q in col_seeds]
    for r in row_seeds:
        tiles += [img_of[r]] + [cells[r, q] for q in col_seeds]
    save_image(make_grid(np.stack(tiles), cols=len(col_seeds) + 1), outdir / "grid.png")
    console.print(f"wrote a {len(row_seeds)}x{len(col_seeds)} style-mixing figure to {outdir / 'grid.png'}")
