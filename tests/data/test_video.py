"""GIF / MP4 writing: readable back with the right frames, atomic, gray frames, a clear missing-ffmpeg error."""

from __future__ import annotations

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from latentshop.data.video import (
    VideoError,
    contact_sheet,
    evenly_spaced,
    write_gif,
    write_mp4,
    write_video,
)
from latentshop.errors import ConfigError, ShapeError


def _frames(t=6, h=16, w=16, c=3):
    # Flat frames of distinct gray levels: exact through the GIF palette, never merged as duplicates.
    levels = np.linspace(0, 250, t).astype(np.uint8)
    return np.stack([np.full((h, w, c), v, np.uint8) for v in levels])


def _mp4_frames(path):
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    frames = [np.frombuffer(f, np.uint8).reshape(meta["size"][1], meta["size"][0], 3) for f in reader]
    return meta, frames


def test_gif_round_trip_and_no_temp_files(tmp_path):
    frames = _frames()
    out = write_gif(frames, tmp_path / "a.gif", fps=10)
    assert out == tmp_path / "a.gif" and sorted(p.name for p in tmp_path.iterdir()) == ["a.gif"]
    with Image.open(out) as im:
        assert im.n_frames == 6 and im.size == (16, 16)
        assert im.info["duration"] == 100 and im.info["loop"] == 0
    back = iio.imread(out, index=None)
    assert back.shape[:3] == (6, 16, 16)
    assert np.array_equal(back[..., :3], frames)


def test_gif_gray_frames_and_min_size(tmp_path):
    frames = _frames(t=3, h=8, w=8, c=1)
    write_gif(frames, tmp_path / "g.gif", fps=5, min_size=32)
    back = iio.imread(tmp_path / "g.gif", index=None)
    assert back.shape[:3] == (3, 32, 32) and back.shape[3] in (3, 4)
    assert np.array_equal(back[1, ..., 0], np.full((32, 32), frames[1, 0, 0, 0]))


def test_mp4_round_trip_even_sizes_and_upscaling(tmp_path):
    frames = _frames(t=5, h=64, w=64)
    out = write_mp4(frames, tmp_path / "v.mp4", fps=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
    meta, back = _mp4_frames(out)
    assert tuple(meta["size"]) == (256, 256) and len(back) == 5  # 64 px enlarged 4x for players
    assert abs(int(back[2].astype(int).mean()) - int(frames[2].mean())) <= 3
    # Odd sizes get an edge row / column; gray frames become RGB.
    write_mp4(_frames(t=3, h=21, w=33, c=1), tmp_path / "odd.mp4", fps=5, min_size=None)
    meta, back = _mp4_frames(tmp_path / "odd.mp4")
    assert tuple(meta["size"]) == (34, 22) and len(back) == 3


def test_mp4_failure_leaves_no_temp_file_and_keeps_the_old_video(tmp_path, monkeypatch):
    out = tmp_path / "v.mp4"
    out.write_bytes(b"old video")

    def broken(*args, **kwargs):
        raise OSError("encoder exploded")

    monkeypatch.setattr(imageio_ffmpeg, "write_frames", broken)
    with pytest.raises(VideoError, match="encoder exploded"):
        write_mp4(_frames(t=2), out, fps=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"] and out.read_bytes() == b"old video"


def test_missing_ffmpeg_is_a_clear_config_error(tmp_path, monkeypatch):
    def missing():
        raise RuntimeError("No ffmpeg exe could be found.")

    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", missing)
    with pytest.raises(ConfigError, match="pip install imageio-ffmpeg"):
        write_mp4(_frames(t=2), tmp_path / "v.mp4", fps=5)
    assert list(tmp_path.iterdir()) == []
    write_video(_frames(t=2), tmp_path / "v.gif", 5)  # GIF needs no ffmpeg
    assert (tmp_path / "v.gif").is_file()


def test_write_video_chooses_by_suffix(tmp_path):
    assert write_video(_frames(t=2), tmp_path / "a.GIF", 5).is_file()
    assert write_video(_frames(t=2, h=32, w=32), tmp_path / "b.mp4", 5, min_size=None).is_file()
    with pytest.raises(ConfigError, match=".gif or .mp4"):
        write_video(_frames(t=2), tmp_path / "c.avi", 5)


@pytest.mark.parametrize("bad", [np.zeros((0, 8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8),
                                 np.zeros((2, 8, 8, 2), np.uint8), np.zeros((2, 8, 8, 3), np.float32)])
def test_bad_frames_are_refused(tmp_path, bad):
    with pytest.raises(ShapeError):
        write_gif(bad, tmp_path / "a.gif")
    with pytest.raises(ShapeError):
        write_mp4(bad, tmp_path / "a.mp4")
    assert list(tmp_path.iterdir()) == []


def test_bad_fps_is_refused(tmp_path):
    for fps in (0, -1, float("nan")):
        with pytest.raises(ConfigError, match="fps"):
            write_gif(_frames(t=2), tmp_path / "a.gif", fps=fps)


def test_contact_sheet_and_even_spacing():
    frames = _frames(t=30, h=8, w=8)
    assert evenly_spaced(30, 8) == [0, 4, 8, 12, 17, 21, 25, 29]
    assert evenly_spaced(3, 8) == [0, 1, 2]
    sheet = contact_sheet(frames, cols=8, count=8)
    assert sheet.shape == (8, 64, 3)
    assert np.array_equal(sheet[:, 8:16], frames[4]) and np.array_equal(sheet[:, -8:], frames[29])
    assert contact_sheet(frames[:3], cols=8).shape == (8, 24, 3)  # fewer frames than columns: one short row
    assert contact_sheet(_frames(t=5, h=4, w=4, c=1), cols=2).shape == (12, 8, 3)
