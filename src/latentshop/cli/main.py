"""The ``latentshop`` command: one sub-command per stage of the pipeline."""

from __future__ import annotations

import typer

from latentshop.cli.align import align
from latentshop.cli.checkpoint import convert, info
from latentshop.cli.data import data_app
from latentshop.cli.edit import directions_app, edit_command, stylespace_app
from latentshop.cli.evaluate import evaluate_command
from latentshop.cli.evaluator import evaluator_app
from latentshop.cli.generate import generate, mix
from latentshop.cli.interpolate import interpolate_command
from latentshop.cli.invert import invert_command, render_command
from latentshop.cli.studio import studio_command
from latentshop.cli.train import train
from latentshop.cli.train_encoder import train_encoder_command

__all__ = ["app", "main"]

app = typer.Typer(
    name="latentshop",
    help="Edit images with GANs: load StyleGAN2 checkpoints, generate, project photos, edit them (directions, StyleSpace, mixing), convert formats.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(generate)
app.command()(mix)
app.command()(info)
app.command()(convert)
app.command()(train)
app.command("train-encoder", help=train_encoder_command.__doc__)(train_encoder_command)
app.command("invert", help=invert_command.__doc__)(invert_command)
app.command("render")(render_command)
app.command("interpolate")(interpolate_command)
app.command()(align)
app.add_typer(data_app, name="data")
app.add_typer(evaluator_app, name="evaluator")
app.command("evaluate", help=evaluate_command.__doc__)(evaluate_command)
app.command("edit", help=edit_command.__doc__)(edit_command)
app.add_typer(directions_app, name="directions")
app.add_typer(stylespace_app, name="stylespace")
app.command("studio", help=studio_command.__doc__)(studio_command)


def main() -> None:
    """Console-script entry point."""
    app()
