"""Does a fitted miniature read its prompt? Three measurements on the demo dataset's people.

1. Text states: how far apart the text encoder puts two emotions' prompts, at the emotion's
   word (position 8: "<start> the pers on ' s face shows <emotion>") and at the last position,
   relative to the state's norm, and how far a prompt is from the empty (unconditional) prompt.
2. Denoising error by prompt: real 4-frame windows (starting at frames 0, 4, 10) of every
   expressive clip noised to t = 200 ... 950; the mean squared error of the UNet's x0 of the
   window's last frame with the clip's own prompt, the empty prompt and another emotion's prompt.
   A model that reads the text is more accurate with its own prompt than with the others.
3. Prompt swap: one reference frame per person, TI2V-Zero (T = 10, r = 0, `--w`, `--window`,
   `--condition-frames`) with each of the
   six expressive emotions' prompts and the same seed; the apex landmark offsets (dlib landmarks,
   translation removed, mean of the last 4 frames minus frame 0, pixels) are compared between
   prompts ("spread": mean distance to the person's mean offset, against the same for the real
   clips of the six emotions) and each generated clip is matched to the nearest real clip of that
   person ("nearest = prompt", chance 1/6).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_miniature_text.py [--model FOLDER] [--w 9]
        [--window 4] [--condition-frames K]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_miniature import real_clips  # noqa: E402

from argen_ray.ard.miniature import to_pixels  # noqa: E402
from argen_ray.ard.miniature_data import emotion_prompts  # noqa: E402
from argen_ray.ard.ti2v import TI2VZeroPipeline  # noqa: E402
from argen_ray.ard.tiny_models import miniature_t2v_path  # noqa: E402
from argen_ray.config import load_config  # noqa: E402

EXPRESSIVE = ["happy", "sad", "angry", "surprise", "disgust", "fear"]
EMOTION_WORD = 8


@torch.no_grad()
def state_separation(pipe) -> dict:
    states = pipe.encode_prompt([emotion_prompts(e)[0] for e in EXPRESSIVE] + [""])[0]
    out = {}
    for pos, name in ((EMOTION_WORD, "emotion_word"), (-1, "last")):
        s = states[:, pos]
        pairs = [float((s[i] - s[j]).norm()) for i in range(6) for j in range(i + 1, 6)]
        norm = float(s[:6].norm(dim=-1).mean())
        out[name] = {"between_emotions": float(np.mean(pairs)) / norm,
                     "prompt_vs_empty": float((s[:6] - s[6]).norm(dim=-1).mean()) / norm}
    return out


@torch.no_grad()
def denoising_error(pipe, real: np.ndarray, emotions: list[str]) -> list[dict]:
    from diffusers import DDPMScheduler

    sch = DDPMScheduler.from_config(pipe.scheduler.config)
    lat = pipe.vae.encode(to_pixels(real.reshape(-1, *real.shape[2:]))).latent_dist.mode() * pipe.vae.config.scaling_factor
    lat = lat.view(len(real), real.shape[1], *lat.shape[1:]).transpose(1, 2)
    idx = [i for i, e in enumerate(emotions) if e in EXPRESSIVE]
    prompts = {"own": [emotion_prompts(emotions[i])[0] for i in idx], "empty": [""] * len(idx),
               "other": [emotion_prompts(EXPRESSIVE[(EXPRESSIVE.index(emotions[i]) + 3) % 6])[0] for i in idx]}
    states = {k: pipe.encode_prompt(v)[0] for k, v in prompts.items()}
    g = torch.Generator().manual_seed(0)
    rows = []
    for start in (0, 4, 10):
        x0 = lat[idx, :, start:start + 4]
        for t in (200, 500, 800, 950):
            noise = torch.randn(x0.shape, generator=g)
            tt = torch.full((len(idx),), t)
            xt = sch.add_noise(x0, noise, tt)
            a = sch.alphas_cumprod[t]
            row = {"window_start": start, "t": t}
            for k, s in states.items():
                out = pipe.unet(xt, tt, encoder_hidden_states=s).sample
                x0p = a.sqrt() * xt - (1 - a).sqrt() * out if pipe.scheduler.config.prediction_type == "v_prediction" \
                    else (xt - (1 - a).sqrt() * out) / a.sqrt()
                row[k] = float(((x0p - x0)[:, :, -1] ** 2).mean())
            rows.append(row)
    return rows


def apex_offset(frames: np.ndarray) -> np.ndarray | None:
    from argen_ray.data.dynamics import tracked_landmarks

    p = tracked_landmarks(frames)
    if p is None:
        return None
    p = p - p.mean(axis=1, keepdims=True)
    return (p[-4:].mean(0) - p[0]).ravel()


def prompt_swap(pipe, fit, real: np.ndarray, emotions: list[str], people: int, w: float,
                condition_frames: int | None) -> dict:
    gen, ref = {}, {}
    for person in range(people):
        clips = [i for i in range(len(real)) if i // 7 == person]
        res = pipe([emotion_prompts(e)[0] for e in EXPRESSIVE], image=[real[clips[0], 0]] * 6,
                   num_frames=fit.clip_frames, num_inference_steps=10, guidance_scale=w, resample_steps=0,
                   window_size=fit.window, num_condition_frames=condition_frames, height=fit.size, width=fit.size,
                   generator=[torch.Generator().manual_seed(100 + person) for _ in EXPRESSIVE], output_type="uint8")
        for e, v in zip(EXPRESSIVE, res.frames):
            gen[(person, e)] = apex_offset(v)
        for i in clips:
            if emotions[i] in EXPRESSIVE:
                ref[(person, emotions[i])] = apex_offset(real[i])

    def spread(off: dict) -> float:
        out = []
        for person in range(people):
            vs = [off[(person, e)] for e in EXPRESSIVE if off.get((person, e)) is not None]
            if len(vs) > 1:
                vs = np.stack(vs)
                out.append(float(np.linalg.norm(vs - vs.mean(0), axis=1).mean()))
        return float(np.mean(out))

    hits = []
    for (person, e), g in gen.items():
        d = {f: np.linalg.norm(g - ref[(person, f)]) for f in EXPRESSIVE if ref.get((person, f)) is not None}
        if g is not None and d:
            hits.append(min(d, key=d.get) == e)
    return {"spread_generated_px": spread(gen), "spread_real_px": spread(ref),
            "nearest_real_is_prompt": float(np.mean(hits)), "clips": len(hits), "chance": 1 / 6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the miniature's)")
    parser.add_argument("--identities", type=int, default=4, help="demo dataset people (seed 0)")
    parser.add_argument("--w", type=float, default=9.0, help="guidance of the prompt-swap clips")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--window", type=int, default=None,
                        help="frames per UNet window of the prompt-swap clips (default: generator.fit.window)")
    parser.add_argument("--condition-frames", type=int, default=None,
                        help="K condition frames per window of the prompt-swap clips (default: window - 1)")
    parser.add_argument("--out", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fit = load_config(None, []).generator.fit
    fit = fit.model_copy(update={"window": args.window or fit.window})
    pipe = TI2VZeroPipeline.from_pretrained(str(args.model or miniature_t2v_path()))
    pipe.set_progress_bar_config(disable=True)
    real, emotions, _ = real_clips(fit, args.identities, 0)
    results = {"model": str(args.model or miniature_t2v_path()), "text_states": state_separation(pipe)}
    print(json.dumps(results), flush=True)
    results["denoising_error"] = denoising_error(pipe, real, emotions)
    for row in results["denoising_error"]:
        print(json.dumps(row), flush=True)
    results["prompt_swap"] = prompt_swap(pipe, fit, real, emotions, args.identities, args.w, args.condition_frames)
    print(json.dumps(results["prompt_swap"]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
