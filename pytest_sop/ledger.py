"""The run ledger: every case outcome in one SQLite file, and the exceptions (open problems) they raise.

Tables (schema version :data:`SCHEMA_VERSION`, kept in ``PRAGMA user_version``):

- ``runs``: one row per recorded outcome (case, sop, outcome, message, evidence, run_id, operator,
  device, account, at). ``message`` is the whole error, every line of it.
- ``exceptions``: at most one row per case; see :class:`ExceptionRecord`. Since version 3 it counts
  product failures (``failed``) and infrastructure failures (``broken``: device, session or server
  trouble) apart, and says where an escalation's target came from (``escalated_to_source``).
- ``exception_events``: the history of every exception: ``opened``, ``recurred``, ``escalated``,
  ``resolved``, ``reopened``, each with its time, who (the operator of the run, or the resolver)
  and what (the message, the escalation target, the resolution note).
- ``audit_heads`` (since version 2): each run's signed head of the audit log (:class:`SignedHead`):
  which log (the sha256 of its first line, and its path), the run, the ``signed`` line's number and
  sha256, the head it signs, the signer and key fingerprint. A copy of the log rolled back to an
  older head, or cut, no longer has the lines the ledger remembers (``pytest-sop audit verify --ledger``).

An older ledger is brought up to date when it is opened, in one write transaction: every table is
``CREATE ... IF NOT EXISTS``; a version 1 or 2 ledger gains the version 3 columns, its open
exceptions' ``failed`` and ``broken`` counted from its ``runs`` since they were (re)opened.

Rules (:meth:`Ledger.record_outcome`):

- ``failed``, ``broken`` and ``awaiting`` open the case's exception, or count one more occurrence
  on it (``count``; ``failed`` or ``broken``; ``last_seen``, ``last_error``; ``evidence`` when one
  is given).
- Only the outcomes in ``escalate_on`` count toward escalation (``failures_in_row``): by default
  ``failed`` alone, so a flaky phone or Appium server does not page the SOP's owner; a SOP says
  ``escalate_on: [failed, broken]`` to escalate on both. Any other outcome (``broken`` by default,
  ``awaiting`` always) neither counts nor breaks the row. ``passed`` resets the row to 0 but does
  not resolve the exception; a person does that (:meth:`Ledger.resolve`).
- At ``escalate_after`` failures in a row an ``open`` exception becomes ``escalated``, to
  ``escalate_to``; when the SOP has no ``escalate_to``, to its ``owner`` (the record says so:
  ``escalated_to_source`` is ``"owner"`` and the ``escalated`` event reads "to social-ops (the SOP's
  owner; no escalate_to) after 3 failures in a row"); with neither, to ``"unassigned"``
  (``escalated_to_source`` ``"none"``). It stays escalated until resolved.
- An occurrence after the exception was resolved re-opens the same id: status ``open``,
  ``count`` restarts at 1, ``first_seen`` is the reopen time, escalation and resolution are
  cleared (the earlier life stays in ``exception_events``).
- ``skipped`` only records the run.

Times are stored as UTC text with microseconds and a ``Z`` (so they sort as text); naive
datetimes are refused. Every call opens its own short-lived connection (WAL mode, a busy timeout,
writes in ``BEGIN IMMEDIATE``), so pytest-xdist workers and concurrent runs can share one file and
forked processes never share a connection. A run that writes a row per case keeps one connection
instead (``keep_open=True``; :meth:`Ledger.close` at its end): opening and closing one per case costs
a WAL checkpoint each time. It is this process's own: a forked child opens a new one. Messages are
stored exactly as passed: the caller masks them.

This module is engine code: it imports the standard library only (and the plain constants of ``model``).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import model as _model
from .errors import SopError

__all__ = [
    "DEFAULT_ESCALATE_ON",
    "ESCALATING",
    "OUTCOMES",
    "SCHEMA_VERSION",
    "ExceptionEvent",
    "ExceptionRecord",
    "Ledger",
    "LedgerError",
    "RunRecord",
    "SignedHead",
    "escalation_target",
    "format_exceptions",
    "headline",
]

SCHEMA_VERSION = 3
OUTCOMES = frozenset({"passed", "failed", "broken", "skipped", "awaiting"})
STATUSES = frozenset({"open", "escalated", "resolved"})
_OPENING = frozenset({"failed", "broken", "awaiting"})
# What may count toward escalation (a SOP's ``escalate_on``), and what does when it says nothing.
ESCALATING = _model.ESCALATING
DEFAULT_ESCALATE_ON = _model.DEFAULT_ESCALATE_ON
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
UNASSIGNED = "unassigned"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS runs (
        id INTEGER PRIMARY KEY,
        case_id TEXT NOT NULL,
        sop TEXT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('passed', 'failed', 'broken', 'skipped', 'awaiting')),
        message TEXT NOT NULL,
        evidence TEXT,
        run_id TEXT NOT NULL,
        operator TEXT NOT NULL,
        device TEXT,
        account TEXT,
        at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS runs_by_case ON runs (case_id, outcome, at)",
    """CREATE TABLE IF NOT EXISTS exceptions (
        id INTEGER PRIMARY KEY,
        case_id TEXT NOT NULL UNIQUE,
        sop TEXT NOT NULL,
        owner TEXT,
        status TEXT NOT NULL CHECK (status IN ('open', 'escalated', 'resolved')),
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        count INTEGER NOT NULL,
        failures_in_row INTEGER NOT NULL,
        last_error TEXT NOT NULL,
        evidence TEXT,
        escalated_to TEXT,
        escalated_at TEXT,
        resolved_by TEXT,
        resolved_note TEXT,
        resolved_at TEXT,
        failed INTEGER NOT NULL DEFAULT 0,
        broken INTEGER NOT NULL DEFAULT 0,
        escalated_to_source TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS exceptions_by_last_seen ON exceptions (last_seen)",
    """CREATE TABLE IF NOT EXISTS exception_events (
        id INTEGER PRIMARY KEY,
        exception_id INTEGER NOT NULL REFERENCES exceptions (id),
        at TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('opened', 'recurred', 'escalated', 'resolved', 'reopened')),
        actor TEXT NOT NULL,
        run_id TEXT,
        detail TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS exception_events_by_exception ON exception_events (exception_id, id)",
    """CREATE TABLE IF NOT EXISTS audit_heads (
        id INTEGER PRIMARY KEY,
        log_id TEXT NOT NULL,
        log_path TEXT NOT NULL,
        run_id TEXT NOT NULL,
        line INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        head_sha256 TEXT NOT NULL,
        signer TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS audit_heads_by_log ON audit_heads (log_id, line)",
    "CREATE INDEX IF NOT EXISTS audit_heads_by_path ON audit_heads (log_path, line)",
)

# Columns added after version 2, with their definitions: an older ledger gains them when opened.
_V3_COLUMNS = (
    ("failed", "INTEGER NOT NULL DEFAULT 0"),
    ("broken", "INTEGER NOT NULL DEFAULT 0"),
    ("escalated_to_source", "TEXT"),
)

_EXC_COLUMNS = (
    "id, case_id, sop, owner, status, first_seen, last_seen, count, failures_in_row, last_error, evidence, "
    "escalated_to, escalated_at, resolved_by, resolved_note, resolved_at, failed, broken, escalated_to_source"
)
# Where an escalation's target came from.
SOURCES = ("escalate_to", "owner", "none")


class LedgerError(SopError):
    """The ledger cannot be used: not a database, made by a newer pytest-sop, missing, or an unknown exception id."""


def _stamp(at: datetime) -> str:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"ledger times must be timezone-aware, got naive {at.isoformat()}")
    return at.astimezone(UTC).strftime(_TS_FORMAT)


def _parse(text: str) -> datetime:
    return datetime.strptime(text, _TS_FORMAT).replace(tzinfo=UTC)


def _parse_opt(text: str | None) -> datetime | None:
    return None if text is None else _parse(text)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.strftime(_TS_FORMAT)


def escalation_target(escalate_to: str | None, owner: str | None) -> tuple[str, str, str]:
    """Who an exception escalates to, where that came from (one of :data:`SOURCES`), and the words that
    say so after the name in the ``escalated`` event: the SOP's ``escalate_to``; else its ``owner``
    (" (the SOP's owner; no escalate_to)"); else ``"unassigned"``."""
    if escalate_to:
        return escalate_to, "escalate_to", ""
    if owner:
        return owner, "owner", " (the SOP's owner; no escalate_to)"
    return UNASSIGNED, "none", " (the SOP has no escalate_to and no owner)"


def headline(message: str) -> str:
    """The line of a whole error message that says what went wrong: pytest's first ``E`` line (a Python
    test's traceback), else the first line that is not blank."""
    lines = message.splitlines()
    for line in lines:
        if line.startswith("E   "):
            return line[1:].strip()
    return next((line.strip() for line in lines if line.strip()), "")


@dataclass(frozen=True)
class ExceptionRecord:
    """One case's exception. ``count`` counts occurrences (failed, broken, awaiting) since it was (re)opened,
    ``failed`` the product failures and ``broken`` the infrastructure failures among them;
    ``failures_in_row`` counts consecutive outcomes that escalate (the SOP's ``escalate_on``; reset by a pass).
    ``last_error`` is the whole message of the last occurrence. ``escalated_to_source`` says where
    ``escalated_to`` came from: ``"escalate_to"``, ``"owner"`` (the SOP has no escalate_to) or ``"none"``
    (neither: ``"unassigned"``).

    ``changes`` lists what the call that returned this record did to it, in order (``opened``, ``recurred``,
    ``reopened``, ``escalated``, ``resolved``; ``reset`` when a pass cleared ``failures_in_row``), so the
    caller can report an escalation once. It is empty on records read back, and not part of :meth:`to_json`
    or of equality.
    """

    id: int
    case: str
    sop: str
    owner: str | None
    status: str
    first_seen: datetime
    last_seen: datetime
    count: int
    failures_in_row: int
    last_error: str
    evidence: str | None
    escalated_to: str | None
    escalated_at: datetime | None
    resolved_by: str | None
    resolved_note: str | None
    resolved_at: datetime | None
    failed: int = 0
    broken: int = 0
    escalated_to_source: str | None = None
    changes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def headline(self) -> str:
        """The line of ``last_error`` that says what went wrong, for one-line views."""
        return headline(self.last_error)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every stored field; times as UTC text with a ``Z``."""
        return {
            "id": self.id,
            "case": self.case,
            "sop": self.sop,
            "owner": self.owner,
            "status": self.status,
            "first_seen": _iso(self.first_seen),
            "last_seen": _iso(self.last_seen),
            "count": self.count,
            "failed": self.failed,
            "broken": self.broken,
            "failures_in_row": self.failures_in_row,
            "last_error": self.last_error,
            "evidence": self.evidence,
            "escalated_to": self.escalated_to,
            "escalated_to_source": self.escalated_to_source,
            "escalated_at": _iso(self.escalated_at),
            "resolved_by": self.resolved_by,
            "resolved_note": self.resolved_note,
            "resolved_at": _iso(self.resolved_at),
        }

    @classmethod
    def _from_row(cls, row: Sequence[Any], changes: tuple[str, ...] = ()) -> ExceptionRecord:
        return cls(
            id=row[0],
            case=row[1],
            sop=row[2],
            owner=row[3],
            status=row[4],
            first_seen=_parse(row[5]),
            last_seen=_parse(row[6]),
            count=row[7],
            failures_in_row=row[8],
            last_error=row[9],
            evidence=row[10],
            escalated_to=row[11],
            escalated_at=_parse_opt(row[12]),
            resolved_by=row[13],
            resolved_note=row[14],
            resolved_at=_parse_opt(row[15]),
            failed=row[16],
            broken=row[17],
            escalated_to_source=row[18],
            changes=changes,
        )


@dataclass(frozen=True)
class ExceptionEvent:
    """One step in an exception's history. ``actor`` is the run's operator, or who resolved it."""

    exception_id: int
    at: datetime
    kind: str
    actor: str
    run_id: str | None
    detail: str


@dataclass(frozen=True)
class RunRecord:
    """One recorded outcome."""

    case: str
    sop: str
    outcome: str
    message: str
    evidence: str | None
    run_id: str
    operator: str
    device: str | None
    account: str | None
    at: datetime


@dataclass(frozen=True)
class SignedHead:
    """One run's signed head of an audit log: its ``signed`` line is line ``line`` (sha256 ``sha256``) and
    signs line ``line - 1`` (sha256 ``head_sha256``). ``log_id`` is the sha256 of the log's first line,
    which names the log wherever it is copied; ``log_path`` is where it was written."""

    log_id: str
    log_path: str
    run_id: str
    line: int
    sha256: str
    head_sha256: str
    signer: str
    fingerprint: str
    at: datetime


_HEAD_COLUMNS = "log_id, log_path, run_id, line, sha256, head_sha256, signer, fingerprint, at"


class Ledger:
    """The run ledger at ``path``. Holds no connection, so it may be pickled or inherited by a fork.

    With ``create`` (the default) the file and its parent folders are made when missing; without it a
    missing file is a :class:`LedgerError` (for commands that only read an existing ledger).
    """

    def __init__(
        self, path: str | os.PathLike[str], *, create: bool = True, busy_timeout: float = 30.0, keep_open: bool = False
    ) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._keep_open = keep_open
        self._kept: tuple[int, sqlite3.Connection] | None = None  # (pid, connection)
        if not create and not self.path.is_file():
            raise LedgerError(f"{self.path}: no run ledger here")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._init()

    # --- connections --------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise LedgerError(f"{self.path}: not a run ledger ({exc})") from None
        return conn

    def _open(self) -> sqlite3.Connection:
        """A fresh connection, or with ``keep_open`` the one this process keeps."""
        if not self._keep_open:
            return self._connect()
        if self._kept is None or self._kept[0] != os.getpid():
            self._kept = (os.getpid(), self._connect())
        return self._kept[1]

    def _done(self, conn: sqlite3.Connection) -> None:
        if self._kept is None or self._kept[1] is not conn:
            conn.close()
        elif conn.in_transaction:  # a commit that failed: the kept connection starts clean next time
            with contextlib.suppress(sqlite3.Error):
                conn.rollback()

    def close(self) -> None:
        """Close the kept connection (``keep_open``), if this process opened one."""
        kept, self._kept = self._kept, None
        if kept is not None and kept[0] == os.getpid():
            kept[1].close()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_kept": None}  # a connection never crosses into another process

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        conn = self._open()
        try:
            yield conn
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{self.path}: {exc}") from exc
        finally:
            self._done(conn)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE takes the write lock up front (waiting up to the
        busy timeout), so no reader-turned-writer can deadlock and fail at once."""
        conn = self._open()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{self.path}: {exc}") from exc
        finally:
            self._done(conn)

    def _init(self) -> None:
        with self._writing() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise LedgerError(
                    f"{self.path}: ledger schema version {version} is newer than this pytest-sop "
                    f"understands ({SCHEMA_VERSION}); upgrade pytest-sop"
                )
            if version < SCHEMA_VERSION:
                for statement in _SCHEMA:
                    conn.execute(statement)
                self._upgrade(conn)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._use_wal()

    @staticmethod
    def _upgrade(conn: sqlite3.Connection) -> None:
        """Version 1 or 2 -> 3: the columns it lacks; each unresolved exception's failed and broken counted
        from the runs since it was (re)opened (a resolved one restarts its counts when it reopens)."""
        have = {row[1] for row in conn.execute("PRAGMA table_info(exceptions)")}
        missing = [(name, kind) for name, kind in _V3_COLUMNS if name not in have]
        if not missing:
            return
        for name, kind in missing:
            conn.execute(f"ALTER TABLE exceptions ADD COLUMN {name} {kind}")
        for outcome in ESCALATING:  # the column is named after the outcome
            conn.execute(
                f"UPDATE exceptions SET {outcome} = (SELECT COUNT(*) FROM runs WHERE runs.case_id = exceptions.case_id"
                f" AND runs.outcome = '{outcome}' AND runs.at >= exceptions.first_seen) WHERE status != 'resolved'"
            )
        # Before version 3 the target was escalate_to, else the owner, else "unassigned": which one, the
        # ledger did not keep; "unassigned" at least is certain.
        conn.execute("UPDATE exceptions SET escalated_to_source = 'none' WHERE escalated_to = ?", (UNASSIGNED,))

    def _use_wal(self) -> None:
        """Switch the file to WAL (a persistent setting). Several processes may try at once on a new file:
        the switch needs the file to itself, so a busy answer is retried until the busy timeout."""
        deadline = time.monotonic() + self.busy_timeout
        with self._reading() as conn:
            while True:
                try:
                    if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                        return
                    # Answers the mode now in force: a file system without WAL support keeps its old mode,
                    # and the busy timeout alone then keeps the writers safe (one at a time).
                    conn.execute("PRAGMA journal_mode = WAL").fetchone()
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)

    def check(self) -> None:
        """Raise :class:`LedgerError` unless SQLite finds the file intact (``PRAGMA quick_check``)."""
        with self._reading() as conn:
            problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise LedgerError(f"{self.path}: the ledger is damaged: {'; '.join(problems[:3])}")

    # --- writing --------------------------------------------------------------------------------

    def record_outcome(
        self,
        *,
        case: str,
        sop: str,
        owner: str | None,
        escalate_to: str | None,
        outcome: str,
        message: str,
        evidence: str | None,
        run_id: str,
        operator: str,
        device: str | None,
        account: str | None,
        at: datetime | None = None,
        escalate_after: int = 3,
        escalate_on: Collection[str] = DEFAULT_ESCALATE_ON,
    ) -> ExceptionRecord | None:
        """Record one case outcome; open, count, escalate or re-open its exception (see the module doc).

        ``message`` is stored whole (every line); ``escalate_on`` says which outcomes count toward
        escalation (some of ``failed`` and ``broken``; by default ``failed`` only).

        Returns the exception this call touched (for ``passed``: the unresolved one whose row it reset),
        or None. Raises ValueError for an unknown outcome, ``escalate_after < 1``, an ``escalate_on``
        that is empty or names anything but failed and broken, or a naive ``at``.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {', '.join(sorted(OUTCOMES))}")
        if escalate_after < 1:
            raise ValueError(f"escalate_after must be at least 1, got {escalate_after}")
        if isinstance(escalate_on, str) or not escalate_on or not set(escalate_on) <= set(ESCALATING):
            raise ValueError(f"escalate_on must be some of {', '.join(ESCALATING)}, got {escalate_on!r}")
        ts = _stamp(at if at is not None else datetime.now(UTC))
        with self._writing() as conn:
            conn.execute(
                "INSERT INTO runs (case_id, sop, outcome, message, evidence, run_id, operator, device, account, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (case, sop, outcome, message, evidence, run_id, operator, device, account, ts),
            )
            if outcome == "skipped":
                return None
            row = conn.execute(f"SELECT {_EXC_COLUMNS} FROM exceptions WHERE case_id = ?", (case,)).fetchone()
            if outcome == "passed":
                return self._passed(conn, row)
            failing = outcome in escalate_on
            failed, broken = int(outcome == "failed"), int(outcome == "broken")
            changes: list[str] = []

            def event(exc_id: int, kind: str, detail: str) -> None:
                changes.append(kind)
                conn.execute(
                    "INSERT INTO exception_events (exception_id, at, kind, actor, run_id, detail)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (exc_id, ts, kind, operator, run_id, detail),
                )

            what = f"{outcome}: {message}"
            if row is None:
                cur = conn.execute(
                    "INSERT INTO exceptions (case_id, sop, owner, status, first_seen, last_seen, count,"
                    " failures_in_row, last_error, evidence, failed, broken)"
                    " VALUES (?, ?, ?, 'open', ?, ?, 1, ?, ?, ?, ?, ?)",
                    (case, sop, owner, ts, ts, int(failing), message, evidence, failed, broken),
                )
                exc_id = cur.lastrowid
                assert exc_id is not None
                event(exc_id, "opened", what)
            elif row[4] == "resolved":
                exc_id = row[0]
                conn.execute(
                    "UPDATE exceptions SET sop = ?, owner = ?, status = 'open', first_seen = ?, last_seen = ?,"
                    " count = 1, failures_in_row = ?, last_error = ?, evidence = ?, failed = ?, broken = ?,"
                    " escalated_to = NULL, escalated_to_source = NULL, escalated_at = NULL, resolved_by = NULL,"
                    " resolved_note = NULL, resolved_at = NULL WHERE id = ?",
                    (sop, owner, ts, ts, int(failing), message, evidence, failed, broken, exc_id),
                )
                event(exc_id, "reopened", what)
            else:
                exc_id = row[0]
                conn.execute(
                    "UPDATE exceptions SET sop = ?, owner = ?, last_seen = MAX(last_seen, ?), count = count + 1,"
                    " failures_in_row = failures_in_row + ?, last_error = ?, evidence = COALESCE(?, evidence),"
                    " failed = failed + ?, broken = broken + ? WHERE id = ?",
                    (sop, owner, ts, int(failing), message, evidence, failed, broken, exc_id),
                )
                event(exc_id, "recurred", what)
            status, in_row = conn.execute(
                "SELECT status, failures_in_row FROM exceptions WHERE id = ?", (exc_id,)
            ).fetchone()
            if failing and status == "open" and in_row >= escalate_after:
                target, source, why = escalation_target(escalate_to, owner)
                conn.execute(
                    "UPDATE exceptions SET status = 'escalated', escalated_to = ?, escalated_to_source = ?,"
                    " escalated_at = ? WHERE id = ?",
                    (target, source, ts, exc_id),
                )
                failures = "failure" if in_row == 1 else "failures"
                event(exc_id, "escalated", f"to {target}{why} after {in_row} {failures} in a row")
            return self._get(conn, exc_id, tuple(changes))

    def _passed(self, conn: sqlite3.Connection, row: Sequence[Any] | None) -> ExceptionRecord | None:
        if row is None or row[4] == "resolved":
            return None
        exc_id: int = row[0]
        if row[8] == 0:
            return ExceptionRecord._from_row(row)
        conn.execute("UPDATE exceptions SET failures_in_row = 0 WHERE id = ?", (exc_id,))
        return self._get(conn, exc_id, ("reset",))

    def resolve(self, exception_id: int, *, by: str, note: str, at: datetime | None = None) -> ExceptionRecord:
        """Mark an exception resolved by ``by`` with ``note``. LedgerError (a SopError) for an unknown id,
        one already resolved, or a blank ``by``."""
        if not by.strip():
            raise LedgerError("resolving an exception needs the name of who resolved it (--by)")
        ts = _stamp(at if at is not None else datetime.now(UTC))
        with self._writing() as conn:
            row = conn.execute("SELECT status, resolved_by, resolved_at FROM exceptions WHERE id = ?", (exception_id,))
            found = row.fetchone()
            if found is None:
                raise LedgerError(f"{self.path}: no exception with id {exception_id}")
            if found[0] == "resolved":
                raise LedgerError(f"exception {exception_id} is already resolved (by {found[1]} at {found[2]})")
            conn.execute(
                "UPDATE exceptions SET status = 'resolved', failures_in_row = 0, resolved_by = ?, resolved_note = ?,"
                " resolved_at = ? WHERE id = ?",
                (by, note, ts, exception_id),
            )
            conn.execute(
                "INSERT INTO exception_events (exception_id, at, kind, actor, run_id, detail)"
                " VALUES (?, ?, 'resolved', ?, NULL, ?)",
                (exception_id, ts, by, note),
            )
            return self._get(conn, exception_id, ("resolved",))

    def record_signed_head(self, head: SignedHead) -> None:
        """Remember a run's signed head of an audit log."""
        with self._writing() as conn:
            conn.execute(
                f"INSERT INTO audit_heads ({_HEAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    head.log_id,
                    head.log_path,
                    head.run_id,
                    head.line,
                    head.sha256,
                    head.head_sha256,
                    head.signer,
                    head.fingerprint,
                    _stamp(head.at),
                ),
            )

    # --- reading --------------------------------------------------------------------------------

    def signed_heads(self, *, log_id: str, log_path: str) -> list[SignedHead]:
        """The signed heads recorded for the log whose first line has sha256 ``log_id``, or that was
        written at ``log_path``, in line order."""
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {_HEAD_COLUMNS} FROM audit_heads WHERE log_id = ? OR log_path = ? ORDER BY line, id",
                (log_id, log_path),
            ).fetchall()
        return [SignedHead(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], _parse(r[8])) for r in rows]

    @staticmethod
    def _get(conn: sqlite3.Connection, exc_id: int, changes: tuple[str, ...] = ()) -> ExceptionRecord:
        row = conn.execute(f"SELECT {_EXC_COLUMNS} FROM exceptions WHERE id = ?", (exc_id,)).fetchone()
        return ExceptionRecord._from_row(row, changes)

    def get(self, exception_id: int) -> ExceptionRecord:
        """One exception by id; LedgerError when there is none."""
        with self._reading() as conn:
            row = conn.execute(f"SELECT {_EXC_COLUMNS} FROM exceptions WHERE id = ?", (exception_id,)).fetchone()
        if row is None:
            raise LedgerError(f"{self.path}: no exception with id {exception_id}")
        return ExceptionRecord._from_row(row)

    def exceptions(
        self, *, status: str | None = None, open_only: bool = False, escalated_only: bool = False
    ) -> list[ExceptionRecord]:
        """Exceptions, most recently seen first. ``status`` picks one status; ``open_only`` the unresolved
        (open or escalated, as ``--open``); ``escalated_only`` the escalated (as ``--escalated``)."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown exception status {status!r}; expected one of {', '.join(sorted(STATUSES))}")
        if sum((status is not None, open_only, escalated_only)) > 1:
            raise ValueError("choose one of status, open_only and escalated_only")
        wanted: tuple[str, ...] = tuple(sorted(STATUSES))
        if status is not None:
            wanted = (status,)
        elif open_only:
            wanted = ("open", "escalated")
        elif escalated_only:
            wanted = ("escalated",)
        marks = ", ".join("?" * len(wanted))
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {_EXC_COLUMNS} FROM exceptions WHERE status IN ({marks}) ORDER BY last_seen DESC, id DESC",
                wanted,
            ).fetchall()
        return [ExceptionRecord._from_row(row) for row in rows]

    def history(self, exception_id: int) -> list[ExceptionEvent]:
        """An exception's events, oldest first (empty for an unknown id)."""
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT exception_id, at, kind, actor, run_id, detail FROM exception_events"
                " WHERE exception_id = ? ORDER BY id",
                (exception_id,),
            ).fetchall()
        return [ExceptionEvent(r[0], _parse(r[1]), r[2], r[3], r[4], r[5]) for r in rows]

    def runs(self, *, case: str | None = None, run_id: str | None = None) -> list[RunRecord]:
        """Recorded outcomes in the order they were written, optionally of one case and/or one run."""
        where: list[str] = []
        args: list[str] = []
        if case is not None:
            where.append("case_id = ?")
            args.append(case)
        if run_id is not None:
            where.append("run_id = ?")
            args.append(run_id)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT case_id, sop, outcome, message, evidence, run_id, operator, device, account, at"
                f" FROM runs{clause} ORDER BY id",
                args,
            ).fetchall()
        return [RunRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], _parse(r[9])) for r in rows]

    def last_passed(self, case: str) -> datetime | None:
        """When ``case`` last passed, or None if it never did."""
        with self._reading() as conn:
            row = conn.execute("SELECT MAX(at) FROM runs WHERE case_id = ? AND outcome = 'passed'", (case,)).fetchone()
        return _parse_opt(row[0])

    def last_passes(self, cases: Iterable[str] | None = None) -> dict[str, datetime]:
        """When each case last passed (all cases, or those given), in one query; cases that never passed are absent."""
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT case_id, MAX(at) FROM runs WHERE outcome = 'passed' GROUP BY case_id"
            ).fetchall()
        found = {case: _parse(at) for case, at in rows}
        if cases is None:
            return found
        return {case: found[case] for case in cases if case in found}

    def due(self, case: str, every_seconds: float | None, now: datetime | None = None) -> bool:
        """Whether ``case`` should run under a schedule of ``every_seconds``: it has no schedule (None),
        never passed, or last passed at least that long before ``now``."""
        if every_seconds is None:
            return True
        if now is None:
            now = datetime.now(UTC)
        _stamp(now)  # refuses a naive now
        last = self.last_passed(case)
        return last is None or now - last >= timedelta(seconds=every_seconds)


# --- the terminal table -------------------------------------------------------------------------

_ERROR_WIDTH = 60


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def format_exceptions(records: Iterable[ExceptionRecord], *, error_width: int = _ERROR_WIDTH) -> str:
    """A table for the terminal: id, status, case, occurrences (count), product failures (failed),
    infrastructure failures (broken), last seen (UTC), escalated to ("(owner)" after the name when it fell
    back to the SOP's owner), last error (its :func:`headline`, cut to ``error_width`` characters; the whole
    message is in ``--json``). ``"no exceptions"`` when there are none."""
    header = ("ID", "STATUS", "CASE", "COUNT", "FAILED", "BROKEN", "LAST SEEN", "ESCALATED TO", "LAST ERROR")
    rows = [
        (
            str(r.id),
            r.status,
            r.case,
            str(r.count),
            str(r.failed),
            str(r.broken),
            r.last_seen.strftime("%Y-%m-%d %H:%M:%SZ"),
            (r.escalated_to or "-") + (" (owner)" if r.escalated_to_source == "owner" else ""),
            _one_line(r.headline, error_width),
        )
        for r in records
    ]
    if not rows:
        return "no exceptions"
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    right = {0, 3, 4, 5}  # numbers line up on the right

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(parts).rstrip()

    return "\n".join(line(row) for row in (header, *rows))
