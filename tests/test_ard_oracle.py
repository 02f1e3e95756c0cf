"""The held-out oracle evaluation: every action scored on every state gives the per-state best,
the best single fixed action, the exact random mean and the policy's regret (issue 14, item 1).
With several generation seeds per state the oracle is the per-state best of the seed-mean (an
estimate of argmax_a E_seed[S]), not the max of single noisy samples (docs/training.md).

The generator and scorers are replaced by a fixed score table (the same `evaluate` contract as
`CandidateEvaluator`), so the expected rows can be computed by hand from the table; the real
actors run this path in tests/test_train_policy.py."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from argen_ray.ard.guidance import ActionSpace
from argen_ray.ard.states import StateSet
from argen_ray.ard.evaluation import (best_fixed_action, cross_fitted_fixed, evaluate_policy, per_seed_best,
                                     seed_mean_best)
from argen_ray.config import load_config


class TableEvaluator:
    """Scores candidates from a (states, actions) table, or a (states, seeds, actions) one whose
    seed axis follows the order in which a state's seeds are first asked; records every
    (state, seed) it was asked."""

    def __init__(self, cfg, table: np.ndarray):
        self.action_space = ActionSpace.from_config(cfg.generator)
        self.table = table if table.ndim == 3 else table[:, None, :]
        self.order = {a: j for j, a in enumerate(itertools.product(*(range(int(n)) for n in self.action_space.nvec)))}
        self.seeds: dict[int, list] = {}
        self.params_seeds: dict[int, list] = {}  # seeds of `evaluate_params` (the baselines)

    def _seed_index(self, i, seed):
        seen = self.seeds.setdefault(i, [])
        if seed not in seen:
            seen.append(seed)
        return seen.index(seed)

    def evaluate_params(self, states, indices, params, seed):
        for i in indices:
            self.params_seeds.setdefault(i, []).append(seed)
        return [{"score": 0.1 * self._seed_index(i, seed), "r_t": 0.6, "nfe": p.steps, "steps": p.steps,
                 "alpha": None, "beta": None} for i, p in zip(indices, params)]

    def evaluate(self, states, indices, actions, seed):
        rows = []
        for i, a in zip(indices, np.asarray(actions)):
            p = self.action_space.decode(a)
            score = float(self.table[i, self._seed_index(i, seed), self.order[tuple(int(x) for x in a)]])
            rows.append({"score": score, "r_t": 1 - p.steps / 25, "r_c": score / 2, "nfe": p.steps, "steps": p.steps,
                         "alpha": p.alpha, "beta": p.beta})
        return rows


    def evaluate_many(self, calls):  # the `CandidateEvaluator.evaluate_many` contract, in call order
        for states, indices, params, seed in calls:
            if params[0].alpha is None:  # a baseline (constant guidance)
                yield self.evaluate_params(states, indices, params, seed)
            else:
                yield self.evaluate(states, indices, [self.action_space.encode(p.steps, p.alpha, p.beta) for p in params],
                                    seed)


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
    cfg = load_config(None, ["train.progress=false", "train.oracle_max_actions=79", "train.eval_seeds=2"])
    table = np.linspace(0, 1, 80)[None].repeat(3, axis=0)
    every = list(itertools.product(range(5), range(4), range(4)))
    evaluator = TableEvaluator(cfg, table[:, None, :].repeat(2, axis=1))
    result = evaluate_policy(cfg, LookupPolicy([every[79]] * 3), _states(3), evaluator)
    assert all(len(seeds) == 2 for seeds in evaluator.seeds.values())  # the policy and G random actions per seed
    assert result.oracle is None and result.regret is None and result.num_actions is None
    assert result.policy["score"] == pytest.approx(1.0)
    assert "oracle (per-state best)" not in result.rows() and set(result.rows()) == {"policy", "random"}


EVERY = list(itertools.product(range(5), range(4), range(4)))


def _noisy_bandit(rng, best, num_seeds, num_actions=80, noise=0.2):
    """True mean 0.5 everywhere except 0.8 at each state's `best` action, plus N(0, noise) per
    (state, seed, action): the seed decides which action wins a single sample."""
    truth = np.full((len(best), num_actions), 0.5)
    truth[np.arange(len(best)), best] = 0.8
    return truth[:, None, :] + rng.normal(0.0, noise, (len(best), num_seeds, num_actions))


def test_seed_mean_oracle_finds_the_true_best_where_the_per_seed_max_overshoots():
    best = [2, 5, 5, 7]
    scores = _noisy_bandit(np.random.default_rng(1), best, num_seeds=100, num_actions=8)
    assert seed_mean_best(scores).tolist() == best
    # One sample's best is a clairvoyant's pick: its mean is far above every true mean (0.8 at most).
    seed_best = per_seed_best(scores)
    assert seed_best.shape == (4, 100)
    assert np.take_along_axis(scores, seed_best[..., None], axis=2).mean() > 0.85
    # Action 5 is the best in 2 of the 4 states: true mean 0.65 against 0.575 for 2 and 7.
    assert best_fixed_action(scores) == 5
    assert cross_fitted_fixed(scores).tolist() == [5] * 100
    assert cross_fitted_fixed(scores[:, :1]) is None  # one seed: nothing to choose on


def test_cross_fitted_fixed_action_is_chosen_without_the_seed_it_is_scored_on():
    # One state, 3 seeds, 3 actions. In-sample means: 1/3, 0.45, 1.1/3 -> action 1. Leaving seed 0
    # out: sums 0, 0.9, 1.1 -> action 2; seed 1 out: 1.0, 0.9, 0.7 -> 0; seed 2 out: 1.0, 0.9, 0.4 -> 0.
    scores = np.array([[[1.0, 0.45, 0.0],
                        [0.0, 0.45, 0.4],
                        [0.0, 0.45, 0.7]]])
    assert best_fixed_action(scores) == 1
    assert cross_fitted_fixed(scores).tolist() == [2, 0, 0]  # each scores 0.0 on its own seed
    assert seed_mean_best(scores).tolist() == [1] and per_seed_best(scores).tolist() == [[0, 1, 2]]


def test_rows_are_seed_means_on_seeds_shared_by_every_action_the_policy_and_the_baselines():
    cfg = load_config(None, ["train.progress=false", "train.eval_seeds=3"])
    rng = np.random.default_rng(2)
    n = 4
    table = rng.uniform(0.2, 0.8, size=(n, 3, 80))
    idx = [0, 17, 40, 79]
    evaluator = TableEvaluator(cfg, table)
    constant = evaluator.action_space.constant()
    result = evaluate_policy(cfg, LookupPolicy([EVERY[j] for j in idx]), _states(n), evaluator,
                             baselines={"constant": constant})

    # 3 distinct seeds per state (none shared between states), the baseline scored on exactly those.
    assert all(len(seeds) == 3 for seeds in evaluator.seeds.values())
    assert len({s for seeds in evaluator.seeds.values() for s in seeds}) == 3 * n
    assert all(evaluator.params_seeds[i] == evaluator.seeds[i] for i in range(n))
    assert result.num_seeds == 3
    mean = table.mean(axis=1)                       # (states, actions) seed-means
    mine = mean[np.arange(n), idx]
    assert result.policy["score"] == pytest.approx(mine.mean())
    assert result.oracle["score"] == pytest.approx(mean.max(axis=1).mean())
    assert result.oracle_per_seed["score"] == pytest.approx(table.max(axis=2).mean())
    fixed = int(mean.mean(axis=0).argmax())
    assert result.best_fixed["score"] == pytest.approx(mean[:, fixed].mean())
    cross = [int((table.sum(axis=(0, 1)) - table[:, k].sum(axis=0)).argmax()) for k in range(3)]
    cross_per_state = np.mean([table[:, k, cross[k]] for k in range(3)], axis=0)
    assert result.best_fixed_cross["score"] == pytest.approx(cross_per_state.mean())
    assert result.random["score"] == pytest.approx(table.mean())
    assert result.baselines["constant"]["score"] == pytest.approx(0.1)  # seeds 0, 1, 2 of each state score 0, .1, .2
    assert result.oracle_fraction == pytest.approx(mine.mean() / mean.max(axis=1).mean())
    # Standard errors over the states, each state's seed-mean one observation; gaps paired per state.
    se = lambda v: np.std(v, ddof=1) / np.sqrt(n)  # noqa: E731
    assert result.score_se["policy"] == pytest.approx(se(mine))
    assert result.score_se["oracle"] == pytest.approx(se(mean.max(axis=1)))
    assert result.score_se["oracle_per_seed"] == pytest.approx(se(table.max(axis=2).mean(axis=1)))
    assert result.score_se["best_fixed_cross"] == pytest.approx(se(cross_per_state))
    assert result.gap("fixed_cross_score") == pytest.approx(((mine - cross_per_state).mean(), se(mine - cross_per_state)))
    assert result.gap("fixed_score") == pytest.approx(((mine - mean[:, fixed]).mean(), se(mine - mean[:, fixed])))
    for i, entry in enumerate(result.per_state):
        assert entry["scores"] == pytest.approx(mean[i].tolist())
        assert np.allclose(entry["scores_by_seed"], table[i])
        assert entry["best_score"] == pytest.approx(mean[i].max())
        assert entry["per_seed_best_score"] == pytest.approx(table[i].max(axis=1).mean())
    # eval.json and MLflow see every row, its s.e. and every gap.
    data = result.to_json()
    assert data["num_seeds"] == 3 and data["oracle_per_seed"] and data["best_fixed_cross"]
    assert data["policy_minus_best_fixed_cross"]["mean"] == pytest.approx((mine - cross_per_state).mean())
    assert {"oracle (per-seed max, upper bound)", "best fixed action (cross-fitted)"} <= set(result.rows())
    flat = result.flat_metrics()
    assert {"eval_oracle_per_seed_score", "eval_best_fixed_cross_score", "eval_policy_score_se", "eval_oracle_score_se",
            "eval_policy_minus_best_fixed_cross", "eval_policy_minus_best_fixed_cross_se", "eval_seeds"} <= set(flat)


def test_a_policy_on_each_states_true_best_reaches_the_seed_mean_oracle_but_not_the_per_seed_max():
    cfg = load_config(None, ["train.progress=false", "train.eval_seeds=60"])
    best = [3, 40, 40, 66]
    table = _noisy_bandit(np.random.default_rng(3), best, num_seeds=60)
    knows = evaluate_policy(cfg, LookupPolicy([EVERY[j] for j in best]), _states(4), TableEvaluator(cfg, table))
    assert knows.oracle_fraction == pytest.approx(1.0)  # the oracle picked the true best in every state
    assert knows.regret == pytest.approx(0.0, abs=1e-12)
    assert knows.oracle["score"] == pytest.approx(0.8, abs=0.03)
    assert knows.oracle_per_seed["score"] > 0.9  # the clairvoyant bound no state-seeing policy reaches
    # The best fixed action (40: true mean 0.65) is beaten by the true per-state gap of 0.15.
    params = ActionSpace.from_config(cfg.generator).decode(np.array(EVERY[40]))
    assert (knows.best_fixed["steps"], knows.best_fixed["alpha"], knows.best_fixed["beta"]) == \
        (params.steps, params.alpha, params.beta)
    for label in ("fixed_score", "fixed_cross_score"):
        gap, se = knows.gap(label)
        assert gap == pytest.approx(0.15, abs=0.03) and se > 0  # states 1, 2: 0; states 0, 3: 0.3
    # A state-blind policy on action 40 everywhere is the best fixed action, 0.65 / 0.8 of the oracle.
    blind = evaluate_policy(cfg, LookupPolicy([EVERY[40]] * 4), _states(4), TableEvaluator(cfg, table))
    assert blind.oracle_fraction == pytest.approx(0.65 / 0.8, abs=0.03)
    assert blind.gap("fixed_score")[0] == pytest.approx(0.0)
    # The bar in eval.json: the state-aware policy meets it, the state-blind one misses the 98 %.
    assert knows.bars() == {"oracle_fraction >= 0.98": True, "policy >= best_fixed": True,
                            "policy >= best_fixed_cross": True}
    assert blind.to_json()["bars"] == {"oracle_fraction >= 0.98": False, "policy >= best_fixed": True,
                                       "policy >= best_fixed_cross": True}
    worse = evaluate_policy(cfg, LookupPolicy([EVERY[3]] * 4), _states(4), TableEvaluator(cfg, table))
    assert worse.bars()["policy >= best_fixed"] is False


def test_ti2v_zero_row_keeps_the_configured_r_unless_train_sets_its_own(cfg):
    from argen_ray.ard.evaluation import evaluation_baselines
    from argen_ray.errors import ArgenError

    space = ActionSpace.from_config(cfg.generator)
    [(name, params)] = evaluation_baselines(space).items()
    assert name == "ti2v-zero T10 constant w9" and params.resample is None   # generator.resample, as every row
    assert params.steps == 10 and np.all(params.guidance == 9.0)
    [(name, params)] = evaluation_baselines(space, load_config(None, ["train.ti2v_zero_resample=4"])
                                            .train.ti2v_zero_resample).items()
    assert name == "ti2v-zero T10 constant w9 r4" and params.resample == 4 and params.steps == 10
    with pytest.raises(ArgenError, match="ti2v_zero_resample"):
        load_config(None, ["train.ti2v_zero_resample=-1"])


def test_the_ti2v_zero_rows_requests_carry_its_r_and_the_policys_the_configured_one(cfg):
    from argen_ray.ard.env import CandidateEvaluator
    from argen_ray.ard.evaluation import evaluation_baselines
    from argen_ray.ard.generator import GenerationResult

    class Recorder:
        """The generator and scorer pools' contract, recording each request's r."""

        def __init__(self):
            self.resample = []

        def generate(self, requests):
            self.resample += [r.resample for r in requests]
            return [GenerationResult(np.full((2, 2, 2, 3), n, np.uint8), 1, {}, "m") for n, _ in enumerate(requests)]

        def score_many(self, videos, references, steps, target_aus=None):
            return [{"score": 0.5, "r_t": 0.0, "r_q": 0.5, "r_f": 1.0, "r_e": 0.0, "r_c": 0.5, "steps": t}
                    for t in steps]

    evaluator = CandidateEvaluator(cfg)
    recorder = Recorder()
    evaluator._generators = evaluator._scorers = recorder
    states = StateSet([{"prompt_id": "p0", "prompt": "x"}], [np.zeros((4, 4, 3), np.uint8)],
                      np.eye(1, dtype=np.float32), np.zeros((1, 2), np.float32), "test")
    [baseline] = evaluation_baselines(evaluator.action_space, 4).values()
    evaluator.evaluate_params(states, [0, 0], [evaluator.action_space.decode(np.array([0, 0, 0])), baseline], seed=3)
    assert recorder.resample == [None, 4]
