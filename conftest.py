"""Shared test fixtures: one real Appium 3 server per test process (from this repo's node_modules)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_sop.appium_server import ManagedAppium, find_appium_home, open_sessions

ROOT = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def appium_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedAppium]:
    home = find_appium_home(ROOT)
    if home is None:
        pytest.fail("Appium is not installed: run `npm ci` (scripts/setup does)")
    server = ManagedAppium(home, tmp_path_factory.mktemp("appium") / "appium.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def appium_url(appium_server: ManagedAppium) -> Iterator[str]:
    """The shared server's URL; every test must leave no session open on it."""
    yield appium_server.url
    assert open_sessions(appium_server.url) == []
