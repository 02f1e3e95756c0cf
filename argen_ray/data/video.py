"""Video I/O: read mp4/avi/frame directories as uint8 RGB arrays; write mp4 and GIF atomically."""
from __future__ import annotations

from argen_ray.errors import ArgenError

import os
from pathlib import Path

import numpy as np

from argen_ray.io import atomic_path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".gif"}


class VideoReadError(ArgenError, ValueError):
    """A clip cannot be read; the message names the file and why."""


def list_frame_files(directory: str | os.PathLike) -> list[Path]:
    d = Path(directory)
    return sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image file as HxWx3 uint8 RGB."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise VideoReadError(f"{path}: not a readable image ({exc})") from None


def read_video(source: str | os.PathLike, indices: list[int] | np.ndarray | None = None) -> np.ndarray:
    """Read a video file or a directory of frame images as an FxHxWx3 uint8 RGB array.

    `indices` selects frames (by position) without decoding the others for frame directories.
    """
    src = Path(source)
    if not src.exists():
        raise VideoReadError(f"{src}: does not exist")
    if src.is_dir():
        files = list_frame_files(src)
        if not files:
            raise VideoReadError(f"{src}: frame directory holds no image files")
        chosen = files if indices is None else [files[int(i)] for i in indices]
        frames = [read_image(f) for f in chosen]
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise VideoReadError(f"{src}: frames differ in size {sorted(shapes)}")
        return np.stack(frames)
    if src.suffix.lower() not in VIDEO_SUFFIXES:
        raise VideoReadError(f"{src}: unknown video type {src.suffix!r} (expected one of {sorted(VIDEO_SUFFIXES)})")
    try:
        frames = _read_ffmpeg(src)
    except VideoReadError:
        raise
    except Exception as exc:  # imageio raises many types for corrupt files
        raise VideoReadError(f"{src}: cannot decode video ({type(exc).__name__}: {exc})") from None
    if frames.shape[0] == 0:
        raise VideoReadError(f"{src}: video has no frames")
    if indices is not None:
        frames = frames[np.asarray(indices, dtype=int)]
    return frames


def _read_ffmpeg(src: Path) -> np.ndarray:
    import imageio.v2 as iio2

    if src.suffix.lower() == ".gif":
        frames = [np.asarray(f)[..., :3] for f in iio2.mimread(src, memtest=False)]
    else:
        reader = iio2.get_reader(src, format="FFMPEG")
        try:
            frames = [np.asarray(f)[..., :3] for f in reader]
        finally:
            reader.close()
    if not frames:
        raise VideoReadError(f"{src}: video has no frames")
    return np.stack(frames).astype(np.uint8)


def _check_frames(frames: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] == 0:
        raise ValueError(f"{what}: frames must be a non-empty F x H x W x 3 array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int = 8) -> Path:
    """Write frames as an H.264 mp4 (imageio-ffmpeg), atomically. Odd sizes are padded to even."""
    import imageio.v2 as iio2

    arr = _check_frames(frames, str(path))
    pad_h, pad_w = arr.shape[1] % 2, arr.shape[2] % 2
    if pad_h or pad_w:
        arr = np.pad(arr, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    with atomic_path(path, suffix=".mp4") as tmp:
        writer = iio2.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", quality=8,
                                 macro_block_size=1, ffmpeg_log_level="error", pixelformat="yuv420p")
        try:
            for f in arr:
                writer.append_data(f)
        finally:
            writer.close()
    return Path(path)


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: int = 8) -> Path:
    """Write a looping GIF preview, atomically."""
    from PIL import Image

    arr = _check_frames(frames, str(path))
    images = [Image.fromarray(f) for f in arr]
    with atomic_path(path, suffix=".gif") as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=int(1000 / max(fps, 1)), loop=0)
    return Path(path)


def encode_mp4_bytes(frames: np.ndarray, fps: int = 8) -> bytes:
    """Encode frames to mp4 bytes (for HTTP responses)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = write_mp4(Path(d) / "clip.mp4", frames, fps=fps)
        return p.read_bytes()
