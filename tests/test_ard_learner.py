"""The group REINFORCE rule inside RLlib: the group rule in the env, the advantages connector, loss,
config checks, learning."""
from __future__ import annotations

import numpy as np
import pytest

from argen_ray.ard.env import GroupVectorEnv, group_advantages
from argen_ray.ard.learner import EpisodeAdvantages, EpisodeError, GroupReinforceConfig


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


def test_connector_writes_each_episodes_own_group_reward_in_any_shard():
    from ray.rllib.core.columns import Columns

    # The env already applied the group rule; a learner may get any shard of the episodes.
    episodes = [_episode(r, g) for r, g in ((0.45, "a"), (-0.3, "b"), (0.1, "a"), (0.2, "c"))]
    batch = EpisodeAdvantages()(rl_module=None, episodes=episodes, batch={})
    got = {key[0]: float(vals[0]) for key, vals in batch[Columns.ADVANTAGES].items()}
    assert got == pytest.approx({e.id_: r for e, r in zip(episodes, (0.45, -0.3, 0.1, 0.2))})


def test_an_episode_longer_than_one_step_is_an_error():
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    two_steps = SingleAgentEpisode(observations=[np.zeros(2)] * 3, actions=[np.zeros(3)] * 2, rewards=[0.1, 0.2],
                                   infos=[{}] * 3, terminated=True, len_lookback_buffer=0)
    with pytest.raises(EpisodeError, match="one step long; got one of 2 steps"):
        EpisodeAdvantages()(rl_module=None, episodes=[two_steps], batch={})


def test_group_metrics_skip_a_component_that_was_not_computed():
    # reward.w_e = 0: r_e is None in every candidate's info; it is left out, never averaged.
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    from argen_ray.ard.learner import GroupReinforce

    def episode(score, r_t):
        info = {"group_id": "a", "seed": 7, "score": score, "r_t": r_t, "r_e": None, "steps": 5, "generate_s": 0.5}
        return SingleAgentEpisode(observations=[np.zeros(2), np.zeros(2)], actions=[np.zeros(3)], rewards=[score],
                                  infos=[{"group_id": "a"}, info], terminated=True, len_lookback_buffer=0)

    logged = {}

    class Metrics:
        def log_value(self, key, value, window=None):
            logged[key[1]] = value

    fake = type("Algo", (), {"metrics": Metrics()})()
    GroupReinforce._log_group_metrics(fake, [episode(0.2, 0.5), episode(0.6, 0.7)])
    assert logged == pytest.approx({"score": 0.4, "r_t": 0.6, "steps": 5.0, "generate_s": 0.5, "groups": 1})
    # The candidates themselves, for candidates.jsonl: the missing component stays None, not 0.
    rows = fake.candidate_rows
    assert [(r["score"], r["r_t"], r["r_e"], r["reward"], r["seed"]) for r in rows] == [(0.2, 0.5, None, 0.2, 7),
                                                                                       (0.6, 0.7, None, 0.6, 7)]


def test_config_keeps_groups_whole():
    with pytest.raises(ValueError, match="must equal the group size"):
        (GroupReinforceConfig().environment(GroupVectorEnv).training(group_size=4)
         .env_runners(num_envs_per_env_runner=2, gym_env_vectorize_mode="vector_entry_point").validate())
    # More learners are fine: the env applies the group rule before RLlib shards the samples.
    (GroupReinforceConfig().environment(GroupVectorEnv).training(group_size=4).learners(num_learners=2)
     .env_runners(num_envs_per_env_runner=4, gym_env_vectorize_mode="vector_entry_point").validate())
