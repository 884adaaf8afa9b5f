"""Inversion: find an image in a generator's latent space (optimisation; encoders join later)."""

from latentshop.inversion.optimize import (
    LOSS_TERMS,
    InversionError,
    InversionOptions,
    InversionStep,
    invert,
    list_inversion_methods,
    method_defaults,
    parse_loss,
    perceptual_loss,
    prepare_target,
    w_stats,
)

__all__ = [
    "LOSS_TERMS",
    "InversionError",
    "InversionOptions",
    "InversionStep",
    "invert",
    "list_inversion_methods",
    "method_defaults",
    "parse_loss",
    "perceptual_loss",
    "prepare_target",
    "w_stats",
]
