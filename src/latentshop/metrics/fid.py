"""Fréchet Inception Distance (FID) with NVIDIA's Inception-v3 TorchScript feature detector.

The metric of Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium" (NeurIPS 2017): the Fréchet distance between Gaussians fitted to Inception-v3 pool
features of real and generated images,

    FID = |mu_r - mu_f|^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)).

The protocol follows NVIDIA's stylegan2-ada-pytorch (``metrics/frechet_inception_distance.py``,
``metrics/metric_utils.py``): images go to the detector as ``uint8`` ``(N, 3, H, W)`` RGB (it
resizes to 299x299 itself), called as ``detector(images, return_features=True)`` -> ``(N, 2048)``;
float images in ``[-1, 1]`` are quantised as ``x * 127.5 + 128`` clamped to ``[0, 255]``;
grayscale images are repeated to three channels; the covariance is the population one (divided by
``N``). Means and covariances are accumulated in float64 (merging batch moments, which is more
stable than summing raw second moments). The matrix square root is taken without scipy: the trace
of ``(S_r S_f)^(1/2)`` is the sum of square roots of the eigenvalues of the symmetric matrix
``S_r^(1/2) S_f S_r^(1/2)`` (``torch.linalg.eigh``, negative round-off clamped to 0).

The detector file is NVIDIA's ``inception-2015-12-05.pt`` (a TorchScript export of the TensorFlow
Inception graph used by the original FID code), supplied by the user: latentshop downloads nothing.
``torch.jit.load`` runs TorchScript code stored in the file, so :func:`load_inception` first checks
that the file's SHA-256 is :data:`INCEPTION_SHA256`, the digest of the file NVIDIA serves at
:data:`INCEPTION_URL` (the one other projects pin for that URL, e.g. ``k_diffusion/evaluation.py`` of
crowsonkb/k-diffusion), and refuses any other file before loading anything from it. A user's own
Inception file can be loaded with ``verify=False`` (a warning; its FID is not comparable with
published values); it is then only checked for structure: a TorchScript archive that maps a dummy
``uint8 (2, 3, 299, 299)`` batch to ``(2, F)`` float features.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from latentshop.errors import CheckpointError, ConfigError, ImageError, ShapeError
from latentshop.runtime import resolve_device

__all__ = [
    "FrechetInceptionDistance",
    "frechet_distance",
    "load_inception",
    "file_sha256",
    "INCEPTION_FILENAME",
    "INCEPTION_SHA256",
    "INCEPTION_URL",
]

Which = Literal["real", "fake"]

INCEPTION_FILENAME = "inception-2015-12-05.pt"
INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
# SHA-256 of the file at INCEPTION_URL, as pinned by crowsonkb/k-diffusion (k_diffusion/evaluation.py) and others
INCEPTION_SHA256 = "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"
_DUMMY_SHAPE = (2, 3, 299, 299)  # the structure check's input: Inception-v3's native size

_HOW_TO_GET = (
    f"FID needs NVIDIA's Inception-v3 feature detector {INCEPTION_FILENAME!r}, the TorchScript file "
    f"published with stylegan2-ada-pytorch at {INCEPTION_URL} . latentshop downloads nothing: fetch "
    "that file yourself (from NVIDIA, a trusted source — loading it runs TorchScript code from the file) "
    "and pass its path"
)

ArrayLike = torch.Tensor | np.ndarray


def _as_float64(x: ArrayLike, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.asarray(x))
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{name} must be a tensor or numpy array, got {type(x).__name__}")
    return x.detach().to(device="cpu", dtype=torch.float64)


def _sqrt_psd(s: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix; negative round-off eigenvalues -> 0."""
    evals, evecs = torch.linalg.eigh((s + s.T) / 2)
    return (evecs * evals.clamp(min=0).sqrt()) @ evecs.T


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Fréchet distance between the Gaussians ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    ``|mu1 - mu2|^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``, in float64, with the trace
    of the square root taken from the eigenvalues of ``sigma1^(1/2) sigma2 sigma1^(1/2)``.

    Args:
        mu1: ``(F,)`` mean of the first set.
        sigma1: ``(F, F)`` covariance of the first set (symmetric PSD).
        mu2: ``(F,)`` mean of the second set.
        sigma2: ``(F, F)`` covariance of the second set.

    Returns:
        The distance, >= 0 up to round-off.

    Example:
        >>> round(frechet_distance(torch.zeros(2), torch.eye(2), torch.ones(2), 4 * torch.eye(2)), 6)
        4.0
    """
    m1, m2 = _as_float64(mu1, "mu1"), _as_float64(mu2, "mu2")
    s1, s2 = _as_float64(sigma1, "sigma1"), _as_float64(sigma2, "sigma2")
    if m1.ndim != 1 or m1.shape != m2.shape:
        raise ShapeError(f"mu1 and mu2 must be (F,) vectors of one size, got {tuple(m1.shape)} and {tuple(m2.shape)}")
    f = m1.shape[0]
    if s1.shape != (f, f) or s2.shape != (f, f):
        raise ShapeError(
            f"sigma1 and sigma2 must be ({f}, {f}) to match the means, got {tuple(s1.shape)} and {tuple(s2.shape)}"
        )
    root1 = _sqrt_psd(s1)
    inner = root1 @ s2 @ root1  # similar to s1 @ s2, but symmetric
    tr_covmean = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum()
    diff = m1 - m2
    return float(diff @ diff + torch.trace(s1) + torch.trace(s2) - 2 * tr_covmean)


class _GaussianStats:
    """Running mean and covariance (float64) of feature rows, merged batch by batch (Chan et al.)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None  # [F]
        self.m2: torch.Tensor | None = None  # [F, F] sum of centred outer products

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().to(device="cpu", dtype=torch.float64)
        n = x.shape[0]
        if n == 0:
            return
        batch_mean = x.mean(dim=0)
        centred = x - batch_mean
        batch_m2 = centred.T @ centred
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = n, batch_mean, batch_m2
            return
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + batch_m2 + torch.outer(delta, delta) * (self.count * n / total)
        self.count = total

    def mean_cov(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.mean is not None and self.m2 is not None
        return self.mean.clone(), self.m2 / self.count  # population covariance, as NVIDIA's


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_structure(detector: torch.nn.Module, path: Path) -> None:
    """A user's own detector must map ``uint8 (N, 3, H, W)`` to ``(N, F)`` float features."""
    dummy = torch.zeros(_DUMMY_SHAPE, dtype=torch.uint8)
    try:
        with torch.no_grad():
            feats = detector(dummy, return_features=True)
    except Exception as e:  # whatever the scripted code raises
        raise CheckpointError(
            path,
            f"calling it as detector(uint8 {_DUMMY_SHAPE}, return_features=True) failed ({type(e).__name__}: {e}); "
            f"expected an Inception feature detector with NVIDIA's calling convention. {_HOW_TO_GET}",
        ) from e
    if not isinstance(feats, torch.Tensor) or feats.ndim != 2 or feats.shape[0] != _DUMMY_SHAPE[0] or not feats.is_floating_point():
        got = f"{tuple(feats.shape)} {feats.dtype}" if isinstance(feats, torch.Tensor) else type(feats).__name__
        raise CheckpointError(
            path,
            f"it returned {got} for a uint8 {_DUMMY_SHAPE} batch; expected float features ({_DUMMY_SHAPE[0]}, F) "
            f"(F = 2048 for NVIDIA's detector). {_HOW_TO_GET}",
        )


def load_inception(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu", verify: bool = True
) -> torch.nn.Module:
    """Load NVIDIA's Inception TorchScript detector, after checking the file (see the module docstring).

    Args:
        path: NVIDIA's ``inception-2015-12-05.pt``.
        device: where the detector runs.
        verify: check the file's SHA-256 against :data:`INCEPTION_SHA256` before loading it. With
            ``False`` (a user's own Inception file) a warning is given, and the loaded module is
            only checked for structure on a dummy batch.

    Returns:
        The detector, in eval mode on ``device``.

    Raises:
        CheckpointError: the file is missing, is not NVIDIA's (wrong SHA-256), is not a TorchScript
            archive, or (unverified) does not map ``uint8 (N, 3, H, W)`` images to ``(N, F)`` features.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise CheckpointError(path, f"{what}. {_HOW_TO_GET}")
    if verify:
        got = file_sha256(path)
        if got != INCEPTION_SHA256:
            raise CheckpointError(
                path,
                f"has SHA-256 {got} ({path.stat().st_size} bytes), expected {INCEPTION_SHA256}, the digest of NVIDIA's "
                f"{INCEPTION_FILENAME}: it is another file or a damaged download, and is not loaded. {_HOW_TO_GET}. "
                "To use your own Inception TorchScript file anyway, turn the check off (verify=False; on the "
                "command line --no-verify-inception): its FID is then not comparable with published values",
            )
    else:
        warnings.warn(
            f"{path} is not checked against the SHA-256 of NVIDIA's {INCEPTION_FILENAME}: loading it runs the "
            "TorchScript code it holds, and its FID is not comparable with published values",
            UserWarning,
            stacklevel=2,
        )
    try:
        with warnings.catch_warnings():
            # TorchScript is deprecated in recent PyTorch, but it is the format NVIDIA ships.
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=DeprecationWarning)
            detector = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # torch raises RuntimeError, ValueError or zip errors for a bad file
        raise CheckpointError(path, f"is not a TorchScript file ({type(e).__name__}: {e}). {_HOW_TO_GET}") from e
    detector = detector.eval()
    if not verify:
        _check_structure(detector, path)
    return detector.to(resolve_device(device))


class FrechetInceptionDistance:
    """Accumulates Inception features of real and fake images and computes FID.

    Args:
        inception_path: NVIDIA's ``inception-2015-12-05.pt`` (or any TorchScript module with the same
            calling convention: ``detector(uint8 (N, 3, H, W), return_features=True) -> (N, F)``).
            It must come from a trusted source: loading it runs code from the file.
        device: where the detector runs (``"auto"``, ``"cpu"``, ``"cuda"``, ...).
        batch_size: images given to the detector at a time.
        verify: refuse any file but NVIDIA's (SHA-256 check, see :func:`load_inception`);
            ``False`` for a user's own detector (a warning and a structure check).

    Raises:
        CheckpointError: the file is missing, not NVIDIA's, or unreadable (the message says how to get it).

    Example:
        >>> fid = FrechetInceptionDistance("no/such/inception-2015-12-05.pt")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        latentshop.errors.CheckpointError: no/such/inception-2015-12-05.pt: does not exist. FID needs NVIDIA's...
    """

    def __init__(
        self,
        inception_path: str | os.PathLike[str],
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        verify: bool = True,
    ):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
        self.inception_path = str(inception_path)
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.verified = verify
        self.detector = load_inception(inception_path, device=self.device, verify=verify)
        self._stats: dict[str, _GaussianStats] = {}
        self.reset()

    @staticmethod
    def _check_which(which: str) -> str:
        if which not in ("real", "fake"):
            raise ConfigError(f"which must be 'real' or 'fake', got {which!r}")
        return which

    def reset(self, which: Which | None = None) -> None:
        """Forget the statistics of one set, or of both when ``None`` (keep ``"real"`` to reuse it)."""
        for name in ("real", "fake") if which is None else (self._check_which(which),):
            self._stats[name] = _GaussianStats()

    @property
    def num_images(self) -> dict[str, int]:
        """How many images (feature rows) each set has received."""
        return {name: stats.count for name, stats in self._stats.items()}

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Detector features of a batch of images.

        Args:
            images: ``(N, C, H, W)``, ``C`` 1 (repeated to RGB) or 3, ``uint8`` in ``[0, 255]`` or
                float in ``[-1, 1]`` (clamped).

        Returns:
            ``(N, F)`` float32 features on the CPU (``F = 2048`` for NVIDIA's detector).
        """
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ShapeError(f"FID images must be a (N, C, H, W) tensor, got {shape}")
        if images.shape[1] not in (1, 3):
            raise ShapeError(f"FID images must have 1 or 3 channels, got shape {tuple(images.shape)}")
        if images.dtype != torch.uint8:
            if not images.is_floating_point():
                raise ImageError(f"images must be uint8 in [0, 255] or float in [-1, 1], got dtype {images.dtype}")
            images = (images.detach() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        out = []
        with torch.no_grad():
            for start in range(0, images.shape[0], self.batch_size):
                batch = images[start : start + self.batch_size].to(self.device)
                feats = self.detector(batch, return_features=True)
                if not isinstance(feats, torch.Tensor) or feats.ndim != 2 or feats.shape[0] != batch.shape[0]:
                    got = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
                    raise CheckpointError(
                        self.inception_path,
                        f"the detector returned {got} for {batch.shape[0]} images; expected (N, F) features. {_HOW_TO_GET}",
                    )
                out.append(feats.detach().to("cpu", torch.float32))
        return torch.cat(out) if out else torch.empty(0, 0)

    def update(self, images: torch.Tensor, which: Which) -> None:
        """Add a batch of images to the real or the fake set (see :meth:`features` for the format)."""
        self._check_which(which)
        if images.shape[0] == 0:
            return
        self.update_features(self.features(images), which)

    def update_features(self, features: torch.Tensor, which: Which) -> None:
        """Add precomputed detector features ``(N, F)`` to the real or the fake set."""
        self._check_which(which)
        if not isinstance(features, torch.Tensor) or features.ndim != 2:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ShapeError(f"features must be an (N, F) tensor, got {shape}")
        known = [s.mean.shape[0] for s in self._stats.values() if s.mean is not None]
        if known and features.shape[1] != known[0]:
            raise ShapeError(f"features have {features.shape[1]} dimensions, earlier ones had {known[0]}")
        self._stats[which].add(features)

    def statistics(self, which: Which) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(F,)`` and population covariance ``(F, F)`` (float64) of one set's features."""
        self._check_which(which)
        stats = self._stats[which]
        if stats.count < 2:
            raise ConfigError(
                f"FID needs at least 2 {which} images, got {stats.count}: call update(images, {which!r}) "
                "with more images (tens of thousands for a comparable score)"
            )
        return stats.mean_cov()

    def compute(self) -> dict[str, float]:
        """The FID between the real and the fake set.

        Returns:
            ``{"fid": value}``, >= 0 (0 for identical feature statistics).
        """
        mu_r, sigma_r = self.statistics("real")
        mu_f, sigma_f = self.statistics("fake")
        return {"fid": frechet_distance(mu_r, sigma_r, mu_f, sigma_f)}
