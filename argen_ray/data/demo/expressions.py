"""Emotions as FACS AU prototypes, DFEW-like class shares, and per-clip AU timelines.

Prototypes follow FACS/EMFACS (DESIGN 2.1.2): happy 6+12(+25), sad 1+4+15(+17),
angry 4+5+7+23, surprise 1+2+5+26 (+25: a dropped jaw parts the lips), disgust 9+15+16 /
9+17 / 10+17, fear 1+2+4+5+7+20+26 (+25), neutral: none. Weights say how strongly each AU
shows relative to the clip's apex intensity (e.g. surprise's "5B" is a slight lid raise).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from argen_ray.data.demo.au_model import MAX_INTENSITY, MODELLED_AUS
from argen_ray.data.labels import EMOTIONS

PROTOTYPES: dict[str, tuple[dict[int, float], ...]] = {
    "happy": ({6: 0.8, 12: 1.0}, {6: 0.8, 12: 1.0, 25: 0.7}),
    "sad": ({1: 0.9, 4: 0.7, 15: 1.0}, {1: 0.9, 4: 0.7, 15: 1.0, 17: 0.8}),
    "neutral": ({},),
    "angry": ({4: 1.0, 5: 0.6, 7: 0.9, 23: 0.9},),
    "surprise": ({1: 1.0, 2: 1.0, 5: 0.5, 26: 1.0, 25: 0.9},),
    "disgust": ({9: 1.0, 15: 0.8, 16: 0.7, 25: 0.4}, {9: 1.0, 17: 0.8}, {10: 1.0, 17: 0.8}),
    "fear": ({1: 0.9, 2: 0.7, 4: 0.7, 5: 0.9, 7: 0.6, 20: 1.0, 26: 0.6, 25: 0.7},),
}

# Class shares of DFEW's single-labelled training clips (fold 1: 9,356 clips, disgust 116,
# fear 721, surprise 1,175): disgust rarest, then fear, then surprise.
CLASS_SHARES: dict[str, float] = {
    "happy": 0.213, "sad": 0.181, "neutral": 0.213, "angry": 0.178,
    "surprise": 0.126, "disgust": 0.012, "fear": 0.077,
}

APEX_RANGE = (2.5, 4.5)   # OpenFace-scale apex intensity of a clip's strongest AU
NOISE_STD = 0.08          # per-frame jitter of every AU (intensities stay >= 0)


def class_counts(total: int, min_neutral: int = 0, min_per_class: int = 0) -> dict[str, int]:
    """Clips per emotion for `total` clips: DFEW-like shares (largest remainder), every class
    present (at least one clip per 36, so small sets keep a few rare clips, and at least
    `min_per_class`, so every fold's test split can hold a few), and at least `min_neutral`
    neutral clips (one per identity, for identity frames)."""
    floor = max(1, round(total / 36), min_per_class)
    counts = {e: floor for e in EMOTIONS}
    counts["neutral"] = max(floor, min_neutral)
    free = total - sum(counts.values())
    if free < 0:
        raise ValueError(f"{total} clips cannot hold {floor} clip(s) of each of 7 classes and {min_neutral} neutral ones")
    # Share out the rest so final counts approach total * share, largest remainder first.
    want = {e: max(0.0, total * CLASS_SHARES[e] - counts[e]) for e in EMOTIONS}
    scale = free / sum(want.values()) if sum(want.values()) > 0 else 0.0
    extra = {e: want[e] * scale for e in EMOTIONS}
    for e in EMOTIONS:
        counts[e] += int(np.floor(extra[e]))
    left = total - sum(counts.values())
    for e in sorted(EMOTIONS, key=lambda e: -(extra[e] - np.floor(extra[e])))[:left]:
        counts[e] += 1
    return counts


@dataclass(frozen=True)
class AUTimeline:
    """Per-frame AU intensities of one clip, columns in `MODELLED_AUS` order."""

    intensities: np.ndarray   # (F, len(MODELLED_AUS)) float, rounded to 0.01 like OpenFace
    variant: tuple[int, ...]  # the prototype's AUs
    onset: int                # 0-based frame where the expression starts to rise
    apex: int                 # 0-based first frame at full intensity

    def as_dict(self, frame: int) -> dict[int, float]:
        return {au: float(v) for au, v in zip(MODELLED_AUS, self.intensities[frame])}


def sample_au_timeline(rng: np.random.Generator, emotion: str, frames: int) -> AUTimeline:
    """Neutral -> apex: flat until a random onset, a smooth rise to a random apex, then held.

    Frame 0 is always before the onset (neutral), and the apex is held for at least two frames.
    Neutral clips keep only the per-frame jitter.
    """
    variants = PROTOTYPES[emotion]
    weights = variants[int(rng.integers(len(variants)))]
    onset = int(rng.integers(1, max(2, frames // 3 + 1)))
    latest_apex = frames - 2
    apex = int(rng.integers(min(onset + max(1, frames // 4), latest_apex), latest_apex + 1))
    t = np.arange(frames)
    ramp = np.clip((t - onset + 1) / (apex - onset + 1), 0.0, 1.0)
    profile = ramp * ramp * (3.0 - 2.0 * ramp)  # smoothstep: slow start, slow arrival
    peak = rng.uniform(*APEX_RANGE)
    target = np.zeros(len(MODELLED_AUS))
    for au, w in weights.items():
        target[MODELLED_AUS.index(au)] = peak * w * rng.uniform(0.85, 1.15)
    noise = rng.normal(0.0, NOISE_STD, (frames, len(MODELLED_AUS)))
    values = np.clip(profile[:, None] * target[None, :] + noise, 0.0, MAX_INTENSITY)
    return AUTimeline(np.round(values, 2), tuple(sorted(weights)), onset, apex)
