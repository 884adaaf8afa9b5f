"""Editing: change a found latent in meaningful ways (directions, StyleSpace channels, mixing,
interpolation).

Edits are data (:mod:`latentshop.editing.edits`): frozen objects mapping a ``Latent`` to a
``Latent``, composed in a list and applied by :func:`edit`. Direction sets
(:mod:`latentshop.editing.directions`) come from InterFaceGAN, GANSpace or SeFa and are stored as
files tied to their generator (read and written by :mod:`latentshop.checkpoints.edit_files`). Every
edit family registers once (:func:`latentshop.registry.register_edit_family`); a model's
:class:`~latentshop.registry.EditCatalog` finds an edit by name across them. :mod:`latentshop.editing.mixing` mixes layers of latents and
interpolates between them (frames for :mod:`latentshop.data.video`).
"""

from latentshop.editing.directions import (
    DIRECTION_METHODS,
    DirectionSet,
    attribute_scores,
    condition,
    ganspace,
    interfacegan,
    sample_ws,
    sefa,
)
from latentshop.editing.edits import (
    ChannelEdit,
    Direction,
    Edit,
    EditError,
    StyleMix,
    Truncate,
    edit,
    layer_groups,
    parse_layers,
    style_layer_ws,
)
from latentshop.editing.mixing import INTERPOLATION_METHODS, crossover, interpolate, path, style_mix
from latentshop.editing.stylespace import ChannelSet, StyleChannels, find_channels, style_std

__all__ = [
    "DIRECTION_METHODS",
    "ChannelEdit",
    "ChannelSet",
    "Direction",
    "DirectionSet",
    "INTERPOLATION_METHODS",
    "Edit",
    "EditError",
    "StyleChannels",
    "StyleMix",
    "Truncate",
    "attribute_scores",
    "condition",
    "crossover",
    "edit",
    "find_channels",
    "ganspace",
    "interfacegan",
    "interpolate",
    "layer_groups",
    "parse_layers",
    "path",
    "sample_ws",
    "sefa",
    "style_layer_ws",
    "style_mix",
    "style_std",
]
