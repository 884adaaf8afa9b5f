"""latentshop: edit images with GANs."""

from latentshop.errors import CheckpointError, ConfigError, ImageError, LatentshopError, ShapeError

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ImageError",
    "LatentshopError",
    "ShapeError",
    "__version__",
]
