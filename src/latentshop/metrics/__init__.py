"""Image-set metrics: multi-scale sliced Wasserstein distance (SWD), Fréchet Inception Distance (FID) and a
kernel distance on the bundled MobileNetV2's features (KID's estimator, not the Inception KID);
per-pair image quality (PSNR, SSIM, MS-SSIM) and perceptual distances (MobileNetV2, VGG16, discriminator);
edit quality (target change, leakage, change outside the attribute's part).

Each metric is a class with ``update(images, which)`` (``which`` is ``"real"`` or ``"fake"``) and
``compute() -> dict[str, float]``; :func:`get_metric` maps a registry name to its constructor.
"""

from __future__ import annotations

from typing import Any, Callable

from latentshop.errors import ConfigError
from latentshop.metrics.edits import dilate, edit_effect
from latentshop.metrics.fid import FrechetInceptionDistance, frechet_distance, load_inception
from latentshop.metrics.identity import face_embedding, identity_distances, identity_similarities, identity_similarity
from latentshop.metrics.image import ms_ssim, psnr, ssim
from latentshop.metrics.kid import MobileNetKID, kernel_distance, mobilenet_features
from latentshop.metrics.perceptual import PerceptualDistance, list_perceptual, load_mobilenet, load_perceptual
from latentshop.metrics.swd import SlicedWassersteinDistance, laplacian_pyramid, sliced_wasserstein

__all__ = [
    "dilate",
    "edit_effect",
    "face_embedding",
    "identity_distances",
    "identity_similarities",
    "identity_similarity",
    "FrechetInceptionDistance",
    "MobileNetKID",
    "PerceptualDistance",
    "SlicedWassersteinDistance",
    "frechet_distance",
    "get_metric",
    "kernel_distance",
    "laplacian_pyramid",
    "list_metrics",
    "list_perceptual",
    "load_inception",
    "load_mobilenet",
    "load_perceptual",
    "mobilenet_features",
    "ms_ssim",
    "psnr",
    "sliced_wasserstein",
    "ssim",
]

_METRICS: dict[str, Callable[..., Any]] = {
    "fid": FrechetInceptionDistance,  # FrechetInceptionDistance(inception_path, *, device, batch_size, verify)
    "kid-mobilenet": MobileNetKID,  # MobileNetKID(*, device, num_subsets, max_subset_size, seed): not the Inception KID
    "swd": SlicedWassersteinDistance,  # SlicedWassersteinDistance(resolution, *, seed, ...)
}


def list_metrics() -> list[str]:
    """Names of the registered image-set metrics.

    Example:
        >>> list_metrics()
        ['fid', 'kid-mobilenet', 'swd']
    """
    return sorted(_METRICS)


def get_metric(name: str) -> Callable[..., Any]:
    """The constructor registered under ``name`` (see :func:`list_metrics`).

    Example:
        >>> swd = get_metric("swd")(32)
        >>> swd.resolutions
        [32, 16]
    """
    try:
        return _METRICS[name]
    except KeyError:
        raise ConfigError(f"unknown metric {name!r}; known metrics: {', '.join(list_metrics())}") from None
