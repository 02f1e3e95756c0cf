"""Clip dynamics measured from frames and landmarks (argen_ray.data.dynamics, DESIGN 2.5)."""
import numpy as np
import pytest

from argen_ray.data.demo.identity import neutral_template
from argen_ray.data.dynamics import (DynamicsError, class_dynamics, expression_curve, measure_clip, noise_sigma,
                                     timing)

F = 16


def _face(scale=40.0, centre=(56.0, 50.0), roll_deg=0.0):
    """Pixel landmarks of the canonical neutral face at a given position, size and roll."""
    r = np.deg2rad(roll_deg)
    rot = np.array([[np.cos(r), np.sin(r)], [-np.sin(r), np.cos(r)]])
    return np.asarray(centre) + scale * (neutral_template() @ rot)


def _clip(levels, poses=None, seed=0):
    """Landmarks whose mouth corners and brows move by `levels[f]` (IOD units), optional head poses."""
    move = np.zeros((68, 2))
    move[[48, 54], 0] = [-1.0, 1.0]
    move[17:27, 1] = -1.0
    points = []
    for f, level in enumerate(levels):
        dx, dy, s, roll = poses[f] if poses is not None else (0, 0, 1, 0)
        base = neutral_template() + level * move
        r = np.deg2rad(roll)
        rot = np.array([[np.cos(r), np.sin(r)], [-np.sin(r), np.cos(r)]])
        points.append(np.array([56.0 + dx, 50.0 + dy]) + 40.0 * s * (base @ rot))
    frames = np.random.default_rng(seed).integers(100, 140, (len(levels), 32, 32, 3)).astype(np.uint8)
    return frames, np.stack(points)


def test_onset_apex_hold_of_a_rise_and_hold_clip():
    # Neutral for frames 0-3, linear rise over frames 4-10 to 0.2, held to the end.
    levels = np.clip((np.arange(F) - 3) / 7, 0, 1) * 0.2
    d = measure_clip(*_clip(levels), clip_id="c1", label="fear")
    # Displacement is linear in the level, so the 10 % / 90 % crossings are frames 4 and 10.
    assert d.onset == pytest.approx(4 / (F - 1))
    assert d.apex == pytest.approx(10 / (F - 1))
    assert d.hold == pytest.approx(1.0, abs=1e-6)
    assert d.apex_displacement == pytest.approx(12 / 68 * 0.2, rel=1e-6)  # 12 of 68 points move by 0.2


def test_a_clip_that_returns_to_neutral_holds_little():
    # Up to frame 5, half back at 6, neutral from 7: the mean after the apex is 1.5 / 11 of it.
    levels = np.zeros(F)
    levels[:7] = [0, 0, 0.25, 0.5, 0.75, 1.0, 0.5]
    d = measure_clip(*_clip(levels * 0.2))
    assert d.apex == pytest.approx(5 / (F - 1))
    assert d.hold == pytest.approx(1.5 / 11)


def test_expression_curve_ignores_head_motion_and_head_pose_is_measured():
    poses = [(3.0 * np.sin(f / 3), 2.0 * f / F, 1 + 0.05 * f / F, 4.0 * f / F) for f in range(F)]
    frames, points = _clip(np.zeros(F), poses)
    assert expression_curve(points).max() < 1e-9
    d = measure_clip(frames, points)
    assert d.head_roll == pytest.approx(np.std([4.0 * f / F for f in range(F)]), rel=1e-3)
    assert d.head_translation > 0.01 and d.head_scale > 0.005
    still = measure_clip(*_clip(np.zeros(F)))
    assert still.head_translation == still.head_roll == still.head_scale == 0


def test_noise_estimate_recovers_added_gaussian_noise():
    yy, xx = np.mgrid[0:96, 0:96]
    smooth = 100 + 40 * np.sin(xx / 15.0) + 30 * np.cos(yy / 20.0)
    for sigma in (2.0, 6.0):
        noisy = smooth + np.random.default_rng(1).normal(0, sigma, smooth.shape)
        assert noise_sigma(noisy) == pytest.approx(sigma, rel=0.15)
    assert noise_sigma(smooth) < 0.5


def test_timing_of_a_still_clip_and_bad_shapes():
    assert timing(np.zeros(5)) == (0.0, 0.0, 0.0)
    frames, points = _clip(np.zeros(4))
    with pytest.raises(DynamicsError, match="clip 'x'"):
        measure_clip(frames, points[:3], clip_id="x")


def test_class_dynamics_groups_per_class_with_medians():
    rise = np.clip((np.arange(F) - 3) / 7, 0, 1) * 0.2
    clips = [measure_clip(*_clip(rise * k), clip_id=str(k), label="fear") for k in (1, 2, 3)]
    clips.append(measure_clip(*_clip(rise), clip_id="s", label="surprise"))
    out = class_dynamics(clips)
    assert out["classes"]["fear"]["clips"] == 3 and out["classes"]["surprise"]["clips"] == 1
    fear = out["classes"]["fear"]["summary"]["apex_displacement"]
    assert fear["median"] == pytest.approx(clips[1].apex_displacement, rel=1e-4)
    assert len(out["classes"]["fear"]["profiles"][0]["pose"]) == F


def test_codec_noise_is_zero_for_bit_exact_mp4s_and_counts_its_clips(tmp_path):
    """`codec_noise` measures what writing a clip adds to its noise estimate; the lossless mp4 the
    generator writes reads back bit-exact, so it adds nothing."""
    from argen_ray.data.dynamics import codec_noise
    from argen_ray.data.records import ClipRecord
    from argen_ray.data.video import read_video, write_mp4

    frames, _ = _clip(np.zeros(6))
    frames = np.repeat(np.repeat(frames, 2, axis=1), 2, axis=2)   # 64 x 64
    path = write_mp4(tmp_path / "c.mp4", frames, lossless=True)
    assert np.array_equal(read_video(path), frames)
    records = [ClipRecord(clip_id="c", source=path, label=4), ClipRecord(clip_id="gone", source=tmp_path / "x.mp4", label=4)]
    assert codec_noise(records, lossless=True) == {"lossless": True, "clips": 1, "noise": 0.0}
