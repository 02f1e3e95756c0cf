"""Recognition scores (DESIGN 2.4): WAR, UAR, per-class recall (AR-SU / AR-DI / AR-FE), confusion matrices.

- WAR: weighted average recall = overall accuracy.
- UAR: unweighted average recall = mean recall over the classes present in `y_true` (classes
  with no test clip have no recall: reported as None and left out of the mean, as
  scikit-learn's `balanced_accuracy_score` does).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from argen_ray.recognition.models import RecognitionError


def _labels(values, name: str, num_classes: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise RecognitionError(f"{name} must be a 1-D sequence of class indices, got shape {arr.shape}")
    if arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() >= num_classes):
        raise RecognitionError(f"{name} must hold integer classes in 0..{num_classes - 1}, "
                               f"got values {sorted(set(arr.tolist()))[:10]}")
    return arr.astype(np.int64)


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    t, p = _labels(y_true, "y_true", num_classes), _labels(y_pred, "y_pred", num_classes)
    if len(t) != len(p):
        raise RecognitionError(f"y_true has {len(t)} labels but y_pred has {len(p)}")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def war_uar(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> dict:
    """{"war", "uar", "per_class_recall"}; per-class recall is None for classes absent from y_true."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    if cm.sum() == 0:
        raise RecognitionError("cannot score an empty prediction set")
    support = cm.sum(axis=1)
    recall = [float(cm[c, c] / support[c]) if support[c] else None for c in range(num_classes)]
    present = [r for r in recall if r is not None]
    return {"war": float(np.trace(cm) / cm.sum()), "uar": float(np.mean(present)), "per_class_recall": recall}


def plot_confusion_matrix(cm: np.ndarray, class_names: Sequence[str], path: str | os.PathLike,
                          title: str = "") -> Path:
    """Row-normalised confusion matrix with counts in each cell, saved atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from argen_ray.io import atomic_path

    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{norm[i, j]:.2f}\n({cm[i, j]})", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, label="recall share")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def plot_recall_comparison(recalls: dict[str, Sequence[float | None]], class_names: Sequence[str],
                           path: str | os.PathLike, title: str = "", highlight: Sequence[str] = (),
                           errors: dict[str, Sequence[float | None]] | None = None) -> Path:
    """Grouped bars of per-class recall for several variants (e.g. original vs augmented);
    `errors` (per variant, per class, e.g. the std over (fold, seed) pairs) draws error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from argen_ray.io import atomic_path

    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / max(len(recalls), 1)
    x = np.arange(len(class_names))
    for k, (variant, values) in enumerate(recalls.items()):
        heights = [np.nan if v is None else v for v in values]
        err = None if errors is None else [0.0 if e is None else e for e in errors[variant]]
        ax.bar(x + (k - (len(recalls) - 1) / 2) * width, heights, width, label=variant, yerr=err, capsize=3)
    labels = [f"{n}*" if n in highlight else n for n in class_names]
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1)
    ax.set_ylabel("recall")
    ax.set_title(title + ("  (* scarce)" if highlight else ""), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
