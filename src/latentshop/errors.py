"""The latentshop exception hierarchy.

Every error that a user can cause (a bad file, a wrong shape, an unknown name) is a
``LatentshopError``; the CLI turns these into one clear line and a non-zero exit.
"""

from __future__ import annotations

__all__ = ["LatentshopError", "CheckpointError", "ConfigError", "EditError", "ImageError", "ShapeError"]


class LatentshopError(Exception):
    """Base class of every error latentshop raises on purpose."""


class CheckpointError(LatentshopError):
    """A checkpoint file is missing, corrupt, hostile or of the wrong kind.

    Args:
        path: the file that was being read.
        reason: what is wrong and, where possible, how to fix it.
    """

    def __init__(self, path: object, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ImageError(LatentshopError):
    """An image file cannot be decoded, or is not usable as input.

    ``kind`` names the problem when it is known (``"empty"``, ``"not-an-image"``, ``"corrupt"``,
    ``"too-large"``, ``"unreadable"``...), for callers that answer each differently.
    """

    def __init__(self, message: str, kind: str | None = None):
        super().__init__(message)
        self.kind = kind


class ShapeError(LatentshopError):
    """A tensor has a shape other than the one the operation needs."""


class ConfigError(LatentshopError):
    """An option, architecture argument or name is invalid."""


class EditError(ConfigError):
    """An edit cannot be applied: unknown name, wrong generator, bad layers or strength."""
