"""The ScorerActor pool: reward scoring on CPU actors, scaled independently of the generators.

Each `ScorerActor` hosts one `RewardScorer` (face detector and AU estimator loaded once, in the
constructor, and again after a restart). Actors are named `argen-scorer-<i>` in the Ray
namespace of the config, so RLlib env runners reach the same actors with
`ScorerPool.from_config(cfg)` (get-or-create by name).

Crashes: actors restart forever (`max_restarts=-1`); Ray does not retry their tasks
(`max_task_retries=0`) because the pool does: a video whose actor died is rescored — first on
the next actor, so a dead actor cannot hold it — up to `reward.scorer_max_rescores` times, then
the pool raises an error naming the video and the actor. An actor that crashed takes no work
while it restarts: it backs off `RESCORE_BACKOFF_S`, doubling per further crash up to
`RESCORE_BACKOFF_MAX_S`, and once its back-offs in one call would pass `RESCORE_MAX_WAIT_S` the
pool gives up with an error naming it. No reward is silently dropped.
"""
from __future__ import annotations

import logging
import os
import time
from collections import deque
from typing import Iterator, Sequence

import numpy as np

from argen_ray.ard.rewards import RewardScorer, check_batch, check_video
from argen_ray.config import Config
from argen_ray.config.reward import RewardConfig
from argen_ray.actors.placement import runtime_env_file
from argen_ray.errors import ArgenError, root_message

logger = logging.getLogger(__name__)

# Tasks queued per actor: one running, one waiting, so an actor never idles between videos.
TASKS_PER_ACTOR = 2
# Back-off of an actor after a crash (it restarts and reloads its models meanwhile): the first
# wait, the cap of one wait (doubling per further crash), and the most one call waits on one actor.
RESCORE_BACKOFF_S = 0.25
RESCORE_BACKOFF_MAX_S = 4.0
RESCORE_MAX_WAIT_S = 30.0


class ScorerPoolError(ArgenError, RuntimeError):
    """The scorer pool could not score a video (actor start failed, or it kept crashing)."""


def scorer_actor_name(index: int) -> str:
    return f"argen-scorer-{index}"


class ScorerActor:
    """One reward scorer in its own process (wrapped with `ray.remote` by the pool)."""

    def __init__(self, cfg: RewardConfig, max_steps: int):
        import cv2

        # OpenCV sizes its thread pool by the machine, not by the actor's CPU share: actors
        # sharing a node would oversubscribe it.
        cv2.setNumThreads(max(1, int(cfg.scorer_num_cpus)))
        self.scorer = RewardScorer(cfg, max_steps)
        self.scored = 0

    def score(self, frames: np.ndarray, reference: np.ndarray | None, steps: int,
              target_aus: dict | None = None) -> dict:
        self.scored += 1
        return self.scorer.score(frames, reference, steps, target_aus)

    def info(self) -> dict:
        """Process id and videos scored since this (re)start: health checks and tests."""
        return {"pid": os.getpid(), "scored": self.scored}


class ScorerPool:
    """Spreads videos over named ScorerActors and returns every score, in input order."""

    def __init__(self, actors: list, cfg: RewardConfig, namespace: str | None = None):
        if not actors:
            raise ScorerPoolError("a scorer pool needs at least one actor")
        self.actors = list(actors)
        self.cfg = cfg
        self.namespace = namespace
        self.rescored: list[int] = []  # video indices rescored after a crash, in the last call
        self.backoff_s = 0.0           # seconds of crash back-off over all actors, in the last call

    @classmethod
    def from_config(cls, cfg: Config) -> "ScorerPool":
        """Get-or-create `cfg.reward.num_scorers` actors by name and wait until each has loaded.

        T_max for R_t is the largest step count of `cfg.generator.action_space.steps`.
        """
        import ray

        max_steps = max(cfg.generator.action_space.steps)
        remote = ray.remote(ScorerActor)
        actors = [remote.options(name=scorer_actor_name(i), namespace=cfg.ray.namespace, get_if_exists=True,
                                 num_cpus=cfg.reward.scorer_num_cpus, max_restarts=-1, max_task_retries=0,
                                 resources=cfg.ray.node_group_resources("cpu") or None,
                                 runtime_env=runtime_env_file(cfg.reward.scorer_runtime_env,
                                                              "reward.scorer_runtime_env", ScorerPoolError),
                                 ).remote(cfg.reward, max_steps)
                  for i in range(cfg.reward.num_scorers)]
        try:
            ray.get([a.info.remote() for a in actors])
        except ray.exceptions.RayError as exc:
            raise ScorerPoolError(f"scorer actors failed to start (reward.face_detector="
                                  f"{cfg.reward.face_detector!r}, reward.au_backend={cfg.reward.au_backend!r}): "
                                  f"{root_message(exc)}") from None
        return cls(actors, cfg.reward, cfg.ray.namespace)

    def iter_scores(self, videos: Sequence, references: Sequence | None = None,
                    steps: Sequence[int] | None = None,
                    target_aus: Sequence[dict] | None = None) -> Iterator[tuple[int, dict]]:
        """Yield (video index, score dict) as scores arrive; crashed actors' videos are rescored.

        `target_aus`: each video's prompt AUs (prompts.jsonl `aus`), needed for R_c (reward.w_c > 0).
        """
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        references, steps, target_aus = check_batch(videos, references, steps, target_aus)
        for i, video in enumerate(videos):
            check_video(video, f"video {i}", min_side=self.cfg.ssim_window)
        # Each video goes into the object store once: rescoring re-sends only its reference.
        video_refs = [ray.put(np.asarray(v)) for v in videos]
        n = len(self.actors)
        self.rescored, self.backoff_s = [], 0.0
        attempts = [0] * len(videos)
        waiting = deque(range(len(videos)))
        rescore: deque[tuple[int, int]] = deque()  # (video, actor) waiting for that actor
        in_flight: dict = {}
        load = [0] * n          # tasks in flight per actor
        crashes = [0] * n       # crashes of each actor since its last score (sets its back-off)
        waited = [0.0] * n      # back-off of each actor in this call (bounded)
        ready_at = [0.0] * n    # a crashed actor takes work again from then on

        def submit(index: int, actor: int) -> None:
            ref = self.actors[actor].score.remote(video_refs[index], references[index], steps[index],
                                                  target_aus[index])
            in_flight[ref] = (index, actor)
            load[actor] += 1

        def dispatch() -> None:
            now = time.monotonic()
            for _ in range(len(rescore)):
                index, actor = rescore.popleft()
                if ready_at[actor] <= now:
                    submit(index, actor)
                else:
                    rescore.append((index, actor))
            for slot in range(TASKS_PER_ACTOR * n):  # new videos, round robin over ready actors
                actor = slot % n
                if waiting and load[actor] < TASKS_PER_ACTOR and ready_at[actor] <= now:
                    submit(waiting.popleft(), actor)

        def crashed(actor: int, index: int, exc: BaseException) -> None:
            now = time.monotonic()
            if now >= ready_at[actor]:  # a new crash (its other tasks fail during the back-off)
                crashes[actor] += 1
                delay = min(RESCORE_BACKOFF_S * 2 ** (crashes[actor] - 1), RESCORE_BACKOFF_MAX_S)
                if waited[actor] + delay > RESCORE_MAX_WAIT_S:
                    raise ScorerPoolError(
                        f"video {index}: {self._actor_label(actor)} kept crashing ({crashes[actor]} crashes in a "
                        f"row, {waited[actor]:.2f} s of back-off while it restarted; the limit is "
                        f"{RESCORE_MAX_WAIT_S:.0f} s): {root_message(exc)}") from None
                waited[actor] += delay
                self.backoff_s += delay
                ready_at[actor] = now + delay
            attempts[index] += 1
            if attempts[index] > self.cfg.scorer_max_rescores:
                raise ScorerPoolError(f"video {index}: its scorer actor crashed {attempts[index]} times, the last "
                                      f"time {self._actor_label(actor)} (reward.scorer_max_rescores="
                                      f"{self.cfg.scorer_max_rescores}): {root_message(exc)}") from None
            self.rescored.append(index)
            logger.warning("video %d rescored (attempt %d of %d): %s crashed: %s", index, attempts[index] + 1,
                           self.cfg.scorer_max_rescores + 1, self._actor_label(actor), root_message(exc))
            # Rescore on the next actor; the crashed one (restarting) takes later videos.
            rescore.append((index, (actor + attempts[index]) % n))

        dispatch()
        while in_flight or rescore or waiting:
            now = time.monotonic()
            backing_off = [t for t in ready_at if t > now]
            if not in_flight:  # everything left waits for a restarting actor
                time.sleep(max(0.0, min(backing_off, default=now) - now))
                dispatch()
                continue
            timeout = max(0.0, min(backing_off) - now) if backing_off and (rescore or waiting) else None
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=timeout)
            if done:
                index, actor = in_flight.pop(done[0])
                load[actor] -= 1
                try:
                    result = ray.get(done[0])
                except RayActorError as exc:
                    crashed(actor, index, exc)
                except RayTaskError as exc:
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, ArgenError):
                        raise type(cause)(f"video {index}: {cause}") from None
                    raise ScorerPoolError(f"video {index}: scoring failed on {self._actor_label(actor)}: "
                                          f"{root_message(exc)}") from None
                else:
                    crashes[actor] = 0
                    yield index, result
            dispatch()

    def _actor_label(self, actor: int) -> str:
        """How errors name an actor: by its Ray name where the pool made it (`from_config`)."""
        if self.namespace is not None:
            return f"scorer actor {scorer_actor_name(actor)!r}"
        return f"scorer actor {actor}"

    def score_many(self, videos: Sequence, references: Sequence | None = None,
                   steps: Sequence[int] | None = None, progress: bool = False,
                   target_aus: Sequence[dict] | None = None) -> list[dict]:
        """Score every video on the pool; results in input order (same dicts as `RewardScorer`)."""
        from tqdm.auto import tqdm

        results: list[dict | None] = [None] * len(videos)
        with tqdm(total=len(videos), desc="scoring", unit="video", disable=not progress) as bar:
            for index, result in self.iter_scores(videos, references, steps, target_aus):
                results[index] = result
                bar.update(1)
        return results  # type: ignore[return-value]

    def info(self) -> list[dict]:
        import ray

        return ray.get([a.info.remote() for a in self.actors])

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Kill the actors (the driver's end of a run; env runners never call this).

        Returns once their names are free, so a new pool in the same namespace never gets a
        dying actor back from its get-or-create.
        """
        import ray

        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        if self.namespace is None:  # not named by `from_config`: nothing to wait for
            return
        deadline = time.monotonic() + timeout_s
        for i in range(len(self.actors)):
            while time.monotonic() < deadline:
                try:
                    ray.get_actor(scorer_actor_name(i), namespace=self.namespace)
                except ValueError:  # no live actor holds the name any more
                    break
                time.sleep(0.05)
