"""Serve application builder: `import_path: serve.app:app_builder` in serve/config.yaml.

`serve run serve/config.yaml` (from the repository root) starts it on a local Ray;
`serve deploy serve/config.yaml` deploys it to a running cluster (the builder runs there, so
`config` and the run directory are paths on the cluster). The deployments live in
`argen_ray.serving.app`; `argen-ray serve` is the same app without the Serve CLI.
"""
from pydantic import BaseModel, ConfigDict

from argen_ray.config import load_config
from argen_ray.serving.app import build_app


class AppArgs(BaseModel):
    """The `args:` of the application in serve/config.yaml."""

    model_config = ConfigDict(extra="forbid")
    config: str | None = "configs/local.yaml"   # an argen-ray config YAML (None: the defaults)
    overrides: list[str] = []                   # dotted overrides, as `--set` on the CLI


def app_builder(args: AppArgs):
    return build_app(load_config(args.config, args.overrides))
