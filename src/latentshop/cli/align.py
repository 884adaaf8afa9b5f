"""``latentshop align``: cut faces out of photos as FFHQ does, and paste edited faces back."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from latentshop.cli.common import console, err_console, handle_errors

__all__ = ["align"]

ALIGN_SUFFIX = ".align.json"


def _alignment_path(image_path: Path) -> Path:
    """``face.png`` -> ``face.align.json`` (beside the aligned image)."""
    return image_path.with_name(image_path.stem + ALIGN_SUFFIX)


def _save(img, path: Path) -> None:
    import numpy as np

    from latentshop.data.images import save_image

    a = np.asarray(img)
    save_image(a[:, :, None] if a.ndim == 2 else a, path)


def _paste(edited: Path, alignment: Optional[Path], photo: Optional[Path], out: Path, feather: float) -> None:
    from latentshop.data.align import load_alignment, paste_back
    from latentshop.errors import ConfigError

    if alignment is None:
        guess = _alignment_path(edited)
        if not guess.is_file():
            raise ConfigError(f"--paste-back needs --alignment FACE{ALIGN_SUFFIX} (the file `latentshop align` wrote "
                              f"beside the aligned face); {guess} does not exist")
        alignment = guess
    face = load_alignment(alignment)
    if photo is None:
        if not face.source:
            raise ConfigError(f"{alignment} does not name its photo; pass --photo PHOTO")
        photo = Path(face.source)
        if not photo.is_absolute() and not photo.exists():
            photo = alignment.parent / photo
        if not photo.is_file():
            raise ConfigError(f"the photo {face.source} named in {alignment} is not there; pass --photo PHOTO")
    result = paste_back(photo, edited, face, feather=feather)
    _save(result, out)
    console.print(f"pasted {edited} into {photo}; wrote {out}")


@handle_errors
def align(
    images: Optional[List[Path]] = typer.Argument(None, help="Photos to align (omit with --paste-back)."),
    res: Optional[int] = typer.Option(None, min=4, max=4096,
                                      help="Side of the aligned square in pixels (e.g. 64 for the default model, 1024 for FFHQ)."),
    out: Path = typer.Option(..., "--out", "-o",
                             help="Aligned image file (one photo, one face) or folder; with --paste-back, the result photo."),
    all_faces: bool = typer.Option(False, "--all",
                                   help="Align every face of each photo (largest first: NAME_0, NAME_1, ...), not only the largest."),
    channels: Optional[int] = typer.Option(None, min=1, max=3, help="1 (grayscale) or 3 (RGB); default: as the photo."),
    no_padding: bool = typer.Option(False, "--no-padding",
                                    help="Leave the parts of the square outside the photo black (FFHQ fills them with blurred reflection)."),
    paste: Optional[Path] = typer.Option(None, "--paste-back", help="An edited aligned face to paste back into its photo."),
    alignment: Optional[Path] = typer.Option(None, "--alignment",
                                             help=f"The {ALIGN_SUFFIX} file of the face (default: beside --paste-back's file)."),
    photo: Optional[Path] = typer.Option(None, "--photo", help="The original photo (default: the one named in the alignment file)."),
    feather: float = typer.Option(0.1, min=0.0, max=0.5, help="Soft edge of the pasted square, as a fraction of its side."),
) -> None:
    """Cut faces out of photos as the FFHQ dataset does (dlib landmarks), or paste an edited face back.

    Each aligned face FACE.png is written with FACE.align.json, the transform that --paste-back uses
    to put an edit of it back into the photo. A grayscale edit pasted into a colour photo keeps the
    photo's colours (only the brightness is taken from the edit).

    Examples:

      latentshop align photo.jpg --res 64 --channels 1 --out face.png

      latentshop align group.jpg --all --res 256 --out faces/

      latentshop align photos/*.jpg --res 1024 --out aligned/

      latentshop align --paste-back edited.png --alignment face.align.json --photo photo.jpg --out result.jpg
    """
    from latentshop.errors import ConfigError, LatentshopError

    if channels == 2:
        raise ConfigError("--channels must be 1 (grayscale) or 3 (RGB)")
    if paste is not None:
        if images:
            raise ConfigError("give either photos to align or --paste-back EDITED, not both")
        _paste(paste, alignment, photo, out, feather)
        return
    if not images:
        raise ConfigError("give the photos to align (e.g. latentshop align photo.jpg --res 64 --out face.png), "
                          "or --paste-back EDITED to put an edited face back")
    if res is None:
        raise ConfigError("--res is needed: the side of the aligned face in pixels (e.g. --res 64)")

    from latentshop.data.align import align_face, save_alignment

    to_folder = all_faces or len(images) > 1 or out.is_dir() or str(out).endswith(("/", "\\"))
    if not to_folder and out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"):
        raise ConfigError(f"--out {out} needs an image suffix such as .png (or give an existing folder)")
    failed = 0
    for image in images:
        try:
            found = align_face(image, res=res, channels=channels, all_faces=all_faces, enable_padding=not no_padding)
        except LatentshopError as e:
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            failed += 1
            continue
        faces = found if isinstance(found, list) else [found]
        for i, face in enumerate(faces):
            if to_folder:
                target = out / (f"{image.stem}_{i}.png" if all_faces else f"{image.stem}.png")
            else:
                target = out
            _save(face.image, target)
            save_alignment(face, _alignment_path(target))
            which = f"face {i + 1} of {len(faces)}" if all_faces else "largest face"
            console.print(f"{image}: {which} -> {target} (+ {_alignment_path(target).name})")
    if failed:
        raise typer.Exit(1)
