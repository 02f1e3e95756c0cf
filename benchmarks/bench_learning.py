"""Does the learning rule reach the optimum? (issue 14, item 2) — on the real scores of a run.

1. `table`: scores every action of the action space on the TRAINING states of a run's
   prompts.jsonl (the held-out split of `argen-ray train` is left out, so settings chosen here
   never see the evaluation states) for `--seeds` generation seeds each, with the run's generator
   and reward scorers (through `CandidateEvaluator`, as training does), and saves the
   (states x seeds x actions) table. The warp backend's clips depend on the seed (timing, head
   path, noise, amplitude draws), so a state's scores differ from seed to seed, as in training.
2. `learn`: trains `GroupReinforce` (the same algorithm, env base class, learner and connector;
   the group rule with the run's `group_baseline` / `group_scale`) on the table's states minus a
   seeded validation split (`--validation` states), each group drawing one of the table's seeds,
   for several training seeds, and reports on the validation states the greedy policy's score
   against the per-state best (oracle: mean over seeds of each seed's best action, as the
   held-out evaluation scores one seed per state), the per-state best in expectation over seeds
   (what a policy that cannot see the seed could reach at most), the best single fixed action
   and random.
3. `design`: what the held-out evaluation can show at a given size (states x seeds per state) on
   the table's measured state x action effects and seed noise, for a state-blind policy on one
   fixed action: the expected policy / oracle (seed-mean oracle and per-seed max), how often it
   reaches 98 %, and policy - best fixed action (in-sample and cross-fitted), by resampling the
   table (no generator).
4. `effects`: do the actions matter per state? ANOVA F of the action and state x action effects
   against the seed noise, and what state-aware choice rules earn on a seed they did not see.

    .venv/bin/python benchmarks/bench_learning.py table --config configs/local.yaml --set run_dir=DIR --seeds 2
    .venv/bin/python benchmarks/bench_learning.py learn --table DIR/policy/action_table.npz \\
        --seeds 0 1 2 --set train.lr=0.003 --set train.iterations=12
    .venv/bin/python benchmarks/bench_learning.py design --table DIR/policy/action_table.npz --design 16x1 8x3
    .venv/bin/python benchmarks/bench_learning.py effects --table DIR/policy/action_table.npz \
        --prompts DIR/prompts/prompts.jsonl
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from argen_ray.ard.env import GroupVectorEnv

ROOT = Path(__file__).resolve().parents[1]


def build_table(cfg, num_seeds: int, max_states: int | None = None) -> Path:
    import itertools

    from tqdm import tqdm

    from argen_ray.ard.env import CandidateEvaluator
    from argen_ray.ard.states import build_state_encoder, load_states
    from argen_ray.io import atomic_path
    from argen_ray.runtime import init_ray

    init_ray(cfg)
    evaluator = CandidateEvaluator(cfg)
    states = load_states(cfg, build_state_encoder(cfg, evaluator.generators))
    train, _ = states.split(cfg.train.eval_states, cfg.seed)  # the split of `argen-ray train`
    if max_states and max_states < len(train):  # a seeded subset of the training states
        train = train.subset(sorted(np.random.default_rng(cfg.seed + 1).permutation(len(train))[:max_states]))
    every = np.array(list(itertools.product(*(range(int(n)) for n in evaluator.action_space.nvec))), np.int64)
    scores = np.zeros((len(train), num_seeds, len(every)))
    t0 = time.perf_counter()
    for i in tqdm(range(len(train)), desc="scoring every action", unit="state"):
        for k in range(num_seeds):
            seed = 1000 * i + k
            scores[i, k] = [r["score"] for r in evaluator.evaluate(train, [i] * len(every), every, seed=seed)]
    target = cfg.path("policy", "action_table.npz")
    with atomic_path(target) as tmp:
        np.savez(tmp, scores=scores, actions=every, text_emb=train.text_emb, image_emb=train.image_emb,
                 prompt_ids=np.array([r["prompt_id"] for r in train.rows]))
    print(f"{len(train)} training states x {num_seeds} seeds x {len(every)} actions in "
          f"{time.perf_counter() - t0:.0f} s -> {target}")
    evaluator.shutdown()
    return target


class ScoreTableEnv(GroupVectorEnv):
    """The environment of a saved score table: states are its rows, each group draws one of the
    table's seeds, and a candidate's score is looked up."""

    def __init__(self, config):
        table = config["table"]
        self.text, self.image, self.scores = table["text_emb"], table["image_emb"], table["scores"]
        self.index = {tuple(a): j for j, a in enumerate(table["actions"].tolist())}
        rows = config["rows"]
        self.rows = rows
        box = lambda d: gym.spaces.Box(-np.inf, np.inf, (d,), np.float32)  # noqa: E731
        super().__init__(num_envs=config["num_envs"], num_states=len(rows),
                         single_observation_space=gym.spaces.Dict(text_emb=box(self.text.shape[1]),
                                                                  image_emb=box(self.image.shape[1])),
                         single_action_space=gym.spaces.MultiDiscrete(table["actions"].max(axis=0) + 1),
                         top_k=config["top_k"], penalty=config["penalty"], baseline=config["baseline"],
                         scale=config["scale"], seed=config["seed"])

    def observe(self, state):
        i = self.rows[state]
        return {"text_emb": self.text[i], "image_emb": self.image[i]}

    def score_group(self, state, actions, seed):
        i, k = self.rows[state], seed % self.scores.shape[1]
        return [{"score": float(self.scores[i, k, self.index[tuple(a)]])} for a in np.asarray(actions).tolist()]


def learn(cfg, table_path: Path, seed: int, validation: int) -> dict:
    from argen_ray.ard.learner import GroupReinforceConfig
    from argen_ray.ard.policy import PolicyHandle
    from argen_ray.ard.training import entropy_schedule

    data = dict(np.load(table_path))
    if data["scores"].ndim == 2:  # a one-seed table of an earlier version
        data["scores"] = data["scores"][:, None]
    n = len(data["scores"])
    order = np.random.default_rng(12345).permutation(n)  # fixed validation split, whatever the settings
    held, train = sorted(order[:validation]), sorted(order[validation:])
    t, r = cfg.train, cfg.reward
    algo = (GroupReinforceConfig()
            .environment(ScoreTableEnv, env_config={"table": data, "rows": train, "top_k": r.top_k,
                                                    "penalty": r.penalty, "baseline": t.group_baseline,
                                                    "scale": t.group_scale, "seed": seed})
            .env_runners(num_env_runners=0, num_envs_per_env_runner=r.group_size,
                         gym_env_vectorize_mode="vector_entry_point")
            .training(groups_per_batch=t.batch_size, group_size=r.group_size, entropy_coeff=entropy_schedule(cfg),
                      lr=t.lr, train_batch_size_per_learner=t.batch_size * r.group_size)
            .rl_module(model_config={"embed_dim": t.embed_dim, "num_heads": t.num_heads})
            .debugging(seed=seed)).build_algo()
    try:
        for _ in range(t.iterations):
            algo.train()
        greedy, _ = PolicyHandle(algo.get_module().net).act(data["text_emb"][held], data["image_emb"][held])
    finally:
        algo.stop()
    index = {tuple(a): j for j, a in enumerate(data["actions"].tolist())}
    scores = data["scores"][held]                      # (validation states, seeds, actions)
    chosen = [index[tuple(a)] for a in greedy.tolist()]
    policy = np.array([scores[k, :, j].mean() for k, j in enumerate(chosen)])
    fixed = int(scores.mean(axis=(0, 1)).argmax())
    return {"seed": seed, "policy": float(policy.mean()), "oracle": float(scores.max(axis=2).mean()),
            "expected_best": float(scores.mean(axis=1).max(axis=1).mean()),
            "best_fixed": float(scores[:, :, fixed].mean()), "best_fixed_action": data["actions"][fixed].tolist(),
            "random": float(scores.mean()), "distinct_actions": len(set(chosen)), "validation_states": len(held),
            "greedy_actions": data["actions"][chosen].tolist()}


def evaluation_design(table_path: Path, num_states: int, num_seeds: int, policy_rank: int, draws: int,
                      seed: int = 0) -> dict:
    """What the held-out evaluation (argen_ray/ard/evaluation.py) shows at `num_states` x `num_seeds`
    on this table. Each draw picks states of the table; a state's "true" action scores are its
    seed-mean row (its level, the action main effects and the state x action effect, shrunk by
    its reliability so the k-seed mean's own noise is not counted as effect), and every
    simulated seed adds one of the table's within-(state, seed) residual vectors (deviations from
    the state's seed-mean row, rescaled by sqrt(k / (k - 1)) for the k table seeds; drawn whole,
    so ties and correlations between actions stay). The policy is state-blind: it plays the
    table's `policy_rank`-th best action by mean (0: the best fixed action) in every state.
    Returns the means over the draws of policy / oracle (seed-mean oracle, per-seed max), how
    often each reaches 98 %, and policy - best fixed (in-sample, cross-fitted), how often >= 0."""
    from argen_ray.ard.evaluation import best_fixed_action, cross_fitted_fixed, seed_mean_best

    scores = np.load(table_path)["scores"]
    k = scores.shape[1]
    if k < 2:
        raise SystemExit("design needs a table with >= 2 seeds per state (the seed noise is measured between them)")
    cells = scores.mean(axis=1)                                            # (states, actions)
    residuals = ((scores - cells[:, None]) * np.sqrt(k / (k - 1))).reshape(-1, scores.shape[2])
    # A k-seed cell mean carries noise variance sigma^2 / k on top of the state x action effect:
    # shrink the effect by its reliability so the simulated truth holds no measured noise.
    fitted = cells.mean(axis=1, keepdims=True) + cells.mean(axis=0) - cells.mean()
    # the seed's shift of a whole (state, seed) row changes no choice: left out of the noise here
    within = scores - cells[:, None] - (scores.mean(axis=2, keepdims=True) - cells.mean(axis=1)[:, None, None])
    effect_var, noise_var = (cells - fitted).var(), within.var() * k / (k - 1) / k
    reliability = max(0.0, 1.0 - noise_var / effect_var)
    truth = fitted + reliability * (cells - fitted)
    action = int(np.argsort(truth.mean(axis=0))[::-1][policy_rank])
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(draws):
        rows = rng.integers(len(scores), size=num_states)
        table = truth[rows][:, None, :] + residuals[rng.integers(len(residuals), size=(num_states, num_seeds))]
        mine = table[:, :, action].mean()
        oracle = np.take_along_axis(table.mean(axis=1), seed_mean_best(table)[:, None], axis=1).mean()
        cross = cross_fitted_fixed(table)
        out.append((mine / oracle, mine / table.max(axis=2).mean(), mine - table[:, :, best_fixed_action(table)].mean(),
                    np.nan if cross is None else mine - np.mean([table[:, j, a].mean() for j, a in enumerate(cross)]),
                    mine / truth[rows].max(axis=1).mean()))
    o = np.array(out)
    return {"eval_states": num_states, "eval_seeds": num_seeds, "draws": draws, "policy_rank": policy_rank,
            "effect_reliability": reliability,
            "policy_over_oracle": float(o[:, 0].mean()), "p_oracle_98": float((o[:, 0] >= 0.98).mean()),
            "policy_over_per_seed_max": float(o[:, 1].mean()), "p_per_seed_98": float((o[:, 1] >= 0.98).mean()),
            "policy_over_table_state_best": float(o[:, 4].mean()),
            "policy_minus_best_fixed": float(o[:, 2].mean()), "p_best_fixed": float((o[:, 2] >= -1e-12).mean()),
            "policy_minus_best_fixed_cross": float(np.nanmean(o[:, 3])) if num_seeds > 1 else None,
            "p_best_fixed_cross": float((o[:, 3] >= -1e-12).mean()) if num_seeds > 1 else None}


def action_effects(table_path: Path, prompts: Path | None = None) -> dict:
    """Do the actions matter, per state? On the actions of the table's smallest T (the ones a
    trained policy chooses among): two-way ANOVA F of the action main effect and of the state x
    action effect against the seed noise (each (state, seed) row centred: the seed's shift of a
    whole row changes no choice), the seed-to-seed correlation of the within-state deviations,
    and what choice rules earn when they choose on one seed and are scored on another (both ways;
    2-seed tables): the state's own best, the best fixed action of the other states, the best of
    the k nearest other states on the state embeddings and, with `prompts`, per emotion / identity."""
    from scipy import stats

    data = np.load(table_path, allow_pickle=True)
    scores, actions = data["scores"], data["actions"]
    sub = scores[:, :, actions[:, 0] == actions[:, 0].min()]
    n, k, a = sub.shape
    centred = sub - sub.mean(axis=2, keepdims=True)
    cell = centred.mean(axis=1)
    inter = cell - cell.mean(axis=0)
    ms_res = ((centred - cell[:, None]) ** 2).sum() / (n * (k - 1) * (a - 1))
    ms_int = k * (inter ** 2).sum() / ((n - 1) * (a - 1))
    ms_main = n * k * ((cell.mean(axis=0) - cell.mean()) ** 2).sum() / (a - 1)
    dev = centred - cell.mean(axis=0)
    out = {"states": n, "seeds": k, "actions": a,
           "interaction_F": ms_int / ms_res, "interaction_p": float(stats.f.sf(ms_int / ms_res, (n - 1) * (a - 1), n * (k - 1) * (a - 1))),
           "main_F": ms_main / ms_res, "main_p": float(stats.f.sf(ms_main / ms_res, a - 1, n * (k - 1) * (a - 1))),
           "noise_sd": float(np.sqrt(ms_res)), "interaction_sd": float(np.sqrt(max(0.0, (ms_int - ms_res) / k))),
           "seed_correlation": float(np.corrcoef(dev[:, 0].ravel(), dev[:, 1].ravel())[0, 1])}
    if k != 2:
        return out
    means = scores.mean(axis=1)
    others = lambda s: np.arange(n) != s  # noqa: E731
    rules = {"own state (other seed)": lambda s, j: scores[s, j].argmax(),
             "best fixed (other states)": lambda s, j: means[others(s)].mean(axis=0).argmax()}
    emb = np.concatenate([e / np.linalg.norm(e, axis=1, keepdims=True) for e in (data["text_emb"], data["image_emb"])], 1)
    sim = emb @ emb.T
    for nn in (1, 3, 5, 10):
        rules[f"{nn} nearest states"] = lambda s, j, nn=nn: means[[o for o in np.argsort(-sim[s]) if o != s][:nn]].mean(axis=0).argmax()
    if prompts:
        rows = {r["prompt_id"]: r for r in map(json.loads, Path(prompts).read_text().splitlines())}
        for key in ("emotion", "identity_id"):
            group = np.array([rows[str(i)].get(key) for i in data["prompt_ids"]])
            rules[f"per {key}"] = lambda s, j, g=group: means[(g == g[s]) & others(s)].mean(axis=0).argmax() \
                if ((g == g[s]) & others(s)).any() else means[others(s)].mean(axis=0).argmax()
    out["cross_fitted"] = {name: float(np.mean([scores[s, 1 - j, rule(s, j)] for s in range(n) for j in range(2)]))
                           for name, rule in rules.items()}
    out["in_sample_state_best"] = float(means.max(axis=1).mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["table", "learn", "design", "effects"])
    parser.add_argument("--config", default=str(ROOT / "configs" / "local.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--table", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="table: one number, the generation seeds per state; learn: the training seeds")
    parser.add_argument("--validation", type=int, default=16, help="learn: validation states taken from the table")
    parser.add_argument("--max-states", type=int, default=None, help="table: a seeded subset of the training states")
    parser.add_argument("--design", nargs="+", default=["16x1", "8x2", "8x3", "16x2", "16x4"],
                        help="design: evaluation sizes STATESxSEEDS")
    parser.add_argument("--policy-rank", type=int, default=0,
                        help="design: the state-blind policy plays the table's N-th best action (0: the best)")
    parser.add_argument("--draws", type=int, default=2000, help="design: simulated evaluations per size")
    parser.add_argument("--prompts", type=Path, help="effects: prompts.jsonl (per-emotion / identity rules)")
    args = parser.parse_args()
    if args.what == "effects":
        print(json.dumps(action_effects(args.table, args.prompts), indent=1))
        return
    if args.what == "design":
        for size in args.design:
            n, k = (int(x) for x in size.split("x"))
            print(json.dumps(evaluation_design(args.table, n, k, args.policy_rank, args.draws)))
        return

    import ray

    from argen_ray.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.what == "table":
        build_table(cfg, args.seeds[0], args.max_states)
        return
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    runs = [learn(cfg, args.table, s, args.validation) for s in args.seeds]
    for run in runs:
        print(json.dumps(run))
    frac = [r["policy"] / r["oracle"] for r in runs]
    print(f"settings {args.overrides}: policy/oracle {np.mean(frac):.4f} (min {min(frac):.4f}); "
          f"policy/expected-best {np.mean([r['policy'] / r['expected_best'] for r in runs]):.4f}; policy >= best fixed "
          f"in {sum(r['policy'] >= r['best_fixed'] - 1e-9 for r in runs)}/{len(runs)} seeds")


if __name__ == "__main__":
    main()
