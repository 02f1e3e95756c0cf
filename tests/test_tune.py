"""`argen-ray tune FILE`: sweep files validate up front; a sweep runs every trial, records each in
MLflow through Tune's callback, and saves the best trial's overrides, metrics and policy."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from argen_ray.ard.tuning import SweepError, load_sweep, run_sweep
from argen_ray.config import load_config
from train_setup import ROOT, fast_overrides, fresh_run


def test_shipped_sweeps_define_valid_grids():
    weights = load_sweep(ROOT / "tune_configs" / "reward_weights.yaml")
    assert {"reward.w_t", "reward.w_q", "reward.w_f", "reward.w_e"} == set(weights.grid)
    group = load_sweep(ROOT / "tune_configs" / "group_and_penalty.yaml")
    assert {"reward.group_size", "reward.top_k", "reward.penalty"} == set(group.grid)
    for spec in (weights, group):
        assert spec.metric == "objective" and spec.mode == "max"
        for point in spec.points():  # every grid point is a valid config
            load_config(ROOT / "configs" / "local.yaml", [f"{k}={json.dumps(v)}" for k, v in {**spec.set, **point}.items()])
    assert len(weights.points()) == 4


def test_bad_sweeps_are_named_before_anything_runs(tmp_path_factory, tmp_path):
    with pytest.raises(SweepError, match="does not exist"):
        load_sweep(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ngrid: {reward.w_t: 0.5}\n")
    with pytest.raises(SweepError, match="grid.reward.w_t must be a non-empty list"):
        load_sweep(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("name: x\ngrid: {reward.w_tt: [0.1, 0.2]}\n")
    run_dir = fresh_run(tmp_path_factory, tmp_path / "run")
    cfg = load_config(None, [f"run_dir={run_dir}"])
    with pytest.raises(SweepError, match=r"(?s)grid point \{'reward.w_tt': 0.1\}.*reward.w_tt: unknown key"):
        run_sweep(cfg, load_sweep(typo), None, [f"run_dir={run_dir}"])


@pytest.mark.slow
def test_reward_weight_sweep_completes_and_lands_in_mlflow(tmp_path_factory, tmp_path):
    """The shipped sweeps' shape, kept to two short trials (R_e off: its landmark AUs are the
    slowest reward; no oracle table, as in the shipped sweeps: the objective needs only the
    policy's clips; tune_configs/reward_weights.yaml itself is timed in docs/training.md)."""
    run_dir = fresh_run(tmp_path_factory, tmp_path / "run")
    sweep = tmp_path / "weights.yaml"
    sweep.write_text("name: weights\nmetric: objective\nmode: max\n"
                     "set: {reward.w_e: 0.0, train.oracle_max_actions: 0}\n"
                     "grid: {reward.w_t: [0.0, 0.5]}\n")
    sets = [x for o in fast_overrides(run_dir, train__iterations=1) for x in ("--set", o)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-m", "argen_ray.cli", "tune", str(sweep), "--config", "configs/local.yaml",
                           *sets], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    best = json.loads((run_dir / "tune" / "weights" / "best.json").read_text())
    assert len(best["trials"]) == 2 and not any(t["error"] for t in best["trials"])
    objectives = [t["metrics"]["objective"] for t in best["trials"]]
    assert best["best"]["metrics"]["objective"] == pytest.approx(max(objectives))
    assert (run_dir / "tune" / "weights" / "best_policy.pt").is_file()
    assert "best" in done.stdout and "objective" in done.stdout
    # One MLflow run per trial, each with the objective.
    with sqlite3.connect(run_dir / "mlflow.db") as db:
        runs = db.execute("select count(*) from runs").fetchone()[0]
        with_objective = db.execute("select count(distinct run_uuid) from metrics where key='objective'").fetchone()[0]
    assert runs == 2 and with_objective == 2
