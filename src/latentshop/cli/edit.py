"""``latentshop edit``, ``latentshop directions compute|list`` and ``latentshop stylespace find``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import typer

from latentshop.checkpoints import ModelBundle, load_model, save_channels, save_directions
from latentshop.cli.common import cli_inputs, console, err_console, handle_errors, print_warning, progress
from latentshop.editing import DIRECTION_METHODS
from latentshop.errors import ConfigError
from latentshop.pipeline import SOURCE_HELP, edit_photo, make_edits

__all__ = ["directions_app", "edit_command", "stylespace_app"]

directions_app = typer.Typer(help="Find and list edit directions of a model (InterFaceGAN, GANSpace, SeFa).",
                             no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
stylespace_app = typer.Typer(help="StyleSpace: find the style channels that control an attribute.",
                             no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

#: Aliases every expression-classifier direction set gets.
EXPRESSION_ALIASES = {"smile": "happiness"}


def _evaluator_attribute(ev: torch.nn.Module, attribute: str) -> str:
    from latentshop.models.evaluators import ExpressionClassifier

    if isinstance(ev, ExpressionClassifier):
        return EXPRESSION_ALIASES.get(attribute, attribute)
    return attribute


EDIT_EXAMPLES = """

Examples:

  latentshop edit examples/face.png --model default --align --edit smile=+2 --outdir out/edit

  latentshop edit group.jpg --model default --align --all-faces --edit smile=+2 --outdir out/group

  latentshop edit out/inv/face.npz --model synthetic --edit smile=+2 --edit age=-1 --keep glasses -o out/edit

  latentshop edit seed:12 --model synthetic --sweep yaw=-3:3:7 --outdir out/sweep

  latentshop edit face.npz --model synthetic --edit ganspace:0=-2@coarse --edit s:b16.conv1:45=+5 -o out/

  latentshop edit --list --model synthetic

Strengths are in standard deviations of the model's w along the direction (or of the style channel); |strength| above 5 leaves what the model was trained on and warns.

Per input NAME (NAME-face1, NAME-face2, ... per face with --all-faces) it writes NAME-edited.png, NAME-before-after.png (the target too, for an image), NAME-edited.npz, NAME-edit.json, NAME-sweep-EDIT.png per --sweep, and NAME-edited-pasted.png with --align --paste-back (the edited face put back into the photo).
"""


@handle_errors
def edit_command(
    inputs: Optional[list[str]] = typer.Argument(None, help=f"What to edit: {SOURCE_HELP}.", show_default=False),
    model: str = typer.Option("default", "--model", "-m", help="Checkpoint path or model name."),
    edits: Optional[list[str]] = typer.Option(None, "--edit", "-e", help="NAME=STRENGTH[@LAYERS], repeatable; applied in order."),
    sweep: Optional[list[str]] = typer.Option(None, "--sweep", help="NAME=LOW:HIGH:COUNT[@LAYERS]: a sheet of COUNT strengths (after the --edit list)."),
    keep: Optional[str] = typer.Option(None, "--keep", help="InterFaceGAN attributes to hold fixed, e.g. 'age,glasses' (conditional manipulation)."),
    directions: Optional[list[Path]] = typer.Option(None, "--directions", help="Extra edit files (.npz), besides the model's own."),
    outdir: Optional[Path] = typer.Option(None, "--outdir", "-o", help="Folder for the outputs."),
    method: str = typer.Option("auto", help="Inversion method for image inputs (auto: e4e+opt when the model has an e4e encoder, else w+; or w, w+, w+noise, psp, e4e, restyle-psp, restyle-e4e)."),
    steps: Optional[int] = typer.Option(None, min=1, help="Inversion steps for image inputs (default: the method's)."),
    align: bool = typer.Option(False, "--align/--no-align", help="Image inputs: detect and FFHQ-align the face first."),
    paste_back: bool = typer.Option(False, "--paste-back", help="With --align: also paste the edited face back into the photo."),
    all_faces: bool = typer.Option(False, "--all-faces", help="With --align: edit every face of a photo (largest first: NAME-face1, NAME-face2, ...), not only the largest."),
    trunc: float = typer.Option(1.0, "--trunc", min=0.0, max=2.0, help="Truncation psi of seed inputs."),
    list_: bool = typer.Option(False, "--list", help="List this model's edits and exit."),
    device: str = typer.Option("auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'."),
) -> None:
    """Edit images or latents with named directions, StyleSpace channels and layer ranges."""
    bundle = load_model(model, device=device, edit_files=directions or [])
    if list_:
        _print_catalog(bundle)
        return
    if not inputs:
        raise ConfigError("give at least one input to edit (or --list to see the edits)")
    if outdir is None:
        raise ConfigError("--outdir is required")
    if paste_back and not align:
        raise ConfigError("--paste-back needs --align (the transform comes from the alignment)")
    if all_faces and not align:
        raise ConfigError("--all-faces needs --align: the faces are found by the alignment")
    if not edits and not sweep:
        raise ConfigError("nothing to do: give --edit NAME=STRENGTH and/or --sweep NAME=LOW:HIGH:COUNT (see --list)")
    keep_list = [k.strip() for k in (keep or "").split(",") if k.strip()]
    warned: set[str] = set()

    def warn(text: str) -> None:
        if text not in warned:
            warned.add(text)
            print_warning(text)

    # every name is checked before any inversion: a typo fails in a second, not after minutes
    make_edits(bundle, edits or [], keep=keep_list)
    outdir.mkdir(parents=True, exist_ok=True)
    for text in inputs:
        for src in cli_inputs(bundle, text, method=method, steps=steps, align=align, all_faces=all_faces, trunc=trunc, warn=warn):
            result = edit_photo(bundle, src, edits or [], keep=keep_list, sweeps=sweep or [], paste_back=paste_back, warn=warn)
            result.save(outdir)
            console.print(f"{result.name}: wrote {result.name}-edited.png and {result.name}-before-after.png to {outdir}")


def _print_catalog(bundle: ModelBundle) -> None:
    rows = bundle.edits.describe()
    if not bundle.edits.names():
        console.print("this model has no edit files; compute some with `latentshop directions compute`")
    for name, note in rows:
        console.print(f"{name:<28} {note}", highlight=False)


edit_command.__doc__ = (edit_command.__doc__ or "") + EDIT_EXAMPLES


@directions_app.command("compute")
@handle_errors
def directions_compute(
    method: str = typer.Option(..., help=f"One of {', '.join(DIRECTION_METHODS)}."),
    model: str = typer.Option("default", "--model", "-m", help="Checkpoint path or model name."),
    out: Path = typer.Option(..., "--out", "-o", help="The direction file to write (.npz)."),
    evaluator: Optional[str] = typer.Option(None, help="InterFaceGAN: evaluator name or folder, e.g. 'celeba' or 'landmarks' for any face model (default: the bundled model's own)."),
    attributes: Optional[str] = typer.Option(None, help="InterFaceGAN: comma-separated attributes (default: the evaluator's edit attributes, or all it scores)."),
    n: Optional[int] = typer.Option(None, min=100, help="Samples (default: InterFaceGAN 20000, GANSpace 100000)."),
    ratio: float = typer.Option(0.1, min=0.001, max=0.5, help="InterFaceGAN: share of samples at each end of a score used to fit the SVM."),
    components: int = typer.Option(20, min=1, help="GANSpace / SeFa: components kept."),
    layers: Optional[str] = typer.Option(None, help="GANSpace / SeFa: layers the directions act on (coarse, middle, fine, 0-3...)."),
    seed: int = typer.Option(0, help="Seed of the samples."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
    device: str = typer.Option("auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'."),
) -> None:
    """Compute edit directions for a model and write them as an edit file.

    Examples:

      latentshop directions compute --method interfacegan --model synthetic --out synthetic-interfacegan.npz

      latentshop directions compute --method interfacegan --model ffhq.pkl --evaluator celeba --out ffhq.pkl.edits/interfacegan.npz

      latentshop directions compute --method interfacegan --model ffhq.pkl --evaluator landmarks --attributes yaw,pitch --out ffhq.pkl.edits/pose.npz

      latentshop directions compute --method ganspace --model ffhq.pkl --components 30 --out ffhq.pkl.edits/ganspace.npz

      latentshop directions compute --method sefa --model default --layers coarse --out sefa-coarse.npz

    Files put in the model's `edits` folder (or FILE.edits/ beside a .pkl/.pt) are found by
    `latentshop edit` by themselves; others are given with --directions.
    """
    from latentshop.editing import ganspace, interfacegan, sefa

    if method not in DIRECTION_METHODS:
        raise ConfigError(f"unknown method {method!r}; methods are {', '.join(DIRECTION_METHODS)}")
    if out.suffix != ".npz":
        out = out.with_name(out.name + ".npz")
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; pass --force to replace it")
    bundle = load_model(model, device=device, evaluators={"labels": evaluator} if evaluator else None)
    G = bundle.G
    if method == "interfacegan":
        from latentshop.models.evaluators import ExpressionClassifier

        ev = bundle.evaluator("labels")
        attrs = [a.strip() for a in attributes.split(",")] if attributes else None
        if attrs:
            attrs = [_evaluator_attribute(ev, a) for a in attrs]
        elif callable(getattr(ev, "default_attributes", None)):
            attrs = ev.default_attributes()  # e.g. the celeba classifier's edit names, not all 40 + aliases
        count = n or 20_000
        with progress() as bar:
            task = bar.add_task("rendering and scoring", total=count)
            result = interfacegan(G, ev, n=count, ratio=ratio, seed=seed, attributes=attrs,
                                  aliases=EXPRESSION_ALIASES if isinstance(ev, ExpressionClassifier) else None,
                                  progress=lambda k: bar.advance(task, k), model=model)
        for name in result.names:
            s = result.meta["stats"][name]
            console.print(f"{name:<28} SVM validation accuracy {s['val_accuracy']:.3f} ({s['per_side']} per side)", highlight=False)
        for name, s in result.meta["stats"].items():
            if "skipped" in s:
                err_console.print(f"[yellow]skipped:[/] {name}: {s['skipped']}")
    elif method == "ganspace":
        result = ganspace(G, n=n or 100_000, components=components, seed=seed, layers=layers, model=model)
        shares = [result.meta["stats"][k]["explained_variance_ratio"] for k in result.names]
        console.print(f"{len(result)} components explain {100 * sum(shares):.1f} % of the variance of w")
    else:
        result = sefa(G, components=components, layers=layers, seed=seed, model=model)
        console.print(f"{len(result)} SeFa directions from the style affines of layers {layers or 'all'}")
    path = save_directions(result, out, model=model)
    console.print(f"wrote {path}")


@directions_app.command("list")
@handle_errors
def directions_list(
    model: str = typer.Option("default", "--model", "-m", help="Checkpoint path or model name."),
    directions: Optional[list[Path]] = typer.Option(None, "--directions", help="Extra edit files."),
) -> None:
    """List the edits a model has (its edit files and any given).

    Example:

      latentshop directions list --model synthetic
    """
    _print_catalog(load_model(model, edit_files=directions or []))


@stylespace_app.command("find")
@handle_errors
def stylespace_find(
    attribute: list[str] = typer.Option(..., "--attribute", "-a", help="Attribute(s) to find channels for (repeatable), e.g. smile."),
    model: str = typer.Option("default", "--model", "-m", help="Checkpoint path or model name."),
    evaluator: Optional[str] = typer.Option(None, help="Evaluator name or folder (default: the bundled model's own)."),
    top: int = typer.Option(10, min=1, help="Channels listed per attribute."),
    n: int = typer.Option(5000, min=100, help="Samples scored to find the positive examples."),
    candidates: int = typer.Option(30, min=1, help="Channels per attribute measured by pushing them."),
    parts: bool = typer.Option(True, "--parts/--no-parts", help="Measure each channel's locality: the part segmenter (synthetic faces) or the landmark regions (real faces)."),
    part: Optional[list[str]] = typer.Option(None, "--part", help="Part(s) or region(s) the attribute lives in, e.g. mouth (default: the attribute's own, see FACE_ATTRIBUTE_REGIONS)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the channels as an edit file (.npz)."),
    seed: int = typer.Option(0, help="Seed of the samples."),
    device: str = typer.Option("auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'."),
) -> None:
    """List the StyleSpace channels that control an attribute, with their measured effect.

    Candidates come from the StyleSpace paper's two detections: channels whose codes differ most
    on the evaluator's most positive samples, and (synthetic faces) channels whose pixel change
    falls most inside the attribute's part. Effect: change of the evaluator's score per +1
    standard deviation of the channel; leakage: the mean change of every other attribute;
    locality: share of the pixel change in the attribute's part (or the main part).

    Examples:

      latentshop stylespace find --attribute smile --model synthetic

      latentshop stylespace find -a smile -a glasses --model synthetic --out synthetic-stylespace.npz
    """
    from latentshop.editing.stylespace import find_channels

    bundle = load_model(model, device=device, evaluators={"labels": evaluator} if evaluator else None)
    G = bundle.G
    ev = bundle.evaluator("labels")
    attrs = [_evaluator_attribute(ev, a) for a in attribute]
    masks_fn = _part_masks_fn(bundle) if parts else None
    where = None
    if masks_fn is not None:
        from latentshop.editing.stylespace import FACE_ATTRIBUTE_REGIONS, SYNTHETIC_FACTOR_PARTS

        table = FACE_ATTRIBUTE_REGIONS if masks_fn.kind == "landmarks" else SYNTHETIC_FACTOR_PARTS
        where = {a: table.get(a) for a in attrs}
        if part:
            where = {a: tuple(part) for a in attrs}
    elif part:
        raise ConfigError("--part needs part masks: the part segmenter (synthetic faces) or the landmark regions (real faces)")
    with progress() as bar:
        task = bar.add_task("measuring channels", total=None)
        found = find_channels(G, ev, attrs, n=n, candidates=candidates, top=top, seed=seed, part_masks=masks_fn, parts=where,
                              progress=lambda stage, done, total: bar.update(task, completed=done, total=total,
                                                                             description=f"measuring channels: {stage}"),
                              model=model)
    for attr in attrs:
        own = (where or {}).get(attr)
        label = (f", share in {'+'.join(own)}" if own else ", main part") if masks_fn else ""
        console.print(f"\n[bold]{attr}[/]: rank, channel, sign, effect/std, leakage/std, relevance{label}")
        for i, c in enumerate(found.attributes[attr]):
            loc = ""
            if c.locality and own:
                loc = f"  {100 * sum(c.locality.get(p, 0.0) for p in own):.0f} %"
            elif c.locality:
                name, share = max(((k, v) for k, v in c.locality.items() if not k.startswith("_")), key=lambda kv: kv[1])
                loc = f"  {name} {100 * share:.0f} %"
            console.print(f"  {i + 1:>2}. {c.name:<16} {'+' if c.sign > 0 else '-'}  {c.effect:.4f}  {c.leakage:.4f}  {c.relevance:.2f}{loc}",
                          highlight=False)
    if out is not None:
        path = save_channels(found, out, model=model)
        console.print(f"wrote {path}")


def _part_masks_fn(bundle: ModelBundle):  # type: ignore[no-untyped-def]
    """Part masks of images: the model's own part evaluator; else the synthetic part segmenter when
    the model's labels come from the synthetic factor regressor; else the landmark regions (any
    real face model). ``fn.kind`` says which ("parts" or "landmarks"); ``None`` without dlib."""
    from latentshop.checkpoints.evaluators import load_evaluator
    from latentshop.errors import LatentshopError
    from latentshop.models.evaluators import FactorRegressor

    if "parts" in bundle.evaluator_names:
        seg = bundle.evaluator("parts")
    elif "labels" in bundle.evaluator_names and isinstance(bundle.evaluator("labels"), FactorRegressor):
        seg = load_evaluator("parts", device=bundle.device)
    else:
        try:
            seg = load_evaluator("landmarks")
        except LatentshopError:
            return None
    if getattr(seg, "kind", "") == "landmarks":
        regions = list(seg.parts)

        def fn(images: torch.Tensor) -> dict[str, torch.Tensor]:
            masks = seg.region_masks(images, regions)  # [N, R, H, W]
            return {r: masks[:, i:i + 1] for i, r in enumerate(regions)}

        fn.kind = "landmarks"
        return fn
    from latentshop.data.synthetic import PART_NAMES

    def fn(images: torch.Tensor) -> dict[str, torch.Tensor]:
        labels = seg.predict(images)  # [N, H, W]
        return {p: (labels == i).float().unsqueeze(1) for i, p in enumerate(PART_NAMES)}

    fn.kind = "parts"
    return fn
