"""Tiny generators and a planted-attribute evaluator for the editing tests (imported by them)."""

from __future__ import annotations

import torch

from latentshop.data.synthetic import Factor
from latentshop.models.evaluators import FactorRegressor
from latentshop.models.stylegan2 import Generator


def tiny_generator(seed: int = 0, res: int = 16, channels: int = 3) -> Generator:
    torch.manual_seed(seed)
    return Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=res, img_channels=channels,
                     mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()


class BrightnessEvaluator(FactorRegressor):
    """Scores 'bright' = mean pixel value of the left half, 'red' = red minus the others: known attributes."""

    def __init__(self) -> None:
        super().__init__(res=16, widths=(4, 4, 4), features=4,
                         factors={"bright": Factor("bright", "float", -1.0, 1.0), "red": Factor("red", "float", -2.0, 2.0)})

    def predict(self, img: torch.Tensor, *, batch: int = 256) -> dict[str, torch.Tensor]:
        img = img.float()
        w = img.shape[-1]
        bright = img[..., : w // 2].mean((1, 2, 3))
        red = (img[:, 0] - img[:, 1:].mean(1)).mean((1, 2)) if img.shape[1] == 3 else torch.zeros(img.shape[0])
        return {"bright": bright, "red": red}
