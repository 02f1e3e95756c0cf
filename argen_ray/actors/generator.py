"""The GeneratorActor pool: any registered generator backend in named Ray actors.

Each `GeneratorActor` builds one backend (`build_generator(cfg.generator)`; the model loads once,
in the constructor, and again after a restart) and serves batched `generate(requests)` and
`encode_state`. Actors are named `argen-generator-<i>` in the config's Ray namespace, so RLlib
env runners, the Serve app and `argen-ray generate` reach the same actors with
`GeneratorPool.from_config(cfg)` (get-or-create by name), or one of them with
`ray.get_actor(generator_actor_name(0), namespace=cfg.ray.namespace)`.

Resources: each actor sits in its bundle of the "generator" placement group
(`generator.num_gpus` GPUs, fractional allowed, and `generator.num_cpus` CPUs; see placement.py).

Crashes: actors restart forever and Ray resends the calls they were running
(`max_task_retries`): a killed actor costs the time to reload its model, never a lost video.
Generation is seeded per request, so a resent call returns the same videos.
"""
from __future__ import annotations

import itertools
import os

import numpy as np

from argen_ray.ard.generator import GenerationRequest, GenerationResult, build_generator
from argen_ray.errors import ArgenError, root_message

ACTOR_MAX_RESTARTS = -1       # restart forever: the model reloads, the calls are resent
ACTOR_MAX_TASK_RETRIES = 3    # per call, beyond which the caller sees the failure


class GeneratorPoolError(ArgenError, RuntimeError):
    """The generator actors could not start, or a call kept failing after its retries."""


def generator_actor_name(index: int) -> str:
    return f"argen-generator-{index}"


class GeneratorActor:
    """One generator backend in its own process (wrapped with `ray.remote` by the pool)."""

    def __init__(self, cfg):
        self.backend = build_generator(cfg)
        self.model_id = self.backend.model_id
        self.backend_name = cfg.backend
        self.generated = 0
        self.calls = 0

    def ready(self) -> str:
        """Returns the model id once the model is loaded (start-up barrier)."""
        return self.model_id

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        results = self.backend.generate(requests)
        self.generated += len(results)
        self.calls += 1
        return results

    def encode_state(self, prompts: list[str], images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return self.backend.encode_state(prompts, images)

    def info(self) -> dict:
        """Process id, backend, model, and videos generated and calls served since this (re)start."""
        import torch

        return {"pid": os.getpid(), "backend": self.backend_name, "model_id": self.model_id,
                "generated": self.generated, "calls": self.calls, "cuda": torch.cuda.is_available()}


class GeneratorPool:
    """Spreads requests over the named GeneratorActors, results in order.

    A call is cut into at most one part per actor, each a whole number of `max_batch` groups
    (the backend batches its UNet calls by `max_batch` itself), so a group of G <= max_batch
    candidates stays on one actor and a call on one actor stays one call: the backend then sees
    all of it (the warp renders a call's identical clips once; cutting the oracle evaluation's
    80 actions into calls of 4 rendered all 80). Successive calls start on successive actors, so
    several env runners keep every actor busy.
    """

    def __init__(self, actors: list, cfg, model_id: str, namespace: str | None = None, placement=None):
        if not actors:
            raise GeneratorPoolError("a generator pool needs at least one actor")
        self.actors = list(actors)
        self.cfg = cfg                     # the `generator` section
        self.model_id = model_id
        self.namespace = namespace
        self.placement = placement         # ActorPlacement of the actors' bundles, if reserved here
        # Each pool instance (one per env runner) starts on a different actor.
        self._next = itertools.count(os.getpid() % len(self.actors))

    @classmethod
    def from_config(cls, cfg) -> "GeneratorPool":
        """Get-or-create `cfg.generator.num_actors` actors by name; wait until each has loaded."""
        import ray

        from argen_ray.actors.placement import reserve_gpu_actors

        placement = reserve_gpu_actors(cfg, "generator")
        remote = ray.remote(GeneratorActor)
        actors = [remote.options(name=generator_actor_name(i), namespace=cfg.ray.namespace, get_if_exists=True,
                                 max_restarts=ACTOR_MAX_RESTARTS, max_task_retries=ACTOR_MAX_TASK_RETRIES,
                                 **placement.actor_options(i)).remote(cfg.generator)
                  for i in range(cfg.generator.num_actors)]
        try:
            model_ids = ray.get([a.ready.remote() for a in actors])
        except ray.exceptions.RayError as exc:
            raise GeneratorPoolError(f"generator actors failed to start (generator.backend={cfg.generator.backend!r}, "
                                     f"generator.model={cfg.generator.model!r}): {root_message(exc)}") from None
        return cls(actors, cfg.generator, model_ids[0], cfg.ray.namespace, placement)

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        import ray

        if not requests:
            return []
        groups = -(-len(requests) // self.cfg.max_batch)
        size = -(-groups // min(len(self.actors), groups)) * self.cfg.max_batch
        chunks = [requests[i:i + size] for i in range(0, len(requests), size)]
        refs = [self.actors[next(self._next) % len(self.actors)].generate.remote(chunk) for chunk in chunks]
        return [result for chunk in self._get(refs, "generation") for result in chunk]

    def encode_state(self, prompts: list[str], images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        actor = self.actors[next(self._next) % len(self.actors)]
        [encoded] = self._get([actor.encode_state.remote(list(prompts), list(images))], "state encoding")
        return encoded

    def info(self) -> list[dict]:
        return self._get([a.info.remote() for a in self.actors], "info")

    def _get(self, refs: list, what: str) -> list:
        """ray.get, with the backend's own input errors re-raised as themselves. An actor that
        died more often than Ray resends a call raises Ray's RayActorError: callers with their
        own retry policy (the RL env) catch it."""
        import ray

        try:
            return ray.get(refs)
        except ray.exceptions.RayTaskError as exc:
            if isinstance(getattr(exc, "cause", None), ArgenError):
                raise exc.cause from None
            raise GeneratorPoolError(f"{what} failed on a generator actor: {root_message(exc)}") from None

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Kill the actors and release their placement group (the driver's end of a run)."""
        import time

        import ray

        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        if self.namespace is None:
            return
        deadline = time.monotonic() + timeout_s
        for i in range(len(self.actors)):  # wait until the names are free for a new pool
            while time.monotonic() < deadline:
                try:
                    ray.get_actor(generator_actor_name(i), namespace=self.namespace)
                except ValueError:
                    break
                time.sleep(0.05)
        if self.placement is not None:
            self.placement.remove()

