"""The group REINFORCE rule inside RLlib: group advantages, loss, config checks, learning."""
from __future__ import annotations

import uuid

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from argen_ray.ard.learner import GroupAdvantages, GroupReinforceConfig, GroupSplitError, group_advantages


def _episode(score, group_id, action=(0, 0, 0)):
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    return SingleAgentEpisode(observations=[np.zeros(2), np.zeros(2)], actions=[np.array(action)], rewards=[score],
                              infos=[{"group_id": group_id}, {"group_id": group_id}], terminated=True,
                              len_lookback_buffer=0)


def test_group_rule_top_k_keep_their_score_the_rest_get_minus_delta():
    np.testing.assert_allclose(group_advantages([0.5, 0.9, 0.1, 0.7], 2, 0.1, baseline=False), [-0.1, 0.9, -0.1, 0.7])
    with_baseline = group_advantages([0.5, 0.9, 0.1, 0.7], 2, 0.1, baseline=True)
    np.testing.assert_allclose(with_baseline, np.array([-0.1, 0.9, -0.1, 0.7]) - 0.35, atol=1e-6)
    assert abs(with_baseline.sum()) < 1e-6


def test_connector_writes_each_episodes_advantage_from_its_own_group():
    from ray.rllib.core.columns import Columns

    group_a = [_episode(s, "a") for s in (0.5, 0.9, 0.1, 0.7)]
    group_b = [_episode(s, "b") for s in (0.2, 0.2, 0.3, 0.0)]
    mixed = [group_b[0], group_a[0], group_a[1], group_b[1], group_b[2], group_a[2], group_a[3], group_b[3]]
    batch = GroupAdvantages(group_size=4, top_k=2, penalty=0.1, baseline=False)(
        rl_module=None, episodes=mixed, batch={})
    got = {key[0]: float(vals[0]) for key, vals in batch[Columns.ADVANTAGES].items()}
    want = dict(zip([e.id_ for e in group_a], [-0.1, 0.9, -0.1, 0.7]))
    # Group b ties at the k-th score (0.2, 0.2, 0.3): all three keep their score.
    want.update(zip([e.id_ for e in group_b], [0.2, 0.2, 0.3, -0.1]))
    assert got == pytest.approx(want)


def test_a_split_group_is_an_error_not_a_silent_bias():
    with pytest.raises(GroupSplitError, match="group a reached the learner with 3 of 4"):
        GroupAdvantages(group_size=4, top_k=2, penalty=0.1, baseline=False)(
            rl_module=None, episodes=[_episode(s, "a") for s in (0.5, 0.9, 0.1)], batch={})


def test_group_metrics_skip_a_component_that_was_not_computed():
    # reward.w_e = 0: r_e is None in every candidate's info; it is left out, never averaged.
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    from argen_ray.ard.learner import GroupReinforce

    def episode(score, r_t):
        info = {"group_id": "a", "score": score, "r_t": r_t, "r_e": None, "steps": 5, "generate_s": 0.5}
        return SingleAgentEpisode(observations=[np.zeros(2), np.zeros(2)], actions=[np.zeros(3)], rewards=[score],
                                  infos=[{"group_id": "a"}, info], terminated=True, len_lookback_buffer=0)

    logged = {}

    class Metrics:
        def log_value(self, key, value, window=None):
            logged[key[1]] = value

    fake = type("Algo", (), {"metrics": Metrics()})()
    GroupReinforce._log_group_metrics(fake, [episode(0.2, 0.5), episode(0.6, 0.7)])
    assert logged == pytest.approx({"score": 0.4, "r_t": 0.6, "steps": 5.0, "generate_s": 0.5, "groups": 1})


def test_config_keeps_groups_whole():
    with pytest.raises(ValueError, match="must equal the group size"):
        (GroupReinforceConfig().environment(_Bandit).training(group_size=4)
         .env_runners(num_envs_per_env_runner=2, gym_env_vectorize_mode="vector_entry_point").validate())
    with pytest.raises(ValueError, match="num_learners <= 1"):
        (GroupReinforceConfig().environment(_Bandit).training(group_size=4).learners(num_learners=2)
         .env_runners(num_envs_per_env_runner=4, gym_env_vectorize_mode="vector_entry_point").validate())


class _Bandit(gym.vector.VectorEnv):
    """A contextual bandit over the policy's action space: the best step index follows the sign of
    text_emb[0] (0 when negative, 4 when positive); alpha index 2 adds a small bonus."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, config):
        super().__init__()
        self.num_envs = config["num_envs"]
        box = lambda d: gym.spaces.Box(-np.inf, np.inf, (d,), np.float32)  # noqa: E731
        self.single_observation_space = gym.spaces.Dict(text_emb=box(4), image_emb=box(3))
        self.single_action_space = gym.spaces.MultiDiscrete([5, 4, 4])
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.rng, self.done, self.tag, self.n = np.random.default_rng(0), False, uuid.uuid4().hex, 0

    def _new_state(self):
        self.state = self.rng.normal(size=4).astype(np.float32)
        self.n, self.done = self.n + 1, False
        return self._obs(), self._info()

    def _obs(self):
        return {"text_emb": np.repeat(self.state[None], self.num_envs, 0),
                "image_emb": np.zeros((self.num_envs, 3), np.float32)}

    def _info(self, **extra):
        info = {"group_id": np.array([f"{self.tag}-{self.n}"] * self.num_envs, dtype=object), **extra}
        return {**info, **{f"_{k}": np.ones(self.num_envs, bool) for k in info}}

    def reset(self, *, seed=None, options=None):
        return self._new_state()

    def step(self, actions):
        n = self.num_envs
        if self.done:
            obs, info = self._new_state()
            return obs, np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool), info
        best = 4 if self.state[0] > 0 else 0
        score = 1.0 - np.abs(actions[:, 0] - best) / 4.0 + 0.2 * (actions[:, 1] == 2)
        self.done = True
        return (self._obs(), score.astype(np.float32), np.ones(n, bool), np.zeros(n, bool),
                self._info(score=score.astype(np.float64)))


def test_group_reinforce_learns_the_best_action_per_state():
    import ray

    from argen_ray.ard.policy import PolicyHandle

    ray.init(num_cpus=1, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        algo = (GroupReinforceConfig().environment(_Bandit)
                .env_runners(num_env_runners=0, num_envs_per_env_runner=4, gym_env_vectorize_mode="vector_entry_point")
                .training(groups_per_batch=16, group_size=4, top_k=2, penalty=0.1, group_baseline=True, lr=5e-3,
                          entropy_coeff=0.0)
                .rl_module(model_config={"embed_dim": 16, "num_heads": 2}).debugging(seed=0)).build_algo()
        first = algo.train()
        for _ in range(19):
            last = algo.train()
        # Every iteration sees whole groups, and logs the group metrics and each head's entropy.
        assert last["argen"]["groups"] == 16
        learner = last["learners"]["default_policy"]
        assert {"entropy_steps", "entropy_alpha", "entropy_beta"} <= set(learner)
        assert learner["entropy_steps"] < first["learners"]["default_policy"]["entropy_steps"]
        handle = PolicyHandle(algo.get_module().net)
        rng = np.random.default_rng(1)
        text = rng.normal(size=(64, 4)).astype(np.float32)
        actions, _ = handle.act(text, np.zeros((64, 3), np.float32))
        best = np.where(text[:, 0] > 0, 4, 0)
        assert (actions[:, 0] == best).mean() >= 0.75  # random: 0.2
        assert (actions[:, 1] == 2).mean() >= 0.75  # random: 0.25
        algo.stop()
    finally:
        ray.shutdown()
