"""What a loaded dataset is: clip records, skip reports, and the `Dataset` that holds both."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from argen_ray.data.labels import EMOTIONS
from argen_ray.errors import ArgenError


class DatasetError(ArgenError, ValueError):
    """A dataset cannot be used (wrong root, missing split lists, nothing usable left)."""


@dataclass(frozen=True)
class ClipRecord:
    """One labelled clip. `source` is a video file or a directory of frame images."""

    clip_id: str
    source: Path
    label: int
    subject: str | None = None
    split: str = "train"
    fold: int | None = None
    # OpenFace-style per-frame AU CSV shipped with the dataset, when there is one.
    au_csv: Path | None = None
    # Frame count when the loader learned it (frame directories, annotation files).
    num_frames: int | None = None
    # Sequences that start at a neutral face (CK+: neutral -> apex): how many leading frames may
    # serve as the subject's identity frame. ASI takes identities from them when a dataset has no
    # neutral class.
    neutral_onset: int | None = None

    @property
    def emotion(self) -> str:
        return EMOTIONS[self.label]


@dataclass(frozen=True)
class SkipReport:
    """An item the loader left out. `reason` is a short category (the summary groups by it)."""

    path: Path
    line: int | None
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


# Splits in the order tables show them; others follow alphabetically.
_SPLIT_ORDER = ("train", "val", "test")


@dataclass
class Dataset:
    kind: str
    root: Path
    records: list[ClipRecord] = field(default_factory=list)
    skipped: list[SkipReport] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def split(self, name: str) -> list[ClipRecord]:
        return [r for r in self.records if r.split == name]

    @property
    def split_names(self) -> list[str]:
        present = {r.split for r in self.records}
        return [s for s in _SPLIT_ORDER if s in present] + sorted(present - set(_SPLIT_ORDER))

    def labels(self, split: str | None = None) -> list[int]:
        return [r.label for r in self.records if split is None or r.split == split]

    def training_labels(self) -> list[int]:
        """Labels the scarce analysis counts: the train split, or every record when a dataset
        has none (CK+ is a zero-shot test set)."""
        return self.labels("train") or self.labels()

    def class_counts(self, split: str | None = None) -> list[int]:
        counts = Counter(self.labels(split))
        return [counts.get(i, 0) for i in range(len(EMOTIONS))]

    def skip_counts(self) -> dict[str, int]:
        """Skipped items per reason, most frequent first."""
        return dict(Counter(s.reason for s in self.skipped).most_common())

    def summary_table(self):
        """A rich table: clips per class and split, with the skip counts in the caption."""
        from rich.table import Table

        splits = self.split_names
        table = Table(title=f"{self.kind} dataset at {self.root}")
        table.add_column("class")
        for s in splits:
            table.add_column(s, justify="right")
        table.add_column("total", justify="right")
        per_split = {s: self.class_counts(s) for s in splits}
        for i, name in enumerate(EMOTIONS):
            row = [per_split[s][i] for s in splits]
            table.add_row(f"{i} {name}", *map(str, row), str(sum(row)))
        table.add_row("all", *(str(sum(per_split[s])) for s in splits), str(len(self.records)), style="bold")
        skips = self.skip_counts()
        reasons = ", ".join(f"{n} {reason}" for reason, n in skips.items())
        table.caption = f"{len(self.records)} clips loaded; {len(self.skipped)} skipped" + (
            f": {reasons}" if reasons else "")
        return table
