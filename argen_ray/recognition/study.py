"""Study statistics of a recognition comparison (DESIGN 2.5, "Study protocol").

A comparison is a set of (fold, seed) pairs; both variants (original, augmented) are trained on
each pair. For every metric this module reports the mean ± std over pairs per variant and the
paired difference augmented − original: its per-pair values, mean, std and a 95 % percentile
bootstrap CI of the mean over pairs (pairs resampled with replacement). The verdict says
"direction supported" only where the CI of ΔUAR and the CI of the mean scarce-class ΔAR both lie
above 0.

Metrics: WAR, UAR, per-class recall (AR-<class>), and `scarce_ar`: the mean recall over the
scarce classes present in the pair's test split.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from argen_ray.data.labels import EMOTIONS
from argen_ray.recognition.models import RecognitionError

CI_LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
SUPPORTED = "direction supported"
# Below this many pairs a percentile bootstrap of the mean little more than brackets the pairs'
# own values (2 pairs: [min, max]), so the verdict is marked indicative.
MIN_TESTING_PAIRS = 5


def bootstrap_ci(values: Sequence[float], level: float = CI_LEVEL, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the mean of `values` (None with fewer than 2 values: no spread to resample)."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if not 0 < level < 1:
        raise RecognitionError(f"CI level must be in (0, 1), got {level}")
    if len(x) < 2:
        return None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def describe(values: Sequence[float | None]) -> dict:
    """{"mean", "std" (sample std, ddof 1; None for one value), "n"} over the values present."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if not len(x):
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if len(x) > 1 else None, "n": int(len(x))}


def paired_difference(original: Sequence[float | None], augmented: Sequence[float | None]) -> dict:
    """Per-pair augmented − original (pairs where either is missing are left out), with
    mean, std, n and the bootstrap CI of the mean."""
    if len(original) != len(augmented):
        raise RecognitionError(f"paired difference needs as many original ({len(original)}) as augmented "
                               f"({len(augmented)}) values")
    deltas = [None if o is None or a is None else a - o for o, a in zip(original, augmented)]
    ci = bootstrap_ci(deltas)
    return {**describe(deltas), "values": deltas, "ci": None if ci is None else list(ci)}


def scarce_recall(scores: dict, scarce: Sequence[str]) -> float | None:
    """Mean recall over the scarce classes present in the test split (None if none is)."""
    values = [scores["ar"].get(c) for c in scarce]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _metrics(scores: dict, scarce: Sequence[str]) -> dict[str, float | None]:
    return {"war": scores["war"], "uar": scores["uar"], "scarce_ar": scarce_recall(scores, scarce),
            **{f"ar_{c}": scores["ar"].get(c) for c in EMOTIONS}}


def verdict(delta: dict) -> dict:
    """The study's reading of the paired differences (module doc)."""
    uar, scarce, war = delta["uar"], delta["scarce_ar"], delta["war"]
    if uar["ci"] is None or scarce["ci"] is None:
        return {"supported": None, "text": f"not testable: {uar['n']} pair(s); a CI needs at least 2"}
    supported = uar["ci"][0] > 0 and scarce["ci"][0] > 0
    fmt = lambda d: f"{d['mean']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"  # noqa: E731
    text = (f"{SUPPORTED if supported else 'direction not supported'}: ΔUAR {fmt(uar)}, "
            f"scarce-class ΔAR {fmt(scarce)} (95 % bootstrap CI over {uar['n']} pairs)")
    if not supported:
        below = [name for name, d in (("ΔUAR", uar), ("scarce ΔAR", scarce)) if d["ci"][1] < 0]
        text += "; " + (f"{' and '.join(below)} below 0 beyond the CI" if below else "the CI includes 0")
    war_drop = war["ci"] is not None and war["ci"][1] < 0
    if war_drop:
        text += f"; WAR falls beyond its CI ({fmt(war)})"
    indicative = uar["n"] < MIN_TESTING_PAIRS
    if indicative:
        text += (f"; indicative only: a bootstrap CI over {uar['n']} pairs little more than brackets them "
                 f"(at least {MIN_TESTING_PAIRS} pairs to test the direction)")
    return {"supported": supported, "war_drop": war_drop, "indicative": indicative, "text": text}


def summarize_study(pairs: list[dict], scarce: Sequence[str]) -> dict:
    """Per model: per-variant mean ± std over pairs, paired Δ with CI, and the verdict.

    `pairs`: one entry per (fold, seed) with {"fold", "seed", "models": {name: {variant: scores}}},
    scores holding war, uar and ar (per class name), as `compare_original_vs_augmented` returns.
    """
    if not pairs:
        raise RecognitionError("a study needs at least one (fold, seed) pair")
    summary: dict = {}
    for name in pairs[0]["models"]:
        per_variant = {}
        for variant in ("original", "augmented"):
            rows = [p["models"][name].get(variant) for p in pairs]
            if any(r is None for r in rows):
                continue
            per_variant[variant] = [_metrics(r, scarce) for r in rows]
        entry = {"pairs": [[p.get("fold"), p.get("seed")] for p in pairs],
                 "variants": {v: {k: describe([m[k] for m in rows]) for k in rows[0]} for v, rows in per_variant.items()}}
        if len(per_variant) == 2:
            orig, aug = per_variant["original"], per_variant["augmented"]
            entry["delta"] = {k: paired_difference([m[k] for m in orig], [m[k] for m in aug]) for k in orig[0]}
            entry["verdict"] = verdict(entry["delta"])
        summary[name] = entry
    return summary


def format_mean_std(d: dict) -> str:
    """"0.512 ± 0.034" (no ± with one pair; "-" when nothing was measured)."""
    if d["mean"] is None:
        return "-"
    return f"{d['mean']:.3f}" + ("" if d["std"] is None else f" ± {d['std']:.3f}")


def format_delta(d: dict) -> str:
    """"+0.041 [+0.012, +0.070]": a paired difference with its 95 % CI ("(no CI)" with one pair)."""
    if d["mean"] is None:
        return "-"
    return f"{d['mean']:+.3f}" + (" (no CI)" if d["ci"] is None else f" [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]")
