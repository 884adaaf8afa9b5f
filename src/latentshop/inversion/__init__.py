"""Inversion: find an image in a generator's latent space — optimisation, encoders, and hybrids.

Every method is one registration (:func:`register_inversion_method`; :func:`list_inversion_methods`).
The method modules register theirs when this package is imported.
"""

# the method modules register their methods on import
from latentshop.inversion import encoders as _encoders  # noqa: F401
from latentshop.inversion import optimize as _optimize  # noqa: F401
from latentshop.inversion.base import (
    INVERSION_METHODS,
    LOSS_TERMS,
    InversionError,
    InversionMethod,
    InversionOptions,
    InversionResult,
    InversionStep,
    check_mask,
    invert,
    list_inversion_methods,
    method_defaults,
    parse_loss,
    perceptual_loss,
    prepare_target,
    register_inversion_method,
    run_inversion,
    w_stats,
)
from latentshop.inversion.encoders import ENCODER_METHODS, encode
from latentshop.inversion.optimize import optimize_latents

__all__ = [
    "ENCODER_METHODS",
    "INVERSION_METHODS",
    "InversionError",
    "InversionMethod",
    "InversionOptions",
    "InversionResult",
    "InversionStep",
    "LOSS_TERMS",
    "check_mask",
    "encode",
    "invert",
    "list_inversion_methods",
    "method_defaults",
    "optimize_latents",
    "parse_loss",
    "perceptual_loss",
    "prepare_target",
    "register_inversion_method",
    "run_inversion",
    "w_stats",
]
