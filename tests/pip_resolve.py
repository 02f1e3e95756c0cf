"""pip's resolver on a runtime env's pinned packages (`pip install --dry-run`), started in the
background at the start of the test session: the resolution mostly waits on the package registry,
so it overlaps the CPU-bound tests instead of adding ~50 s each to the suite's wall time."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import yaml

RUNTIME_ENVS = Path(__file__).resolve().parents[1] / "cluster" / "runtime_envs"
_started: dict[str, tuple[subprocess.Popen, Path]] = {}


def packages(name: str) -> list[str]:
    return yaml.safe_load((RUNTIME_ENVS / name).read_text())["pip"]["packages"]


def registry_reachable() -> bool:
    try:
        urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=10).close()
        return True
    except OSError:
        return False


def start(name: str) -> None:
    """Start resolving `name`'s packages (once); `result` waits for it."""
    if name in _started:
        return
    report = Path(tempfile.mkdtemp(prefix="pip-resolve-")) / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull}
    proc = subprocess.Popen([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                             "--report", str(report), "--index-url", "https://pypi.org/simple", *packages(name)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    _started[name] = (proc, report)


def result(name: str, timeout: float = 900) -> tuple[int, str, Path]:
    """(pip's return code, its stderr, the path of its JSON report) for `name`."""
    start(name)
    proc, report = _started[name]
    _, stderr = proc.communicate(timeout=timeout)
    return proc.returncode, stderr, report
