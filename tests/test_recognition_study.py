"""Study statistics (DESIGN 2.5): mean ± std over (fold, seed) pairs, the paired difference
augmented − original with a 95 % bootstrap CI over pairs, and the verdict line — on constructed
cases whose answers are known independently of the code."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from argen_ray.data.labels import EMOTIONS
from argen_ray.recognition.models import RecognitionError
from argen_ray.recognition.study import bootstrap_ci, describe, paired_difference, summarize_study, verdict

SCARCE = ["surprise", "disgust", "fear"]


def _exact_bootstrap_quantiles(values, level=0.95):
    """The bootstrap distribution of the mean, enumerated exactly (all n^n equally likely resamples)."""
    means = np.sort([np.mean(c) for c in itertools.product(values, repeat=len(values))])
    return np.quantile(means, [(1 - level) / 2, (1 + level) / 2])


def test_bootstrap_ci_matches_the_exactly_enumerated_bootstrap_distribution():
    values = [0.0, 0.1, 0.1, 0.3, 0.5]
    lo, hi = bootstrap_ci(values)
    exact_lo, exact_hi = _exact_bootstrap_quantiles(values)  # 3,125 resamples
    assert lo == pytest.approx(exact_lo, abs=0.011) and hi == pytest.approx(exact_hi, abs=0.011)
    assert lo < np.mean(values) < hi
    # Three values: each extreme (all draws the same value) has probability 1/27 > 2.5 %,
    # so the 95 % interval is exactly [min, max].
    assert bootstrap_ci([0.1, 0.2, 0.6]) == pytest.approx((0.1, 0.6))
    assert bootstrap_ci([0.05] * 4) == pytest.approx((0.05, 0.05))  # no spread, no width
    assert bootstrap_ci([0.3]) is None and bootstrap_ci([]) is None  # one pair: nothing to resample
    assert bootstrap_ci(values) == bootstrap_ci(values)                # seeded: reproducible


def test_paired_difference_and_spread_over_pairs():
    d = paired_difference([0.5, 0.6, 0.7], [0.6, 0.8, 0.7])
    assert d["values"] == pytest.approx([0.1, 0.2, 0.0])
    assert d["mean"] == pytest.approx(0.1) and d["std"] == pytest.approx(0.1)  # sample std (ddof 1)
    assert d["n"] == 3 and d["ci"] == pytest.approx([0.0, 0.2])
    # A pair where a class has no test clip has no recall: it is left out, not counted as 0.
    assert paired_difference([0.5, None], [0.7, 0.9])["values"] == pytest.approx([0.2, None])
    assert describe([0.2, None, 0.4]) == {"mean": pytest.approx(0.3), "std": pytest.approx(2 ** 0.5 * 0.1), "n": 2}
    assert describe([0.2])["std"] is None
    with pytest.raises(RecognitionError, match="as many original"):
        paired_difference([0.1], [0.1, 0.2])


def _scores(war, uar, scarce_recall, others=0.5):
    ar = {c: (scarce_recall[SCARCE.index(c)] if c in SCARCE else others) for c in EMOTIONS}
    return {"war": war, "uar": uar, "ar": ar}


def _pairs(deltas_uar, deltas_scarce, deltas_war=None):
    pairs = []
    for k, (du, ds) in enumerate(zip(deltas_uar, deltas_scarce)):
        dw = 0.0 if deltas_war is None else deltas_war[k]
        base = 0.4 + 0.05 * k
        pairs.append({"fold": k % 5 + 1, "seed": k // 5, "models": {"M": {
            "original": _scores(0.5, base, [0.2, 0.1, 0.3]),
            "augmented": _scores(0.5 + dw, base + du, [0.2 + ds, 0.1 + ds, 0.3 + ds])}}})
    return pairs


def test_a_consistent_gain_is_supported_and_a_mixed_or_negative_one_is_not():
    gain = summarize_study(_pairs([0.03, 0.05, 0.04, 0.06], [0.10, 0.08, 0.12, 0.09]), SCARCE)["M"]
    assert gain["delta"]["scarce_ar"]["mean"] == pytest.approx(np.mean([0.10, 0.08, 0.12, 0.09]))
    assert gain["delta"]["uar"]["ci"][0] > 0 and gain["verdict"]["supported"] is True
    assert gain["verdict"]["text"].startswith("direction supported: ΔUAR +0.04")
    # 4 pairs: the CI barely goes beyond the pairs' own values, and the verdict says so.
    assert gain["verdict"]["indicative"] is True and "indicative only" in gain["verdict"]["text"]
    five = summarize_study(_pairs([0.03, 0.05, 0.04, 0.06, 0.05], [0.10, 0.08, 0.12, 0.09, 0.1]), SCARCE)["M"]
    assert five["verdict"]["indicative"] is False and "indicative" not in five["verdict"]["text"]
    # mean ± std per variant: scarce AR of the original is (0.2 + 0.1 + 0.3) / 3 on every pair.
    assert gain["variants"]["original"]["scarce_ar"] == {"mean": pytest.approx(0.2), "std": pytest.approx(0.0), "n": 4}
    assert gain["pairs"] == [[1, 0], [2, 0], [3, 0], [4, 0]]

    # UAR up on every pair but the scarce classes not: not supported (both CIs must lie above 0).
    mixed = summarize_study(_pairs([0.03, 0.05, 0.04, 0.06], [0.10, -0.08, 0.12, -0.09]), SCARCE)["M"]
    assert mixed["verdict"]["supported"] is False and "the CI includes 0" in mixed["verdict"]["text"]

    worse = summarize_study(_pairs([-0.03, -0.05, -0.04], [-0.1, -0.2, -0.1], [-0.05, -0.06, -0.04]), SCARCE)["M"]
    assert worse["verdict"]["supported"] is False
    assert "ΔUAR and scarce ΔAR below 0 beyond the CI" in worse["verdict"]["text"]
    assert worse["verdict"]["war_drop"] is True and "WAR falls beyond its CI" in worse["verdict"]["text"]

    one = summarize_study(_pairs([0.5], [0.5]), SCARCE)["M"]
    assert one["verdict"] == {"supported": None, "text": "not testable: 1 pair(s); a CI needs at least 2"}


def test_without_an_augmented_variant_there_is_no_difference_or_verdict():
    pairs = [{"fold": 1, "seed": 0, "models": {"M": {"original": _scores(0.5, 0.4, [0.1, 0.2, 0.3])}}}]
    entry = summarize_study(pairs, SCARCE)["M"]
    assert set(entry["variants"]) == {"original"} and "delta" not in entry and "verdict" not in entry
    with pytest.raises(RecognitionError, match="at least one"):
        summarize_study([], SCARCE)
    assert verdict({k: paired_difference([0.1, 0.2], [0.2, 0.3]) for k in ("war", "uar", "scarce_ar")})["supported"]
