"""The root config: composition of the sections, YAML loading, dotted overrides, printing back."""
from __future__ import annotations

from argen_ray.errors import ArgenError

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from argen_ray.config.asi import ASIConfig
from argen_ray.config.base import Section
from argen_ray.config.data import DataConfig
from argen_ray.config.generator import GeneratorConfig
from argen_ray.config.recognition import RecognitionConfig
from argen_ray.config.reward import RewardConfig
from argen_ray.config.runtime import RayConfig, TrackingConfig
from argen_ray.config.serve import ServeConfig
from argen_ray.config.train import TrainConfig


class ConfigError(ArgenError, ValueError):
    """A config file or override is wrong; the message names the key and the file."""


class Config(Section):
    run_dir: Path = Path("runs/local")
    seed: int = 0
    ray: RayConfig = Field(default_factory=RayConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    asi: ASIConfig = Field(default_factory=ASIConfig)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    recognition: RecognitionConfig = Field(default_factory=RecognitionConfig)

    @model_validator(mode="after")
    def _run_dynamics(self) -> "Config":
        # The warp generator draws timing, head motion and noise from the run's measured real clips.
        if self.generator.warp.dynamics is None:
            self.generator.warp.dynamics = self.path("data", "dynamics.json")
        if self.generator.warp.appearance is None:
            self.generator.warp.appearance = self.path("data", "appearance.npz")
        return self

    def path(self, *parts: str) -> Path:
        """A path inside the run directory."""
        return Path(self.run_dir).joinpath(*parts)

    def settings_digest(self, *sections: str, **extra: Any) -> str:
        """sha256 of the named sections' `result_settings` (and of `extra`), paths inside the run
        directory written relative to it (a moved run keeps its digests): what a stored result
        records, so a rerun can tell whether the settings it was made under still hold."""
        parts = {name: (value.result_settings() if isinstance(value, Section) else value)
                 for name in sections for value in [getattr(self, name)]}
        text = json.dumps({**parts, **extra}, sort_keys=True, default=str)
        return hashlib.sha256(text.replace(str(Path(self.run_dir)), "<run_dir>").encode()).hexdigest()


def _parse_override(text: str, source: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"{source}: override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"{source}: override {text!r} has an empty key")
    # YAML parsing gives ints, floats, bools, lists ("[5,10]") and null the natural way.
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: override {key}: cannot parse value {raw!r}: {exc}") from None
    return key.split("."), value


def _set_dotted(tree: dict, keys: list[str], value: Any) -> None:
    node = tree
    for part in keys[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[keys[-1]] = value


def _format_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid config in {source}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            got = err.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"  {key}: {err['msg']}{shown}")
    return "\n".join(lines)


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config (or the defaults when `path` is None) and apply dotted overrides.

    Relative paths inside the file stay relative to the working directory, like every CLI path.
    """
    source = str(path) if path is not None else "<defaults>"
    tree: dict = {}
    if path is not None:
        from argen_ray.io import read_yaml_mapping

        tree = read_yaml_mapping(path, "config file", ConfigError)
    for text in overrides:
        keys, value = _parse_override(text, source)
        _set_dotted(tree, keys, value)
    label = source + (f" (with overrides {list(overrides)})" if overrides else "")
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, label)) from None


def config_to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def save_resolved_config(cfg: Config, directory: str | os.PathLike | None = None) -> Path:
    """Write the resolved config next to a run's outputs (atomically) and return its path."""
    from argen_ray.io import atomic_write_text

    out = Path(directory) if directory is not None else Path(cfg.run_dir)
    target = out / "config.resolved.yaml"
    atomic_write_text(target, config_to_yaml(cfg))
    return target
