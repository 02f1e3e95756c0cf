"""Where the miniature loses faces between the VAE round trip and TI2V-Zero's clips (numbers in
docs/generator.md, "Where generated faces are lost").

Haar face presence (the reward's detector) per frame index, on one real clip per identity and
emotion (bench_miniature.py's clips and prompts):
- `real`, `vae`: the real frames and their VAE round trip (the ceiling of any latent model);
- `teacher_forced`: every new frame made by the same window denoising TI2V-Zero runs (T steps,
  constant w), but from the REAL previous K latents: what one window does without drift;
- `free_running`: TI2V-Zero itself (the queue holds the generated frames), with K condition frames;
- `x0_t<t>`: the UNet's one-shot x0 of a real window's last frame noised to t (no sampler at all).
A free-running clip that starts at the teacher-forced level and falls along the clip loses its
faces to drift (windows feeding on generated frames), not to the UNet's single-window quality.

    .venv/bin/python benchmarks/bench_miniature_drift.py --model FOLDER [--identities 2] [--T 10] [--w 9]
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch
from bench_miniature import generate, real_clips, vae_reconstructions
from diffusers import DDIMScheduler, DDPMScheduler

from argen_ray.ard.miniature_data import composed_prompt
from argen_ray.ard.rewards import RewardScorer, gray_frames
from argen_ray.ard.ti2v import TI2VZeroPipeline, _Job
from argen_ray.ard.tiny_models import miniature_t2v_path
from argen_ray.config import load_config


@torch.no_grad()
def teacher_forced(pipe, latents, prompts, window: int, steps: int, w: float) -> list[np.ndarray]:
    """Each frame n >= 1 from one window whose K = window - 1 condition frames are the real
    latents n-K .. n-1 (the reference repeated before the clip starts)."""
    k = window - 1
    cond, _ = pipe.encode_prompt(prompts)
    uncond, _ = pipe.encode_prompt([""])
    videos = []
    for i in range(len(latents)):
        frames = [latents[i:i + 1, :, :1]]
        for n in range(1, latents.shape[2]):
            queue = latents[i:i + 1, :, [max(0, m) for m in range(n - k, n)]]
            job = _Job(i, DDIMScheduler.from_config(pipe.scheduler.config), steps, torch.full((1,), w),
                       cond[i:i + 1], uncond if w > 1 else None, queue, 1, window, 0,
                       torch.Generator().manual_seed(1000 * i + n))
            job.start_window((1, latents.shape[1], window, *latents.shape[3:]))
            while not job.done:
                pipe._denoise_group([job], job.timestep, False, None)
            frames.append(job.new_latents())
        videos.append(np.round(pipe.decode_latents(torch.cat(frames, dim=2)).numpy() * 255).astype(np.uint8))
    return videos


@torch.no_grad()
def one_shot_x0(pipe, latents, prompts, window: int, t: int) -> list[np.ndarray]:
    """Per clip: the decoded x0 prediction of the last frame of every real window noised to t."""
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    alpha = scheduler.alphas_cumprod[t]
    cond, _ = pipe.encode_prompt(prompts)
    generator = torch.Generator().manual_seed(t)
    out = []
    for i in range(len(latents)):
        windows = torch.stack([latents[i, :, s:s + window] for s in range(latents.shape[2] - window + 1)])
        noise = torch.randn(windows.shape, generator=generator)
        xt = scheduler.add_noise(windows, noise, torch.full((len(windows),), t))
        pred = pipe.unet(xt, t, encoder_hidden_states=cond[i:i + 1].expand(len(windows), -1, -1)).sample
        x0 = alpha.sqrt() * xt - (1 - alpha).sqrt() * pred if scheduler.config.prediction_type == "v_prediction" \
            else (xt - (1 - alpha).sqrt() * pred) / alpha.sqrt()
        out.append(np.round(pipe.decode_latents(x0[:, :, -1:].transpose(0, 2)).numpy() * 255).astype(np.uint8))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the miniature's)")
    parser.add_argument("--identities", type=int, default=2)
    parser.add_argument("--identity-seed", type=int, default=0)
    parser.add_argument("--T", type=int, default=10)
    parser.add_argument("--w", type=float, default=9.0)
    parser.add_argument("--condition-frames", default="3", help="comma-separated K of the free-running clips")
    parser.add_argument("--x0-t", default="50,200,400,700,950", help="timesteps of the one-shot x0 ('' for none)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(None, [])
    fit = cfg.generator.fit
    pipe = TI2VZeroPipeline.from_pretrained(str(args.model or miniature_t2v_path()))
    pipe.set_progress_bar_config(disable=True)
    scorer = RewardScorer(cfg.reward.model_copy(update={"w_e": 0.0}), 25)
    real, emotions, aus = real_clips(fit, args.identities, args.identity_seed)
    prompts = [composed_prompt(emotions[i], aus[i], np.random.default_rng(i)) for i in range(len(real))]
    x = torch.from_numpy(real.reshape(-1, *real.shape[2:])).float().div(127.5).sub(1).permute(0, 3, 1, 2)
    with torch.no_grad():
        latents = pipe.vae.encode(x).latent_dist.mode() * pipe.vae.config.scaling_factor
    latents = latents.view(len(real), real.shape[1], *latents.shape[1:]).transpose(1, 2)

    def report(what: str, videos) -> None:
        per_frame = np.mean([scorer.face_presence(v, gray_frames(v))[1] for v in videos], axis=0)
        print(json.dumps({"what": what, "face": round(float(per_frame.mean()), 3),
                          "per_frame": [round(float(p), 2) for p in per_frame],
                          "load_average": round(os.getloadavg()[0], 1)}), flush=True)

    report("real", real)
    report("vae", vae_reconstructions(pipe, real))
    report(f"teacher_forced T={args.T} w={args.w}", teacher_forced(pipe, latents, prompts, fit.window, args.T, args.w))
    for k in (int(v) for v in args.condition_frames.split(",")):
        report(f"free_running K={k} T={args.T} w={args.w}",
               generate(pipe, fit, real, emotions, aus, args.T, 0, args.w, k))
    for t in (int(v) for v in args.x0_t.split(",") if v):
        report(f"x0_t{t}", one_shot_x0(pipe, latents, prompts, fit.window, t))


if __name__ == "__main__":
    main()
