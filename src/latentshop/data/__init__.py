"""Data at the two ends of the pipeline: image files in and out, and training datasets."""

from latentshop.data.dataset import ImageFolderDataset, PrepareReport, SkippedFile, prepare_images, shard_indices
from latentshop.data.images import atomic_write_bytes, make_grid, save_image, to_uint8

__all__ = [
    "ImageFolderDataset",
    "PrepareReport",
    "SkippedFile",
    "atomic_write_bytes",
    "make_grid",
    "prepare_images",
    "save_image",
    "shard_indices",
    "to_uint8",
]
