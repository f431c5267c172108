"""Shared test fixtures: one real Appium 3 server per test process (from this repo's node_modules)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from pytest_sop.appium_server import ManagedAppium, find_appium_home, open_sessions

ROOT = Path(__file__).resolve().parent


@contextlib.contextmanager
def ctrl_c_reaches_children() -> Iterator[None]:
    """Children started inside take Ctrl-C as from a terminal (Python's KeyboardInterrupt), even when
    this run was started where SIGINT is ignored (a script's background job): exec keeps an ignored
    signal ignored, and a handled one goes back to its default."""
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


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
def own_appium(tmp_path: Path) -> Iterator[ManagedAppium]:
    """An Appium server of this test alone: its log, its sessions and the connections kept to it
    are this test's only."""
    home = find_appium_home(ROOT)
    if home is None:
        pytest.fail("Appium is not installed: run `npm ci` (scripts/setup does)")
    server = ManagedAppium(home, tmp_path / "appium.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def appium_url(appium_server: ManagedAppium) -> Iterator[str]:
    """The shared server's URL; every test must leave no session open on it."""
    yield appium_server.url
    assert open_sessions(appium_server.url) == []


@dataclass(frozen=True)
class ExampleRun:
    returncode: int
    output: str
    results: Path


# How long a new post is "Processing…" in the example suite's runs here: publish-post waits to see that state,
# which a loaded host could miss with the demo's 1 s (example_suite/conftest.py reads it).
EXAMPLE_PUBLISH_DELAY = {"SNAPGRAM_PUBLISH_DELAY": "3"}


def _run_example_suite(folder: Path) -> ExampleRun:
    """README command 1's run: the example suite on its two demo phones, one worker per phone.

    Its lock folder is its own: other tests lease pixel-7 too, and must not queue behind it."""
    results = folder / "allure-results"
    # As a person runs it from a shell: nothing of this test run's own xdist worker or options.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST") and k != "PYTEST_ADDOPTS"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--sop", "-n", "auto", "-p", "no:cacheprovider", f"--alluredir={results}",
         "-o", f"sop_lock_dir={folder / 'locks'}"],
        cwd=ROOT / "example_suite", env={**env, **EXAMPLE_PUBLISH_DELAY}, capture_output=True, text=True,
        timeout=1200,
    )  # fmt: skip
    (folder / "run.json").write_text(json.dumps({"returncode": run.returncode, "output": run.stdout + run.stderr}))
    return ExampleRun(run.returncode, run.stdout + run.stderr, results)


@pytest.fixture(scope="session")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> ExampleRun:
    """The example suite, run once per test run and shared by xdist workers (it is slow)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return _run_example_suite(tmp_path_factory.mktemp("example"))
    shared = tmp_path_factory.getbasetemp().parent / "example-run"
    with FileLock(str(shared) + ".lock"):
        done = shared / "run.json"
        if done.exists():
            data = json.loads(done.read_text())
            return ExampleRun(data["returncode"], data["output"], shared / "allure-results")
        shared.mkdir(exist_ok=True)
        return _run_example_suite(shared)


@pytest.fixture(scope="module")
def pg() -> Iterator[Any]:
    """A PostgreSQL cluster of the test module's own (tests/pg_cluster.py), stopped and removed after it."""
    from pg_cluster import PgCluster  # tests/ is on sys.path once a test module there is imported

    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
