"""Recognition and metrics section (DESIGN 2.4)."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from argen_ray.config.base import Section


class RecognitionConfig(Section):
    models: list[str] = Field(default_factory=lambda: ["Res18_LSTM"])
    epochs: int = 4
    batch_size: int = 8
    lr: float = 0.01
    momentum: float = 0.9
    num_segments: int = 16
    image_size: int = 112
    hidden: int = 256
    pretrained: Path | None = None     # local ImageNet state dict for the backbone
    clips_per_scarce_class: int = 12   # generated clips added per scarce class
