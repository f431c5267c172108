"""``discover: grid`` (issue 12): a real Selenium Grid 4 (hub and relay node, tests/grid_cluster.py)
in front of the test run's real Appium 3 server with the fake driver."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from appium import webdriver
from appium.options.common import AppiumOptions
from grid_cluster import Grid, get_json
from pg_cluster import wait_until
from test_engine_fake import APP
from test_parallel import clean_env, pytest_cmd, read_events, summary_counts, write_suite

from pytest_sop.appium_server import ManagedAppium
from pytest_sop.errors import SopInvalid
from pytest_sop.grid import parse_grid_status
from pytest_sop.model import SourcePos
from pytest_sop.suiteconfig import load_config

EPOCH = "1970-01-01T00:00:00Z"


def stereotype(udid: str) -> dict[str, Any]:
    return {"platformName": "Fake", "appium:automationName": "Fake", "appium:app": str(APP), "appium:udid": udid}


@pytest.fixture(scope="module")
def grid(appium_server: ManagedAppium, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grid]:
    g = Grid(tmp_path_factory.mktemp("grid"), appium_server.url, [stereotype("fake-1"), stereotype("fake-2")])
    try:
        g.start()
        yield g
    finally:
        g.stop()


def config_for(path: Path, url: str) -> Path:
    (path / "sop.yaml").write_text(f"devices:\n  - discover: grid\n    url: {url}\n")
    return path / "sop.yaml"


def test_every_appium_slot_is_a_device(grid: Grid, tmp_path: Path) -> None:
    config = load_config(str(config_for(tmp_path, grid.url)), "sop.yaml")
    assert [(d.id, d.platform, d.server) for d in config.devices] == [
        ("fake-1", "fake", grid.url), ("fake-2", "fake", grid.url),
    ]  # fmt: skip
    assert dict(config.devices[0].capabilities) == stereotype("fake-1")
    assert config.devices[0].pos == SourcePos("sop.yaml", 3, 10)  # where its grid is written


def test_slots_without_udid_or_appium() -> None:
    status = {
        "value": {
            "ready": True,
            "nodes": [
                {
                    "uri": "http://10.0.0.7:5555",
                    "availability": "UP",
                    "slots": [
                        {"stereotype": {"platformName": "Android", "appium:automationName": "UiAutomator2"}},
                        {"stereotype": {"browserName": "chrome", "platformName": "linux"}},  # not Appium
                    ],
                },
                {"uri": "http://10.0.0.8:5555", "availability": "DOWN", "slots": [{"stereotype": stereotype("x")}]},
            ],
        }
    }
    devices = parse_grid_status(status, "http://grid:4444", SourcePos("sop.yaml", 1, 1))
    assert [(d.id, d.platform, d.server) for d in devices] == [("grid-10-0-0-7-5555-0", "android", "http://grid:4444")]


def test_unreachable_grid_is_an_error_naming_it_and_the_line(tmp_path: Path) -> None:
    from pg_cluster import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SopInvalid) as e:
        load_config(str(config_for(tmp_path, url)), "sop.yaml")
    assert f"sop.yaml:3:10: devices[0].url: the grid at {url} cannot be asked for its slots" in str(e.value), str(
        e.value
    )
    (tmp_path / "sop.yaml").write_text("devices:\n  - discover: grid\n")
    with pytest.raises(SopInvalid, match="missing required key 'url'"):
        load_config(str(tmp_path / "sop.yaml"), "sop.yaml")


SOPS = {
    "look.sop.yaml": (
        "id: look\ninputs: [{id: r1}, {id: r2}, {id: r3}, {id: r4}, {id: r5}, {id: r6}]\n"
        "steps:\n  - wait: 1\n  - assert_visible: {id: username}\n"
    )
}


def test_a_suite_on_two_grid_slots(grid: Grid, appium_url: str, tmp_path: Path) -> None:
    write_suite(tmp_path, f"devices:\n  - discover: grid\n    url: {grid.url}\n", SOPS)
    before = {s["stereotype"]["appium:udid"]: s["lastStarted"] for s in grid.slots()}
    audit = tmp_path / "audit.jsonl"
    run = subprocess.run(
        pytest_cmd("-n", "2", "--sop-appium", appium_url, f"-o=sop_lock_dir={tmp_path / 'locks'}",
                   f"--sop-audit={audit}", "--sop-lease-timeout=120"),
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert summary_counts(out) == {"passed": 6}, out
    events = read_events(audit)
    # Both slots used, every session through the grid.
    assert {e["device"] for e in events if e["event"] == "lease"} == {"fake-1", "fake-2"}
    assert {e["endpoint"] for e in events if e["event"] == "session"} == {grid.url}
    after = {s["stereotype"]["appium:udid"]: s["lastStarted"] for s in grid.slots()}
    assert all(after[u] != before[u] for u in ("fake-1", "fake-2")), (before, after)
    # Every session deleted: the grid's slots are free again (and Appium has none: appium_url checks).
    wait_until(lambda: all(s["session"] is None for s in grid.slots()), 60, 0.2)


def test_a_slot_busy_outside_the_leases_is_waited_for_within_the_lease_timeout(
    grid: Grid, appium_url: str, tmp_path: Path
) -> None:
    write_suite(
        tmp_path,
        f"devices:\n  - discover: grid\n    url: {grid.url}\n",
        {"one.sop.yaml": "id: one\nrequires:\n  device: {id: fake-1}\nsteps:\n  - wait: 0\n"},
    )
    # Someone else's session on fake-1's slot, made through the grid, not through any lease.
    other = webdriver.Remote(grid.url, options=AppiumOptions().load_capabilities(stereotype("fake-1")))
    try:
        run = subprocess.run(
            pytest_cmd("--sop-appium", appium_url, f"-o=sop_lock_dir={tmp_path / 'locks'}", "--sop-lease-timeout=3",
                       "-p", "no:xdist"),
            cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        out = run.stdout + run.stderr
        assert run.returncode == 1, out
        assert f"the grid at {grid.url} kept this device's slot busy for 3 s (the lease timeout)" in out, out
        # Nothing was left queued in the grid for later.
        queue = get_json(f"{grid.url}/se/grid/newsessionqueue/queue")["value"]
        assert queue == [], queue
    finally:
        other.quit()
    # Once the slot is free, the same case runs.
    run = subprocess.run(
        pytest_cmd("--sop-appium", appium_url, f"-o=sop_lock_dir={tmp_path / 'locks'}", "--sop-lease-timeout=60",
                   "-p", "no:xdist"),
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    wait_until(lambda: all(s["session"] is None for s in grid.slots()), 60, 0.2)
