"""Frame sampling: uniform 16 frames for generation, DFER-CLIP segment sampling for recognition."""
from __future__ import annotations

import numpy as np
import pytest

from argen_ray.data import segment_indices, uniform_indices
from argen_ray.data.sampling import SamplingError


def test_uniform_spans_first_to_last_frame():
    idx = uniform_indices(31)
    assert len(idx) == 16 and idx[0] == 0 and idx[-1] == 30
    assert np.all(np.diff(idx) == 2)
    assert uniform_indices(16).tolist() == list(range(16))
    assert uniform_indices(100, k=4).tolist() == [0, 33, 66, 99]


def test_uniform_repeats_frames_of_short_clips():
    idx = uniform_indices(5)
    assert len(idx) == 16 and set(idx.tolist()) == {0, 1, 2, 3, 4}
    assert np.all(np.diff(idx) >= 0)
    assert uniform_indices(1).tolist() == [0] * 16


def test_segment_test_mode_takes_segment_middles():
    assert segment_indices(32, 16, train=False).tolist() == list(range(1, 32, 2))
    # 40 frames: segments of 2.5 frames, middles at 1.25, 3.75, 6.25, ...
    assert segment_indices(40, 16, train=False).tolist()[:5] == [1, 3, 6, 8, 11]
    assert segment_indices(16, 16, train=False).tolist() == list(range(16))


def test_segment_train_mode_draws_one_frame_inside_each_segment():
    rng = np.random.default_rng(0)
    draws = np.stack([segment_indices(35, 16, train=True, rng=rng) for _ in range(200)])
    seg = np.arange(16)
    assert np.all(draws >= 2 * seg) and np.all(draws <= 2 * seg + 1)  # 35 // 16 = 2 frames each
    assert set(np.unique(draws - 2 * seg).tolist()) == {0, 1}  # both offsets occur
    assert segment_indices(35, 16, train=True, rng=7).tolist() == segment_indices(35, 16, train=True, rng=7).tolist()


@pytest.mark.parametrize("train", [True, False])
def test_short_clips_are_padded_with_their_last_frame(train):
    assert segment_indices(10, 16, train=train, rng=0).tolist() == list(range(10)) + [9] * 6


@pytest.mark.parametrize("call", [lambda: uniform_indices(0), lambda: segment_indices(0, 16),
                                  lambda: segment_indices(10, 0)])
def test_empty_clips_raise(call):
    with pytest.raises(SamplingError):
        call()
