"""Serve section: the HTTP app for the policy and online generation (serve/, argen_ray/serving/)."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from argen_ray.config.base import Section


class AutoscalingConfig(Section):
    """Ray Serve autoscaling of one deployment (replaces its fixed replica count when set)."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(2, ge=1)
    target_ongoing_requests: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> "AutoscalingConfig":
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})")
        return self


class ServeConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    app_name: str = "argen"
    route_prefix: str = "/"
    # The policy: a policy.pt file, a folder holding one, or an RLlib checkpoint folder. None: the
    # MLflow run `mlflow_run_id` when set, else <run_dir>/policy/policy.pt, else the latest
    # finished MLflow run of `tracking.experiment` that logged a policy.pt.
    checkpoint: Path | None = None
    mlflow_run_id: str | None = None
    # Request limits: bigger uploads get 413, more frames than max_frames get 422.
    max_image_bytes: int = Field(4_000_000, ge=1024)
    max_image_pixels: int = Field(16_000_000, ge=1024)
    min_image_side: int = Field(32, ge=8)
    # Longer side / shorter side, checked from the header: a face photo is never a 400000x32
    # strip, whose upscaling for the face detector would need gigabytes (a 422 instead).
    max_image_aspect: float = Field(4.0, ge=1.0)
    max_frames: int = Field(32, ge=2)
    max_prompt_chars: int = Field(2000, ge=1)
    # A request waiting longer than this on a deployment gets 504 instead of hanging.
    request_timeout_s: float = Field(300.0, gt=0)
    # A request body that has not fully arrived within this many seconds gets 408.
    body_timeout_s: float = Field(10.0, gt=0)
    # AU backend reading the uploaded identity image (`asi.au` backends; the landmark one needs
    # no per-dataset files).
    au_backend: str = "landmark"
    # Deployments: replicas (or autoscaling), CPUs/GPUs per replica, queue limits.
    ingress_replicas: int = Field(1, ge=1)
    ingress_num_cpus: float = Field(0.25, ge=0)
    # Requests one ingress replica works on at once (Serve's default of 5 would cap the policy's
    # batches at 5 per ingress replica); the rest wait in the proxy.
    ingress_max_ongoing: int = Field(64, ge=1)
    policy_replicas: int = Field(1, ge=1)
    policy_autoscaling: AutoscalingConfig | None = None
    policy_num_cpus: float = Field(0.5, ge=0)
    policy_num_gpus: float = Field(0.0, ge=0)   # the state encoder is the generator's own (ti2v: GPU)
    generator_replicas: int = Field(1, ge=1)
    generator_autoscaling: AutoscalingConfig | None = None
    generator_num_cpus: float = Field(1.0, ge=0)
    generator_num_gpus: float = Field(0.0, ge=0)
    generator_max_ongoing: int = Field(2, ge=1)
    max_queued_requests: int = Field(64, ge=1)  # per deployment handle; beyond it: 503
    # serve.batch over /v1/policy requests (one state-encoder and one policy call per batch).
    max_batch_size: int = Field(16, ge=1)
    batch_wait_timeout_s: float = Field(0.01, ge=0)
