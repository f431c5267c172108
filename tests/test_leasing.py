"""Exclusive device and account leases, proved with real processes (tests/lease_worker.py)."""

from __future__ import annotations

import datetime as dt
import fcntl
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from pytest_sop.errors import DeviceError, LeaseTimeout
from pytest_sop.leasing import (
    LeasePool,
    candidate_pairs,
    format_lease_table,
    holder_path,
    lease_table,
    lock_name,
    lock_path,
)
from pytest_sop.model import Account, Device, Secret, SourcePos

WORKER = Path(__file__).with_name("lease_worker.py")
POS = SourcePos("sop.yaml", 1, 1)


def device(id: str) -> Device:
    return Device(id, "android", POS)


def account(id: str, devices: tuple[str, ...] | None = None, **fields: str | Secret) -> Account:
    return Account(id, POS, role="publisher", devices=devices, fields=fields)


D1, D2, D3 = device("d1"), device("d2"), device("d3")


# -- helpers for worker processes ------------------------------------------------------


class Workers:
    """Starts tests/lease_worker.py processes and kills what is left at teardown."""

    def __init__(self, lock_dir: Path) -> None:
        self.lock_dir = lock_dir
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, cmd: str, env: dict[str, str] | None = None, **spec: Any) -> subprocess.Popen[str]:
        spec.setdefault("devices", [{"id": d} for d in ("d1", "d2", "d3")])
        payload = json.dumps({"cmd": cmd, "lock_dir": str(self.lock_dir), **spec})  # lock_dir=None: the default
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), payload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.procs.append(proc)
        return proc

    def hold(
        self, tmp: Path, pairs: list[list[str | None]], case: str, **spec: Any
    ) -> tuple[subprocess.Popen[str], dict[str, Any]]:
        """A process holding the first free pair of ``pairs``, until its stdin closes (or it is killed)."""
        ready = tmp / f"ready-{len(self.procs)}"
        proc = self.start("hold", pairs=pairs, case=case, ready=str(ready), **spec)
        wait_for(ready, proc)
        return proc, json.loads(ready.read_text())

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


@pytest.fixture
def lock_dir(tmp_path: Path) -> Path:
    return tmp_path / "locks"


@pytest.fixture
def workers(lock_dir: Path) -> Iterator[Workers]:
    w = Workers(lock_dir)
    yield w
    w.close()


def wait_for(path: Path, proc: subprocess.Popen[str], limit: float = 30.0) -> None:
    """Wait until a worker wrote ``path``; fail with its stderr if it exits first."""
    deadline = time.monotonic() + limit
    while not path.exists():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"worker exited {proc.returncode} before writing {path.name}:\n{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"worker wrote no {path.name} within {limit} s")
        time.sleep(0.002)


def finish(proc: subprocess.Popen[str], limit: float = 60.0) -> None:
    try:
        _, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"worker did not finish within {limit} s (deadlock?):\n{err}")
    assert proc.returncode == 0, err


def release(proc: subprocess.Popen[str]) -> None:
    """Let a ``hold`` worker release its lease and exit."""
    finish(proc, 10)


def row_of(rows: list[Any], kind: str, id: str) -> Any:
    (row,) = [r for r in rows if (r.kind, r.id) == (kind, id)]
    return row


def assert_no_overlap(intervals: dict[str, list[tuple[int, int, str]]]) -> None:
    for resource, spans in intervals.items():
        spans.sort()
        for (s1, e1, who1), (s2, e2, who2) in itertools.pairwise(spans):
            assert e1 < s2, f"{resource} held twice at once: {who1} [{s1}, {e1}] and {who2} [{s2}, {e2}]"


def run_cycles(
    workers: Workers, tmp: Path, pair_lists: list[list[list[str | None]]], n: int, accounts: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One ``cycles`` worker per pair list, released together by a file barrier; their logs."""
    barrier, counters = tmp / "barrier", tmp / "counters"
    barrier.mkdir()
    counters.mkdir()
    procs = []
    for i, pairs in enumerate(pair_lists):
        procs.append(
            workers.start(
                "cycles",
                name=f"p{i}",
                n=n,
                pairs=pairs,
                accounts=accounts,
                timeout=30.0,
                barrier=str(barrier),
                counters=str(counters),
                out=str(tmp / f"out-p{i}.json"),
            )
        )
    for i, proc in enumerate(procs):
        wait_for(barrier / f"ready-p{i}", proc)
    (barrier / "go").touch()
    for proc in procs:
        finish(proc, 120)
    return [json.loads((tmp / f"out-p{i}.json").read_text()) for i in range(len(procs))]


def check_logs(logs: list[dict[str, Any]], n: int, counters: Path) -> dict[str, list[tuple[int, int, str]]]:
    intervals: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for i, out in enumerate(logs):
        assert [c["cycle"] for c in out["log"]] == list(range(n)), "every cycle accounted for"
        for c in out["log"]:
            assert c["start"] < c["end"]
            who = f"p{i}/cycle {c['cycle']}"
            intervals[f"device {c['device']}"].append((c["start"], c["end"], who))
            if c["account"]:
                intervals[f"account {c['account']}"].append((c["start"], c["end"], who))
    assert_no_overlap(intervals)
    # The read-modify-write counters lost no update: each holder was alone.
    for resource, spans in intervals.items():
        kind, id = resource.split()
        assert int((counters / f"{kind}-{id}").read_text()) == len(spans), resource
    return intervals


# -- exclusion under load --------------------------------------------------------------


def test_eight_processes_never_share_a_device_or_account(workers: Workers, tmp_path: Path) -> None:
    n, procs = 200, 8
    accounts = [{"id": "a1"}, {"id": "a2", "devices": ["d2", "d3"]}]
    all_pairs: list[list[str | None]] = [
        [d, a] for a in ("a1", "a2") for d in ("d1", "d2", "d3") if (a, d) != ("a2", "d1")
    ]
    # Each process prefers another pair, so they spread and collide in every combination.
    pair_lists = [all_pairs[i % len(all_pairs) :] + all_pairs[: i % len(all_pairs)] for i in range(procs)]
    logs = run_cycles(workers, tmp_path, pair_lists, n, accounts)

    intervals = check_logs(logs, n, tmp_path / "counters")
    assert sum(len(v) for k, v in intervals.items() if k.startswith("device")) == n * procs
    assert {k for k in intervals if k.startswith("device")} == {"device d1", "device d2", "device d3"}
    assert not any(c["account"] == "a2" and c["device"] == "d1" for out in logs for c in out["log"]), "affinity"
    # It was a real contest: processes waited for each other, and shared each device over time.
    assert sum(c["waited"] > 0.005 for out in logs for c in out["log"]) > 0
    for spans in intervals.values():
        assert len({who.split("/")[0] for _, _, who in spans}) >= 2
    # Everything is free again, and every lock file is still there.
    rows = lease_table(workers.lock_dir, [D1, D2, D3], [account("a1"), account("a2")])
    assert [r.state for r in rows] == ["free"] * 5
    assert {p.name for p in workers.lock_dir.glob("*.lock")} == {
        "device-d1.lock",
        "device-d2.lock",
        "device-d3.lock",
        "account-a1.lock",
        "account-a2.lock",
    }
    assert all(p.read_bytes() == b"" for p in workers.lock_dir.iterdir()), "every record cleared"


def test_no_deadlock_with_opposite_preference_orders(workers: Workers, tmp_path: Path) -> None:
    # Both pairs share a1; two processes prefer them in one order, two in the opposite one.
    # Code that took a case's locks in an order of its own (the account first for some, the
    # device first for others) and waited for the second lock while holding the first would
    # deadlock here within a few cycles.
    accounts = [{"id": "a1"}]
    pairs: list[list[str | None]] = [["d1", "a1"], ["d2", "a1"]]
    n = 150
    started = time.monotonic()
    logs = run_cycles(workers, tmp_path, [pairs, pairs[::-1]] * 2, n, accounts)
    check_logs(logs, n, tmp_path / "counters")
    assert time.monotonic() - started < 60


# -- a holder that dies ----------------------------------------------------------------


def test_kill_9_frees_the_lease_for_the_waiter_at_once(workers: Workers, tmp_path: Path) -> None:
    holder, held = workers.hold(tmp_path, [["d1", None]], "a.sop.yaml::hold")
    assert held["device"] == "d1"
    assert row_of(lease_table(workers.lock_dir, [D1], []), "device", "d1").holder.pid == holder.pid

    waiting, out = tmp_path / "waiting", tmp_path / "waiter.json"
    waiter = workers.start(
        "wait",
        pairs=[["d1", None]],
        case="b.sop.yaml::wait",
        timeout=30.0,
        waiting=str(waiting),
        out=str(out),
        keep=True,
    )
    wait_for(waiting, waiter)
    killed = time.monotonic_ns()
    os.kill(holder.pid, signal.SIGKILL)
    wait_for(out, waiter)
    got = json.loads(out.read_text())
    # Well before the waiter's own 30 s timeout (the lease polls every 25 ms; the margin is for a loaded CI host).
    assert (got["acquired_ns"] - killed) / 1e9 < 5.0
    assert holder.wait() == -signal.SIGKILL

    # The dead holder is gone: the table and the record name the waiter now.
    row = row_of(lease_table(workers.lock_dir, [D1], []), "device", "d1")
    assert row.state == "held" and row.holder.pid == waiter.pid and row.holder.case == "b.sop.yaml::wait"
    assert json.loads(holder_path(workers.lock_dir, "device", "d1").read_text())["pid"] == waiter.pid
    release(waiter)
    assert row_of(lease_table(workers.lock_dir, [D1], []), "device", "d1").state == "free"


def test_record_left_by_a_dead_holder_shows_as_free(workers: Workers, tmp_path: Path) -> None:
    a1 = account("a1")
    holder, _ = workers.hold(tmp_path, [["d1", "a1"]], "a.sop.yaml::hold[a1]", accounts=[{"id": "a1"}])
    rows = lease_table(workers.lock_dir, [D1], [a1])
    assert [(r.state, r.holder.pid) for r in rows] == [("held", holder.pid)] * 2
    holder.kill()
    holder.wait()

    # Its records are still on disk, naming the dead pid ...
    for kind, id in (("device", "d1"), ("account", "a1")):
        assert json.loads(holder_path(workers.lock_dir, kind, id).read_text())["pid"] == holder.pid
    # ... yet both show as free, and can be leased at once.
    rows = lease_table(workers.lock_dir, [D1], [a1])
    assert [(r.state, r.holder) for r in rows] == [("free", None)] * 2
    assert "held" not in format_lease_table(rows)
    pool = LeasePool(workers.lock_dir, "run-2", "bob")
    with pool.acquire([(D1, a1)], case="c.sop.yaml::next", timeout=0, requirement="d1") as lease:
        assert json.loads(holder_path(workers.lock_dir, "device", "d1").read_text())["pid"] == os.getpid()
        assert lease.account is a1

    # A stale record in a lock that someone holds without a record yet: held, by the kernel's pid.
    holder_path(workers.lock_dir, "account", "a1").write_text(
        json.dumps(
            {
                "kind": "account",
                "id": "a1",
                "run_id": "r",
                "host": socket.gethostname(),
                "pid": holder.pid,
                "worker": None,
                "case": "dead::case",
                "operator": "x",
                "since": "2026-01-01T00:00:00.000+00:00",
            }
        )
    )
    raw = os.open(lock_path(workers.lock_dir, "account", "a1"), os.O_RDWR)  # no O_TRUNC: the record stays
    try:
        fcntl.flock(raw, fcntl.LOCK_EX | fcntl.LOCK_NB)
        row = row_of(lease_table(workers.lock_dir, [D1], [a1]), "account", "a1")
        assert (row.state, row.holder, row.pid) == ("held", None, os.getpid())
        assert "dead::case" not in format_lease_table([row])
    finally:
        os.close(raw)


# -- waiting and choosing --------------------------------------------------------------


def test_lease_timeout_names_the_holder(workers: Workers, tmp_path: Path) -> None:
    holder, _ = workers.hold(tmp_path, [["d1", None]], "suite/a.sop.yaml::hold[x]", worker="gw3", operator="alice")
    pool = LeasePool(workers.lock_dir, "run-2", "bob")
    started = time.monotonic()
    with pytest.raises(LeaseTimeout) as info:
        pool.acquire([(D1, None)], case="suite/b.sop.yaml::late", timeout=2.0, requirement="device id=d1")
    elapsed = time.monotonic() - started
    assert isinstance(info.value, TimeoutError)
    assert 2.0 <= elapsed < 6.0  # kept, not cut short, nor waited 3x (or more) as long
    message = str(info.value)
    assert "device id=d1" in message
    assert "device d1: held by case suite/a.sop.yaml::hold[x]" in message
    assert f"pid {holder.pid} on {socket.gethostname()}" in message
    assert "worker gw3" in message and "operator alice" in message and "since 20" in message
    release(holder)


def test_pinned_account_on_a_busy_device_does_not_block_another_pair(workers: Workers, tmp_path: Path) -> None:
    a1, a2 = account("a1", devices=("d1",)), account("a2")
    pairs = candidate_pairs([D1, D2], [a1, a2])
    assert [(d.id, a.id if a else None) for d, a in pairs] == [("d1", "a1"), ("d1", "a2"), ("d2", "a2")]
    holder, _ = workers.hold(tmp_path, [["d1", None]], "x.sop.yaml::busy")

    pool = LeasePool(workers.lock_dir, "run-2", "bob")
    with pool.acquire(pairs, case="y.sop.yaml::other", timeout=5, requirement="role=publisher") as lease:
        assert (lease.device.id, lease.account and lease.account.id) == ("d2", "a2")
        assert lease.waited < 2  # found on the first round, not after waiting (up to 5 s) for d1
        # Trying (d1, a1) took a1 before finding d1 busy: that hold was dropped at once.
        assert row_of(lease_table(workers.lock_dir, [D1, D2], [a1, a2]), "account", "a1").state == "free"
        with FileLock(lock_path(workers.lock_dir, "account", "a1"), thread_local=False).acquire(blocking=False):
            pass
    release(holder)


def test_a_waiting_case_holds_nothing_while_it_waits(workers: Workers, tmp_path: Path) -> None:
    # a1 may run on d1 or d2. The holder has d1; a waiter wants exactly (d1, a1).
    accounts = [{"id": "a1", "devices": ["d1", "d2"]}]
    holder, _ = workers.hold(tmp_path, [["d1", None]], "x.sop.yaml::busy")
    waiting, out = tmp_path / "waiting", tmp_path / "waiter.json"
    waiter = workers.start(
        "wait",
        pairs=[["d1", "a1"]],
        accounts=accounts,
        case="w.sop.yaml::needs-d1",
        timeout=30.0,
        waiting=str(waiting),
        out=str(out),
    )
    wait_for(waiting, waiter)
    # Meanwhile another case takes a1 on d2 at once: the waiter does not sit on a1.
    a1 = account("a1", devices=("d1", "d2"))
    pool = LeasePool(workers.lock_dir, "run-2", "bob")
    for _ in range(20):
        with pool.acquire([(D2, a1)], case="z.sop.yaml::d2", timeout=5, requirement="a1 on d2") as lease:
            assert lease.waited < 2  # taken at once: the waiter does not hold a1 (a loaded host may lag a little)
    release(holder)
    finish(waiter, 10)
    assert json.loads(out.read_text())["device"] == "d1"


def test_empty_pairs_is_a_device_error(lock_dir: Path) -> None:
    with pytest.raises(DeviceError, match="no device and account can serve role=admin"):
        LeasePool(lock_dir, "r", "o").acquire([], case="c", timeout=1, requirement="role=admin")


def test_candidate_pairs_honour_affinity_and_preference() -> None:
    a1, a2 = account("a1", devices=("d2",)), account("a2")
    assert [(d.id, a) for d, a in candidate_pairs([D1, D2], None)] == [("d1", None), ("d2", None)]
    pairs = candidate_pairs([D1, D2, D3], [a1, a2], prefer_device="d3")
    assert [(d.id, a and a.id) for d, a in pairs] == [("d3", "a2"), ("d2", "a1"), ("d1", "a2"), ("d2", "a2")]


# -- the lease itself ------------------------------------------------------------------


def test_lease_record_release_and_context_manager(lock_dir: Path) -> None:
    a1 = account("a1")
    pool = LeasePool(lock_dir, "run-1", "alice", "gw1")
    before = time.monotonic()
    lease = pool.acquire([(D1, a1)], case="f.sop.yaml::s[a1]", timeout=1, requirement="r")
    assert before <= lease.acquired_at <= time.monotonic()
    assert (lease.device, lease.account) == (D1, a1)
    record = json.loads(holder_path(lock_dir, "device", "d1").read_text())
    assert record == {
        "kind": "device",
        "id": "d1",
        "run_id": "run-1",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "worker": "gw1",
        "case": "f.sop.yaml::s[a1]",
        "operator": "alice",
        "since": record["since"],
    }
    since = dt.datetime.fromisoformat(record["since"])
    assert since.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.UTC) - since).total_seconds()) < 60
    assert json.loads(holder_path(lock_dir, "account", "a1").read_text())["id"] == "a1"

    # Another pool of this very process is refused too: each hold has its own descriptor.
    with pytest.raises(LeaseTimeout):
        LeasePool(lock_dir, "run-1", "alice").acquire([(D1, None)], case="other", timeout=0, requirement="r")

    lease.release()
    lease.release()  # idempotent
    assert lease.released
    # The records are cleared; the lock files stay.
    assert lock_path(lock_dir, "device", "d1").read_bytes() == b""
    assert lock_path(lock_dir, "account", "a1").read_bytes() == b""
    with pool.acquire([(D1, a1)], case="again", timeout=0, requirement="r") as again:
        assert not again.released
    assert again.released
    assert sorted(p.name for p in lock_dir.iterdir()) == ["account-a1.lock", "device-d1.lock"]


def test_release_from_another_thread(lock_dir: Path) -> None:
    pool = LeasePool(lock_dir, "r", "o")
    lease = pool.acquire([(D1, None)], case="c", timeout=1, requirement="r")
    t = threading.Thread(target=lease.release)
    t.start()
    t.join()
    pool.acquire([(D1, None)], case="c2", timeout=0, requirement="r").release()


def test_odd_ids_stay_inside_the_lock_dir(lock_dir: Path) -> None:
    odd = device("../usb/1-2:1.0")
    assert lock_name("device", odd.id) == "device-..%2Fusb%2F1-2%3A1.0"
    pool = LeasePool(lock_dir, "r", "o")
    with pool.acquire([(odd, None)], case="c", timeout=1, requirement="r"):
        assert [r.id for r in lease_table(lock_dir, [], []) if r.held] == [odd.id]  # found in the folder
    assert {p.parent for p in lock_dir.parent.rglob("*.lock")} == {lock_dir}


def test_lease_table_of_a_missing_folder_is_all_free(tmp_path: Path) -> None:
    rows = lease_table(tmp_path / "nowhere", [D1], [account("a1")])
    assert [(r.kind, r.id, r.state) for r in rows] == [("device", "d1", "free"), ("account", "a1", "free")]
    assert not (tmp_path / "nowhere").exists()
    text = format_lease_table(rows)
    header = ["KIND", "ID", "STATE", "CASE", "OPERATOR", "PID", "USER", "HOST", "WORKER", "SINCE"]
    assert text.splitlines()[0].split() == header


# -- secrets ---------------------------------------------------------------------------


def test_secrets_never_reach_records_table_or_errors(
    workers: Workers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"PYTEST_SOP_LEASE_SECRET": "hunter2-9c1e"}
    monkeypatch.setenv("PYTEST_SOP_LEASE_SECRET", "hunter2-9c1e")
    fields = {"username": "user-7f3a", "password": {"env": "PYTEST_SOP_LEASE_SECRET"}}
    holder, _ = workers.hold(
        tmp_path, [["d1", "a1"]], "s.sop.yaml::secret[a1]", accounts=[{"id": "a1", "fields": fields}], env=env
    )
    a1 = account("a1", username="user-7f3a", password=Secret("PYTEST_SOP_LEASE_SECRET"))
    forbidden = ["hunter2-9c1e", "user-7f3a", "PYTEST_SOP_LEASE_SECRET", "username", "password"]

    texts: list[str] = []
    pool = LeasePool(workers.lock_dir, "run-2", "bob")
    with pytest.raises(LeaseTimeout) as info:
        pool.acquire([(D1, a1)], case="t::late", timeout=0.1, requirement="role=publisher")
    texts.append(str(info.value))
    rows = lease_table(workers.lock_dir, [D1], [a1])
    assert [r.state for r in rows] == ["held", "held"]
    texts += [format_lease_table(rows), repr(rows)]
    files = [p for p in workers.lock_dir.iterdir() if p.is_file()]
    assert any(b'"case"' in p.read_bytes() for p in files)  # the records are there
    texts += [p.read_bytes().decode("utf-8", "replace") for p in files]
    release(holder)

    # And our own lease of the same account, from the inside.
    with pool.acquire([(D1, a1)], case="t::mine", timeout=5, requirement="r") as lease:
        texts.append(repr(lease))
        texts += [p.read_text() for p in workers.lock_dir.glob("*.lock")]
    for text in texts:
        for secret in forbidden:
            assert secret not in text
