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


def test_ctrl_c_message_says_whether_a_rerun_resumes(monkeypatch, capsys):
    import types

    from argen_ray import cli

    def interrupt(args):
        raise KeyboardInterrupt

    for name, resumable, message in (("fake-stage", None, "interrupted; rerun the same command to resume"),
                                     ("fake-server", False, "stopped")):
        module = types.ModuleType(f"argen_ray.commands._{name}")
        module.add_arguments, module.run = (lambda p: None), interrupt
        if resumable is not None:
            module.RESUMABLE = resumable
        monkeypatch.setitem(sys.modules, module.__name__, module)
        monkeypatch.setitem(cli.COMMANDS, name, (f"_{name}", "test command"))
        assert cli.main([name]) == 130
        assert capsys.readouterr().err.strip() == f"argen-ray {name}: {message}"
    # The real commands: serve runs until Ctrl-C and tune does not restore a sweep; train resumes.
    import argen_ray.commands.serve
    import argen_ray.commands.train
    import argen_ray.commands.tune

    assert argen_ray.commands.serve.RESUMABLE is False and argen_ray.commands.tune.RESUMABLE is False
    assert getattr(argen_ray.commands.train, "RESUMABLE", True) is True


def _one_clean_line(out, *words):
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert "Traceback" not in out.stderr and len(lines) == 1 and lines[0].startswith("argen-ray data: error: "), lines
    for word in words:
        assert word in lines[0], lines[0]


def test_config_that_is_binary_or_a_folder_is_one_clean_error(tmp_path):
    binary = tmp_path / "model.pt"
    binary.write_bytes(bytes(range(256)) * 4)
    _one_clean_line(_run("data", "--config", str(binary)), str(binary), "not a text file")
    _one_clean_line(_run("data", "--config", str(tmp_path)), str(tmp_path), "is a folder")
    _one_clean_line(_run("data", "--config", str(tmp_path / "nope.yaml")), "does not exist")


def test_run_dir_that_is_a_file_or_not_writable_is_one_clean_error(tmp_path):
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    _one_clean_line(_run("data", "--set", f"run_dir={a_file}"), str(a_file), "run_dir")
    _one_clean_line(_run("data", "--set", f"run_dir={a_file / 'sub'}"), str(a_file / "sub"), "run_dir")
    # /proc refuses new folders even to root (CI runs as root, so a chmod would not do).
    _one_clean_line(_run("data", "--set", "run_dir=/proc/argen-ray-run"), "/proc/argen-ray-run", "run_dir")


def test_relative_run_dir_under_a_submitted_job_is_refused(tmp_path):
    """A job's working dir is Ray's temporary copy of the upload; a relative run_dir would vanish."""
    import json
    import os

    job = json.dumps({"runtime_env": {"working_dir": "gcs://_ray_pkg_0123.zip"}, "metadata": {}})
    env = {**os.environ, "RAY_JOB_CONFIG_JSON_ENV_VAR": job}
    out = subprocess.run([sys.executable, "-m", "argen_ray.cli", "data", "--set", "run_dir=runs/job"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120)
    _one_clean_line(out, "runs/job is relative", "absolute path")
    assert not (tmp_path / "runs").exists()
