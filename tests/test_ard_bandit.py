"""Group REINFORCE reaches the optimum of a contextual bandit with a known, state-dependent best
action, through the same RLlib algorithm, env base class, learner and connector as training.

No generator: each state's score table over the 5 x 4 x 4 actions is built in code. The best
step index, alpha index and beta index each follow a feature of the state, and the margins are
as small as the local preset's (a few hundredths between neighbouring alpha/beta choices), so a
policy that collapses onto one constant action fails."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from argen_ray.ard.env import GroupVectorEnv

NVEC = (5, 4, 4)
TEXT_DIM, IMAGE_DIM = 6, 3


def best_action(text: np.ndarray) -> np.ndarray:
    """The known best action of states with text embeddings (N, TEXT_DIM): (N, 3) head indices."""
    steps = np.where(text[:, 0] > 0, 0, 2)          # fewer steps where feature 0 is positive
    alpha = np.where(text[:, 1] > 0, 3, 0)
    beta = np.where(text[:, 2] > 0, 1, 3)
    return np.stack([steps, alpha, beta], axis=-1)


def score(text: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """S of each action for one state: 0.85 at the best action; each head's distance from its best
    index costs 0.06 (steps) or 0.02 (alpha, beta) per index."""
    best = best_action(text[None])[0]
    cost = np.abs(actions - best) * np.array([0.06, 0.02, 0.02])
    return 0.85 - cost.sum(axis=-1)


class TableBandit(GroupVectorEnv):
    """A fixed set of random states; the G candidates of one state are scored by `score`."""

    def __init__(self, config):
        rng = np.random.default_rng(config.get("seed", 0))
        self.text = rng.normal(size=(config.get("num_states", 64), TEXT_DIM)).astype(np.float32)
        self.image = rng.normal(size=(len(self.text), IMAGE_DIM)).astype(np.float32)
        box = lambda d: gym.spaces.Box(-np.inf, np.inf, (d,), np.float32)  # noqa: E731
        super().__init__(num_envs=config["num_envs"], num_states=len(self.text),
                         single_observation_space=gym.spaces.Dict(text_emb=box(TEXT_DIM), image_emb=box(IMAGE_DIM)),
                         single_action_space=gym.spaces.MultiDiscrete(NVEC), top_k=config.get("top_k", 2),
                         penalty=config.get("penalty", 0.1), baseline=config.get("baseline", True))

    def observe(self, state):
        return {"text_emb": self.text[state], "image_emb": self.image[state]}

    def score_group(self, state, actions, seed):
        return [{"score": float(s)} for s in score(self.text[state], actions)]


def build_bandit_algo(num_learners: int = 0, **training):
    from argen_ray.ard.learner import GroupReinforceConfig
    from argen_ray.config.train import TrainConfig

    defaults = TrainConfig()
    settings = {"groups_per_batch": 16, "group_size": 4, "lr": defaults.lr, "entropy_coeff": defaults.entropy_coeff,
                **training}
    return (GroupReinforceConfig().environment(TableBandit, env_config={"num_states": 64})
            .env_runners(num_env_runners=0, num_envs_per_env_runner=4, gym_env_vectorize_mode="vector_entry_point")
            .learners(num_learners=num_learners)
            .training(train_batch_size_per_learner=64 // max(1, num_learners), **settings)
            .rl_module(model_config={"embed_dim": 16, "num_heads": 2}).debugging(seed=0)).build_algo()


def greedy_hits(algo, num_states: int = 256, seed: int = 1) -> float:
    """Share of fresh states (never trained on) where the argmax policy picks the best action."""
    from argen_ray.ard.policy import PolicyHandle

    rng = np.random.default_rng(seed)
    text = rng.normal(size=(num_states, TEXT_DIM)).astype(np.float32)
    image = rng.normal(size=(num_states, IMAGE_DIM)).astype(np.float32)
    actions, _ = PolicyHandle(algo.get_module().net).act(text, image)
    return float((actions == best_action(text)).all(axis=1).mean())


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    yield
    ray.shutdown()


def test_table_bandit_knows_its_best_action():
    # The oracle of this test, checked by brute force over all 80 actions.
    rng = np.random.default_rng(5)
    every = np.array(np.meshgrid(*(range(n) for n in NVEC), indexing="ij")).reshape(3, -1).T
    for text in rng.normal(size=(20, TEXT_DIM)):
        s = score(text, every)
        assert (every[s.argmax()] == best_action(text[None])[0]).all()
        assert np.sort(s)[-1] - np.sort(s)[-2] == pytest.approx(0.02)  # the margin the policy must resolve


def test_greedy_policy_picks_the_best_action_in_at_least_90_percent_of_states(ray_local):
    """The project's default learning settings (train section), B = 16 groups of G = 4."""
    algo = build_bandit_algo()
    try:
        first = algo.train()
        for _ in range(59):
            result = algo.train()
        hits = greedy_hits(algo)
    finally:
        algo.stop()
    assert hits >= 0.9, hits
    # Every iteration sees whole groups and logs each head's entropy, which falls as it learns.
    assert result["argen"]["groups"] == 16
    learner, learner_first = result["learners"]["default_policy"], first["learners"]["default_policy"]
    assert all(learner[f"entropy_{h}"] < learner_first[f"entropy_{h}"] for h in ("steps", "alpha", "beta"))
    # The raw score is logged next to the group reward (which is ~0 with the group-mean baseline).
    assert abs(result["env_runners"]["episode_return_mean"]) < 0.05
    assert result["argen"]["score"] > first["argen"]["score"] + 0.05


@pytest.mark.slow
def test_two_learners_train_the_bandit_on_shards_of_the_groups(ray_local):
    """`num_learners: 2` (two remote CPU learners, data-parallel): RLlib deals the one-step episodes
    to the learners round-robin, which splits groups; the env's group rewards keep it correct."""
    algo = build_bandit_algo(num_learners=2)
    try:
        for _ in range(60):
            result = algo.train()
        hits = greedy_hits(algo)
    finally:
        algo.stop()
    assert result["argen"]["groups"] == 16
    assert hits >= 0.9, hits
