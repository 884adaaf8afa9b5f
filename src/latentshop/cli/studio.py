"""``latentshop studio``: the web studio on this machine."""

from __future__ import annotations

import ipaddress
import signal
import threading
from pathlib import Path
from typing import Optional

import typer

from latentshop.cli.common import console, err_console, handle_errors
from latentshop.errors import ConfigError

__all__ = ["studio_command", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (127.0.0.0/8, ::1, localhost).

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
        (True, True, False)
    """
    if host.strip().lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@handle_errors
def studio_command(
    model: Optional[list[str]] = typer.Option(None, "--model", "-m", help="Model name or checkpoint path (repeatable; the first is the default). Default: the bundled models ('default' first)."),
    models_dir: Optional[Path] = typer.Option(None, "--models-dir", help="Also offer every checkpoint in this folder (.pkl, .pt, model folders)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on. Anything but loopback needs --allow-remote."),
    port: int = typer.Option(7860, min=1, max=65535, help="Port to listen on."),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="Allow a non-loopback --host: anyone who can reach it can use the studio."),
    examples: Optional[Path] = typer.Option(None, help="Folder of example photos (default: the repository's examples/)."),
    max_upload_mb: float = typer.Option(10.0, min=0.1, max=200.0, help="Largest upload accepted, in MB."),
    refine_concurrency: int = typer.Option(1, min=1, max=16, help="Refinements (optimisations) run at once; others wait in the queue."),
    threads: int = typer.Option(1, min=1, max=256, help="CPU threads per action (render, refine); 1 lets actions of several visitors share the cores."),
    device: str = typer.Option("auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'."),
) -> None:
    """Start the web studio: upload a photo, edit it with sliders, download the result.

    Examples:

      latentshop studio                      # the bundled models (default first), at http://127.0.0.1:7860

      latentshop studio --model default --model synthetic --port 8000

      latentshop studio --models-dir ~/checkpoints --model ~/checkpoints/ffhq.pkl

      latentshop studio --host 0.0.0.0 --allow-remote   # reachable from other machines (no login!)

    Every browser tab is its own session: its photos, latents and downloads live in a temporary
    folder that is deleted when the tab closes and when the studio stops (Ctrl-C).
    """
    from latentshop.web import Studio, launch

    if not is_loopback(host):
        if not allow_remote:
            raise ConfigError(f"--host {host} is reachable from other machines; the studio has no login. "
                              "Pass --allow-remote to do it anyway, or keep the default --host 127.0.0.1")
        err_console.print(f"[yellow]warning:[/] listening on {host}: anyone who can reach this address can use the "
                          "studio and upload files to it (there is no login)", highlight=False)
    studio = Studio(model or None, models_dir=models_dir, device=device, examples=examples,
                    max_upload_bytes=int(max_upload_mb * 2**20), threads=threads)
    try:
        console.print(f"loading {', '.join(studio.model_names)} …", highlight=False)
        for name, why in studio.load_all().items():
            err_console.print(f"[yellow]warning:[/] {name} is left out of the model picker: {why}", highlight=False)
        demo = launch(studio, host=host, port=port, refine_concurrency=refine_concurrency, block=False, quiet=True)
        shown = f"[{host}]" if ":" in host else host
        console.print(f"latentshop studio at http://{shown}:{port}/  (Ctrl-C stops it)", highlight=False)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.wait(1.0):
            studio.sweep_sessions()
        demo.close()
    finally:
        studio.close()
        console.print("studio stopped; its temporary files are deleted")
