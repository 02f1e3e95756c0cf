"""The miniature's quality and expression as functions of T, r and a constant guidance w
(numbers and plot in docs/generator.md, "The miniature").

TI2V-Zero through `TI2VZeroPipeline.from_pretrained` (the ti2v backend's path) on identities the
fit did not see (`--identity-seed 0`: the demo dataset's people, the pipeline's references): for
every emotion, one rendered real clip per identity gives the reference (its frame 0), the prompt
(ASI's composition adapted to the clip's AU vector, as the fit composes them) and the real side
of each comparison. Per setting:
- R_q (the reward suite's quality reward) and face presence (Haar), overall and of the scarce
  classes' clips;
- expression strength, generated / real: DESIGN 2.5's expression-motion ratio (dlib landmarks,
  head pose removed, apex displacement from frame 0; per class the median generated over the
  median real) per class and its median over the expressive classes (`landmark_ratio`), and the
  same on pixels (mean absolute change from frame 0, largest mean over L = ceil(F/4) frames,
  median over clips; `expression_ratio`), which also counts flicker and drift;
- per-class FVD (I3D logits) of the generated clips against the real clips (--fvd).
Once per run, the same per-class landmark ratio of the VAE's round trip of the real clips
(`vae_reconstruction_landmark_ratio_per_class`): the motion any model in this latent space can show.
Sampling time of one 16-frame clip at T = 10, r = 0, w = 9 is timed alone (best of 2).
`--vae-only` stops after the real frames' and the VAE round trip's face presence (cheap: the
first check of a new VAE).

    .venv/bin/python benchmarks/bench_miniature.py [--model FOLDER] [--identities 2] [--fvd] [--vae-only]
        [--condition-frames K]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from argen_ray.ard.miniature import to_pixels
from argen_ray.ard.miniature_data import clip_au_vector, composed_prompt
from argen_ray.ard.rewards import RewardScorer, gray_frames
from argen_ray.ard.ti2v import TI2VZeroPipeline
from argen_ray.ard.tiny_models import miniature_t2v_path
from argen_ray.config import load_config
from argen_ray.data.labels import EMOTIONS

SCARCE = ("surprise", "disgust", "fear")

SWEEPS = {"T": [5, 10, 15, 25], "r": [0, 2, 4], "w": [1.0, 3.0, 6.0, 9.0, 12.0]}
BASE = {"T": 10, "r": 0, "w": 9.0}


def apex_displacement(frames: np.ndarray) -> float:
    d = np.abs(frames.astype(np.float32) - frames[:1].astype(np.float32)).mean(axis=(1, 2, 3)) / 255.0
    hold = math.ceil(len(frames) / 4)
    return float(max(d[i:i + hold].mean() for i in range(len(d) - hold + 1)))


def real_clips(fit, identities: int, seed: int) -> tuple[np.ndarray, list[str], list[dict]]:
    """Frames, emotions and AU vectors of one rendered clip per identity and emotion."""
    from argen_ray.data.demo.clips import ClipPlan, make_identities, synthesize_clip

    people = make_identities(seed, identities)
    plans = [ClipPlan(clip_id=1 + 7 * i + j, identity=i, emotion=e, fold=0)
             for i in range(identities) for j, e in enumerate(EMOTIONS)]
    clips = [synthesize_clip(p, people[p.identity], seed, fit.clip_frames, fit.size) for p in plans]
    return np.stack([c.frames for c in clips]), [p.emotion for p in plans], [clip_au_vector(c.aus) for c in clips]


def landmark_displacement(frames: np.ndarray) -> float | None:
    """DESIGN 2.5's apex displacement (validity.py's): dlib landmarks, head pose removed, the
    largest mean landmark displacement from frame 0 in IOD units; None when frame 0 shows no face."""
    from argen_ray.data.dynamics import expression_curve, tracked_landmarks

    points = tracked_landmarks(frames)
    return None if points is None else float(expression_curve(points).max())


def class_ratios(generated: list, real: list, emotions: list[str]) -> dict[str, float]:
    """Per expressive class: median generated displacement / median real displacement."""
    out = {}
    for e in sorted(set(emotions) - {"neutral"}):
        g = [v for v, x in zip(generated, emotions) if x == e and v is not None]
        r = [v for v, x in zip(real, emotions) if x == e and v is not None]
        if g and r and np.median(r) > 0:
            out[e] = float(np.median(g) / np.median(r))
    return out


@torch.no_grad()
def vae_reconstructions(pipe, real: np.ndarray) -> np.ndarray:
    """The VAE's decode(encode(frame)) of every real frame: the best any latent model can show."""
    out = pipe.vae.decode(pipe.vae.encode(to_pixels(real.reshape(-1, *real.shape[2:]))).latent_dist.mode()).sample
    return ((out.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy().reshape(real.shape)


def generate(pipe, fit, real, emotions, aus, T, r, w, condition_frames=None) -> list[np.ndarray]:
    out = []
    for start in range(0, len(real), 7):
        chunk = range(start, min(start + 7, len(real)))
        res = pipe([composed_prompt(emotions[i], aus[i], np.random.default_rng(i)) for i in chunk], image=[real[i, 0] for i in chunk],
                   num_frames=fit.clip_frames, num_inference_steps=T, guidance_scale=w, resample_steps=r,
                   window_size=fit.window, num_condition_frames=condition_frames, height=fit.size, width=fit.size,
                   generator=[torch.Generator().manual_seed(100 + i) for i in chunk], output_type="uint8")
        out.extend(res.frames)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the miniature's)")
    parser.add_argument("--identities", type=int, default=2)
    parser.add_argument("--identity-seed", type=int, default=104729)
    parser.add_argument("--fvd", action="store_true", help="per-class FVD with I3D (slow on CPU)")
    parser.add_argument("--vae-only", action="store_true", help="only the real and VAE round-trip face presence")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--emotions", default=",".join(EMOTIONS), help="comma-separated classes")
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (default: generator.fit.clip_frames)")
    parser.add_argument("--condition-frames", type=int, default=None,
                        help="K condition frames per window (generator.condition_frames; default: window - 1)")
    parser.add_argument("--window", type=int, default=None,
                        help="frames per UNet window at sampling (generator.window; default: generator.fit.window)")
    for knob, values in SWEEPS.items():
        parser.add_argument(f"--{knob}", default=",".join(map(str, values)), help=f"{knob} values to sweep")
    parser.add_argument("--out", default="docs/miniature_curves.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(None, [])
    fit = cfg.generator.fit.model_copy(update={"clip_frames": args.frames or cfg.generator.fit.clip_frames,
                                                "window": args.window or cfg.generator.fit.window})
    emotion_set = args.emotions.split(",")
    sweeps = {"T": [int(v) for v in args.T.split(",")], "r": [int(v) for v in args.r.split(",")],
              "w": [float(v) for v in args.w.split(",")]}
    folder = Path(args.model or miniature_t2v_path())
    pipe = TI2VZeroPipeline.from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    scorer = RewardScorer(cfg.reward.model_copy(update={"w_e": 0.0}), 25)
    real, emotions, aus = real_clips(fit, args.identities, args.identity_seed)
    keep = [i for i, e in enumerate(emotions) if e in emotion_set]
    real, emotions, aus = real[keep], [emotions[i] for i in keep], [aus[i] for i in keep]
    face = lambda videos: float(np.mean([scorer.face_presence(v, gray_frames(v))[0] for v in videos]))  # noqa: E731
    reconstructed = vae_reconstructions(pipe, real)
    real_face = {"face": face(real), "vae_reconstruction_face": face(reconstructed),
                 "identity_seed": args.identity_seed, "identities": args.identities,
                 "load_average": os.getloadavg()[0]}
    if args.vae_only:
        print(json.dumps(real_face))
        return
    expressive = [i for i, e in enumerate(emotions) if e != "neutral"]
    real_disp = {e: np.median([apex_displacement(real[i]) for i in range(len(real)) if emotions[i] == e])
                 for e in set(emotions)}

    real_landmarks = [landmark_displacement(v) for v in real]
    # the VAE's round trip of the real clips: how much of each class's motion any latent model can show
    vae_landmark_ratio = class_ratios([landmark_displacement(v) for v in reconstructed], real_landmarks, emotions)
    timings, cpu = [], []
    for _ in range(2):  # CPU seconds beside wall: on a shared machine the wall time mostly measures the load
        t0, c0 = time.perf_counter(), time.process_time()
        generate(pipe, fit, real[:1], emotions[:1], aus[:1], 10, 0, 9.0, args.condition_frames)
        timings.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    results = {"model": str(folder), "emotions": emotion_set, "frames": fit.clip_frames,
               "window": fit.window, "condition_frames": args.condition_frames or fit.window - 1,
               "sample_s_T10_r0": min(timings), "sample_cpu_s_T10_r0": min(cpu), "threads": args.threads,
               **{k: v for k, v in real_face.items() if k not in ("face", "vae_reconstruction_face")},
               "real": {"r_q": float(np.mean([scorer.quality(gray_frames(v))[0]["r_q"] for v in real])),
                        "face": real_face["face"], "vae_reconstruction_face": real_face["vae_reconstruction_face"],
                        "landmark_displacement": real_landmarks,
                        "vae_reconstruction_landmark_ratio_per_class": vae_landmark_ratio},
               "sweeps": {}}
    print(json.dumps({k: v for k, v in results.items() if k != "sweeps"}), flush=True)
    i3d = real_feats = None
    if args.fvd:
        from argen_ray.metrics.fvd import i3d_features
        from argen_ray.metrics.i3d import load_i3d

        i3d = load_i3d()
        real_feats = i3d_features(list(real), model=i3d, progress=False)
    measured: dict[tuple, dict] = {}  # the base setting recurs in every sweep: measured once
    for knob, values in sweeps.items():
        rows = []
        for value in values:
            setting = {**BASE, knob: value}
            key = (setting["T"], setting["r"], setting["w"])
            if key in measured:
                rows.append({knob: value, **{k: v for k, v in measured[key].items() if k not in BASE}})
                continue
            t0 = time.perf_counter()
            videos = generate(pipe, fit, real, emotions, aus, setting["T"], setting["r"], setting["w"],
                              args.condition_frames)
            seconds = (time.perf_counter() - t0) / len(videos)
            # per frame index: where along the clip faces are lost (windows feed on generated frames)
            per_frame = np.mean([scorer.face_presence(v, gray_frames(v))[1] for v in videos], axis=0)
            row = {knob: value, "s_per_clip": seconds,
                   "r_q": float(np.mean([scorer.quality(gray_frames(v))[0]["r_q"] for v in videos])),
                   "face": float(per_frame.mean()), "face_new_frames": float(per_frame[1:].mean()),
                   "face_per_frame": [round(float(p), 3) for p in per_frame],
                   "face_scarce": face([v for v, e in zip(videos, emotions) if e in SCARCE] or videos),
                   "expression_ratio": float(np.median([apex_displacement(videos[i]) / real_disp[emotions[i]]
                                                        for i in expressive])),
                   "neutral_displacement": float(np.mean([apex_displacement(videos[i]) for i in range(len(videos))
                                                          if emotions[i] == "neutral"]))}
            per_class = class_ratios([landmark_displacement(v) for v in videos], real_landmarks, emotions)
            row["landmark_ratio_per_class"] = per_class
            row["landmark_ratio"] = float(np.median(list(per_class.values()))) if per_class else None
            if i3d is not None:
                from argen_ray.metrics.fvd import grouped_frechet_distance, i3d_features

                feats = i3d_features(videos, model=i3d, progress=False)
                grouped = grouped_frechet_distance(feats, real_feats, emotions, emotions)
                row["fvd_per_class"] = grouped.per_group
                row["fvd_mean"] = grouped.value
            measured[key] = row
            rows.append(row)
            print(json.dumps(row), flush=True)
        results["sweeps"][knob] = rows
    Path(args.out).write_text(json.dumps(results, indent=1))
    plot(results, Path(args.out).with_suffix(".png"))
    print(json.dumps({k: v for k, v in results.items() if k != "sweeps"}))


def plot(results: dict, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ["r_q", "face", "landmark_ratio", "expression_ratio"] + (["fvd_mean"] if "fvd_mean" in results["sweeps"]["T"][0] else [])
    fig, axes = plt.subplots(len(metrics), 3, figsize=(11, 2.8 * len(metrics)), squeeze=False)
    for col, (knob, rows) in enumerate(results["sweeps"].items()):
        for row_i, metric in enumerate(metrics):
            ax = axes[row_i][col]
            ax.plot([r[knob] for r in rows], [np.nan if r[metric] is None else r[metric] for r in rows], "o-")
            ax.set_xlabel(knob)
            ax.set_ylabel(metric)
    fig.suptitle("miniature: quality and expression vs T (r=0, w=9), r (T=10, w=9), w (T=10, r=0)")
    fig.tight_layout()
    fig.savefig(target, dpi=90)


if __name__ == "__main__":
    main()
