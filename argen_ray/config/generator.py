"""Generator section: TI2V diffusion or the CPU warp backend, action sets, guidance (DESIGN 2.2)."""
from __future__ import annotations

from pydantic import Field

from argen_ray.config.base import Section


class ActionSpaceConfig(Section):
    steps: list[int] = Field(default_factory=lambda: [5, 10, 15, 20, 25])
    alpha: list[float] = Field(default_factory=lambda: [1.0, 1.5, 2.0, 3.0])
    beta: list[float] = Field(default_factory=lambda: [1.0, 1.5, 2.0, 3.0])


class WarpConfig(Section):
    """The CPU warp backend (argen_ray/ard/warp.py, docs/warp.md)."""

    max_side: int = Field(512, ge=32)         # longer references are downscaled before warping
    # Request AU intensities times au_scale = OpenFace 0-5 (prompts.jsonl stores 0-1 fractions).
    au_scale: float = Field(5.0, gt=0)
    text_encoder: str = "all-MiniLM-L6-v2"    # state text embedding: packaged MiniLM or a local folder


class GeneratorConfig(Section):
    # Registered backend name: "ti2v" (diffusion) or "warp" (CPU landmark warping).
    backend: str = "warp"
    # Local folder or hub id; "tiny" builds and caches a tiny random model for the local preset.
    model: str = "tiny"
    num_frames: int = 16          # F; N = F - 1 new frames
    height: int = 64
    width: int = 64
    resample: int = 0             # r resample passes per step
    w_min: float = 6.0
    w_max: float = 12.0
    action_space: ActionSpaceConfig = Field(default_factory=ActionSpaceConfig)
    num_actors: int = 1
    num_gpus: float = 0.0         # per GeneratorActor; fractional allowed
    fps: int = 8
    warp: WarpConfig = Field(default_factory=WarpConfig)
