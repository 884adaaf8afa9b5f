"""Frame sequences out: animated GIF, H.264 MP4 (through ffmpeg), and contact sheets.

Frames are ``uint8`` arrays ``[T, H, W, C]`` (``C`` = 1 or 3), as
:func:`~latentshop.data.images.to_uint8` returns them. Every file is written atomically: to a
temporary file in the target folder, then renamed, so a reader never sees half a video.

MP4 files are H.264 in ``yuv420p`` (what browsers, QuickTime and phones play). That format needs
even sizes and players dislike tiny videos, so frames smaller than ``min_size`` are enlarged by a
whole factor with nearest-neighbour sampling (a 32-px model's pixels stay crisp squares) and an
odd size gets one replicated edge row or column. ffmpeg comes from the ``imageio-ffmpeg`` package.

Example:
    >>> import numpy as np
    >>> frames = np.zeros((5, 16, 16, 1), np.uint8)
    >>> contact_sheet(frames, cols=3).shape
    (32, 48, 3)
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from latentshop.data.images import atomic_write_bytes, make_grid
from latentshop.errors import ConfigError, ImageError, ShapeError
from latentshop.runtime import current_umask

__all__ = [
    "VIDEO_SUFFIXES",
    "VideoError",
    "contact_sheet",
    "evenly_spaced",
    "require_ffmpeg",
    "write_gif",
    "write_mp4",
    "write_video",
]

VIDEO_SUFFIXES = (".gif", ".mp4")
FFMPEG_HELP = "pip install imageio-ffmpeg (or set IMAGEIO_FFMPEG_EXE to an ffmpeg binary), or write a .gif instead"


class VideoError(ImageError):
    """A video cannot be written (the encoder failed)."""


def _frames(frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Check ``uint8 [T, H, W, C]`` (``C`` = 1 or 3) and return RGB frames ``[T, H, W, 3]``."""
    if not isinstance(frames, np.ndarray):
        frames = np.stack([np.asarray(f) for f in frames]) if len(frames) else np.zeros((0,), np.uint8)
    if frames.ndim != 4 or frames.shape[0] == 0 or frames.shape[3] not in (1, 3):
        raise ShapeError(f"expected frames as uint8 [T, H, W, 1 or 3] with T >= 1, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ShapeError(f"expected uint8 frames (use data.images.to_uint8), got {frames.dtype}")
    if frames.shape[3] == 1:
        frames = np.repeat(frames, 3, axis=3)  # gray -> RGB: both formats are written as colour
    return np.ascontiguousarray(frames)


def _check_fps(fps: float) -> float:
    fps = float(fps)
    if not math.isfinite(fps) or fps <= 0:
        raise ConfigError(f"fps must be a positive number, got {fps}")
    return fps


def _enlarge(frames: np.ndarray, min_size: int | None) -> np.ndarray:
    """Whole-factor nearest-neighbour enlargement until the shorter side is ``>= min_size``."""
    if not min_size:
        return frames
    k = math.ceil(min_size / min(frames.shape[1:3]))
    if k <= 1:
        return frames
    return frames.repeat(k, axis=1).repeat(k, axis=2)


def evenly_spaced(n: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``0 .. n-1``, first and last included (all when ``count >= n``).

    Example:
        >>> evenly_spaced(30, 4)
        [0, 10, 19, 29]
    """
    if n < 1 or count < 1:
        raise ConfigError(f"cannot pick {count} of {n} frames")
    if count >= n:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, count)})


def contact_sheet(frames: np.ndarray, cols: int = 8, *, count: int | None = None, pad: int = 0) -> np.ndarray:
    """Frames side by side in one image, ``cols`` per row (row-major).

    Args:
        frames: ``uint8 [T, H, W, C]``.
        cols: frames per row.
        count: show only this many frames, evenly spaced (first and last included).
        pad: white pixels between frames.

    Returns:
        ``uint8 [rows * H, cols * W, 3]`` (gray frames become RGB).

    Example:
        >>> import numpy as np
        >>> contact_sheet(np.zeros((30, 8, 8, 3), np.uint8), cols=4, count=8).shape
        (16, 32, 3)
    """
    f = _frames(frames)
    if cols < 1:
        raise ConfigError(f"cols must be >= 1, got {cols}")
    if count is not None:
        f = f[evenly_spaced(len(f), count)]
    return make_grid(f, cols=min(cols, len(f)), pad=pad)


def write_gif(frames: np.ndarray, path: str | os.PathLike, *, fps: float = 15.0, loop: bool = True,
              min_size: int | None = None) -> Path:
    """Write an animated GIF (atomically).

    Args:
        frames: ``uint8 [T, H, W, C]``, ``C`` = 1 or 3.
        path: the ``.gif`` file.
        fps: frames per second; GIF stores whole hundredths of a second per frame, and players
            slow down anything faster than 50 fps, so the rate is rounded and capped at 50.
        loop: play forever (otherwise once).
        min_size: enlarge small frames (whole factor, nearest neighbour) to at least this size.

    Returns:
        The path written. Identical consecutive frames are merged by the encoder (the playing
        time stays the same).

    Example:
        >>> import numpy as np, tempfile, os
        >>> from PIL import Image
        >>> frames = np.stack([np.full((8, 8, 3), v, np.uint8) for v in (0, 128, 255)])
        >>> with tempfile.TemporaryDirectory() as d:
        ...     with Image.open(write_gif(frames, os.path.join(d, "a.gif"), fps=10)) as im:
        ...         im.n_frames
        3
    """
    f = _enlarge(_frames(frames), min_size)
    centis = max(2, round(100 / _check_fps(fps)))
    images = [Image.fromarray(x) for x in f]
    buf = io.BytesIO()
    options: dict[str, Any] = {"loop": 0} if loop else {}
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=centis * 10, **options)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def require_ffmpeg() -> str:
    """The path of the ffmpeg binary that :func:`write_mp4` uses.

    Raises:
        ConfigError: there is none (``pip install imageio-ffmpeg``).
    """
    try:
        import imageio_ffmpeg
    except ImportError:
        raise ConfigError(f"writing .mp4 needs ffmpeg, but imageio-ffmpeg is not installed: {FFMPEG_HELP}") from None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except (RuntimeError, OSError) as e:
        raise ConfigError(f"writing .mp4 needs ffmpeg, which was not found ({e}): {FFMPEG_HELP}") from None


def write_mp4(frames: np.ndarray, path: str | os.PathLike, *, fps: float = 15.0, min_size: int | None = 256,
              quality: float = 8.0) -> Path:
    """Write an H.264 MP4 (``libx264``, ``yuv420p``, atomically) through ffmpeg.

    Args:
        frames: ``uint8 [T, H, W, C]``, ``C`` = 1 or 3.
        path: the ``.mp4`` file.
        fps: frames per second.
        min_size: frames whose shorter side is smaller are enlarged by a whole factor (nearest
            neighbour) to at least this size; ``None`` keeps the size. An odd width or height
            gets one replicated edge column or row (``yuv420p`` needs even sizes).
        quality: imageio-ffmpeg's 1 (small file) .. 10 (best) scale.

    Returns:
        The path written.

    Raises:
        ConfigError: ffmpeg is not available (``pip install imageio-ffmpeg``), or a bad ``fps``.
        VideoError: ffmpeg failed.

    Example:
        >>> import numpy as np, tempfile, os
        >>> frames = np.zeros((4, 64, 64, 3), np.uint8)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     write_mp4(frames, os.path.join(d, "a.mp4"), fps=4).stat().st_size > 0
        True
    """
    f = _enlarge(_frames(frames), min_size)
    fps = _check_fps(fps)
    require_ffmpeg()
    import imageio_ffmpeg

    _, h, w, _ = f.shape
    if h % 2 or w % 2:
        f = np.pad(f, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        h, w = h + h % 2, w + w % 2
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.mp4", dir=path.parent)
    os.close(fd)
    try:
        writer = imageio_ffmpeg.write_frames(
            tmp, (w, h), fps=fps, codec="libx264", pix_fmt_in="rgb24", pix_fmt_out="yuv420p", quality=quality,
            macro_block_size=2, ffmpeg_log_level="error", output_params=["-f", "mp4", "-movflags", "+faststart"],
        )
        try:
            writer.send(None)
            for frame in f:
                writer.send(np.ascontiguousarray(frame))
        finally:
            writer.close()
        if os.path.getsize(tmp) == 0:
            raise VideoError(f"{path}: ffmpeg wrote an empty file")
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        Path(tmp).unlink(missing_ok=True)
        raise VideoError(f"{path}: ffmpeg could not write the video: {str(e).strip().splitlines()[0] if str(e).strip() else e!r}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float = 15.0, **options: Any) -> Path:
    """Write ``frames`` as a GIF or an MP4, chosen by the suffix of ``path``.

    ``options`` go to :func:`write_gif` or :func:`write_mp4`.

    Raises:
        ConfigError: a suffix other than ``.gif`` or ``.mp4``.

    Example:
        >>> import numpy as np, tempfile, os
        >>> with tempfile.TemporaryDirectory() as d:
        ...     write_video(np.zeros((2, 8, 8, 3), np.uint8), os.path.join(d, "v.gif")).suffix
        '.gif'
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".gif":
        return write_gif(frames, path, fps=fps, **options)
    if suffix == ".mp4":
        return write_mp4(frames, path, fps=fps, **options)
    raise ConfigError(f"cannot tell the video format of {path}: name it .gif or .mp4")
