"""Dataset section: which dataset, where, and the scarce-class rule (DESIGN 2)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from argen_ray.config.base import Section


class DemoDataConfig(Section):
    PLACEMENT = frozenset({"workers"})
    seed: int = Field(default=0, ge=0)
    # At least 5: the 5 folds are split by identity.
    num_identities: int = Field(default=12, ge=5)
    # Clips per class follow DFEW-like shares; this scales them.
    clips_per_identity: int = Field(default=6, ge=2)
    # Every fold's test split holds at least this many clips of every class (0: no floor; the
    # presets use 5 with 40 identities x 10 clips so per-fold scarce-class recall is measurable).
    min_test_clips: int = Field(default=0, ge=0)
    frames: int = Field(default=16, ge=4)
    size: int = Field(default=112, ge=32, le=1024)
    # Rendering processes (the output is identical for any count).
    workers: int = Field(default=1, ge=1)


class DataConfig(Section):
    # "demo": the embedded demo dataset, written to <run_dir>/demo-data on first use and read
    # with the dfew adapter.
    kind: Literal["demo", "dfew", "ferv39k", "ckplus", "dferclip", "manifest"] = "demo"
    root: Path | None = None
    # DFEW's 5-fold protocol (demo data too); ignored by kinds without folds.
    fold: int = Field(default=1, ge=1, le=5)
    # Adapter options, e.g. {source: original} for dfew (or clip_224x224_16f / clip_224x16f; auto
    # picks one layout for the whole dataset), {labels: plain} for dfew copies with
    # EmoLabel_DataSplit/{train,test}/, {contempt_as: disgust} for ckplus,
    # {verify: full} to decode every clip while loading (see argen_ray.data.adapters).
    options: dict = Field(default_factory=dict)
    demo: DemoDataConfig = Field(default_factory=DemoDataConfig)
    num_frames: int = 16
    # A class is scarce when its train count < N/7 * rho (and its baseline recall < 0.5 when known).
    scarce_rho: float = Field(default=0.7, gt=0)
    recall_threshold: float = Field(default=0.5, ge=0, le=1)
    # Per-class recall of a baseline trained on this dataset (class name -> recall), when known.
    baseline_recall: dict[str, float] | None = None
    # Explicit scarce classes (names) override the analysis.
    scarce_classes: list[str] | None = None

    @field_validator("scarce_classes")
    @classmethod
    def _known_classes(cls, value: list[str] | None) -> list[str] | None:
        from argen_ray.data.labels import label_name

        return None if value is None else [label_name(v) for v in value]

    @field_validator("baseline_recall")
    @classmethod
    def _known_recall_classes(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        from argen_ray.data.labels import label_name

        return None if value is None else {label_name(k): float(v) for k, v in value.items()}
