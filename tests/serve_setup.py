"""Shared by the Serve tests: a policy checkpoint for the local preset's warp states.

A freshly initialised `PolicyNetwork` written by `export_policy` (the code path training's
checkpoints use) with the metadata training records, sized for the warp backend's states.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from argen_ray.ard.policy import PolicyNetwork, export_policy

ROOT = Path(__file__).resolve().parents[1]
WARP_ENCODER = "generator:warp:argen-ray/warp-dlib68-facs"
WARP_DIMS = (384, 142)      # MiniLM prompt embedding, landmark + colour reference embedding


def write_policy(cfg, target: Path, seed: int = 0) -> Path:
    a = cfg.generator.action_space
    torch.manual_seed(seed)
    net = PolicyNetwork(*WARP_DIMS, [len(a.steps), len(a.alpha), len(a.beta)], cfg.train.embed_dim,
                        cfg.train.num_heads)
    meta = {"action_values": {"steps": list(a.steps), "alpha": list(a.alpha), "beta": list(a.beta)},
            "state_encoder": "generator", "encoder_id": WARP_ENCODER, "generator_backend": "warp",
            "generator_model": cfg.generator.model, "iteration": 0}
    return export_policy(net, target, meta)


def astronaut_face() -> np.ndarray:
    """A real face, 256x256 RGB (scikit-image's astronaut, cropped to the head)."""
    from skimage import data

    return data.astronaut()[0:256, 96:352].copy()
