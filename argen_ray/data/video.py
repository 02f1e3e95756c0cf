"""Video I/O: read mp4/avi/frame directories as uint8 RGB arrays; write mp4 and GIF atomically.

Frame directories are read in natural name order ("2.jpg" before "10.jpg"; zero-padded names
such as DFEW's and CK+'s sort the same either way).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from argen_ray.errors import ArgenError
from argen_ray.io import atomic_path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".gif"}


class VideoReadError(ArgenError, ValueError):
    """A clip cannot be read; the message names the file and why.

    `reason` is a short category for dataset summaries: "missing file", "empty clip" or
    "unreadable file".
    """

    def __init__(self, message: str, reason: str = "unreadable file"):
        super().__init__(message)
        self.reason = reason


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_frame_files(directory: str | os.PathLike) -> list[Path]:
    """Image files of a frame directory in natural name order (hidden files ignored)."""
    d = Path(directory)
    # scandir's is_file() uses the directory entry's type: no stat per frame (DFEW has ~1M frames).
    with os.scandir(d) as entries:
        names = [e.name for e in entries
                 if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES and not e.name.startswith(".")
                 and e.is_file()]
    return [d / name for name in sorted(names, key=_natural_key)]


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image file as HxWx3 uint8 RGB."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise VideoReadError(f"{path}: does not exist", reason="missing file") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise VideoReadError(f"{path}: not a readable image ({exc})") from None


def _check_indices(indices, count: int, src: Path) -> np.ndarray:
    idx = np.asarray(indices, dtype=int).reshape(-1)
    bad = idx[(idx < 0) | (idx >= count)]
    if bad.size:
        raise VideoReadError(f"{src}: frame index {int(bad[0])} is outside the clip's {count} frames")
    return idx


def _existing_frames(source: str | os.PathLike) -> tuple[Path, list[Path] | None]:
    """The clip's path and, for a frame directory, its frame files; missing or empty -> error."""
    src = Path(source)
    if not src.exists():
        raise VideoReadError(f"{src}: does not exist", reason="missing file")
    if not src.is_dir():
        return src, None
    files = list_frame_files(src)
    if not files:
        raise VideoReadError(f"{src}: frame directory holds no image files", reason="empty clip")
    return src, files


def read_video(source: str | os.PathLike, indices: list[int] | np.ndarray | None = None) -> np.ndarray:
    """Read a video file or a directory of frame images as an FxHxWx3 uint8 RGB array.

    `indices` selects frames by position (repeats allowed, e.g. padded short clips); only the
    selected frames are decoded from a frame directory, and only they are kept from a video.
    """
    src, files = _existing_frames(source)
    if files is not None:
        chosen = files if indices is None else [files[i] for i in _check_indices(indices, len(files), src)]
        decoded: dict[Path, np.ndarray] = {}  # padded clips repeat frames: decode each once
        for f in chosen:
            if f not in decoded:
                decoded[f] = read_image(f)
        frames = [decoded[f] for f in chosen]
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise VideoReadError(f"{src}: frames differ in size {sorted(shapes)}")
        return np.stack(frames)
    _check_video_file(src)
    wanted = None if indices is None else np.asarray(indices, dtype=int).reshape(-1)
    try:
        kept, count = _decode(src, None if wanted is None else set(wanted.tolist()))
    except VideoReadError:
        raise
    except Exception as exc:  # imageio/ffmpeg raise many types for corrupt files
        raise VideoReadError(f"{src}: cannot decode video ({_short(exc)})") from None
    if count == 0:
        raise VideoReadError(f"{src}: video has no frames", reason="empty clip")
    if wanted is None:
        return np.stack([kept[i] for i in range(count)])
    return np.stack([kept[i] for i in _check_indices(wanted, count, src)])


def read_frames_skipping_bad(source: str | os.PathLike, indices: list[int] | np.ndarray
                             ) -> tuple[np.ndarray, dict[int, str]]:
    """Like `read_video`, but frames that cannot be decoded are left out and reported instead
    of failing the clip: returns (the decodable frames in `indices` order, {index: why} for the
    others). A clip with no decodable requested frame, or a missing one, still raises."""
    src, files = _existing_frames(source)
    idx = _check_indices(indices, len(files), src) if files is not None else np.asarray(indices, dtype=int).reshape(-1)
    bad: dict[int, str] = {}
    if files is not None:
        decoded: dict[int, np.ndarray] = {}
        for i in dict.fromkeys(idx.tolist()):
            try:
                decoded[i] = read_image(files[i])
            except VideoReadError as exc:
                bad[i] = str(exc)
    else:
        _check_video_file(src)
        decoded = {}
        try:
            decoded, count = _decode(src, set(idx.tolist()))
        except VideoReadError:
            raise
        except Exception as exc:  # a stream that breaks part-way: keep what decoded before the break
            decoded = getattr(exc, "partial_frames", {})
            reason = f"cannot decode video ({_short(exc)})"
            count = None
        else:
            reason = None
        if count is not None:
            _check_indices(idx, count, src)
        for i in idx.tolist():
            if i not in decoded:
                bad[i] = reason or f"{src}: frame {i} not decoded"
    good = [decoded[i] for i in idx.tolist() if i in decoded]
    if not good:
        raise VideoReadError(f"{src}: none of the {len(idx)} requested frames can be decoded "
                             f"(first: {next(iter(bad.values()), '?')})")
    shapes = {f.shape for f in good}
    if len(shapes) > 1:
        raise VideoReadError(f"{src}: frames differ in size {sorted(shapes)}")
    return np.stack(good), bad


def _check_video_file(src: Path) -> None:
    if src.suffix.lower() not in VIDEO_SUFFIXES:
        raise VideoReadError(f"{src}: unknown video type {src.suffix!r} (expected one of {sorted(VIDEO_SUFFIXES)})")
    if src.stat().st_size == 0:
        raise VideoReadError(f"{src}: file is empty (0 bytes)", reason="empty clip")


def _decode(src: Path, wanted: set[int] | None) -> tuple[dict[int, np.ndarray], int]:
    """Stream the frames of a video; keep those in `wanted` (all when None). Returns (kept, count)."""
    import imageio.v2 as iio2

    if src.suffix.lower() == ".gif":
        reader = iio2.get_reader(src, format="GIF")
    else:
        reader = iio2.get_reader(src, format="FFMPEG")
    kept: dict[int, np.ndarray] = {}
    count = 0
    try:
        for i, frame in enumerate(reader):
            count = i + 1
            if wanted is None or i in wanted:
                kept[i] = _to_rgb(np.asarray(frame))
    except Exception as exc:  # corrupt stream part-way: callers that skip bad frames keep these
        exc.partial_frames = kept
        raise
    finally:
        reader.close()
    return kept, count


def _short(exc: Exception) -> str:
    """First and last line of an ffmpeg error (its full stderr banner is noise to a user)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if len(lines) > 2:
        lines = [lines[0], lines[-1]]
    return f"{type(exc).__name__}: " + " ... ".join(lines)


def _to_rgb(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=-1)
    return np.ascontiguousarray(frame[..., :3]).astype(np.uint8)


def probe_clip(source: str | os.PathLike, full: bool = False) -> int | None:
    """Check that a clip is usable and return its frame count when cheap to know.

    Quick mode (the default, for datasets of ten thousand clips): a frame directory must hold
    image files and its first one must open; a video file must exist with a video suffix and
    be non-empty (its frame count is then unknown: None). `full=True` decodes every frame.
    Raises `VideoReadError` whose `reason` says missing file / empty clip / unreadable file.
    """
    src, files = _existing_frames(source)
    if files is not None:
        if full:
            read_video(src)
        else:
            _open_header(files[0])
        return len(files)
    _check_video_file(src)
    return len(read_video(src)) if full else None


def _open_header(path: Path) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.size  # noqa: B018 - the header parse is the check
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise VideoReadError(f"{path}: not a readable image ({exc})") from None


def count_frames(source: str | os.PathLike) -> int:
    """Number of frames of a clip (decodes a video file once; lists a frame directory)."""
    src = Path(source)
    known = probe_clip(src)
    if known is not None:
        return known
    try:
        _, count = _decode(src, wanted=set())
    except Exception as exc:  # imageio/ffmpeg raise many types for corrupt files
        raise VideoReadError(f"{src}: cannot decode video ({_short(exc)})") from None
    if count == 0:
        raise VideoReadError(f"{src}: video has no frames", reason="empty clip")
    return count


def _check_frames(frames: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim == 3:  # F x H x W grayscale
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] == 0:
        raise ValueError(f"{what}: frames must be a non-empty F x H x W x 3 array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


def source_signature(source: str | os.PathLike) -> str:
    """Path plus size and mtime of a clip's file(s) (a video file or a frame folder): what makes an
    on-disk cache entry computed from the clip stale."""
    source = Path(source)
    try:
        if source.is_dir():
            stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(source.iterdir()) if p.is_file()]
        else:
            st = source.stat()
            stats = [(source.name, st.st_size, st.st_mtime_ns)]
    except OSError as exc:
        raise VideoReadError(f"clip {source}: cannot read ({exc.strerror or exc})") from None
    return f"{source.resolve()}|{stats}"


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int = 8, lossless: bool = False) -> Path:
    """Write frames as an H.264 mp4 (imageio-ffmpeg), atomically. Odd sizes are padded to even.
    `lossless`: libx264rgb at qp 0 in RGB, which reads back bit-exact (the default, libx264 crf 10
    in yuv420p, smooths fine noise and adds its own; such files play in browsers, lossless ones
    may not)."""
    import imageio.v2 as iio2

    arr = _check_frames(frames, str(path))
    pad_h, pad_w = arr.shape[1] % 2, arr.shape[2] % 2
    if pad_h or pad_w:
        arr = np.pad(arr, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    with atomic_path(path, suffix=".mp4") as tmp:
        codec = {"codec": "libx264rgb", "pixelformat": "rgb24", "output_params": ["-qp", "0"]} if lossless else \
            {"codec": "libx264", "quality": 8, "pixelformat": "yuv420p"}
        writer = iio2.get_writer(tmp, format="FFMPEG", fps=fps, macro_block_size=1, ffmpeg_log_level="error", **codec)
        try:
            for f in arr:
                writer.append_data(f)
        finally:
            writer.close()
    return Path(path)


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: int = 8) -> Path:
    """Write a looping GIF preview, atomically.

    Pillow merges identical consecutive frames into one longer frame, so a still stretch of a
    clip reads back as fewer frames: GIFs are previews, mp4 is the clip.
    """
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
