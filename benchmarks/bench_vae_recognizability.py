"""How recognizable can any generator in a VAE's latent space be? The recognizer's recall on the VAE's
round trip of the real test clips (docs/generator.md, "v7").

Recognizability (DESIGN 2.5) is the original-only recognizer's recall on the generated clips. Every
generated frame is a VAE decode, so the same recognizer's recall on decode(encode(real test clip))
bounds it from above for a generator that reproduced the real clips exactly. Per scarce class and
(fold, seed) pair of a finished run, with that pair's original-only checkpoint:
- `real_64`: the real test clips at the generator's size (what a perfect latent model would feed the
  recognizer);
- `vae`: their VAE round trip through `--model`'s autoencoder;
- `blur_<sigma>` (`--blur`): `real_64` under a Gaussian blur, to show how much the recognizer's
  recall rests on fine detail;
plus face presence (the reward's detector) and the reward's per-frame quality of `real_64` and `vae`.

    .venv/bin/python benchmarks/bench_vae_recognizability.py --run runs/local-diffusion \
        [--model argen_ray/assets/miniature] [--blur 1,1.5,2] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_miniature import vae_reconstructions  # noqa: E402

from argen_ray.ard.rewards import RewardScorer, gray_frames  # noqa: E402
from argen_ray.ard.ti2v import TI2VZeroPipeline  # noqa: E402
from argen_ray.ard.tiny_models import miniature_t2v_path  # noqa: E402
from argen_ray.config import load_config  # noqa: E402
from argen_ray.data.labels import EMOTIONS  # noqa: E402
from argen_ray.data.loading import open_dataset  # noqa: E402
from argen_ray.data.records import ClipRecord  # noqa: E402
from argen_ray.data.video import read_video, write_mp4  # noqa: E402
from argen_ray.recognition.train import load_checkpoint, predict  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished run directory (its config.resolved.yaml, "
                                                      "dataset and recognition checkpoints)")
    parser.add_argument("--model", default=None, help="model folder whose VAE to use (default: the miniature's)")
    parser.add_argument("--blur", default="", help="comma-separated Gaussian sigmas (pixels) for blur_<sigma>")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="JSON file (default: print only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    cfg = load_config(str(run / "config.resolved.yaml"), [])
    cfg = cfg.model_copy(update={"run_dir": str(run)})  # the run's own dataset, wherever the run was made
    size = cfg.generator.height
    scarce = cfg.data.scarce_classes
    folder = str(args.model or miniature_t2v_path())
    pipe = TI2VZeroPipeline.from_pretrained(folder)
    scorer = RewardScorer(cfg.reward.model_copy(update={"w_e": 0.0}), 25)
    sigmas = [float(s) for s in args.blur.split(",") if s]
    hits: dict[str, Counter] = {}
    totals: Counter = Counter()
    frames_stats: dict[str, list] = {"face_real_64": [], "face_vae": [], "quality_real_64": [], "quality_vae": []}
    pairs = [(f, s) for f in cfg.recognition.folds for s in cfg.recognition.seeds]
    with tempfile.TemporaryDirectory() as tmp:
        for fold, seed in pairs:
            dataset = open_dataset(cfg.model_copy(update={"data": cfg.data.model_copy(update={"fold": fold})}))
            test = [r for r in dataset.split("test") if EMOTIONS[r.label] in scarce]
            checkpoint = run / "recognition" / "checkpoints" / f"{cfg.recognition.models[0]}_fold{fold}_seed{seed}_original.pt"
            model, meta = load_checkpoint(checkpoint)
            rc = cfg.recognition.model_copy(update={"num_segments": meta["num_segments"], "image_size": meta["image_size"]})
            variants: dict[str, list[ClipRecord]] = {}
            for rec in test:
                real = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in read_video(rec.source)])
                vae = vae_reconstructions(pipe, real[None])[0]
                versions = {"real_64": real, "vae": vae,
                            **{f"blur_{s:g}": np.stack([cv2.GaussianBlur(f, (0, 0), s) for f in real]) for s in sigmas}}
                for name, frames in versions.items():
                    path = write_mp4(Path(tmp) / f"{name}_{fold}_{seed}_{rec.clip_id}.mp4", frames, lossless=True)
                    variants.setdefault(name, []).append(ClipRecord(rec.clip_id, path, rec.label, split="test"))
                for name, frames in (("real_64", real), ("vae", vae)):
                    gray = gray_frames(frames)
                    frames_stats[f"face_{name}"].append(scorer.face_presence(frames, gray)[0])
                    frames_stats[f"quality_{name}"].append(scorer.quality(gray)[0]["r_q_quality"])
            for name, records in variants.items():
                y_true, y_pred = predict(model, records, rc, progress=False)
                for t, p in zip(y_true, y_pred):
                    hits.setdefault(name, Counter())[EMOTIONS[t]] += int(t == p)
                    if name == "real_64":
                        totals[EMOTIONS[t]] += 1
            print(f"fold {fold} seed {seed}: {len(test)} scarce test clips", flush=True)
    result = {"run": str(run), "model": folder, "pairs": pairs, "clips": dict(totals),
              "recall": {name: {c: {"recognized": h[c], "clips": totals[c], "recall": h[c] / totals[c]} for c in totals}
                         for name, h in hits.items()},
              **{k: float(np.mean(v)) for k, v in frames_stats.items()}}
    for name, per_class in result["recall"].items():
        print(f"{name:10s} " + "  ".join(f"{c} {v['recognized']}/{v['clips']} ({v['recall']:.2f})" for c, v in per_class.items()))
    print(" ".join(f"{k} {result[k]:.3f}" for k in frames_stats))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
