"""Session-wide set-up that saves the suite wall time.

- One Serve app shared by the HTTP test modules (starting Ray + Serve costs ~30 s on 2 cores).
  Modules marked `shared_serve_app` get it through their `server` fixture; it starts on first use
  and stops as soon as the next test is not in such a module, so no other test sees its Ray instance.
- `make test` runs two pytest-xdist workers; `pytest_collection_modifyitems` keeps each file (and
  the shared Serve app's modules) in one worker and starts the longest groups first, by the times
  a past run stored in tests/durations.json (`pytest --store-durations` rewrites it), so the two
  workers finish close together. `make test` passes `--no-loadscope-reorder`: by default xdist
  re-sorts the groups by their number of tests, which sent the long one-test files last.
- The runtime envs' pip resolutions (mostly waiting on the registry) start in the background as
  soon as the tests are collected (tests/pip_resolve.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import pip_resolve
import pytest
from serve_setup import SHARED_APP_SETTINGS, start_app, stop_app

_running: dict = {}
DURATIONS = Path(__file__).with_name("durations.json")
_measured: dict[str, float] = {}


def pytest_addoption(parser):
    parser.addoption("--store-durations", action="store_true",
                     help=f"write each test group's total seconds to {DURATIONS.name} (the order of the next runs)")


def _group_of(nodeid: str, shared_serve_app: bool) -> str:
    return "shared-serve-app" if shared_serve_app else nodeid.split("::")[0]


def _group(item) -> str:
    return _group_of(item.nodeid, item.get_closest_marker("shared_serve_app") is not None)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if "app" not in _running:
        _running["app"] = start_app(tmp_path_factory.mktemp("serve-app"), *SHARED_APP_SETTINGS)
    return _running["app"]


def pytest_runtest_teardown(item, nextitem):
    if _running and (nextitem is None or nextitem.get_closest_marker("shared_serve_app") is None):
        _running.clear()
        stop_app()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """For `make test`'s two pytest-xdist workers (`--dist loadgroup`): each test file is one group,
    so it runs whole in one worker and its module fixtures are built once, and the modules of the
    shared Serve app form one group. The longest groups go first (longest-processing-time-first
    scheduling), so the two workers finish close together instead of one waiting on a long group
    started last; a group not in the stored times goes after those with slow tests."""
    stored = json.loads(DURATIONS.read_text()) if DURATIONS.is_file() else {}
    group = {item.nodeid: _group(item) for item in items}
    slow_groups = {group[item.nodeid] for item in items if item.get_closest_marker("slow")}
    first = {}
    for n, item in enumerate(items):
        first.setdefault(group[item.nodeid], n)
    # Each group stays contiguous (a serial run too) and keeps its own order.
    items.sort(key=lambda item: (-stored.get(g := group[item.nodeid], 0.0), g not in slow_groups, first[g]))
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group[item.nodeid]))


def pytest_runtest_logreport(report):
    # Under xdist the controller sees every worker's reports.
    group = _group_of(report.nodeid, "shared_serve_app" in report.keywords)
    _measured[group] = _measured.get(group, 0.0) + report.duration


def pytest_sessionfinish(session):
    if session.config.getoption("store_durations") and not hasattr(session.config, "workerinput") and _measured:
        DURATIONS.write_text(json.dumps({k: round(v, 1) for k, v in sorted(_measured.items(), key=lambda kv: -kv[1])},
                                        indent=1) + "\n")


def pytest_collection_finish(session):
    names = [item.callspec.params["name"] for item in session.items
             if item.originalname == "test_runtime_env_pins_resolve_with_pips_resolver"]
    if names and pip_resolve.registry_reachable():
        for name in names:
            pip_resolve.start(name, pip_resolve.run_dir(session.config))
