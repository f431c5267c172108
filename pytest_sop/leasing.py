"""Exclusive leases on devices and accounts, shared by every pytest process of a host.

The lock folder is one per host: ``/tmp/pytest-sop-locks`` (:data:`DEFAULT_LOCK_DIR`)
unless ini ``sop_lock_dir`` names another; it does not depend on ``USER`` or ``TMPDIR``,
so every user and every run of the host leases from the same locks. A folder we create
gets mode ``01777`` (set explicitly, whatever the umask: sticky and world-writable like
``/tmp``, so every user may add lock files and none may remove another's). Before use
the folder is checked with ``lstat``: a real directory (not a symlink), owned by root or
by the current user, and sticky if group or others may write it. Anything else is refused
with :class:`LockDirError` naming the folder, its owner and mode, and the fix (ini
``sop_lock_dir``, or ``sudo install -d -m 1777 -o root PATH``). On a host with several
users an admin creates the shared folder once that way; a folder created by one ordinary
user is trusted by that user only.

Each device and each account has one lock file in the folder (``device-<id>.lock``,
``account-<id>.lock``), opened by this module itself relative to the folder's descriptor
with ``O_RDWR|O_CREAT|O_NOFOLLOW`` (never ``O_TRUNC``), made ``0666`` when we create it
so other users lock the same inode, and locked with ``flock(LOCK_EX|LOCK_NB)``: the
kernel frees a lease the moment its holder dies, however it dies. Lock files are never
deleted. A lock file that cannot be used safely (a symlink, a hard link, a fifo, a
directory, another user's private file) is skipped like a busy one and named in the
timeout message, so it does not stop other devices from being leased.

The holder record (run id, host, pid, xdist worker, case, operator, since) is written
into the lock file itself while its lock is held, and cleared before unlocking: no
separate file, so nothing is ever written through a planted link, and in a sticky folder
no other user can replace it. It carries ids only, never an account's fields. The record
is a claim, not proof: :func:`lease_table` and timeout messages take the holder's pid
from the kernel (``/proc/locks``) and show that pid and its user when the record does not
agree; a record left by a dead process is ignored.

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
import errno
import fcntl
import json
import math
import os
import pwd
import random
import socket
import stat
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Literal, Protocol, Self, TypeVar
from urllib.parse import quote, unquote

from .errors import DeviceError, LeaseTimeout, SopError
from .holds import Hold
from .matching import candidate_accounts, candidate_devices, may_use
from .model import Account, AccountRequirement, Device, DeviceRequirement, SuiteConfig

__all__ = [
    "DEFAULT_LOCK_DIR",
    "DEFAULT_POLL_INTERVAL",
    "Hold",
    "Holder",
    "Kind",
    "Lease",
    "LeasePool",
    "LeasePoolBase",
    "LockDirError",
    "Pair",
    "Row",
    "candidate_pairs",
    "check_lock_dir",
    "format_lease_table",
    "holder_path",
    "lease_table",
    "lock_name",
    "lock_path",
    "release_hold",
]

Kind = Literal["device", "account"]
Pair = tuple[Device, Account | None]

#: The host's one lock folder when ini ``sop_lock_dir`` names none.
DEFAULT_LOCK_DIR = "/tmp/pytest-sop-locks"

#: Seconds between two rounds of tries while waiting: a lock freed by a dead holder is
#: taken by a waiter well within a second.
DEFAULT_POLL_INTERVAL = 0.025

_LOCK_SUFFIX = ".lock"
_RECORD_LIMIT = 64 * 1024  # a record is a few hundred bytes; never read a planted giant
_OPEN = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY  # NONBLOCK: a fifo never hangs us
_FIX = (
    "use a folder only you (or root) control: set ini sop_lock_dir to one, "
    "or have an admin create the shared one: sudo install -d -m 1777 -o root {path}"
)


class LockDirError(SopError):
    """The lock folder is unsafe (someone else could swap or plant locks) or cannot be made."""


def lock_name(kind: Kind, id: str) -> str:
    """``device-<id>`` or ``account-<id>``; an id is percent-encoded where a file name could not hold it."""
    return f"{kind}-{quote(id, safe='')}"


def lock_path(lock_dir: str | os.PathLike[str], kind: Kind, id: str) -> Path:
    return Path(lock_dir) / (lock_name(kind, id) + _LOCK_SUFFIX)


def holder_path(lock_dir: str | os.PathLike[str], kind: Kind, id: str) -> Path:
    """Where the holder record is: in the lock file itself."""
    return lock_path(lock_dir, kind, id)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _owner(st: os.stat_result) -> str:
    return f"owner {_user(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o}"


def _why_unsafe(path: str, st: os.stat_result) -> str | None:
    """Why a lock folder must not be trusted, or ``None`` when it may be."""
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return f"it is a symbolic link (to {target}), which whoever made it can point anywhere"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    me = os.geteuid()
    if st.st_uid not in (0, me):
        return f"it is owned by {_user(st.st_uid)} (uid {st.st_uid}), neither root nor you ({_user(me)})"
    mode = stat.S_IMODE(st.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
        return (
            f"group or others may write it (mode {mode:04o}) without the sticky bit, so anyone could replace lock files"
        )
    return None


def _refuse(path: str, st: os.stat_result, why: str) -> LockDirError:
    return LockDirError(f"lock folder {path} ({_owner(st)}) is unsafe: {why}; {_FIX.format(path=path)}")


def _open_dir(path: str) -> int | None:
    """A descriptor of a trusted lock folder, ``None`` when it does not exist; LockDirError when unsafe."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise LockDirError(f"lock folder {path} cannot be used: {e.strerror}; {_FIX.format(path=path)}") from None
    why = _why_unsafe(path, st)
    if why is not None:
        raise _refuse(path, st, why)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise LockDirError(f"lock folder {path} cannot be opened: {e.strerror}; {_FIX.format(path=path)}") from None
    # What we opened is what we checked: not swapped for another folder in between.
    fst = os.fstat(fd)
    if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise LockDirError(f"lock folder {path} was replaced while being checked; {_FIX.format(path=path)}")
    return fd


def check_lock_dir(lock_dir: str | os.PathLike[str], *, create: bool = True) -> None:
    """Make the lock folder (mode 01777) if missing, and check it may be trusted.

    :raises LockDirError: it is unsafe (a symlink, not a directory, owned by someone else,
        writable by others without the sticky bit) or cannot be made; the message names
        the folder, its owner and mode, why, and the fix.
    """
    fd = _prepare(os.path.abspath(lock_dir), create=create)
    if fd is not None:
        os.close(fd)


def _prepare(path: str, *, create: bool) -> int | None:
    fd = _open_dir(path)
    if fd is not None or not create:
        return fd
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass  # another process made it first: checked below like any folder
    except OSError as e:
        raise LockDirError(f"lock folder {path} cannot be created: {e.strerror}; {_FIX.format(path=path)}") from None
    else:
        # 0700 until now, so nobody could plant anything; chmod, not the mode argument, so
        # the umask does not matter.
        os.chmod(path, 0o1777, follow_symlinks=False)
    return _open_dir(path)


class _Unusable(Exception):
    """A lock file we must not use; the message says which and why."""


def _describe_file(dir_fd: int, path: Path, why: str) -> str:
    try:
        owner = f" ({_owner(os.lstat(path.name, dir_fd=dir_fd))})"
    except OSError:
        owner = ""
    return f"lock file {path}{owner} cannot be used: {why}"


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a fifo"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))  # fmt: skip


def _open_lock(dir_fd: int, path: Path, *, create: bool) -> tuple[int, bool] | None:
    """(descriptor, writable) of a lock file in the folder ``dir_fd``; ``None`` if missing and not ``create``.

    Never truncates, never follows a symlink, refuses anything but a regular file with one
    name (a hard link could be another user's file). A file we may not write (another
    user's ``0644``) is still locked, read-only; our record then goes unwritten.

    :raises _Unusable: naming the file, its owner and mode, and what is wrong.
    """
    name, writable, created = path.name, True, False
    try:
        try:
            fd = os.open(name, os.O_RDWR | _OPEN, dir_fd=dir_fd)
        except FileNotFoundError:
            if not create:
                return None
            try:
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | _OPEN, 0o666, dir_fd=dir_fd)
                created = True
            except FileExistsError:
                fd = os.open(name, os.O_RDWR | _OPEN, dir_fd=dir_fd)
        except PermissionError:
            fd, writable = os.open(name, os.O_RDONLY | _OPEN, dir_fd=dir_fd), False
    except OSError as e:
        problem = {
            errno.ELOOP: "it is a symbolic link",
            errno.EISDIR: "it is a directory",
            errno.EACCES: "permission denied",
            errno.EPERM: "permission denied",
            errno.ENXIO: "it is a socket or a device",
        }.get(e.errno or 0, e.strerror or str(e))
        raise _Unusable(_describe_file(dir_fd, path, problem)) from None
    try:
        st = os.fstat(fd)
        why = next((what for test, what in _KINDS if test(st.st_mode)), None)
        if why is None and not stat.S_ISREG(st.st_mode):
            why = "not a regular file"
        if why is not None:
            raise _Unusable(_describe_file(dir_fd, path, f"it is {why}" if why.startswith("a ") else why))
        if st.st_nlink != 1:
            raise _Unusable(_describe_file(dir_fd, path, f"it is a hard link ({st.st_nlink} names) to another file"))
        if created:
            os.fchmod(fd, 0o666)  # every user locks this inode, whatever our umask
    except BaseException:
        os.close(fd)
        raise
    return fd, writable


def _lock(fd: int) -> bool:
    """Take the kernel lock without waiting: False when someone holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int, writable: bool) -> None:
    try:
        if writable:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # the record goes first: once unlocked, the next holder writes its own
        fcntl.flock(fd, fcntl.LOCK_UN)  # explicit: a forked child sharing fd must not keep it
    finally:
        os.close(fd)


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
    # A paused case's hold: kept in the record after the lock is let go, so the device stays its case's.
    hold: Hold | None = None

    def describe(self) -> str:
        worker = f", worker {self.worker}" if self.worker else ""
        held = f"; {self.hold.describe()}" if self.hold else ""
        return (
            f"case {self.case} (pid {self.pid} on {self.host}{worker}, operator {self.operator}, "
            f"run {self.run_id}, since {self.since}){held}"
        )

    def to_bytes(self) -> bytes:
        """The record as written into the lock file: a lease without a hold reads as it always did."""
        data = asdict(self)
        if data["hold"] is None:
            del data["hold"]
        return json.dumps(data).encode()

    def holding(self) -> Hold | None:
        """The unexpired hold this record carries, if any."""
        return self.hold if self.hold is not None and not self.hold.expired() else None

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
        return cls(kind, id_, run_id, host, pid, worker, case, operator, since, Hold.from_json(data.get("hold")))


def _read_record(fd: int) -> Holder | None:
    try:
        data = os.pread(fd, _RECORD_LIMIT, 0)
        return Holder.from_json(json.loads(data)) if data else None
    except (OSError, ValueError):
        return None


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
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust the signal probe
    return stat_line[stat_line.rfind(")") + 2 :][:1] not in ("Z", "X")


def _pid_user(pid: int) -> str | None:
    try:
        return _user(os.stat(f"/proc/{pid}").st_uid)
    except OSError:
        return None


_Inode = tuple[int, int, int]  # (major, minor, inode), as /proc/locks names a file


def _flock_holders() -> dict[_Inode, int] | None:
    """The pid holding each exclusive ``flock`` of this host, by inode; ``None`` without ``/proc/locks``.

    Only processes this pid namespace can see are listed: a lock missing here may still be held.
    """
    try:
        with open("/proc/locks", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    holders: dict[_Inode, int] = {}
    for line in lines:
        # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:2163558 0 EOF"; waiters have "->" in 2nd place
        parts = line.split()
        if len(parts) < 6 or parts[1] != b"FLOCK" or parts[3] != b"WRITE":
            continue
        try:
            major, minor, inode = parts[5].split(b":")
            holders[(int(major, 16), int(minor, 16), int(inode))] = int(parts[4])
        except ValueError:
            continue
    return holders


@dataclass(frozen=True)
class Row:
    """One line of the lease table: a device or an account, free, held by whom, or unusable."""

    kind: Kind
    id: str
    state: Literal["free", "held", "unusable"]
    holder: Holder | None  # its record, when the kernel agrees it is the holder's (or cannot say)
    pid: int | None = None  # the holder's pid, from the kernel when it can tell
    user: str | None = None  # the holder process's user, from the kernel
    problem: str | None = None  # why the lock file cannot be used

    @property
    def held(self) -> bool:
        return self.state == "held"


def _row(dir_fd: int, lock_dir: Path, kind: Kind, id: str, host: str, kernel: dict[_Inode, int] | None) -> Row:
    path = lock_path(lock_dir, kind, id)
    try:
        opened = _open_lock(dir_fd, path, create=False)
    except _Unusable as e:
        return Row(kind, id, "unusable", None, problem=str(e))
    if opened is None:
        return Row(kind, id, "free", None)
    fd = opened[0]
    try:
        st = os.fstat(fd)
        record = _read_record(fd)
        if record is not None and (record.kind, record.id) != (kind, id):
            record = None
        pid = (kernel or {}).get((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino), 0)
        if pid <= 0:  # the kernel cannot name a holder here: try the lock itself (shared, so briefly)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            except OSError as e:
                return Row(kind, id, "unusable", None, problem=_describe_file(dir_fd, path, e.strerror or str(e)))
            else:
                if record is not None and record.holding() is not None:
                    return Row(kind, id, "held", record)  # a paused case's: no process holds it, its hold does
                return Row(kind, id, "free", None)
    finally:
        os.close(fd)
    if pid > 0:
        # The kernel's word wins: a record anyone could have written names its holder only if it agrees.
        agrees = record is not None and record.host == host and record.pid == pid
        return Row(kind, id, "held", record if agrees else None, pid, _pid_user(pid))
    if record is not None and record.host == host and not _pid_alive(record.pid):
        record = None  # left by a dead process
    return Row(kind, id, "held", record, record.pid if record else None)


def _rows(dir_fd: int, lock_dir: Path, wanted: Iterable[tuple[Kind, str]]) -> list[Row]:
    host, kernel = socket.gethostname(), _flock_holders()
    return [_row(dir_fd, lock_dir, kind, id, host, kernel) for kind, id in wanted]


def lease_table(lock_dir: str | os.PathLike[str], devices: Iterable[Device], accounts: Iterable[Account]) -> list[Row]:
    """Every device and account, free, held by whom or unusable; devices and accounts first, in config order.

    Locks found in the folder for ids that are not configured (devices found at run time,
    another suite's config) are listed after them when they are held. The folder is only
    read: nothing is created, and a record left by a dead process shows as free.

    :raises LockDirError: the folder is unsafe (see :func:`check_lock_dir`).
    """
    root = Path(lock_dir)
    wanted: list[tuple[Kind, str]] = [("device", d.id) for d in devices] + [("account", a.id) for a in accounts]
    dir_fd = _open_dir(os.path.abspath(root))
    if dir_fd is None:
        return [Row(kind, id, "free", None) for kind, id in wanted]
    try:
        known = set(wanted)
        extra: set[tuple[Kind, str]] = set()
        for name in os.listdir(dir_fd):
            if not name.endswith(_LOCK_SUFFIX):
                continue
            kind_s, sep, quoted = name[: -len(_LOCK_SUFFIX)].partition("-")
            if sep and kind_s in ("device", "account"):
                key: tuple[Kind, str] = ("device" if kind_s == "device" else "account", unquote(quoted))
                if key not in known:
                    extra.add(key)
        rows = _rows(dir_fd, root, [*wanted, *sorted(extra)])
    finally:
        os.close(dir_fd)
    return rows[: len(wanted)] + [r for r in rows[len(wanted) :] if r.held]


def format_lease_table(rows: Sequence[Row]) -> str:
    """A plain-text table, one line per device or account, for ``pytest-sop leases``; then what is unusable."""
    header = ("KIND", "ID", "STATE", "CASE", "OPERATOR", "PID", "USER", "HOST", "WORKER", "SINCE")
    lines: list[tuple[str, ...]] = [header]
    for r in rows:
        h = r.holder
        pid, user = str(r.pid) if r.pid else "-", r.user or "-"
        if h is not None and h.holding() is not None and not r.pid:
            rest = (h.case, h.operator, "-", "-", h.host, "-", h.since)
        elif h is not None:
            rest = (h.case, h.operator, pid, user, h.host, h.worker or "-", h.since)
        elif r.held:
            rest = ("?", "-", pid, user, "-", "-", "-")
        else:
            rest = ("-",) * 7
        state = "hold" if h is not None and h.holding() is not None and not r.pid else r.state
        lines.append((r.kind, r.id, state, *rest))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    table = [("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()) for line in lines]
    holds = [
        f"{r.kind} {r.id}: {hold.describe()}" for r in rows if r.holder and (hold := r.holder.holding()) and not r.pid
    ]
    return "\n".join(table + holds + [f"{r.kind} {r.id}: {r.problem}" for r in rows if r.problem])


def _state(row: Row) -> str:
    """A row in the words of a timeout message."""
    if row.problem is not None:
        return row.problem
    if not row.held:
        return "free now"
    hold = row.holder.holding() if row.holder is not None and row.pid is None else None
    if hold is not None:
        return hold.describe()
    if row.holder is not None:
        return f"held by {row.holder.describe()}"
    if row.pid is not None:
        return f"held by pid {row.pid} (user {row.user or '?'}), whose holder record is missing or not its own"
    return "held (holder not recorded yet)"


_Held = tuple[int, bool]  # (lock file descriptor, writable)


class HeldLocks(Protocol):
    """The locks of one lease in some backend (lock files, a database session): what :class:`Lease`
    lets go of, renames, keeps for a paused case, and checks."""

    def release(self) -> None:
        """Clear the holder records and unlock, last taken first."""

    def rename(self, case: str, since: str) -> None:
        """The holder records name ``case`` (held on by this process) from ``since``.

        :raises SopError: the locks are no longer held; they are let go of all the same.
        """

    def lost(self) -> str | None:
        """Why the locks are no longer held (their server went away), or ``None`` while they are."""

    def keep(self, hold: Hold) -> None:
        """Pause: the holder records carry ``hold`` and the locks are let go without clearing them.

        :raises SopError: a record cannot carry the hold; the locks are let go all the same.
        """

    def paused_holds(self) -> list[Hold | None]:
        """The unexpired paused-case hold each lock's record carries (empty: the backend keeps none)."""

    def drop(self) -> None:
        """Let go of locks just taken without touching their records (someone else's hold stays)."""


class _FileHold:
    """Lock files held with ``flock``: the kernel frees them when the process dies."""

    def __init__(self, locks: Sequence[_Held]) -> None:
        self._locks = list(locks)  # in the order taken

    def release(self) -> None:
        errors: list[OSError] = []
        for fd, writable in reversed(self._locks):
            try:
                _unlock(fd, writable)
            except OSError as e:
                errors.append(e)
        if errors:
            raise errors[0]

    def rename(self, case: str, since: str) -> None:
        try:
            for fd, writable in self._locks:
                old = _read_record(fd) if writable else None
                if old is not None:
                    new = replace(old, case=case, since=since, pid=os.getpid(), hold=None)
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, new.to_bytes(), 0)
        except BaseException:
            for fd, writable in reversed(self._locks):
                with contextlib.suppress(OSError):
                    _unlock(fd, writable)
            raise

    def lost(self) -> str | None:
        return None  # a lock file is held as long as this process lives

    def keep(self, hold: Hold) -> None:
        locks, self._locks = self._locks, []
        unwritable = False
        try:
            for fd, writable in locks:
                old = _read_record(fd) if writable else None
                if old is None:
                    unwritable = True
                    continue
                os.ftruncate(fd, 0)
                os.pwrite(fd, replace(old, hold=hold).to_bytes(), 0)
        finally:
            _unlock_all(locks)  # not cleared: the record is the hold
        if unwritable:
            raise SopError("the hold could not be written into every lock file")

    def paused_holds(self) -> list[Hold | None]:
        """The unexpired hold each lock's record carries, if any, in the order the locks were taken."""
        return [r.holding() if (r := _read_record(fd)) is not None else None for fd, _ in self._locks]

    def drop(self) -> None:
        """Let go of locks just taken without touching their records (someone else's hold stays)."""
        locks, self._locks = self._locks, []
        _unlock_all(locks)


class Lease:
    """A device (and maybe an account) held exclusively until :meth:`release`."""

    def __init__(
        self,
        device: Device,
        account: Account | None,
        *,
        case: str,
        requirement: str,
        hold: HeldLocks,
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
        self._hold: HeldLocks | None = hold
        self._mutex = threading.Lock()

    @property
    def released(self) -> bool:
        return self._hold is None

    def release(self) -> None:
        """Clear the holder records and unlock, last taken first. Calling it again does nothing."""
        with self._mutex:
            hold, self._hold = self._hold, None
        if hold is not None:
            hold.release()

    def lost(self) -> str | None:
        """Why this lease is no longer exclusive (its lease server went away), or ``None``."""
        hold = self._hold
        return hold.lost() if hold is not None else None

    def hand_over(self, case: str, requirement: str) -> Lease:
        """The same device (and account) held on for ``case``, the next case of this process: the locks
        are never let go in between, so no one else can take the device while its last session is
        being deleted. The holder records name ``case`` from now on; this lease is left released.

        :raises SopError: this lease was already released (or its locks were lost).
        """
        with self._mutex:
            hold, self._hold = self._hold, None
        if hold is None:
            raise SopError(f"the lease on device {self.device.id} was already released")
        acquired_at = time.monotonic()
        since = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        hold.rename(case, since)
        return Lease(
            self.device, self.account, case=case, requirement=requirement, hold=hold,
            acquired_at=acquired_at, waited=0.0, since=since,
        )  # fmt: skip

    def keep_for(self, hold: Hold) -> None:
        """Pause: the holder records carry ``hold`` from now on and the locks are let go without clearing
        them, so the device and account stay the paused case's after this process ends (see
        :meth:`LeasePool.acquire`). The lease is released.

        :raises SopError: a lock file this process may not write cannot carry the hold; the lease is
            released all the same.
        """
        with self._mutex:
            locks, self._hold = self._hold, None
        if locks is None:
            raise SopError(f"the lease on device {self.device.id} was already released")
        try:
            locks.keep(hold)
        except SopError as e:
            raise SopError(f"device {self.device.id}: {e}") from None

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


H = TypeVar("H", bound=HeldLocks)


class LeasePoolBase(Generic[H]):
    """The rules every lease backend keeps: one global order of taking locks, never waiting while
    holding one, preference order, try-without-blocking, and a timeout message naming the holders.

    A backend says how to take a plan's locks without waiting (:meth:`_try`), how to record the
    holder (:meth:`_record`) and what the lease table says about some locks (:meth:`_rows`).
    ``run_id``, ``operator`` and ``worker`` (the xdist worker id, or ``None``) go into every holder
    record. A pool may be used from several threads.
    """

    def __init__(
        self, run_id: str, operator: str, worker: str | None, *, poll_interval: float = DEFAULT_POLL_INTERVAL
    ) -> None:
        if not poll_interval > 0:
            raise ValueError(f"poll_interval: expected seconds > 0, got {poll_interval}")
        self.run_id = run_id
        self.operator = operator
        self.worker = worker
        self.poll_interval = poll_interval
        self.host = socket.gethostname()

    def acquire(
        self, pairs: Sequence[Pair], *, case: str, timeout: float, requirement: str, hold: str | None = None,
        keep_hold: bool = False,
    ) -> Lease:  # fmt: skip
        """Lease the first whole pair of ``pairs`` that is free, waiting up to ``timeout`` seconds.

        A device or account whose holder record carries an unexpired :class:`~pytest_sop.holds.Hold`
        is busy, even with its lock free (a paused case keeps it), except for the case whose hold
        id is ``hold``: it takes the hold over. With ``keep_hold`` (a resume) the new records keep
        the hold, so a resume that dies leaves the device held, not free with a half-done case;
        without (the paused case run again from the start) the hold ends here.

        ``pairs`` are the acceptable (device, account) pairs in preference order (see
        :func:`candidate_pairs`). ``timeout`` 0 tries each pair once; a negative timeout
        waits without limit. ``case`` (the node id) and ``requirement`` (what the case
        asked for, in words) name the lease in holder records and errors.

        :raises LeaseTimeout: no pair became free in time (at once when only paused cases' holds are
            in the way); the message names the requirement, the candidates and who holds them (or why
            a lock file is unusable).
        :raises DeviceError: ``pairs`` is empty.
        :raises ValueError: ``timeout`` is not a number.
        """
        if math.isnan(timeout):
            raise ValueError(f"timeout: expected seconds, got {timeout}")
        if not pairs:
            raise DeviceError("pool", f"no device and account can serve {requirement}")
        plans = [_plan(device, account) for device, account in pairs]
        start = time.monotonic()
        deadline = math.inf if timeout < 0 else start + timeout
        while True:
            busy: set[str] = set()  # busy or unusable this round
            on_hold: set[str] = set()  # of those, kept by a paused case's hold, not by a running case
            for plan in plans:
                if any(name in busy for _, _, name in plan.locks):
                    continue
                held = self._try(plan, busy)
                if held is None:
                    continue
                kept = held.paused_holds()
                blocked = [name for (_, _, name), h in zip(plan.locks, kept, strict=False) if h and h.hold_id != hold]
                if blocked:  # another case's pause keeps them, with no process holding the locks
                    held.drop()
                    busy.update(blocked)
                    on_hold.update(blocked)
                    continue
                taken = next((h for h in kept if h), None)
                return self._lease(
                    plan, held, case=case, requirement=requirement, start=start, hold=taken if keep_hold else None
                )
            now = time.monotonic()
            # A hold ends when a person decides, not when a case does: when holds are all that is in
            # the way, waiting out the timeout would only delay the same error.
            if now >= deadline or busy <= on_hold:
                raise LeaseTimeout(self._timeout_message(plans, requirement, timeout))
            # A little jitter keeps waiters of one device from polling in lockstep.
            time.sleep(min(self.poll_interval * random.uniform(0.5, 1.0), deadline - now))

    def _try(self, plan: _Plan, busy: set[str]) -> H | None:
        """Every lock of ``plan`` in its order without waiting, or none: a partial hold is dropped at
        once, and the lock found busy (or unusable) is added to ``busy``."""
        raise NotImplementedError

    def _record(self, plan: _Plan, held: H, holders: Sequence[Holder]) -> None:
        """Write the holder records of locks just taken (one per lock, in ``plan.locks`` order)."""
        raise NotImplementedError

    def _rows(self, wanted: Sequence[tuple[Kind, str]]) -> list[Row]:
        """The lease table's rows for some devices and accounts, for a timeout message."""
        raise NotImplementedError

    def _lease(
        self, plan: _Plan, held: H, *, case: str, requirement: str, start: float, hold: Hold | None = None
    ) -> Lease:
        acquired_at = time.monotonic()
        since = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        pid = os.getpid()
        holders = [
            Holder(kind, id, self.run_id, self.host, pid, self.worker, case, self.operator, since, hold)
            for kind, id, _ in plan.locks
        ]
        try:
            self._record(plan, held, holders)
        except BaseException:
            with contextlib.suppress(Exception):
                held.release()
            raise
        return Lease(
            plan.device, plan.account, case=case, requirement=requirement, hold=held,
            acquired_at=acquired_at, waited=acquired_at - start, since=since,
        )  # fmt: skip

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
        for row in self._rows(candidates):
            lines.append(f"  {row.kind} {row.id}: {_state(row)}")
        pairs = ", ".join(f"{p.device.id}+{p.account.id}" if p.account else p.device.id for p in plans)
        lines.append(f"pairs tried: {pairs}")
        return "\n".join(lines)


class LeasePool(LeasePoolBase[_FileHold]):
    """Takes leases in one lock folder on behalf of one run (one pytest process).

    ``lock_dir`` is shared by every run of the host (the caller decides where, usually
    :data:`DEFAULT_LOCK_DIR`); it is created if missing and checked before use
    (:func:`check_lock_dir`). A pool keeps the folder open (so it keeps using the folder it
    checked) but no lock file between leases.

    :raises LockDirError: the folder is unsafe or cannot be made.
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
        super().__init__(run_id, operator, worker, poll_interval=poll_interval)
        self.lock_dir = Path(lock_dir)
        fd = _prepare(os.path.abspath(self.lock_dir), create=True)
        assert fd is not None  # made above, or refused
        self._dir_fd = fd

    def __del__(self) -> None:
        with contextlib.suppress(AttributeError, OSError):
            os.close(self._dir_fd)

    def _try(self, plan: _Plan, busy: set[str]) -> _FileHold | None:
        held: list[tuple[int, bool]] = []
        try:
            for _, _, name in plan.locks:
                try:
                    opened = _open_lock(self._dir_fd, self.lock_dir / (name + _LOCK_SUFFIX), create=True)
                except _Unusable:
                    busy.add(name)  # named in the timeout message; tried again next round
                    break
                assert opened is not None  # created if missing
                fd, writable = opened
                try:
                    got = _lock(fd)
                except OSError:  # e.g. no locks on this filesystem: unusable, like above
                    got = False
                if not got:
                    os.close(fd)
                    busy.add(name)
                    break
                held.append((fd, writable))
            else:
                return _FileHold(held)
        except BaseException:
            _unlock_all(held)
            raise
        _unlock_all(held)
        return None

    def _record(self, plan: _Plan, held: _FileHold, holders: Sequence[Holder]) -> None:
        for (fd, writable), record in zip(held._locks, holders, strict=True):
            if writable:  # a lock file we may only read (another user's 0644) keeps no record
                os.ftruncate(fd, 0)
                os.pwrite(fd, record.to_bytes(), 0)

    def _rows(self, wanted: Sequence[tuple[Kind, str]]) -> list[Row]:
        return _rows(self._dir_fd, self.lock_dir, wanted)


def _plan(device: Device, account: Account | None) -> _Plan:
    locks: list[tuple[Kind, str, str]] = [("device", device.id, lock_name("device", device.id))]
    if account is not None:
        locks.append(("account", account.id, lock_name("account", account.id)))
    return _Plan(device, account, tuple(sorted(locks, key=lambda lock: lock[2])))


def _unlock_all(held: Sequence[_Held]) -> None:
    """Drop a partial hold: no record was written, so none is cleared."""
    for fd, _ in reversed(held):
        with contextlib.suppress(OSError):
            _unlock(fd, False)


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


def release_hold(lock_dir: str | os.PathLike[str], kind: Kind, id: str, hold_id: str) -> bool:
    """End a hold (``pytest-sop handoff release``, an expired or voided pause): its record is cleared.

    Returns False when the lock's record carries no such hold (already ended, or taken over by a
    new run of the case). A hold taken over by a running resume is not touched.

    :raises SopError: the lock is held by a running process (the resume, or whoever has it now).
    """
    root = os.path.abspath(lock_dir)
    dir_fd = _open_dir(root)
    if dir_fd is None:
        return False
    try:
        try:
            opened = _open_lock(dir_fd, lock_path(root, kind, id), create=False)
        except _Unusable as e:
            raise SopError(str(e)) from None
        if opened is None:
            return False
        fd, writable = opened
        if not _lock(fd):
            os.close(fd)
            raise SopError(f"{kind} {id} is in use by a running case now: its hold ends when that case does")
        record = _read_record(fd)
        mine = record is not None and record.hold is not None and record.hold.hold_id == hold_id
        _unlock(fd, writable and mine)  # cleared only when it is this hold's record
        return mine
    finally:
        os.close(dir_fd)
