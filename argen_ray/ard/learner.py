"""The learning rule of DESIGN 2.3 inside RLlib's new API stack.

- The group rule itself (top-k keep S, the rest -delta, optional group-mean baseline) is applied
  by the env (`argen_ray.ard.env.GroupVectorEnv`), which sees each whole group; every one-step
  episode's reward is thus final, and RLlib may shard episodes over any number of learners.
- `EpisodeAdvantages` (learner connector): writes each episode's group reward to
  `Columns.ADVANTAGES`.
- `GroupReinforceLearner` (TorchLearner): REINFORCE over the three factorised log-probs,
  loss = -mean(R * (log pi_T + log pi_alpha + log pi_beta)) - c_H * sum_heads mean entropy, Adam;
  c_H may follow a schedule (RLlib's `Scheduler`, over sampled env steps).
- `GroupReinforceConfig` / `GroupReinforce` (AlgorithmConfig / Algorithm): each training step
  samples B whole groups (the env is a vector env with num_envs == G), updates the learner(s)
  once, and syncs weights back to the env runners.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import tree

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.lambda_defaultdict import LambdaDefaultDict
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)
from ray.rllib.utils.schedules.scheduler import Scheduler

from argen_ray.ard.env import CANDIDATE_FIELDS, GROUP_TIMINGS, field_means
from argen_ray.ard.policy import HEADS, PolicyRLModule, split_logits
from argen_ray.errors import ArgenError



class EpisodeError(ArgenError):
    """An episode reached the learner in a shape the group rule does not produce."""


class EpisodeAdvantages(ConnectorV2):
    """Learner connector: writes `Columns.ADVANTAGES` = each one-step episode's reward.

    The env already applied the group rule (it sees the whole group), so every sample carries its
    final reward and this works on any shard of the episodes, i.e. with any number of learners.
    """

    def __call__(self, *, rl_module, episodes, batch: dict[str, Any], **kwargs):
        for episode in self.single_agent_episode_iterator(episodes, agents_that_stepped_only=False):
            if len(episode) != 1:
                raise EpisodeError(f"ARGen episodes are one step long; got one of {len(episode)} steps")
            self.add_n_batch_items(batch, Columns.ADVANTAGES, items_to_add=[float(episode.get_rewards(-1))],
                                   num_items=1, single_agent_episode=episode)
        return batch


class GroupReinforceLearner(TorchLearner):
    """REINFORCE over the three factorised log-probs with the group advantages."""

    def build(self) -> None:
        super().build()
        if self.config.add_default_connectors_to_learner_pipeline:
            self._learner_connector.prepend(EpisodeAdvantages())
        # c_H: a constant or an RLlib schedule [[env steps, value], ...] (interpolated linearly).
        self.entropy_coeff_schedulers = LambdaDefaultDict(lambda module_id: Scheduler(
            fixed_value_or_schedule=self.config.get_config_for_module(module_id).entropy_coeff,
            framework=self.framework, device=self._device))

    def after_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        super().after_gradient_based_update(timesteps=timesteps)
        for module_id in self.module.keys():
            value = self.entropy_coeff_schedulers[module_id].update(
                timestep=timesteps.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, 0))
            self.metrics.log_value((module_id, "entropy_coeff"), float(value), window=1)

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
        return policy_loss - self.entropy_coeff_schedulers[module_id].get_current_value() * entropy


class GroupReinforceConfig(AlgorithmConfig):
    """Group REINFORCE: B groups of G candidates per update (DESIGN 2.3)."""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or GroupReinforce)
        self.groups_per_batch = 32   # B
        self.group_size = 4          # G
        self.entropy_coeff = 0.01    # c_H, or a schedule [[env steps, value], ...]
        self.lr = 3e-3
        self.batch_mode = "complete_episodes"

    def training(self, *, groups_per_batch=NotProvided, group_size=NotProvided, entropy_coeff=NotProvided,
                 **kwargs):
        super().training(**kwargs)
        for name, value in dict(groups_per_batch=groups_per_batch, group_size=group_size,
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
        if self.num_envs_per_env_runner != self.group_size:
            self._value_error(f"num_envs_per_env_runner ({self.num_envs_per_env_runner}) must equal the "
                              f"group size G ({self.group_size}) so one vector step is one group")


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
        """Means of the candidates' score, reward components, actions, NFE and timings; the
        candidates themselves, one row each, in `candidate_rows` (the trainer records them)."""
        infos = [ep.get_infos(-1) for ep in episodes]
        number = lambda v, kind=float: None if v is None else kind(v)  # noqa: E731 (numpy scalars -> JSON)
        self.candidate_rows = [
            {"group_id": str(info["group_id"]), "prompt_id": ep.get_infos(0).get("prompt_id"),
             "seed": number(info.get("seed"), int), **{k: number(info.get(k)) for k in CANDIDATE_FIELDS},
             "reward": float(ep.get_rewards(-1))}
            for ep, info in zip(episodes, infos)]
        for name, mean in field_means(infos, CANDIDATE_FIELDS + GROUP_TIMINGS).items():
            self.metrics.log_value(("argen", name), mean, window=1)
        self.metrics.log_value(("argen", "groups"), len({i["group_id"] for i in infos}), window=1)
