"""Ray connection and MLflow tracking sections."""
from __future__ import annotations

from pydantic import Field

from argen_ray.config.base import Section


class RayConfig(Section):
    # None: use RAY_ADDRESS when set, else start a local Ray (the embedded default).
    address: str | None = None
    num_cpus: int | None = None
    namespace: str = "argen"
    # Extra Ray resources to pretend on a local start (tests of placement use this).
    local_resources: dict[str, float] = Field(default_factory=dict)


class TrackingConfig(Section):
    # None: SQLite database inside the run directory (mlflow.db).
    tracking_uri: str | None = None
    experiment: str = "argen-ray"
    enabled: bool = True
