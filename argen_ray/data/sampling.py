"""Which frames of a clip to read.

- `uniform_indices`: k frames spread evenly from the first to the last frame, the fixed-length
  clips the generation metrics compare (the paper samples 16 frames per video).
- `segment_indices`: DFER-CLIP's recognition sampling: split the clip into equal segments and
  take one frame per segment, at a random offset when training and at the segment middle when
  testing; clips shorter than the segment count are padded by repeating their last frame.
"""
from __future__ import annotations

import numpy as np

from argen_ray.errors import ArgenError


class SamplingError(ArgenError, ValueError):
    """Frame sampling was asked for an empty clip or a non-positive frame count."""


def _check(num_frames: int, k: int, what: str) -> None:
    if int(num_frames) < 1:
        raise SamplingError(f"cannot sample frames from a clip of {num_frames} frames (empty clip)")
    if int(k) < 1:
        raise SamplingError(f"{what} must be at least 1, got {k}")


def _padded(num_frames: int, k: int) -> np.ndarray:
    return np.pad(np.arange(num_frames), (0, k - num_frames), mode="edge")


def uniform_indices(num_frames: int, k: int = 16) -> np.ndarray:
    """k indices evenly spaced over [0, num_frames - 1], both ends included.

    Short clips repeat frames (each index is the nearest frame to its even position).
    """
    _check(num_frames, k, "k")
    return np.rint(np.linspace(0, num_frames - 1, k)).astype(int)


def segment_indices(num_frames: int, num_segments: int = 16, train: bool = False,
                    rng: np.random.Generator | int | None = None) -> np.ndarray:
    """One frame index per segment, DFER-CLIP style (see the module docstring).

    Train: segments of `num_frames // num_segments` frames, a random frame in each.
    Test: segments of `num_frames / num_segments` frames, the middle frame of each.
    Clips with fewer frames than segments (train), or no more (test), are padded.
    """
    _check(num_frames, num_segments, "num_segments")
    n, s = int(num_frames), int(num_segments)
    if train:
        length = n // s
        if length == 0:
            return _padded(n, s)
        rng = np.random.default_rng(rng)
        return np.arange(s) * length + rng.integers(0, length, size=s)
    if n <= s:
        return _padded(n, s)
    tick = n / s
    return (tick / 2.0 + tick * np.arange(s)).astype(int)
