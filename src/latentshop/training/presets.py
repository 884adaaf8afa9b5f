"""Named training configurations: the recipes of the models latentshop ships.

Architecture and optimisation follow the StyleGAN2-ADA paper's ``auto`` configuration for small
datasets (2 mapping layers, R1 gamma = 0.0002 * res^2 / batch, lr 0.0025, G_ema half-life
batch * 10 / 32 kimg, ADA), with one departure: the network widths are cut to ``channel_base``
4096 / ``channel_max`` 128 (1.7M + 1.5M parameters at 64 px instead of about 24M + 24M), so that a
model trains in hours on a 2-core CPU and ships in under 25 MB. ``total_kimg`` is what the shipped
model was trained for: quality was still improving there (``--kimg`` trains longer). The ``synthetic`` recipe departs
once more: R1 gamma 1.0 (the paper's FFHQ-256 value) instead of the auto 0.0256. With the auto value
D separated the crisp synthetic renders from early samples within 3 kimg (mean real logit 5-9,
loss_D 0.04) and G made no progress in 16 kimg; real photos (``default``) train well with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from latentshop.errors import ConfigError
from latentshop.training.loop import TrainOptions
from latentshop.training.loss import LossOptions
from latentshop.training.run import RunOptions

__all__ = ["PRESET_ALIASES", "Preset", "PRESETS", "get_preset", "list_presets", "architecture"]


@dataclass(frozen=True)
class Preset:
    """Everything a model recipe fixes."""

    name: str  # registry name
    data: str  # data source: a path or "synthetic:<domain>"
    res: int  # image resolution
    channels: int  # image channels (1 = grayscale)
    split: str | None  # dataset split to train on (e.g. "train")
    xflip: bool  # mirror augmentation
    z_dim: int = 256  # latent width (z and w)
    mapping_layers: int = 2  # mapping network depth
    channel_base: int = 4096  # width: min(channel_base // res, channel_max) channels per block
    channel_max: int = 128  # maximum width
    options: TrainOptions = field(default_factory=TrainOptions)  # optimisation
    run: RunOptions = field(default_factory=RunOptions)  # duration and reporting
    description: str = ""  # one line for --help


def architecture(res: int, channels: int, *, z_dim: int = 256, mapping_layers: int = 2, channel_base: int = 4096,
                 channel_max: int = 128, c_dim: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(G_kwargs, D_kwargs)`` for a StyleGAN2 of this size."""
    G = dict(z_dim=z_dim, c_dim=c_dim, w_dim=z_dim, img_resolution=res, img_channels=channels,
             mapping_kwargs=dict(num_layers=mapping_layers),
             synthesis_kwargs=dict(channel_base=channel_base, channel_max=channel_max, num_fp16_res=0, conv_clamp=None))
    D = dict(c_dim=c_dim, img_resolution=res, img_channels=channels, channel_base=channel_base, channel_max=channel_max,
             epilogue_kwargs=dict(mbstd_group_size=4))
    return G, D


def _small_data_options(res: int, batch: int, *, ada: bool, r1_gamma: float | None = None) -> TrainOptions:
    gamma = 0.0002 * res**2 / batch if r1_gamma is None else r1_gamma
    return TrainOptions(
        batch_size=batch,
        loss=LossOptions(r1_gamma=gamma, pl_weight=2.0, style_mixing_prob=0.9),
        ada=ada,
        ada_kimg=100.0,
        bf16=True,
    )


PRESETS: dict[str, Preset] = {
    "lfw": Preset(
        name="lfw",
        data="../shared/data/lfw-faces",
        res=64,
        channels=1,
        split="train",
        xflip=True,
        options=_small_data_options(64, 32, ada=True),
        run=RunOptions(total_kimg=88, snapshot_kimg=10),  # what the shipped model was trained for
        description="real faces: lfw-faces (aligned, grayscale), 64 px, ADA",
    ),
    "synthetic": Preset(
        name="synthetic",
        data="synthetic:photo",
        res=64,
        channels=3,
        split=None,
        xflip=False,
        options=_small_data_options(64, 32, ada=False, r1_gamma=1.0),
        run=RunOptions(total_kimg=178, snapshot_kimg=10),  # what the shipped model was trained for (177.9)
        description="synthetic faces (photo domain), 64 px: the measurement bench",
    ),
    "celeba": Preset(
        name="celeba",
        data="../shared/data/celeba-faces",
        res=128,
        channels=3,
        split="train",
        xflip=True,
        # 3072 / 128: 128-128-128-128-96-48-24 channels from 4 to 128 px. The training-speed benchmark
        # measured 13.0 img/s (fast path, float32, 2 cores) against 4.7-7.5 for 4096 / 128 and 24.3 for
        # 2048 / 128, whose 16 channels at 128 px are too few for colour detail: 300 kimg in about 6.4 h.
        channel_base=3072,
        channel_max=128,
        options=_small_data_options(128, 32, ada=True),
        run=RunOptions(total_kimg=300, snapshot_kimg=10, keep_snapshots=True),
        description="real colour faces: celeba-faces (aligned, RGB, 1,100 persons), 128 px, ADA; CelebA: non-commercial research use",
    ),
}


#: ``default`` is the recipe of the bundled ``default`` model
PRESET_ALIASES = {"default": "lfw"}


def list_presets() -> list[str]:
    return sorted([*PRESETS, *PRESET_ALIASES])


def get_preset(name: str, **overrides: Any) -> Preset:
    """A preset by name (or alias), with fields replaced by ``overrides``."""
    name = PRESET_ALIASES.get(name, name)
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {list_presets()}")
    return replace(PRESETS[name], **overrides) if overrides else PRESETS[name]
