"""`argen-ray serve`: the Ray Serve app (policy + online generation) on serve.host:serve.port.

Runs until Ctrl-C. `--check` starts it, calls /healthz and /v1/info, prints them and stops
(a smoke test of a config and its policy). For `serve run` / `serve deploy` use serve/config.yaml.
"""
from __future__ import annotations

import argparse

from argen_ray.commands import add_config_arguments, config_from_args

# Ctrl-C is how a running app is stopped: there is nothing to resume (cli.py's message says so).
RESUMABLE = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--check", action="store_true",
                        help="start the app, print /healthz and /v1/info, then shut it down")


def run(args: argparse.Namespace) -> int:
    import json
    import time

    import httpx
    from ray import serve

    from argen_ray.serving.app import start

    cfg = config_from_args(args)
    url = start(cfg)
    print(f"[argen-ray] serving {url}  (docs: {url}/docs; routes: /healthz /v1/info /v1/policy /v1/generate)")
    try:
        if args.check:
            health = httpx.get(f"{url}/healthz", timeout=30).json()
            info = httpx.get(f"{url}/v1/info", timeout=120).json()
            print(json.dumps({"healthz": health, "info": info}, indent=2))
            return 0
        while True:  # Serve runs in Ray; this process only keeps the app alive
            time.sleep(3600)
    finally:
        serve.shutdown()
