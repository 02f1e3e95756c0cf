"""The per-frame guidance curve and the policy's factorised action space (DESIGN 2.2).

Guidance curve: with u_n = (n - 1/2) / N for the N generated frames,
g(u; alpha, beta) = u^(alpha-1) (1-u)^(beta-1), normalised by its maximum over the N points, and
w_n = w_min + (w_max - w_min) g(u_n). alpha = beta = 1 is flat at w_max; alpha > beta pushes the
peak late in the clip, alpha < beta early; for alpha, beta > 1 the peak is near the Beta mode
(alpha - 1) / (alpha + beta - 2).

Action: three heads, one index each into the configured sets of steps T, alpha and beta.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from argen_ray.errors import ArgenError


class ActionError(ArgenError, ValueError):
    """An action or a guidance-curve parameter is out of range."""


def guidance_curve(num_frames: int, alpha: float, beta: float, w_min: float, w_max: float) -> np.ndarray:
    """w_n for n = 1..num_frames (the generated frames), float64."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ActionError(f"num_frames must be a positive integer, got {num_frames!r}")
    if not (alpha > 0 and beta > 0):
        raise ActionError(f"alpha and beta must be positive, got alpha={alpha!r}, beta={beta!r}")
    if not w_min <= w_max:
        raise ActionError(f"w_min ({w_min}) must not exceed w_max ({w_max})")
    u = (np.arange(1, num_frames + 1) - 0.5) / num_frames
    # In log space: u^(alpha-1) underflows for large shapes; u is never 0 or 1 here.
    log_g = (alpha - 1) * np.log(u) + (beta - 1) * np.log1p(-u)
    g = np.exp(log_g - log_g.max())
    return w_min + (w_max - w_min) * g


# TI2V-Zero's face setting (DESIGN 2.2): 10 DDIM steps at a constant guidance of 9.0.
TI2V_ZERO_STEPS = 10
TI2V_ZERO_GUIDANCE = 9.0


@dataclass(frozen=True)
class GenerationParams:
    steps: int
    alpha: float | None       # None for a constant-guidance setting (no curve)
    beta: float | None
    guidance: np.ndarray      # w_n per generated frame
    resample: int | None = None   # r for this setting (TI2V-Zero's r = 4); None: generator.resample


class ActionSpace:
    """Decodes the three heads' indices into generation parameters, and back."""

    def __init__(self, steps, alpha, beta, num_frames: int, w_min: float, w_max: float):
        self.steps = [int(s) for s in steps]
        self.alpha = [float(a) for a in alpha]
        self.beta = [float(b) for b in beta]
        if not (self.steps and self.alpha and self.beta):
            raise ActionError("every action head needs at least one value")
        self.num_frames = int(num_frames)     # N, the generated frames the curve spans
        self.w_min, self.w_max = float(w_min), float(w_max)
        guidance_curve(self.num_frames, self.alpha[0], self.beta[0], self.w_min, self.w_max)  # validates

    @classmethod
    def from_config(cls, gen_cfg, values: dict | None = None, num_frames: int | None = None) -> "ActionSpace":
        """From `cfg.generator`; `values` ({"steps", "alpha", "beta"}, e.g. a policy's own sets)
        override the configured sets; `num_frames` (the reference included) overrides
        `generator.num_frames`, e.g. the short candidates of policy training."""
        frames = gen_cfg.num_frames if num_frames is None else int(num_frames)
        sets = {**gen_cfg.action_space.model_dump(), **(values or {})}
        return cls(sets["steps"], sets["alpha"], sets["beta"], frames - 1, gen_cfg.w_min, gen_cfg.w_max)

    @property
    def nvec(self) -> np.ndarray:
        return np.array([len(self.steps), len(self.alpha), len(self.beta)], dtype=np.int64)

    def decode(self, action) -> GenerationParams:
        a = np.asarray(action).reshape(-1)
        if a.shape != (3,) or not np.issubdtype(a.dtype, np.integer) or (a < 0).any() or (a >= self.nvec).any():
            raise ActionError(f"action must be 3 integer indices below {self.nvec.tolist()}, got {np.asarray(action).tolist()}")
        steps, alpha, beta = self.steps[a[0]], self.alpha[a[1]], self.beta[a[2]]
        return GenerationParams(steps, alpha, beta,
                                guidance_curve(self.num_frames, alpha, beta, self.w_min, self.w_max))

    def constant(self, steps: int = TI2V_ZERO_STEPS, w: float = TI2V_ZERO_GUIDANCE,
                 resample: int | None = None) -> GenerationParams:
        """A fixed setting outside the curve family: T steps at constant guidance w for every
        frame (TI2V-Zero's baseline by default), for `generate --fixed T,const:W` and baselines;
        `resample` its own r (None: generator.resample, as the policy's actions)."""
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ActionError(f"steps must be a positive integer, got {steps!r}")
        if not np.isfinite(w) or w < 0:
            raise ActionError(f"constant guidance must be a finite number >= 0, got {w!r}")
        if resample is not None and (isinstance(resample, bool) or not isinstance(resample, (int, np.integer))
                                     or resample < 0):
            raise ActionError(f"resample must be an integer >= 0 or None, got {resample!r}")
        return GenerationParams(int(steps), None, None, np.full(self.num_frames, float(w)),
                                None if resample is None else int(resample))

    def encode(self, steps: int, alpha: float, beta: float) -> np.ndarray:
        """The action whose decoding gives these values (each must be in its set)."""
        index = []
        for name, value, values in (("steps", steps, self.steps), ("alpha", alpha, self.alpha),
                                    ("beta", beta, self.beta)):
            matches = [i for i, v in enumerate(values) if np.isclose(v, value)]
            if not matches:
                raise ActionError(f"{name}={value} is not in the action set {values}")
            index.append(matches[0])
        return np.array(index, dtype=np.int64)
