"""The held-out oracle evaluation: every action scored on every state gives the per-state best,
the best single fixed action, the exact random mean and the policy's regret (issue 14, item 1).

The generator and scorers are replaced by a fixed score table (the same `evaluate` contract as
`CandidateEvaluator`), so the expected rows can be computed by hand from the table; the real
actors run this path in tests/test_train_policy.py."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from argen_ray.ard.guidance import ActionSpace
from argen_ray.ard.states import StateSet
from argen_ray.ard.training import evaluate_policy
from argen_ray.config import load_config


class TableEvaluator:
    """Scores candidates from a (states, actions) table; records every (state, seed) it was asked."""

    def __init__(self, cfg, table: np.ndarray):
        self.action_space = ActionSpace.from_config(cfg.generator)
        self.table = table
        self.order = {a: j for j, a in enumerate(itertools.product(*(range(int(n)) for n in self.action_space.nvec)))}
        self.seeds: dict[int, set] = {}

    def evaluate(self, states, indices, actions, seed):
        rows = []
        for i, a in zip(indices, np.asarray(actions)):
            self.seeds.setdefault(i, set()).add(seed)
            p = self.action_space.decode(a)
            score = float(self.table[i, self.order[tuple(int(x) for x in a)]])
            rows.append({"score": score, "r_t": 1 - p.steps / 25, "r_c": score / 2, "nfe": p.steps, "steps": p.steps,
                         "alpha": p.alpha, "beta": p.beta})
        return rows


class LookupPolicy:
    """Acts like `PolicyHandle.act`: state i (one-hot text embedding) gets `actions[i]`."""

    def __init__(self, actions):
        self.actions = np.array(actions)

    def act(self, text_emb, image_emb):
        return self.actions[np.asarray(text_emb).argmax(axis=1)], []


def _states(n: int) -> StateSet:
    return StateSet([{"prompt_id": f"p{i}", "prompt": "x"} for i in range(n)], [None] * n,
                    np.eye(n, dtype=np.float32), np.zeros((n, 2), np.float32), "test")


@pytest.fixture
def cfg():
    return load_config(None, ["train.progress=false"])


def test_oracle_rows_are_the_per_state_best_the_best_fixed_action_and_the_exact_random_mean(cfg):
    rng = np.random.default_rng(0)
    n, num_actions = 5, 80
    table = rng.uniform(0.2, 0.8, size=(n, num_actions))
    # Action 17 is the best on average; each state also has its own, better, best action.
    table[:, 17] += 0.15
    per_state_best = [3, 40, 17, 66, 79]
    for i, j in enumerate(per_state_best):
        table[i, j] = 0.99
    every = list(itertools.product(range(5), range(4), range(4)))
    chosen = [every[j] for j in (17, 17, 40, 66, 0)]  # right in states 3; best fixed elsewhere; wrong in 4
    evaluator = TableEvaluator(cfg, table)
    result = evaluate_policy(cfg, LookupPolicy(chosen), _states(n), evaluator)

    assert result.num_actions == num_actions
    mine = np.array([table[i, every.index(a)] for i, a in enumerate(chosen)])
    assert result.policy["score"] == pytest.approx(mine.mean())
    assert result.oracle["score"] == pytest.approx(table.max(axis=1).mean())
    fixed = int(table.mean(axis=0).argmax())
    assert fixed == 17
    assert result.best_fixed["score"] == pytest.approx(table[:, 17].mean())
    params = ActionSpace.from_config(cfg.generator).decode(np.array(every[17]))
    assert (result.best_fixed["steps"], result.best_fixed["alpha"], result.best_fixed["beta"]) == \
        (params.steps, params.alpha, params.beta)
    assert result.random["score"] == pytest.approx(table.mean())
    assert result.regret == pytest.approx(table.max(axis=1).mean() - mine.mean())
    assert result.oracle_fraction == pytest.approx(mine.mean() / table.max(axis=1).mean())
    # Components and action values are averaged over the same rows as the score.
    assert result.oracle["r_c"] == pytest.approx(result.oracle["score"] / 2)
    for i, entry in enumerate(result.per_state):
        assert entry["best_score"] == pytest.approx(0.99)
        assert entry["regret"] == pytest.approx(0.99 - mine[i])
        assert entry["scores"] == pytest.approx(table[i].tolist())
        assert entry["fixed_score"] == pytest.approx(table[i, 17])
    # The gaps to the best fixed action and to the oracle, with their standard error over the states.
    to_fixed = mine - table[:, 17]
    assert result.gap("fixed_score") == pytest.approx((to_fixed.mean(), to_fixed.std(ddof=1) / np.sqrt(n)))
    to_best = mine - 0.99
    assert result.gap("best_score") == pytest.approx((to_best.mean(), to_best.std(ddof=1) / np.sqrt(n)))
    assert result.to_json()["policy_minus_best_fixed"] == pytest.approx({"mean": to_fixed.mean(),
                                                                         "se": to_fixed.std(ddof=1) / np.sqrt(n)})
    # One generation seed per state, shared by all of its candidates.
    assert all(len(seeds) == 1 for seeds in evaluator.seeds.values())
    # MLflow / Tune see every row.
    flat = result.flat_metrics()
    assert {"eval_policy_score", "eval_oracle_score", "eval_best_fixed_score", "eval_random_score", "eval_regret",
            "eval_oracle_fraction", "eval_policy_minus_best_fixed", "eval_policy_minus_best_fixed_se",
            "eval_policy_minus_oracle_se", "objective"} <= set(flat)
    # The objective is the policy's R_c (not its score) minus the NFE cost.
    assert result.objective == pytest.approx(result.policy["r_c"] - cfg.train.nfe_cost * result.policy["nfe"])


def test_large_action_spaces_fall_back_to_sampled_random_actions(cfg):
    cfg = load_config(None, ["train.progress=false", "train.oracle_max_actions=79"])
    table = np.linspace(0, 1, 80)[None].repeat(3, axis=0)
    every = list(itertools.product(range(5), range(4), range(4)))
    result = evaluate_policy(cfg, LookupPolicy([every[79]] * 3), _states(3), TableEvaluator(cfg, table))
    assert result.oracle is None and result.regret is None and result.num_actions is None
    assert result.policy["score"] == pytest.approx(1.0)
    assert "oracle (per-state best)" not in result.rows() and set(result.rows()) == {"policy", "random"}
