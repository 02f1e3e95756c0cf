"""Shared set-up of the training tests: a run folder holding real prompts (the demo dataset run
through the ASI stage by the real commands), built once per test session (one build for both
pytest-xdist workers) and copied per test."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The smallest demo dataset the data section accepts; its scarce classes give 2 prompts each.
DEMO = ["data.demo.num_identities=5", "data.demo.clips_per_identity=6", "data.demo.min_test_clips=0"]


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `argen-ray ARGS` in a subprocess from the repository root."""
    return subprocess.run([sys.executable, "-m", "argen_ray.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def prompts_run(tmp_path_factory) -> Path:
    """The session's run folder with demo data, prompts.jsonl and the cached state embeddings
    of the local preset's generator (built on first use, read-only after)."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's folder above every worker's own (popen-gw0, popen-gw1)
    base = shared / "train-prompts"
    with FileLock(str(shared / "train-prompts.lock")):
        if not list((base / "policy").glob("states-*.npz")):
            sets = [x for o in [f"run_dir={base}", *DEMO] for x in ("--set", o)]
            for command in (["demo-data"], ["prompts", "--no-progress"]):
                done = cli(*command, *sets)
                assert done.returncode == 0, done.stderr[-3000:]
            from argen_ray.ard.generator import build_generator
            from argen_ray.ard.states import GeneratorStateEncoder, load_states
            from argen_ray.config import load_config

            cfg = load_config(ROOT / "configs" / "local.yaml", [f"run_dir={base}", *DEMO])
            load_states(cfg, GeneratorStateEncoder(cfg, build_generator(cfg.generator)))
    return base


def fresh_run(tmp_path_factory, target: Path) -> Path:
    """A new run folder with a copy of the session's prompts, their identity images (prompts.jsonl
    names them relative to its folder) and the state cache."""
    base = prompts_run(tmp_path_factory)
    shutil.copytree(base / "prompts", target / "prompts")
    (target / "policy").mkdir(parents=True)
    for cache in (base / "policy").glob("states-*.npz"):
        shutil.copy2(cache, target / "policy" / cache.name)
    return target


def fast_overrides(run_dir: Path, **extra) -> list[str]:
    """Settings that keep a training test short on 2 cores; `extra` adds dotted overrides."""
    values = {"run_dir": str(run_dir), **dict(d.split("=", 1) for d in DEMO),
              "ray.num_cpus": 4, "reward.num_scorers": 1, "train.progress": False, "generator.num_frames": 8,
              "train.batch_size": 4, "train.eval_states": 2, "train.eval_seeds": 1, "train.iterations": 2, "train.checkpoint_every": 1,
              **{k.replace("__", "."): v for k, v in extra.items()}}
    return [f"{k}={v}" for k, v in values.items()]


def train_in_process(cfg, evaluate: bool = True):
    """Train (and evaluate) one policy in this process with `PolicyTrainer` (what `argen-ray train`
    runs), releasing its actors after; returns the summary, the trained policy and the training
    states. Tests that train twice share one Ray start this way."""
    from argen_ray.ard.policy import load_policy
    from argen_ray.ard.training import PolicyTrainer

    trainer = PolicyTrainer(cfg)
    try:
        summary = trainer.run(evaluate=evaluate)
        states = trainer.train_states
    finally:
        trainer.close()
    return summary, load_policy(summary.policy_path), states
