"""The VLMActor: one VLM backend in its own Ray actor, with GPUs and its own runtime env.

On a GPU cluster the actor runs vLLM (Qwen2.5-VL-7B-Instruct) with `asi.vlm.num_gpus` GPUs and
the runtime env named by `asi.vlm.runtime_env` (cluster/runtime_envs/vllm.yaml: vLLM pins its
own torch/transformers, which must never touch the driver's environment). It is named
`argen-vlm` in the config's Ray namespace, so every caller reaches the same loaded model.
"""
from __future__ import annotations

import os

from argen_ray.asi.vlm import VLMRequest, build_vlm
from argen_ray.config import Config
from argen_ray.config.asi import VLMConfig
from argen_ray.actors.placement import runtime_env_file
from argen_ray.errors import ArgenError, root_message

VLM_ACTOR_NAME = "argen-vlm"


class VLMActorError(ArgenError, RuntimeError):
    """The VLM actor could not start or answer; the message names the backend and model."""


class VLMActor:
    """Hosts one backend (loaded once); `generate` takes a batch of requests."""

    def __init__(self, vlm: dict, seed: int = 0):
        self.cfg = VLMConfig.model_validate(vlm)
        self.backend = build_vlm(self.cfg, seed=seed)
        self.served = 0

    def generate(self, requests: list[VLMRequest]) -> list[str]:
        texts = self.backend.generate(requests)
        self.served += len(requests)
        return texts

    def info(self) -> dict:
        return {"pid": os.getpid(), "backend": self.cfg.backend, "model": self.cfg.model, "served": self.served}


def start_vlm_actor(cfg: Config):
    """Get-or-create the named VLMActor and wait until its model is loaded."""
    import ray

    vlm = cfg.asi.vlm
    actor = ray.remote(VLMActor).options(
        name=VLM_ACTOR_NAME, namespace=cfg.ray.namespace, get_if_exists=True, num_gpus=vlm.num_gpus,
        num_cpus=1, resources=cfg.ray.node_group_resources("gpu") or None, runtime_env=runtime_env_file(vlm.runtime_env, "asi.vlm.runtime_env", VLMActorError),
        max_restarts=1,
    ).remote(vlm.model_dump(mode="json"), cfg.seed)
    try:
        ray.get(actor.info.remote())
    except ray.exceptions.RayError as exc:
        raise VLMActorError(f"VLM actor failed to start (asi.vlm.backend={vlm.backend!r}, model={vlm.model!r}): "
                            f"{root_message(exc)}") from None
    return actor


def actor_generate(actor):
    """A `generate(requests) -> texts` callable that runs on the actor."""
    import ray

    return lambda requests: ray.get(actor.generate.remote(requests))
