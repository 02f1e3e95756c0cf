"""One Serve app shared by the HTTP test modules (starting Ray + Serve costs ~30 s on 2 cores).

Modules marked `shared_serve_app` get it through their `server` fixture; it starts on first use and
stops as soon as the next test is not in such a module, so no other test sees its Ray instance.
"""
from __future__ import annotations

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
