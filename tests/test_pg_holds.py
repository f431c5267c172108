"""Paused-case holds on the PostgreSQL lease backend (issue 11 on issue 12's leases): a pause on one
host keeps its device and account against every host, after the pausing process is gone.

A real server this module starts (tests/pg_cluster.py); whole runs are real pytest processes on the
fake driver through a real Appium 3 server (tests/test_resume.py's helpers). Two lock folders are two
hosts as far as lock files know: only the lease server keeps them apart.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pg_cluster import PASSWORD, PgCluster, wait_until
from test_holds import hold
from test_leasing import D1, D2, account
from test_resume import CHECKED, OTHER, POLICY, approve, audit, cli, devices, make_suite, paused, run, run_ids

from pytest_sop import pg_leases
from pytest_sop.errors import LeaseTimeout, SopError
from pytest_sop.holds import Hold
from pytest_sop.leasing import format_lease_table
from pytest_sop.pg_leases import HOLDERS, META, PgLeasePool, check_server, lease_table

LEASES = "leases:\n  backend: postgres\n  dsn: {env: SOP_LEASES_DSN}\n"
A1 = account("a1")


@pytest.fixture
def dsn(pg: PgCluster) -> Iterator[str]:
    check_server(pg.dsn)
    yield pg.dsn
    with psycopg.connect(pg.dsn, autocommit=True) as conn:  # no test sees another's holds
        conn.execute(f"DELETE FROM {HOLDERS}")


def pause_on(pool: PgLeasePool, kept: Hold) -> None:
    lease = pool.acquire([(D1, A1)], case="a.sop.yaml::a", timeout=0, requirement="r")
    lease.keep_for(kept)
    assert lease.released


def advisory_locks(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted").fetchone()
    return int(row[0]) if row else 0


def held_rows(dsn: str) -> list[tuple[str, str, str]]:
    """(kind, id, hold id) of every holder record carrying a hold."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(f"SELECT kind, id, hold->>'hold_id' FROM {HOLDERS} WHERE hold IS NOT NULL ORDER BY kind")
        return [tuple(r) for r in rows.fetchall()]


# -- the lease mechanism ---------------------------------------------------------------


def test_a_hold_keeps_device_and_account_busy_on_every_host(dsn: str) -> None:
    host_a, host_b = PgLeasePool(dsn, "run-a", "bob"), PgLeasePool(dsn, "run-b", "carol")
    pause_on(host_a, hold())
    host_a.close()  # the pausing run's connections are gone; its hold is not
    assert advisory_locks(dsn) == 0 and held_rows(dsn) == [("account", "a1", "h1"), ("device", "d1", "h1")]
    for pair in ((D1, None), (D2, A1)):
        with pytest.raises(LeaseTimeout, match=r"on hold h1 for paused case a.sop.yaml::a, waiting for approval ok"):
            host_b.acquire([pair], case="b.sop.yaml::b", timeout=0, requirement="r")
    host_b.acquire([(D2, None)], case="b.sop.yaml::b", timeout=0, requirement="r").release()  # not held
    rows = lease_table(dsn, [D1, D2], [A1])
    assert [(r.kind, r.id, r.state) for r in rows] == [
        ("device", "d1", "held"), ("device", "d2", "free"), ("account", "a1", "held"),
    ]  # fmt: skip
    table = format_lease_table(rows)
    assert "device   d1  hold   a.sop.yaml::a  bob" in table and "device   d2  free" in table, table
    assert "device d1: on hold h1 for paused case a.sop.yaml::a" in table, table
    # Only holds in the way: an endless timeout still ends at once, naming the hold.
    raised: list[BaseException] = []

    def wait_for_d1() -> None:
        try:
            host_b.acquire([(D1, None)], case="b", timeout=-1, requirement="r").release()
        except LeaseTimeout as e:
            raised.append(e)

    waiter = threading.Thread(target=wait_for_d1, daemon=True)
    waiter.start()
    waiter.join(120)
    assert not waiter.is_alive() and len(raised) == 1 and "on hold h1" in str(raised[0])
    host_b.close()


def test_the_paused_case_takes_its_hold_over_from_another_host(dsn: str) -> None:
    host_a, host_b = PgLeasePool(dsn, "run-a", "bob"), PgLeasePool(dsn, "run-b", "bob")
    pause_on(host_a, hold())
    resumed = host_b.acquire([(D1, A1)], case="a", timeout=0, requirement="r", hold="h1", keep_hold=True)
    # A resume keeps the hold in the records while it runs: if it dies, the device stays held.
    rows = lease_table(dsn, [D1], [A1])
    assert all(r.state == "held" and r.holder is not None and r.holder.hold is not None for r in rows), rows
    assert "held" in format_lease_table(rows) and " hold " not in format_lease_table(rows)  # running: not a pause
    with pytest.raises(SopError, match="in use by a running case"):
        pg_leases.release_hold(dsn, "device", "d1", "h1")
    resumed.keep_for(hold())  # what a killed or interrupted resume leaves: still held
    with pytest.raises(LeaseTimeout, match="on hold h1"):
        host_a.acquire([(D1, None)], case="b", timeout=0, requirement="r")
    # Run again from the start: the hold is taken and ends there.
    again = host_a.acquire([(D1, A1)], case="a", timeout=0, requirement="r", hold="h1")
    assert held_rows(dsn) == []
    again.release()
    host_b.acquire([(D1, A1)], case="b", timeout=0, requirement="r").release()
    assert advisory_locks(dsn) == 0
    host_a.close()
    host_b.close()


def test_a_resume_whose_connection_dies_leaves_the_hold(dsn: str) -> None:
    """Its process killed, its host gone: the server ends the resume's connection and frees its locks,
    but not the hold its records carry. Not a free device with a half-done case."""
    host_a, host_b = PgLeasePool(dsn, "run-a", "bob"), PgLeasePool(dsn, "run-b", "bob")
    pause_on(host_a, hold())
    resumed = host_b.acquire([(D1, A1)], case="a", timeout=0, requirement="r", hold="h1", keep_hold=True)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid()"
        )
    wait_until(lambda: advisory_locks(dsn) == 0, 30)
    assert resumed.lost() is not None
    resumed.release()
    with pytest.raises(LeaseTimeout, match="on hold h1"):
        host_a.acquire([(D1, None)], case="b", timeout=0, requirement="r")
    assert [r.state for r in lease_table(dsn, [D1], [A1])] == ["held", "held"]
    host_a.acquire([(D1, A1)], case="a", timeout=0, requirement="r", hold="h1", keep_hold=True).release()
    assert held_rows(dsn) == []
    host_a.close()
    host_b.close()


def test_expired_and_released_holds_hold_nothing(dsn: str) -> None:
    host_a, host_b = PgLeasePool(dsn, "run-a", "bob"), PgLeasePool(dsn, "run-b", "bob")
    pause_on(host_a, hold(seconds=-1))
    assert [r.state for r in lease_table(dsn, [D1], [A1])] == ["free", "free"]
    host_b.acquire([(D1, A1)], case="b", timeout=0, requirement="r").release()
    pause_on(host_a, hold("h2"))
    assert pg_leases.release_hold(dsn, "device", "d1", "other-id") is False  # not this hold: untouched
    assert held_rows(dsn) == [("account", "a1", "h2"), ("device", "d1", "h2")]
    assert pg_leases.release_hold(dsn, "device", "d1", "h2") and pg_leases.release_hold(dsn, "account", "a1", "h2")
    assert held_rows(dsn) == []
    host_b.acquire([(D1, A1)], case="b", timeout=0, requirement="r").release()
    host_a.close()
    host_b.close()


# -- the holder table's schema ---------------------------------------------------------

V1_TABLE = (
    f"CREATE TABLE {HOLDERS} ("
    " kind text NOT NULL, id text NOT NULL, lock_key bigint NOT NULL, backend_pid integer NOT NULL,"
    " run_id text NOT NULL, host text NOT NULL, pid integer NOT NULL, worker text,"
    " case_name text NOT NULL, operator text NOT NULL, since text NOT NULL, PRIMARY KEY (kind, id))"
)


def test_a_version_1_holder_table_is_migrated(pg: PgCluster) -> None:
    """A server whose tables an earlier pytest-sop made (schema version 1, no holds) gets the hold column
    on first use, keeps its records, and then keeps holds."""
    with psycopg.connect(pg.dsn, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS v1_leases")
        admin.execute("CREATE DATABASE v1_leases")
    dsn = pg.dsn.rsplit("/", 1)[0] + "/v1_leases"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {META} (key text PRIMARY KEY, value text NOT NULL)")
        conn.execute(f"INSERT INTO {META} VALUES ('schema_version', '1')")
        conn.execute(V1_TABLE)
        conn.execute(
            f"INSERT INTO {HOLDERS} VALUES ('device', 'd2', 1, 1, 'old-run', 'h', 1, NULL, 'old::case', 'o', 's')"
        )
    check_server(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute(f"SELECT value FROM {META} WHERE key = 'schema_version'").fetchone() == ("2",)
        assert conn.execute(f"SELECT case_name, hold FROM {HOLDERS}").fetchall() == [("old::case", None)]
    check_server(dsn)  # once migrated, nothing more to do
    pool = PgLeasePool(dsn, "run-a", "bob")
    pause_on(pool, hold())
    assert held_rows(dsn) == [("account", "a1", "h1"), ("device", "d1", "h1")]
    with pytest.raises(LeaseTimeout, match="on hold h1"):
        pool.acquire([(D1, None)], case="b", timeout=0, requirement="r")
    pool.close()


# -- whole runs on two hosts -----------------------------------------------------------


@pytest.fixture
def suite(tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SOP_LEASES_DSN", dsn)  # the runs and commands below inherit it
    return make_suite(
        tmp_path, {"checked.sop.yaml": CHECKED, "other.sop.yaml": OTHER}, LEASES + devices("fake-phone") + POLICY
    )


HOST_B = "-o", "sop_lock_dir=locks-b"  # the suite's pytest.ini says locks: host A


def pause(suite: Path, url: str, *args: str) -> dict[str, object]:
    code, out = run(suite, url, "checked.sop.yaml", *args)
    assert code == 0 and "awaiting approval: caption-ok" in out, out
    (record,) = paused(suite)
    return record


def leases(suite: Path) -> str:
    shown = cli(suite, "leases")
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def test_a_pause_holds_on_every_host_and_another_host_resumes_it(suite: Path, dsn: str, appium_url: str) -> None:
    pause(suite, appium_url)
    # The pausing process is gone, and with it every advisory lock; the hold stays in the table.
    assert advisory_locks(dsn) == 0
    (hold_id,) = {h for _, _, h in held_rows(dsn)}
    assert held_rows(dsn) == [("account", "eu-1", hold_id), ("device", "fake-phone", hold_id)]
    table = leases(suite)
    assert "device   fake-phone  hold   checked.sop.yaml::checked" in table, table
    assert "account  eu-1        hold   checked.sop.yaml::checked" in table, table
    assert "waiting for approval caption-ok (role lead)" in table, table

    # Another host may not take the held device; only the hold is in the way, so it fails at once.
    code, out = run(suite, appium_url, "other.sop.yaml", *HOST_B, "--sop-lease-timeout=3600")
    assert code != 0 and "on hold" in out and "paused case checked.sop.yaml::checked" in out, out

    approve(suite, "--note", "fine")
    code, out = run(suite, appium_url, "--sop-resume", "-v", *HOST_B)
    assert code == 0 and "checked.sop.yaml::checked PASSED" in out and "1 passed, 1 deselected" in out, out
    pause_run, resume_run = run_ids(suite)[0], run_ids(suite)[-1]
    lease = next(e for e in audit(suite) if e["event"] == "lease" and e["run"] == resume_run)
    assert (lease["device"], lease["account"], lease["resumes_run"]) == ("fake-phone", "eu-1", pause_run)

    # The hold ended with the case, on every host.
    assert paused(suite) == [] and held_rows(dsn) == []
    assert " hold " not in leases(suite)
    assert run(suite, appium_url, "other.sop.yaml", "--sop-lease-timeout=0")[0] == 0


def test_handoff_release_frees_a_hold_on_the_lease_server(
    suite: Path, dsn: str, appium_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pause(suite, appium_url)
    assert held_rows(dsn)
    approve(suite)
    # Resumed with lock files, the device would be the case's twice over: refused, the hold stays.
    code, out = run(suite, appium_url, "--sop-resume", "--sop-leases", "file")
    assert code == 1 and "this case paused with its hold in lease server postgresql://sop:***@" in out, out
    assert len(paused(suite)) == 1 and len(held_rows(dsn)) == 2
    # The DSN comes from sop.yaml (or --leases); without it nothing is released.
    monkeypatch.delenv("SOP_LEASES_DSN")
    refused = cli(suite, "handoff", "release", "checked", "--by", "alice")
    assert refused.returncode == 2 and "SOP_LEASES_DSN is not set" in refused.stderr, refused.stderr
    assert len(paused(suite)) == 1 and len(held_rows(dsn)) == 2
    # Released on another server, the hold would stay where it is while the pause was called over.
    elsewhere = dsn.rsplit("/", 1)[0] + "/template1"
    refused = cli(suite, "handoff", "release", "checked", "--by", "alice", "--leases", elsewhere)
    assert refused.returncode == 2 and "not on postgresql://sop:***@127.0.0.1:" in refused.stderr, refused.stderr
    assert PASSWORD not in refused.stdout + refused.stderr
    assert len(paused(suite)) == 1 and len(held_rows(dsn)) == 2
    code, out = run(suite, appium_url, "--sop-resume", "--sop-leases", elsewhere)
    assert code == 1 and "this run leases from lease server postgresql://sop:***@" in out, out
    assert len(paused(suite)) == 1 and len(held_rows(dsn)) == 2
    released = cli(suite, "handoff", "release", "checked", "--by", "alice", "--leases", dsn)
    assert released.returncode == 0 and "released: checked [checked] on fake-phone with eu-1" in released.stdout
    assert PASSWORD not in released.stdout + released.stderr
    assert paused(suite) == [] and held_rows(dsn) == []
    monkeypatch.setenv("SOP_LEASES_DSN", dsn)
    assert " hold " not in leases(suite)
    assert run(suite, appium_url, "other.sop.yaml", *HOST_B, "--sop-lease-timeout=0")[0] == 0
    assert run(suite, appium_url, "--sop-resume")[0] == 5  # nothing paused: nothing collected
