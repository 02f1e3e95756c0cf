"""`argen-ray train`: killed mid-way and rerun, it resumes from the last checkpoint (the iteration
counter and the MLflow run continue); it logs per iteration to MLflow and writes its artifacts."""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from train_setup import ROOT, fast_overrides, fresh_run

pytestmark = pytest.mark.slow  # starts Ray and trains or fits


def _kill_leftovers(marker: str) -> None:
    """Ray processes of the killed driver's own session (found by its private temp dir)."""
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if any(marker in part for part in (proc.info["cmdline"] or [])):
            try:
                proc.kill()
            except psutil.Error:
                pass


def test_killed_training_resumes_from_the_last_checkpoint(tmp_path_factory, tmp_path):
    """Killed after iteration 3 with its last checkpoint at 2, the rerun redoes iteration 3: every
    iteration is in history.jsonl and in MLflow exactly once, none skipped."""
    run_dir = fresh_run(tmp_path_factory, tmp_path / "run")
    sets = [x for o in fast_overrides(run_dir, train__iterations=4, train__checkpoint_every=2, reward__w_e=0,
                                            train__batch_size=2, train__oracle_max_actions=0)
            for x in ("--set", o)]
    command = [sys.executable, "-m", "argen_ray.cli", "train", "--config", "configs/local.yaml", *sets]
    temp = f"/tmp/argen-resume-{secrets.token_hex(3)}"
    env = {**os.environ, "RAY_TMPDIR": temp}
    env.pop("RAY_ADDRESS", None)
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    history_file = run_dir / "policy" / "history.jsonl"

    def iterations_in_history() -> list[int]:
        if not history_file.is_file():
            return []
        return [json.loads(line)["iteration"] for line in history_file.read_text().splitlines() if line.endswith("}")]

    try:
        deadline = time.time() + 400
        while 3 not in iterations_in_history() and first.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert 3 in iterations_in_history(), (first.stdout.read() if first.poll() is not None else "timed out")[-3000:]
        first.send_signal(signal.SIGKILL)  # between checkpoints 2 and 4, no chance to clean up
        first.wait(timeout=30)
    finally:
        _kill_leftovers(temp)
    checkpoints = run_dir / "policy" / "checkpoints"
    assert (checkpoints / "iter_000002").is_dir() and not (checkpoints / "iter_000004").exists()
    with sqlite3.connect(run_dir / "mlflow.db") as db:  # MLflow only holds what a checkpoint holds
        assert {s for (s,) in db.execute("select distinct step from metrics where key='score'")} == {1, 2}

    def run_to_the_end(argv: list[str]) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=500)
        finally:
            _kill_leftovers(temp)
            shutil.rmtree(temp, ignore_errors=True)

    second = run_to_the_end(command)
    assert second.returncode == 0, second.stderr[-4000:]
    found = re.search(r"resumed after iteration (\d+)", second.stdout)
    assert found and int(found.group(1)) == 2, second.stdout[-2000:]  # the newest complete checkpoint
    assert iterations_in_history() == [1, 2, 3, 4]  # each line once, in order: 3 redone, not repeated
    state = json.loads((run_dir / "policy" / "state.json").read_text())
    assert state["iteration"] == 4 and Path(state["checkpoint"]).name == "iter_000004"
    # Old checkpoints are pruned to train.keep_checkpoints, newest kept.
    assert sorted(p.name for p in checkpoints.glob("iter_*")) == ["iter_000002", "iter_000004"]

    # One MLflow run across both processes; every per-iteration metric exactly once per iteration.
    with sqlite3.connect(run_dir / "mlflow.db") as db:
        runs = db.execute("select run_uuid, status from runs").fetchall()
        assert len(runs) == 1 and runs[0][1] == "FINISHED" and runs[0][0] == state["mlflow_run_id"]
        for key in ("score", "r_t", "r_q", "r_f", "nfe", "steps", "entropy_steps", "entropy_alpha", "entropy_beta",
                    "wall_s", "rescored"):
            steps = sorted(s for (s,) in db.execute("select step from metrics where key=?", (key,)))
            assert steps == [1, 2, 3, 4], (key, steps)
        redone = db.execute("select value from metrics where key='wall_s' and step=3").fetchone()[0]
    history = {json.loads(line)["iteration"]: json.loads(line) for line in history_file.read_text().splitlines()}
    assert redone == pytest.approx(history[3]["wall_s"])  # MLflow and history agree on the redone iteration
    assert history[3]["rescored"] == 0  # no scorer crashed: counted, and zero
    # Every candidate video of every iteration once (B = 2 groups of G), iteration 3's redone ones
    # replacing the killed run's; each row's means agree with the iteration's logged means.
    candidates = [json.loads(line) for line in (run_dir / "policy" / "candidates.jsonl").read_text().splitlines()]
    group_size = len(candidates) // 8
    assert group_size >= 2 and [c["iteration"] for c in candidates] == sorted([1, 2, 3, 4] * 2 * group_size)
    for iteration in (1, 2, 3, 4):
        rows = [c for c in candidates if c["iteration"] == iteration]
        assert len({c["group_id"] for c in rows}) == 2 and all(c["prompt_id"] and c["seed"] >= 0 for c in rows)
        for key in ("score", "r_q", "r_f", "steps", "nfe"):
            assert sum(c[key] for c in rows) / len(rows) == pytest.approx(history[iteration][key]), (iteration, key)
        # One seed per group; the group rule's rewards, centred on the group mean (group_baseline).
        for group in {c["group_id"] for c in rows}:
            members = sorted((c for c in rows if c["group_id"] == group), key=lambda c: -c["score"])
            assert len({c["seed"] for c in members}) == 1
            rewards = [c["reward"] for c in members]
            assert rewards == sorted(rewards, reverse=True) and sum(rewards) == pytest.approx(0, abs=1e-4)
            if members[0]["score"] > members[-1]["score"]:
                assert rewards[0] > 0 > rewards[-1]
    for artifact in ("policy.pt", "reward_curve.png", "eval.json"):
        assert (run_dir / "policy" / artifact).is_file(), artifact
        # The MLflow run's copies live inside the run folder, not in the working directory.
        assert list((run_dir / "mlartifacts").rglob(artifact)), artifact
    evaluation = json.loads((run_dir / "policy" / "eval.json").read_text())
    assert evaluation["num_states"] == 2 and {"score", "nfe", "steps"} <= set(evaluation["policy"])

    # Other reward weights: the checkpoints were trained for another objective, so training starts
    # over (here for 1 iteration) and they are moved aside, not resumed from or deleted.
    third = run_to_the_end(command + ["--set", "reward.w_q=0.5", "--set", "train.iterations=1"])
    assert third.returncode == 0, third.stderr[-4000:]
    assert "resumed after iteration" not in third.stdout and "training starts over" in third.stdout
    assert iterations_in_history() == [1]
    aside = list((run_dir / "policy").glob("checkpoints.replaced-*"))
    assert len(aside) == 1 and (aside[0] / "iter_000004").is_dir()
    assert sorted(p.name for p in checkpoints.glob("iter_*")) == ["iter_000001"]


def test_train_names_what_is_missing_instead_of_a_traceback(tmp_path_factory, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    base = [sys.executable, "-m", "argen_ray.cli", "train", "--config", "configs/local.yaml"]
    missing = subprocess.run([*base, "--set", f"run_dir={tmp_path / 'empty'}"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert f"{tmp_path / 'empty' / 'prompts' / 'prompts.jsonl'} does not exist" in missing.stderr
    assert "argen-ray prompts" in missing.stderr
    # More actor CPUs than the local Ray has: a clear error, not a hang.
    run_dir = fresh_run(tmp_path_factory, tmp_path / "run")
    crowded = subprocess.run([*base, "--set", f"run_dir={run_dir}", "--set", "ray.num_cpus=2",
                              "--set", "reward.num_scorers=4"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=300)
    assert crowded.returncode == 2 and "Traceback" not in crowded.stderr
    assert "need 5 logical CPUs" in crowded.stderr and "raise ray.num_cpus" in crowded.stderr
