"""The warp backend moves like real clips of the class and the seed varies a clip (DESIGN 2.5):
onset -> apex -> hold for every schedule the policy can choose, K seeds give K distinct clips,
the drawn real clip's head path and noise level show up in the rendered frames."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from argen_ray.ard.generator import GenerationRequest, build_generator
from argen_ray.ard.guidance import guidance_curve
from argen_ray.ard.warp_variation import draw_amplitudes, expression_schedule, intensity_band, variation_rng
from argen_ray.config.generator import ActionSpaceConfig, GeneratorConfig

F, N = 16, 15
W_MIN, W_MAX = 6.0, 12.0


def fractions(alpha, beta):
    return (guidance_curve(N, alpha, beta, W_MIN, W_MAX) - W_MIN) / (W_MAX - W_MIN)


@pytest.mark.parametrize("alpha", ActionSpaceConfig().alpha)
@pytest.mark.parametrize("beta", ActionSpaceConfig().beta)
def test_every_policy_schedule_gives_onset_apex_hold(alpha, beta):
    onset, apex = 3.0, 9.0  # a real clip's 10 % / 90 % frames
    level = expression_schedule(fractions(alpha, beta), onset, apex, hold=1.0)
    assert level[:2].max() < 0.05                     # neutral before the onset (frames 1, 2)
    assert np.all(np.diff(level) >= -1e-12)           # never back towards neutral
    assert level.max() == pytest.approx(1.0)           # the target is reached ...
    hold = math.ceil(F / 4)
    assert level[-hold:].min() >= 0.9                 # ... and held over the last F/4 frames
    assert np.argmax(level >= 0.9) + 1 <= apex + 3     # apex within a few frames of the real one


def test_flat_curve_reproduces_the_real_onset_and_apex_frames():
    level = expression_schedule(np.ones(N), onset=4.0, apex=10.0)
    assert level[4 - 1] == pytest.approx(0.1, abs=0.01)   # frame 4 (levels start at frame 1)
    assert level[10 - 1] == pytest.approx(0.9, abs=0.01)


def test_hold_level_and_no_timing():
    bell = fractions(3.0, 3.0)
    # Without measured timing: the running maximum of the curve (held apex), spread over the clip.
    assert np.allclose(expression_schedule(bell), np.maximum.accumulate(bell))
    # A dataset whose clips relax (hold 0.5) lets the bell come down to half its peak, not lower.
    relaxed = expression_schedule(bell, hold=0.5)
    assert relaxed[-1] == pytest.approx(0.5) and relaxed.max() == pytest.approx(1.0)


def test_amplitudes_stay_in_the_prompt_intensity_band():
    assert intensity_band(0.2) == (0.0, 0.33) and intensity_band(0.5) == (0.33, 0.66)
    assert intensity_band(0.9) == (0.66, 1.0)
    draws = [draw_amplitudes(variation_rng(s, "p"), {1: 0.5, 2: 0.9}) for s in range(50)]
    assert all(0.33 <= d[1] < 0.66 and 0.66 <= d[2] <= 1.0 for d in draws)
    assert len({d[1] for d in draws}) == 50


def test_amplitudes_are_centred_on_the_measured_intensity():
    # A jaw drop measured at 0.654 (band 0.33-0.66) and eyelids at 0.306 (band 0-0.33): drawn
    # around those values, not around the band's middle (0.495 / 0.165), which shortened clips.
    rng = variation_rng(7, "p")
    draws = np.array([[d[26], d[5]] for d in (draw_amplitudes(rng, {26: 0.654, 5: 0.306}) for _ in range(2000))])
    assert np.allclose(draws.mean(0), [0.654, 0.306], atol=0.005)
    assert draws[:, 0].min() >= 0.33 and draws[:, 0].max() < 0.66 and draws[:, 1].max() < 0.33
    assert draws[:, 0].std() > 0.001 and draws[:, 1].std() > 0.005


@pytest.fixture(scope="module")
def dynamics_file(tmp_path_factory):
    """Two measured 'real' surprise clips: onset/apex, a head path (x drift 0.1 IOD, roll 3 deg), a
    frame-to-frame change of 6 grey levels and a fine noise grain."""
    t = np.linspace(0, 1, 12)
    pose = np.stack([0.1 * t, 0.02 * t, 0.01 * t, 3.0 * t], 1).round(4).tolist()
    profiles = [{"clip_id": f"r{i}", "onset": 0.2 + 0.1 * i, "apex": 0.6, "hold": 1.0, "noise": 4.0, "frame_change": 6.0,
                 "noise_ratio": 0.45, "pose": pose}
                for i in range(2)]
    path = tmp_path_factory.mktemp("dyn") / "dynamics.json"
    path.write_text(json.dumps({"version": 2, "classes": {"surprise": {"clips": 2, "summary": {},
                                                                          "profiles": profiles}}}))
    return path


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return data.astronaut()


def test_k_seeds_give_k_distinct_clips_and_a_seed_is_reproducible(dynamics_file, astronaut):
    gen = build_generator(GeneratorConfig(backend="warp", num_frames=8, warp={"dynamics": dynamics_file}))
    curve = guidance_curve(7, 3.0, 3.0, W_MIN, W_MAX)
    ask = lambda seed: GenerationRequest(image=astronaut, prompt="surprise", steps=5, guidance=curve,  # noqa: E731
                                         seed=seed, emotion="surprise")
    clips = gen.generate([ask(s) for s in range(4)])
    digests = {c.frames.tobytes() for c in clips}
    assert len(digests) == 4
    assert np.array_equal(gen.generate([ask(2)])[0].frames, clips[2].frames)
    # Without measured dynamics the seed still changes the amplitudes, so the clips differ too.
    bare = build_generator(GeneratorConfig(backend="warp", num_frames=8))
    assert len({c.frames.tobytes() for c in bare.generate([ask(s) for s in range(3)])}) == 3


def test_rendered_clip_follows_the_drawn_real_clip(dynamics_file, astronaut):
    from argen_ray.data.dynamics import measure_clip, noise_sigma, tracked_landmarks

    gen = build_generator(GeneratorConfig(backend="warp", num_frames=F, warp={"dynamics": dynamics_file,
                                                                              "max_side": 512}))
    clip, = gen.generate([GenerationRequest(image=astronaut, prompt="surprise", steps=15, guidance=W_MAX, seed=3,
                                            emotion="surprise")])
    frames = clip.frames
    d = measure_clip(frames, tracked_landmarks(frames))
    # Drawn onset 0.2-0.3 and apex 0.6 (+- half a frame); dlib's landmark jitter blurs both a little.
    assert d.onset <= 0.45 and 0.45 <= d.apex <= 0.8
    assert d.hold > 0.85                               # the apex is held
    assert 0.5 <= d.head_roll <= 2.0                   # the drawn path rolls 0 -> 3 deg (std 0.92)
    # Fresh noise every frame brings the clip's frame-to-frame change to the drawn clip's 6 grey levels.
    assert d.frame_change == pytest.approx(6.0, rel=0.05)
    gray = frames[1:].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    assert noise_sigma(gray[2] - gray[1]) > 1.0      # consecutive frames carry different noise


@pytest.mark.parametrize("ratio", [1.0, 0.45, 0.2])
def test_noise_grain_reproduces_a_measured_noise_ratio(ratio):
    """White noise blurred by `noise_blur(ratio)` measures `ratio` again (dynamics.noise_ratio's
    definition on the difference of two such frames)."""
    import cv2

    from argen_ray.ard.warp_variation import noise_blur
    from argen_ray.data.dynamics import noise_ratio

    rng = np.random.default_rng(7)
    blur = noise_blur(ratio)
    frames = [cv2.GaussianBlur(rng.normal(0, 3, (96, 96)).astype(np.float32), (0, 0), blur) if blur > 0
              else rng.normal(0, 3, (96, 96)).astype(np.float32) for _ in range(3)]
    assert noise_ratio(np.stack(frames)) == pytest.approx(ratio, rel=0.15)


@pytest.mark.parametrize("noise", [1.0, 1.6])
def test_sensor_noise_reaches_both_the_frame_change_and_the_noise_level(noise):
    """With a noise target the grain is re-chosen: the clip measures the drawn clip's frame-to-frame
    change AND its sensor-noise estimate (before, only the change was matched and the noise came out
    wherever the grain put it)."""
    from argen_ray.ard.warp_variation import add_sensor_noise, frames_noise, mean_frame_change

    yy, xx = np.mgrid[0:96, 0:96]
    still = (110 + 40 * np.sin(xx / 9.0) * np.cos(yy / 13.0)).astype(np.uint8)
    frames = np.repeat(np.stack([still] * 3, -1)[None], 12, axis=0)
    add_sensor_noise(frames, 2.4, 0.0, np.random.default_rng(0), noise=noise)
    assert mean_frame_change(frames) == pytest.approx(2.4, rel=0.05)
    assert frames_noise(frames[1:]) == pytest.approx(noise, rel=0.12)
