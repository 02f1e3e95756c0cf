"""ARGenEnv: the RLlib environment of ARD's policy (DESIGN 2.3).

A state is one (identity image, prompt) row of prompts.jsonl; the observation is its
embeddings {text_emb, image_emb}; the action is MultiDiscrete (steps, alpha, beta); episodes
are one step long. The env is a gymnasium `VectorEnv` with `num_envs == G`: one vector step
evaluates the G candidate actions of ONE state, so a group can never be split, and the G
videos are generated in one batched generator call and scored on the scorer pool together.

The reward of each candidate is its raw score S; the group rule (top-k keep S, the rest get
-delta, optional group-mean baseline) is applied by the learner (`argen_ray.ard.learner`),
which finds the group through `infos["group_id"]`.

Autoreset follows gymnasium's NEXT_STEP mode (what RLlib expects): the step after a
terminal step starts the next state; its actions are ignored and RLlib does not count it.
"""
from __future__ import annotations

import time
import uuid
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from argen_ray.ard.states import StateSet
from argen_ray.errors import ArgenError

# Per-candidate values reported in the step infos (and logged per iteration).
CANDIDATE_FIELDS = ("score", "r_t", "r_q", "r_f", "r_e", "nfe", "steps", "alpha", "beta")
# Per-group wall times (seconds) of the batched generator call and of scoring the G videos, and
# how many of the G videos were rescored after a scorer actor crashed.
GROUP_TIMINGS = ("generate_s", "score_s", "rescored")


def field_means(rows: list[dict], fields: tuple[str, ...] = CANDIDATE_FIELDS) -> dict[str, float]:
    """Mean of each field over the rows where it has a value; a field no row has a value for is
    left out. A reward component with weight 0 is not computed (`r_e` is None when
    reward.w_e = 0), so it is skipped, never averaged as a number."""
    out = {}
    for name in fields:
        values = [float(r[name]) for r in rows if r.get(name) is not None]
        if values:
            out[name] = float(np.mean(values))
    return out


class ActorCallError(ArgenError, RuntimeError):
    """A generator or scorer actor kept failing after its retries."""


class CandidateEvaluator:
    """Generates and scores candidate actions for states through the named Ray actors.

    The generator pool and the scorer pool are looked up (or created) by name in the config's
    Ray namespace, so every env runner reaches the same actors. Ray restarts a dead actor and
    resends its calls; a call that still fails because its actor died or is restarting is
    resent here too (`train.actor_retries` deaths, `train.actor_timeout_s` of restarting).
    """

    def __init__(self, cfg):
        from argen_ray.ard.guidance import ActionSpace

        self.cfg = cfg
        self.action_space = ActionSpace.from_config(cfg.generator)
        self._generators = None
        self._scorers = None
        self.retried = 0  # calls resent after an actor died (tests and the benchmark read it)

    @property
    def generators(self):
        if self._generators is None:
            from argen_ray.actors.generator import GeneratorPool

            self._generators = GeneratorPool.from_config(self.cfg)
        return self._generators

    @property
    def scorers(self):
        if self._scorers is None:
            from argen_ray.actors.scorer import ScorerPool

            self._scorers = ScorerPool.from_config(self.cfg)
        return self._scorers

    def shutdown(self) -> None:
        """Kill the pools' actors (the driver's end of a run; env runners never call this)."""
        for pool in (self._generators, self._scorers):
            if pool is not None:
                pool.shutdown()
        self._generators = self._scorers = None

    def _with_retries(self, what: str, call):
        """`call()`, resent while its actor restarts (up to `train.actor_timeout_s`) and after a
        pool gave up on a crashing actor or node (`train.actor_retries` times, backing off 1, 2,
        4, 8 s so a lost node's actors can come back elsewhere). Bad input is never retried."""
        from ray.exceptions import ActorUnavailableError, RayActorError

        from argen_ray.actors.generator import GeneratorPoolError
        from argen_ray.actors.scorer import ScorerPoolError

        deadline = time.monotonic() + self.cfg.train.actor_timeout_s
        failures = 0
        while True:
            try:
                return call()
            except ActorUnavailableError as exc:  # restarted mid-call, or still restarting: resend
                if time.monotonic() > deadline:
                    raise ActorCallError(f"{what}: the actor did not come back within "
                                         f"train.actor_timeout_s={self.cfg.train.actor_timeout_s:g} s: {exc}") from None
                pause = 0.5
            except (RayActorError, GeneratorPoolError, ScorerPoolError) as exc:
                failures += 1
                if failures > self.cfg.train.actor_retries:
                    raise ActorCallError(f"{what} failed {failures} times "
                                         f"(train.actor_retries={self.cfg.train.actor_retries}): {exc}") from None
                pause = min(8.0, 2.0 ** (failures - 1))
            self.retried += 1
            time.sleep(pause)

    def evaluate(self, states: StateSet, indices, actions: np.ndarray, seed: int) -> list[dict]:
        """Generate one video per (state index, action) and score it.

        Returns one dict per candidate: the score and its components, NFE, the decoded action
        (steps, alpha, beta), and the group's generation and scoring wall times.
        """
        from argen_ray.ard.generator import GenerationRequest

        params = [self.action_space.decode(a) for a in np.asarray(actions)]
        requests = []
        for n, (i, p) in enumerate(zip(indices, params)):
            row = states.rows[i]
            requests.append(GenerationRequest(
                image=states.images[i], prompt=row["prompt"], steps=p.steps, guidance=p.guidance, seed=seed,
                emotion=row.get("emotion"), aus=row.get("aus") or {}, request_id=f"{row['prompt_id']}#{seed}.{n}"))
        t0 = time.perf_counter()
        results = self._with_retries("generation", lambda: self.generators.generate(requests))
        t1 = time.perf_counter()
        scores = self._with_retries("scoring", lambda: self.scorers.score_many(
            [r.frames for r in results], [states.images[i] for i in indices], [p.steps for p in params]))
        t2 = time.perf_counter()
        rescored = len(getattr(self.scorers, "rescored", ()))
        out = []
        for i, p, result, score in zip(indices, params, results, scores):
            out.append({"prompt_id": states.rows[i]["prompt_id"], "score": score["score"], "r_t": score["r_t"],
                        "r_q": score["r_q"], "r_f": score["r_f"], "r_e": score["r_e"], "nfe": result.nfe,
                        "steps": p.steps, "alpha": p.alpha, "beta": p.beta,
                        "generate_s": t1 - t0, "score_s": t2 - t1, "rescored": rescored})
        return out


class ARGenEnv(gym.vector.VectorEnv):
    """G candidates of one state per vector step; one-step episodes.

    env_config: `cfg` (the `Config`), `states` (a `StateSet`, the training states) and
    `num_envs` (G, set by RLlib from `num_envs_per_env_runner`).
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        cfg, states = config["cfg"], config["states"]
        if len(states) == 0:
            raise ArgenError("ARGenEnv needs at least one state (prompts.jsonl row)")
        self.cfg, self.states = cfg, states
        self.num_envs = int(config.get("num_envs", cfg.reward.group_size))
        self.evaluator = CandidateEvaluator(cfg)
        box = lambda d: gym.spaces.Box(-np.inf, np.inf, (d,), np.float32)  # noqa: E731
        self.single_observation_space = gym.spaces.Dict(
            text_emb=box(states.text_emb.shape[1]), image_emb=box(states.image_emb.shape[1]))
        self.single_action_space = gym.spaces.MultiDiscrete(self.evaluator.action_space.nvec)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._tag = uuid.uuid4().hex[:10]  # group ids must be unique across env runners
        self._rng: np.random.Generator | None = None
        self._seed: int | None = None
        self._order: list[int] = []
        self._groups = 0
        self._state = 0
        self._group_seed = 0
        self._needs_reset = True

    # -- gymnasium API ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        # RLlib passes the same seed at every sample(num_episodes=...) call; re-seeding each
        # time would replay the same states every iteration, so a seed is applied once.
        if self._rng is None or (seed is not None and seed != self._seed):
            self._seed = seed if seed is not None else self.cfg.seed
            self._rng = np.random.default_rng(self._seed)
            self._order = []
        return self._next_state()

    def step(self, actions):
        n = self.num_envs
        if self._needs_reset:  # NEXT_STEP autoreset: this step only starts the next state
            obs, infos = self._next_state()
            return obs, np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool), infos
        actions = np.asarray(actions).reshape(n, -1)
        candidates = self.evaluator.evaluate(self.states, [self._state] * n, actions, self._group_seed)
        rewards = np.array([c["score"] for c in candidates], np.float32)
        infos = self._infos({"group_id": [self._group_id] * n,
                             **{k: [c[k] for c in candidates] for k in CANDIDATE_FIELDS + GROUP_TIMINGS}})
        self._needs_reset = True
        return self._observation(), rewards, np.ones(n, bool), np.zeros(n, bool), infos

    # -- helpers ------------------------------------------------------------------------------
    def _next_state(self):
        if not self._order:  # a fresh seeded permutation of the states per pass
            self._order = list(self._rng.permutation(len(self.states)))
        self._state = int(self._order.pop())
        self._groups += 1
        self._group_id = f"{self._tag}-{self._groups}"
        # One seed per group: the G candidates differ only by their actions.
        self._group_seed = int(self._rng.integers(2 ** 31 - 1))
        self._needs_reset = False
        n = self.num_envs
        return self._observation(), self._infos({"group_id": [self._group_id] * n,
                                                 "prompt_id": [self.states.rows[self._state]["prompt_id"]] * n})

    def _observation(self) -> dict[str, np.ndarray]:
        n, i = self.num_envs, self._state
        return {"text_emb": np.repeat(self.states.text_emb[i:i + 1], n, axis=0),
                "image_emb": np.repeat(self.states.image_emb[i:i + 1], n, axis=0)}

    def _infos(self, values: dict[str, list]) -> dict[str, np.ndarray]:
        """gymnasium's vector-info format: one array per key plus its "_key" mask."""
        infos: dict[str, np.ndarray] = {}
        for key, vals in values.items():
            numeric = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in vals)
            infos[key] = np.asarray(vals, dtype=np.float64 if numeric else object)
            infos[f"_{key}"] = np.ones(self.num_envs, bool)
        return infos
