"""The demo dataset is large enough to measure per-fold scarce-class recall (issue 12): with
`min_test_clips`, every DFEW-style fold's test split holds that many clips of every class, and
the long tail stays (disgust rarest, then fear, then surprise; disgust and fear scarce by the
N/7 * rho count rule)."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from argen_ray.config import load_config
from argen_ray.data.demo import DemoDataError, write_demo_dataset
from argen_ray.data.demo.clips import plan_clips
from argen_ray.data.labels import EMOTIONS

LOCAL = Path(__file__).resolve().parents[1] / "configs" / "local.yaml"
SCARCE = ("surprise", "disgust", "fear")


def test_the_preset_dataset_holds_five_test_clips_of_every_class_per_fold_and_keeps_the_long_tail():
    demo = load_config(LOCAL).data.demo
    plans = plan_clips(demo.seed, demo.num_identities, demo.clips_per_identity, demo.min_test_clips)
    counts = Counter(p.emotion for p in plans)
    per_fold = Counter((p.emotion, p.fold) for p in plans)
    assert demo.min_test_clips >= 5
    assert all(per_fold[e, k] >= 5 for e in EMOTIONS for k in range(1, 6)), per_fold
    n = len(plans)
    assert counts["disgust"] < counts["fear"] < counts["surprise"] < min(counts[e] for e in ("happy", "sad", "angry"))
    assert counts["disgust"] < n / 7 * 0.7 and counts["fear"] < n / 7 * 0.7  # DESIGN's count rule
    # Identities are fold-disjoint: each one's clips sit in exactly one test split.
    assert all(len({p.fold for p in plans if p.identity == i}) == 1 for i in range(demo.num_identities))


def _test_counts(root: Path, fold: int) -> Counter:
    with open(root / "EmoLabel_DataSplit" / "test(single-labeled)" / f"set_{fold}.csv", newline="") as fh:
        return Counter(EMOTIONS[int(row["label"]) - 1] for row in csv.DictReader(fh))


def test_the_written_split_files_keep_the_floor(tmp_path):
    root = write_demo_dataset(tmp_path / "demo", seed=1, num_identities=10, clips_per_identity=9, frames=4, size=32,
                              min_test_clips=2, workers=2)
    for fold in range(1, 6):
        held = _test_counts(root, fold)
        assert all(held[e] >= 2 for e in EMOTIONS), (fold, held)
    assert "--min-test-clips 2" in (root / "README.txt").read_text()


def test_a_floor_the_dataset_cannot_hold_is_a_plain_error(tmp_path):
    with pytest.raises(DemoDataError, match="min_test_clips=5: .*cannot hold"):
        write_demo_dataset(tmp_path / "x", num_identities=10, clips_per_identity=6, min_test_clips=5)
    with pytest.raises(DemoDataError, match=r"min_test_clips=2: fold test splits .* use a multiple of 5 identities"):
        write_demo_dataset(tmp_path / "y", num_identities=12, clips_per_identity=10, min_test_clips=2)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
