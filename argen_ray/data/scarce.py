"""Scarce-class analysis (DESIGN 2).

A class is scarce when its training count is below `N / 7 * rho` (N = all training clips,
rho = 0.7 by default) and, where a baseline's per-class recall is known, that recall is below
the recall threshold (0.5). An explicit list of classes overrides the analysis.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping

from argen_ray.data.labels import EMOTIONS, label_index
from argen_ray.data.records import DatasetError

if TYPE_CHECKING:
    from argen_ray.config import Config
    from argen_ray.data.records import Dataset


@dataclass(frozen=True)
class ScarceRow:
    label: int
    name: str
    count: int
    share: float
    threshold: float   # the count a class must stay below: N / 7 * rho
    recall: float | None
    scarce: bool


def _recall_by_label(recall: Mapping[str | int, float] | None) -> dict[int, float]:
    out: dict[int, float] = {}
    for key, value in (recall or {}).items():
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise DatasetError(f"baseline recall for {key!r} is {value}; recall must lie in [0, 1]")
        out[label_index(key)] = value
    return out


def scarce_analysis(labels: Iterable[int], rho: float = 0.7,
                    recall: Mapping[str | int, float] | None = None,
                    recall_threshold: float = 0.5) -> list[ScarceRow]:
    """One row per canonical class, in label order. `labels` are the training labels."""
    if rho <= 0:
        raise DatasetError(f"scarce_rho must be positive, got {rho}")
    counts = Counter(label_index(label) for label in labels)
    total = sum(counts.values())
    if total == 0:
        raise DatasetError("scarce-class analysis needs training labels, got none")
    known = _recall_by_label(recall)
    threshold = total / len(EMOTIONS) * rho
    rows = []
    for i, name in enumerate(EMOTIONS):
        count = counts.get(i, 0)
        rec = known.get(i)
        scarce = count < threshold and (rec is None or rec < recall_threshold)
        rows.append(ScarceRow(i, name, count, count / total, threshold, rec, scarce))
    return rows


def scarce_classes(labels: Iterable[int], rho: float = 0.7,
                   recall: Mapping[str | int, float] | None = None, recall_threshold: float = 0.5,
                   override: Iterable[str | int] | None = None) -> list[int]:
    """Scarce class indices, ascending; `override` (names or ints) replaces the analysis."""
    if override is not None:
        return sorted({label_index(c) for c in override})
    return [row.label for row in scarce_analysis(labels, rho, recall, recall_threshold) if row.scarce]


def configured_scarce_classes(cfg: "Config", dataset: "Dataset") -> list[int]:
    """The run's scarce classes: `cfg.data.scarce_classes` when set, else the analysis of the
    training split (all records when the dataset has no training split, e.g. CK+)."""
    d = cfg.data
    return scarce_classes(dataset.training_labels(), d.scarce_rho, d.baseline_recall,
                          d.recall_threshold, d.scarce_classes)


def scarce_table(rows: list[ScarceRow], recall_threshold: float = 0.5,
                 override: Iterable[str | int] | None = None):
    """A rich table: class, count, share, recall, scarce?; notes an explicit override."""
    from rich.table import Table

    chosen = {label_index(c) for c in override} if override is not None else None
    threshold = rows[0].threshold if rows else 0.0
    table = Table(title="scarce-class analysis (train split)")
    for col, justify in (("class", "left"), ("count", "right"), ("share", "right"),
                         ("baseline recall", "right"), ("scarce?", "center")):
        table.add_column(col, justify=justify)
    for row in rows:
        scarce = row.scarce if chosen is None else row.label in chosen
        table.add_row(f"{row.label} {row.name}", str(row.count), f"{row.share:.1%}",
                      "-" if row.recall is None else f"{row.recall:.2f}",
                      "yes" if scarce else "no", style="bold" if scarce else None)
    rho_note = f"count < N/7*rho = {threshold:.1f}"
    if chosen is not None:
        table.caption = f"override from config: {', '.join(EMOTIONS[i] for i in sorted(chosen))} (analysis: {rho_note})"
    else:
        table.caption = f"scarce when {rho_note} and baseline recall < {recall_threshold} (when known)"
    return table
