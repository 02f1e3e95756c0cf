"""Held-out evaluation of a trained policy: the argmax policy against every action (issue 14).

Where the action space has at most `train.oracle_max_actions` actions, every action is generated
and scored on every held-out state, on `train.eval_seeds` generation seeds per state (the same
seeds for every action, the policy and the baselines). The rows:

- policy: the argmax policy's action per state;
- oracle (per-state best): per state, the action with the best score averaged over the state's
  seeds — an estimate of argmax_a E_seed[S(s, a)], what a policy that sees the state (and not the
  seed) can reach at most. With few seeds it is still biased upward (the max of noisy means);
- oracle (per-seed max): the mean of each (state, seed)'s best action: a clairvoyant upper bound
  that also knows the seed, which no policy can reach where the seed decides the winner;
- best fixed action: the one action with the best mean over all (state, seed) pairs (in-sample:
  the max of |A| noisy means, biased upward);
- best fixed action (cross-fitted): with >= 2 seeds, each seed is scored with the fixed action
  chosen on the other seeds (leave one seed out), as the policy's own action was chosen on other
  data (the training states): an unbiased estimate of what choosing a fixed action earns;
- named baselines (TI2V-Zero's constant guidance) and random (the exact mean over all actions).

Every row's score carries its standard error over the states (a state's seed-mean is one
observation), and the policy's gap to each reference row is paired per state.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from argen_ray.ard.env import CANDIDATE_FIELDS, CandidateEvaluator, field_means
from argen_ray.ard.policy import PolicyHandle
from argen_ray.ard.states import StateSet
from argen_ray.config import Config
from argen_ray.errors import ArgenError

# (label in eval.json / MLflow, the per-state key of its seed-mean score, the table row's name)
REFERENCE_ROWS = (("oracle", "best_score", "oracle (per-state best)"),
                  ("oracle_per_seed", "per_seed_best_score", "oracle (per-seed max, upper bound)"),
                  ("best_fixed", "fixed_score", "best fixed action"),
                  ("best_fixed_cross", "fixed_cross_score", "best fixed action (cross-fitted)"))


# Issue 14's bar for the local preset: the policy's held-out score reaches this share of the
# per-state best (oracle) and is not below the best single fixed action.
ORACLE_BAR = 0.98


class EvaluationError(ArgenError):
    """The held-out evaluation cannot run (no held-out states)."""


# -- the choice rules on a (states, seeds, actions) score table -------------------------------------
def seed_mean_best(scores: np.ndarray) -> np.ndarray:
    """Per state, the action with the best mean over the seeds (the oracle's choice): (states,)."""
    return np.asarray(scores, float).mean(axis=1).argmax(axis=1)


def per_seed_best(scores: np.ndarray) -> np.ndarray:
    """Per (state, seed), the best action of that one sample: (states, seeds)."""
    return np.asarray(scores, float).argmax(axis=2)


def best_fixed_action(scores: np.ndarray) -> int:
    """The one action with the best mean over every (state, seed)."""
    return int(np.asarray(scores, float).mean(axis=(0, 1)).argmax())


def cross_fitted_fixed(scores: np.ndarray) -> np.ndarray | None:
    """Per seed k, the fixed action chosen on the other seeds (every state): (seeds,); None with
    one seed (nothing to choose on)."""
    scores = np.asarray(scores, float)
    if scores.shape[1] < 2:
        return None
    total = scores.sum(axis=(0, 1))
    return np.array([int((total - scores[:, k].sum(axis=0)).argmax()) for k in range(scores.shape[1])])


def _standard_error(values) -> float:
    values = np.asarray(values, float)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


@dataclass
class EvalResult:
    """Held-out comparison of the argmax policy with random actions and, where the action space
    is small enough (`train.oracle_max_actions`), with every action (see the module docstring).
    Each row holds the mean score, reward components, NFE and action values over the held-out
    (state, seed) pairs; `score_se` the standard error of each row's score over the states."""

    policy: dict[str, float]
    random: dict[str, float]
    objective: float
    num_states: int
    per_state: list[dict] = field(default_factory=list)
    oracle: dict[str, float] | None = None       # the best action of each state (seed-mean)
    best_fixed: dict[str, float] | None = None   # the one action with the best mean over the states
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)  # named settings, e.g. constant w
    num_actions: int | None = None               # actions scored per state (None: sampled evaluation)
    actions: list[dict] | None = None            # the order of each state's "scores" in `per_state`
    num_seeds: int = 1                           # generation seeds per held-out state
    oracle_per_seed: dict[str, float] | None = None   # each (state, seed)'s best: an upper bound
    best_fixed_cross: dict[str, float] | None = None  # fixed action chosen on the other seeds
    score_se: dict[str, float] = field(default_factory=dict)  # label -> s.e. of its score over states

    @property
    def regret(self) -> float | None:
        """Oracle score - policy score."""
        return None if self.oracle is None else self.oracle["score"] - self.policy["score"]

    @property
    def oracle_fraction(self) -> float | None:
        """Policy score / oracle score."""
        return None if self.oracle is None else self.policy["score"] / self.oracle["score"]

    def gap(self, key: str) -> tuple[float, float] | None:
        """Policy minus a per-state reference (`best_score`: the oracle, `fixed_score`: the best
        fixed action, ...; see REFERENCE_ROWS) as (mean, standard error over the held-out states),
        each state's seed-means paired."""
        if self.oracle is None or not self.per_state or key not in self.per_state[0]:
            return None
        diff = np.array([s["policy_score"] - s[key] for s in self.per_state])
        return float(diff.mean()), _standard_error(diff)

    def _references(self) -> dict[str, dict[str, float] | None]:
        return {"oracle": self.oracle, "oracle_per_seed": self.oracle_per_seed, "best_fixed": self.best_fixed,
                "best_fixed_cross": self.best_fixed_cross}

    def rows(self) -> dict[str, dict[str, float]]:
        """The named rows of the comparison table (policy, oracles, best fixed, baselines, random)."""
        refs = self._references()
        return {"policy": self.policy,
                **{title: refs[label] for label, _, title in REFERENCE_ROWS if refs[label] is not None},
                **self.baselines, "random": self.random}

    def flat_metrics(self) -> dict[str, float]:
        """MLflow / Tune metrics: eval_<row>_<field>, eval_<row>_score_se, regret, oracle_fraction,
        the policy's gaps to the reference rows and the objective."""
        rows = {"policy": self.policy, "random": self.random, **self._references(), **self.baselines}
        out = {f"eval_{label}_{k}": float(v) for label, values in rows.items() for k, v in (values or {}).items()}
        out.update({f"eval_{label}_score_se": se for label, se in self.score_se.items()})
        if self.oracle is not None:
            out.update({"eval_regret": self.regret, "eval_oracle_fraction": self.oracle_fraction,
                        "eval_seeds": float(self.num_seeds)})
            for label, (mean, se) in self.gaps().items():
                out.update({f"eval_policy_minus_{label}": mean, f"eval_policy_minus_{label}_se": se})
        out["objective"] = self.objective
        return out

    def gaps(self) -> dict[str, tuple[float, float]]:
        """label -> (policy - reference, standard error over the states) for every reference row."""
        found = {label: self.gap(key) for label, key, _ in REFERENCE_ROWS}
        return {label: value for label, value in found.items() if value is not None}

    def bars(self) -> dict[str, bool]:
        """The bar (issue 14) as this evaluation measures it: policy >= ORACLE_BAR x the per-state
        best, and policy - best fixed action >= 0 (in-sample, and cross-fitted where it exists);
        empty without the full action table."""
        if self.oracle is None:
            return {}
        gaps = self.gaps()
        return {f"oracle_fraction >= {ORACLE_BAR:g}": bool(self.oracle_fraction >= ORACLE_BAR),
                **{f"policy >= {label}": bool(gaps[label][0] >= 0.0) for label in ("best_fixed", "best_fixed_cross")
                   if label in gaps}}

    def to_json(self) -> dict:
        gaps = {f"policy_minus_{label}": dict(zip(("mean", "se"), value)) for label, value in self.gaps().items()}
        return {"policy": self.policy, "random": self.random, **self._references(),
                "baselines": self.baselines, "score_se": self.score_se, "regret": self.regret,
                "oracle_fraction": self.oracle_fraction, **gaps, "bars": self.bars(), "num_actions": self.num_actions,
                "num_seeds": self.num_seeds, "actions": self.actions, "objective": self.objective,
                "num_states": self.num_states, "per_state": self.per_state}


def _means(rows: list[dict]) -> dict[str, float]:
    return field_means(rows, CANDIDATE_FIELDS)


def _action_values(row: dict) -> dict:
    return {k: row[k] for k in ("steps", "alpha", "beta")}


def evaluation_baselines(space, resample: int | None = None) -> dict:
    """Named generation settings outside the policy's action space, scored on every held-out
    state beside the policy (name -> `GenerationParams`): TI2V-Zero's constant guidance w = 9.0 at
    T = 10 (its face setting). `resample` (`train.ti2v_zero_resample`) None: resampling as
    configured, the same r as every other row; an int: that r for this row alone (TI2V-Zero's
    own r = 4), named in the row ("... r4")."""
    from argen_ray.ard.guidance import TI2V_ZERO_GUIDANCE, TI2V_ZERO_STEPS

    # the name doubles as an MLflow metric key (eval_<name>_<field>): letters, digits, - . space only
    name = f"ti2v-zero T{TI2V_ZERO_STEPS} constant w{TI2V_ZERO_GUIDANCE:g}"
    return {name if resample is None else f"{name} r{resample}": space.constant(resample=resample)}


def objective_score(cfg: Config, means: dict[str, float]) -> float:
    """The held-out objective: the mean `train.objective` component of the policy's clips (R_c,
    expression validity, by default: the same yardstick whatever the reward weights) minus
    `train.nfe_cost` per NFE."""
    name = cfg.train.objective
    if name not in means:
        raise EvaluationError(f"train.objective={name} but this run did not compute {name} "
                              f"(reward.w_{name[2:]} = 0 switches it off)")
    return float(means[name]) - cfg.train.nfe_cost * float(means["nfe"])


def evaluate_policy(cfg: Config, policy: PolicyHandle, states: StateSet, evaluator: CandidateEvaluator,
                    seed: int | None = None, baselines: dict | None = None) -> EvalResult:
    """Score the argmax policy on `states` x `train.eval_seeds` generation seeds, against random
    actions and, when the action space has at most `train.oracle_max_actions` actions, against
    every action (the rows of the module docstring).

    Every candidate of a (state, seed) shares that seed. With the full table the random row is
    exact (the mean over all actions); otherwise it is G random actions per (state, seed).
    `baselines` (name -> `GenerationParams`) are scored on every (state, seed) too.
    """
    from tqdm.auto import tqdm

    if len(states) == 0:
        raise EvaluationError("no held-out states to evaluate (train.eval_states is 0)")
    num_seeds = cfg.train.eval_seeds
    rng = np.random.default_rng(cfg.seed + 7919 if seed is None else seed)
    seeds = rng.integers(2 ** 31 - 1, size=(len(states), num_seeds))  # one seed: the draws of old runs
    greedy, _ = policy.act(states.text_emb, states.image_emb)
    nvec = evaluator.action_space.nvec
    num_actions = int(np.prod(nvec))
    oracle = num_actions <= cfg.train.oracle_max_actions
    every = np.array(list(itertools.product(*(range(int(n)) for n in nvec))), np.int64) if oracle else None
    baselines = dict(baselines or {})
    # [state][seed] -> rows: every action (oracle) or the policy then G random actions
    table: list[list[list[dict]]] = [[] for _ in range(len(states))]
    baseline_rows: dict[str, list[list[dict]]] = {name: [[] for _ in range(len(states))] for name in baselines}
    calls, where = [], []  # every (state, seed)'s candidates, then its baselines, in the order of old runs
    for i in range(len(states)):
        for k in range(num_seeds):
            if oracle:
                actions = every
            else:
                draws = np.stack([rng.integers(n, size=cfg.reward.group_size) for n in nvec], axis=-1)
                actions = np.concatenate([greedy[i:i + 1], draws])
            calls.append((states, [i] * len(actions), [evaluator.action_space.decode(a) for a in actions], int(seeds[i, k])))
            where.append((i, None))
            for name, params in baselines.items():
                calls.append((states, [i], [params], int(seeds[i, k])))
                where.append((i, name))
    with tqdm(total=len(states), desc="held-out evaluation", unit="state", disable=not cfg.train.progress) as bar:
        for (i, name), rows in zip(where, evaluator.evaluate_many(calls)):
            if name is None:
                table[i].append(rows)
            else:
                baseline_rows[name][i].append(rows[0])
            if len(table[i]) == num_seeds and all(len(r[i]) == num_seeds for r in baseline_rows.values()):
                bar.update(1)
    mine = [int(np.flatnonzero((every == greedy[i]).all(axis=1))[0]) if oracle else 0 for i in range(len(states))]
    random_slice = slice(None) if oracle else slice(1, None)
    scores = [np.array([[r["score"] for r in seed_rows] for seed_rows in state_rows]) for state_rows in table]
    per_state = []
    for i, state_rows in enumerate(table):
        entry = {"prompt_id": states.rows[i]["prompt_id"], "seeds": [int(s) for s in seeds[i]],
                 "action": _action_values(state_rows[0][mine[i]]),
                 "policy_score": float(scores[i][:, mine[i]].mean()),
                 "random_score": float(scores[i][:, random_slice].mean()),
                 **{f"{name}_score": float(np.mean([r["score"] for r in rows[i]])) for name, rows in baseline_rows.items()}}
        per_state.append(entry)
    policy_rows = [seed_rows[mine[i]] for i, state_rows in enumerate(table) for seed_rows in state_rows]
    pol = _means(policy_rows)
    result = EvalResult(pol, _means([r for state_rows in table for seed_rows in state_rows
                                     for r in seed_rows[random_slice]]),
                        objective_score(cfg, pol), len(states), per_state, num_seeds=num_seeds,
                        baselines={name: _means([r for rows_i in rows for r in rows_i])
                                   for name, rows in baseline_rows.items()})
    result.score_se = {"policy": _standard_error([e["policy_score"] for e in per_state]),
                       "random": _standard_error([e["random_score"] for e in per_state]),
                       **{name: _standard_error([e[f"{name}_score"] for e in per_state]) for name in baselines}}
    if oracle:
        _oracle_rows(result, table, np.stack(scores))
        result.num_actions = num_actions
        result.actions = [_action_values(r) for r in table[0][0]]
    return result


def _oracle_rows(result: EvalResult, table: list[list[list[dict]]], scores: np.ndarray) -> None:
    """Fill the oracle, per-seed max, best fixed and cross-fitted rows from the full
    (states, seeds, actions) table, with each state's seed-mean reference scores and s.e."""
    best, seed_best, fixed = seed_mean_best(scores), per_seed_best(scores), best_fixed_action(scores)
    cross = cross_fitted_fixed(scores)
    n_states, n_seeds = scores.shape[:2]
    pairs = [(i, k) for i in range(n_states) for k in range(n_seeds)]
    result.oracle = _means([table[i][k][best[i]] for i, k in pairs])
    result.oracle_per_seed = _means([table[i][k][seed_best[i, k]] for i, k in pairs])
    result.best_fixed = _means([table[i][k][fixed] for i, k in pairs])
    if cross is not None:
        result.best_fixed_cross = _means([table[i][k][cross[k]] for i, k in pairs])
    for i, entry in enumerate(result.per_state):
        entry.update({"best_action": _action_values(table[i][0][best[i]]),
                      "best_score": float(scores[i, :, best[i]].mean()),
                      "per_seed_best_score": float(scores[i].max(axis=1).mean()),
                      "fixed_score": float(scores[i, :, fixed].mean()),
                      "scores": scores[i].mean(axis=0).tolist()})  # seed-means, in `EvalResult.actions` order
        entry["regret"] = entry["best_score"] - entry["policy_score"]
        if n_seeds > 1:
            entry["scores_by_seed"] = scores[i].tolist()
        if cross is not None:
            entry["fixed_cross_score"] = float(np.mean([scores[i, k, cross[k]] for k in range(n_seeds)]))
    for label, key, _ in REFERENCE_ROWS:
        if key in result.per_state[0]:
            result.score_se[label] = _standard_error([e[key] for e in result.per_state])
