"""The `argen-ray` entry point lists every command and turns user errors into one clean line."""
from __future__ import annotations

import subprocess
import sys

from argen_ray.cli import COMMANDS


def _run(*args):
    return subprocess.run([sys.executable, "-m", "argen_ray.cli", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_command():
    out = _run("--help")
    assert out.returncode == 0
    for name in COMMANDS:
        assert name in out.stdout


def test_every_registered_command_has_its_module():
    for name in COMMANDS:
        out = _run(name, "--help")
        assert out.returncode == 0, (name, out.stderr[-500:])


def test_bad_config_is_one_clean_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  iteratons: 3\n")
    out = _run("data", "--config", str(bad))
    assert out.returncode == 2
    assert "train.iteratons" in out.stderr and "Traceback" not in out.stderr
