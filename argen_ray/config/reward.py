"""Reward section: weights, constants, group rule, scorer pool (DESIGN 2.3)."""
from __future__ import annotations

import math
from pathlib import Path

from pydantic import Field, model_validator

from argen_ray.config.base import Section

# AU backends whose readings are presence probabilities (0-1 per AU; argen_ray.asi.au), and the
# largest distance between two such readings over OpenFace's 17 AUs.
PRESENCE_AU_BACKENDS = ("py-feat",)
MAX_PRESENCE_DISTANCE = math.sqrt(17)


class RewardConfig(Section):
    PLACEMENT = frozenset({"num_scorers", "scorer_num_cpus", "scorer_max_rescores", "scorer_runtime_env"})
    # S = w_t R_t + w_q R_q + w_f R_f + w_e R_e + w_c R_c (Tune sweeps these).
    w_t: float = Field(0.25, ge=0)
    w_q: float = Field(0.25, ge=0)
    w_f: float = Field(0.25, ge=0)
    w_e: float = Field(0.25, ge=0)
    # R_q = lambda * mean quality + (1 - lambda) * mean SSIM of consecutive frames.
    quality_lambda: float = Field(0.5, ge=0, le=1)
    sharp_kappa: float = Field(100.0, gt=0)      # sharp = L / (L + kappa), L = Laplacian variance
    contrast_norm: float = Field(64.0, gt=0)     # contrast = min(1, std(gray) / contrast_norm)
    ssim_window: int = Field(7, ge=3)            # odd side of SSIM's window (scikit-image default)
    # R_f: a registered face detector ("haar": OpenCV's frontal cascade, p_f in {0, 1}).
    face_detector: str = "haar"
    haar_scale_factor: float = Field(1.1, gt=1)
    haar_min_neighbors: int = Field(4, ge=0)
    haar_min_size_frac: float = Field(0.15, gt=0, le=1)  # smallest face side / min(H, W)
    # Video mode for the face detector and the landmark AU backend: look for each frame's face
    # near the previous frame's, falling back to the whole frame (argen_ray/faces.py). About 3x
    # faster scoring (benchmarks/bench_rewards.py); tolerance against the whole-frame search in
    # docs/rewards.md and tests/test_ard_rewards.py. False: every frame searched in full.
    track_faces: bool = True
    # R_c (DESIGN 2.5, expression validity): did the clip reach and hold the prompt's target AUs
    # without moving others? 0 reproduces the paper's score; the presets turn it on.
    w_c: float = Field(0.0, ge=0)
    rc_au_scale: float = Field(5.0, gt=0)        # A, the AU estimator's full scale (OpenFace: 5)
    rc_mu: float = Field(0.5, ge=0)              # mu, the weight of non-target AU motion
    # R_e = 1 - min(1, mean_f ||AU_f - AU_ref|| / au_max); AUs from a registered estimator.
    au_backend: str = "landmark"
    # A_max, in the AU backend's units (17 OpenFace AUs, 0-5 each). Measured with the landmark
    # backend on py-feat's single_face.mp4 (256 px crops): neutral frames read 1-2 from frame 0
    # (landmark jitter), the full natural smile 10-13. So a natural full expression keeps about
    # a third of R_e and only an exaggerated one (>= 15) loses all of it.
    au_max: float = Field(15.0, gt=0)
    # R_e when no frame (or not the reference) yields an AU reading: the worst value, so a
    # policy cannot escape the expression penalty by making faces unreadable.
    au_unreadable_reward: float = 0.0
    # Group rule: top-k of G candidates get their score, the rest get -penalty.
    group_size: int = Field(4, ge=1)             # G
    top_k: int = Field(2, ge=1)                  # k
    penalty: float = Field(0.1, ge=0)            # delta
    # ScorerActor pool (CPU): size, CPUs per actor, and how often one video is rescored after
    # its actor crashed before the pool gives up with an error naming the video.
    num_scorers: int = Field(2, ge=1)
    scorer_num_cpus: float = Field(1.0, gt=0)
    scorer_max_rescores: int = Field(3, ge=0)
    # Ray runtime_env YAML of the ScorerActors (e.g. cluster/runtime_envs/pyfeat.yaml for
    # au_backend py-feat, whose CUDA torchvision cannot share the driver's env). None: the driver's.
    scorer_runtime_env: Path | None = None
    extra: dict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _k_within_group(self) -> "RewardConfig":
        if self.top_k > self.group_size:
            raise ValueError(f"top_k ({self.top_k}) must not exceed group_size ({self.group_size})")
        if self.ssim_window % 2 == 0:
            raise ValueError(f"ssim_window must be odd, got {self.ssim_window}")
        if self.au_backend in PRESENCE_AU_BACKENDS and (self.rc_au_scale > 1 or self.au_max > MAX_PRESENCE_DISTANCE):
            # py-feat reads presence probabilities (0-1), not OpenFace's 0-5 intensities: scales
            # set for intensities would make R_e and R_c blind to any expression.
            raise ValueError(f"au_backend {self.au_backend!r} reads AU presence probabilities (0-1): set "
                             f"rc_au_scale to 1 (got {self.rc_au_scale:g}) and au_max to at most "
                             f"{MAX_PRESENCE_DISTANCE:.2f} = sqrt(17 AUs) (got {self.au_max:g}), e.g. au_max: 3")
        return self
