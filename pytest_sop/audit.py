"""The tamper-evident audit log: one JSON object per line, each line carrying the sha256 of the line before it.

Line format (keys sorted, compact separators, ASCII only, so a line has one canonical form)::

    {"device":"pixel-7","event":"lease","prev":"<64 hex>","seq":1,"ts":"2026-05-09T07:35:25.123456Z"}

- ``seq`` counts lines from 1 with no gaps; ``ts`` is UTC with microseconds and a ``Z``, the time
  the event happened (a queued line is written up to a moment later; lines of several processes
  may so be out of time order by that much);
  ``event`` names what happened; the caller's fields sit beside them.
- ``prev`` is the sha256 (hex) of the previous line's exact bytes **without** its newline;
  the first line's ``prev`` is 64 zeros.
- A sidecar ``PATH.head`` holds ``{"seq":N,"sha256":"<sha256 of line N>"}``, replaced atomically
  after every append, so a cut tail (whole lines removed from the end) is detected too.
- Writers take ``PATH.lock`` (``flock``, as filelock takes it on POSIX), read only the last line
  (seeking from the end), and write each batch of lines with one ``os.write`` on an ``O_APPEND``
  descriptor: pytest-xdist workers and separate runs can append to the same file without
  interleaved or torn lines.

The chain alone is no anchor (whoever can write the log can recompute it): each run with a key
ends its part with a ``signed`` line over the chain head, written through :meth:`AuditLog.append_at_head`
(see :mod:`pytest_sop.seal` and docs/audit-log.md).

This module is engine code: it imports the standard library and filelock (for its ``Timeout``) only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import hashlib
import json
import json.scanner
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, cast

import filelock

from .errors import SopError

__all__ = [
    "GENESIS",
    "STRUCTURAL",
    "AuditError",
    "AuditLog",
    "AuditQueue",
    "Chain",
    "QueuedLog",
    "VerifyResult",
    "audit_main",
    "read_chain",
    "verify",
]

GENESIS = "0" * 64
"""The ``prev`` of the first line."""

_RESERVED = frozenset({"seq", "ts", "event", "prev"})
STRUCTURAL = _RESERVED | frozenset({
    "case", "sop", "device", "account", "run", "host", "pid", "worker", "operator", "session", "exception",
    "sha256", "bytes", "phase", "outcome", "status", "reused", "waited", "count", "to", "type",
    "signer", "fingerprint", "signature",
})  # fmt: skip
"""Fields that are structure (the chain, ids, outcomes), never free text: the mask never touches them."""
MASK = "***"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TAIL_BLOCK = 4096
# One JSON value at a position (the C scanner json.loads uses), without json.loads' per-call wrapping.
_SCAN: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(cast(Any, json.JSONDecoder()))


class AuditError(SopError):
    """The audit log cannot be extended safely (its end is damaged, or it disagrees with its head file)."""


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify` found. ``line`` is the 1-based number of the first bad line, when there is one."""

    ok: bool
    line: int | None
    reason: str
    lines: int = 0


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def _sha256(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _mask_strings(value: Any, mask: Callable[[str], str]) -> Any:
    """Mask every string (keys too) before serializing, so a secret JSON would escape is caught as well."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {mask(str(k)): _mask_strings(v, mask) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_mask_strings(v, mask) for v in value]
    return value


def _mask_serialized(record: dict[str, Any], mask: Callable[[str], str]) -> dict[str, Any]:
    """The record with each free-text value whose JSON spelling still carries a secret replaced whole."""
    out = dict(record)
    for key, value in record.items():
        if key not in STRUCTURAL:
            text = _canonical(value)
            if mask(text) != text:
                out[key] = MASK
    return out


def _head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _next_head_path(path: Path) -> Path:
    """The head an append is about to make, written before its lines (the head file after them): a
    writer killed in between leaves it naming the lines it appended, so they are told from lines
    added by hand (a crash, not a tamper, and the next append completes the head)."""
    return path.with_name(path.name + ".head.next")


def _head_bytes(seq: int, sha: str) -> bytes:
    return (_canonical({"seq": seq, "sha256": sha}) + "\n").encode("ascii")


def _stamp(st: os.stat_result) -> tuple[int, ...]:
    """What changes whenever a file is written (its ctime no one can set back)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _rewrite(path: Path, data: bytes) -> tuple[int, ...]:
    """``data`` as the whole file, written over it in place; returns the file's :func:`_stamp` after.
    Not a new file renamed over it: that creates a file and deletes one for every append, and on ext4
    without a journal each file created soon after deletions scans past the deleted ones (every
    Allure result of the run paid for it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        view, done = memoryview(data), 0
        while done < len(data):
            done += os.pwrite(fd, view[done:], done)
        st = os.fstat(fd)
        if st.st_size != len(data):
            os.ftruncate(fd, len(data))
            st = os.fstat(fd)
        return _stamp(st)
    finally:
        os.close(fd)


def _read_next_head(path: Path) -> tuple[int, str] | None:
    """What the next head file names, None when there is none or it is not a valid head."""
    try:
        return _read_head(path, _next_head_path(path))
    except ValueError:
        return None


def _read_head(path: Path, head_path: Path | None = None) -> tuple[int, str] | None:
    """The head file's (seq, sha256), None when there is no head file; ValueError when it is not valid."""
    try:
        raw = (head_path or _head_path(path)).read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ValueError("it is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ValueError("it is not a JSON object")
    seq, sha = data.get("seq"), data.get("sha256")
    if type(seq) is not int or seq < 0 or not isinstance(sha, str) or not _HEX64.fullmatch(sha):
        raise ValueError('it lacks an integer "seq" or a sha256 "sha256"')
    return seq, sha


def _read_last_line(path: Path) -> bytes | None:
    """The last line's bytes without its newline, reading backwards from the end; None for an empty file."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return None
    with f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return None
        f.seek(size - 1)
        if f.read(1) != b"\n":
            raise AuditError(f"{path}: the last line has no newline (the file was cut); run `pytest-sop audit verify`")
        chunks: list[bytes] = []
        end = size - 1
        while end > 0:
            start = max(0, end - _TAIL_BLOCK)
            f.seek(start)
            chunk = f.read(end - start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                chunks.append(chunk[cut + 1 :])
                break
            chunks.append(chunk)
            end = start
        return b"".join(reversed(chunks))


def _record(raw: bytes) -> dict[str, Any] | None:
    """The parsed line when it is an audit record (an object with seq, prev, ts and event), else None."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    seq, prev = data.get("seq"), data.get("prev")
    if type(seq) is not int or not isinstance(prev, str) or not _HEX64.fullmatch(prev):
        return None
    if not isinstance(data.get("ts"), str) or not isinstance(data.get("event"), str):
        return None
    return data


def _check_names(fields: dict[str, Any]) -> None:
    clash = _RESERVED.intersection(fields)
    if clash:
        names = ", ".join(sorted(clash))
        raise ValueError(f"audit fields may not be named {names}: those keys belong to the chain")


_FieldsFor = Callable[[int, str], dict[str, Any]]


def _constant(fields: dict[str, Any]) -> _FieldsFor:
    return lambda seq, sha: fields


class _WritersLock:
    """The writers' lock on ``PATH.lock``: ``flock`` on a descriptor this process keeps open, one per
    path, rather than a filelock.FileLock per append (whose own bookkeeping cost more than the line
    it guards). Another process, ``audit verify`` or filelock locks the same file the same way. A
    flock belongs to the open file, shared by all this process's threads: they take turns on a
    mutex first. A forked child opens its own (its parent's open file would share the parent's lock)."""

    _by_path: ClassVar[dict[str, _WritersLock]] = {}
    _by_path_mutex = threading.Lock()

    @classmethod
    def of(cls, path: Path) -> _WritersLock:
        key = os.path.abspath(path)
        with cls._by_path_mutex:
            lock = cls._by_path.get(key)
            if lock is None:
                lock = cls._by_path[key] = cls(key)
            return lock

    def __init__(self, path: str) -> None:
        self.path = path
        self._pid = os.getpid()
        self._mutex = threading.Lock()
        self._fd = -1
        self.folder_made = False
        # After this process's last append to the log: (the log's stamp, its head file's stamp, seq,
        # sha256). While neither file changed since, the next line follows it without reading both back.
        self.tail: tuple[tuple[int, ...], tuple[int, ...], int, str] | None = None

    @contextlib.contextmanager
    def held(self, timeout: float) -> Iterator[None]:
        """Hold the lock; ``filelock.Timeout`` when it is not free within ``timeout`` seconds."""
        self.acquire(timeout)
        try:
            yield
        finally:
            self.release()

    def acquire(self, timeout: float, poll_interval: float = 0.002) -> None:
        """Take the lock; ``filelock.Timeout`` when it is not free within ``timeout`` seconds. Any thread
        of this process may :meth:`release` it."""
        if self._pid != os.getpid():  # a forked child: none of its parent's threads, nor its open file
            self._pid, self._mutex, self._fd, self.tail = os.getpid(), threading.Lock(), -1, None
        deadline = time.monotonic() + timeout
        if not self._mutex.acquire(timeout=max(timeout, 0.0)):
            raise filelock.Timeout(self.path)
        try:
            self._lock(deadline, poll_interval)
        except BaseException:
            self._mutex.release()
            raise

    def release(self) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()

    def _lock(self, deadline: float, poll_interval: float) -> None:
        while True:
            if self._fd < 0:
                flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
                self._fd = os.open(self.path, flags, 0o644)
            fd = self._fd
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise filelock.Timeout(self.path) from None
                time.sleep(poll_interval)
                continue
            # The file may have been removed or replaced since it was opened: only the one on disk counts.
            try:
                on_disk = os.stat(self.path)
            except FileNotFoundError:
                on_disk = None
            mine = os.fstat(fd)
            if on_disk is not None and (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino):
                return
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            self._fd = -1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class AuditLog:
    """Appends hash-chained JSON lines to ``path``; safe to share between processes.

    ``mask`` replaces secrets in free text only: every string (keys too) of the fields that are
    not structure (:data:`STRUCTURAL`: seq, ts, prev, the event name, ids, outcomes). A secret that
    happens to equal part of a timestamp or a hash therefore never changes the chain. A free-text
    value whose JSON spelling would still carry a secret (an escape sequence that completes one)
    is written as the mask as a whole.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mask: Callable[[str], str] | None = None,
        lock_timeout: float = 60.0,
        fsync: bool = False,
    ) -> None:
        self.path = Path(path)
        self.head_path = _head_path(self.path)
        self.next_head_path = _next_head_path(self.path)
        self.lock_path = _lock_path(self.path)
        self._mask = mask
        self._fsync = fsync
        self._lock_timeout = lock_timeout
        self._lock = _WritersLock.of(self.lock_path)  # shared by this process's AuditLogs of the path

    def append(self, event: str, /, **fields: Any) -> str:
        """Append one event and return the line written (without its newline).

        Raises ValueError for a field named like a chain key (seq, ts, event, prev), AuditError when
        the log's end is damaged or disagrees with its head file, and ``filelock.Timeout`` when the
        lock is not free within ``lock_timeout`` seconds.
        """
        _check_names(fields)
        return self.append_at_head(event, lambda seq, sha: fields)

    def append_at_head(self, event: str, fields_for: Callable[[int, str], dict[str, Any]], /) -> str:
        """Append one event whose fields depend on the log's head: ``fields_for(seq, sha256)`` of the
        last line (0 and 64 zeros for an empty log) is called under the writers' lock, so no other
        line can come between the head it saw and the line it makes (a signed head needs that)."""
        return self._write([(event, fields_for, self._mask)])[0]

    def append_many(
        self,
        entries: Sequence[tuple[str, dict[str, Any], Callable[[str], str] | None]],
        /,
        times: Sequence[str] | None = None,
    ) -> list[str]:
        """Append several events at once, in order, under one lock, with one write and one head update:
        ``(event, fields, mask)`` each, ``mask`` None for none. Returns the lines written. ``times``: each
        event's ``ts``, when it happened (default: now)."""
        for _, fields, _ in entries:
            _check_names(fields)
        return self._write([(event, _constant(fields), mask) for event, fields, mask in entries], times)

    def _write(
        self,
        entries: Sequence[tuple[str, Callable[[int, str], dict[str, Any]], Callable[[str], str] | None]],
        times: Sequence[str] | None = None,
    ) -> list[str]:
        """Append ``entries`` under the writers' lock: the next head file first, then the lines, then
        the head file."""
        if not entries:
            return []
        if not self._lock.folder_made:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock.folder_made = True
        lines: list[str] = []
        self._lock.acquire(self._lock_timeout)
        try:
            seq, prev = self._next()
            data = b""
            for i, (event, fields_for, mask) in enumerate(entries):
                fields = fields_for(seq - 1, prev)
                _check_names(fields)
                if mask is not None:
                    fields = {k: v if k in STRUCTURAL else _mask_strings(v, mask) for k, v in fields.items()}
                ts = times[i] if times is not None else _utc_now()
                record = {**fields, "event": event, "seq": seq, "ts": ts, "prev": prev}
                line = _canonical(record)
                if mask is not None and mask(line) != line:
                    line = _canonical(_mask_serialized(record, mask))
                raw = line.encode("utf-8")  # ASCII unless the mask put other characters in
                data += raw + b"\n"
                lines.append(line)
                seq, prev = seq + 1, _sha256(raw)
            head = _head_bytes(seq - 1, prev)
            self._lock.tail = None
            _rewrite(self.next_head_path, head)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                _write_all(fd, data)
                if self._fsync:
                    os.fsync(fd)
                log_stamp = _stamp(os.fstat(fd))
            finally:
                os.close(fd)
            self._lock.tail = (log_stamp, self._commit_head(head), seq - 1, prev)
        finally:
            self._lock.release()
        return lines

    def _commit_head(self, head: bytes) -> tuple[int, ...]:
        """The head file names the last line appended."""
        return _rewrite(self.head_path, head)

    def _next(self) -> tuple[int, str]:
        """The next line's (seq, prev), from the file's last line; checked against the head file."""
        tail = self._lock.tail
        if tail is not None:
            try:
                unchanged = (_stamp(os.stat(self.path)), _stamp(os.stat(self.head_path))) == tail[:2]
            except FileNotFoundError:
                unchanged = False
            if unchanged:
                return tail[2] + 1, tail[3]
        last = _read_last_line(self.path)
        try:
            head = _read_head(self.path)
        except ValueError as exc:
            raise AuditError(f"{self.head_path}: {exc}; run `pytest-sop audit verify`") from None
        if last is None:
            if head is not None and head[0] > 0:
                raise AuditError(f"{self.path} is empty but {self.head_path} records {head[0]} lines (the log was cut)")
            return 1, GENESIS
        record = _record(last)
        if record is None:
            raise AuditError(f"{self.path}: the last line is not an audit record; run `pytest-sop audit verify`")
        seq: int = record["seq"]
        sha = _sha256(last)
        # A head one line behind is an append that stopped before updating the head: the file is the truth.
        # A head ahead of the file, or naming another last line, is a cut or changed tail: appending would hide it.
        if head is not None and (head[0] > seq or (head[0] == seq and head[1] != sha)):
            raise AuditError(
                f"{self.path} disagrees with {self.head_path} (its tail was cut or changed); "
                "run `pytest-sop audit verify`"
            )
        return seq + 1, sha


class AuditQueue:
    """Appends to one log from a background thread, in the order given, several lines per lock.

    A case's lines that nothing waits on (its lease, session and step lines) are written while
    the case goes on, at most :attr:`linger` seconds after they were put: the writer waits that
    long for the lines that follow, so a case's lines go in a few appends rather than one each
    (an append takes the lock and writes the head files). :meth:`flush` returns
    once every line put so far is in the file, and is called before anything that must follow
    them: the case's outcome (recorded before its report), its release (recorded while the lease
    is still held), the run's seal. A line that could not be written makes the next :meth:`flush`
    raise, so the case that waits on it fails with the reason. One per process: a forked child
    starts its own thread.
    """

    linger = 0.1

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._writing = threading.Lock()
        self._items: list[tuple[AuditLog, str, dict[str, Any], str]] = []
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._closing = False
        self._soon = False  # write what is put without waiting out the linger

    def put(self, log: AuditLog, event: str, fields: dict[str, Any]) -> None:
        _check_names(fields)  # a caller's mistake is said to the caller, not to a later flush
        with self._cond:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid, self._closing = os.getpid(), False
                self._thread = threading.Thread(target=self._run, name="sop-audit-writer", daemon=True)
                self._thread.start()
            if not self._items:  # the writer waits for a first line; the next ones it waits out (linger)
                self._cond.notify_all()
            self._items.append((log, event, fields, _utc_now()))  # stamped when it happened, not when written

    def write_soon(self) -> None:
        """The writer writes the lines put so far now rather than after the linger, without this
        thread waiting: for lines that must not wait on a case that may still crash (its lease and
        session: a worker killed in its first step must leave them)."""
        with self._cond:
            if self._items:
                self._soon = True
                self._cond.notify_all()

    def flush(self) -> None:
        """Write every line put so far, in this thread if the writer has not taken it yet (waking
        the writer would cost more than the write); raise the first error since the last flush."""
        self._drain()
        with self._cond:
            error, self._error = self._error, None
        if error is not None:
            raise error

    def written(self) -> None:
        """Wait until every line put so far is in the file (or failed), leaving any error for the next
        :meth:`flush`: for a thread that must not release something before a line is written, while the
        error is the main thread's to say."""
        self._drain()

    def close(self) -> None:
        """Flush and stop the thread."""
        try:
            self.flush()
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
                thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(10)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closing:
                    self._cond.wait()
                if not self._items:
                    return
                # The lines that follow soon go in the same append (a flush meanwhile takes them all).
                deadline = time.monotonic() + self.linger
                while self._items and not (self._closing or self._soon) and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                self._soon = False
            self._drain()

    def _drain(self) -> None:
        """Write the lines waiting; one writer at a time, so lines reach the file in the order put."""
        with self._writing:
            with self._cond:
                batch, self._items = self._items, []
            if not batch:
                return
            self._write(batch)

    def _write(self, batch: list[tuple[AuditLog, str, dict[str, Any], str]]) -> None:
        error: BaseException | None = None
        try:
            # Lines of one log file at a time (a run has one): one lock, one write, one head update.
            start = 0
            while start < len(batch):
                log = batch[start][0]
                end = start
                while end < len(batch) and batch[end][0].path == log.path:
                    end += 1
                entries = [(event, fields, item_log._mask) for item_log, event, fields, _ in batch[start:end]]
                times = [ts for *_, ts in batch[start:end]]
                log.append_many(entries, times)
                start = end
        except BaseException as e:  # handed to whoever flushes next
            error = e
        with self._cond:
            if error is not None and self._error is None:
                self._error = error


class QueuedLog:
    """An :class:`AuditLog` (with its mask) whose appends go through an :class:`AuditQueue`."""

    def __init__(self, log: AuditLog, queue: AuditQueue) -> None:
        self.log = log
        self.queue = queue
        self.path = log.path

    def append(self, event: str, /, **fields: Any) -> None:
        self.queue.put(self.log, event, fields)

    def flush(self) -> None:
        self.queue.flush()

    def written(self) -> None:
        self.queue.written()


@contextlib.contextmanager
def _maybe_locked(path: Path, timeout: float) -> Iterator[None]:
    """Hold the writers' lock for a consistent snapshot of log and head; go on without it when it cannot be had."""
    held = _WritersLock.of(_lock_path(path)).held(timeout)
    try:
        held.__enter__()
    except (OSError, filelock.Timeout):
        yield
        return
    try:
        yield
    finally:
        held.__exit__(None, None, None)


def verify(path: str | os.PathLike[str], *, lock_timeout: float = 10.0) -> VerifyResult:
    """Check the chain of the log at ``path`` and its head file; name the first line that is wrong."""
    return read_chain(path, lock_timeout=lock_timeout).result


@dataclass(frozen=True)
class Chain:
    """A log as :func:`read_chain` found it: the chain's verdict, each line's record (None when a line is
    not one) and sha256, in line order (line ``k`` at index ``k - 1``)."""

    result: VerifyResult
    records: list[dict[str, Any] | None]
    hashes: list[str]


def read_chain(path: str | os.PathLike[str], *, lock_timeout: float = 10.0) -> Chain:
    """Read the log at ``path`` once, under the writers' lock, and check its chain and head file."""
    path = Path(path)
    with _maybe_locked(path, lock_timeout):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return Chain(VerifyResult(False, None, f"{path} does not exist"), [], [])
        try:
            head = _read_head(path)
        except ValueError as exc:
            return Chain(VerifyResult(False, None, f"the head file {_head_path(path)} is damaged: {exc}"), [], [])
        next_head = _read_next_head(path)
    chain = _Chain(data, head, next_head)
    return Chain(chain.check(), chain.rec, chain.sha)


class _Chain:
    """One log's lines, hashes and records, and the walk that finds the first bad line."""

    def __init__(self, data: bytes, head: tuple[int, str] | None, next_head: tuple[int, str] | None = None) -> None:
        raw = data.split(b"\n")
        self.cut = raw[-1] != b""  # the file does not end with a newline
        if not self.cut:
            raw.pop()
        self.raw = raw
        self.n = len(raw)
        self.sha = [_sha256(r) for r in raw]
        fast = None if self.cut else self._intact_records()
        self.intact = fast is not None  # every line parsed and linked: the walk below has nothing to find
        self.rec = fast if fast is not None else [_record(r) for r in raw]
        self.head = head
        self.next_head = next_head  # what an append that did not finish was about to make the head

    def _intact_records(self) -> list[dict[str, Any] | None] | None:
        """The records when every line is one and follows the line before it, else None (then each line
        is parsed again on its own terms, to name the first bad one). Decoding the log once and running
        the C scanner over each line, with the cycle collector paused while 100,000 dicts are made, is
        what keeps ``audit verify`` of a 100,000-line log well inside its time."""
        if not self.raw:
            return []
        try:
            lines = b"\n".join(self.raw).decode("utf-8").split("\n")
        except UnicodeDecodeError:
            return None
        scan = _SCAN
        items: list[dict[str, Any] | None] = []
        prev = GENESIS
        gc_was_on = gc.isenabled()
        gc.disable()  # 100,000 new dicts would start the cycle collector again and again, for nothing
        try:
            for seq, (line, sha) in enumerate(zip(lines, self.sha, strict=True), 1):
                try:
                    rec, end = scan(line, 0)
                except (StopIteration, ValueError):
                    return None
                # What _record and _follows require of the line, in one pass: one JSON object and nothing
                # else, whose seq counts on and whose prev is the sha256 of the line before (so 64 hex
                # digits), with a text ts and event.
                if not (
                    end == len(line)
                    and type(rec) is dict
                    and type(rec.get("seq")) is int
                    and rec["seq"] == seq
                    and rec.get("prev") == prev
                    and isinstance(rec.get("ts"), str)
                    and isinstance(rec.get("event"), str)
                ):
                    return None
                items.append(rec)
                prev = sha
        finally:
            if gc_was_on:
                gc.enable()
        return items

    # Lines are numbered from 1; index 0 stands for "before the first line".
    def _seq(self, k: int) -> int | None:
        if k == 0:
            return 0
        rec = self.rec[k - 1]
        return None if rec is None else int(rec["seq"])

    def _hash(self, k: int) -> str:
        return GENESIS if k == 0 else self.sha[k - 1]

    def _follows(self, k: int, before: int) -> bool:
        """Line ``k`` is the chain successor of line ``before`` (0: the start)."""
        if not 1 <= k <= self.n:
            return False
        rec, seq = self.rec[k - 1], self._seq(before)
        return rec is not None and seq is not None and rec["seq"] == seq + 1 and rec["prev"] == self._hash(before)

    def _head_confirms(self, k: int) -> bool | None:
        """Whether the head file names line ``k`` as the last line; None without a head file."""
        if self.head is None:
            return None
        return self.head == (self._seq(k), self._hash(k))

    def _confirmed(self, k: int) -> bool:
        """Whatever comes after line ``k`` (the next line, or the head file) vouches for its bytes."""
        if k < self.n:
            return self._follows(k + 1, k)
        return self._head_confirms(k) is not False

    def _inserted(self, j: int) -> bool:
        """Dropping line ``j`` would mend the chain: the line after it follows the line before it."""
        if j == self.n:
            return self._head_confirms(j - 1) is True
        return self._follows(j + 1, j - 1) and self._confirmed(j + 1) and not self._follows(j, j + 1)

    def _ok(self, reason: str) -> VerifyResult:
        return VerifyResult(True, None, reason, self.n)

    def _bad(self, line: int, reason: str) -> VerifyResult:
        return VerifyResult(False, line, reason, self.n)

    def check(self) -> VerifyResult:
        if self.intact:
            return self._check_head()
        for j in range(1, self.n + 1):
            if j == self.n and self.cut:
                why = "" if self.rec[j - 1] is not None else " and is not valid JSON"
                cut = f"the file ends without a newline{why} (the tail was truncated)"
                return self._bad(j, f"line {j} was cut short: {cut}")
            rec = self.rec[j - 1]
            if rec is not None and self._follows(j, j - 1):
                continue
            return self._diagnose(j)
        return self._check_head()

    def _diagnose(self, j: int) -> VerifyResult:
        """Line ``j`` does not follow line ``j - 1``: say what happened."""
        if j >= 2 and self._follows(j, j - 2):  # a forged line j - 1 that fits after line j - 2
            return self._bad(j - 1, f"line {j - 1} was inserted: line {j} follows line {j - 2} in the chain")
        if self._inserted(j):
            if j == self.n:
                return self._bad(j, f"line {j} was inserted: the head file names line {j - 1} as the last line")
            return self._bad(j, f"line {j} was inserted: line {j + 1} follows line {j - 1} in the chain")
        rec = self.rec[j - 1]
        if rec is None:
            return self._bad(j, f"line {j} was changed: it is not valid JSON or not an audit record")
        seq, expected = int(rec["seq"]), int(self._seq(j - 1) or 0) + 1
        prev_ok = rec["prev"] == self._hash(j - 1)
        if seq == expected:  # the prev does not match
            if j > 1 and self._confirmed(j):
                return self._bad(j - 1, f"line {j - 1} was changed: its sha256 does not match the prev of line {j}")
            if j == 1:
                return self._bad(1, "line 1 was changed: its prev is not 64 zeros although it is the first line")
            return self._bad(j, f"line {j} was changed: its prev does not match the sha256 of line {j - 1}")
        if prev_ok:
            return self._bad(j, f"line {j} was changed: it has seq {seq} where {expected} was expected")
        later = next((m for m in range(j + 1, self.n + 1) if self._seq(m) == expected), None)
        if later is not None:
            where = f"it has seq {seq} where {expected} was expected"
            return self._bad(j, f"line {j} is out of order: {where}, and seq {expected} is at line {later}")
        if seq > expected:
            missing = f"seq {expected}" if seq == expected + 1 else f"seq {expected} to {seq - 1}"
            return self._bad(j, f"a line was removed before line {j}: {missing} is missing, and line {j} has seq {seq}")
        where = f"it has seq {seq} where {expected} was expected"
        return self._bad(j, f"line {j} is out of place: {where}, and its prev does not match line {j - 1}")

    def _check_head(self) -> VerifyResult:
        n = self.n
        if self.head is None:
            return self._ok(f"{n} lines, chain intact (no head file: a cut tail cannot be detected)")
        head_seq, head_sha = self.head
        if head_seq > n:
            return self._bad(
                n + 1,
                f"the tail was cut: the log ends at line {n} but the head file records {head_seq} lines, "
                f"so line {n + 1} onwards was removed",
            )
        if head_seq < n and self.next_head == (n, self._hash(n)):
            return self._ok(
                f"{n} lines, chain intact (the last append stopped before it updated the head file, "
                f"after writing lines {head_seq + 1} to {n}: the next append completes the head file)"
            )
        if head_seq < n:
            return self._bad(
                head_seq + 1,
                f"line {head_seq + 1} is not recorded in the head file: it was added after the last complete append "
                "(by hand, or by a writer that stopped before updating the head)",
            )
        if n > 0 and head_sha != self._hash(n):
            return self._bad(n, f"line {n} was changed: its sha256 does not match the head file")
        return self._ok(f"{n} lines, chain intact")


def audit_main(path: str) -> int:
    """``pytest-sop audit verify PATH``: print the result; 0 when the chain is intact, 1 when not."""
    result = verify(path)
    if result.ok:
        print(f"OK: {result.reason}")
        return 0
    where = f"line {result.line}: " if result.line is not None else ""
    print(f"FAILED: {where}{result.reason}")
    return 1
