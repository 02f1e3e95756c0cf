"""Command modules of the `argen-ray` CLI. Each exposes `add_arguments(parser)` and `run(args)`.

Shared here: the `--config FILE` / `--set key=value` arguments every stage command takes.
"""
from __future__ import annotations

import argparse

from argen_ray.config import Config, load_config, save_resolved_config
from argen_ray.io import ensure_dir


def add_config_arguments(parser: argparse.ArgumentParser, default: str | None = "configs/local.yaml") -> None:
    parser.add_argument("--config", default=default,
                        help=f"YAML config (default: {default}; presets in configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key with a dotted path, e.g. --set train.iterations=5 (repeatable)")


def config_from_args(args: argparse.Namespace, save: bool = True, preflight=None) -> Config:
    """Load the config named on the command line, print it back, and save it in the run dir.

    `preflight`: the stages (or a function of the config giving them) whose models, weights and
    datasets must all be on this machine; checked before anything is written or started
    (argen_ray/preflight.py), and one error lists everything missing.
    """
    from pathlib import Path

    path = args.config
    if path is not None and not Path(path).is_file() and path == "configs/local.yaml":
        path = None  # outside the repository checkout: the defaults are the local preset
    cfg = load_config(path, args.overrides)
    check_job_run_dir(cfg)
    if preflight is not None:
        from argen_ray.preflight import require_inputs

        require_inputs(cfg, preflight(cfg) if callable(preflight) else preflight, f"argen-ray {args.command}")
    ensure_dir(cfg.run_dir, writable=True)  # a run_dir that is a file or read-only: one clear line
    if save:
        target = save_resolved_config(cfg)
        print(f"[argen-ray] config: {path or '<defaults>'} -> resolved copy at {target}")
    return cfg


def check_job_run_dir(cfg: Config) -> None:
    """Under `ray job submit --working-dir`, the working directory is Ray's temporary copy of the
    upload, deleted with the job: a relative run_dir would vanish with it, so it is an error."""
    import json
    import os
    from pathlib import Path

    job = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")  # set by Ray for a submitted job's entrypoint
    if not job or Path(cfg.run_dir).is_absolute():
        return
    try:
        uploaded = bool((json.loads(job).get("runtime_env") or {}).get("working_dir"))
    except (ValueError, AttributeError):
        uploaded = True
    if uploaded:
        from argen_ray.config import ConfigError

        raise ConfigError(f"run_dir {cfg.run_dir} is relative, and this job runs in Ray's temporary copy of its "
                          f"working dir ({os.getcwd()}), which is deleted when the job ends: pass an absolute path "
                          "that the head and workers share, e.g. --set run_dir=/mnt/argen/runs/<name>")
