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
   skips one; every candidate (its group, prompt, seed, action, reward components, score, NFE
   and the group rule's reward) goes to `candidates.jsonl` the same way;
5. exports `policy/policy.pt` (see `load_policy`), evaluates the argmax policy on the held-out
   states x `train.eval_seeds` seeds against every action (`argen_ray/ard/evaluation.py`), and
   logs the reward curve plot and the evaluation.

Layout under `<run_dir>/policy/`: `checkpoints/iter_000005/` (RLlib checkpoint + policy.pt +
argen_state.json), `policy.pt`, `history.jsonl` (one line per iteration), `candidates.jsonl`
(one line per candidate video), `state.json`
(latest checkpoint, MLflow run id), `reward_curve.png`, `eval.json`.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from argen_ray.ard.env import CANDIDATE_FIELDS, GROUP_TIMINGS, ARGenEnv, CandidateEvaluator
from argen_ray.ard.evaluation import EvalResult, evaluate_policy, evaluation_baselines
from argen_ray.ard.policy import HEADS, POLICY_FILE, PolicyHandle, export_policy
from argen_ray.ard.states import StateSet, build_state_encoder, load_states
from argen_ray.config import Config
from argen_ray.config.train import TrainConfig
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
                 states_cache: str | os.PathLike | None = None, fresh: bool = False):
        self.cfg = cfg
        self.fresh = fresh  # start over even where the checkpoints were made with this config
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

    @cached_property
    def training_fingerprint(self) -> str:
        """What the checkpoints' training depended on: the seed, the generator, reward and training
        settings (placement and evaluation fields aside) and the prompts (fixed for the run)."""
        # Raising `iterations` continues the same training (its entropy schedule stretches from there).
        train = {k: v for k, v in self.cfg.train.result_settings().items()
                 if k not in TrainConfig.EVALUATION and k != "iterations"}
        return self.cfg.settings_digest("seed", "generator", "reward", train=train,
                                        prompts=hashlib.sha256(self.prompts_path.read_bytes()).hexdigest())

    def restore(self) -> int:
        """Resume from the latest checkpoint; returns the iterations already done (0 if none).
        Checkpoints made under other training settings or prompts (or all, with `fresh`) are moved
        aside to `checkpoints.replaced-<time>/`, never resumed from, and training starts over."""
        found = self.latest_checkpoint()
        if found is None:
            return 0
        path, state = found
        if self.fresh or state.get("fingerprint") != self.training_fingerprint:
            aside = self.policy_dir / f"checkpoints.replaced-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
            os.rename(self.checkpoint_dir, aside)
            why = "asked to start over" if self.fresh else "made with other training settings or prompts"
            print(f"[argen-ray] the policy checkpoints in {self.checkpoint_dir} were {why}: moved to {aside}; "
                  f"training starts over")
            return 0
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
                                                    "time": time.time(), "fingerprint": self.training_fingerprint})
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
        candidate_store = JsonlStore(self.policy_dir / "candidates.jsonl", key="candidate_id")
        candidate_store.retain(lambda c: c["iteration"] <= start)
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
                candidate_store.extend([{"candidate_id": f"{iteration}.{n}", "iteration": iteration, **row}
                                        for n, row in enumerate(self.algo.candidate_rows)])
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
                                              baselines=evaluation_baselines(self.evaluator.action_space,
                                                                             cfg.train.ti2v_zero_resample))
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
