"""TI2VZeroPipeline: equals diffusers' own text-to-video sampler when unconditioned; queue
replacement, sliding, NFE accounting, batching and per-frame guidance behave as DESIGN 2.2 says."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from argen_ray.ard.ti2v import TI2VInputError, TI2VZeroPipeline
from argen_ray.ard.tiny_models import tiny_t2v_path

SIZE = 32  # 4x4 latents: the tests are about the procedure, not the picture
PROMPT = "a person with a surprised face, the inner brows rise strongly"


@pytest.fixture(scope="module")
def model_dir():
    return tiny_t2v_path()


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # The suite shares 2 cores with other processes: one thread avoids OpenMP spin-waiting.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pipe(model_dir):
    pipeline = TI2VZeroPipeline.from_pretrained(model_dir)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def face():
    rng = np.random.default_rng(0)
    return (rng.random((40, 48, 3)) * 255).astype(np.uint8)


def seeded(seed):
    return torch.Generator("cpu").manual_seed(seed)


@pytest.mark.parametrize("prompts", [PROMPT, [PROMPT, "a fearful face, the jaw drops"]])
def test_unconditioned_pipeline_equals_diffusers_text_to_video(model_dir, pipe, prompts):
    from diffusers.pipelines.deprecated.text_to_video_synthesis import TextToVideoSDPipeline

    reference = TextToVideoSDPipeline.from_pretrained(model_dir)
    reference.set_progress_bar_config(disable=True)
    seeds = [3, 4] if isinstance(prompts, list) else [3]
    gens = lambda: [seeded(s) for s in seeds] if isinstance(prompts, list) else seeded(3)  # noqa: E731
    expected = reference(prompts, num_frames=4, num_inference_steps=3, guidance_scale=7.5, height=SIZE, width=SIZE,
                         generator=gens()).frames
    # No condition frames, constant guidance, one window: TI2V-Zero reduces to text-to-video.
    out = pipe(prompts, num_frames=4, window_size=4, num_inference_steps=3, guidance_scale=7.5, height=SIZE,
               width=SIZE, generator=gens())
    assert len(out.frames) == len(seeds)
    for ours, theirs in zip(out.frames, expected):
        assert ours.shape == theirs.shape == (4, SIZE, SIZE, 3)
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_condition_frames_are_q_sample_of_the_queue_at_every_evaluation(pipe, face):
    records = []
    steps, resample, window, frames = 3, 1, 3, 5
    pipe(PROMPT, image=face, num_frames=frames, window_size=window, num_inference_steps=steps,
         resample_steps=resample, guidance_scale=9.0, height=SIZE, width=SIZE, generator=seeded(0),
         callback_on_step=lambda r: records.append({k: (v.clone() if torch.is_tensor(v) else v) for k, v in r.items()}))
    k = window - 1
    windows = frames - 1  # K = F - 1: one new frame per window
    assert len(records) == windows * (steps + resample * (steps - 1))  # no resampling at the last step
    alpha_bar = pipe.scheduler.alphas_cumprod
    for rec in records:
        a = alpha_bar[rec["timestep"]]
        expected = a.sqrt() * rec["queue"] + (1 - a).sqrt() * rec["queue_noise"]
        torch.testing.assert_close(rec["latents"][:, :, :k], expected)
    # Timesteps descend within a window; every step but the last is visited resample + 1 times.
    first_window = [r["timestep"] for r in records if r["window"] == 0]
    assert first_window == sorted(first_window, reverse=True) and len(set(first_window)) == steps
    assert [first_window.count(t) for t in sorted(set(first_window), reverse=True)] == [resample + 1] * (steps - 1) + [1]


def test_queue_slides_new_frames_in_order(pipe, face):
    queues = {}

    def keep_queue(rec):
        queues.setdefault(rec["window"], rec["queue"].clone())

    window, frames = 3, 6  # K = 2, five windows of one new frame each
    out = pipe(PROMPT, image=face, num_frames=frames, window_size=window, num_inference_steps=2, height=SIZE,
               width=SIZE, generator=seeded(1), output_type="latent", callback_on_step=keep_queue)
    latents = out.frames[0]  # (1, C, frames, h, w): the reference, then the new frames
    reference, new = latents[:, :, :1], latents[:, :, 1:]
    k = window - 1
    for w, queue in queues.items():
        expected = torch.cat([reference.expand(-1, -1, max(k - w, 0), -1, -1), new[:, :, max(w - k, 0):w]], dim=2)
        torch.testing.assert_close(queue, expected)
    assert sorted(queues) == list(range(frames - 1))


@pytest.mark.parametrize("frames, window, steps, resample", [(4, 4, 2, 0), (6, 3, 3, 1), (5, 5, 2, 2)])
def test_nfe_and_unet_calls_follow_the_formula(pipe, face, frames, window, steps, resample):
    kw = dict(image=face, num_frames=frames, window_size=window, num_inference_steps=steps, resample_steps=resample,
              height=SIZE, width=SIZE, output_type="latent")
    windows = math.ceil((frames - 1) / 1)  # K = window - 1: one new frame per window
    evaluations = windows * (steps + resample * (steps - 1))
    out = pipe(PROMPT, guidance_scale=9.0, generator=seeded(0), **kw)
    assert out.nfe == [2 * evaluations] and out.unet_calls == evaluations       # CFG in one call
    split = pipe(PROMPT, guidance_scale=9.0, generator=seeded(0), split_cfg=True, **kw)
    assert split.nfe == [2 * evaluations] and split.unet_calls == 2 * evaluations
    torch.testing.assert_close(split.frames[0], out.frames[0], atol=1e-4, rtol=1e-3)
    unguided = pipe(PROMPT, guidance_scale=1.0, generator=seeded(0), **kw)     # w <= 1: no CFG
    assert unguided.nfe == [evaluations] and unguided.unet_calls == evaluations


def test_requests_with_shared_timesteps_share_unet_calls(pipe, face):
    kw = dict(image=face, num_frames=4, window_size=3, height=SIZE, width=SIZE, output_type="latent")
    # T=2 visits {501, 1}, T=4 visits {751, 501, 251, 1}: per window 4 calls serve both.
    out = pipe([PROMPT, PROMPT], num_inference_steps=[2, 4], guidance_scale=[9.0, np.array([6.0, 9.0, 12.0])],
               generator=[seeded(0), seeded(1)], **kw)
    windows = 3
    assert out.nfe == [windows * 2 * 2, windows * 4 * 2]
    assert out.unet_calls == windows * 4
    separate = [pipe(PROMPT, num_inference_steps=s, guidance_scale=w, generator=seeded(g), **kw)
                for s, w, g in ((2, 9.0, 0), (4, np.array([6.0, 9.0, 12.0]), 1))]
    for batched, alone in zip(out.frames, separate):
        torch.testing.assert_close(batched, alone.frames[0], atol=1e-4, rtol=1e-4)


def test_same_seed_same_video_other_seed_other_video(pipe, face):
    kw = dict(image=face, num_frames=3, window_size=3, num_inference_steps=2, height=SIZE, width=SIZE)
    a = pipe(PROMPT, generator=seeded(5), **kw).frames[0]
    b = pipe(PROMPT, generator=seeded(5), **kw).frames[0]
    c = pipe(PROMPT, generator=seeded(6), **kw).frames[0]
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3
    # Frame 0 is the decoded reference: the same for every seed.
    np.testing.assert_allclose(a[0], c[0], atol=1e-6)


def test_guidance_of_frame_n_acts_on_frame_n_only(pipe, face):
    kw = dict(image=face, num_frames=5, window_size=3, num_inference_steps=2, height=SIZE, width=SIZE)
    flat = pipe(PROMPT, guidance_scale=np.array([6.0, 6.0, 6.0, 6.0]), generator=seeded(2), **kw).frames[0]
    late = pipe(PROMPT, guidance_scale=np.array([6.0, 6.0, 12.0, 12.0]), generator=seeded(2), **kw).frames[0]
    np.testing.assert_allclose(flat[:3], late[:3], atol=1e-6)   # reference + new frames 1, 2
    assert np.abs(flat[3] - late[3]).max() > 1e-4                 # frame 3 got w = 12


@pytest.mark.parametrize("change, message", [
    (dict(guidance_scale=np.array([6.0, 7.0])), "guidance_scale must be a finite number or 3 per-frame values"),
    (dict(prompt="  "), "prompt must be a non-empty string"),
    (dict(image=np.zeros((40, 48), np.uint8)), "image must be an (H, W, 3) uint8 RGB array"),
    (dict(num_inference_steps=0), "num_inference_steps must be an integer in [1, 1000]"),
    (dict(height=30), "multiples of 8"),
    (dict(num_condition_frames=0), "num_condition_frames=0"),
    (dict(output_type="gif"), "output_type"),
])
def test_bad_inputs_are_named(pipe, face, change, message):
    kw = dict(prompt=PROMPT, image=face, num_frames=4, window_size=3, num_inference_steps=2, height=SIZE, width=SIZE)
    kw.update(change)
    with pytest.raises(TI2VInputError) as err:
        pipe(**kw)
    assert message in str(err.value)


def test_nfe_counts_windows_steps_resample_passes_and_cfg():
    from argen_ray.ard.ti2v import ti2v_nfe

    # TI2V-Zero's face setting: 15 new frames (one per window), T = 10, r = 4 resample passes at every
    # step but the last, CFG x2: 15 * (10 + 4 * 9) * 2.
    assert ti2v_nfe(15, steps=10, resample=4) == 1380
    # A short RL candidate of 8 frames (7 new) at T = 5, r = 0: 7 * 5 * 2.
    assert ti2v_nfe(7, steps=5, resample=0) == 70
    # Without CFG a step is one sample; with 4 new frames per window, 15 new frames take 4 windows.
    assert ti2v_nfe(15, steps=10, resample=0, condition_frames=12, guided=False) == 40
