"""`ray job submit --working-dir . -- argen-ray train ...` against a local `ray start --head`."""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from train_setup import ROOT, fast_overrides, fresh_run

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_job_submit_trains_and_logs_to_mlflow(tmp_path_factory, tmp_path):
    run_dir = fresh_run(tmp_path_factory, tmp_path / "run")
    ray_bin = str(Path(sys.executable).parent / "ray")
    # Ray 2.60 turns token auth on: the head and every client must share RAY_AUTH_MODE/TOKEN.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    port, dash = _free_port(), _free_port()
    temp = Path(f"/tmp/argen-job-{secrets.token_hex(3)}")  # short: raylet socket paths are length-limited
    head = subprocess.Popen([ray_bin, "start", "--head", "--block", f"--port={port}", f"--dashboard-port={dash}",
                             "--num-cpus=4", "--include-dashboard=true", f"--temp-dir={temp}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        address = f"http://127.0.0.1:{dash}"
        for _ in range(120):  # the Jobs API answers once the dashboard is up
            probe = subprocess.run([ray_bin, "job", "list", "--address", address], env=env, capture_output=True)
            if probe.returncode == 0:
                break
            time.sleep(1)
        overrides = fast_overrides(run_dir, train__iterations=2)
        submit = subprocess.run(
            [ray_bin, "job", "submit", "--address", address, "--working-dir", ".", "--",
             "argen-ray", "train", "--config", "configs/local.yaml",
             *[x for o in overrides if not o.startswith("ray.num_cpus") for x in ("--set", o)]],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=540)
        out = submit.stdout + submit.stderr
        assert submit.returncode == 0 and "succeeded" in out, out[-4000:]
        assert "trained 2 iterations" in out
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        head.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)
    # The job's MLflow run landed in the run folder's SQLite store, with per-iteration metrics.
    with sqlite3.connect(run_dir / "mlflow.db") as db:
        runs = db.execute("select run_uuid, status from runs").fetchall()
        assert len(runs) == 1 and runs[0][1] == "FINISHED"
        keys = {k for (k,) in db.execute("select distinct key from metrics")}
    assert {"score", "r_t", "r_q", "r_f", "nfe", "steps", "entropy_steps", "wall_s"} <= keys
    assert (run_dir / "policy" / "policy.pt").is_file()
