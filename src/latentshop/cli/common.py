"""Helpers shared by the command-line commands: argument parsing, error reporting, progress."""

from __future__ import annotations

import functools
import re
import sys
from typing import Any, Callable, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from latentshop.errors import ConfigError, LatentshopError

__all__ = ["cli_input", "cli_inputs", "console", "err_console", "handle_errors", "parse_range", "print_warning", "progress"]

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def parse_range(text: str, *, what: str = "value") -> list[int]:
    """Parse ``"0-7"``, ``"1,3,5"`` or ``"0-2,9"`` into a list of ints (ranges inclusive).

    Example:
        >>> parse_range("0-2,9")
        [0, 1, 2, 9]
    """
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if b < a:
                raise ConfigError(f"{what} range {part!r} runs backwards; write it as {b}-{a}")
            out.extend(range(a, b + 1))
        elif re.fullmatch(r"\d+", part):
            out.append(int(part))
        else:
            raise ConfigError(f"cannot read {what} {text!r}: use numbers and ranges like '0-7' or '1,4,9-12'")
    return out


def handle_errors(fn: F) -> F:
    """Turn latentshop errors into one red line on stderr and exit status 1 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LatentshopError as e:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(1)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            raise typer.Exit(130)

    return wrapper  # type: ignore[return-value]


def progress() -> Progress:
    """A progress bar on stderr that disappears when stdout is not a terminal."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not sys.stderr.isatty(),
        transient=False,
    )


def print_warning(text: str) -> None:
    """One yellow ``warning:`` line on stderr (the library's ``warn`` callbacks in the CLI)."""
    err_console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=True)


def cli_input(bundle: Any, text: str, *, method: str = "auto", steps: int | None = None, align: bool = False,
              trunc: float = 1.0, quiet: bool = False, **kwargs: Any) -> Any:
    """:func:`latentshop.pipeline.resolve_input` with a progress bar while an image is inverted and a
    line saying how (the editing commands' inputs: a latent file, ``seed:N`` or an image)."""
    return cli_inputs(bundle, text, method=method, steps=steps, align=align, trunc=trunc, quiet=quiet, **kwargs)[0]


def cli_inputs(bundle: Any, text: str, *, method: str = "auto", steps: int | None = None, align: bool = False,
               all_faces: bool = False, trunc: float = 1.0, quiet: bool = False,
               warn: Callable[[str], None] | None = print_warning, **kwargs: Any) -> list[Any]:
    """:func:`latentshop.pipeline.resolve_inputs` (every face of a photo with ``all_faces``) with a
    progress bar per inversion, a line per inverted image, and warnings printed as they come."""
    from pathlib import Path

    from latentshop.pipeline import choose_method, resolve_inputs

    chosen = choose_method(bundle, method)
    with progress() as bar:
        tasks: list[Any] = []  # made on the first step: seeds and latent files need no bar
        last = [0]

        def callback(state: Any) -> None:
            if not tasks or state.step < last[0]:  # the next face's inversion starts again from step 0
                tasks.append(bar.add_task(f"inverting {Path(text).name} ({chosen})", total=None))
            last[0] = state.step
            bar.update(tasks[-1], completed=state.step, total=state.total)

        sources = resolve_inputs(bundle, text, method=chosen, steps=steps, align=align, all_faces=all_faces, trunc=trunc,
                                 callback=callback, warn=warn, **kwargs)
    for src in sources:
        if src.kind == "image" and not quiet:
            what = src.name if src.target is not None and src.target.face_index is not None else Path(text).name
            console.print(f"inverted {what} with {chosen} in {src.latent.meta.get('seconds', 0):.1f} s")
    return sources
