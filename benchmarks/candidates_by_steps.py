"""What the training candidates of a run say about T: per iteration and pooled, the mean score
and reward components of the candidates at each T, and the paired differences between two T
inside one group (same state, same seed: the comparison the group rule itself makes), from the
run's `policy/candidates.jsonl` (one row per candidate video, written by `argen-ray train`).

    .venv/bin/python benchmarks/candidates_by_steps.py RUN_DIR [--out FILE.json]
"""
from __future__ import annotations

import argparse
import itertools
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from argen_ray.ard.env import field_means
from argen_ray.io import read_jsonl

FIELDS = ("score", "r_q", "r_f", "r_e", "r_c", "reward")


def mean_by(rows: list[dict], key) -> dict:
    groups = defaultdict(list)
    for row in rows:
        groups[key(row)].append(row)
    return {k: {"n": len(g), **field_means(g, FIELDS)} for k, g in sorted(groups.items())}


def paired_differences(rows: list[dict]) -> dict:
    """Per pair of T values: mean and s.e. of (component at the higher T - at the lower T) over the
    groups holding both (each group's candidates at one T averaged first)."""
    by_group = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_group[row["group_id"]][row["steps"]].append(row)
    steps = sorted({row["steps"] for row in rows})
    out = {}
    for low, high in itertools.combinations(steps, 2):
        pairs = [(g[low], g[high]) for g in by_group.values() if low in g and high in g]
        if not pairs:
            continue
        entry = {"groups": len(pairs)}
        for f in FIELDS[:-1]:
            if pairs[0][0][0].get(f) is None:
                continue
            d = np.array([np.mean([r[f] for r in b]) - np.mean([r[f] for r in a]) for a, b in pairs])
            entry[f] = {"mean": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None,
                        "positive": int((d > 0).sum())}
        out[f"T{high:g} - T{low:g}"] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    path = args.run_dir / "policy" / "candidates.jsonl"
    if not path.is_file():
        parser.error(f"{path} does not exist: train with `argen-ray train` first (same run_dir)")
    rows = read_jsonl(path)
    result = {"candidates": len(rows),
              "by_iteration_and_T": {f"{it} T{t:g}": v for (it, t), v in
                                     mean_by(rows, lambda r: (r["iteration"], r["steps"])).items()},
              "by_T": {f"T{t:g}": v for t, v in mean_by(rows, lambda r: r["steps"]).items()},
              "paired_within_groups": paired_differences(rows)}
    for name in ("by_T", "paired_within_groups"):
        print(name)
        for key, value in result[name].items():
            print(f"  {key}: {json.dumps(value)}")
    for key, value in result["by_iteration_and_T"].items():
        print(f"  iteration {key}: n {value['n']}, " + ", ".join(f"{f} {value[f]:.4f}" for f in FIELDS if f in value))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
