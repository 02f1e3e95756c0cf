"""dlib landmarks are safe to call from several threads at once (Serve's ingress runs sync
handlers in a thread pool; unguarded concurrent dlib calls corrupted the heap)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from skimage import data

from argen_ray.faces import detect_landmarks


def test_concurrent_landmarks_equal_the_sequential_ones():
    face = data.astronaut()[:256, 100:356]
    images = [np.ascontiguousarray(np.roll(face, shift, axis=1)) for shift in range(0, 24, 3)]
    sequential = [detect_landmarks(img) for img in images]
    assert all(found is not None for found in sequential)
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            concurrent = list(pool.map(detect_landmarks, images))
            for one, other in zip(sequential, concurrent):
                np.testing.assert_array_equal(one.points, other.points)
                assert one.box == other.box
