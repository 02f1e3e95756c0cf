"""Placement groups for the GPU actors (generator pool, VLM): one bundle per actor.

Each bundle asks for the actor's GPUs (fractional allowed; 0 on a CPU machine, where the same
code runs), its CPUs, and — when `ray.pin_to_node_groups` is on — a share of the GPU worker
group's custom resource, the name the cluster/ manifests advertise. Reserving all bundles up
front makes a run fail fast with a clear message when the cluster cannot host the actors,
instead of hanging on the first generation call.

Roles are a registry: role -> (actor count, GPUs per actor, CPUs per actor) read from the config.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from argen_ray.errors import ArgenError

# role -> cfg -> (count, num_gpus per actor, num_cpus per actor)
GPU_ROLES: dict[str, Callable] = {
    "generator": lambda cfg: (cfg.generator.num_actors, cfg.generator.num_gpus, cfg.generator.num_cpus),
    "vlm": lambda cfg: (1, cfg.asi.vlm.num_gpus, 1.0),
}


class PlacementError(ArgenError, RuntimeError):
    """The cluster cannot host the requested actors (missing GPUs or node-group resources)."""


@dataclass
class ActorPlacement:
    """A ready placement group for one role and the `.options(...)` of each of its actors."""

    role: str
    group: object | None           # PlacementGroup; None inside a Tune trial (its group holds the bundles)
    count: int
    num_gpus: float
    num_cpus: float
    resources: dict[str, float]

    def actor_options(self, index: int) -> dict:
        """Options that put actor `index` of the role into its bundle."""
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        if not 0 <= index < self.count:
            raise PlacementError(f"{self.role} actor index {index} outside its {self.count} bundles")
        options = {"num_gpus": self.num_gpus, "num_cpus": self.num_cpus, "resources": dict(self.resources) or None}
        if self.group is not None:
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                placement_group=self.group, placement_group_bundle_index=index)
        return options

    def remove(self) -> None:
        if self.group is not None:
            from ray.util import remove_placement_group

            remove_placement_group(self.group)
            self.group = None


def bundles(cfg, role: str) -> list[dict[str, float]]:
    """The resource bundles of a role, one per actor."""
    if role not in GPU_ROLES:
        raise PlacementError(f"unknown actor role {role!r}; known: {sorted(GPU_ROLES)}")
    count, gpus, cpus = GPU_ROLES[role](cfg)
    bundle = {"CPU": float(cpus), **cfg.ray.node_group_resources("gpu")}
    if gpus:
        bundle["GPU"] = float(gpus)
    return [dict(bundle) for _ in range(int(count))]


def reserve_gpu_actors(cfg, role: str, timeout_s: float = 60.0) -> ActorPlacement:
    """Create (or find, by name) the role's placement group and wait until it is placed.

    Inside a Tune trial the trial's own placement group (`trial_resources`) already holds these
    bundles and captures the actors the trial creates, so no second group is reserved.
    """
    import ray
    from ray.util.placement_group import get_current_placement_group, placement_group

    specs = bundles(cfg, role)
    count, gpus, cpus = GPU_ROLES[role](cfg)
    resources = cfg.ray.node_group_resources("gpu")
    if get_current_placement_group() is not None:
        return ActorPlacement(role, None, int(count), float(gpus), float(cpus), resources)
    name = f"argen-{role}-{cfg.ray.namespace}"
    try:
        group = ray.util.get_placement_group(name)
    except ValueError:
        # PACK fills a node's GPUs before the next (fractional shares stay together).
        group = placement_group(specs, strategy="PACK", name=name)
    ready, _ = ray.wait([group.ready()], timeout=timeout_s)
    if not ready:
        available = ray.available_resources()
        ray.util.remove_placement_group(group)
        raise PlacementError(
            f"cannot place {count} {role} actor(s) of {specs[0]} each within {timeout_s:.0f} s; the cluster has "
            f"{ {k: v for k, v in sorted(available.items()) if not k.startswith('node:')} } free "
            f"(lower generator.num_gpus / num_actors, or add GPU workers advertising "
            f"{cfg.ray.gpu_node_resource!r})")
    return ActorPlacement(role, group, int(count), float(gpus), float(cpus), resources)


def trial_resources(cfg):
    """A Tune trial's resources: the trial itself (a driver, like `ray job submit`'s), its
    generator actors' bundles and its scorer actors' bundles, so Tune only starts a trial whose
    actors fit, and the actors the trial creates are captured into these bundles."""
    from ray.tune import PlacementGroupFactory

    t = cfg.train
    scorer = {"CPU": float(cfg.reward.scorer_num_cpus), **cfg.ray.node_group_resources("cpu")}
    env_runner = {"CPU": float(t.env_runner_num_cpus) or 0.01}
    learner = {"CPU": 1.0, **({"GPU": float(t.learner_num_gpus)} if t.learner_num_gpus else {})}
    # Ray rejects all-zero bundles; the trial's own work is the driver's small share.
    return PlacementGroupFactory([{"CPU": 0.01}] + bundles(cfg, "generator") + [dict(scorer)] * cfg.reward.num_scorers
                                 + [dict(env_runner)] * t.num_env_runners + [dict(learner)] * t.num_learners)


def runtime_env_file(path, field: str, error: type[ArgenError]) -> dict | None:
    """An actor's Ray runtime_env from the YAML file named by config `field` (None: the driver's env).
    Heavy backends (vLLM, py-feat) pin packages that cannot share the driver's environment."""
    from argen_ray.io import read_yaml_mapping

    return None if path is None else read_yaml_mapping(path, f"{field}: Ray runtime_env file", error)
