"""``latentshop info`` and ``latentshop convert``: inspect and convert checkpoints."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path

import torch

import typer
from rich.table import Table

from latentshop.checkpoints import build_network, convert_checkpoint, read_checkpoint
from latentshop.checkpoints.loader import resolve_checkpoint_path
from latentshop.cli.common import console, handle_errors
from latentshop.models.stylegan2 import Discriminator, Generator

__all__ = ["info", "convert", "describe_network"]


class Target(str, Enum):
    latentshop = "latentshop"
    rosinality = "rosinality"


def describe_network(net: Generator | Discriminator) -> dict:
    """Architecture facts of a built network, as plain values (what ``info`` prints)."""
    params = sum(p.numel() for p in net.parameters())
    if isinstance(net, Generator):
        syn = net.synthesis
        kw = net.init_kwargs["synthesis_kwargs"]
        return {
            "type": "StyleGAN2 generator",
            "img_resolution": net.img_resolution,
            "img_channels": net.img_channels,
            "z_dim": net.z_dim,
            "w_dim": net.w_dim,
            "c_dim": net.c_dim,
            "num_ws": net.num_ws,
            "mapping_layers": net.mapping.num_layers,
            "architecture": kw.get("architecture", "skip"),
            "channels": " ".join(f"{r}:{c}" for r, c in syn.channels_dict.items()),
            "num_fp16_res": kw.get("num_fp16_res", 0),
            "conv_clamp": kw.get("conv_clamp"),
            "parameters": params,
        }
    kw = net.init_kwargs
    return {
        "type": "StyleGAN2 discriminator",
        "img_resolution": net.img_resolution,
        "img_channels": net.img_channels,
        "c_dim": net.c_dim,
        "architecture": kw.get("architecture", "resnet"),
        "num_fp16_res": kw.get("num_fp16_res", 0),
        "conv_clamp": kw.get("conv_clamp"),
        "mbstd_group_size": (kw.get("epilogue_kwargs") or {}).get("mbstd_group_size", 4),
        "parameters": params,
    }


@handle_errors
def info(
    model: str = typer.Argument(..., help="Checkpoint path or model name."),
    device: str = typer.Option("auto", help="Where to test-render one image: 'auto', 'cpu', 'cuda' or 'cuda:N'."),
) -> None:
    """Describe a checkpoint: its format, networks, architecture, num_ws, resolution and size.

    Each generator also renders one image on --device, to show that it runs there and how fast.

    Examples:

      latentshop info ffhq.pkl

      latentshop info models/my-model/ --device cpu
    """
    ck = read_checkpoint(resolve_checkpoint_path(model))
    console.print(f"[bold]{ck.path}[/]  format: {ck.format}  networks: {', '.join(ck.networks)}")
    for name, spec in ck.networks.items():
        net = build_network(spec, path=ck.path, device=device)
        facts = describe_network(net)
        if isinstance(net, Generator):
            facts["test render"] = _test_render(net)
        table = Table(title=name, show_header=False, title_justify="left")
        for k, v in facts.items():
            table.add_row(k, f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v))
        console.print(table)
    if ck.training_set_kwargs:
        console.print(f"training set: {ck.training_set_kwargs}")
    for note in ck.notes:
        console.print(f"note: {note}")


def _test_render(G: Generator) -> str:
    device = G.mapping.fc0.weight.device
    z = torch.randn([1, G.z_dim], device=device)
    c = torch.eye(G.c_dim, device=device)[:1] if G.c_dim else None
    with torch.no_grad():
        G(z, c, impl="fast")  # warm-up
        start = time.perf_counter()
        img = G(z, c, impl="fast")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        ms = 1000 * (time.perf_counter() - start)
    return f"{list(img.shape)} on {device} in {ms:.0f} ms"


@handle_errors
def convert(
    src: str = typer.Argument(..., help="Checkpoint to read: NVIDIA .pkl, rosinality .pt or latentshop folder."),
    dst: Path = typer.Argument(..., help="Output: a folder (latentshop) or a .pt file (rosinality)."),
    to: Target = typer.Option(Target.latentshop, "--to", help="Output format."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output."),
) -> None:
    """Convert a checkpoint to latentshop's safetensors format, or export rosinality's .pt.

    Every network in the file (G_ema, G, D) is converted; nothing is written unless all of them
    load. The rosinality export works with pSp/e4e-style tools (unconditional, 'skip', RGB, no clamp).

    Examples:

      latentshop convert ffhq.pkl models/ffhq

      latentshop convert models/ffhq ffhq-rosinality.pt --to rosinality
    """
    ck = convert_checkpoint(src, dst, to=to.value, force=force)
    console.print(f"converted {ck.format} {ck.path} ({', '.join(ck.networks)}) -> {to.value} {dst}")
    for note in ck.notes:
        console.print(f"note: {note}")
