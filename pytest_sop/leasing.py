"""Exclusive leases on devices and accounts, shared by every pytest process of a host.

Each device and each account has one lock file in a lock folder (``device-<id>.lock``,
``account-<id>.lock``), locked with filelock's :class:`~filelock.FileLock` (``flock`` on
Unix), so the kernel frees a lease the moment its holder dies, however it dies. Lock files
are never deleted: every process always locks the same inode.

Beside each lock, a holder record (``device-<id>.holder.json``) says who holds it: run id,
host, pid, xdist worker, case, operator and since when. It is written (tmp + rename) once
the lock is held and removed before the lock is released. It carries ids only, never an
account's fields. A record left behind by a dead process is harmless: the lock, not the
record, decides who holds a device, and :func:`lease_table` shows such a device as free.

A case takes a (device, account) pair from a list of acceptable pairs in preference order
(:func:`candidate_pairs` builds it). :meth:`LeasePool.acquire` never waits while holding a
lock: it tries each pair's locks without blocking, in one global order (sorted lock
names), drops a partial hold at once, and polls until a whole pair is free or the timeout
passes. No case can deadlock another, and an account pinned to a busy device does not
stop a case that can use some other pair.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import random
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote, unquote

from filelock import FileLock, Timeout

from .errors import DeviceError, LeaseTimeout
from .matching import candidate_accounts, candidate_devices, may_use
from .model import Account, AccountRequirement, Device, DeviceRequirement, SuiteConfig

__all__ = [
    "DEFAULT_POLL_INTERVAL",
    "Holder",
    "Kind",
    "Lease",
    "LeasePool",
    "Pair",
    "Row",
    "candidate_pairs",
    "format_lease_table",
    "holder_path",
    "lease_table",
    "lock_name",
    "lock_path",
]

Kind = Literal["device", "account"]
Pair = tuple[Device, Account | None]

#: Seconds between two rounds of tries while waiting: a lock freed by a dead holder is
#: taken by a waiter well within a second.
DEFAULT_POLL_INTERVAL = 0.025

_LOCK_SUFFIX = ".lock"
_HOLDER_SUFFIX = ".holder.json"


def lock_name(kind: Kind, id: str) -> str:
    """``device-<id>`` or ``account-<id>``; an id is percent-encoded where a file name could not hold it."""
    return f"{kind}-{quote(id, safe='')}"


def lock_path(lock_dir: str | os.PathLike[str], kind: Kind, id: str) -> Path:
    return Path(lock_dir) / (lock_name(kind, id) + _LOCK_SUFFIX)


def holder_path(lock_dir: str | os.PathLike[str], kind: Kind, id: str) -> Path:
    return Path(lock_dir) / (lock_name(kind, id) + _HOLDER_SUFFIX)


def _new_lock(path: Path) -> FileLock:
    # A fresh instance per hold: its own descriptor, so two holds in one process (threads,
    # two pools) exclude each other in the kernel just as two processes do. Not thread-local,
    # so a lease may be released from another thread than the one that took it.
    # ``preserve_lock_file`` keeps the file in place and refuses the soft (non-kernel) fallback.
    return FileLock(path, thread_local=False, preserve_lock_file=True)


@dataclass(frozen=True)
class Holder:
    """Who holds a device or an account: the content of a holder record."""

    kind: Kind
    id: str
    run_id: str
    host: str
    pid: int
    worker: str | None
    case: str
    operator: str
    since: str  # UTC, ISO 8601

    def describe(self) -> str:
        worker = f", worker {self.worker}" if self.worker else ""
        return (
            f"case {self.case} (pid {self.pid} on {self.host}{worker}, operator {self.operator}, "
            f"run {self.run_id}, since {self.since})"
        )

    @classmethod
    def from_json(cls, data: Any) -> Holder | None:
        """A record as read back from disk, or ``None`` when it is not one."""
        if not isinstance(data, dict):
            return None
        try:
            kind = data["kind"]
            worker = data.get("worker")
            fields = (data["id"], data["run_id"], data["host"], data["case"], data["operator"], data["since"])
            pid = data["pid"]
        except KeyError:
            return None
        if (
            kind not in ("device", "account")
            or not all(isinstance(f, str) for f in fields)
            or not isinstance(pid, int)
            or not (worker is None or isinstance(worker, str))
        ):
            return None
        id_, run_id, host, case, operator, since = fields
        return cls(kind, id_, run_id, host, pid, worker, case, operator, since)


def _read_holder(path: Path) -> Holder | None:
    try:
        return Holder.from_json(json.loads(path.read_bytes()))
    except (OSError, ValueError):
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    # Only the lock holder writes this record, so a per-process tmp name cannot collide.
    # No fsync: after a crash the record is stale anyway, and the lock says who holds what.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _pid_alive(pid: int) -> bool:
    """Whether a process of this host is still running (a zombie is not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust the signal probe
    return stat[stat.rfind(")") + 2 :][:1] not in ("Z", "X")


def _probe(path: Path) -> bool | None:
    """Is this lock held right now? ``None`` when it cannot be tried (e.g. no permission)."""
    if not path.exists():
        return False
    lock = _new_lock(path)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        return True
    except OSError:
        return None
    lock.release()
    return False


@dataclass(frozen=True)
class Row:
    """One line of the lease table: a device or an account, free or held by whom."""

    kind: Kind
    id: str
    state: Literal["free", "held"]
    holder: Holder | None  # None when free, or when held by a process that has not written its record yet

    @property
    def held(self) -> bool:
        return self.state == "held"


def _row(lock_dir: Path, kind: Kind, id: str, host: str) -> Row:
    record = _read_holder(holder_path(lock_dir, kind, id))
    if record is not None and (record.kind, record.id) != (kind, id):
        record = None
    stale = record is not None and record.host == host and not _pid_alive(record.pid)
    held = _probe(lock_path(lock_dir, kind, id))
    if held is None:  # cannot try the lock: go by the record alone
        held = record is not None and not stale
    if not held:
        return Row(kind, id, "free", None)
    return Row(kind, id, "held", None if stale else record)


def lease_table(lock_dir: str | os.PathLike[str], devices: Iterable[Device], accounts: Iterable[Account]) -> list[Row]:
    """Every device and account, free or held by whom; devices and accounts first, in config order.

    Locks found in the folder for ids that are not configured (devices found at run time,
    another suite's config) are listed after them when they are held. The folder is only
    read: nothing is created, and a record left by a dead process shows as free.
    """
    root = Path(lock_dir)
    host = socket.gethostname()
    wanted: list[tuple[Kind, str]] = [("device", d.id) for d in devices] + [("account", a.id) for a in accounts]
    rows = [_row(root, kind, id, host) for kind, id in wanted]
    known = set(wanted)
    extra: list[tuple[Kind, str]] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            if not entry.name.endswith(_LOCK_SUFFIX):
                continue
            kind_s, sep, quoted = entry.name[: -len(_LOCK_SUFFIX)].partition("-")
            if sep and kind_s in ("device", "account"):
                key: tuple[Kind, str] = ("device" if kind_s == "device" else "account", unquote(quoted))
                if key not in known:
                    extra.append(key)
    for kind, id in sorted(extra):
        row = _row(root, kind, id, host)
        if row.held:
            rows.append(row)
    return rows


def format_lease_table(rows: Sequence[Row]) -> str:
    """A plain-text table, one line per device or account, for ``pytest-sop leases``."""
    header = ("KIND", "ID", "STATE", "CASE", "OPERATOR", "PID", "HOST", "WORKER", "SINCE")
    lines: list[tuple[str, ...]] = [header]
    for r in rows:
        h = r.holder
        if h is None:
            rest = ("?" if r.held else "-",) + ("-",) * 5
        else:
            rest = (h.case, h.operator, str(h.pid), h.host, h.worker or "-", h.since)
        lines.append((r.kind, r.id, r.state, *rest))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines)


class Lease:
    """A device (and maybe an account) held exclusively until :meth:`release`."""

    def __init__(
        self,
        device: Device,
        account: Account | None,
        *,
        case: str,
        requirement: str,
        locks: Sequence[tuple[Path, FileLock]],
        acquired_at: float,
        waited: float,
        since: str,
    ) -> None:
        self.device = device
        self.account = account
        self.case = case
        self.requirement = requirement
        #: ``time.monotonic()`` when the lease was taken.
        self.acquired_at = acquired_at
        #: Seconds spent waiting for it.
        self.waited = waited
        #: UTC ISO 8601 time when it was taken, as in the holder records.
        self.since = since
        self._locks = list(locks)  # (holder record path, lock), in the order taken
        self._mutex = threading.Lock()

    @property
    def released(self) -> bool:
        return not self._locks

    def release(self) -> None:
        """Clear the holder records and unlock, last taken first. Calling it again does nothing."""
        with self._mutex:
            locks, self._locks = self._locks, []
        errors: list[BaseException] = []
        for record, lock in reversed(locks):
            try:
                # The record goes first: once unlocked, the next holder writes its own.
                with contextlib.suppress(FileNotFoundError):
                    record.unlink()
            except OSError as e:
                errors.append(e)
            finally:
                try:
                    lock.release()
                except Exception as e:
                    errors.append(e)
        if errors:
            raise errors[0]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __repr__(self) -> str:  # ids only: an account's fields may hold secrets
        account = self.account.id if self.account else None
        state = "released" if self.released else "held"
        return f"<Lease device={self.device.id!r} account={account!r} case={self.case!r} {state}>"


def candidate_pairs(
    devices: Sequence[Device], accounts: Sequence[Account] | None, *, prefer_device: str | None = None
) -> list[Pair]:
    """The acceptable (device, account) pairs, in preference order, account affinity honoured.

    ``devices`` and ``accounts`` are the matching ones (``matching.candidate_devices`` and
    ``candidate_accounts``), in preference order; ``accounts=None`` when the case needs no
    account. Pairs go account by account, then device by device; the pairs on
    ``prefer_device`` (e.g. the device this xdist worker used last) come first.
    """
    if accounts is None:
        pairs: list[Pair] = [(d, None) for d in devices]
    else:
        pairs = [(d, a) for a in accounts for d in devices if may_use(a, d)]
    if prefer_device is not None:
        pairs.sort(key=lambda p: p[0].id != prefer_device)  # stable: keeps the order otherwise
    return pairs


@dataclass(frozen=True)
class _Plan:
    device: Device
    account: Account | None
    # (kind, id, lock name), sorted by lock name: the one global order of taking locks.
    locks: tuple[tuple[Kind, str, str], ...]


class LeasePool:
    """Takes leases in one lock folder on behalf of one run (one pytest process).

    ``lock_dir`` is shared by every run of the host (the caller decides where; it is
    created if missing). ``run_id``, ``operator`` and ``worker`` (the xdist worker id, or
    ``None``) go into every holder record. A pool holds no open files between leases and
    may be used from several threads.
    """

    def __init__(
        self,
        lock_dir: str | os.PathLike[str],
        run_id: str,
        operator: str,
        worker: str | None = None,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        if not poll_interval > 0:
            raise ValueError(f"poll_interval: expected seconds > 0, got {poll_interval}")
        self.lock_dir = Path(lock_dir)
        self.run_id = run_id
        self.operator = operator
        self.worker = worker
        self.poll_interval = poll_interval
        self.host = socket.gethostname()
        self.lock_dir.mkdir(parents=True, exist_ok=True)

    def acquire(self, pairs: Sequence[Pair], *, case: str, timeout: float, requirement: str) -> Lease:
        """Lease the first whole pair of ``pairs`` that is free, waiting up to ``timeout`` seconds.

        ``pairs`` are the acceptable (device, account) pairs in preference order (see
        :func:`candidate_pairs`). ``timeout`` 0 tries each pair once; a negative timeout
        waits without limit. ``case`` (the node id) and ``requirement`` (what the case
        asked for, in words) name the lease in holder records and errors.

        :raises LeaseTimeout: no pair became free in time; the message names the
            requirement, the candidates and who holds them.
        :raises DeviceError: ``pairs`` is empty.
        """
        if not pairs:
            raise DeviceError("pool", f"no device and account can serve {requirement}")
        plans = [_plan(device, account) for device, account in pairs]
        start = time.monotonic()
        deadline = math.inf if timeout < 0 else start + timeout
        while True:
            busy: set[str] = set()
            for plan in plans:
                if any(name in busy for _, _, name in plan.locks):
                    continue
                held = self._try(plan, busy)
                if held is not None:
                    return self._lease(plan, held, case=case, requirement=requirement, start=start)
            now = time.monotonic()
            if now >= deadline:
                raise LeaseTimeout(self._timeout_message(plans, requirement, timeout))
            # A little jitter keeps waiters of one device from polling in lockstep.
            time.sleep(min(self.poll_interval * random.uniform(0.5, 1.0), deadline - now))

    def _try(self, plan: _Plan, busy: set[str]) -> list[tuple[Kind, str, FileLock]] | None:
        """Every lock of a plan without waiting, or none: a partial hold is dropped at once."""
        held: list[tuple[Kind, str, FileLock]] = []
        try:
            for kind, id, name in plan.locks:
                lock = _new_lock(self.lock_dir / (name + _LOCK_SUFFIX))
                try:
                    lock.acquire(blocking=False)
                except Timeout:
                    busy.add(name)
                    break
                held.append((kind, id, lock))
            else:
                return held
        except BaseException:
            _unlock_all(lock for _, _, lock in held)
            raise
        _unlock_all(lock for _, _, lock in held)
        return None

    def _lease(
        self, plan: _Plan, held: list[tuple[Kind, str, FileLock]], *, case: str, requirement: str, start: float
    ) -> Lease:
        acquired_at = time.monotonic()
        since = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        records: list[tuple[Path, FileLock]] = []
        try:
            for kind, id, lock in held:
                record = Holder(kind, id, self.run_id, self.host, os.getpid(), self.worker, case, self.operator, since)
                path = holder_path(self.lock_dir, kind, id)
                _write_atomic(path, json.dumps(asdict(record)).encode())
                records.append((path, lock))
        except BaseException:
            for path, _ in records:
                with contextlib.suppress(OSError):
                    path.unlink()
            _unlock_all(lock for _, _, lock in held)
            raise
        return Lease(
            plan.device,
            plan.account,
            case=case,
            requirement=requirement,
            locks=records,
            acquired_at=acquired_at,
            waited=acquired_at - start,
            since=since,
        )

    def _timeout_message(self, plans: Sequence[_Plan], requirement: str, timeout: float) -> str:
        devices: list[tuple[Kind, str]] = []
        accounts: list[tuple[Kind, str]] = []
        for plan in plans:
            if ("device", plan.device.id) not in devices:
                devices.append(("device", plan.device.id))
            if plan.account is not None and ("account", plan.account.id) not in accounts:
                accounts.append(("account", plan.account.id))
        candidates = devices + accounts  # each in preference order
        what = "device and account" if accounts else "device"
        lines = [f"no {what} free for {requirement} within {timeout:g} s", "candidates:"]
        for kind, id in candidates:
            row = _row(self.lock_dir, kind, id, self.host)
            if row.holder is not None:
                state = f"held by {row.holder.describe()}"
            elif row.held:
                state = "held (holder not recorded yet)"
            else:
                state = "free now"
            lines.append(f"  {kind} {id}: {state}")
        pairs = ", ".join(f"{p.device.id}+{p.account.id}" if p.account else p.device.id for p in plans)
        lines.append(f"pairs tried: {pairs}")
        return "\n".join(lines)


def _plan(device: Device, account: Account | None) -> _Plan:
    locks: list[tuple[Kind, str, str]] = [("device", device.id, lock_name("device", device.id))]
    if account is not None:
        locks.append(("account", account.id, lock_name("account", account.id)))
    return _Plan(device, account, tuple(sorted(locks, key=lambda lock: lock[2])))


def _unlock_all(locks: Iterable[FileLock]) -> None:
    for lock in reversed(list(locks)):
        with contextlib.suppress(Exception):
            lock.release()


def pairs_for(
    config: SuiteConfig,
    device: DeviceRequirement | None,
    account: AccountRequirement | None,
    *,
    account_id: str | None = None,
    prefer_device: str | None = None,
) -> list[Pair]:
    """The pairs that can serve a requirement: matching devices, and matching accounts allowed on them."""
    devices = candidate_devices(config, device)
    accounts = None
    if account is not None:
        accounts = candidate_accounts(config, device, account, devices)
        if account_id is not None:
            accounts = [a for a in accounts if a.id == account_id]
    return candidate_pairs(devices, accounts, prefer_device=prefer_device)
