"""The demo dataset's plan (who shows which emotion, which fold) and the synthesis of one clip.

Every random draw comes from a generator seeded by (seed, purpose, index), so a clip is the
same whichever process renders it and whether or not other clips were rendered before it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from argen_ray.data.demo.au_model import au_to_landmarks
from argen_ray.data.demo.expressions import AUTimeline, class_counts, sample_au_timeline
from argen_ray.data.demo.identity import Identity, sample_identity
from argen_ray.data.demo.render import render_face
from argen_ray.data.labels import EMOTIONS

NUM_FOLDS = 5
IOD_FRACTION = 0.28   # inter-ocular distance as a fraction of the frame size
EYE_LINE = 0.38       # height of the eyes as a fraction of the frame size

# Purposes of the seeded generators (fixed: changing one changes the dataset).
_IDENTITY, _LABELS, _FOLDS, _TIMELINE, _POSE, _NOISE = range(6)


@dataclass(frozen=True)
class ClipPlan:
    clip_id: int
    identity: int
    emotion: str
    fold: int  # the fold whose test set holds this clip (identities are fold-disjoint)

    @property
    def video_name(self) -> str:
        return f"{self.clip_id:05d}"

    @property
    def label(self) -> int:
        """DFEW's 1-based label (1 happy ... 7 fear)."""
        return EMOTIONS.index(self.emotion) + 1

    @property
    def subject(self) -> str:
        return f"demo{self.identity + 1:03d}"


@dataclass(frozen=True)
class Clip:
    plan: ClipPlan
    frames: np.ndarray      # (F, S, S, 3) uint8 RGB
    landmarks: np.ndarray   # (F, 68, 2) pixels, the rendered geometry
    aus: AUTimeline


def make_identity(seed: int, index: int) -> Identity:
    """Identity `index` of the dataset drawn with `seed` (the same whatever the identity count)."""
    return sample_identity(np.random.default_rng([seed, _IDENTITY, index]), index)


def make_identities(seed: int, count: int) -> list[Identity]:
    return [make_identity(seed, i) for i in range(count)]


def plan_clips(seed: int, num_identities: int, clips_per_identity: int, min_test_clips: int = 0) -> list[ClipPlan]:
    """Labels with DFEW-like shares; identities dealt to folds; each identity's first clip neutral.

    The expressive labels, rarest class first, are dealt to identities taken in fold rotation,
    so a rare class's few clips land in different folds (every fold's training set sees it).
    With `min_test_clips`, every class has at least that many clips per fold (the floor is
    `min_test_clips` x 5 clips per class; with a multiple of 5 identities the rotation deals each
    class's clips evenly over the folds).
    """
    counts = class_counts(num_identities * clips_per_identity, min_neutral=num_identities,
                          min_per_class=min_test_clips * NUM_FOLDS)
    rarest_first = sorted(EMOTIONS, key=lambda e: (counts[e], EMOTIONS.index(e)))
    labels = [e for e in rarest_first for _ in range(counts[e] - (num_identities if e == "neutral" else 0))]
    order = [int(i) for i in np.random.default_rng([seed, _FOLDS]).permutation(num_identities)]
    fold_of = {identity: pos % NUM_FOLDS + 1 for pos, identity in enumerate(order)}
    emotions: dict[int, list[str]] = {identity: [] for identity in order}
    for k, label in enumerate(labels):
        emotions[order[k % num_identities]].append(label)
    rng = np.random.default_rng([seed, _LABELS])
    plans = []
    for identity in range(num_identities):
        mine = ["neutral"] + [emotions[identity][i] for i in rng.permutation(len(emotions[identity]))]
        for j, emotion in enumerate(mine):
            plans.append(ClipPlan(clip_id=identity * clips_per_identity + j + 1, identity=identity,
                                  emotion=emotion, fold=fold_of[identity]))
    return plans


def _head_poses(rng: np.random.Generator, frames: int, size: int, sway_scale: float = 1.0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: centre (F, 2) pixels, IOD (F,) pixels, roll (F,) radians — a slow small sway
    (its amplitude times `sway_scale`; the draws are the same at any scale)."""
    t = np.arange(frames) / max(frames - 1, 1)

    def sway(amplitude: float) -> np.ndarray:
        cycles, phase = rng.uniform(0.3, 0.9), rng.uniform(0, 2 * np.pi)
        return sway_scale * amplitude * np.sin(2 * np.pi * cycles * t + phase)

    centre0 = np.array([0.5, EYE_LINE]) * size + rng.normal(0.0, 0.015 * size, 2)
    centre = centre0 + np.stack([sway(0.012 * size), sway(0.01 * size)], axis=1)
    iod = IOD_FRACTION * size * rng.uniform(0.93, 1.07) * (1.0 + sway(0.012))
    roll = np.deg2rad(rng.normal(0.0, 2.0) + sway(1.5))
    return centre, iod, roll


def clip_timeline(plan: ClipPlan, seed: int, frames: int) -> AUTimeline:
    """The clip's AU intensities per frame (cheap: no rendering)."""
    return sample_au_timeline(np.random.default_rng([seed, _TIMELINE, plan.clip_id]), plan.emotion, frames)


def synthesize_clip(plan: ClipPlan, identity: Identity, seed: int, frames: int, size: int,
                    sway_scale: float = 1.0) -> Clip:
    """Render one clip: AU timeline -> landmarks (template + AU displacement + head pose) -> frames.
    `sway_scale` scales the head's sway over the clip (0: a still head at the clip's pose)."""
    timeline = clip_timeline(plan, seed, frames)
    rng = np.random.default_rng([seed, _POSE, plan.clip_id])
    centre, iod, roll = _head_poses(rng, frames, size, sway_scale)
    gaze = rng.normal(0.0, 0.04, 2) + rng.normal(0.0, 0.01, (frames, 2))
    images = np.empty((frames, size, size, 3), np.uint8)
    landmarks = np.empty((frames, 68, 2))
    for f in range(frames):
        c, s = np.cos(roll[f]), np.sin(roll[f])
        rotated = identity.neutral @ np.array([[c, s], [-s, c]])
        neutral = centre[f] + iod[f] * rotated
        # Rounded as the CSV stores them, so the written landmarks are exactly the drawn ones.
        landmarks[f] = np.round(au_to_landmarks(neutral, timeline.as_dict(f)), 3)
        images[f] = render_face(landmarks[f], identity, size, gaze=tuple(gaze[f]),
                                noise_seed=int(np.random.default_rng([seed, _NOISE, plan.clip_id, f]).integers(2**31)))
    return Clip(plan, images, landmarks, timeline)
