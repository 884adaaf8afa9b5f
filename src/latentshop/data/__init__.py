"""Data at the two ends of the pipeline: image files in and out."""

from latentshop.data.images import atomic_write_bytes, make_grid, save_image, to_uint8

__all__ = ["atomic_write_bytes", "make_grid", "save_image", "to_uint8"]
