"""A separate process that takes leases, for tests/test_leasing.py.

    python tests/lease_worker.py SPEC_JSON

SPEC is a JSON object: ``cmd`` (``cycles``, ``hold``, ``wait`` or ``try``), ``lock_dir``
(default: the plugin's default lock folder) or ``dsn`` (lease on that PostgreSQL server instead), ``uid`` and ``gid`` (become this user after
the imports, so a root test can start another user's process), ``devices`` ([{"id": ...}]), ``accounts`` ([{"id", "devices", "fields"}], a field
``{"env": NAME}`` is a secret), ``pairs`` ([[device id, account id or null], ...]) and
the command's own keys (see each function). Results are JSON files the test reads.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from pytest_sop.config import default_lock_dir
from pytest_sop.errors import LeaseTimeout
from pytest_sop.leasing import Lease, LeasePool, LeasePoolBase, Pair
from pytest_sop.model import Account, Device, Secret, SourcePos

POS = SourcePos("sop.yaml", 1, 1)


def build(spec: dict[str, Any]) -> tuple[LeasePoolBase[Any], list[Pair]]:
    devices = {d["id"]: Device(d["id"], d.get("platform", "android"), POS) for d in spec["devices"]}
    accounts = {
        a["id"]: Account(
            a["id"],
            POS,
            role=a.get("role"),
            devices=tuple(a["devices"]) if a.get("devices") is not None else None,
            fields={k: Secret(v["env"]) if isinstance(v, dict) else v for k, v in a.get("fields", {}).items()},
        )
        for a in spec.get("accounts", [])
    }
    pairs: list[Pair] = [(devices[d], accounts[a] if a else None) for d, a in spec["pairs"]]
    who = (spec.get("run_id", "run-test"), spec.get("operator", "tester"), spec.get("worker"))
    if spec.get("dsn"):
        from pytest_sop.pg_leases import PgLeasePool

        return PgLeasePool(spec["dsn"], *who), pairs
    return LeasePool(spec.get("lock_dir") or default_lock_dir(), *who), pairs


def touch(path: str, text: str = "") -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    Path(tmp).write_text(text)
    os.replace(tmp, path)


def wait_for_file(path: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"no {path} after {limit} s")
        time.sleep(0.001)


def bump(counter: Path) -> None:
    """A read-modify-write that loses updates unless its holder is alone."""
    value = int(counter.read_text() or 0) if counter.exists() else 0
    counter.write_text(str(value + 1))


def cycles(spec: dict[str, Any]) -> None:
    """``n`` leases in a row after a start barrier; logs each hold interval to ``out``.

    Barrier: writes ``barrier/ready-<name>``, then waits for ``barrier/go``. While holding,
    bumps a counter file per leased device and account in ``counters``.
    """
    pool, pairs = build(spec)
    counters = Path(spec["counters"])
    touch(os.path.join(spec["barrier"], f"ready-{spec['name']}"))
    wait_for_file(os.path.join(spec["barrier"], "go"))
    log: list[dict[str, Any]] = []
    for i in range(spec["n"]):
        lease = pool.acquire(pairs, case=f"{spec['name']}-{i}", timeout=spec["timeout"], requirement="any")
        start = time.monotonic_ns()
        bump(counters / f"device-{lease.device.id}")
        if lease.account is not None:
            bump(counters / f"account-{lease.account.id}")
        end = time.monotonic_ns()
        lease.release()
        log.append(
            {
                "cycle": i,
                "device": lease.device.id,
                "account": lease.account.id if lease.account else None,
                "start": start,
                "end": end,
                "waited": lease.waited,
            }
        )
    touch(spec["out"], json.dumps({"pid": os.getpid(), "log": log}))


def hold(spec: dict[str, Any]) -> None:
    """Take one lease, write ``ready`` ({pid, device, account}), hold it until stdin closes."""
    pool, pairs = build(spec)
    lease = pool.acquire(pairs, case=spec["case"], timeout=spec.get("timeout", 10.0), requirement="hold")
    touch(spec["ready"], json.dumps(_describe(lease)))
    sys.stdin.read()
    lease.release()


def wait(spec: dict[str, Any]) -> None:
    """Check the pairs are busy, write ``waiting``, then wait for a lease; write ``out`` with when."""
    pool, pairs = build(spec)
    try:
        pool.acquire(pairs, case=spec["case"], timeout=0, requirement="wait").release()
    except LeaseTimeout:
        pass
    else:
        raise SystemExit("expected the pairs to be busy")
    touch(spec["waiting"])
    lease = pool.acquire(pairs, case=spec["case"], timeout=spec["timeout"], requirement="wait")
    acquired = time.monotonic_ns()
    touch(spec["out"], json.dumps({"acquired_ns": acquired, **_describe(lease)}))
    if spec.get("keep"):
        sys.stdin.read()
    lease.release()


def try_once(spec: dict[str, Any]) -> None:
    """Try the pairs once (``timeout``, default 0); write ``out``: {got, device, message}."""
    pool, pairs = build(spec)
    try:
        lease = pool.acquire(pairs, case=spec.get("case", "try"), timeout=spec.get("timeout", 0), requirement="try")
    except LeaseTimeout as e:
        touch(spec["out"], json.dumps({"got": False, "device": None, "message": str(e)}))
        return
    touch(spec["out"], json.dumps({"got": True, **_describe(lease), "message": ""}))
    lease.release()


def become(spec: dict[str, Any]) -> None:
    """Drop root for another user's uid and gid, as a process started by that user would run."""
    if "uid" in spec:
        os.setgroups([])
        os.setgid(spec.get("gid", spec["uid"]))
        os.setuid(spec["uid"])


def _describe(lease: Lease) -> dict[str, Any]:
    return {"pid": os.getpid(), "device": lease.device.id, "account": lease.account.id if lease.account else None}


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    become(spec)
    {"cycles": cycles, "hold": hold, "wait": wait, "try": try_once}[spec["cmd"]](spec)
