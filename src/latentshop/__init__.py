"""latentshop: edit images with GANs.

The main entry points: :func:`load_model` gives a model with its encoders, edits and evaluators;
:mod:`latentshop.pipeline` runs the main job on it (photo → latent → edits → files).

>>> import latentshop
>>> sorted(latentshop.list_checkpoint_formats())
['latentshop', 'nvidia-pickle', 'rosinality']
"""

from latentshop.checkpoints import (
    ModelBundle,
    convert_checkpoint,
    list_checkpoint_formats,
    list_models,
    load_discriminator,
    load_generator,
    load_model,
    read_checkpoint,
)
from latentshop.checkpoints.evaluators import list_evaluators, load_evaluator
from latentshop.data.align import align_face, paste_back

# importing the editing package registers the edit families every model's catalog asks
from latentshop.editing import edit
from latentshop.errors import CheckpointError, ConfigError, EditError, ImageError, LatentshopError, ShapeError
from latentshop.inversion import InversionResult, invert, list_inversion_methods
from latentshop.latents import Latent, load_latent, save_latent, synthesize
from latentshop.pipeline import EditResult, edit_photo, invert_photo, load_target
from latentshop.version import __version__

__all__ = [
    "CheckpointError",
    "ConfigError",
    "EditError",
    "EditResult",
    "ImageError",
    "InversionResult",
    "Latent",
    "LatentshopError",
    "ModelBundle",
    "ShapeError",
    "__version__",
    "align_face",
    "convert_checkpoint",
    "edit",
    "edit_photo",
    "invert",
    "invert_photo",
    "list_checkpoint_formats",
    "list_evaluators",
    "list_inversion_methods",
    "list_models",
    "load_discriminator",
    "load_evaluator",
    "load_generator",
    "load_latent",
    "load_model",
    "load_target",
    "paste_back",
    "read_checkpoint",
    "save_latent",
    "synthesize",
]
