"""Whole runs leasing on one PostgreSQL server from "several hosts" (issue 12): real pytest
processes, a real Appium 3 server with the fake driver, a cluster this module starts.

Two runs with lock folders of their own are two hosts as far as lock files know: only the server
keeps them apart. Where the machine allows it (root, ``unshare``), the second run also runs in a
network namespace and UTS namespace of its own (its own loopback, host name ``host-b``) and
reaches the server through its Unix socket, which a network namespace does not hide.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import shutil
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from pg_cluster import PASSWORD, PgCluster, free_port, wait_until
from test_parallel import (
    MEET,
    POOL,
    POOL_CASES,
    POOL_SOPS,
    clean_env,
    close_leftover_sessions,
    fake_device,
    meet_env,
    pytest_cmd,
    read_events,
    summary_counts,
    ts,
    write_suite,
)

from pytest_sop.pg_leases import HOLDERS

ROOT = Path(__file__).resolve().parent.parent
LEASES = "leases:\n  backend: postgres\n  dsn: {env: SOP_LEASES_DSN}\n"


@dataclass
class Result:
    """One Allure result: when its case ran (call start to stop, inside its lease) and on what."""

    run: str
    name: str
    status: str
    start: int  # ms
    stop: int
    device: str | None
    account: str | None


def allure_results(run: str, folder: Path) -> list[Result]:
    out = []
    for path in folder.glob("*-result.json"):
        data = json.loads(path.read_text())
        labels = {label["name"]: label["value"] for label in data.get("labels", [])}
        out.append(
            Result(run, data["name"], data["status"], data["start"], data["stop"], labels.get("device"),
                   labels.get("account"))
        )  # fmt: skip
    return out


def assert_no_overlaps(results: list[Result]) -> None:
    by: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        if r.device:
            by[f"device {r.device}"].append(r)
        if r.account:
            by[f"account {r.account}"].append(r)
    for resource, group in by.items():
        group.sort(key=lambda r: r.start)
        for a, b in itertools.pairwise(group):
            assert a.stop <= b.start, (
                f"{resource} used by two cases at once: {a.run}:{a.name} [{a.start}, {a.stop}] and "
                f"{b.run}:{b.name} [{b.start}, {b.stop}]"
            )


def netns_available() -> bool:
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("ip")):
        return False
    probe = subprocess.run(["unshare", "-n", "-u", "true"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


def in_netns(host: str, cmd: list[str]) -> list[str]:
    """``cmd`` in a network namespace of its own (loopback up) with host name ``host``."""
    script = 'ip link set lo up && hostname "$0" && exec "$@"'
    return ["unshare", "-n", "-u", "sh", "-c", script, host, *cmd]


def two_hosts(pg: PgCluster, appium_url: str, path: Path, *, netns: bool) -> list[Result]:
    """Run the pool suite twice at once, ``-n 2`` each, lock folders of their own, one lease server."""
    write_suite(path, POOL + LEASES, {**POOL_SOPS, "conftest.py": MEET})
    before = holder_writes(pg.dsn)
    procs: dict[str, subprocess.Popen[str]] = {}
    for run in ("host-a", "host-b"):
        args = [
            "-n", "2", f"-o=sop_lock_dir={path / ('locks-' + run)}", f"--alluredir={path / ('results-' + run)}",
            f"--sop-audit={path / f'audit-{run}.jsonl'}", "--sop-lease-timeout=120",
        ]  # fmt: skip
        # Both runs start their cases together (MEET), whatever each one's start-up took: a run in its own
        # network namespace starts an Appium of its own.
        env = clean_env(SOP_LEASES_DSN=pg.dsn, **meet_env(run, "host-a", "host-b"))
        cmd = pytest_cmd(*args, "--sop-appium", appium_url)
        if netns and run == "host-b":
            # Its own loopback: its own managed Appium, and the server through its Unix socket.
            env = clean_env(SOP_LEASES_DSN=pg.socket_dsn, SOP_APPIUM_HOME=str(ROOT), **meet_env(run, "host-a", "host-b"))
            cmd = in_netns(run, pytest_cmd(*args))
        procs[run] = subprocess.Popen(
            cmd, cwd=path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    outputs: dict[str, str] = {}
    try:
        for run, proc in procs.items():
            outputs[run] = proc.communicate(timeout=600)[0]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        close_leftover_sessions(appium_url, path / "audit-host-a.jsonl")
    results: list[Result] = []
    for run, proc in procs.items():
        out = outputs[run]
        assert proc.returncode == 0, out
        assert summary_counts(out) == {"passed": POOL_CASES}, out
        run_results = allure_results(run, path / f"results-{run}")
        assert len(run_results) == POOL_CASES and {r.status for r in run_results} == {"passed"}, run_results
        results += run_results
    a = [r for r in results if r.run == "host-a"]
    b = [r for r in results if r.run == "host-b"]
    assert any(x.start < y.stop and y.start < x.stop for x in a for y in b), "the two runs did not overlap"
    assert_no_overlaps(results)
    # Affinity: the pinned account only on its device, in both runs.
    pinned = [r for r in results if r.account == "acc-pinned"]
    assert len(pinned) == 6 and {r.device for r in pinned} == {"dev-a"}, pinned
    # Both runs really leased through the server: a holder record was written there for every case.
    wait_until(lambda: holder_writes(pg.dsn) - before >= 2 * POOL_CASES, 60)
    return results


def holder_writes(dsn: str) -> int:
    """Rows ever inserted or updated in the holder table (the server's statistics)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd), 0) FROM pg_stat_user_tables WHERE relname = %s", (HOLDERS,)
        ).fetchone()
    return int(row[0]) if row else 0


def test_two_hosts_one_lease_server_never_share_a_device_or_account(
    pg: PgCluster, appium_url: str, tmp_path: Path
) -> None:
    two_hosts(pg, appium_url, tmp_path, netns=False)


@pytest.mark.skipif(not netns_available(), reason="needs root and unshare -n -u (network and UTS namespaces)")
def test_two_hosts_in_two_network_namespaces(pg: PgCluster, appium_url: str, tmp_path: Path) -> None:
    two_hosts(pg, appium_url, tmp_path, netns=True)
    events = read_events(tmp_path / "audit-host-b.jsonl")
    assert {e["host"] for e in events if e["event"] == "lease"} == {"host-b"}, "the second run ran in its namespace"


# -- the server stops mid-run -----------------------------------------------------------


def test_server_stopped_mid_run_breaks_cases_clearly_and_books_nothing_after(appium_url: str, tmp_path: Path) -> None:
    cluster = PgCluster()
    try:
        cluster.start()
        write_suite(
            tmp_path,
            "devices:\n" + fake_device("dev-a") + fake_device("dev-b") + LEASES,
            {"slow.sop.yaml": "id: slow\ninputs: [{id: s1}, {id: s2}, {id: s3}, {id: s4}, {id: s5}, {id: s6}]\n"
             "steps:\n  - wait: 10\n  - assert_visible: {id: username}\n"},
        )  # fmt: skip
        audit = tmp_path / "audit.jsonl"
        proc = subprocess.Popen(
            pytest_cmd(
                "-n", "2", "-rA", "--sop-appium", appium_url, f"-o=sop_lock_dir={tmp_path / 'locks'}",
                f"--sop-audit={audit}", "--sop-lease-timeout=120",
            ),
            cwd=tmp_path, env=clean_env(SOP_LEASES_DSN=cluster.dsn), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 300
            while len([e for e in read_events(audit) if e["event"] == "lease"]) < 2:
                assert proc.poll() is None, proc.communicate()[0]
                assert time.monotonic() < deadline, "no two cases leased within 300 s"
                time.sleep(0.05)
            cluster.stop("fast")  # every session ended: the running cases' leases are gone
            stopped = dt.datetime.now(dt.UTC)
            out = proc.communicate(timeout=300)[0]  # no hang
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
            close_leftover_sessions(appium_url, audit)
    finally:
        cluster.destroy()
    assert proc.returncode == 1, out
    assert PASSWORD not in out
    server = f"lease server postgresql://sop:***@127.0.0.1:{cluster.port}/postgres"
    events = read_events(audit)
    leases = [e for e in events if e["event"] == "lease"]
    # Nothing was leased once the server was gone.
    assert leases and all(ts(e) < stopped for e in leases), [(e["case"], e["ts"]) for e in leases]
    outcomes: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for e in events:
        if e["event"] == "outcome":
            outcomes[e["case"]].append((e["phase"], e["outcome"]))
    assert len(outcomes) == 6, outcomes
    leased = {e["case"] for e in leases}
    # The cases running when it stopped finished their steps, then broke at teardown: their lease was lost.
    lost = [c for c in leased if ("teardown", "error") in outcomes[c]]
    assert lost, (dict(outcomes), out)
    assert f"the connection to {server} holding this lease was lost" in out, out
    # Every case after them broke at setup, naming the server; none ran without a lease.
    never_leased = [c for c in outcomes if c not in leased]
    assert never_leased and all(outcomes[c] == [("setup", "error")] for c in never_leased), outcomes
    assert server in out
    assert summary_counts(out).get("passed", 0) <= len(leases), out


# -- a bad lease server stops the run before any case --------------------------------------


def test_unreachable_server_stops_the_run_before_any_case(pytester: pytest.Pytester, appium_url: str) -> None:
    write_suite(pytester.path, "devices:\n" + fake_device("dev-a"), {"a.sop.yaml": "id: a\nsteps:\n  - wait: 0\n"})
    port = free_port()
    audit = pytester.path / "audit.jsonl"
    run = subprocess.run(
        pytest_cmd("--sop-appium", appium_url, f"--sop-leases=postgresql://sop:{PASSWORD}@127.0.0.1:{port}/db",
                   f"--sop-audit={audit}"),
        cwd=pytester.path, env=clean_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 4, out  # a usage error
    assert f"lease server postgresql://sop:***@127.0.0.1:{port}/db cannot be used" in out, out
    assert PASSWORD not in out
    assert not [e for e in read_events(audit) if e["event"] in ("lease", "outcome")]


def test_unset_dsn_variable_stops_the_run_naming_it(pytester: pytest.Pytester, appium_url: str) -> None:
    write_suite(
        pytester.path, "devices:\n" + fake_device("dev-a") + LEASES, {"a.sop.yaml": "id: a\nsteps:\n  - wait: 0\n"}
    )
    run = subprocess.run(
        pytest_cmd("--sop-appium", appium_url), cwd=pytester.path, env=clean_env(), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 4, out
    assert "sop.yaml:" in out and "leases.dsn: environment variable SOP_LEASES_DSN is not set" in out, out


LOSE_LEASE = """\
import os

import psycopg


def test_uses_the_device(sop_device):
    # Every other connection holding an advisory lock is ended: this test's lease among them.
    with psycopg.connect(os.environ["SOP_LEASES_DSN"], autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid()"
        )
    assert sop_device.id == "dev-a"
"""


def test_a_python_test_whose_lease_was_lost_errors_at_teardown(pg: PgCluster, tmp_path: Path) -> None:
    write_suite(tmp_path, "devices:\n" + fake_device("dev-a") + LEASES, {"test_lose.py": LOSE_LEASE})
    run = subprocess.run(
        pytest_cmd("-p", "no:xdist", f"-o=sop_lock_dir={tmp_path / 'locks'}", "test_lose.py"),
        cwd=tmp_path, env=clean_env(SOP_LEASES_DSN=pg.dsn), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert summary_counts(out) == {"passed": 1, "error": 1}, out
    assert "device dev-a: the connection to lease server postgresql://sop:***@127.0.0.1:" in out, out
    assert PASSWORD not in out
