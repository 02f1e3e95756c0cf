"""Builders for tiny datasets in each real on-disk layout (DFEW, FERV39k, CK+, DFER-CLIP lists,
manifest CSV), used by the tests/test_data_*.py files. Frames are small but real image files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_frames(directory: Path, n: int, size: int = 8, suffix: str = ".jpg", start: int = 1,
                 name: str = "{:05d}") -> Path:
    """n frames whose brightness encodes the frame number (frame i has value 10 * i)."""
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        value = min(255, 10 * i)
        Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(directory / (name.format(start + i) + suffix))
    return directory


def write_dfew(root: Path, train: dict[int, int], test: dict[int, int], fold: int = 1, frames: int = 4,
               header: bool = True, layout: str = "clip_224x224", labels: str = "{split}(single-labeled)",
               frame_name: str = "{:05d}") -> Path:
    """DFEW layout: split CSVs (video_name,label 1-based) in EmoLabel_DataSplit/<labels>/ and
    frames in Clip/<layout>/<5-digit id>/ (the 16-frame copies name them 1.jpg ... 16.jpg:
    frame_name="{}")."""
    for split, rows in (("train", train), ("test", test)):
        d = root / "EmoLabel_DataSplit" / labels.format(split=split)
        d.mkdir(parents=True, exist_ok=True)
        lines = (["video_name,label"] if header else []) + [f"{vid},{label}" for vid, label in rows.items()]
        (d / f"set_{fold}.csv").write_text("\n".join(lines) + "\n")
        for vid in rows:
            write_frames(root / "Clip" / layout / f"{vid:05d}", frames, name=frame_name)
    return root


def write_ckplus_sequence(root: Path, subject: str, seq: str, frames: int = 3, code: float | str | None = None) -> Path:
    """One CK+ sequence: cohn-kanade-images/Sxxx/nnn/Sxxx_nnn_0000000k.png and, when `code` is
    given, Emotion/Sxxx/nnn/Sxxx_nnn_<last>_emotion.txt in CK+'s float format."""
    seq_dir = root / "cohn-kanade-images" / subject / seq
    write_frames(seq_dir, frames, suffix=".png", name=f"{subject}_{seq}_" + "{:08d}")
    if code is not None:
        label_dir = root / "Emotion" / subject / seq
        label_dir.mkdir(parents=True, exist_ok=True)
        text = f"   {code:.7e}\n" if isinstance(code, (int, float)) else code
        (label_dir / f"{subject}_{seq}_{frames:08d}_emotion.txt").write_text(text)
    return seq_dir


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root with (size, mtime_ns): equal snapshots mean nothing was written."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}
