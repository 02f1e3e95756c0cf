"""pip's resolver on a runtime env's pinned packages (`pip install --dry-run`), started in the
background at the start of the test session: the resolution mostly waits on the package registry,
so it overlaps the CPU-bound tests instead of adding ~50 s each to the suite's wall time.

Under pytest-xdist every worker collects the whole suite, but one resolution per env is enough:
the first process to claim an env (an exclusive lock file in a folder named after the test run,
which all workers share) runs pip; every process reads the result from that folder."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import yaml

RUNTIME_ENVS = Path(__file__).resolve().parents[1] / "cluster" / "runtime_envs"
_SOLO_RUN = uuid.uuid4().hex     # a run without xdist workers: this process alone


def packages(name: str) -> list[str]:
    return yaml.safe_load((RUNTIME_ENVS / name).read_text())["pip"]["packages"]


def registry_reachable() -> bool:
    try:
        urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=10).close()
        return True
    except OSError:
        return False


def run_dir(config) -> Path:
    """The folder this test run's workers share (xdist gives all of them one `testrunuid`)."""
    run = getattr(config, "workerinput", {}).get("testrunuid", _SOLO_RUN)
    return Path(tempfile.gettempdir()) / f"argen-pip-resolve-{run}"


def start(name: str, folder: Path) -> None:
    """Start resolving `name`'s packages unless a process of this run already has; `result` waits."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(folder / f"{name}.lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull}
    pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report",
           str(folder / f"{name}.json"), "--index-url", "https://pypi.org/simple", *packages(name)]
    # The return code is written last, atomically: its file appearing means the report is complete.
    script = ('import subprocess, sys, os; p = subprocess.run(sys.argv[3:], stdout=subprocess.DEVNULL, '
              'stderr=open(sys.argv[1], "w")); open(sys.argv[2] + ".tmp", "w").write(str(p.returncode)); '
              'os.replace(sys.argv[2] + ".tmp", sys.argv[2])')
    subprocess.Popen([sys.executable, "-c", script, str(folder / f"{name}.stderr"), str(folder / f"{name}.rc"),
                      *pip], env=env, start_new_session=True)


def result(name: str, folder: Path, timeout: float = 900) -> tuple[int, str, Path]:
    """(pip's return code, its stderr, the path of its JSON report) for `name`."""
    start(name, folder)
    rc = folder / f"{name}.rc"
    deadline = time.monotonic() + timeout
    while not rc.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"pip's resolution of {name} did not finish in {timeout:.0f} s ({folder})")
        time.sleep(1)
    return int(rc.read_text()), (folder / f"{name}.stderr").read_text(), folder / f"{name}.json"
