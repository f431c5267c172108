"""Leases on PostgreSQL (issue 12), proved with real processes and a real server this module starts
(tests/pg_cluster.py): exclusion under load, a killed holder's leases freed, holders named across
hosts, the holder table, bad servers refused before anything is leased."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pg_cluster import PASSWORD, PgCluster, wait_until
from test_leasing import D1, D2, Workers, account, check_logs, release, run_cycles, wait_for

from pytest_sop.errors import LeaseServerError, LeaseTimeout
from pytest_sop.lease_backend import dsn_problem, lease_target
from pytest_sop.leasing import format_lease_table
from pytest_sop.model import Leases, Secret, SourcePos
from pytest_sop.pg_leases import (
    HOLDERS,
    META,
    PgLeasePool,
    check_server,
    describe_server,
    lease_table,
    lock_key,
)

POS = SourcePos("sop.yaml", 3, 3)


@pytest.fixture
def dsn(pg: PgCluster) -> Iterator[str]:
    yield pg.dsn
    # Every test leaves the server as it found it: no lock held by a connection of ours.
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {HOLDERS}")


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    w = Workers(tmp_path / "locks")
    yield w
    w.close()


def held_keys(dsn: str) -> set[int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted"
        ).fetchall()
    return {r[0] for r in rows}


# -- exclusion under load --------------------------------------------------------------


def test_eight_processes_on_two_hosts_never_share_a_device_or_account(
    dsn: str, tmp_path: Path, workers: Workers
) -> None:
    # Half the processes lease in one lock folder, half in another: two hosts as far as lock files
    # know. Only the server keeps them apart.
    n, procs = 100, 8
    accounts = [{"id": "a1"}, {"id": "a2", "devices": ["d2"]}]
    all_pairs: list[list[str | None]] = [["d1", "a1"], ["d2", "a1"], ["d2", "a2"]]
    pair_lists = [all_pairs[i % 3 :] + all_pairs[: i % 3] for i in range(procs)]
    original = workers.start

    def start_on_host(cmd: str, env: dict[str, str] | None = None, **spec: object) -> subprocess.Popen[str]:
        host = int(str(spec["name"])[1:]) % 2
        return original(cmd, env, dsn=dsn, lock_dir=str(tmp_path / f"host-{host}"), **spec)

    workers.start = start_on_host  # type: ignore[method-assign]
    logs = run_cycles(workers, tmp_path, pair_lists, n, accounts)
    intervals = check_logs(logs, n, tmp_path / "counters")
    # Affinity: a2 only ever on d2.
    assert all(c["device"] == "d2" for out in logs for c in out["log"] if c["account"] == "a2")
    assert {c["device"] for out in logs for c in out["log"]} == {"d1", "d2"}
    assert sum(len(v) for k, v in intervals.items() if k.startswith("device")) == n * procs
    assert held_keys(dsn) == set(), "every lock released"


def test_kill_9_frees_the_lease_for_another_host(dsn: str, tmp_path: Path, workers: Workers) -> None:
    holder, got = workers.hold(tmp_path, [["d1", "a1"]], "a.sop.yaml::hold", dsn=dsn, accounts=[{"id": "a1"}])
    assert got["device"] == "d1"
    waiting, out = tmp_path / "waiting", tmp_path / "out.json"
    waiter = workers.start(
        "wait", dsn=dsn, lock_dir=str(tmp_path / "other-host"), pairs=[["d1", "a1"]], accounts=[{"id": "a1"}],
        case="b.sop.yaml::wait", timeout=60.0, waiting=str(waiting), out=str(out),
    )  # fmt: skip
    wait_for(waiting, waiter)
    killed = time.monotonic_ns()
    holder.kill()
    holder.wait()
    wait_for(out, waiter, limit=60.0)
    result = json.loads(out.read_text())
    assert (result["device"], result["account"]) == ("d1", "a1")
    # The server freed the dead holder's locks as its connection dropped; the benchmark asserts how fast.
    assert result["acquired_ns"] > killed
    release(waiter)


def test_a_waiting_case_holds_nothing_while_it_waits(dsn: str, tmp_path: Path, workers: Workers) -> None:
    # Global order: the account sorts first; the waiter never keeps a1 while d1 is busy.
    holder, _ = workers.hold(tmp_path, [["d1", None]], "a.sop.yaml::hold", dsn=dsn)
    waiting = tmp_path / "waiting"
    waiter = workers.start(
        "wait", dsn=dsn, pairs=[["d1", "a1"]], accounts=[{"id": "a1"}], case="b::wait", timeout=60.0,
        waiting=str(waiting), out=str(tmp_path / "out.json"),
    )  # fmt: skip
    wait_for(waiting, waiter)
    pool = PgLeasePool(dsn, "r", "o")
    for _ in range(20):  # a1 stays free while the waiter polls for d1
        pool.acquire([(D2, account("a1"))], case="c", timeout=5, requirement="a1").release()
    release(holder)
    wait_for(tmp_path / "out.json", waiter)
    release(waiter)
    pool.close()


# -- holders, across hosts ---------------------------------------------------------------


def test_timeout_message_and_table_name_the_holder_on_another_host(
    dsn: str, pg: PgCluster, tmp_path: Path, workers: Workers
) -> None:
    holder, _ = workers.hold(
        tmp_path, [["d1", "a1"]], "a.sop.yaml::hold", dsn=dsn, accounts=[{"id": "a1"}],
        run_id="run-on-b", operator="bob", worker="gw3",
    )  # fmt: skip
    pool = PgLeasePool(dsn, "run-on-a", "alice")
    started = time.monotonic()
    with pytest.raises(LeaseTimeout) as e:
        pool.acquire([(D1, account("a1"))], case="x::y", timeout=0.3, requirement="device d1, account a1")
    assert time.monotonic() - started < 30
    message = str(e.value)
    assert "no device and account free for device d1, account a1 within 0.3 s" in message
    assert f"device d1: held by case a.sop.yaml::hold (pid {holder.pid} on " in message
    assert "worker gw3, operator bob, run run-on-b" in message
    assert "account a1: held by case a.sop.yaml::hold" in message
    rows = lease_table(dsn, [D1, D2], [account("a1")])
    assert [(r.kind, r.id, r.state) for r in rows] == [
        ("device", "d1", "held"), ("device", "d2", "free"), ("account", "a1", "held"),
    ]  # fmt: skip
    assert rows[0].holder is not None and rows[0].holder.operator == "bob" and rows[0].pid == holder.pid
    release(holder)
    assert [r.state for r in lease_table(dsn, [D1], [account("a1")])] == ["free", "free"]
    pool.close()


def test_a_record_left_by_a_dead_connection_shows_as_free(dsn: str, tmp_path: Path, workers: Workers) -> None:
    holder, _ = workers.hold(tmp_path, [["d1", None]], "a.sop.yaml::hold", dsn=dsn)
    holder.kill()
    holder.wait()
    wait_until(lambda: lock_key("device-d1") not in held_keys(dsn), 30)
    with psycopg.connect(dsn, autocommit=True) as conn:
        left = conn.execute(f"SELECT case_name FROM {HOLDERS} WHERE id = 'd1'").fetchall()
    assert left == [("a.sop.yaml::hold",)], "the dead holder's record is still in the table"
    (row,) = lease_table(dsn, [D1], [])
    assert (row.state, row.holder) == ("free", None)
    # ... and a new holder takes the device and writes its own record over it.
    with PgLeasePool(dsn, "r2", "carol").acquire([(D1, None)], case="new::case", timeout=5, requirement="d1"):
        (row,) = lease_table(dsn, [D1], [])
        assert row.holder is not None and row.holder.case == "new::case"


def test_hand_over_renames_the_records_on_the_same_connection(dsn: str) -> None:
    pool = PgLeasePool(dsn, "r", "o", "gw0")
    lease = pool.acquire([(D1, account("a1"))], case="first", timeout=5, requirement="r")
    keys = held_keys(dsn)
    second = lease.hand_over("second", "r")
    assert lease.released and not second.released
    assert held_keys(dsn) == keys, "never let go in between"
    assert {r.holder.case for r in lease_table(dsn, [D1], [account("a1")]) if r.holder} == {"second"}
    assert second.lost() is None
    second.release()
    assert lock_key("device-d1") not in held_keys(dsn)
    pool.close()


def test_lease_is_lost_when_its_connection_is_ended(dsn: str) -> None:
    pool = PgLeasePool(dsn, "r", "o")
    lease = pool.acquire([(D1, None)], case="c", timeout=5, requirement="r")
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s",
            (lock_key("device-d1") & 0xFFFFFFFF,),
        )
    lost = wait_until_lost(lease)
    assert "the connection to lease server postgresql://sop:***@127.0.0.1:" in lost and PASSWORD not in lost
    lease.release()  # nothing left to let go of: no error
    # The next lease works on a new connection.
    pool.acquire([(D1, None)], case="c2", timeout=5, requirement="r").release()
    pool.close()


def wait_until_lost(lease: object) -> str:
    found: list[str] = []

    def check() -> bool:
        why = lease.lost()  # type: ignore[attr-defined]
        if why:
            found.append(why)
        return bool(why)

    wait_until(check, 30)
    return found[0]


# -- the table and bad servers ----------------------------------------------------------


def test_tables_are_created_on_first_use_with_a_schema_version(dsn: str) -> None:
    check_server(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute(f"SELECT value FROM {META} WHERE key = 'schema_version'").fetchone() == ("2",)
        conn.execute(f"UPDATE {META} SET value = '3' WHERE key = 'schema_version'")
        try:
            with pytest.raises(LeaseServerError, match="schema version 3, this pytest-sop reads version 2"):
                check_server(dsn)
            with pytest.raises(LeaseServerError, match="schema version 3"):
                PgLeasePool(dsn, "r", "o")
        finally:
            conn.execute(f"UPDATE {META} SET value = '2' WHERE key = 'schema_version'")


def test_unreachable_server_and_wrong_password_name_the_server_not_the_password(pg: PgCluster) -> None:
    from pg_cluster import free_port

    for bad in (f"postgresql://sop:{PASSWORD}@127.0.0.1:{free_port()}/postgres", pg.dsn.replace(PASSWORD, "nope1234")):
        with pytest.raises(LeaseServerError) as e:
            PgLeasePool(bad, "r", "o")
        message = str(e.value)
        assert message.startswith("lease server postgresql://sop:***@127.0.0.1:"), message
        assert PASSWORD not in message and "nope1234" not in message


def test_dsn_problems_never_quote_the_password() -> None:
    assert dsn_problem("postgresql://u:pw1234@h/db") is None
    assert dsn_problem("host=h port=5432 dbname=x") is None
    problem = dsn_problem("host=h password=pw1234 port")
    assert problem and "connection string" in problem and "pw1234" not in problem
    assert dsn_problem("  ") and "empty" in str(dsn_problem("  "))
    assert describe_server("postgresql://u:pw1234@h:5433/db") == "postgresql://u:***@h:5433/db"
    assert describe_server("host=h user=u") == "postgresql://u@h"


def test_lease_target_sop_yaml_flag_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    assert lease_target(None, "--sop-leases", None, "/locks").backend == "file"
    pg = Leases("postgres", POS, Secret("SOP_TEST_LEASES_DSN"))
    monkeypatch.delenv("SOP_TEST_LEASES_DSN", raising=False)
    with pytest.raises(
        Exception, match=r"sop.yaml:3:3 leases.dsn: environment variable SOP_TEST_LEASES_DSN is not set"
    ):
        lease_target(None, "--sop-leases", pg, "/locks")
    monkeypatch.setenv("SOP_TEST_LEASES_DSN", "postgresql://u:pw1234@h/db")
    target = lease_target(None, "--sop-leases", pg, "/locks")
    assert (target.backend, target.dsn) == ("postgres", "postgresql://u:pw1234@h/db")
    assert target.describe() == "lease server postgresql://u:***@h/db"
    # The command line wins over sop.yaml, both ways.
    assert lease_target("file", "--sop-leases", pg, "/locks").backend == "file"
    assert lease_target("host=x", "--sop-leases", None, "/locks").dsn == "host=x"
    with pytest.raises(Exception, match=r"^--sop-leases: expected a PostgreSQL connection string"):
        lease_target("host", "--sop-leases", None, "/locks")


def test_leases_command_reads_the_server(dsn: str, tmp_path: Path, workers: Workers) -> None:
    (tmp_path / "sop.yaml").write_text(
        "leases:\n  backend: postgres\n  dsn: {env: SOP_TEST_LEASES_DSN}\n"
        "devices:\n  - {id: d1, platform: android}\n  - {id: d2, platform: android}\n"
    )
    holder, _ = workers.hold(tmp_path, [["d2", None]], "a.sop.yaml::hold", dsn=dsn, operator="bob")
    env = {**os.environ, "SOP_TEST_LEASES_DSN": dsn}
    run = subprocess.run(
        [sys.executable, "-m", "pytest_sop", "leases", "--config", str(tmp_path / "sop.yaml")],
        capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = {line.split()[1]: line.split() for line in run.stdout.splitlines()[1:]}
    assert lines["d1"][2] == "free"
    assert lines["d2"][2:5] == ["held", "a.sop.yaml::hold", "bob"]
    release(holder)
    # An unreachable server: an error naming it, never its password.
    env["SOP_TEST_LEASES_DSN"] = dsn.replace("127.0.0.1", "127.0.0.2").rsplit(":", 1)[0] + ":1/postgres"
    run = subprocess.run(
        [sys.executable, "-m", "pytest_sop", "leases", "--config", str(tmp_path / "sop.yaml")],
        capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 1
    assert "lease server postgresql://sop:***@127.0.0.2:1/postgres cannot be used" in run.stderr
    assert PASSWORD not in run.stderr + run.stdout


def test_format_of_a_pg_row_without_a_record(dsn: str) -> None:
    # A lock held with no record (between lock and record, or written by something else).
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (lock_key("device-d1"),))
        (row,) = lease_table(dsn, [D1], [])
        assert (row.state, row.holder) == ("held", None)
        assert "device  d1  held   ?" in format_lease_table([row])


# -- leases: in sop.yaml ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("leases", "expected"),
    [
        ("  backend: postgre\n", "sop.yaml:2:12: leases.backend: expected one of: file, postgres, got 'postgre'"),
        ("  backend: postgres\n", "sop.yaml:2:3: leases: backend: postgres needs a dsn"),
        ("  backend: file\n  dsn: host=x\n", "sop.yaml:3:8: leases.dsn: a dsn is only for backend: postgres"),
        (
            "  backend: postgres\n  dsn: 'host=x password=pw1234 port'\n",
            "sop.yaml:3:8: leases.dsn: expected a PostgreSQL connection string",
        ),
        ("  backend: postgres\n  dsn: [a]\n", "sop.yaml:3:8: leases.dsn: expected a PostgreSQL connection string or"),
        ("  dsn: host=x\n", "sop.yaml:2:3: leases: missing required key 'backend'"),
    ],
)
def test_bad_leases_in_sop_yaml_name_file_line_and_field(tmp_path: Path, leases: str, expected: str) -> None:
    from pytest_sop.errors import SopInvalid
    from pytest_sop.suiteconfig import load_config

    path = tmp_path / "sop.yaml"
    path.write_text("leases:\n" + leases)
    with pytest.raises(SopInvalid) as e:
        load_config(str(path), "sop.yaml")
    assert expected in str(e.value), str(e.value)
    assert "pw1234" not in str(e.value)


def test_leases_in_sop_yaml(tmp_path: Path) -> None:
    from pytest_sop.suiteconfig import load_config

    path = tmp_path / "sop.yaml"
    path.write_text("leases:\n  backend: postgres\n  dsn: {env: SOP_TEST_LEASES_DSN}\n")
    leases = load_config(str(path), "sop.yaml").leases
    assert leases is not None and (leases.backend, leases.dsn) == ("postgres", Secret("SOP_TEST_LEASES_DSN"))
    path.write_text("leases: {backend: file}\n")
    leases = load_config(str(path), "sop.yaml").leases
    assert leases is not None and (leases.backend, leases.dsn) == ("file", None)
