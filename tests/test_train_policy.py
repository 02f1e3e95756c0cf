"""The trained policy (seeded, local preset's warp backend): its argmax beats a random policy on
held-out states by a clear margin, the oracle evaluation scores every action there on the real
actors, and raising w_t makes it choose fewer steps.

12-frame clips: up to 11 keyframes, so T = 5, 10 and >= 15 make different videos; without R_t the
(rank-based) group rule follows the quality reward, which mostly prefers more keyframes."""
from __future__ import annotations

import numpy as np
import pytest

from train_setup import ROOT, fast_overrides, fresh_run, train_in_process

pytestmark = pytest.mark.slow  # starts Ray and trains or fits


def _train(tmp_path_factory, run_dir, evaluate=True, **weights):
    from argen_ray.config import load_config

    run_dir = fresh_run(tmp_path_factory, run_dir)
    cfg = load_config(ROOT / "configs" / "local.yaml", fast_overrides(
        run_dir, train__iterations=4, train__batch_size=4, train__eval_states=2, train__lr=0.01,
        train__checkpoint_every=4, reward__num_scorers=2, generator__num_frames=12, **weights))
    summary, policy, states = train_in_process(cfg, evaluate)
    _, (p_steps, _, _) = policy.act(states.text_emb, states.image_emb)
    expected_steps = float((p_steps @ np.asarray(cfg.generator.action_space.steps, float)).mean())
    return summary, expected_steps


@pytest.fixture(scope="module")
def ray_session():
    import ray

    yield
    ray.shutdown()


def test_policy_beats_random_and_w_t_lowers_the_steps(ray_session, tmp_path_factory, tmp_path):
    efficient, steps_efficient = _train(tmp_path_factory, tmp_path / "w_t-0.5", reward__w_t=0.5, reward__w_e=0)
    ev = efficient.eval
    assert ev.policy["score"] > ev.random["score"] + 0.05, (ev.policy, ev.random)
    # Every one of the 80 actions was generated and scored on each held-out state: the per-state
    # best bounds the policy and the best fixed action, which beats the mean over all actions.
    assert ev.num_actions == 80 and all(len(s["scores"]) == 80 for s in ev.per_state)
    assert ev.oracle["score"] >= max(ev.policy["score"], ev.best_fixed["score"]) - 1e-9
    assert ev.best_fixed["score"] >= ev.random["score"] and ev.regret >= -1e-9
    assert ev.policy["steps"] < ev.random["steps"] and ev.policy["nfe"] < ev.random["nfe"]
    # Same seed, no efficiency reward: nothing pushes T down.
    indifferent, steps_indifferent = _train(tmp_path_factory, tmp_path / "w_t-0", evaluate=False, reward__w_t=0.0,
                                            reward__w_e=0)
    assert steps_efficient < steps_indifferent - 3, (steps_efficient, steps_indifferent)
    assert efficient.history[-1]["steps"] < indifferent.history[-1]["steps"]
