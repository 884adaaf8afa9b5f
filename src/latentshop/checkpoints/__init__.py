"""Reading and writing checkpoints: latentshop's safetensors format, NVIDIA pickles, rosinality ``.pt``.

This is the only package that reads foreign formats; it converts them once into latentshop modules.
"""

from latentshop.checkpoints.loader import (
    Checkpoint,
    build_network,
    compute_w_avg,
    convert_checkpoint,
    list_checkpoint_formats,
    load_discriminator,
    load_generator,
    read_checkpoint,
)
from latentshop.checkpoints.evaluators import list_evaluators, load_evaluator, save_evaluator
from latentshop.checkpoints.native import NetworkSpec, read_native, write_native
from latentshop.checkpoints.zoo import list_models

__all__ = [
    "Checkpoint",
    "NetworkSpec",
    "build_network",
    "compute_w_avg",
    "convert_checkpoint",
    "list_checkpoint_formats",
    "list_evaluators",
    "list_models",
    "load_evaluator",
    "load_discriminator",
    "load_generator",
    "read_checkpoint",
    "read_native",
    "save_evaluator",
    "write_native",
]
