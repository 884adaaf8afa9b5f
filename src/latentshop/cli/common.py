"""Helpers shared by the command-line commands: argument parsing, error reporting, progress."""

from __future__ import annotations

import functools
import re
import sys
from typing import Any, Callable, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from latentshop.errors import ConfigError, LatentshopError

__all__ = ["cli_input", "console", "err_console", "handle_errors", "parse_range", "progress"]

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


def cli_input(bundle: Any, text: str, *, method: str = "auto", steps: int | None = None, align: bool = False,
              trunc: float = 1.0, quiet: bool = False, **kwargs: Any) -> Any:
    """:func:`latentshop.pipeline.resolve_input` with a progress bar while an image is inverted and a
    line saying how (the editing commands' inputs: a latent file, ``seed:N`` or an image)."""
    from pathlib import Path

    from latentshop.pipeline import choose_method, resolve_input

    chosen = choose_method(bundle, method)
    with progress() as bar:
        tasks: list[Any] = []  # made on the first step: seeds and latent files need no bar

        def callback(state: Any) -> None:
            if not tasks:
                tasks.append(bar.add_task(f"inverting {Path(text).name} ({chosen})", total=None))
            bar.update(tasks[0], completed=state.step, total=state.total)

        src = resolve_input(bundle, text, method=chosen, steps=steps, align=align, trunc=trunc, callback=callback, **kwargs)
    if src.kind == "image" and not quiet:
        console.print(f"inverted {Path(text).name} with {chosen} in {src.latent.meta.get('seconds', 0):.1f} s")
    return src
