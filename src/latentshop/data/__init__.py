"""Data at the two ends of the pipeline: image files in and out, and training datasets."""

from latentshop.data.align import AlignedFace, NoFaceError, align_face, load_alignment, paste_back, save_alignment
from latentshop.data.dataset import ImageFolderDataset, PrepareReport, SkippedFile, load_image, open_image, prepare_images, shard_indices
from latentshop.data.images import atomic_write_bytes, make_grid, save_image, to_uint8
from latentshop.data.synthetic import FACTORS, PART_NAMES, SyntheticFace, SyntheticFaces, render, write_synthetic_dataset

__all__ = [
    "AlignedFace",
    "NoFaceError",
    "align_face",
    "load_alignment",
    "open_image",
    "paste_back",
    "save_alignment",
    "FACTORS",
    "ImageFolderDataset",
    "PART_NAMES",
    "SyntheticFace",
    "SyntheticFaces",
    "render",
    "write_synthetic_dataset",
    "PrepareReport",
    "SkippedFile",
    "atomic_write_bytes",
    "load_image",
    "make_grid",
    "prepare_images",
    "save_image",
    "shard_indices",
    "to_uint8",
]
