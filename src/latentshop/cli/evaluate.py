"""``latentshop evaluate``: generation-quality metrics (SWD, FID) of a model against a folder of real images."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Optional

import typer

from latentshop.cli.common import console, err_console, handle_errors, progress
from latentshop.cli.generate import NoiseMode
from latentshop.errors import ConfigError
from latentshop.pipeline import build_metrics, evaluate_generator, fid_needs_inception, parse_metrics

__all__ = ["evaluate_command"]


@handle_errors
def evaluate_command(
    model: str = typer.Option(..., "--model", "-m", help="Checkpoint: NVIDIA .pkl, rosinality .pt, latentshop folder, or model name."),
    data: Path = typer.Option(..., "--data", help="Real images: a folder or zip (prepared by `latentshop data`, or square images of one size)."),
    metrics: str = typer.Option("swd", "--metrics", help="Comma-separated: swd (multi-scale sliced Wasserstein, x1e3), fid (needs --inception), kid-mobilenet (KID estimator on the bundled MobileNetV2 features: not the Inception KID)."),
    inception: Optional[Path] = typer.Option(None, "--inception", help="NVIDIA's inception-2015-12-05.pt, for fid (its SHA-256 is checked)."),
    verify_inception: bool = typer.Option(True, "--verify-inception/--no-verify-inception",
                                          help="Refuse any Inception file but NVIDIA's; --no-verify-inception for your own (a warning; not comparable with published FIDs)."),
    n: int = typer.Option(2048, "--n", min=2, help="Generated images; also the most real images used (a random subset of a bigger folder)."),
    seed: int = typer.Option(0, min=0, help="First latent seed (seeds SEED..SEED+N-1, as `latentshop generate`); also seeds the real subset."),
    split: Optional[str] = typer.Option(None, help="Use only the real images whose labels say this split (e.g. 'test')."),
    trunc: float = typer.Option(1.0, "--trunc", min=0.0, max=2.0, help="Truncation psi (1 = none, the usual protocol)."),
    noise_mode: NoiseMode = typer.Option(NoiseMode.random, "--noise-mode", help="Per-layer noise: random (NVIDIA's protocol, seeded), const or none."),
    batch: int = typer.Option(32, min=1, help="Images rendered and scored at a time (with random noise the numbers depend on it)."),
    device: str = typer.Option("auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the result here as JSON (atomically); without it the JSON goes to stdout."),
) -> None:
    """Measure how close a model's images are to a folder of real images (SWD, FID).

    Real images are resized to the model's resolution and channels.
    Scores are comparable only at the same --n: FID is biased upwards for small N (published FIDs use
    50000 generated images against the whole dataset).
    FID needs NVIDIA's Inception file, which latentshop does not download; fetch it once from
    https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt

    Examples:

      latentshop evaluate --model default --data ../shared/data/lfw-faces --split test --n 1000

      latentshop evaluate --model runs/mine/model --data my_images/ --metrics swd,fid --inception inception-2015-12-05.pt --out metrics.json

      latentshop evaluate --model ffhq.pkl --data ffhq.zip --metrics fid --inception inception-2015-12-05.pt --n 50000 --device cuda -o fid50k.json
    """
    from latentshop.checkpoints import load_generator
    from latentshop.data.dataset import ImageFolderDataset
    from latentshop.data.images import atomic_write_bytes
    from latentshop.metrics.fid import INCEPTION_SHA256

    names = parse_metrics(metrics)
    if "fid" in names and inception is None:
        raise fid_needs_inception()
    if not data.exists():
        raise ConfigError(f"--data {str(data)!r} does not exist; give a folder or zip of real images")
    t0 = time.perf_counter()
    G = load_generator(model, device=device)
    real = ImageFolderDataset(data, res=G.img_resolution, channels=G.img_channels, split=split)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)  # --no-verify-inception's warning, as one line
        try:
            objects = build_metrics(names, resolution=G.img_resolution, n=n, seed=seed, inception=inception,
                                    verify_inception=verify_inception, device=device)
        finally:
            for w in caught:
                err_console.print(f"[yellow]warning:[/] {w.message}", highlight=False, soft_wrap=True)
    n_real = min(n, len(real))
    with progress() as bar:
        tasks = {"real": bar.add_task("real images", total=n_real), "fake": bar.add_task("generated images", total=n)}
        result = evaluate_generator(G, real, metrics=objects, n=n, seed=seed, truncation_psi=trunc, noise_mode=noise_mode.value,
                          batch=batch, on_progress=lambda which, k: bar.advance(tasks[which], k))
    report = {
        **result,
        "model": model,
        "data": str(data),
        "split": split,
        "resolution": G.img_resolution,
        "seed": seed,
        "trunc": trunc,
        "noise_mode": noise_mode.value,
        "batch": batch,
        "inception": None if "fid" not in names else {
            "path": str(inception), "sha256_verified": verify_inception, "expected_sha256": INCEPTION_SHA256},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    text = json.dumps(report, indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    atomic_write_bytes(out, text.encode())
    scores = "  ".join(f"{k} {v:.3f}" for k, v in result["metrics"].items())
    console.print(f"{scores}  ({result['n_fake']} generated vs {result['n_real']} real images); wrote {out}", highlight=False)
