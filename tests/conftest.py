"""Session-wide set-up that saves the suite wall time.

- One Serve app shared by the HTTP test modules (starting Ray + Serve costs ~30 s on 2 cores).
  Modules marked `shared_serve_app` get it through their `server` fixture; it starts on first use
  and stops as soon as the next test is not in such a module, so no other test sees its Ray instance.
- The runtime envs' pip resolutions (mostly waiting on the registry) start in the background as
  soon as the tests are collected (tests/pip_resolve.py).
"""
from __future__ import annotations

import pip_resolve
import pytest
from serve_setup import SHARED_APP_SETTINGS, start_app, stop_app

_running: dict = {}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if "app" not in _running:
        _running["app"] = start_app(tmp_path_factory.mktemp("serve-app"), *SHARED_APP_SETTINGS)
    return _running["app"]


def pytest_runtest_teardown(item, nextitem):
    if _running and (nextitem is None or nextitem.get_closest_marker("shared_serve_app") is None):
        _running.clear()
        stop_app()


def pytest_collection_finish(session):
    names = [item.callspec.params["name"] for item in session.items
             if item.originalname == "test_runtime_env_pins_resolve_with_pips_resolver"]
    if names and pip_resolve.registry_reachable():
        for name in names:
            pip_resolve.start(name)
