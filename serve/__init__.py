"""The Serve app module for `serve run serve/config.yaml` / `serve deploy serve/config.yaml`."""
