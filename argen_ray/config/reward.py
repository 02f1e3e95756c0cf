"""Reward section: weights, constants, group rule, scorer pool (DESIGN 2.3)."""
from __future__ import annotations

from pydantic import Field

from argen_ray.config.base import Section


class RewardConfig(Section):
    w_t: float = 0.25
    w_q: float = 0.25
    w_f: float = 0.25
    w_e: float = 0.25
    quality_lambda: float = 0.5
    sharp_kappa: float = 100.0
    contrast_norm: float = 64.0
    au_max: float = 2.0           # A_max
    face_detector: str = "haar"
    group_size: int = 4           # G
    top_k: int = 2                # k
    penalty: float = 0.1          # delta
    num_scorers: int = 2
    scorer_num_cpus: float = 1.0
    extra: dict = Field(default_factory=dict)
