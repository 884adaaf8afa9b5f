"""Tiny generators and encoders for the encoder tests (imported by them)."""

from __future__ import annotations

from dataclasses import replace

import torch

from latentshop.models.stylegan2 import Generator
from latentshop.training.encoder import EncoderTrainOptions, EncoderTrainer, build_encoder

ARCH = dict(widths=(8, 16, 16, 16), style_channels=16)


def tiny_generator(seed: int = 0, channels: int = 3) -> Generator:
    """A 16-px generator with 6 ws."""
    torch.manual_seed(seed)
    return Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=channels,
                     synthesis_kwargs=dict(channel_base=128, channel_max=16)).eval()


def fast_options(**changes) -> EncoderTrainOptions:
    """Samples only, no perceptual network, short progressive schedule, float32."""
    base = EncoderTrainOptions(batch_size=8, sample_fraction=1.0, perceptual=0.0, total_kimg=1.0, lr=1e-3, bf16=False,
                               progressive_start=2, progressive_every=2, d_reg_interval=2)
    return replace(base, **changes)


def trained_encoder(G: Generator, steps: int = 40, **changes):
    """An encoder trained for ``steps`` on ``G``'s samples."""
    options = fast_options(**changes)
    torch.manual_seed(options.seed)
    E = build_encoder(G, options, **ARCH)
    trainer = EncoderTrainer(G, E, None, options)
    for _ in range(steps):
        trainer.train_step()
    return trainer.E.eval().requires_grad_(False)
