"""``latentshop evaluate``: generation-quality metrics (SWD, FID) of a model against a folder of real images."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
import typer

from latentshop.cli.common import console, err_console, handle_errors, progress
from latentshop.cli.generate import NoiseMode
from latentshop.errors import ConfigError
from latentshop.models.stylegan2 import Generator

__all__ = ["evaluate", "evaluate_command", "parse_metrics"]


def parse_metrics(text: str) -> list[str]:
    """``"swd,fid"`` -> ``["swd", "fid"]``, each a registered image-set metric (see ``list_metrics()``).

    Example:
        >>> parse_metrics("swd, fid")
        ['swd', 'fid']
    """
    from latentshop.metrics import list_metrics

    names = list(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [n for n in names if n not in list_metrics()]
    if unknown or not names:
        raise ConfigError(f"--metrics {text!r}: unknown metric(s) {', '.join(unknown) or '(none given)'}; "
                          f"choose from {', '.join(list_metrics())}, comma-separated")
    return names


@torch.no_grad()
def evaluate(
    G: Generator,
    real: torch.utils.data.Dataset,
    *,
    metrics: dict[str, Any],
    n: int,
    seed: int = 0,
    truncation_psi: float = 1.0,
    noise_mode: str = "random",
    batch: int = 32,
    on_progress: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    """Score ``G`` against real images with set metrics (``update(images, which)`` and ``compute()``).

    Args:
        G: the generator; its samples come from seeds ``seed .. seed + n - 1`` (``latentshop generate``'s
            latents); conditional models get classes drawn uniformly at random (seeded).
        real: items ``(uint8 (C, H, W), label)`` at the generator's resolution and channels; ``min(n, len(real))``
            of them, a random subset (seeded) when there are more.
        metrics: name -> metric object, e.g. ``{"swd": SlicedWassersteinDistance(64)}``.
        n: generated images; also the most real images used.
        seed: first latent seed; also seeds the real subset, the classes and random noise.
        truncation_psi: 1 for the model's full distribution (the usual protocol).
        noise_mode: ``"random"`` (NVIDIA's metric protocol; seeded per batch, so the numbers depend on
            ``batch`` too), ``"const"`` or ``"none"``.
        batch: images rendered and scored at a time.
        on_progress: called with ``("real" | "fake", images done in this call)``.

    Returns:
        ``{"metrics": {...all metrics' values...}, "n_real": int, "n_fake": int}``.
    """
    from latentshop.latents import seed_z

    if len(real) == 0:
        raise ConfigError("the real image folder holds no images")
    device = G.mapping.fc0.weight.device
    n_real = min(n, len(real))
    order = list(range(n_real))
    if n_real < len(real):
        order = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))[:n_real].sort().values.tolist()
    for start in range(0, n_real, batch):
        images = torch.stack([torch.as_tensor(real[i][0]) for i in order[start : start + batch]])
        for metric in metrics.values():
            metric.update(images, "real")
        if on_progress:
            on_progress("real", images.shape[0])
    classes = torch.randint(G.c_dim, (n,), generator=torch.Generator().manual_seed(seed)) if G.c_dim else None
    for start in range(0, n, batch):
        count = min(batch, n - start)
        z = seed_z(G, range(seed + start, seed + start + count)).to(device)
        c = None if classes is None else torch.eye(G.c_dim)[classes[start : start + count]].to(device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # leave the caller's RNG be
            torch.manual_seed(seed + start)  # the random noise maps of this batch
            images = G(z, c, truncation_psi=truncation_psi, noise_mode=noise_mode, impl="fast").float().clamp(-1, 1).cpu()
        for metric in metrics.values():
            metric.update(images, "fake")
        if on_progress:
            on_progress("fake", count)
    values: dict[str, float] = {}
    for metric in metrics.values():
        values.update(metric.compute())
    return {"metrics": values, "n_real": n_real, "n_fake": n}


def _fid_needs_inception() -> ConfigError:
    from latentshop.metrics.fid import INCEPTION_FILENAME, INCEPTION_URL

    return ConfigError(f"--metrics fid needs NVIDIA's Inception detector: download {INCEPTION_FILENAME} from {INCEPTION_URL} "
                       "yourself (latentshop downloads nothing) and pass --inception PATH, or leave fid out of --metrics")


def build_metrics(names: Sequence[str], *, resolution: int, n: int, seed: int, inception: Optional[Path],
                  verify_inception: bool, device: str | torch.device) -> dict[str, Any]:
    """The metric objects for ``names`` (the Inception file is checked here, before any image is made)."""
    from latentshop.metrics import get_metric

    out: dict[str, Any] = {}
    for name in names:
        if name == "fid":
            if inception is None:
                raise _fid_needs_inception()
            out[name] = get_metric("fid")(inception, device=device, verify=verify_inception)
        elif name == "swd":
            out[name] = get_metric("swd")(resolution, num_images_hint=n, seed=seed)
        else:  # a metric registered later needs its own wiring here
            raise ConfigError(f"metric {name!r} is registered but `latentshop evaluate` does not know how to set it up")
    return out


@handle_errors
def evaluate_command(
    model: str = typer.Option(..., "--model", "-m", help="Checkpoint: NVIDIA .pkl, rosinality .pt, latentshop folder, or model name."),
    data: Path = typer.Option(..., "--data", help="Real images: a folder or zip (prepared by `latentshop data`, or square images of one size)."),
    metrics: str = typer.Option("swd", "--metrics", help="Comma-separated: swd (multi-scale sliced Wasserstein, x1e3), fid (needs --inception)."),
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
        raise _fid_needs_inception()
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
        result = evaluate(G, real, metrics=objects, n=n, seed=seed, truncation_psi=trunc, noise_mode=noise_mode.value,
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
