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
