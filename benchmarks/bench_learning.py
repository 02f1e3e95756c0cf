"""Does the learning rule reach the optimum? (issue 14, item 2) — on the real scores of a run.

1. `table`: scores every action of the action space on every state of a run's prompts.jsonl
   with the run's generator and reward scorers (through `CandidateEvaluator`, as training does)
   and saves the (states x actions) table. On the local preset's warp backend a clip depends
   only on the state and the action (the seed is carried for traceability), so the table IS the
   environment's reward function.
2. `learn`: trains `GroupReinforce` (the same algorithm, env base class, learner and connector)
   on that table with given settings, for several seeds, and reports on the run's held-out
   states the greedy policy's score against the per-state best (oracle), the best single fixed
   action and random — with the same train/held-out split as `argen-ray train`.

    .venv/bin/python benchmarks/bench_learning.py table --config configs/local.yaml --set run_dir=DIR
    .venv/bin/python benchmarks/bench_learning.py learn --table DIR/policy/action_table.npz \\
        --seeds 0 1 2 --set train.group_baseline=false --set train.lr=0.003
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


def build_table(cfg) -> Path:
    import itertools

    from tqdm import tqdm

    from argen_ray.ard.env import CandidateEvaluator
    from argen_ray.ard.states import build_state_encoder, load_states
    from argen_ray.io import atomic_path
    from argen_ray.runtime import init_ray

    init_ray(cfg)
    evaluator = CandidateEvaluator(cfg)
    states = load_states(cfg, build_state_encoder(cfg, evaluator.generators))
    every = np.array(list(itertools.product(*(range(int(n)) for n in evaluator.action_space.nvec))), np.int64)
    scores = np.zeros((len(states), len(every)))
    t0 = time.perf_counter()
    for i in tqdm(range(len(states)), desc="scoring every action", unit="state"):
        scores[i] = [r["score"] for r in evaluator.evaluate(states, [i] * len(every), every, seed=i)]
    target = cfg.path("policy", "action_table.npz")
    with atomic_path(target) as tmp:
        np.savez(tmp, scores=scores, actions=every, text_emb=states.text_emb, image_emb=states.image_emb,
                 prompt_ids=np.array([r["prompt_id"] for r in states.rows]))
    print(f"{len(states)} states x {len(every)} actions in {time.perf_counter() - t0:.0f} s -> {target}")
    evaluator.shutdown()
    return target


class ScoreTableEnv(GroupVectorEnv):
    """The environment of a saved score table: states are its rows, a candidate's score is looked up."""

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
                         seed=config["seed"])

    def observe(self, state):
        i = self.rows[state]
        return {"text_emb": self.text[i], "image_emb": self.image[i]}

    def score_group(self, state, actions, seed):
        i = self.rows[state]
        return [{"score": float(self.scores[i, self.index[tuple(a)]])} for a in np.asarray(actions).tolist()]


def learn(cfg, table_path: Path, seed: int) -> dict:
    from argen_ray.ard.learner import GroupReinforceConfig
    from argen_ray.ard.policy import PolicyHandle
    from argen_ray.ard.training import entropy_schedule

    data = dict(np.load(table_path))
    n = len(data["scores"])
    order = np.random.default_rng(cfg.seed).permutation(n)  # the split of StateSet.split
    held, train = sorted(order[:cfg.train.eval_states]), sorted(order[cfg.train.eval_states:])
    t, r = cfg.train, cfg.reward
    algo = (GroupReinforceConfig()
            .environment(ScoreTableEnv, env_config={"table": data, "rows": train, "top_k": r.top_k,
                                                    "penalty": r.penalty, "baseline": t.group_baseline, "seed": seed})
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
    scores = data["scores"][held]
    policy = np.array([scores[k, index[tuple(a)]] for k, a in enumerate(greedy.tolist())])
    fixed = int(scores.mean(axis=0).argmax())
    return {"seed": seed, "policy": float(policy.mean()), "oracle": float(scores.max(axis=1).mean()),
            "best_fixed": float(scores[:, fixed].mean()), "best_fixed_action": data["actions"][fixed].tolist(),
            "random": float(scores.mean()), "distinct_actions": len({tuple(a) for a in greedy.tolist()}),
            "best_in_states": int((policy >= scores.max(axis=1) - 1e-12).sum()), "held_out": len(held)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["table", "learn"])
    parser.add_argument("--config", default=str(ROOT / "configs" / "local.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--table", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    import ray

    from argen_ray.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.what == "table":
        build_table(cfg)
        return
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    runs = [learn(cfg, args.table, s) for s in args.seeds]
    for run in runs:
        print(json.dumps(run))
    frac = [r["policy"] / r["oracle"] for r in runs]
    print(f"settings {args.overrides}: policy/oracle {np.mean(frac):.4f} (min {min(frac):.4f}); policy >= best fixed "
          f"in {sum(r['policy'] >= r['best_fixed'] - 1e-9 for r in runs)}/{len(runs)} seeds")


if __name__ == "__main__":
    main()
