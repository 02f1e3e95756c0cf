"""A multi-node cluster on one machine (`ray.cluster_utils.Cluster`, fake GPUs): the generator
lands on the GPU node group, the scorers on the CPU node group (the resource names the cluster/
manifests advertise), and training survives losing the scorer node mid-iteration — the scorer
actors restart on another CPU node and every candidate still gets its reward."""
from __future__ import annotations

import math
import threading

import pytest

from train_setup import ROOT, fast_overrides, fresh_run

pytestmark = pytest.mark.slow


def _node_of(actor) -> str:
    import ray

    return ray.get(actor.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()))


def test_actors_follow_node_groups_and_training_survives_losing_the_scorer_node(tmp_path_factory, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from argen_ray.ard.training import PolicyTrainer
    from argen_ray.config import load_config

    run_dir = fresh_run(tmp_path_factory, tmp_path / "run")
    cfg0 = load_config(ROOT / "configs" / "local.yaml", ["ray.pin_to_node_groups=true"])
    gpu_group = {cfg0.ray.gpu_node_resource: 1000}
    cpu_group = {cfg0.ray.cpu_node_resource: 1000}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        gpu_node = cluster.add_node(num_cpus=1, num_gpus=1, resources=gpu_group)
        cpu_node = cluster.add_node(num_cpus=2, resources=cpu_group)
        cluster.wait_for_nodes()
        cfg = load_config(ROOT / "configs" / "local.yaml", fast_overrides(
            run_dir, ray__address=cluster.address, ray__pin_to_node_groups="true", generator__num_gpus=1,
            reward__num_scorers=2, reward__w_e=0, train__iterations=2, train__batch_size=4, train__eval_states=0))
        trainer = PolicyTrainer(cfg)
        trainer.setup(progress=False)
        generators, scorers = trainer.evaluator.generators, trainer.evaluator.scorers
        assert {_node_of(a) for a in generators.actors} == {gpu_node.node_id}
        assert {_node_of(a) for a in scorers.actors} == {cpu_node.node_id}

        replaced = {}

        def lose_scorer_node(iteration, metrics):
            if iteration == 1:  # a spare CPU node joins, then the scorers' node dies mid-iteration 2 (the last)
                replaced["node"] = cluster.add_node(num_cpus=2, resources=cpu_group)
                cluster.wait_for_nodes()
                timer = threading.Timer(0.5, lambda: cluster.remove_node(cpu_node, allow_graceful=False))
                timer.start()
                replaced["timer"] = timer

        summary = trainer.run(on_iteration=lose_scorer_node, evaluate=False)
        replaced["timer"].join()
        # Every iteration trained on complete groups with a reward for each candidate.
        assert [h["iteration"] for h in summary.history] == [1, 2]
        assert all(math.isfinite(h["score"]) for h in summary.history)
        # The scorers now run on the replacement CPU node; the generator stayed on the GPU node.
        assert {_node_of(a) for a in scorers.actors} == {replaced["node"].node_id}
        assert {_node_of(a) for a in generators.actors} == {gpu_node.node_id}
        trainer.close()
    finally:
        ray.shutdown()
        cluster.shutdown()
