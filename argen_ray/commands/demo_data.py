"""`argen-ray demo-data [OUT]`: write the embedded long-tailed demo dataset in DFEW's layout.

Defaults come from the config's `data.demo` section; flags override them. OUT defaults to
`<run_dir>/demo-data`, where `data.kind: demo` runs read it.
"""
from __future__ import annotations

import argparse
import csv
from collections import Counter
from pathlib import Path

from argen_ray.commands import add_config_arguments, config_from_args

# flag -> DemoDataConfig field
_FLAGS = {"seed": "seed", "identities": "num_identities", "clips_per_identity": "clips_per_identity",
          "frames": "frames", "size": "size", "workers": "workers", "min_test_clips": "min_test_clips"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("out", nargs="?", help="output directory (default: <run_dir>/demo-data)")
    parser.add_argument("--seed", type=int, help="random seed; same seed, same bytes (default: data.demo.seed)")
    parser.add_argument("--identities", type=int, help="synthetic people, at least 5 (default: data.demo.num_identities)")
    parser.add_argument("--clips-per-identity", type=int, help="clips per person (default: data.demo.clips_per_identity)")
    parser.add_argument("--frames", type=int, help="frames per clip (default: data.demo.frames)")
    parser.add_argument("--size", type=int, help="frame width and height in pixels (default: data.demo.size)")
    parser.add_argument("--min-test-clips", type=int,
                        help="clips of every class in every fold's test split (default: data.demo.min_test_clips)")
    parser.add_argument("--workers", type=int, help="rendering processes (default: data.demo.workers)")


def run(args: argparse.Namespace) -> int:
    from argen_ray.data.demo import write_demo_dataset
    from argen_ray.data.loading import DEMO_DIRNAME

    args.overrides = list(args.overrides) + [f"data.demo.{field}={getattr(args, flag)}"
                                             for flag, field in _FLAGS.items() if getattr(args, flag) is not None]
    cfg = config_from_args(args, save=False)
    demo = cfg.data.demo
    out = Path(args.out) if args.out else cfg.path(DEMO_DIRNAME)
    print(f"[argen-ray] demo dataset: seed {demo.seed}, {demo.num_identities} identities x {demo.clips_per_identity} "
          f"clips, {demo.frames} frames of {demo.size}x{demo.size} px -> {out}")
    root = write_demo_dataset(out, seed=demo.seed, num_identities=demo.num_identities,
                              clips_per_identity=demo.clips_per_identity, frames=demo.frames, size=demo.size,
                              min_test_clips=demo.min_test_clips, workers=demo.workers, progress=True)
    with open(root / "annotations.csv", newline="", encoding="utf-8") as fh:
        counts = Counter(row["emotion"] for row in csv.DictReader(fh))
    print("[argen-ray] clips per class: " + ", ".join(f"{e} {n}" for e, n in counts.most_common()))
    print(f"[argen-ray] done: {root} (contact sheet: {root / 'preview.jpg'})")
    return 0
