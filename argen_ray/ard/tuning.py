"""Tune sweeps over the policy's reward weights and group settings (`tune_configs/*.yaml`).

A sweep file names a grid over dotted config keys, overrides applied to every trial, and the
metric to optimise. Each trial is one `PolicyTrainer` run in its own run folder and Ray
namespace (its own generator and scorer actors, since the reward weights differ), reporting
every iteration to Tune; its last report carries the held-out objective — generation validity
at the policy's cost: the mean expression validity R_c (DESIGN 2.5; `train.objective`) of the
argmax policy's held-out clips minus `train.nfe_cost` per NFE — and its checkpoint. R_c does not
depend on the reward weights, so trials trained with different weights are judged by the same
yardstick. MLflow's Tune callback records
one MLflow run per trial. The best trial's overrides, metrics and policy are saved beside.

Sweep file:
    name: reward_weights
    metric: objective        # or any reported metric, e.g. eval_policy_score
    mode: max
    max_concurrent_trials: 1
    set: {train.iterations: 6}       # every trial
    grid: {reward.w_t: [0.1, 0.5]}   # the Cartesian product of these
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from argen_ray.config import Config, load_config
from argen_ray.errors import ArgenError
from argen_ray.io import atomic_write_json


class SweepError(ArgenError):
    """A sweep file is missing or malformed, or no trial finished."""


@dataclass
class SweepSpec:
    name: str
    grid: dict[str, list]
    set: dict[str, Any] = field(default_factory=dict)
    metric: str = "objective"
    mode: str = "max"
    max_concurrent_trials: int = 1
    source: str = ""

    def points(self) -> list[dict[str, Any]]:
        """Every grid point as {dotted key: value}."""
        keys = list(self.grid)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(self.grid[k] for k in keys))]


def overrides_of(values: dict[str, Any]) -> list[str]:
    """{dotted key: value} -> `--set` strings (JSON is YAML, so types survive)."""
    return [f"{key}={json.dumps(value)}" for key, value in values.items()]


def load_sweep(path: str | os.PathLike) -> SweepSpec:
    from argen_ray.io import read_yaml_mapping

    path = Path(path)
    raw = read_yaml_mapping(path, "sweep file (see tune_configs/)", SweepError)
    unknown = set(raw) - {"name", "grid", "set", "metric", "mode", "max_concurrent_trials", "description"}
    if unknown:
        raise SweepError(f"{path}: unknown keys {sorted(unknown)}")
    grid = raw.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise SweepError(f"{path}: 'grid' must map dotted config keys to lists of values")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"{path}: grid.{key} must be a non-empty list, got {values!r}")
    if raw.get("mode", "max") not in ("max", "min"):
        raise SweepError(f"{path}: mode must be 'max' or 'min', got {raw['mode']!r}")
    if not isinstance(raw.get("set", {}), dict):
        raise SweepError(f"{path}: 'set' must map dotted config keys to values")
    return SweepSpec(name=str(raw.get("name") or path.stem), grid=grid, set=raw.get("set") or {},
                     metric=str(raw.get("metric", "objective")), mode=raw.get("mode", "max"),
                     max_concurrent_trials=int(raw.get("max_concurrent_trials", 1)), source=str(path))


def _run_trial(params: dict, *, config_path: str | None, overrides: list[str], sweep_dir: str,
               prompts_path: str) -> None:
    """One Tune trial: a full training run, reporting every iteration and, last, the objective."""
    from ray import tune

    from argen_ray.ard.training import PolicyTrainer

    ctx = tune.get_context()
    trial = ctx.get_trial_name()
    cfg = load_config(config_path, overrides + overrides_of(params) + overrides_of({
        "run_dir": str(Path(sweep_dir) / "trials" / trial), "ray.namespace": f"argen-tune-{ctx.get_trial_id()}",
        "tracking.enabled": False, "train.progress": False}))
    # Trials share the sweep run's state-embedding cache: the states are the same for every trial.
    trainer = PolicyTrainer(cfg, prompts_path, states_cache=Path(sweep_dir).parents[1] / "policy")
    last = cfg.train.iterations
    try:
        summary = trainer.run(on_iteration=lambda it, m: tune.report(m) if it < last else None)
        final = dict(summary.history[-1]) if summary.history else {}
        final.pop("iteration", None)
        if summary.eval is not None:
            final.update(summary.eval.flat_metrics())
        tune.report(final, checkpoint=tune.Checkpoint.from_directory(str(summary.checkpoint)))
    finally:
        trainer.close()


@dataclass
class SweepResult:
    best_params: dict
    best_metrics: dict
    best_checkpoint: str | None
    trials: list[dict]
    summary_path: Path


def run_sweep(cfg: Config, spec: SweepSpec, config_path: str | None, overrides: list[str],
              prompts_path: str | os.PathLike | None = None) -> SweepResult:
    """Run the grid with Tune (MLflow callback), then save and return the best trial."""
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    from argen_ray.actors.placement import trial_resources
    from argen_ray.ard.training import check_local_cpus, ensure_experiment, tracking_uri
    from argen_ray.runtime import init_ray

    prompts = Path(prompts_path or cfg.path("prompts", "prompts.jsonl")).resolve()
    if not prompts.is_file():
        raise SweepError(f"{prompts} does not exist: run `argen-ray prompts` first (same --config)")
    base = overrides_of(spec.set) + list(overrides)  # the command line wins over the sweep's `set`
    reference = load_config(config_path, base)
    for point in spec.points():  # every trial's config must validate before anything starts
        try:
            trial = load_config(config_path, base + overrides_of(point))
        except ArgenError as exc:
            raise SweepError(f"{spec.source}: grid point {point}: {exc}") from None
        objective = trial.train.objective
        if objective in ("r_e", "r_c") and getattr(trial.reward, f"w_{objective[2:]}") == 0:
            raise SweepError(f"{spec.source}: grid point {point}: train.objective={objective} needs "
                             f"reward.w_{objective[2:]} > 0 (a component with weight 0 is not computed)")
    sweep_dir = cfg.path("tune", spec.name).resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    init_ray(cfg)
    check_local_cpus(reference)  # else Tune would wait forever for a trial's bundles
    trainable = tune.with_resources(
        tune.with_parameters(_run_trial, config_path=str(Path(config_path).resolve()) if config_path else None,
                             overrides=base, sweep_dir=str(sweep_dir), prompts_path=str(prompts)),
        trial_resources(reference))
    callbacks = []
    if cfg.tracking.enabled:
        ensure_experiment(cfg)
        callbacks.append(MLflowLoggerCallback(tracking_uri=tracking_uri(cfg), experiment_name=cfg.tracking.experiment,
                                              tags={"sweep": spec.name}))
    tuner = tune.Tuner(
        trainable,
        param_space={key: tune.grid_search(values) for key, values in spec.grid.items()},
        # No metric here: only a trial's last report carries the objective (the best is picked below).
        tune_config=tune.TuneConfig(max_concurrent_trials=spec.max_concurrent_trials),
        run_config=tune.RunConfig(name=spec.name, storage_path=str(sweep_dir / "ray_results"), callbacks=callbacks,
                                  verbose=1))
    grid = tuner.fit()
    trials = [{"params": {k: r.config.get(k) for k in spec.grid}, "metrics": {k: v for k, v in (r.metrics or {}).items()
                                                                             if isinstance(v, (int, float))},
               "error": str(r.error) if r.error else None} for r in grid]
    try:
        best = grid.get_best_result(spec.metric, spec.mode)
    except RuntimeError:
        best = None
    if best is None or best.metrics is None or spec.metric not in best.metrics:
        errors = [t["error"] for t in trials if t["error"]]
        raise SweepError(f"sweep {spec.name}: no trial reported {spec.metric!r}" +
                         (f"; first error: {errors[0]}" if errors else ""))
    best_ckpt = best.checkpoint.path if best.checkpoint else None
    if best_ckpt and (Path(best_ckpt) / "policy.pt").is_file():
        shutil.copy2(Path(best_ckpt) / "policy.pt", sweep_dir / "best_policy.pt")
    best_params = {k: best.config.get(k) for k in spec.grid}
    summary = {"sweep": spec.name, "source": spec.source, "metric": spec.metric, "mode": spec.mode,
               "best": {"params": best_params, "overrides": overrides_of({**spec.set, **best_params}),
                        "metrics": {k: v for k, v in best.metrics.items() if isinstance(v, (int, float))},
                        "checkpoint": best_ckpt,
                        "policy": str(sweep_dir / "best_policy.pt") if best_ckpt else None},
               "trials": trials}
    path = atomic_write_json(sweep_dir / "best.json", summary)
    return SweepResult(best_params, summary["best"]["metrics"], best_ckpt, trials, path)
