"""WAR / UAR / per-class recall agree with scikit-learn; confusion-matrix plots are written."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix as sk_confusion, recall_score

from argen_ray.data.labels import EMOTIONS
from argen_ray.recognition.metrics import confusion_matrix, plot_confusion_matrix, plot_recall_comparison, war_uar
from argen_ray.recognition.models import RecognitionError


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_war_uar_agree_with_sklearn_on_long_tailed_predictions(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.choice(7, size=300, p=[0.3, 0.2, 0.2, 0.15, 0.08, 0.02, 0.05])
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, 7, 300))
    got = war_uar(y_true, y_pred, 7)
    assert got["war"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert got["uar"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    expected = recall_score(y_true, y_pred, labels=range(7), average=None, zero_division=0)
    np.testing.assert_allclose(got["per_class_recall"], expected)
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, 7), sk_confusion(y_true, y_pred, labels=range(7)))


def test_a_class_missing_from_the_test_set_has_no_recall_and_is_left_out_of_uar():
    y_true = [0, 0, 1, 1, 4]
    y_pred = [0, 1, 1, 1, 5]  # class 5 predicted but never true; classes 2, 3, 5, 6 absent
    got = war_uar(y_true, y_pred, 7)
    assert got["per_class_recall"] == [0.5, 1.0, None, None, 0.0, None, None]
    with pytest.warns(UserWarning):  # sklearn warns about y_pred classes absent from y_true
        assert got["uar"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert got["war"] == pytest.approx(0.6)


def test_bad_labels_are_named():
    with pytest.raises(RecognitionError, match="y_pred must hold integer classes in 0..6"):
        war_uar([0, 1], [0, 7], 7)
    with pytest.raises(RecognitionError, match="y_true has 2 labels but y_pred has 3"):
        war_uar([0, 1], [0, 1, 1], 7)
    with pytest.raises(RecognitionError, match="empty"):
        war_uar([], [], 7)


def test_plots_are_png_files(tmp_path):
    cm = confusion_matrix([0, 1, 4, 4, 6], [0, 1, 4, 5, 6], 7)
    path = plot_confusion_matrix(cm, EMOTIONS, tmp_path / "cm.png", title="demo")
    bars = plot_recall_comparison({"original": [1, 1, None, None, 0.5, None, 1.0], "augmented": [1] * 7},
                                  EMOTIONS, tmp_path / "recall.png", highlight=["surprise"])
    for p in (path, bars):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["cm.png", "recall.png"]  # no temp files left
