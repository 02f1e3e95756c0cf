"""Video I/O: mp4/avi/GIF/frame directories read as uint8 RGB; mp4 and GIF written atomically."""
from __future__ import annotations

import imageio.v2 as iio2
import numpy as np
import pytest

from argen_ray.data.video import (VideoReadError, count_frames, probe_clip, read_video, write_gif,
                                  write_mp4)
from data_layouts import write_frames


def _ramp(n=6, h=32, w=48):
    """Frames of flat grey levels 0, 40, 80, ...: survive lossy codecs within a few levels."""
    return np.stack([np.full((h, w, 3), 40 * i, np.uint8) for i in range(n)])


def test_mp4_round_trip_and_selected_frames(tmp_path):
    clip = _ramp()
    path = write_mp4(tmp_path / "out" / "clip.mp4", clip, fps=8)
    back = read_video(path)
    assert back.shape == clip.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - clip.astype(int)).mean() < 4
    picked = read_video(path, indices=[5, 0, 5])
    assert np.abs(picked[:, 0, 0, 0].astype(int) - [200, 0, 200]).max() < 4
    assert count_frames(path) == 6
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["clip.mp4"]  # no temp file left


def test_odd_sizes_and_grayscale_are_written(tmp_path):
    gray = np.zeros((2, 15, 17), np.uint8)
    assert read_video(write_mp4(tmp_path / "g.mp4", gray)).shape == (2, 16, 18, 3)


def test_avi_is_read(tmp_path):
    path = tmp_path / "clip.avi"
    with iio2.get_writer(path, format="FFMPEG", fps=5, codec="mjpeg", quality=10, macro_block_size=1,
                         ffmpeg_log_level="error", pixelformat="yuvj420p") as writer:
        for frame in _ramp(4):
            writer.append_data(frame)
    back = read_video(path)
    assert back.shape == (4, 32, 48, 3)
    assert np.abs(back[:, 0, 0, 0].astype(int) - [0, 40, 80, 120]).max() < 6


def test_gif_preview_round_trip(tmp_path):
    clip = _ramp(5)
    back = read_video(write_gif(tmp_path / "p.gif", clip))
    assert back.shape == clip.shape and np.array_equal(back[:, 0, 0, 0], clip[:, 0, 0, 0])


def test_frame_directory_in_natural_order_with_repeats(tmp_path):
    d = write_frames(tmp_path / "clip", 12, name="{}")  # 1.jpg ... 12.jpg: "10" sorts after "9"
    (d / "notes.txt").write_text("not a frame")
    frames = read_video(d)
    assert frames[:, 0, 0, 0].tolist() == [10 * i for i in range(12)]
    assert read_video(d, indices=[11, 11, 0])[:, 0, 0, 0].tolist() == [110, 110, 0]
    assert probe_clip(d) == count_frames(d) == 12


def _bad_clip(tmp_path, case):
    """A clip path that is unusable in the named way."""
    path = tmp_path / {"missing": "none.mp4", "empty dir": "empty", "zero bytes": "zero.mp4",
                       "corrupt": "junk.mp4", "unknown type": "clip.xyz"}[case]
    if case == "empty dir":
        path.mkdir()
    elif case != "missing":
        path.write_bytes({"zero bytes": b"", "corrupt": b"not a video" * 50, "unknown type": b"x"}[case])
    return path


@pytest.mark.parametrize("case, reason", [
    ("missing", "missing file"), ("empty dir", "empty clip"), ("zero bytes", "empty clip"),
    ("corrupt", "unreadable file"), ("unknown type", "unreadable file")])
def test_unusable_clips_raise_with_a_reason(tmp_path, case, reason):
    path = _bad_clip(tmp_path, case)
    with pytest.raises(VideoReadError) as info:
        read_video(path)
    assert info.value.reason == reason and str(path) in str(info.value)
    assert "ffmpeg version" not in str(info.value)  # the ffmpeg banner is trimmed


def test_out_of_range_index_names_the_clip(tmp_path):
    d = write_frames(tmp_path / "c", 3)
    with pytest.raises(VideoReadError, match="frame index 3 is outside the clip's 3 frames"):
        read_video(d, indices=[0, 3])


def test_full_probe_finds_a_corrupt_frame_the_quick_probe_skips(tmp_path):
    d = write_frames(tmp_path / "c", 3)
    (d / "00002.jpg").write_bytes(b"\xff\xd8 truncated")
    assert probe_clip(d) == 3
    with pytest.raises(VideoReadError, match="00002.jpg: not a readable image"):
        probe_clip(d, full=True)
