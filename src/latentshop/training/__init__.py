"""Training of generators (never imported by inference code)."""

from latentshop.training.loop import TrainOptions, Trainer
from latentshop.training.loss import LossOptions, StyleGAN2Loss

__all__ = ["LossOptions", "StyleGAN2Loss", "TrainOptions", "Trainer"]
