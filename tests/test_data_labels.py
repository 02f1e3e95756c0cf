"""Canonical labels: DFER-CLIP's DFEW order, names and aliases case-insensitively, clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from argen_ray.data import EMOTIONS, SCARCE_DEFAULT, LabelError, label_index, label_name
from argen_ray.errors import ArgenError


def test_canonical_order_and_default_scarce_classes():
    assert EMOTIONS == ["happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"]
    assert [label_index(c) for c in SCARCE_DEFAULT] == [4, 5, 6]


@pytest.mark.parametrize("given, expected", [
    ("Happy", 0), ("HAPPINESS", 0), ("sadness", 1), (" Neutral ", 2), ("anger", 3), ("Angry", 3),
    ("surprised", 4), ("disgusted", 5), ("fearful", 6), ("FE", 6), (3, 3), (np.int64(5), 5), ("4", 4),
])
def test_names_aliases_and_ints(given, expected):
    assert label_index(given) == expected


def test_label_name_round_trips():
    assert [label_name(i) for i in range(7)] == EMOTIONS


@pytest.mark.parametrize("bad, message", [
    ("contempt", "unknown emotion label 'contempt'"), (7, "out of range"), (-1, "out of range"),
    (True, "bool"), (2.0, "type float"), ("", "unknown emotion label"),
])
def test_bad_labels_raise_a_clear_argen_error(bad, message):
    with pytest.raises(LabelError, match=message) as info:
        label_index(bad)
    assert isinstance(info.value, ArgenError)
