"""Reading and writing checkpoints: latentshop's safetensors format, NVIDIA pickles, rosinality ``.pt``;
encoder, evaluator and edit files; and :func:`load_model`, which reads a model with all its parts.

This is the only package that reads foreign formats; it converts them once into latentshop modules.
"""

from latentshop.checkpoints.bundle import ModelBundle, load_model
from latentshop.checkpoints.edit_files import (
    load_channels,
    load_directions,
    load_edit_set,
    read_edit_file,
    save_channels,
    save_directions,
    save_edit_set,
    write_edit_file,
)
from latentshop.checkpoints.encoders import list_encoder_files, load_encoder, save_encoder
from latentshop.checkpoints.evaluators import list_evaluators, load_evaluator, save_evaluator
from latentshop.checkpoints.loader import (
    Checkpoint,
    build_network,
    compute_w_avg,
    convert_checkpoint,
    list_checkpoint_formats,
    load_discriminator,
    load_generator,
    read_checkpoint,
    resolve_checkpoint_path,
)
from latentshop.checkpoints.native import NetworkSpec, read_native, write_native
from latentshop.checkpoints.zoo import list_models

__all__ = [
    "Checkpoint",
    "ModelBundle",
    "NetworkSpec",
    "build_network",
    "compute_w_avg",
    "convert_checkpoint",
    "list_checkpoint_formats",
    "list_encoder_files",
    "list_evaluators",
    "list_models",
    "load_channels",
    "load_directions",
    "load_discriminator",
    "load_edit_set",
    "load_encoder",
    "load_evaluator",
    "load_generator",
    "load_model",
    "read_checkpoint",
    "read_edit_file",
    "read_native",
    "resolve_checkpoint_path",
    "save_channels",
    "save_directions",
    "save_edit_set",
    "save_encoder",
    "save_evaluator",
    "write_edit_file",
    "write_native",
]
