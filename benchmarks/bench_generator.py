"""Generator cost, from one run on the tiny model (numbers in docs/generator.md).

1. Classifier-free guidance: cond + uncond in ONE batched UNet call against two separate calls
   (the original TI2V-Zero), same video; wall-time ratio.
2. A group of 4 candidates (the policy's G = 4 actions for one state) in one batched pipeline
   call against 4 sequential calls: UNet calls and wall time. Once with 4 different actions
   (timesteps shared where the schedules coincide), once with 4 equal step counts.
3. NFE per 16-frame video: TI2V-Zero's face setting (10 steps, 4 resamples, 15 new frames)
   against every step count of the policy's action set, with r = 0 and r = 4, by the formula
   NFE = windows * (T + r * (T - 1)) * 2 (no resampling at the last step; `ti2v_nfe`), which the
   timed runs above check against the counted NFE.

Each comparison is timed in the same run, alternating the two sides, best of --repeats.

    .venv/bin/python benchmarks/bench_generator.py [--frames 6] [--size 64] [--repeats 2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from argen_ray.ard.guidance import guidance_curve
from argen_ray.ard.ti2v import TI2VZeroPipeline, ti2v_nfe as nfe_formula
from argen_ray.ard.tiny_models import tiny_t2v_path
from argen_ray.config import load_config

PROMPT = "a person with a surprised face, the inner brows rise strongly and the jaw drops"


def timed(call):
    start = time.perf_counter()
    out = call()
    return time.perf_counter() - start, out


def best_of(repeats: int, *calls):
    """Alternate the calls `repeats` times; best wall time and last output of each."""
    best, outs = [float("inf")] * len(calls), [None] * len(calls)
    for _ in range(repeats):
        for i, call in enumerate(calls):
            seconds, outs[i] = timed(call)
            best[i] = min(best[i], seconds)
    return best, outs


def plot_curves(gen_cfg, target: str) -> None:
    """w_n over the 15 new frames for every (alpha, beta) of the action set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    alphas, betas = gen_cfg.action_space.alpha, gen_cfg.action_space.beta
    fig, axes = plt.subplots(1, len(alphas), figsize=(3.2 * len(alphas), 3), sharey=True)
    n = gen_cfg.num_frames - 1
    for ax, alpha in zip(np.atleast_1d(axes), alphas):
        for beta in betas:
            ax.plot(range(1, n + 1), guidance_curve(n, alpha, beta, gen_cfg.w_min, gen_cfg.w_max), marker=".",
                    label=f"beta={beta:g}")
        ax.axhline(9.0, color="gray", lw=0.8, ls="--")  # TI2V-Zero's constant guidance
        ax.set_title(f"alpha={alpha:g}")
        ax.set_xlabel("generated frame n")
    np.atleast_1d(axes)[0].set_ylabel("guidance w_n")
    np.atleast_1d(axes)[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    print(f"guidance curves -> {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=6, help="video frames incl. the reference (16 = full clip)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--plot", default=None, metavar="PNG", help="also plot the action set's guidance curves")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(None, [])
    if args.plot:
        plot_curves(cfg.generator, args.plot)
    pipe = TI2VZeroPipeline.from_pretrained(tiny_t2v_path()).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    face = (np.random.default_rng(0).random((96, 80, 3)) * 255).astype(np.uint8)
    new = args.frames - 1
    base = dict(image=face, num_frames=args.frames, window_size=cfg.generator.window, height=args.size,
                width=args.size, output_type="latent")
    print(f"tiny model, {args.frames} frames ({new} new, window {cfg.generator.window}), {args.size}x{args.size}, "
          f"torch threads {args.threads}, best of {args.repeats}\n")

    # 1. CFG in one call vs two.
    run = lambda split: pipe(PROMPT, num_inference_steps=5, guidance_scale=9.0,  # noqa: E731
                             generator=torch.Generator().manual_seed(0), split_cfg=split, **base)
    (t_one, t_two), (one, two) = best_of(args.repeats, lambda: run(False), lambda: run(True))
    assert one.nfe == two.nfe == [nfe_formula(new, 5, 0)]
    assert torch.allclose(one.frames[0], two.frames[0], atol=1e-4)
    print("1. classifier-free guidance, T=5")
    print(f"   one batched call : {one.unet_calls:4d} UNet calls  {t_one:7.2f} s")
    print(f"   two calls        : {two.unet_calls:4d} UNet calls  {t_two:7.2f} s")
    print(f"   speed-up {t_two / t_one:.2f}x  (same NFE {one.nfe[0]}, same video)\n")

    # 2. A group of 4 candidates: batched vs sequential.
    print("2. a group of G=4 candidates")
    for label, actions in (("4 different actions", [(10, 1.0, 1.0), (5, 2.0, 1.0), (15, 1.0, 2.0), (20, 3.0, 3.0)]),
                           ("4 x T=10", [(10, 1.0, 1.0), (10, 2.0, 1.0), (10, 1.0, 2.0), (10, 3.0, 3.0)])):
        curves = [guidance_curve(new, a, b, cfg.generator.w_min, cfg.generator.w_max) for _, a, b in actions]
        steps = [t for t, _, _ in actions]
        gens = lambda: [torch.Generator().manual_seed(s) for s in range(4)]  # noqa: E731
        batched = lambda: pipe([PROMPT] * 4, num_inference_steps=steps, guidance_scale=curves,  # noqa: E731
                               generator=gens(), **base)
        sequential = lambda: [pipe(PROMPT, num_inference_steps=t, guidance_scale=w,  # noqa: E731
                                   generator=g, **base) for t, w, g in zip(steps, curves, gens())]
        (t_b, t_s), (b, s) = best_of(args.repeats, batched, sequential)
        assert b.nfe == [nfe_formula(new, t, 0) for t in steps] == [o.nfe[0] for o in s]
        for x, y in zip(b.frames, s):
            assert torch.allclose(x, y.frames[0], atol=1e-3)
        calls_s = sum(o.unet_calls for o in s)
        print(f"   {label:20s} T={steps}: batched {b.unet_calls:4d} UNet calls {t_b:7.2f} s | sequential "
              f"{calls_s:4d} calls {t_s:7.2f} s | calls {calls_s / b.unet_calls:.2f}x fewer, "
              f"wall {t_s / t_b:.2f}x faster")
    per_nfe = t_one / one.nfe[0]
    print(f"\n   ({per_nfe * 1e3:.1f} ms per UNet sample-evaluation here, batched CFG)\n")

    # 3. NFE per 16-frame video.
    face_setting = nfe_formula(15, 10, 4)
    print("3. NFE per 16-frame video (15 new frames), NFE = 15 * (T + r * (T-1)) * 2")
    print(f"   TI2V-Zero face setting T=10, r=4: NFE {face_setting}")
    for r in (0, 4):
        row = ", ".join(f"T={t}: {nfe_formula(15, t, r)} ({face_setting / nfe_formula(15, t, r):.1f}x)"
                        for t in cfg.generator.action_space.steps)
        print(f"   policy actions, r={r}: {row}")
    print("   (ratio = TI2V-Zero face setting NFE (r=4) / action NFE; compare at the same r=4: the r=0 row "
          "also drops resampling)")


if __name__ == "__main__":
    main()
