"""How much of a training clip's motion can the prompt explain? Measured on the miniature's own
training pool (generator.fit's identities, every emotion) in a fitted model's latent space.

Per frame f: the latent change from the clip's frame 0 (what TI2V-Zero conditions on), its mean
squared size, and the share of it that the clip's emotion explains (the per-emotion mean change,
weighted by the emotion's share of clips; the most a prompt naming the emotion can tell a UNet
that already sees frame 0). The rest is the head's sway, the renderer's noise and how each
person shows the emotion. `--head-sway` renders the pool as `generator.fit.head_sway` would.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_miniature_motion.py [--model FOLDER]
        [--head-sway 1.0] [--identities 80] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from argen_ray.ard.miniature import to_pixels
from argen_ray.ard.miniature_data import ClipPool
from argen_ray.ard.tiny_models import miniature_t2v_path
from argen_ray.config import load_config

FRAMES = (1, 2, 4, 8, 12, 15)


@torch.no_grad()
def latents(vae, frames: np.ndarray) -> np.ndarray:
    """(N, F', D) scaled latent means of frames 0 and FRAMES of every clip, flattened."""
    picked = frames[:, (0, *FRAMES)]
    flat = picked.reshape(-1, *picked.shape[2:])
    out = torch.cat([vae.encode(to_pixels(flat[i:i + 128])).latent_dist.mode() for i in range(0, len(flat), 128)])
    return (out * vae.config.scaling_factor).reshape(len(frames), picked.shape[1], -1).numpy()


def explained_motion(lat: np.ndarray, emotions: list[str]) -> list[dict]:
    emotions = np.asarray(emotions)
    rows = []
    for k, f in enumerate(FRAMES, 1):
        delta = lat[:, k] - lat[:, 0]
        size = float((delta ** 2).sum(axis=1).mean())
        explained = sum(float((emotions == e).mean() * (delta[emotions == e].mean(axis=0) ** 2).sum())
                        for e in sorted(set(emotions)))
        rows.append({"frame": f, "motion_from_frame0": size, "explained_by_emotion": explained / size})
    return rows


def main() -> None:
    from diffusers import AutoencoderKL

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder whose VAE encodes (default: the miniature's)")
    parser.add_argument("--head-sway", type=float, default=1.0, help="generator.fit.head_sway of the rendered pool")
    parser.add_argument("--identities", type=int, default=None, help="people (default: generator.fit.num_identities)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fit = load_config(None, []).generator.fit
    fit = fit.model_copy(update={"head_sway": args.head_sway, "num_identities": args.identities or fit.num_identities})
    pool = ClipPool.render(fit)
    model = Path(args.model or miniature_t2v_path())
    rows = explained_motion(latents(AutoencoderKL.from_pretrained(model / "vae").eval(), pool.frames), pool.emotions)
    for row in rows:
        print(f"frame {row['frame']:2d} - frame 0: motion {row['motion_from_frame0']:6.2f}, "
              f"explained by the emotion {row['explained_by_emotion']:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"model": str(model), "head_sway": args.head_sway,
                                              "identities": fit.num_identities, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
