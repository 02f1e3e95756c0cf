"""Ray start-up shared by every command: connect to a cluster or start the embedded local Ray."""
from __future__ import annotations

import os

from argen_ray.config import Config


def init_ray(cfg: Config, **kwargs):
    """Connect to `cfg.ray.address` or RAY_ADDRESS when set; else start a fresh local Ray.

    `address="local"` forces a new local instance, so a stale `ray_current_cluster` file from an
    earlier run can never redirect the embedded default to a dead cluster (shared notes).
    """
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context()
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    common = dict(namespace=cfg.ray.namespace, ignore_reinit_error=True, log_to_driver=True,
                  include_dashboard=False)
    common.update(kwargs)
    if address:
        common.pop("include_dashboard", None)
        return ray.init(address=address, **common)
    resources = dict(cfg.ray.local_resources)
    num_gpus = resources.pop("GPU", None)
    return ray.init(address="local", num_cpus=cfg.ray.num_cpus, num_gpus=num_gpus,
                    resources=resources or None, **common)
