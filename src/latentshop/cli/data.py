"""``latentshop data``: make datasets — synthetic faces, or a prepared copy of a folder of images."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from latentshop.cli.common import console, handle_errors

__all__ = ["data_app"]

data_app = typer.Typer(help="Make training datasets: synthetic faces, or prepared copies of image folders.", no_args_is_help=True)


@data_app.command("synth")
@handle_errors
def synth(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (written atomically)."),
    n: int = typer.Option(10_000, min=1, help="Number of faces."),
    res: int = typer.Option(64, min=32, max=256, help="Resolution, 32-256."),
    domain: str = typer.Option("photo", help="photo, toon or caricature."),
    start_seed: int = typer.Option(0, min=0, help="First seed (seeds from 1,000,000 are the held-out test set)."),
) -> None:
    """Render synthetic faces with known factors: imgNNNNNN.png + labels.json.

    Examples:

      latentshop data synth --domain photo --res 64 --n 10000 --out data/synth64

      latentshop data synth --domain toon --n 500 --start-seed 1000000 --out data/toon-test
    """
    from latentshop.data.synthetic import write_synthetic_dataset

    path = write_synthetic_dataset(out, n=n, res=res, domain=domain, start_seed=start_seed)
    console.print(f"wrote {n} {domain} faces at {res} px to {path}")


@data_app.command("prepare")
@handle_errors
def prepare(
    src: Path = typer.Argument(..., help="A folder (searched recursively) or .zip of images."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (written atomically)."),
    res: int = typer.Option(..., min=4, help="Output resolution (square)."),
    channels: int = typer.Option(3, min=1, max=3, help="1 (grayscale) or 3 (RGB)."),
    split: Optional[str] = typer.Option(None, help="Keep only this split of the labels (e.g. train)."),
    limit: Optional[int] = typer.Option(None, min=1, help="At most this many images."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
) -> None:
    """Centre-crop and resize a folder or zip of images into a training dataset.

    EXIF orientation is applied; RGBA, palette, 16-bit, CMYK and grayscale files are converted;
    corrupt, truncated, tiny or non-image files are skipped and listed in the report. The output
    appears only when complete.

    Examples:

      latentshop data prepare photos/ --res 256 --out data/photos256

      latentshop data prepare ../shared/data/lfw-faces --res 64 --channels 1 --split train --out data/lfw64
    """
    from latentshop.data.dataset import prepare_images

    report = prepare_images(src, out, res=res, channels=channels, split=split, limit=limit, overwrite=overwrite)
    console.print(f"wrote {report.written} images to {report.out}; skipped {len(report.skipped)}")
    for kind, count in sorted(report.skipped_by_kind().items()):
        console.print(f"  skipped ({kind}): {count}")
