"""Placement groups for the GPU actors: GPU counts from the config (0 on a CPU machine),
node-group resources by name, a fast clear failure when the cluster cannot host them."""
from __future__ import annotations

import pytest

from argen_ray.actors.placement import PlacementError, bundles, reserve_gpu_actors, trial_resources
from argen_ray.config import load_config


def test_bundles_ask_for_what_the_config_names():
    cpu_only = load_config(None, ["generator.num_actors=2", "generator.num_cpus=0.5"])
    assert bundles(cpu_only, "generator") == [{"CPU": 0.5}, {"CPU": 0.5}]  # no GPU key on CPU
    pinned = load_config(None, ["generator.num_gpus=0.5", "ray.pin_to_node_groups=true",
                                "ray.gpu_node_resource=my_gpu_group"])
    assert bundles(pinned, "generator") == [{"CPU": 1.0, "GPU": 0.5, "my_gpu_group": 0.001}]
    trial = trial_resources(load_config(None, ["reward.num_scorers=3", "ray.pin_to_node_groups=true"]))
    specs = trial.bundles
    assert specs[0] == {"CPU": 0.01} and len(specs) == 1 + 1 + 3
    assert specs[-1] == {"CPU": 1.0, "argen_cpu_node": 0.001}
    with pytest.raises(PlacementError, match="unknown actor role 'tts'"):
        bundles(cpu_only, "tts")


def test_actors_land_in_their_bundles_and_see_their_gpu_share():
    import ray

    cfg = load_config(None, ["ray.num_cpus=2", "ray.local_resources={GPU: 1}", "generator.num_actors=2",
                             "generator.num_gpus=0.5", "generator.num_cpus=0.5", "ray.namespace=placement-test"])
    from argen_ray.runtime import init_ray

    init_ray(cfg)
    try:
        placement = reserve_gpu_actors(cfg, "generator", timeout_s=30)

        @ray.remote
        class Probe:
            def where(self):
                ctx = ray.get_runtime_context()
                return ctx.get_placement_group_id(), ray.get_gpu_ids()

        probes = [Probe.options(**placement.actor_options(i)).remote() for i in range(2)]
        for pg_id, gpus in ray.get([p.where.remote() for p in probes]):
            assert pg_id == placement.group.id.hex() and len(gpus) == 1
        # Both half-GPU actors share the one GPU: nothing is left for a third.
        assert ray.available_resources().get("GPU", 0) == pytest.approx(0)
        with pytest.raises(PlacementError, match=r"cannot place 1 generator actor\(s\).*lower generator.num_gpus"):
            reserve_gpu_actors(load_config(None, ["generator.num_gpus=1", "ray.namespace=other"]), "generator",
                               timeout_s=2)
        placement.remove()
    finally:
        ray.shutdown()
