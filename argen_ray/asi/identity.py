"""Identity frames (DESIGN 2.1.1): the most neutral clean frame of each neutral training clip.

A frame is kept when its Laplacian variance >= tau_blur, its mean gray brightness lies in
[b_lo, b_hi], its gray std (contrast) >= c_min, min(H, W) >= s_min and a face is detected.
Among kept frames the one with the lowest mean AU intensity `(1/N) sum_i I_i` is chosen, where each
AU's intensity is its reading taken relative to the clip's own least-expressive state for that AU
(its lowest reading over the clip's frames), clipped to 0-5. Landmark readings are only
trustworthy within one person and carry a per-person offset: the relative reading removes it.
AUs that share a measure with an antagonist (AU12/AU15 on the lip corners, AU01/AU04 on the
brows) are clipped at the calibration's zero before that, so antagonists do not cancel and a smile
can never lower a frame's score; AUs without one keep their signed reading, so a movement that
stays below the population zero still counts. Readings are first smoothed by a
running median over each read frame and its neighbours (landmark jitter is frame to frame;
expressions change smoothly). The frame is chosen only among the frames at the calm end of the
clip's main axis of change (`neutral_end`: the first principal axis of the signed readings, the
end with the lower mean level) that lie at or below the clip's median level, so a frame whose
readings are wrong in one or two AUs, or half-way into a frown, does not win frame by frame.
Means are compared only within
a clip or across clips of one subject. Datasets without a neutral class (CK+) give identities
from sequence onsets: `ClipRecord.neutral_onset` limits the search to a clip's first frames.
Every rejected frame and clip is recorded with its reasons.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from argen_ray.ard.rewards import gray_frames, laplacian_variance
from argen_ray.asi.au import AUEstimator, AUReading
from argen_ray.config.asi import IdentityConfig
from argen_ray.data.records import ClipRecord
from argen_ray.data.sampling import uniform_indices
from argen_ray.data.video import VideoReadError, count_frames, read_frames_skipping_bad
from argen_ray.faces import haar_faces


@dataclass
class IdentityFrame:
    """The chosen frame of one clip."""

    identity_id: str
    clip_id: str
    subject: str | None
    frame_index: int                 # position in the clip
    image: np.ndarray = field(repr=False)
    mean_au: float                   # mean AU intensity above the clip's least-expressive state
    clip_median_mean_au: float       # median of that over the clip's read frames, for comparison
    resting_mean_au: float = float("nan")  # mean clipped reading of the chosen frame (same-person comparisons)
    aus: dict[str, float] = field(default_factory=dict)  # the chosen frame's readings (0-5)


@dataclass
class Rejection:
    """A frame (frame_index set) or a whole clip (frame_index None) left out, and why."""

    clip_id: str
    frame_index: int | None
    reasons: list[str]

    def as_dict(self) -> dict:
        return {"clip_id": self.clip_id, "frame_index": self.frame_index, "reasons": self.reasons}


@dataclass
class IdentitySelection:
    chosen: list[IdentityFrame] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def reason_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for rej in self.rejections:
            for reason in rej.reasons:
                key = reason.split(" (")[0]
                counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def frame_rejections(frames: np.ndarray, cfg: IdentityConfig) -> list[list[str]]:
    """Per frame, the quality checks it fails (empty list: usable)."""
    gray = gray_frames(frames)
    lap = laplacian_variance(gray)
    brightness = gray.reshape(len(gray), -1).mean(axis=1)
    contrast = gray.reshape(len(gray), -1).std(axis=1)
    short_side = min(frames.shape[1:3])
    out = []
    for i in range(len(frames)):
        reasons = []
        if short_side < cfg.size_min:
            reasons.append(f"too small (min side {short_side} < {cfg.size_min})")
        if lap[i] < cfg.blur_min:
            reasons.append(f"blurred (Laplacian variance {lap[i]:.1f} < {cfg.blur_min})")
        if not cfg.brightness_lo <= brightness[i] <= cfg.brightness_hi:
            reasons.append(f"brightness {brightness[i]:.1f} outside [{cfg.brightness_lo}, {cfg.brightness_hi}]")
        if contrast[i] < cfg.contrast_min:
            reasons.append(f"low contrast (gray std {contrast[i]:.1f} < {cfg.contrast_min})")
        if not reasons and len(haar_faces(frames[i])) == 0:
            reasons.append("no face detected")
        out.append(reasons)
    return out


def running_median3(values: np.ndarray, rows: list[int]) -> np.ndarray:
    """`values` with each of `rows` replaced by the median of itself and its read neighbours
    (the edge rows repeat themselves): landmark jitter is frame to frame, expressions change
    smoothly."""
    if len(rows) < 3:
        return values
    ordered = values[rows]
    padded = np.concatenate([ordered[:1], ordered, ordered[-1:]])
    values = values.copy()
    values[rows] = np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)
    return values


# The calm end of a clip's main axis of change: frames within this share of the axis' range from
# its calm extreme (chosen on demo seeds 0 and 1; docs/asi.md has the held-out seeds).
NEUTRAL_END_SHARE = 0.2


def neutral_end(reading: AUReading, rows: list[int], levels: np.ndarray,
                share: float = NEUTRAL_END_SHARE) -> list[int]:
    """The frames of `rows` at the calm end of the clip's main axis of change.

    An expression moves many readings together along one path (rest -> apex and back), while a
    landmark detector's errors move one or two readings in single frames or drift them in
    either direction. The first principal axis of the clip's signed, median-smoothed readings
    is that path, and its two ends are the rest state and the apex; the end whose frames have
    the lower mean `levels` (eq. 6 on relative readings, averaged over the end's frames rather
    than trusted frame by frame) is the rest. Frame by frame, a reading that falls as the
    expression rises (AU01/AU02 as the brows lower in anger, dlib's nose points drifting with
    raised brows) or a still-clipped antagonist (AU04 below the calibration's zero at the start
    of a frown) scores a frame on the way to the apex below the resting frames; along the axis
    that frame lies between the ends. Returns `rows` unchanged for fewer than 4 frames or a
    clip with no movement.
    """
    if len(rows) < 4:
        return list(rows)
    base = reading.signed if reading.signed is not None else reading.values
    x = np.nan_to_num(running_median3(base, rows)[rows])
    x = x - x.mean(axis=0)
    if not np.any(x):
        return list(rows)
    axis = np.linalg.svd(x, full_matrices=False)[2][0]
    position = x @ axis
    reach = share * (position.max() - position.min())
    low = [r for r, p in zip(rows, position) if p <= position.min() + reach]
    high = [r for r, p in zip(rows, position) if p >= position.max() - reach]
    return low if np.nanmean(levels[low]) <= np.nanmean(levels[high]) else high


def expression_levels(reading: AUReading, rows: list[int]) -> np.ndarray:
    """Per frame, the mean over AUs of its reading above the clip's least-expressive state for
    that AU (the AU's lowest reading over `rows`), clipped to the scale; NaN where no face was read.

    An AU that shares a measure with an antagonist (`AUReading.antagonist`) is clipped at the
    calibration's zero first: below it the movement is the antagonist's, and a smile must not
    count as "less AU15". An AU without one is read from its signed reading: the person's own
    zero is the clip's lowest reading, and a population zero would hide a real movement that
    stays below it (a short chin reads AU26 < 0 throughout a jaw drop).
    """
    own_zero = np.zeros(len(reading.names), dtype=bool)
    if reading.signed is not None and reading.antagonist is not None:
        own_zero = ~reading.antagonist
    base = reading.signed if reading.signed is not None else reading.values
    values = running_median3(np.where(own_zero[None, :], base, np.clip(base, 0.0, reading.scale_max)), rows)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns/rows: frames without a face
        rest = np.nanmin(values[rows], axis=0) if rows else np.full(values.shape[1], np.nan)
        return np.nanmean(np.clip(values - np.nan_to_num(rest)[None, :], 0.0, reading.scale_max), axis=1)


def choose_identity_frame(record: ClipRecord, estimator: AUEstimator, cfg: IdentityConfig,
                          max_frames: int = 16) -> tuple[IdentityFrame | None, list[Rejection]]:
    """The most neutral usable frame of one clip (or None) and the rejections on the way."""
    try:
        total = record.num_frames or count_frames(record.source)
        if record.neutral_onset:  # sequences that start neutral (CK+): only their onset frames
            total = min(total, record.neutral_onset)
        indices = np.asarray(uniform_indices(total, min(max_frames, total)), dtype=int)
        frames, bad = read_frames_skipping_bad(record.source, indices)
    except VideoReadError as exc:
        return None, [Rejection(record.clip_id, None, [f"unreadable clip ({exc})"])]
    rejections = [Rejection(record.clip_id, int(i), [f"undecodable frame ({why})"]) for i, why in bad.items()]
    indices = np.array([i for i in indices if int(i) not in bad], dtype=int)
    quality = frame_rejections(frames, cfg)
    usable = [i for i, reasons in enumerate(quality) if not reasons]
    for i, reasons in enumerate(quality):
        if reasons:
            rejections.append(Rejection(record.clip_id, int(indices[i]), reasons))
    if not usable:
        rejections.append(Rejection(record.clip_id, None, ["no frame passed the quality checks"]))
        return None, rejections
    reading = estimator.estimate(frames, record=record, frame_indices=indices)
    scored = []
    for i in usable:
        if not reading.face_found[i] or np.all(np.isnan(reading.values[i])):
            rejections.append(Rejection(record.clip_id, int(indices[i]), ["no AU reading (face not found by the AU backend)"]))
        else:
            scored.append(i)
    if not scored:
        rejections.append(Rejection(record.clip_id, None, ["no usable frame has an AU reading"]))
        return None, rejections
    mean_au = expression_levels(reading, scored)
    # A frame above the clip's median level is no resting frame wherever it lies on the axis: in a
    # clip that barely moves (a neutral clip) the axis is noise and its ends hold the largest errors.
    calm = [i for i in neutral_end(reading, scored, mean_au) if mean_au[i] <= np.median(mean_au[scored])]
    best = min(calm or scored, key=lambda i: mean_au[i])
    chosen = IdentityFrame(
        identity_id=record.subject or record.clip_id, clip_id=record.clip_id, subject=record.subject,
        frame_index=int(indices[best]), image=frames[best], mean_au=float(mean_au[best]),
        clip_median_mean_au=float(np.median(mean_au[scored])),
        resting_mean_au=float(np.nanmean(np.clip(reading.values[best], 0.0, reading.scale_max))),
        aus={k: float(v) for k, v in reading.frame(best).items() if np.isfinite(v)})
    return chosen, rejections


def select_identities(records: Iterable[ClipRecord], estimator: AUEstimator, cfg: IdentityConfig,
                      max_frames: int = 16, one_per_subject: bool = True, limit: int | None = None,
                      progress: bool = True) -> IdentitySelection:
    """Identity frames of the given (neutral, training) clips.

    With `one_per_subject`, clips of the same subject yield one identity: the clip whose chosen
    frame reads the lowest mean clipped AU reading (comparable: same person). Identities are ordered by id;
    `limit` keeps the first ones.
    """
    from tqdm.auto import tqdm

    records = list(records)
    selection = IdentitySelection()
    for record in tqdm(records, desc="identity frames", unit="clip", disable=not progress):
        chosen, rejections = choose_identity_frame(record, estimator, cfg, max_frames)
        selection.rejections.extend(rejections)
        if chosen is not None:
            selection.chosen.append(chosen)
    if one_per_subject:
        best: dict[str, IdentityFrame] = {}
        for frame in selection.chosen:
            other = best.get(frame.identity_id)
            if other is None or frame.resting_mean_au < other.resting_mean_au:
                if other is not None:
                    selection.rejections.append(Rejection(other.clip_id, None, [
                        f"subject {frame.identity_id} has a more neutral clip ({frame.clip_id})"]))
                best[frame.identity_id] = frame
            else:
                selection.rejections.append(Rejection(frame.clip_id, None, [
                    f"subject {frame.identity_id} has a more neutral clip ({other.clip_id})"]))
        selection.chosen = list(best.values())
    else:
        for frame in selection.chosen:
            frame.identity_id = frame.clip_id
    selection.chosen.sort(key=lambda f: f.identity_id)
    if limit is not None:
        selection.chosen = selection.chosen[:limit]
    return selection
