"""The background I3D prefetch: which real clips the metrics score, and a prefetched cache gives the
features the metrics would compute themselves, with nothing half-written when it is stopped."""
from __future__ import annotations

import time

import numpy as np
import pytest

from argen_ray.data.labels import label_index
from argen_ray.data.records import ClipRecord, Dataset
from argen_ray.data.video import write_mp4
from argen_ray.metrics.fvd import i3d_features
from argen_ray.metrics.prefetch import I3DPrefetch, real_clips_for_metrics


def _clip(path, seed):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, (16, 32, 32, 3), dtype=np.uint8)
    return write_mp4(path, frames, fps=8)


def _record(root, i, emotion, subject, split):
    return ClipRecord(f"c{i}", root / f"c{i}.mp4", label_index(emotion), subject=subject, split=split)


def test_real_clips_per_consumer(tmp_path):
    rows = [("fear", "s1", "train"), ("fear", "s2", "test"), ("happy", "s1", "test"), ("surprise", "s3", "train"),
            ("sad", "s3", "train")]
    dataset = Dataset("dfew", tmp_path, [_record(tmp_path, i, *row) for i, row in enumerate(rows)])
    clips = real_clips_for_metrics(dataset, [label_index("fear"), label_index("surprise")], {"s1"})
    ids = {k: [r.clip_id for r in v] for k, v in clips.items()}
    assert ids == {"validity": ["c0", "c3"],            # training clips of the generated classes only
                   "same_class": ["c0", "c1", "c3"],     # every split
                   "same_subject": ["c0"]}               # the generated classes of the generated subjects


@pytest.mark.slow
def test_prefetched_features_match_and_a_stop_leaves_no_partial_file(tmp_path):
    sources = [_clip(tmp_path / "v0.mp4", 0)]
    cache = tmp_path / "cache"
    prefetch = I3DPrefetch(sources, cache).start()
    deadline = time.monotonic() + 240
    while prefetch.missing() and time.monotonic() < deadline:
        time.sleep(0.5)
    prefetch.stop()
    assert prefetch.missing() == []
    assert prefetch.start().process is None  # nothing left to do: no process
    fresh = i3d_features(sources, progress=False)
    np.testing.assert_allclose(i3d_features(sources, progress=False, cache_dir=cache), fresh, atol=1e-4)

    more = [_clip(tmp_path / f"w{i}.mp4", 10 + i) for i in range(20)]
    busy = I3DPrefetch(more, cache).start()
    time.sleep(1.0)
    busy.stop()  # mid-way: finished clips stay, the clip in flight leaves no temporary file
    assert busy.process is None
    assert sorted(p.suffix for p in cache.iterdir()) == [".npy"] * len(list(cache.iterdir()))
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]
