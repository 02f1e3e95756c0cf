"""Warp generator speed, from one run (numbers in docs/warp.md).

1. One keyframe: `FaceWarper.render` (triangle ids rasterised once, one `cv2.remap`) against
   scikit-image's `PiecewiseAffineTransform` + `warp` on the same mesh and the same target
   landmarks (the baseline). Both must give the same image inside the face; the script checks
   that before it reports speed.
2. One 16-frame clip per steps value T: wall time and NFE (keyframes solved) relative to T = 5.
3. The oracle evaluation's call: all 80 actions of one (state, seed) as 8-frame candidates, with
   dynamics measured on a small demo dataset (so clips carry noise and the reference is
   denoised): one call (clips that T >= 7 make alike rendered once, the reference denoised once)
   against the former way (one clip per request, the reference denoised for every clip, the
   baseline). Both must give the same frames; the script checks that before it reports speed.

    .venv/bin/python benchmarks/bench_warp.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data
from skimage.transform import PiecewiseAffineTransform, warp

from argen_ray.ard.generator import GenerationRequest, build_generator
from argen_ray.ard.warp import FaceWarper
from argen_ray.config.generator import GeneratorConfig
from argen_ray.data.demo.au_model import au_to_landmarks
from argen_ray.faces import detect_landmarks

SURPRISE = {1: 3.5, 2: 3.5, 5: 1.5, 26: 3.5}


def best_of(repeats: int, call) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return min(times)


def skimage_render(warper: FaceWarper, target: np.ndarray) -> np.ndarray:
    """The baseline: scikit-image's piecewise-affine warp over the same control points."""
    src = np.vstack([warper.landmarks, warper.ring])
    dst = np.vstack([target, warper.ring])
    tform = PiecewiseAffineTransform.from_estimate(dst, src)  # warp() wants the output -> input map
    out = warp(warper.image, tform, order=1, mode="reflect", preserve_range=True)
    return np.round(out).astype(np.uint8)


def keyframe_speed(repeats: int) -> None:
    image = data.astronaut()
    points = detect_landmarks(image).points.astype(np.float64)
    print("1. one keyframe (surprise apex), best of", repeats)
    print(f"{'side':>6} {'ours ms':>9} {'skimage ms':>11} {'speed-up':>9} {'mean |diff| in face':>20}")
    for side in (112, 256, 512):
        scale = side / image.shape[0]
        small = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
        warper = FaceWarper(small, points * scale)
        target = au_to_landmarks(warper.landmarks, SURPRISE)
        ours, base = warper.render(target), skimage_render(warper, target)
        # Compare inside the 68-point hull but outside the opened mouth (ours draws the cavity there;
        # scikit-image stretches the lips). It triangulates on its own, so edges differ slightly.
        hull = np.zeros((side, side), np.uint8)
        cv2.fillConvexPoly(hull, np.round(cv2.convexHull(target.astype(np.float32))).astype(np.int32).reshape(-1, 2), 1)
        cv2.fillPoly(hull, [np.round(target[48:60]).astype(np.int32)], 0)
        diff = float(np.abs(ours.astype(int) - base)[hull.astype(bool)].mean())
        if diff > 3.0:
            raise SystemExit(f"outputs disagree at {side}px (mean |diff| {diff:.2f}): not comparing speed")
        t_ours = best_of(repeats, lambda: warper.render(target))
        t_base = best_of(max(1, repeats // 2), lambda: skimage_render(warper, target))
        print(f"{side:>6} {1e3 * t_ours:>9.1f} {1e3 * t_base:>11.1f} {t_base / t_ours:>8.1f}x {diff:>20.2f}")


def steps_scaling(repeats: int) -> None:
    image = np.ascontiguousarray(data.astronaut())
    gen = build_generator(GeneratorConfig(backend="warp"))
    u = (np.arange(1, 16) - 0.5) / 15
    guidance = 6.0 + 6.0 * (u / u[-1]) ** 2
    gen.generate([GenerationRequest(image=image, prompt="", steps=1, guidance=guidance, emotion="surprise")])
    print("\n2. one 16-frame 512x512 clip per steps value T (landmarks cached), best of", repeats)
    print(f"{'T':>4} {'nfe':>4} {'ms':>8} {'time / time(T=5)':>17} {'nfe / nfe(T=5)':>15}")
    base = None
    for steps in (5, 10, 15, 20, 25):
        request = GenerationRequest(image=image, prompt="", steps=steps, guidance=guidance, emotion="surprise")
        nfe = gen.generate([request])[0].nfe
        t = best_of(repeats, lambda: gen.generate([request]))
        base = base or (t, nfe)
        print(f"{steps:>4} {nfe:>4} {1e3 * t:>8.1f} {t / base[0]:>17.2f} {nfe / base[1]:>15.2f}")


def evaluation_call(repeats: int) -> None:
    import itertools
    import tempfile

    from argen_ray.ard import warp as warp_module
    from argen_ray.ard.guidance import ActionSpace
    from argen_ray.data import load_dataset
    from argen_ray.data.demo import write_demo_dataset
    from argen_ray.data.dynamics import measure_dataset_dynamics, write_dynamics
    from argen_ray.data.video import read_video

    tmp = Path(tempfile.mkdtemp(prefix="bench-warp-"))
    root = write_demo_dataset(tmp / "demo", seed=0, num_identities=8, clips_per_identity=7, workers=2)
    dataset = load_dataset("dfew", root, fold=1)
    dynamics = write_dynamics(measure_dataset_dynamics(dataset), tmp / "dynamics.json")
    cfg = GeneratorConfig(backend="warp", warp={"dynamics": str(dynamics)})
    space = ActionSpace.from_config(cfg, num_frames=8)
    image = np.ascontiguousarray(read_video(dataset.records[0].source, [0])[0])  # a demo person, as in training
    requests = []
    for n, action in enumerate(itertools.product(*(range(int(k)) for k in space.nvec))):
        p = space.decode(np.array(action))
        requests.append(GenerationRequest(image=image, prompt="surprise", steps=p.steps, guidance=p.guidance, seed=7,
                                          emotion="surprise", aus={"AU01": 0.7, "AU02": 0.7, "AU26": 0.6},
                                          num_frames=8, request_id=str(n)))
    cached = warp_module._Reference.source

    def former(gen):  # one request per call, the reference denoised for every clip
        warp_module._Reference.source = property(lambda ref: warp_module.denoised(ref.image))
        try:
            return [gen.generate([r])[0] for r in requests]
        finally:
            warp_module._Reference.source = cached

    gen = build_generator(cfg)
    shared, alone = gen.generate(requests), former(gen)
    if not all(np.array_equal(a.frames, b.frames) for a, b in zip(shared, alone)):
        raise SystemExit("the shared call's clips differ from one call per clip: not comparing speed")
    distinct = len({a.frames.tobytes() for a in shared})
    t_former = best_of(repeats, lambda: former(build_generator(cfg)))
    t_shared = best_of(repeats, lambda: build_generator(cfg).generate(requests))
    print(f"\n3. the oracle evaluation's call: 80 actions, 8-frame clips ({distinct} distinct), best of {repeats}")
    print(f"former (a call per clip, denoise per clip) {1e3 * t_former / 80:.1f} ms per clip; one call "
          f"{1e3 * t_shared / 80:.1f} ms per clip; speed-up {t_former / t_shared:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    keyframe_speed(args.repeats)
    steps_scaling(args.repeats)
    evaluation_call(args.repeats)


if __name__ == "__main__":
    main()
