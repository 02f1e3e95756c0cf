"""The learning rule of DESIGN 2.3 inside RLlib's new API stack.

- `GroupAdvantages` (learner connector): the G one-step episodes of one state share a group
  id (set by `ARGenEnv`); their rewards are the raw scores S. The group rule turns them into
  the training signal: top-k candidates keep S, the rest get -delta; with the switchable
  group-mean baseline the group's mean is subtracted. Written to `Columns.ADVANTAGES`.
- `GroupReinforceLearner` (TorchLearner): REINFORCE over the three factorised log-probs,
  loss = -mean(R * (log pi_T + log pi_alpha + log pi_beta)) - c_H * sum_heads mean entropy, Adam.
- `GroupReinforceConfig` / `GroupReinforce` (AlgorithmConfig / Algorithm): each training step
  samples B whole groups (the env is a vector env with num_envs == G, so a group is never
  split), updates the learner once, and syncs weights back to the env runners.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
import torch
import tree

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)

from argen_ray.ard.env import CANDIDATE_FIELDS, GROUP_TIMINGS, field_means
from argen_ray.ard.policy import HEADS, PolicyRLModule, split_logits
from argen_ray.errors import ArgenError



class GroupSplitError(ArgenError):
    """A group of candidates reached the learner incomplete (its G episodes were split)."""


def group_advantages(scores: list[float], top_k: int, penalty: float, baseline: bool) -> np.ndarray:
    """Group rule for one state's G scores: top-k keep S, the rest -delta; minus the mean if asked."""
    from argen_ray.ard.rewards import group_rewards

    rewards = np.asarray(group_rewards(scores, top_k, penalty), dtype=np.float32)
    return rewards - rewards.mean() if baseline else rewards


class GroupAdvantages(ConnectorV2):
    """Learner connector: writes `Columns.ADVANTAGES` from each group's scores."""

    def __init__(self, input_observation_space=None, input_action_space=None, *,
                 group_size: int, top_k: int, penalty: float, baseline: bool):
        super().__init__(input_observation_space, input_action_space)
        self.group_size, self.top_k, self.penalty, self.baseline = group_size, top_k, penalty, baseline

    def __call__(self, *, rl_module, episodes, batch: dict[str, Any], **kwargs):
        sa_episodes = list(self.single_agent_episode_iterator(episodes, agents_that_stepped_only=False))
        groups: dict[Any, list] = defaultdict(list)
        for episode in sa_episodes:
            if len(episode) != 1:
                raise GroupSplitError(f"ARGen episodes are one step long; got one of {len(episode)} steps")
            groups[episode.get_infos(-1)["group_id"]].append(episode)
        for group_id, members in groups.items():
            if len(members) != self.group_size:
                raise GroupSplitError(f"group {group_id} reached the learner with {len(members)} of "
                                      f"{self.group_size} candidates (use at most one learner)")
            scores = [float(ep.get_rewards(-1)) for ep in members]
            for episode, adv in zip(members, group_advantages(scores, self.top_k, self.penalty, self.baseline)):
                self.add_n_batch_items(batch, Columns.ADVANTAGES, items_to_add=[adv], num_items=1,
                                       single_agent_episode=episode)
        return batch


class GroupReinforceLearner(TorchLearner):
    """REINFORCE over the three factorised log-probs with the group advantages."""

    def build(self) -> None:
        super().build()
        cfg = self.config
        if cfg.add_default_connectors_to_learner_pipeline:
            self._learner_connector.prepend(GroupAdvantages(
                group_size=cfg.group_size, top_k=cfg.top_k, penalty=cfg.penalty, baseline=cfg.group_baseline))

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        module = self.module[module_id].unwrapped()
        parts = split_logits(fwd_out[Columns.ACTION_DIST_INPUTS], module.action_space.nvec)
        actions = batch[Columns.ACTIONS].long()
        logp = torch.zeros_like(batch[Columns.ADVANTAGES])
        entropy = torch.zeros((), device=logp.device)
        for i, (name, logits) in enumerate(zip(HEADS, parts)):
            log_probs = torch.log_softmax(logits, dim=-1)
            logp = logp + log_probs.gather(-1, actions[:, i:i + 1]).squeeze(-1)
            head_entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
            entropy = entropy + head_entropy
            self.metrics.log_value((module_id, f"entropy_{name}"), head_entropy.item(), window=1)
        advantages = batch[Columns.ADVANTAGES]
        policy_loss = -(advantages * logp).mean()
        self.metrics.log_value((module_id, "policy_loss"), policy_loss.item(), window=1)
        self.metrics.log_value((module_id, "advantage_mean"), advantages.mean().item(), window=1)
        return policy_loss - config.entropy_coeff * entropy


class GroupReinforceConfig(AlgorithmConfig):
    """Group REINFORCE: B groups of G candidates per update (DESIGN 2.3)."""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or GroupReinforce)
        self.groups_per_batch = 32   # B
        self.group_size = 4          # G
        self.top_k = 2               # k
        self.penalty = 0.1           # delta
        self.group_baseline = False
        self.entropy_coeff = 0.01
        self.lr = 3e-3
        self.batch_mode = "complete_episodes"

    def training(self, *, groups_per_batch=NotProvided, group_size=NotProvided, top_k=NotProvided,
                 penalty=NotProvided, group_baseline=NotProvided, entropy_coeff=NotProvided, **kwargs):
        super().training(**kwargs)
        for name, value in dict(groups_per_batch=groups_per_batch, group_size=group_size, top_k=top_k,
                                penalty=penalty, group_baseline=group_baseline,
                                entropy_coeff=entropy_coeff).items():
            if value is not NotProvided:
                setattr(self, name, value)
        return self

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=PolicyRLModule)

    def get_default_learner_class(self):
        return GroupReinforceLearner

    def validate(self) -> None:
        super().validate()
        if self.num_learners > 1:
            self._value_error("GroupReinforce needs num_learners <= 1: more learners split the groups")
        if self.num_envs_per_env_runner != self.group_size:
            self._value_error(f"num_envs_per_env_runner ({self.num_envs_per_env_runner}) must equal the "
                              f"group size G ({self.group_size}) so one vector step is one group")
        if not 1 <= self.top_k <= self.group_size:
            self._value_error(f"top_k ({self.top_k}) must lie in [1, G={self.group_size}]")


class GroupReinforce(Algorithm):
    @classmethod
    def get_default_config(cls) -> GroupReinforceConfig:
        return GroupReinforceConfig()

    def training_step(self) -> None:
        cfg = self.config
        runners = max(1, self.env_runner_group.num_remote_workers())
        # Whole groups only: a multiple of G episodes per env runner.
        episodes_per_runner = math.ceil(cfg.groups_per_batch / runners) * cfg.group_size
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            sampled = self.env_runner_group.foreach_env_runner(
                lambda runner: (runner.sample(num_episodes=episodes_per_runner), runner.get_metrics()),
                local_env_runner=self.env_runner_group.num_remote_workers() <= 0)
        episodes = tree.flatten([s[0] for s in sampled])
        self.metrics.aggregate([s[1] for s in sampled], key=ENV_RUNNER_RESULTS)
        self._log_group_metrics(episodes)

        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            learner_results = self.learner_group.update(
                episodes=episodes,
                timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                    (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)})
        self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)

        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(from_worker_or_learner_group=self.learner_group,
                                               inference_only=True)

    def _log_group_metrics(self, episodes) -> None:
        """Means of the candidates' score, reward components, actions, NFE and timings."""
        infos = [ep.get_infos(-1) for ep in episodes]
        for name, mean in field_means(infos, CANDIDATE_FIELDS + GROUP_TIMINGS).items():
            self.metrics.log_value(("argen", name), mean, window=1)
        self.metrics.log_value(("argen", "groups"), len({i["group_id"] for i in infos}), window=1)
