"""Dataset section: which dataset, where, and the scarce-class rule (DESIGN 2)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from argen_ray.config.base import Section


class DemoDataConfig(Section):
    seed: int = 0
    num_identities: int = 12
    # Clips per class follow DFEW-like shares; this scales them.
    clips_per_identity: int = 6
    frames: int = 16
    size: int = 112


class DataConfig(Section):
    # "demo": the embedded demo dataset, written to <run_dir>/demo-data on first use and read
    # with the dfew adapter.
    kind: Literal["demo", "dfew", "ferv39k", "ckplus", "dferclip", "manifest"] = "demo"
    root: Path | None = None
    fold: int = 1
    options: dict = Field(default_factory=dict)
    demo: DemoDataConfig = Field(default_factory=DemoDataConfig)
    num_frames: int = 16
    # A class is scarce when its train count < N/7 * rho (and its baseline recall < 0.5 when known).
    scarce_rho: float = 0.7
    recall_threshold: float = 0.5
    # Explicit scarce classes (names) override the analysis.
    scarce_classes: list[str] | None = None
