"""Serve section: the HTTP app for the policy and online generation."""
from __future__ import annotations

from pathlib import Path

from argen_ray.config.base import Section


class ServeConfig(Section):
    host: str = "127.0.0.1"
    port: int = 8000
    checkpoint: Path | None = None     # None: the latest in the run dir / MLflow
    max_image_bytes: int = 4_000_000
    max_frames: int = 32
    policy_replicas: int = 1
    generator_replicas: int = 1
    generator_num_gpus: float = 0.0
    max_batch_size: int = 16
    batch_wait_timeout_s: float = 0.01
