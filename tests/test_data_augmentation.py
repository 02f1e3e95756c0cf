"""Augmentation amounts per scarce class (DESIGN 2.5): g_c = max(0, ceil(gamma*m) - n_c)."""
import pytest

from argen_ray.data.augmentation import AugmentationError, augmentation_amounts, clips_per_row

COUNTS = {"neutral": 30, "happy": 20, "sad": 10, "angry": 16, "surprise": 8, "disgust": 1, "fear": 3}
SCARCE = ["surprise", "disgust", "fear"]


def test_scarce_classes_fill_up_to_the_median_of_the_others():
    plan = augmentation_amounts(COUNTS, SCARCE)
    assert plan.median_non_scarce == 18  # median of 30, 20, 10, 16
    assert plan.amounts == {"surprise": 10, "disgust": 17, "fear": 15}
    assert plan.capped_from is None
    table = {r["class"]: r for r in plan.table()}
    total = sum(COUNTS.values()) + 42
    assert table["disgust"] == {"class": "disgust", "real": 1, "generated": 17, "share": round(18 / total, 4)}
    assert table["happy"]["generated"] == 0


def test_gamma_scales_the_target_and_never_removes_clips():
    assert augmentation_amounts(COUNTS, SCARCE, gamma=0.5).amounts == {"surprise": 1, "disgust": 8, "fear": 6}
    assert augmentation_amounts(COUNTS, SCARCE, gamma=0.25).amounts == {"surprise": 0, "disgust": 4, "fear": 2}
    # ceil(0.14 * 50) is 7, although 0.14 * 50 is 7.000000000000001 in floating point: m = 50 here.
    counts = {"happy": 50, "sad": 50, "fear": 0}
    assert augmentation_amounts(counts, ["fear"], gamma=0.14).amounts == {"fear": 7}


def test_explicit_per_class_counts_override():
    plan = augmentation_amounts(COUNTS, SCARCE, per_class={"disgust": 4})
    assert plan.amounts == {"surprise": 10, "disgust": 4, "fear": 15}
    assert plan.overridden == ["disgust"]


def test_generated_clips_never_outnumber_the_real_training_clips():
    counts = {"happy": 12, "sad": 10, "fear": 0, "disgust": 0}
    plan = augmentation_amounts(counts, ["fear", "disgust"], gamma=2.0)  # 22 + 22 = 44 > 22 real
    assert plan.capped_from == 44
    assert sum(plan.amounts.values()) <= sum(counts.values())
    assert plan.amounts == {"fear": 11, "disgust": 11}


def test_bad_inputs_name_the_problem():
    with pytest.raises(AugmentationError, match="blue"):
        augmentation_amounts(COUNTS, SCARCE, per_class={"blue": 3})
    with pytest.raises(AugmentationError, match="every class is scarce"):
        augmentation_amounts({"fear": 1}, ["fear"])


def test_clips_are_spread_evenly_over_a_class_prompts():
    rows = ["fear", "disgust", "fear", "fear", "disgust", "happy"]
    per_row = clips_per_row(rows, {"fear": 7, "disgust": 3})
    assert per_row == [3, 2, 2, 2, 1, 0]
    with pytest.raises(AugmentationError, match="surprise"):
        clips_per_row(rows, {"surprise": 2})
