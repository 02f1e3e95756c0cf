"""Policy training on Ray: build the RLlib algorithm, train with checkpoints and MLflow, evaluate.

`PolicyTrainer(cfg).run()`:
1. reads `<run_dir>/prompts/prompts.jsonl`, starts (or joins) Ray, places the generator actors
   (placement groups on GPUs; GPU count 0 on a CPU machine) and the scorer pool;
2. embeds the states once (cached), splits off `train.eval_states` held-out states;
3. builds `GroupReinforce` (ARGenEnv + PolicyRLModule + GroupReinforceLearner) and, when a
   checkpoint exists under `<run_dir>/policy/checkpoints/`, resumes from the latest one
   (the iteration counter continues, and so does the same MLflow run);
4. trains `train.iterations` iterations with a progress bar, logging every reward component,
   the score, each head's entropy, the mean chosen T, NFE per video, videos rescored after a
   scorer crash and wall time, checkpointing every `train.checkpoint_every` iterations
   (atomically: a checkpoint folder appears complete or not at all). Each iteration goes to
   `history.jsonl` as it ends and to MLflow once a checkpoint holds it, so a killed run that
   resumes redoes the iterations after its checkpoint and neither record lists one twice or
   skips one;
5. exports `policy/policy.pt` (see `load_policy`), evaluates the argmax policy against a
   random policy on the held-out states, and logs the reward curve plot and the evaluation.

Layout under `<run_dir>/policy/`: `checkpoints/iter_000005/` (RLlib checkpoint + policy.pt +
argen_state.json), `policy.pt`, `history.jsonl` (one line per iteration), `state.json`
(latest checkpoint, MLflow run id), `reward_curve.png`, `eval.json`.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from argen_ray.ard.env import CANDIDATE_FIELDS, GROUP_TIMINGS, ARGenEnv, CandidateEvaluator, field_means
from argen_ray.ard.policy import HEADS, POLICY_FILE, PolicyHandle, export_policy
from argen_ray.ard.states import StateSet, build_state_encoder, load_states
from argen_ray.config import Config
from argen_ray.errors import ArgenError
from argen_ray.io import JsonlStore, atomic_write_json

CHECKPOINT_MARKER = "argen_state.json"
LEARNER_METRICS = tuple(f"entropy_{h}" for h in HEADS) + ("entropy_coeff", "policy_loss", "advantage_mean")


class TrainingError(ArgenError):
    """Training cannot start or continue (missing inputs, a broken checkpoint)."""


def tracking_uri(cfg: Config) -> str:
    """The MLflow tracking URI: the configured one, else SQLite inside the run directory."""
    if cfg.tracking.tracking_uri:
        return cfg.tracking.tracking_uri
    return f"sqlite:///{Path(cfg.run_dir).resolve() / 'mlflow.db'}"


def ensure_experiment(cfg: Config) -> str:
    """Point MLflow at the run's tracking URI and return the experiment id, creating the
    experiment with its artifacts inside the run directory when tracking is the local default
    (MLflow would otherwise put them under ./mlruns of whatever the working directory is)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(cfg))
    found = mlflow.get_experiment_by_name(cfg.tracking.experiment)
    if found is not None:
        return found.experiment_id
    location = None if cfg.tracking.tracking_uri else (Path(cfg.run_dir).resolve() / "mlartifacts").as_uri()
    return mlflow.create_experiment(cfg.tracking.experiment, artifact_location=location)


def check_local_cpus(cfg: Config) -> None:
    """On a Ray started by this process, fail fast when one run's actors cannot all be placed
    (a cluster may autoscale, and a Tune trial's bundles are already reserved: not checked)."""
    import ray
    from ray.util.placement_group import get_current_placement_group

    if cfg.ray.address or os.environ.get("RAY_ADDRESS") or get_current_placement_group() is not None:
        return
    g, r, t = cfg.generator, cfg.reward, cfg.train
    need = {"generator": g.num_actors * g.num_cpus, "scorers": r.num_scorers * r.scorer_num_cpus,
            "env runners": t.num_env_runners * t.env_runner_num_cpus}
    have = ray.cluster_resources().get("CPU", 0.0)
    if sum(need.values()) > have + 1e-9:
        raise TrainingError(
            f"the actors need {sum(need.values()):g} logical CPUs ({', '.join(f'{k} {v:g}' for k, v in need.items())}) "
            f"but the local Ray has {have:g}: raise ray.num_cpus (logical CPUs may exceed the cores) or lower "
            f"generator.num_cpus / reward.scorer_num_cpus / reward.num_scorers")


def build_algorithm_config(cfg: Config, states: StateSet):
    """The RLlib `GroupReinforceConfig` of a run: env, module, learner and resources from `cfg`."""
    from argen_ray.ard.learner import GroupReinforceConfig

    t, r = cfg.train, cfg.reward
    return (GroupReinforceConfig()
            .environment(ARGenEnv, env_config={"cfg": cfg, "states": states})
            .env_runners(num_env_runners=t.num_env_runners, num_envs_per_env_runner=r.group_size,
                         gym_env_vectorize_mode="vector_entry_point", num_cpus_per_env_runner=t.env_runner_num_cpus)
            .learners(num_learners=t.num_learners, num_gpus_per_learner=t.learner_num_gpus)
            .training(groups_per_batch=t.batch_size, group_size=r.group_size, entropy_coeff=entropy_schedule(cfg),
                      lr=t.lr, train_batch_size_per_learner=math.ceil(t.batch_size * r.group_size
                                                                      / max(1, t.num_learners)))
            .rl_module(model_config={"embed_dim": t.embed_dim, "num_heads": t.num_heads})
            .fault_tolerance(restart_failed_env_runners=True)
            .debugging(seed=cfg.seed))


def entropy_schedule(cfg: Config) -> float | list[list[float]]:
    """c_H: `train.entropy_coeff`, annealed linearly to `train.entropy_coeff_final` over the run's
    `train.iterations` (RLlib counts env steps: B x G per iteration)."""
    t = cfg.train
    if t.entropy_coeff_final is None or t.entropy_coeff_final == t.entropy_coeff:
        return t.entropy_coeff
    return [[0, t.entropy_coeff], [t.iterations * t.batch_size * cfg.reward.group_size, t.entropy_coeff_final]]


def iteration_metrics(result: dict, wall_s: float) -> dict[str, float]:
    """The per-iteration numbers a person follows: rewards, score, entropies, T, NFE, time."""
    argen = result.get("argen", {})
    learner = result.get("learners", {}).get("default_policy", {})
    metrics = {name: float(argen[name]) for name in CANDIDATE_FIELDS + GROUP_TIMINGS if name in argen}
    if "rescored" in metrics:  # a per-group count averaged over the groups: the iteration's total
        metrics["rescored"] = float(round(metrics["rescored"] * float(argen.get("groups", 1))))
    metrics.update({name: float(learner[name]) for name in LEARNER_METRICS if name in learner})
    metrics["wall_s"] = wall_s
    return metrics


@dataclass
class EvalResult:
    """Held-out comparison of the argmax policy with random actions and, where the action space
    is small enough (`train.oracle_max_actions`), with every action: the per-state best (the
    oracle) and the best single fixed action. Each row holds the mean score, reward components,
    NFE and action values over the held-out states."""

    policy: dict[str, float]
    random: dict[str, float]
    objective: float
    num_states: int
    per_state: list[dict] = field(default_factory=list)
    oracle: dict[str, float] | None = None       # the best action of each state
    best_fixed: dict[str, float] | None = None   # the one action with the best mean over the states
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)  # named settings, e.g. constant w
    num_actions: int | None = None               # actions scored per state (None: sampled evaluation)
    actions: list[dict] | None = None            # the order of each state's "scores" in `per_state`

    @property
    def regret(self) -> float | None:
        """Oracle score - policy score (>= 0)."""
        return None if self.oracle is None else self.oracle["score"] - self.policy["score"]

    @property
    def oracle_fraction(self) -> float | None:
        """Policy score / oracle score."""
        return None if self.oracle is None else self.policy["score"] / self.oracle["score"]

    def gap(self, key: str) -> tuple[float, float] | None:
        """Policy minus a per-state row (`best_score`: the oracle, `fixed_score`: the best fixed
        action) as (mean, standard error over the held-out states). The standard error says how
        much of a gap the states' own scatter explains: on the local preset the alpha/beta
        actions differ by less than it (docs/training.md)."""
        if self.oracle is None or not self.per_state:
            return None
        diff = np.array([s["policy_score"] - s[key] for s in self.per_state])
        return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")

    def rows(self) -> dict[str, dict[str, float]]:
        """The named rows of the comparison table (policy, oracle, best fixed, baselines, random)."""
        rows = {"policy": self.policy}
        if self.oracle is not None:
            rows.update({"oracle (per-state best)": self.oracle, "best fixed action": self.best_fixed})
        return {**rows, **self.baselines, "random": self.random}

    def flat_metrics(self) -> dict[str, float]:
        """MLflow / Tune metrics: eval_<row>_<field>, regret, oracle_fraction and the objective."""
        rows = {"policy": self.policy, "random": self.random, "oracle": self.oracle, "best_fixed": self.best_fixed,
                **self.baselines}
        out = {f"eval_{label}_{k}": float(v) for label, values in rows.items() for k, v in (values or {}).items()}
        if self.oracle is not None:
            out.update({"eval_regret": self.regret, "eval_oracle_fraction": self.oracle_fraction})
            for name, key in (("oracle", "best_score"), ("best_fixed", "fixed_score")):
                mean, se = self.gap(key)
                out.update({f"eval_policy_minus_{name}": mean, f"eval_policy_minus_{name}_se": se})
        out["objective"] = self.objective
        return out

    def to_json(self) -> dict:
        gaps = {f"policy_minus_{name}": dict(zip(("mean", "se"), self.gap(key)))
                for name, key in (("oracle", "best_score"), ("best_fixed", "fixed_score"))} if self.oracle else {}
        return {"policy": self.policy, "random": self.random, "oracle": self.oracle, "best_fixed": self.best_fixed,
                "baselines": self.baselines, "regret": self.regret, "oracle_fraction": self.oracle_fraction, **gaps,
                "num_actions": self.num_actions, "actions": self.actions, "objective": self.objective, "num_states": self.num_states,
                "per_state": self.per_state}


def _means(rows: list[dict]) -> dict[str, float]:
    return field_means(rows, CANDIDATE_FIELDS)


def _action_values(row: dict) -> dict:
    return {k: row[k] for k in ("steps", "alpha", "beta")}


def evaluation_baselines(space) -> dict:
    """Named generation settings outside the policy's action space, scored on every held-out
    state beside the policy (name -> `GenerationParams`): TI2V-Zero's constant guidance w = 9.0 at
    T = 10 (its face setting; resampling as configured, the same r as every other row)."""
    from argen_ray.ard.guidance import TI2V_ZERO_GUIDANCE, TI2V_ZERO_STEPS

    # the name doubles as an MLflow metric key (eval_<name>_<field>): letters, digits, - . space only
    return {f"ti2v-zero T{TI2V_ZERO_STEPS} constant w{TI2V_ZERO_GUIDANCE:g}": space.constant()}


def evaluate_policy(cfg: Config, policy: PolicyHandle, states: StateSet, evaluator: CandidateEvaluator,
                    seed: int | None = None, baselines: dict | None = None) -> EvalResult:
    """Score the argmax policy on `states`, against random actions and, when the action space has
    at most `train.oracle_max_actions` actions, against every action (oracle, best fixed action).

    Every candidate of a state shares that state's generation seed. With the full table the
    random row is exact (the mean over all actions); otherwise it is G random actions per state.
    `baselines` (name -> `GenerationParams`) are scored on every state too.
    """
    from tqdm.auto import tqdm

    if len(states) == 0:
        raise TrainingError("no held-out states to evaluate (train.eval_states is 0)")
    rng = np.random.default_rng(cfg.seed + 7919 if seed is None else seed)
    seeds = rng.integers(2 ** 31 - 1, size=len(states))
    greedy, _ = policy.act(states.text_emb, states.image_emb)
    nvec = evaluator.action_space.nvec
    num_actions = int(np.prod(nvec))
    oracle = num_actions <= cfg.train.oracle_max_actions
    every = np.array(list(itertools.product(*(range(int(n)) for n in nvec))), np.int64) if oracle else None
    baselines = dict(baselines or {})
    policy_rows, random_rows, best_rows, per_state, table = [], [], [], [], []
    baseline_rows: dict[str, list] = {name: [] for name in baselines}
    for i in tqdm(range(len(states)), desc="held-out evaluation", unit="state", disable=not cfg.train.progress):
        if oracle:
            rows = evaluator.evaluate(states, [i] * len(every), every, int(seeds[i]))
            scores = np.array([r["score"] for r in rows])
            mine = rows[int(np.flatnonzero((every == greedy[i]).all(axis=1))[0])]
            best = rows[int(scores.argmax())]
            table.append(rows)
            random_rows.extend(rows)
            best_rows.append(best)
            entry = {"best_action": _action_values(best), "best_score": best["score"],
                     "regret": best["score"] - mine["score"], "random_score": float(scores.mean()),
                     "scores": scores.tolist()}  # every action's score, in `EvalResult.actions` order
        else:
            draws = np.stack([rng.integers(n, size=cfg.reward.group_size) for n in nvec], axis=-1)
            rows = evaluator.evaluate(states, [i] * (1 + len(draws)), np.concatenate([greedy[i:i + 1], draws]),
                                      int(seeds[i]))
            mine = rows[0]
            random_rows.extend(rows[1:])
            entry = {"random_score": float(np.mean([r["score"] for r in rows[1:]]))}
        policy_rows.append(mine)
        for name, params in baselines.items():
            baseline_rows[name].append(evaluator.evaluate_params(states, [i], [params], int(seeds[i]))[0])
        per_state.append({"prompt_id": states.rows[i]["prompt_id"], "action": _action_values(mine),
                          "policy_score": mine["score"], **entry,
                          **{f"{name}_score": rows_[-1]["score"] for name, rows_ in baseline_rows.items()}})
    pol = _means(policy_rows)
    result = EvalResult(pol, _means(random_rows), objective_score(cfg, pol),
                        len(states), per_state, baselines={k: _means(v) for k, v in baseline_rows.items()})
    if oracle:
        fixed = int(np.mean([[r["score"] for r in rows] for rows in table], axis=0).argmax())
        result.oracle, result.best_fixed = _means(best_rows), _means([rows[fixed] for rows in table])
        result.num_actions = num_actions
        result.actions = [_action_values(r) for r in table[0]]
        for entry, rows in zip(per_state, table):
            entry["fixed_score"] = rows[fixed]["score"]
    return result


def objective_score(cfg: Config, means: dict[str, float]) -> float:
    """The held-out objective: the mean `train.objective` component of the policy's clips (R_c,
    expression validity, by default: the same yardstick whatever the reward weights) minus
    `train.nfe_cost` per NFE."""
    name = cfg.train.objective
    if name not in means:
        raise TrainingError(f"train.objective={name} but this run did not compute {name} "
                            f"(reward.w_{name[2:]} = 0 switches it off)")
    return float(means[name]) - cfg.train.nfe_cost * float(means["nfe"])


def plot_reward_curve(history: list[dict], target: Path) -> Path:
    """Score and reward components per iteration, with the mean chosen T on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from argen_ray.io import atomic_path

    its = [h["iteration"] for h in history]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, style in (("score", "k-"), ("r_t", "C0--"), ("r_q", "C1--"), ("r_f", "C2--"), ("r_e", "C3--"), ("r_c", "C5--")):
        if any(name in h for h in history):
            ax.plot(its, [h.get(name, np.nan) for h in history], style, label=name, lw=2 if name == "score" else 1)
    ax.set_xlabel("iteration")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("mean reward of sampled candidates")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if any("steps" in h for h in history):
        ax2 = ax.twinx()
        handles += ax2.plot(its, [h.get("steps", np.nan) for h in history], "C4:", label="mean T")
        labels.append("mean T")
        ax2.set_ylabel("mean chosen steps T", color="C4")
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=len(labels), fontsize=8,
              frameon=False)
    ax.set_title("ARD policy training")
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return target


@dataclass
class TrainSummary:
    iterations: int
    resumed_from: int
    checkpoint: Path | None
    policy_path: Path
    eval: EvalResult | None
    mlflow_run_id: str | None
    history: list[dict]


class PolicyTrainer:
    """One training run of ARD's policy; rerunning with the same config resumes it."""

    def __init__(self, cfg: Config, prompts_path: str | os.PathLike | None = None,
                 states_cache: str | os.PathLike | None = None):
        self.cfg = cfg
        self.states_cache = Path(states_cache) if states_cache else None
        self.prompts_path = Path(prompts_path or cfg.path("prompts", "prompts.jsonl"))
        if not self.prompts_path.is_file():
            raise TrainingError(f"{self.prompts_path} does not exist: run `argen-ray prompts` first (same --config)")
        self.policy_dir = cfg.path("policy")
        self.checkpoint_dir = self.policy_dir / "checkpoints"
        self.algo = None
        self.evaluator: CandidateEvaluator | None = None
        self.train_states: StateSet | None = None
        self.eval_states: StateSet | None = None
        self._mlflow_run_id: str | None = None
        self._mlflow_logged: set[tuple[str, int]] = set()  # (metric, iteration) already in MLflow

    # -- 1. actors and states -----------------------------------------------------------------
    def setup(self, progress: bool = True) -> None:
        """Join/start Ray, place the actors, embed the states, and build (or restore) the algorithm."""
        from argen_ray.runtime import init_ray

        init_ray(self.cfg)
        check_local_cpus(self.cfg)
        self.evaluator = CandidateEvaluator(self.cfg)
        encoder = build_state_encoder(self.cfg, self.evaluator.generators)
        states = load_states(self.cfg, encoder, self.prompts_path, self.states_cache, progress=progress)
        self.train_states, self.eval_states = states.split(self.cfg.train.eval_states, self.cfg.seed)
        self.evaluator.scorers  # start the scorer pool before the env runners look it up
        self.algo = build_algorithm_config(self.cfg, self.train_states).build_algo()

    # -- 2. checkpoints -----------------------------------------------------------------------
    def latest_checkpoint(self) -> tuple[Path, dict] | None:
        """The newest complete checkpoint (its marker file is written last) and its state."""
        if not self.checkpoint_dir.is_dir():
            return None
        done = sorted(p for p in self.checkpoint_dir.glob("iter_*") if (p / CHECKPOINT_MARKER).is_file())
        if not done:
            return None
        try:
            return done[-1], json.loads((done[-1] / CHECKPOINT_MARKER).read_text())
        except json.JSONDecodeError as exc:
            raise TrainingError(f"{done[-1] / CHECKPOINT_MARKER}: unreadable ({exc.msg}); delete that folder") from None

    def restore(self) -> int:
        """Resume from the latest checkpoint; returns the iterations already done (0 if none)."""
        found = self.latest_checkpoint()
        if found is None:
            return 0
        path, state = found
        try:
            self.algo.restore_from_path(str(path.resolve()))
        except Exception as exc:
            raise TrainingError(f"cannot resume from {path}: {type(exc).__name__}: {exc} "
                                f"(the config changed shapes? use a new run_dir)") from None
        self._mlflow_run_id = state.get("mlflow_run_id")
        return int(state["iteration"])

    def save_checkpoint(self, iteration: int) -> Path:
        """Write `checkpoints/iter_<n>/` atomically, export policy.pt, and prune old ones."""
        final = self.checkpoint_dir / f"iter_{iteration:06d}"
        tmp = self.checkpoint_dir / f".tmp_iter_{iteration:06d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.algo.save_to_path(str(tmp.resolve()))
        self.export(tmp / POLICY_FILE, iteration)
        atomic_write_json(tmp / CHECKPOINT_MARKER, {"iteration": iteration, "mlflow_run_id": self._mlflow_run_id,
                                                    "time": time.time()})
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        shutil.copy2(final / POLICY_FILE, self.policy_dir / f".{POLICY_FILE}.tmp")
        os.replace(self.policy_dir / f".{POLICY_FILE}.tmp", self.policy_dir / POLICY_FILE)
        atomic_write_json(self.policy_dir / "state.json", {"iteration": iteration, "checkpoint": str(final),
                                                           "mlflow_run_id": self._mlflow_run_id})
        done = sorted(p for p in self.checkpoint_dir.glob("iter_*") if (p / CHECKPOINT_MARKER).is_file())
        for old in done[:-self.cfg.train.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def policy_handle(self, iteration: int | None = None) -> PolicyHandle:
        module = self.algo.get_module()
        cfg = self.cfg
        meta = {"action_values": {"steps": list(cfg.generator.action_space.steps),
                                  "alpha": list(cfg.generator.action_space.alpha),
                                  "beta": list(cfg.generator.action_space.beta)},
                "state_encoder": cfg.train.state_encoder, "encoder_id": self.train_states.encoder_id,
                "generator_backend": cfg.generator.backend, "generator_model": cfg.generator.model,
                "iteration": iteration, "reward_weights": {k: getattr(cfg.reward, k) for k in ("w_t", "w_q", "w_f", "w_e", "w_c")}}
        module.net.eval()
        return PolicyHandle(module.net, meta, "training")

    def export(self, target: Path, iteration: int) -> Path:
        handle = self.policy_handle(iteration)
        return export_policy(handle.network, target, handle.meta)

    # -- 3. MLflow ----------------------------------------------------------------------------
    def _start_mlflow(self):
        if not self.cfg.tracking.enabled:
            return None
        import mlflow
        import mlflow.tracking

        from argen_ray.config.root import config_to_yaml

        mlflow.set_experiment(experiment_id=ensure_experiment(self.cfg))
        nested = mlflow.active_run() is not None  # a child of `argen-ray run`'s parent run
        if self._mlflow_run_id:
            run = mlflow.start_run(run_id=self._mlflow_run_id, nested=nested)
        else:
            run = mlflow.start_run(run_name=f"train-{Path(self.cfg.run_dir).name}", nested=nested)
            self._mlflow_run_id = run.info.run_id
            flat = {**{f"train.{k}": v for k, v in self.cfg.train.model_dump().items()},
                    **{f"reward.{k}": v for k, v in self.cfg.reward.model_dump().items() if not isinstance(v, dict)},
                    "generator.backend": self.cfg.generator.backend, "generator.model": self.cfg.generator.model,
                    "generator.action_space": json.dumps(self.cfg.generator.action_space.model_dump())}
            mlflow.log_params(flat)
            mlflow.log_text(config_to_yaml(self.cfg), "config.resolved.yaml")
        client = mlflow.tracking.MlflowClient()
        self._mlflow_logged = {(key, m.step) for key in client.get_run(run.info.run_id).data.metrics
                               for m in client.get_metric_history(run.info.run_id, key)}
        return mlflow

    def _log_history(self, mlflow, history: JsonlStore, upto: int) -> None:
        """Log every (metric, iteration) of `history` up to `upto` that MLflow lacks, in batches.

        Called after each checkpoint (and once on resume), so MLflow only ever holds iterations a
        checkpoint holds: a rerun redoes the later ones, and an iteration checkpointed but not yet
        logged when the run was killed is logged on resume."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        new = [Metric(key, float(value), now, int(h["iteration"]))
               for h in sorted(history, key=lambda h: h["iteration"]) if h["iteration"] <= upto
               for key, value in h.items()
               if key != "iteration" and (key, int(h["iteration"])) not in self._mlflow_logged]
        client = mlflow.tracking.MlflowClient()
        for i in range(0, len(new), 1000):  # MLflow's batch limit
            client.log_batch(self._mlflow_run_id, metrics=new[i:i + 1000])
        self._mlflow_logged.update((m.key, m.step) for m in new)

    # -- 4. the run ---------------------------------------------------------------------------
    def run(self, on_iteration: Callable[[int, dict], None] | None = None, evaluate: bool = True) -> TrainSummary:
        """Train to `train.iterations` (resuming), export, evaluate, and log everything."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        if self.algo is None:
            self.setup(progress=cfg.train.progress)
        start = self.restore()
        history_store = JsonlStore(self.policy_dir / "history.jsonl", key="iteration")
        history_store.retain(lambda h: h["iteration"] <= start)  # later ones are redone now
        mlflow = self._start_mlflow()
        checkpoint = self.latest_checkpoint()[0] if start else None
        try:
            if mlflow:
                self._log_history(mlflow, history_store, start)
            bar = tqdm(total=cfg.train.iterations, initial=start, desc="train", unit="it", disable=not cfg.train.progress)
            for iteration in range(start + 1, cfg.train.iterations + 1):
                t0 = time.perf_counter()
                result = self.algo.train()
                metrics = iteration_metrics(result, time.perf_counter() - t0)
                history_store.append({"iteration": iteration, **metrics})
                if metrics.get("rescored"):
                    tqdm.write(f"[argen-ray] iteration {iteration}: {metrics['rescored']:g} videos rescored after a "
                               "scorer actor crashed")
                if on_iteration:
                    on_iteration(iteration, metrics)
                if iteration % cfg.train.checkpoint_every == 0 or iteration == cfg.train.iterations:
                    checkpoint = self.save_checkpoint(iteration)
                    if mlflow:
                        self._log_history(mlflow, history_store, iteration)
                bar.set_postfix(score=f"{metrics.get('score', float('nan')):.3f}",
                                T=f"{metrics.get('steps', float('nan')):.1f}")
                bar.update(1)
            bar.close()
            if checkpoint is None:  # nothing new to train and nothing saved before: save now
                checkpoint = self.save_checkpoint(cfg.train.iterations)
            history = sorted((h for h in history_store if h["iteration"] <= cfg.train.iterations),
                             key=lambda h: h["iteration"])
            curve = plot_reward_curve(history, self.policy_dir / "reward_curve.png") if history else None
            result_eval = None
            if evaluate and len(self.eval_states):
                result_eval = evaluate_policy(cfg, self.policy_handle(cfg.train.iterations), self.eval_states,
                                              self.evaluator,
                                              baselines=evaluation_baselines(self.evaluator.action_space))
                atomic_write_json(self.policy_dir / "eval.json", result_eval.to_json())
            if mlflow:
                if curve:
                    mlflow.log_artifact(str(curve))
                mlflow.log_artifact(str(self.policy_dir / POLICY_FILE))
                if result_eval:
                    flat = result_eval.flat_metrics()
                    flat["eval_objective"] = flat.pop("objective")
                    mlflow.log_metrics(flat, step=cfg.train.iterations)
                    mlflow.log_artifact(str(self.policy_dir / "eval.json"))
        finally:
            if mlflow:
                mlflow.end_run()
        return TrainSummary(cfg.train.iterations, start, checkpoint, self.policy_dir / POLICY_FILE, result_eval,
                            self._mlflow_run_id, history)

    def close(self) -> None:
        """Stop the algorithm and release this run's actors and placement group, so a later run
        in the same Ray (another config, another trial) never reuses actors built for this one."""
        if self.algo is not None:
            self.algo.stop()
            self.algo = None
        if self.evaluator is not None:  # the generator pool also releases its placement group
            self.evaluator.shutdown()
