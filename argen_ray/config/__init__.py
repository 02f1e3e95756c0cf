"""One typed config for every stage, loaded from YAML, overridable by dotted keys.

Each stage owns its section in its own module of this package; `Config` composes them.
"""
from argen_ray.config.base import Section
from argen_ray.config.root import Config, ConfigError, load_config, save_resolved_config

__all__ = ["Config", "ConfigError", "Section", "load_config", "save_resolved_config"]
