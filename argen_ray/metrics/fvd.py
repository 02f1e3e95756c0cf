"""Fréchet Video Distance and its grouped forms sFVD (by subject) and tFVD (by emotion), DESIGN 2.4.

    FD = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½)

on I3D Kinetics-400 logits (400-d, pre-softmax) of 16 frames resized to 224 and scaled to
[-1, 1] (`argen_ray.metrics.i3d`).

Numerics: Σ₁Σ₂ is not symmetric, and a general matrix square root (scipy's `sqrtm`) returns
small imaginary parts and fails on the near-singular covariances of a few hundred clips in
400 dimensions. Since Tr((Σ₁Σ₂)^½) = Tr((Σ₁^½ Σ₂ Σ₁^½)^½) and the right-hand matrix is
symmetric positive semi-definite, the trace is the sum of square roots of its eigenvalues —
computed with `eigh` in float64, eigenvalues at rounding level (or negative) set to zero. No imaginary
part can arise and singular covariances need no jitter.

Small samples: a covariance needs at least 2 clips; with fewer clips than feature dimensions
it is rank-deficient and FVD is biased upwards, so only compare values computed at equal
sample sizes. Grouped FVD skips groups below `min_group_size` and says why.

FVD, sFVD and tFVD of the same clips share one feature pass:

    feats_real, feats_gen = i3d_features(real_videos), i3d_features(generated_videos)
    fvd_value = frechet_distance(feats_real, feats_gen)
    sfvd = grouped_frechet_distance(feats_real, feats_gen, real_subjects, gen_subjects)
    tfvd = grouped_frechet_distance(feats_real, feats_gen, real_emotions, gen_emotions)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable, Iterable, Sequence

import numpy as np

from argen_ray.errors import ArgenError

MIN_SAMPLES = 2
I3D_CACHE_VERSION = 1


class MetricInputError(ArgenError, ValueError):
    """Inputs of a generation metric are unusable (shape, dtype, too few samples)."""


def _check_features(feats, name: str) -> np.ndarray:
    arr = np.asarray(feats, dtype=np.float64)
    if arr.ndim != 2:
        raise MetricInputError(f"{name}: features must be a 2-D array (clips x dims), got shape {arr.shape}")
    if arr.shape[0] < MIN_SAMPLES:
        raise MetricInputError(f"{name}: {arr.shape[0]} clip(s); a covariance needs at least {MIN_SAMPLES}")
    if not np.isfinite(arr).all():
        raise MetricInputError(f"{name}: features contain NaN or infinite values")
    return arr


def gaussian_stats(feats) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of a clips x dims feature array."""
    arr = _check_features(feats, "features")
    return arr.mean(axis=0), np.cov(arr, rowvar=False)


def _psd_eigh(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of a symmetric PSD matrix; eigenvalues at rounding level are zeroed
    (their square roots, ~1e-7 each over hundreds of null directions, would add up to noise)."""
    w, v = np.linalg.eigh((matrix + matrix.T) / 2.0)
    tol = max(float(w.max(initial=0.0)), 0.0) * len(w) * np.finfo(np.float64).eps
    return np.where(w > tol, w, 0.0), v


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    w, v = _psd_eigh(matrix)
    return (v * np.sqrt(w)) @ v.T


def frechet_distance_from_stats(mu_a, sigma_a, mu_b, sigma_b) -> float:
    """Fréchet distance between Gaussians N(mu_a, sigma_a) and N(mu_b, sigma_b)."""
    mu_a, mu_b = np.atleast_1d(np.asarray(mu_a, np.float64)), np.atleast_1d(np.asarray(mu_b, np.float64))
    sigma_a, sigma_b = np.atleast_2d(np.asarray(sigma_a, np.float64)), np.atleast_2d(np.asarray(sigma_b, np.float64))
    if mu_a.shape != mu_b.shape or sigma_a.shape != sigma_b.shape or sigma_a.shape != mu_a.shape * 2:
        raise MetricInputError(f"Gaussian statistics do not match: means {mu_a.shape} vs {mu_b.shape}, "
                               f"covariances {sigma_a.shape} vs {sigma_b.shape}")
    root_a = _psd_sqrt(sigma_a)
    middle = root_a @ sigma_b @ root_a
    trace_sqrt = float(np.sqrt(_psd_eigh(middle)[0]).sum())
    diff = mu_a - mu_b
    value = float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * trace_sqrt)
    return max(value, 0.0)  # rounding can leave -1e-12 for identical sets


def frechet_distance(feats_a, feats_b) -> float:
    """Fréchet distance between two feature sets (clips x dims each, same dims)."""
    a, b = _check_features(feats_a, "feats_a"), _check_features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise MetricInputError(f"feature sets differ in dimension: {a.shape[1]} vs {b.shape[1]}")
    return frechet_distance_from_stats(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


# --- videos -> I3D features ------------------------------------------------------------------

Video = np.ndarray | str | os.PathLike


def _clip_input(video: Video, num_frames: int):
    from argen_ray.data.sampling import uniform_indices
    from argen_ray.data.video import count_frames, read_video
    from argen_ray.metrics.i3d import i3d_input

    if isinstance(video, (str, os.PathLike)):
        frames = read_video(video, uniform_indices(count_frames(video), num_frames))
        where = str(video)
    else:
        frames, where = video, "video array"
    try:
        return i3d_input(frames, num_frames)
    except ValueError as exc:
        raise MetricInputError(f"{where}: {exc}") from None


def _cache_file(cache_dir: Path, video, num_frames: int) -> Path | None:
    """Where a video path's features live in `cache_dir` (None for arrays: nothing to key them by)."""
    import hashlib

    from argen_ray.data.video import VideoReadError, source_signature

    if not isinstance(video, (str, os.PathLike)):
        return None
    try:
        signature = source_signature(video)
    except VideoReadError as exc:
        raise MetricInputError(str(exc)) from None
    key = f"i3d-v{I3D_CACHE_VERSION}|{num_frames}|{signature}"
    return cache_dir / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.npy"


def i3d_features(videos: Iterable[Video], model=None, batch_size: int = 8, num_frames: int = 16,
                 progress: bool = True, cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """I3D logits (N x 400) of videos given as F x H x W x 3 uint8 arrays or video paths.

    With `cache_dir`, each video path's logits are kept there (keyed by the clip's path, size and
    modification time, so a changed clip is recomputed) and read back instead of recomputed: the
    generation stage's validity FVD and the metrics stage score many of the same clips.
    """
    import torch
    from tqdm.auto import tqdm

    from argen_ray.io import atomic_path
    from argen_ray.metrics.i3d import load_i3d

    videos = list(videos)
    if not videos:
        raise MetricInputError("no videos given")
    files = [None] * len(videos) if cache_dir is None else [_cache_file(Path(cache_dir), v, num_frames) for v in videos]
    out: list[np.ndarray | None] = [np.load(f) if f is not None and f.is_file() else None for f in files]
    # A path given twice (e.g. a clip in both sets) is computed once.
    first: dict = {}
    for i, row in enumerate(out):
        if row is None:
            first.setdefault(files[i] if files[i] is not None else i, i)
    todo = sorted(first.values())
    if todo:
        model = model if model is not None else load_i3d()
        device = next(model.parameters()).device
    with torch.inference_mode(), tqdm(total=len(todo), desc="I3D features", unit="clip",
                                      disable=None if progress and todo else True, leave=False) as bar:
        for start in range(0, len(todo), batch_size):
            index = todo[start:start + batch_size]
            batch = torch.stack([_clip_input(videos[i], num_frames) for i in index])
            for i, row in zip(index, model(batch.to(device)).double().cpu().numpy()):
                out[i] = row
                if files[i] is not None:
                    with atomic_path(files[i], suffix=".npy") as tmp, open(tmp, "wb") as fh:
                        np.save(fh, row)
            bar.update(len(index))
    return np.stack([row if row is not None else out[first[files[i]]] for i, row in enumerate(out)])


def fvd(videos_a: Sequence[Video], videos_b: Sequence[Video], model=None, **feature_options) -> float:
    """FVD between two sets of videos (arrays or paths); each set needs at least 2 clips."""
    for name, vids in (("videos_a", videos_a), ("videos_b", videos_b)):
        if len(vids) < MIN_SAMPLES:
            raise MetricInputError(f"{name}: {len(vids)} clip(s); FVD needs at least {MIN_SAMPLES} per set")
    feats_a = i3d_features(videos_a, model=model, **feature_options)
    feats_b = i3d_features(videos_b, model=model, **feature_options)
    return frechet_distance(feats_a, feats_b)


# --- grouped FVD (sFVD, tFVD) ----------------------------------------------------------------

@dataclass
class GroupedFVD:
    """Mean of per-group Fréchet distances; groups too small to score are listed with the reason."""

    value: float | None                      # mean over scored groups; None when none could be scored
    per_group: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)   # group -> (clips in a, clips in b)
    skipped: dict[str, str] = field(default_factory=dict)             # group -> why it was not scored
    min_group_size: int = MIN_SAMPLES

    def to_dict(self) -> dict:
        return {"value": self.value, "per_group": self.per_group,
                "sizes": {g: list(s) for g, s in self.sizes.items()}, "skipped": self.skipped,
                "min_group_size": self.min_group_size}


def grouped_frechet_distance(feats_a, feats_b, groups_a: Sequence[Hashable], groups_b: Sequence[Hashable],
                             min_group_size: int = MIN_SAMPLES) -> GroupedFVD:
    """Per-group Fréchet distances and their mean, on precomputed features."""
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if len(groups_a) != len(a) or len(groups_b) != len(b):
        raise MetricInputError(f"group labels do not match the clips: {len(groups_a)} labels for {len(a)} "
                               f"clips in a, {len(groups_b)} labels for {len(b)} clips in b")
    if min_group_size < MIN_SAMPLES:
        raise MetricInputError(f"min_group_size must be at least {MIN_SAMPLES}, got {min_group_size}")
    keys_a, keys_b = np.array([str(g) for g in groups_a]), np.array([str(g) for g in groups_b])
    result = GroupedFVD(value=None, min_group_size=min_group_size)
    for group in sorted(set(keys_a) | set(keys_b)):
        in_a, in_b = a[keys_a == group], b[keys_b == group]
        result.sizes[group] = (len(in_a), len(in_b))
        if min(len(in_a), len(in_b)) < min_group_size:
            result.skipped[group] = (f"too small: {len(in_a)} clip(s) in a, {len(in_b)} in b "
                                     f"(needs {min_group_size} on each side)")
            continue
        result.per_group[group] = frechet_distance(in_a, in_b)
    if result.per_group:
        result.value = float(np.mean(list(result.per_group.values())))
    return result


def grouped_fvd(videos_a: Sequence[Video], videos_b: Sequence[Video], groups_a: Sequence[Hashable],
                groups_b: Sequence[Hashable], min_group_size: int = MIN_SAMPLES, model=None,
                **feature_options) -> GroupedFVD:
    """sFVD (groups = subjects) or tFVD (groups = emotions): the mean of per-group FVDs."""
    if len(groups_a) != len(videos_a) or len(groups_b) != len(videos_b):
        raise MetricInputError(f"group labels do not match the videos: {len(groups_a)} for {len(videos_a)} "
                               f"videos in a, {len(groups_b)} for {len(videos_b)} in b")
    feats_a = i3d_features(videos_a, model=model, **feature_options)
    feats_b = i3d_features(videos_b, model=model, **feature_options)
    return grouped_frechet_distance(feats_a, feats_b, groups_a, groups_b, min_group_size)
