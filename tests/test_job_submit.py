"""README's local job-submission commands, run as written from a fresh shell (bash with no venv on
PATH): `cluster/local.sh start` (a head in its own temp dir, stopped by its pid), the token from
its env file, `ray job submit --working-dir . -- argen-ray train ...`. The job trains, its
outputs land in the absolute run_dir, a resubmission resumes, and a relative run_dir is refused.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
from pathlib import Path

import psutil
import pytest

from train_setup import ROOT, fast_overrides, fresh_run

pytestmark = pytest.mark.slow

# As in the README ("Try the cluster commands locally"); RUN_DIR and SETS are filled in below.
START = 'cluster/local.sh start && source "$(cluster/local.sh env)"'
SUBMIT = ('.venv/bin/ray job submit --address "$ARGEN_RAY_DASHBOARD" --working-dir . -- '
          'argen-ray train --config configs/local.yaml --set run_dir={run_dir} {sets}')
STOP = "cluster/local.sh stop"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shell(script: str, env: dict, timeout: float = 540) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f"set -eo pipefail\n{script}"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _ray_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in (proc.info["cmdline"] or [])):
            found.append(proc)
    return found


def test_readme_job_submission_trains_resumes_and_refuses_a_relative_run_dir(tmp_path_factory, tmp_path):
    if not (ROOT / ".venv" / "bin" / "ray").exists():  # the README's commands name the checkout's venv
        pytest.skip(f"no {ROOT / '.venv'}")
    run_dir = fresh_run(tmp_path_factory, tmp_path / "run")
    temp = f"/tmp/argen-job-{secrets.token_hex(3)}"  # short: raylet socket paths are length-limited
    # A fresh shell: no venv on PATH, no Ray address or token from this process.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "VIRTUAL_ENV"))}
    env["PATH"] = ":".join(p for p in env["PATH"].split(":") if not p.startswith(str(ROOT / ".venv")))
    env.update(ARGEN_RAY_TEMP=temp, RAY_PORT=str(_free_port()), DASHBOARD_PORT=str(_free_port()), NUM_CPUS="4")

    def submit(iterations: int, where: str) -> subprocess.CompletedProcess:
        sets = [o for o in fast_overrides(run_dir, train__iterations=iterations, train__oracle_max_actions=0)
                if not o.startswith(("run_dir", "ray.num_cpus"))]
        return _shell(f'source "$(cluster/local.sh env)"\n'
                      + SUBMIT.format(run_dir=where, sets=" ".join(f"--set {o}" for o in sets)), env)

    try:
        started = _shell(START, env, timeout=240)
        assert started.returncode == 0, started.stdout + started.stderr
        first = submit(1, str(run_dir))
        out = first.stdout + first.stderr
        assert first.returncode == 0 and "succeeded" in out, out[-4000:]
        assert "trained 1 iterations" in out and "resumed" not in out
        second = submit(2, str(run_dir))
        out = second.stdout + second.stderr
        assert second.returncode == 0, out[-4000:]
        assert "trained 2 iterations (resumed after iteration 1)" in out
        relative = submit(1, "runs/job")
        out = relative.stdout + relative.stderr
        assert relative.returncode != 0 and "run_dir runs/job is relative" in out, out[-3000:]
    finally:
        stopped = _shell(STOP, env, timeout=120)
        leftovers = _ray_processes(temp)
        for proc in leftovers:
            proc.kill()
        shutil.rmtree(temp, ignore_errors=True)
    assert stopped.returncode == 0 and "stopped head pid" in stopped.stdout, stopped.stdout + stopped.stderr
    assert not leftovers, [p.info["cmdline"][:3] for p in leftovers]  # the stop took all of its own processes
    # The outputs landed in run_dir: one MLflow run across both jobs, every iteration once.
    with sqlite3.connect(run_dir / "mlflow.db") as db:
        runs = db.execute("select run_uuid, status from runs").fetchall()
        assert len(runs) == 1 and runs[0][1] == "FINISHED"
        steps = sorted(s for (s,) in db.execute("select step from metrics where key='wall_s'"))
    assert steps == [1, 2]
    history = [json.loads(line) for line in (run_dir / "policy" / "history.jsonl").read_text().splitlines()]
    assert [h["iteration"] for h in history] == [1, 2]
    assert (run_dir / "policy" / "policy.pt").is_file() and (run_dir / "config.resolved.yaml").is_file()
    assert not (ROOT / "runs" / "job").exists()
