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
    # Custom resources the cluster's worker groups advertise (cluster/ manifests use the same
    # names): GPU workers host the generator and VLM actors, CPU workers the scorer actors.
    # Actors request a tiny share of their group's resource when `pin_to_node_groups` is on.
    gpu_node_resource: str = "argen_gpu_node"
    cpu_node_resource: str = "argen_cpu_node"
    pin_to_node_groups: bool = False

    def node_group_resources(self, group: str) -> dict[str, float]:
        """Ray `resources=` for an actor of a node group ("gpu" or "cpu"); empty when unpinned."""
        if not self.pin_to_node_groups:
            return {}
        name = {"gpu": self.gpu_node_resource, "cpu": self.cpu_node_resource}[group]
        return {name: 0.001}


class TrackingConfig(Section):
    # None: SQLite database inside the run directory (mlflow.db).
    tracking_uri: str | None = None
    experiment: str = "argen-ray"
    enabled: bool = True
