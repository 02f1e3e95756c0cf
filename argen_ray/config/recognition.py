"""Recognition and metrics section (DESIGN 2.4). Defaults are the local preset: small frames and
few segments so the CPU run stays short; the GPU preset sets the paper's 16 segments at 224 px
(112 px is the older DFEW convention of Former-DFER-era baselines, not the paper's setting)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from argen_ray.config.base import Section


class AugmentConfig(Section):
    # m = median training count of the non-scarce classes; each scarce class is filled up to gamma*m.
    gamma: float = Field(default=1.0, ge=0)
    # Explicit generated-clip counts per scarce class (class name -> count) override gamma.
    per_class: dict[str, int] = Field(default_factory=dict)

    @field_validator("per_class")
    @classmethod
    def _known_classes(cls, value: dict[str, int]) -> dict[str, int]:
        from argen_ray.data.labels import EMOTIONS

        bad = {k: v for k, v in value.items() if k not in EMOTIONS or v < 0}
        if bad:
            raise ValueError(f"per_class needs class names from {', '.join(EMOTIONS)} and counts >= 0, got {bad}")
        return value


class RecognitionConfig(Section):
    PLACEMENT = frozenset({"device", "num_workers", "processes"})
    # Baselines to train: Res18_LSTM, Res18_Transformer, VGG13_LSTM, VGG13_Transformer.
    models: list[str] = Field(default_factory=lambda: ["Res18_LSTM"])
    # From random weights the demo dataset needs ~25 epochs: at 6 a Res18_LSTM is still at chance
    # (WAR 0.17 on fold 1); at 25, WAR ~0.5 (tests/test_demo_learnable.py).
    epochs: int = Field(default=25, ge=1)
    batch_size: int = Field(default=8, ge=1)
    lr: float = Field(default=0.01, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=5e-4, ge=0)
    # Linear lr warm-up (epochs, fractions allowed), then a cosine decay to 0, stepped per batch.
    warmup_epochs: float = Field(default=1.0, ge=0)
    # Gradient-norm clipping (null: none).
    grad_clip: float | None = Field(default=5.0, gt=0)
    # DFER-CLIP sampling: segments per clip (16 in the paper), frames resized to image_size.
    num_segments: int = Field(default=8, ge=1)
    image_size: int = Field(default=64, ge=32)
    hidden: int = Field(default=256, ge=8)
    # Local torchvision ImageNet state dicts per backbone, e.g. {resnet18: /models/resnet18.pth,
    # vgg13: /models/vgg13_bn.pth}; backbones without one start from random weights.
    pretrained: dict[str, Path] = Field(default_factory=dict)
    # True: every configured model's backbone must have its ImageNet weights in `pretrained`
    # (the paper's baselines are ImageNet-initialised); preflight lists any that is missing.
    require_pretrained: bool = False
    # DFEW protocol: folds to run (null = the configured data.fold only; [1,2,3,4,5] = 5-fold).
    folds: list[int] | None = None
    # Study protocol (DESIGN 2.5): training seeds; every fold x seed pair trains both variants
    # (null = the run's seed only). Mean ± std and bootstrap CIs are over the pairs.
    seeds: list[int] | None = None
    # Leave out of the augmented training set the generated clips the original-only recognizer
    # does not label with their emotion (off by default; the report counts what it drops).
    filter_unrecognized: bool = False
    # CK+ zero-shot: the recognition output directory of a run on another dataset; its
    # checkpoints are evaluated on every CK+ clip.
    zero_shot_from: Path | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: int = Field(default=0, ge=0)   # DataLoader worker processes
    # The study's worker processes: with > 1, the frozen-backbone features are computed and the
    # (fold, seed) pairs trained this many at a time (each on one thread; results unchanged).
    processes: int = Field(default=1, ge=1)
    # How many generated clips each scarce class gets (DESIGN 2.5): g_c = max(0, ceil(gamma*m) - n_c).
    augment: AugmentConfig = Field(default_factory=lambda: AugmentConfig())
    # Generation metrics: FVD groups smaller than this (either side) are skipped and reported;
    # diversity compares this many frames per clip at this size.
    fvd_min_group_size: int = Field(default=2, ge=2)
    diversity_frames: int = Field(default=8, ge=1)
    diversity_image_size: int = Field(default=112, ge=32)
    # Diversity's perceptual distance: "mobilenet_v2" (weights ship in a package), or the paper's
    # LPIPS ("lpips_alex" / "lpips_vgg"), which needs diversity_weights {backbone_weights:
    # torchvision ImageNet state dict, linear_weights: LPIPS v0.1 linear heads}.
    diversity_metric: Literal["mobilenet_v2", "lpips_alex", "lpips_vgg"] = "mobilenet_v2"
    diversity_weights: dict[str, Path] = Field(default_factory=dict)

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:
        from argen_ray.recognition.models import MODELS

        unknown = [m for m in value if m not in MODELS]
        if unknown or not value:
            raise ValueError(f"unknown model(s) {unknown or '(none given)'}; choose from {', '.join(MODELS)}")
        return value

    @field_validator("pretrained")
    @classmethod
    def _known_backbones(cls, value: dict[str, Path]) -> dict[str, Path]:
        from argen_ray.recognition.models import BACKBONES

        unknown = sorted(set(value) - set(BACKBONES))
        if unknown:
            raise ValueError(f"pretrained weights for unknown backbone(s) {unknown}; backbones: {', '.join(BACKBONES)}")
        return value

    @model_validator(mode="after")
    def _lpips_weights(self) -> "RecognitionConfig":
        need = {"backbone_weights", "linear_weights"} if self.diversity_metric.startswith("lpips_") else set()
        if set(self.diversity_weights) != need:
            raise ValueError(f"diversity_weights for diversity_metric {self.diversity_metric!r} must have exactly the "
                             f"keys {sorted(need) or '(none)'}, got {sorted(self.diversity_weights)}")
        return self

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or len(set(value)) != len(value) or min(value) < 0):
            raise ValueError(f"seeds must be a non-empty list of distinct non-negative integers, got {value}")
        return value

    @field_validator("folds")
    @classmethod
    def _dfew_folds(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(not 1 <= f <= 5 for f in value)):
            raise ValueError(f"folds must be a non-empty list of DFEW folds 1..5, got {value}")
        return value
