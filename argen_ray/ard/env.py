"""ARGenEnv: the RLlib environment of ARD's policy (DESIGN 2.3).

A state is one (identity image, prompt) row of prompts.jsonl; the observation is its
embeddings {text_emb, image_emb}; the action is MultiDiscrete (steps, alpha, beta); episodes
are one step long. The env is a gymnasium `VectorEnv` with `num_envs == G`: one vector step
evaluates the G candidate actions of ONE state, so a group can never be split, and the G
videos are generated in one batched generator call and scored on the scorer pool together.

The env applies the group rule (top-k keep S, the rest get -delta, optional group-mean
baseline) itself, since it holds the whole group: each candidate's reward is final when it is
made, so RLlib may shard the samples over any number of learners. The raw score S travels in
the step infos ("score"), with the reward components, NFE and the group id.

Autoreset follows gymnasium's NEXT_STEP mode (what RLlib expects): the step after a
terminal step starts the next state; its actions are ignored and RLlib does not count it.
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Iterator

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from argen_ray.ard.states import StateSet
from argen_ray.errors import ArgenError

# Per-candidate values reported in the step infos (and logged per iteration).
CANDIDATE_FIELDS = ("score", "r_t", "r_q", "r_f", "r_e", "r_c", "nfe", "steps", "alpha", "beta")
# Per-group wall times (seconds) of the batched generator call and of scoring the G videos, and
# how many of the G videos were rescored after a scorer actor crashed.
GROUP_TIMINGS = ("generate_s", "score_s", "rescored")


def field_means(rows: list[dict], fields: tuple[str, ...] = CANDIDATE_FIELDS) -> dict[str, float]:
    """Mean of each field over the rows where it has a value; a field no row has a value for is
    left out. A reward component with weight 0 is not computed (`r_e` / `r_c` is None when
    reward.w_e / w_c = 0), so it is skipped, never averaged as a number."""
    out = {}
    for name in fields:
        values = [float(r[name]) for r in rows if r.get(name) is not None]
        if values:
            out[name] = float(np.mean(values))
    return out


def clip_key(frames: np.ndarray, reference: np.ndarray, target_aus: dict | None) -> bytes:
    """A digest of everything a clip's score depends on except T: its frames, its reference image
    and the prompt's target AUs."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    for array in (frames, reference):
        array = np.ascontiguousarray(array)
        digest.update(repr((array.shape, array.dtype.str)).encode())
        digest.update(array.data)
    digest.update(repr(sorted((target_aus or {}).items())).encode())
    return digest.digest()


def with_steps(scored: dict, steps: int, max_steps: int, w_t: float) -> dict:
    """A scorer result for the same clip made with `steps` sampling steps: R_t = 1 - T/T_max and
    the score move with it, every other component stays."""
    from argen_ray.ard.rewards import efficiency_reward

    if scored.get("steps") == steps:
        return scored
    r_t = efficiency_reward(steps, max_steps)
    return {**scored, "r_t": r_t, "score": scored["score"] + w_t * (r_t - scored["r_t"]), "steps": int(steps)}


class ActorCallError(ArgenError, RuntimeError):
    """A generator or scorer actor kept failing after its retries."""


class CandidateEvaluator:
    """Generates and scores candidate actions for states through the named Ray actors.

    Candidates are short videos of `train.candidate_frames` frames, the reference included
    (DESIGN 2.5); the guidance curve of an action spans their new frames.

    The generator pool and the scorer pool are looked up (or created) by name in the config's
    Ray namespace, so every env runner reaches the same actors. Ray restarts a dead actor and
    resends its calls; a call that still fails because its actor died or is restarting is
    resent here too (`train.actor_retries` deaths, `train.actor_timeout_s` of restarting).
    """

    def __init__(self, cfg):
        from argen_ray.ard.guidance import ActionSpace

        frames = cfg.train.candidate_frames
        if frames < 2:
            raise ArgenError(f"train.candidate_frames must be an integer >= 2 (the reference and at least one new "
                             f"frame), got {frames!r}")
        self.cfg = cfg
        self.action_space = ActionSpace.from_config(cfg.generator, num_frames=frames)
        self.max_steps = max(cfg.generator.action_space.steps)  # T_max of R_t, as the scorer actors use
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

        Returns one dict per candidate: the score and its components, NFE, the video's frame
        count, the decoded action (steps, alpha, beta), and the group's generation and scoring
        wall times.
        """
        return self.evaluate_params(states, indices, [self.action_space.decode(a) for a in np.asarray(actions)], seed)

    def evaluate_params(self, states: StateSet, indices, params: list, seed: int) -> list[dict]:
        """`evaluate` for decoded `GenerationParams`, including settings outside the action space
        (e.g. TI2V-Zero's constant guidance, `self.action_space.constant()`: alpha, beta None)."""
        return self.score_generated(states, indices, params, self.generate(states, indices, params, seed))

    def evaluate_many(self, calls: list[tuple]) -> Iterator[list[dict]]:
        """`evaluate_params(*call)` for each call, in order, with the next call's videos generated
        while this one's are scored (the same results as one call after the other)."""
        from argen_ray.io import produce_ahead

        self.generators  # created here, not in the generation thread
        for call, generated in produce_ahead(calls, lambda call: self.generate(*call)):
            yield self.score_generated(*call[:3], generated)

    def generate(self, states: StateSet, indices, params: list, seed: int) -> tuple[list, list, float]:
        """The candidate videos of (state index, params) pairs: (requests, results, seconds)."""
        from argen_ray.ard.generator import GenerationRequest

        requests = []
        for n, (i, p) in enumerate(zip(indices, params)):
            row = states.rows[i]
            requests.append(GenerationRequest(
                image=states.images[i], prompt=row["prompt"], steps=p.steps, guidance=p.guidance, seed=seed,
                emotion=row.get("emotion"), aus=row.get("aus") or {}, num_frames=self.cfg.train.candidate_frames,
                request_id=f"{row['prompt_id']}#{seed}.{n}", resample=p.resample))
        t0 = time.perf_counter()
        results = self._with_retries("generation", lambda: self.generators.generate(requests))
        return requests, results, time.perf_counter() - t0

    def score_generated(self, states: StateSet, indices, params: list, generated: tuple[list, list, float]) -> list[dict]:
        """Score what `generate` made: one dict per candidate (see `evaluate`)."""
        requests, results, generate_s = generated
        t1 = time.perf_counter()
        # Identical clips are scored once. Actions can give the same clip: on a short candidate the
        # warp backend solves min(T, new frames) keyframes, so every T >= the new-frame count gives
        # one clip, and a settled policy samples the same action several times in a group. Only
        # R_t (from T) differs between the copies; it is recomputed for each (`with_steps`).
        first: dict[bytes, int] = {}
        owner = [first.setdefault(clip_key(r.frames, states.images[i], q.aus), n)
                 for n, (i, r, q) in enumerate(zip(indices, results, requests))]
        unique = sorted(set(owner))
        scored = self._with_retries("scoring", lambda: self.scorers.score_many(
            [results[n].frames for n in unique], [states.images[indices[n]] for n in unique],
            [params[n].steps for n in unique], target_aus=[requests[n].aus for n in unique]))
        by_owner = dict(zip(unique, scored))
        scores = [with_steps(by_owner[o], p.steps, self.max_steps, self.cfg.reward.w_t) for o, p in zip(owner, params)]
        t2 = time.perf_counter()
        rescored = len(getattr(self.scorers, "rescored", ()))
        out = []
        for i, p, result, score in zip(indices, params, results, scores):
            out.append({"prompt_id": states.rows[i]["prompt_id"], "score": score["score"], "r_t": score["r_t"],
                        "r_q": score["r_q"], "r_f": score["r_f"], "r_e": score["r_e"], "r_c": score["r_c"],
                        "nfe": result.nfe, "num_frames": int(len(result.frames)),
                        "steps": p.steps, "alpha": p.alpha, "beta": p.beta,
                        "generate_s": generate_s, "score_s": t2 - t1, "rescored": rescored})
        return out


def group_advantages(scores, top_k: int, penalty: float, baseline: bool, scale: bool = False) -> np.ndarray:
    """Group rule for one state's G scores: top-k keep S, the rest -delta; minus the mean if asked,
    then divided by the group's standard deviation if `scale`.

    Why scale: once a policy has nearly settled, a group such as [0.85, 0.82, 0.82, 0.82] (ties at
    the k-th score keep S) carries advantages of only +-0.02 against +-0.45 for a group that still
    holds penalised candidates, so the last step to the best action barely moves the policy
    (tests/test_ard_bandit.py). Dividing by the spread gives every informative group the same weight.
    """
    from argen_ray.ard.rewards import group_rewards

    rewards = np.asarray(group_rewards(list(scores), top_k, penalty), dtype=np.float32)
    if not baseline:
        return rewards
    centred = rewards - rewards.mean()
    return centred / (rewards.std() + 1e-3) if scale else centred


class GroupVectorEnv(gym.vector.VectorEnv):
    """G candidates of one state per vector step; one-step episodes; the group rule applied here.

    A subclass says what a state looks like (`observe`) and how a group of candidate actions of
    one state scores (`score_group`: one dict per candidate holding at least "score"). This class
    draws the states (a seeded permutation per pass), gives each group a unique id and one seed,
    and turns the G raw scores into the group rule's rewards (top-k keep S, the rest -delta,
    minus the group mean when `baseline`). Each candidate's reward is thus final where it is
    made: any number of learners can train on any shard of the samples. The raw score travels
    in the step infos ("score"), next to the group's seed and `info_fields` of each candidate.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}
    info_fields: tuple[str, ...] = ()

    def __init__(self, *, num_envs: int, num_states: int, single_observation_space, single_action_space,
                 top_k: int, penalty: float, baseline: bool, scale: bool = False, seed: int = 0):
        super().__init__()
        self.num_envs, self.num_states = int(num_envs), int(num_states)
        self.top_k, self.penalty, self.baseline, self.scale = int(top_k), float(penalty), bool(baseline), bool(scale)
        self.single_observation_space, self.single_action_space = single_observation_space, single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._default_seed = seed
        self._tag = uuid.uuid4().hex[:10]  # group ids must be unique across env runners
        self._rng: np.random.Generator | None = None
        self._seed: int | None = None
        self._order: list[int] = []
        self._groups = 0
        self._state = 0
        self._group_seed = 0
        self._needs_reset = True

    # -- what a subclass defines --------------------------------------------------------------
    def observe(self, state: int) -> dict[str, np.ndarray]:
        """The observation of one state (unbatched)."""
        raise NotImplementedError

    def score_group(self, state: int, actions: np.ndarray, seed: int) -> list[dict]:
        """Score the G candidate actions (G, 3) of `state`; one dict per candidate with "score"."""
        raise NotImplementedError

    def state_infos(self, state: int) -> dict[str, Any]:
        """Extra reset infos of a state (e.g. its prompt id)."""
        return {}

    # -- gymnasium API ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        # RLlib passes the same seed at every sample(num_episodes=...) call; re-seeding each
        # time would replay the same states every iteration, so a seed is applied once.
        if self._rng is None or (seed is not None and seed != self._seed):
            self._seed = seed if seed is not None else self._default_seed
            self._rng = np.random.default_rng(self._seed)
            self._order = []
        return self._next_state()

    def step(self, actions):
        n = self.num_envs
        if self._needs_reset:  # NEXT_STEP autoreset: this step only starts the next state
            obs, infos = self._next_state()
            return obs, np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool), infos
        actions = np.asarray(actions).reshape(n, -1)
        candidates = self.score_group(self._state, actions, self._group_seed)
        scores = [c["score"] for c in candidates]
        rewards = group_advantages(scores, self.top_k, self.penalty, self.baseline, self.scale)
        infos = self._infos({"group_id": [self._group_id] * n, "seed": [self._group_seed] * n, "score": scores,
                             **{k: [c.get(k) for c in candidates] for k in self.info_fields if k != "score"}})
        self._needs_reset = True
        return self._observation(), rewards, np.ones(n, bool), np.zeros(n, bool), infos

    # -- helpers ------------------------------------------------------------------------------
    def _next_state(self):
        if not self._order:  # a fresh seeded permutation of the states per pass
            self._order = list(self._rng.permutation(self.num_states))
        self._state = int(self._order.pop())
        self._groups += 1
        self._group_id = f"{self._tag}-{self._groups}"
        # One seed per group: the G candidates differ only by their actions.
        self._group_seed = int(self._rng.integers(2 ** 31 - 1))
        self._needs_reset = False
        n = self.num_envs
        extra = {k: [v] * n for k, v in self.state_infos(self._state).items()}
        return self._observation(), self._infos({"group_id": [self._group_id] * n, **extra})

    def _observation(self) -> dict[str, np.ndarray]:
        return {k: np.repeat(np.asarray(v)[None], self.num_envs, axis=0) for k, v in self.observe(self._state).items()}

    def _infos(self, values: dict[str, list]) -> dict[str, np.ndarray]:
        """gymnasium's vector-info format: one array per key plus its "_key" mask."""
        infos: dict[str, np.ndarray] = {}
        for key, vals in values.items():
            numeric = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in vals)
            infos[key] = np.asarray(vals, dtype=np.float64 if numeric else object)
            infos[f"_{key}"] = np.ones(self.num_envs, bool)
        return infos


class ARGenEnv(GroupVectorEnv):
    """The policy's environment: a state is a prompt row; a candidate is a generated, scored video.

    env_config: `cfg` (the `Config`), `states` (a `StateSet`, the training states) and
    `num_envs` (G, set by RLlib from `num_envs_per_env_runner`).
    """

    info_fields = CANDIDATE_FIELDS + GROUP_TIMINGS

    def __init__(self, config: dict[str, Any]):
        cfg, states = config["cfg"], config["states"]
        if len(states) == 0:
            raise ArgenError("ARGenEnv needs at least one state (prompts.jsonl row)")
        self.cfg, self.states = cfg, states
        self.evaluator = CandidateEvaluator(cfg)
        box = lambda d: gym.spaces.Box(-np.inf, np.inf, (d,), np.float32)  # noqa: E731
        super().__init__(
            num_envs=int(config.get("num_envs", cfg.reward.group_size)), num_states=len(states),
            single_observation_space=gym.spaces.Dict(text_emb=box(states.text_emb.shape[1]),
                                                     image_emb=box(states.image_emb.shape[1])),
            single_action_space=gym.spaces.MultiDiscrete(self.evaluator.action_space.nvec),
            top_k=cfg.reward.top_k, penalty=cfg.reward.penalty, baseline=cfg.train.group_baseline,
            scale=cfg.train.group_scale, seed=cfg.seed)

    def observe(self, state: int) -> dict[str, np.ndarray]:
        return {"text_emb": self.states.text_emb[state], "image_emb": self.states.image_emb[state]}

    def score_group(self, state: int, actions: np.ndarray, seed: int) -> list[dict]:
        return self.evaluator.evaluate(self.states, [state] * len(actions), actions, seed)

    def state_infos(self, state: int) -> dict[str, Any]:
        return {"prompt_id": self.states.rows[state]["prompt_id"]}
