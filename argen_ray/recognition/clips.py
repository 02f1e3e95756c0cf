"""Clips as recognition inputs: DFER-CLIP segment sampling, resizing, normalisation; and the
generated clips that make the augmented training set.

Training reads one random frame per segment (and flips half the clips horizontally); testing
reads the middle frame of each segment (`argen_ray.data.sampling.segment_indices`).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset as TorchDataset

from argen_ray.data.labels import LabelError, label_index
from argen_ray.data.records import ClipRecord
from argen_ray.data.sampling import segment_indices
from argen_ray.data.video import VideoReadError, count_frames, read_frames_skipping_bad
from argen_ray.recognition.models import RecognitionError

# ImageNet statistics: the backbones' pretrained weights expect them, random ones do not mind.
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class ClipDataset(TorchDataset):
    """(clip tensor (T, 3, S, S), label) for each record; `train` picks random offsets and flips."""

    def __init__(self, records: list[ClipRecord], num_segments: int, image_size: int, train: bool,
                 seed: int = 0):
        if not records:
            raise RecognitionError("no clips to " + ("train on" if train else "evaluate"))
        self.records = list(records)
        self.num_segments, self.image_size, self.train = num_segments, image_size, train
        self.seed = seed
        self.epoch = 0
        self._frame_counts: dict[int, int] = {}

    def set_epoch(self, epoch: int) -> None:
        """Training offsets depend on (seed, epoch, clip): reproducible, different every epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def _num_frames(self, i: int) -> int:
        rec = self.records[i]
        if rec.num_frames:
            return rec.num_frames
        if i not in self._frame_counts:
            self._frame_counts[i] = count_frames(rec.source)
        return self._frame_counts[i]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        rec = self.records[i]
        rng = np.random.default_rng((self.seed, self.epoch, i)) if self.train else None
        indices = segment_indices(self._num_frames(i), self.num_segments, self.train, rng)
        try:
            frames = read_clip_frames(rec, indices)
        except VideoReadError as exc:
            raise RecognitionError(f"clip {rec.clip_id}: {exc}") from None
        x = preprocess_frames(frames, self.image_size)
        if self.train and rng.random() < 0.5:
            x = x.flip(-1)
        return x, rec.label


def preprocess_frames(frames: np.ndarray, image_size: int) -> torch.Tensor:
    """(F, H, W, 3) uint8 RGB -> (F, 3, S, S) float, resized (antialiased) and ImageNet-normalised."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    return (x - MEAN) / STD


def read_clip_frames(rec: ClipRecord, indices) -> np.ndarray:
    """The clip's frames at `indices`; a frame that cannot be decoded (a corrupt later frame that
    passed the loader's quick check) is replaced by the nearest decodable one of the selection and
    reported as a warning, so one bad frame never aborts training or evaluation."""
    import warnings

    indices = np.asarray(indices, dtype=int).reshape(-1)
    frames, bad = read_frames_skipping_bad(rec.source, indices)
    if not bad:
        return frames
    first_row: dict[int, int] = {}  # decodable clip index -> its row in `frames`
    for row, j in enumerate(j for j in indices.tolist() if j not in bad):
        first_row.setdefault(j, row)
    warnings.warn(f"clip {rec.clip_id}: {len(bad)} undecodable frame(s) {sorted(bad)} replaced by their nearest "
                  f"decodable neighbour ({next(iter(bad.values()))})", RuntimeWarning, stacklevel=2)
    nearest = {j: first_row[min(first_row, key=lambda g: (abs(g - j), g))] for j in bad}
    return np.stack([frames[first_row[j]] if j in first_row else frames[nearest[j]] for j in indices.tolist()])


def read_generated_clips(manifest: str | os.PathLike) -> list[ClipRecord]:
    """Generated clips from `<run_dir>/generated/manifest.jsonl` as training records.

    Each row needs `clip_id`, `video` (or `path`: an mp4, absolute or relative to the manifest's
    folder) and `emotion` (the label it was generated for); `subject`/`identity` is kept when present.
    Rows with `"ok": false` or an `error` are generation failures and are left out.
    """
    from argen_ray.io import read_jsonl

    manifest = Path(manifest)
    if manifest.is_dir():
        manifest = manifest / "manifest.jsonl"
    try:
        rows = read_jsonl(manifest)
    except (FileNotFoundError, ValueError) as exc:
        raise RecognitionError(f"generated clips: {exc}") from None
    records = []
    for line, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise RecognitionError(f"{manifest}:{line}: expected a JSON object, got {type(row).__name__}")
        if row.get("ok") is False or row.get("error"):
            continue
        row = {**row, "video": row.get("video") or row.get("path")}
        missing = [k for k in ("clip_id", "video", "emotion") if row.get(k) in (None, "")]
        if missing:
            raise RecognitionError(f"{manifest}:{line}: row lacks {', '.join(missing)}")
        try:
            label = label_index(row["emotion"])
        except LabelError as exc:
            raise RecognitionError(f"{manifest}:{line}: {exc}") from None
        path = Path(row["video"])
        path = path if path.is_absolute() else manifest.parent / path
        if not path.is_file():
            raise RecognitionError(f"{manifest}:{line}: generated clip {path} does not exist")
        subject = row.get("subject") or row.get("identity")
        records.append(ClipRecord(f"gen/{row['clip_id']}", path, label, subject=None if subject is None else str(subject),
                                  split="train", num_frames=row.get("num_frames")))
    return records
