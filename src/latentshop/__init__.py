"""latentshop: edit images with GANs.

The main entry points:

>>> import latentshop
>>> sorted(latentshop.list_checkpoint_formats())
['latentshop', 'nvidia-pickle', 'rosinality']
"""

from latentshop.checkpoints import (
    convert_checkpoint,
    list_checkpoint_formats,
    list_models,
    load_discriminator,
    load_generator,
    read_checkpoint,
)
from latentshop.checkpoints.evaluators import list_evaluators, load_evaluator
from latentshop.data.align import align_face, paste_back
from latentshop.errors import CheckpointError, ConfigError, ImageError, LatentshopError, ShapeError

from latentshop.inversion import invert, list_inversion_methods
from latentshop.latents import Latent, load_latent, save_latent, synthesize

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ImageError",
    "Latent",
    "LatentshopError",
    "ShapeError",
    "__version__",
    "align_face",
    "invert",
    "list_inversion_methods",
    "load_latent",
    "paste_back",
    "save_latent",
    "synthesize",
    "convert_checkpoint",
    "list_checkpoint_formats",
    "list_evaluators",
    "list_models",
    "load_evaluator",
    "load_discriminator",
    "load_generator",
    "read_checkpoint",
]
