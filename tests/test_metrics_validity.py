"""Generated-clip validity (argen_ray/metrics/validity.py): per-class face presence is the share
of a class's frames in which the reward's face detector finds a face, and unreadable clips are
left out instead of failing the stage."""
from __future__ import annotations

import numpy as np
import pytest

from argen_ray.config.reward import RewardConfig
from argen_ray.data.demo.clips import ClipPlan, make_identity, synthesize_clip
from argen_ray.data.labels import EMOTIONS
from argen_ray.data.records import ClipRecord
from argen_ray.data.video import write_mp4
from argen_ray.metrics.validity import face_presence


@pytest.fixture(scope="module")
def face_frames():
    plan = ClipPlan(clip_id=1, identity=0, emotion="surprise", fold=1)
    return synthesize_clip(plan, make_identity(0, 0), seed=0, frames=8, size=96).frames


def test_face_presence_is_the_share_of_frames_with_a_face_per_class(tmp_path, face_frames):
    half = face_frames.copy()
    half[4:] = 127  # the last 4 frames: no face
    records = [
        ClipRecord("a", write_mp4(tmp_path / "a.mp4", face_frames, lossless=True), EMOTIONS.index("surprise")),
        ClipRecord("b", write_mp4(tmp_path / "b.mp4", half, lossless=True), EMOTIONS.index("fear")),
        ClipRecord("c", write_mp4(tmp_path / "c.mp4", np.full_like(face_frames, 127), lossless=True),
                   EMOTIONS.index("disgust")),
    ]
    faces = face_presence(records, RewardConfig())
    assert set(faces) == {"surprise", "fear", "disgust"}
    assert faces["surprise"] >= 0.75 and faces["disgust"] == 0.0
    # the same face frames, half of them blanked: at most half of surprise's share
    assert 0 < faces["fear"] <= 0.5 and faces["fear"] <= faces["surprise"] / 2 + 1e-9


def test_clips_of_one_class_pool_their_frames_and_unreadable_clips_are_left_out(tmp_path, face_frames):
    label = EMOTIONS.index("surprise")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    records = [ClipRecord("a", write_mp4(tmp_path / "a.mp4", face_frames, lossless=True), label),
               ClipRecord("b", write_mp4(tmp_path / "b.mp4", np.full_like(face_frames, 127), lossless=True), label),
               ClipRecord("x", broken, label)]
    alone = face_presence(records[:1], RewardConfig())["surprise"]
    assert face_presence(records, RewardConfig())["surprise"] == pytest.approx(alone / 2, abs=1e-4)
