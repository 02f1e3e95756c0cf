"""Policy training section: RLlib, learning rule, checkpoints, Tune (DESIGN 2.3)."""
from __future__ import annotations

from pydantic import Field

from argen_ray.config.base import Section


class TrainConfig(Section):
    iterations: int = 20
    batch_size: int = 32           # B states per update
    lr: float = 3e-3
    group_baseline: bool = False   # subtract the group mean reward
    entropy_coeff: float = 0.01
    embed_dim: int = 64            # d
    num_heads: int = 4
    # "generator": the generator's own text/image encoders (paper); "minilm": MiniLM text +
    # pixel statistics image embedding.
    state_encoder: str = "generator"
    checkpoint_every: int = 5
    num_env_runners: int = 0
    eval_states: int = 16
    nfe_cost: float = 0.0          # Tune objective: held-out score - nfe_cost * NFE
    tune_extra: dict = Field(default_factory=dict)
