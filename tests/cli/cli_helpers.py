"""Tiny model folders for the command-line tests of the editing commands (imported by them)."""

from __future__ import annotations

import torch

from latentshop.checkpoints.native import NetworkSpec, write_native
from latentshop.models.stylegan2 import Generator


def tiny_generator(seed: int) -> Generator:
    """A 32-px generator: ws 0-3 coarse, 4-7 middle."""
    torch.manual_seed(seed)
    return Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=32, img_channels=3,
                     mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()


def tiny_model_folder(tmp_path_factory, seed: int):
    """``(folder, G)``: a latentshop checkpoint folder holding ``tiny_generator(seed)`` as G_ema."""
    G = tiny_generator(seed)
    path = tmp_path_factory.mktemp("model") / f"tiny{seed}"
    write_native(path, {"G_ema": NetworkSpec("generator", G.init_kwargs, G.state_dict())})
    return path, G
