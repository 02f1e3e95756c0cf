"""TI2VZeroPipeline against an independent reference of DESIGN 2.2's steps.

The reference below is written from DESIGN 2.2 (and TI2V-Zero's resampling), not from
`argen_ray/ard/ti2v.py`: its own DDIM step, q_sample, re-noise and queue, with the pipeline's
UNet and encoders as black boxes. Both sides draw every noise tensor from the same keyed source
(kind, window, step, pass), so they must agree to float precision across several windows (the
queue rolls: N > F - K), resample passes r >= 1 and a per-frame guidance curve.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

# The tiny pipeline, the reference image and one torch thread, as in the pipeline's own tests.
from test_ard_ti2v import PROMPT, SIZE, face, model_dir, one_torch_thread, pipe  # noqa: F401

KIND_SEED = {"init": 1, "queue": 2, "renoise": 3}


def keyed_noise(request: int, kind: str, window: int, step: int, pass_: int, shape) -> torch.Tensor:
    """A standard normal tensor fixed by its role: the same for the pipeline and the reference."""
    seed = KIND_SEED[kind] * 10 ** 7 + request * 10 ** 6 + window * 10 ** 4 + step * 10 ** 2 + pass_
    return torch.randn(tuple(shape), generator=torch.Generator("cpu").manual_seed(seed))


def reference_ti2v(pipe, image, prompt, new_frames, window, steps, resample, guidance, request=0):
    """DESIGN 2.2, step by step. Returns the (1, C, 1 + N, h, w) latents: z0, then the N new ones."""
    unet = pipe.unet
    alpha_bar = pipe.scheduler.alphas_cumprod.double()
    final_alpha_bar = alpha_bar[0]  # the model's scheduler: set_alpha_to_one = False
    stride = pipe.scheduler.config.num_train_timesteps // steps
    offset = pipe.scheduler.config.steps_offset
    timesteps = [i * stride + offset for i in reversed(range(steps))]  # DDIM, "leading" spacing
    cond, _ = pipe.encode_prompt([prompt])
    uncond, _ = pipe.encode_prompt([""])
    z0 = pipe.encode_image([image], SIZE, SIZE)[:, :, None].double()      # (1, C, 1, h, w)
    K = window - 1                                                        # condition frames
    queue = [z0] * K                                                      # 1. Q = [z0] x K
    shape = (1, z0.shape[1], window, z0.shape[3], z0.shape[4])

    def ab(t):
        return alpha_bar[t] if t >= 0 else final_alpha_bar

    def q_sample(x0, t, eps):
        return ab(t).sqrt() * x0 + (1 - ab(t)).sqrt() * eps

    def eps_hat(x, t, w):  # classifier-free guidance, cond and uncond as separate evaluations
        e = [unet(x.float(), torch.tensor(t), encoder_hidden_states=c, return_dict=False)[0].double()
             for c in (uncond, cond)]
        return e[0] + w * (e[1] - e[0])

    new = []
    for n in range(new_frames):                                           # 2. one new frame per window
        w = float(guidance[n])
        T = timesteps[0]
        x = q_sample(queue[-1].expand(shape), T, keyed_noise(request, "init", n, 0, 0, shape).double())
        q = torch.cat(queue, dim=2)
        for i, t in enumerate(timesteps):
            t_prev = t - stride
            eps_q = keyed_noise(request, "queue", n, i, 0, q.shape).double()
            last_step = i == len(timesteps) - 1
            for p in range(1 + (0 if last_step else resample)):
                if p > 0:  # re-noise t' -> t
                    ratio = ab(t) / ab(t_prev)
                    x = ratio.sqrt() * x + (1 - ratio).sqrt() * keyed_noise(request, "renoise", n, i, p - 1, shape).double()
                x = x.clone()
                x[:, :, :K] = q_sample(q, t, eps_q)                       # replace the condition frames
                eps = eps_hat(x, t, w)
                x0_hat = (x - (1 - ab(t)).sqrt() * eps) / ab(t).sqrt()  # DDIM (eta = 0) to t'
                x = ab(t_prev).sqrt() * x0_hat + (1 - ab(t_prev)).sqrt() * eps
        last = x[:, :, -1:]                                               # the last frame's clean latent
        new.append(last)
        queue = queue[1:] + [last]                                        # push into Q, pop the front
    return torch.cat([z0] + new, dim=2)


CASES = [  # (new frames N, window F, steps T, resample r, guidance per new frame)
    (4, 3, 3, 1, [6.0, 12.0, 8.0, 10.0]),
    (5, 4, 2, 2, [12.0, 6.0, 6.0, 9.0, 11.0]),
    (3, 3, 4, 0, [9.0, 9.0, 9.0]),
]


@pytest.mark.parametrize("new_frames, window, steps, resample, guidance", CASES)
def test_pipeline_equals_the_design_reference(pipe, face, new_frames, window, steps, resample, guidance):
    assert new_frames > 1 and window - 1 >= 2  # the queue rolls and its order matters
    out = pipe(PROMPT, image=face, num_frames=new_frames + 1, window_size=window, num_inference_steps=steps,
               resample_steps=resample, guidance_scale=np.array(guidance), height=SIZE, width=SIZE,
               output_type="latent", noise_source=keyed_noise)
    expected = reference_ti2v(pipe, face, PROMPT, new_frames, window, steps, resample, guidance)
    torch.testing.assert_close(out.frames[0].double(), expected, atol=2e-4, rtol=1e-4)
    # NFE: T + r (T - 1) evaluations per window (no resampling at the last step), 2 samples each.
    assert out.nfe == [new_frames * (steps + resample * (steps - 1)) * 2]


def test_batched_requests_each_equal_their_reference(pipe, face):
    """Two requests with different T, r-free and resampled, sharing UNet calls."""
    guidance = [np.array([6.0, 12.0, 9.0]), np.array([11.0, 7.0, 8.0])]
    out = pipe([PROMPT, "a fearful face, the jaw drops"], image=[face, face[::-1].copy()], num_frames=4,
               window_size=3, num_inference_steps=[2, 4], resample_steps=1, guidance_scale=guidance,
               height=SIZE, width=SIZE, output_type="latent", noise_source=keyed_noise)
    for request, (prompt, image, steps) in enumerate(((PROMPT, face, 2), ("a fearful face, the jaw drops",
                                                                          face[::-1].copy(), 4))):
        expected = reference_ti2v(pipe, image, prompt, 3, 3, steps, 1, guidance[request], request=request)
        torch.testing.assert_close(out.frames[request].double(), expected, atol=2e-4, rtol=1e-4)


def test_resampling_changes_the_video_and_the_final_step_runs_once(pipe, face):
    records = []
    kw = dict(image=face, num_frames=3, window_size=3, num_inference_steps=3, guidance_scale=9.0, height=SIZE,
              width=SIZE, output_type="latent", noise_source=keyed_noise)
    plain = pipe(PROMPT, resample_steps=0, **kw).frames[0]
    resampled = pipe(PROMPT, resample_steps=2, callback_on_step=lambda r: records.append(
        (r["window"], r["step"], r["pass"], r["queue_noise"].clone())), **kw).frames[0]
    assert (plain - resampled).abs().max() > 1e-3
    per_step = {}
    for window, step, pass_, noise in records:
        per_step.setdefault((window, step), []).append((pass_, noise))
    for (window, step), passes in per_step.items():
        assert [p for p, _ in passes] == (list(range(3)) if step < 2 else [0])
        for _, noise in passes:  # one condition-frame draw per step, shared by its passes
            torch.testing.assert_close(noise, passes[0][1])
    assert len(per_step) == 2 * 3  # two windows of three steps
