"""Shared by the Serve tests: a policy checkpoint for the local preset's warp states, and a face."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from argen_ray.serving.policy import export_untrained_policy

ROOT = Path(__file__).resolve().parents[1]
WARP_ENCODER = "generator:warp:argen-ray/warp-dlib68-facs"
WARP_DIMS = (384, 142)      # MiniLM prompt embedding, landmark + colour reference embedding


def write_policy(cfg, target: Path, seed: int = 0) -> Path:
    """A fresh network saved through training's export path, with training's metadata."""
    return export_untrained_policy(cfg, target, WARP_ENCODER, *WARP_DIMS, seed=seed)


def astronaut_face() -> np.ndarray:
    """A real face, 256x256 RGB (scikit-image's astronaut, cropped to the head)."""
    from skimage import data

    return data.astronaut()[0:256, 96:352].copy()
