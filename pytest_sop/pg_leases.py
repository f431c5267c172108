"""Leases shared by several hosts: PostgreSQL session advisory locks (``leases: {backend: postgres}``).

Each device and each account is one advisory lock, keyed by a 64-bit hash of its lock name
(:func:`lock_key`). A lease holds its locks on a database connection of its own for as long as
the case runs: when the holder dies, however it dies, its connection drops and the server frees
its locks. A host that goes away without closing its connections (power, network) is noticed by
TCP keepalives, set on both ends (:data:`KEEPALIVES`), and its locks go when its sessions are
ended. Connections with no lease are kept for the next lease of this process.

Holder records live in the table :data:`HOLDERS` beside the locks, created on first use with a
schema version in :data:`META` (a version 1 table, from before holds, gets the ``hold`` column). A
record is a claim, not proof: the lease table and timeout messages believe a record only while
``pg_locks`` shows its connection holding that very lock, so a record left by a dead run shows as
free; except a paused case's **hold** (:class:`~pytest_sop.holds.Hold`, in the record's ``hold``
column), which is meant to outlive its connection. A pause writes the hold into its records and
commits, then lets the locks go without deleting the records; whoever takes a lock next reads them
before using the device (:meth:`_PgHold.paused_holds`), so an unexpired hold keeps it busy for
every host but the paused case's resume, exactly as a hold in a lock file does.

The rules (one global order, never waiting while holding, try-without-blocking, timeouts naming
the holders) are :class:`~pytest_sop.leasing.LeasePoolBase`'s, the same as for lock files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from .errors import LeaseLost, LeaseServerError, SopError
from .holds import Hold
from .leasing import Holder, Kind, LeasePoolBase, Row, _Plan, lock_name
from .masking import remember
from .model import Account, Device

__all__ = [
    "HOLDERS",
    "KEEPALIVES",
    "META",
    "SCHEMA_VERSION",
    "LeaseLost",
    "LeaseServerError",
    "PgLeasePool",
    "check_server",
    "describe_server",
    "lease_table",
    "lock_key",
    "release_hold",
]

HOLDERS = "pytest_sop_lease_holders"
META = "pytest_sop_meta"
SCHEMA_VERSION = 2  # 2: holder records carry a paused case's hold

#: Client side (libpq): a silent server is given up in about 20 s; connecting waits at most 10 s.
KEEPALIVES = {
    "connect_timeout": "10",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "3",
    "keepalives_count": "3",
    "tcp_user_timeout": "20000",
    "application_name": "pytest-sop",
}
# Server side: the server ends the session of a host that went away (and so frees its locks) after
# about 20 s; and never ends a lease's session for being idle while its case runs.
_SESSION = (
    "SELECT set_config('tcp_keepalives_idle', '10', false), set_config('tcp_keepalives_interval', '3', false),"
    " set_config('tcp_keepalives_count', '3', false), set_config('tcp_user_timeout', '20000', false),"
    " set_config('idle_session_timeout', '0', false), set_config('idle_in_transaction_session_timeout', '0', false)"
)
_SCHEMA_KEY = -0x5057_5350_4F50_0001  # an advisory lock of its own: one creator of the tables at a time


def lock_key(name: str) -> int:
    """The advisory lock (a signed 64-bit key) of a lock name such as ``device-pixel-a``."""
    digest = hashlib.blake2b(name.encode(), digest_size=8, person=b"pytest-sop").digest()
    return int.from_bytes(digest, "big", signed=True)


def describe_server(dsn: str) -> str:
    """The server a DSN names, as ``postgresql://user:***@host:port/db``: never its password."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(a connection string that cannot be read)"
    user = params.get("user")
    auth = f"{user}{':***' if params.get('password') else ''}@" if user else (":***@" if params.get("password") else "")
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    port = f":{params['port']}" if params.get("port") else ""
    db = f"/{params['dbname']}" if params.get("dbname") else ""
    return f"postgresql://{auth}{host}{port}{db}"


def _hide(dsn: str, text: str) -> str:
    """``text`` without the DSN's password (nor the DSN itself, which may carry it)."""
    with contextlib.suppress(psycopg.ProgrammingError):
        password = conninfo_to_dict(dsn).get("password")
        if password:
            text = text.replace(str(password), "***")
    return text.replace(dsn, describe_server(dsn)) if dsn else text


def _why(dsn: str, e: BaseException) -> str:
    """A psycopg error on one line, without the DSN's password."""
    return _hide(dsn, " ".join(str(e).split()) or type(e).__name__)


def _connect(dsn: str) -> psycopg.Connection[tuple[Any, ...]]:
    """A connection with keepalives on both ends; what the DSN itself says wins on the client side."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as e:
        raise LeaseServerError(
            f"the lease server's DSN is not a PostgreSQL connection string: {_why(dsn, e)}"
        ) from None
    if params.get("password"):
        remember((str(params["password"]),))  # masked in anything this run writes
    for key, value in KEEPALIVES.items():
        params.setdefault(key, value)
    try:
        conn = psycopg.connect(make_conninfo("", **params), autocommit=True)
        conn.execute(_SESSION)
    except psycopg.Error as e:
        raise LeaseServerError(f"lease server {describe_server(dsn)} cannot be used: {_why(dsn, e)}") from None
    return conn


def _ensure_schema(conn: psycopg.Connection[tuple[Any, ...]], server: str) -> None:
    """The holder table and its schema version, created on first use, a version 1 table migrated
    (it gains the ``hold`` column); a newer schema is refused."""
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_KEY,))
            conn.execute(f"CREATE TABLE IF NOT EXISTS {META} (key text PRIMARY KEY, value text NOT NULL)")
            row = conn.execute(f"SELECT value FROM {META} WHERE key = 'schema_version'").fetchone()
            found = row[0] if row else None
            if found in (None, "1"):  # new, or from before holds: made (or brought) up to this version
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {HOLDERS} ("
                    " kind text NOT NULL, id text NOT NULL, lock_key bigint NOT NULL, backend_pid integer NOT NULL,"
                    " run_id text NOT NULL, host text NOT NULL, pid integer NOT NULL, worker text,"
                    " case_name text NOT NULL, operator text NOT NULL, since text NOT NULL, hold jsonb,"
                    " PRIMARY KEY (kind, id))"
                )
                conn.execute(f"ALTER TABLE {HOLDERS} ADD COLUMN IF NOT EXISTS hold jsonb")
                conn.execute(
                    f"INSERT INTO {META} (key, value) VALUES ('schema_version', %s)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(SCHEMA_VERSION),),
                )
                found = str(SCHEMA_VERSION)
    except psycopg.Error as e:
        raise LeaseServerError(f"lease server {server}: cannot prepare the lease tables: {_why('', e)}") from None
    if found != str(SCHEMA_VERSION):
        raise LeaseServerError(
            f"lease server {server}: table {META} says schema version {found}, this pytest-sop reads version "
            f"{SCHEMA_VERSION}; run the same pytest-sop version on every host"
        )


def check_server(dsn: str) -> None:
    """Connect once and prepare the tables: a bad DSN or server stops a run before any case.

    :raises LeaseServerError: naming the server (its password masked) and what is wrong.
    """
    conn = _connect(dsn)
    try:
        _ensure_schema(conn, describe_server(dsn))
    finally:
        conn.close()


_RECORD = "kind, id, run_id, host, pid, worker, case_name, operator, since, hold"  # a Holder's columns

# Held advisory locks of this database, each with its holder record when the record's connection
# is the one holding the lock (a record left by a dead connection is not believed).
_HELD = f"""
SELECT l.key, l.pid, h.kind, h.id, h.run_id, h.host, h.pid, h.worker, h.case_name, h.operator, h.since, h.hold
FROM (SELECT ((classid::bigint << 32) | objid::bigint) AS key, pid FROM pg_locks
      WHERE locktype = 'advisory' AND granted AND objsubid = 1
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())) AS l
LEFT JOIN {HOLDERS} AS h ON h.lock_key = l.key AND h.backend_pid = l.pid
"""


def _holder(kind: Any, id_: str, run_id: str, host: str, pid: int, worker: str | None, case: str, operator: str,
            since: str, hold: Any) -> Holder | None:  # fmt: skip
    """A row of the holder table as a record (``None``: the row's kind is not one)."""
    if kind not in ("device", "account"):
        return None
    return Holder(kind, id_, run_id, host, pid, worker, case, operator, since, Hold.from_json(hold))


def _held(conn: psycopg.Connection[tuple[Any, ...]]) -> dict[int, tuple[int, Holder | None]]:
    """Held lock key -> (holding connection's backend pid, holder record or None)."""
    return {key: (backend, _holder(*record)) for key, backend, *record in conn.execute(_HELD)}


def _paused(conn: psycopg.Connection[tuple[Any, ...]]) -> dict[tuple[Kind, str], Holder]:
    """The records that carry an unexpired hold, whoever holds their lock now (usually no one)."""
    found = {}
    for record in conn.execute(f"SELECT {_RECORD} FROM {HOLDERS} WHERE hold IS NOT NULL"):
        holder = _holder(*record)
        if holder is not None and holder.holding() is not None:
            found[(holder.kind, holder.id)] = holder
    return found


def _rows(conn: psycopg.Connection[tuple[Any, ...]], wanted: Iterable[tuple[Kind, str]]) -> list[Row]:
    held, paused = _held(conn), _paused(conn)
    rows = []
    for kind, id in wanted:
        found = held.get(lock_key(lock_name(kind, id)))
        holder = found[1] if found is not None else None
        if holder is not None and (holder.kind, holder.id) != (kind, id):
            holder = None
        if holder is not None:
            rows.append(Row(kind, id, "held", holder, holder.pid))
        elif (kind, id) in paused:
            # A paused case's: its hold keeps it, whether no one has the lock or someone is only
            # looking (an acquirer reading the hold before it lets go again).
            rows.append(Row(kind, id, "held", paused[(kind, id)]))
        else:
            rows.append(Row(kind, id, "free" if found is None else "held", None))
    return rows


def lease_table(dsn: str, devices: Iterable[Device], accounts: Iterable[Account]) -> list[Row]:
    """Every device and account, free or held by whom, as :func:`pytest_sop.leasing.lease_table`:
    configured ones first, then held ones of other ids (another suite's, devices found at run time).

    :raises LeaseServerError: the server cannot be used.
    """
    wanted: list[tuple[Kind, str]] = [("device", d.id) for d in devices] + [("account", a.id) for a in accounts]
    server = describe_server(dsn)
    conn = _connect(dsn)
    try:
        _ensure_schema(conn, server)
        rows = _rows(conn, wanted)
        known = {(r.kind, r.id) for r in rows}
        others = [h for _, h in _held(conn).values() if h is not None] + list(_paused(conn).values())
        extra = sorted({(h.kind, h.id) for h in others} - known)
        rows += _rows(conn, extra)
    except psycopg.Error as e:
        raise LeaseServerError(f"lease server {server} cannot be read: {_why(dsn, e)}") from None
    finally:
        conn.close()
    return rows


def _try_all(n: int) -> str:
    """One statement that takes ``n`` advisory locks in order without waiting, stopping at the first
    busy one: its place (0-based), with the locks taken before it let go again; ``n`` when all
    were taken. One round trip however the try ends (CASE evaluates its branches in order)."""
    sql = str(n)
    for i in reversed(range(n)):
        gave_up = str(i) if i == 0 else f"(SELECT {i} FROM (SELECT pg_advisory_unlock_all()) AS let_go)"
        sql = f"CASE WHEN pg_try_advisory_lock(%s) THEN {sql} ELSE {gave_up} END"
    return "SELECT " + sql


class _PgHold:
    """The locks of one lease, held by its own connection; the connection goes back to the pool after."""

    def __init__(self, pool: PgLeasePool, conn: psycopg.Connection[tuple[Any, ...]], keys: Sequence[int]) -> None:
        self.pool = pool
        self.conn = conn
        self.keys = list(keys)

    def release(self) -> None:
        # The records first, committed, then every lock of this connection (it holds this lease's
        # only): two statements, so the next holder never reads a record (a hold a resume carried)
        # that is being deleted.
        self._let_go(f"DELETE FROM {HOLDERS} WHERE lock_key = ANY(%s) AND backend_pid = pg_backend_pid()", (self.keys,))

    def _let_go(self, records: str | None, params: tuple[Any, ...] = ()) -> int:
        """Run ``records`` (a statement on this lease's holder records) and commit it, then unlock; the
        connection goes back to the pool. The rows it touched; -1 when the connection is gone (and
        with it the locks: nothing is held). Whether the case lost its lease while it ran was asked by
        lost() before."""
        try:
            touched = self.conn.execute(records, params).rowcount if records else 0
            self.conn.execute("SELECT pg_advisory_unlock_all()")
        except psycopg.Error:
            self.conn.close()
            return -1
        self.pool._give_back(self.conn)
        return touched

    def rename(self, case: str, since: str) -> None:
        try:
            self.conn.execute(
                f"UPDATE {HOLDERS} SET case_name = %s, since = %s, pid = %s, hold = NULL"
                " WHERE lock_key = ANY(%s) AND backend_pid = pg_backend_pid()",
                (case, since, os.getpid(), self.keys),
            )
        except psycopg.Error as e:
            self.conn.close()
            raise LeaseLost(self._lost_message(e)) from None

    def lost(self) -> str | None:
        try:
            row = self.conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()"
            ).fetchone()
        except psycopg.Error as e:
            return self._lost_message(e)
        if row is None or row[0] != len(self.keys):
            return f"the lease's locks on lease server {self.pool.server} are no longer held"
        return None

    def keep(self, hold: Hold) -> None:
        """Pause: the records carry ``hold`` (committed), then the locks go and the records stay, so the
        device and account stay the paused case's after this connection and process are gone."""
        kept = self._let_go(
            f"UPDATE {HOLDERS} SET hold = %s WHERE lock_key = ANY(%s) AND backend_pid = pg_backend_pid()",
            (Jsonb(asdict(hold)), self.keys),
        )
        if kept < 0:
            raise SopError(f"the connection to lease server {self.pool.server} was lost: the hold was not kept")
        if kept != len(self.keys):
            raise SopError(f"the hold could not be written into every holder record on lease server {self.pool.server}")

    def paused_holds(self) -> list[Hold | None]:
        """The unexpired hold each lock's record carries, read while this connection holds the locks."""
        try:
            found = dict(
                self.conn.execute(
                    f"SELECT lock_key, hold FROM {HOLDERS} WHERE lock_key = ANY(%s) AND hold IS NOT NULL", (self.keys,)
                ).fetchall()
            )
        except psycopg.Error as e:
            self.conn.close()  # its locks go with it
            raise LeaseServerError(
                f"lease server {self.pool.server} went away while taking a lease: {_why(self.pool.dsn, e)}"
            ) from None
        holds = [Hold.from_json(found.get(key)) for key in self.keys]
        return [h if h is not None and not h.expired() else None for h in holds]

    def drop(self) -> None:
        """Let go of the locks without touching the records (someone else's hold stays)."""
        self._let_go(None)

    def _lost_message(self, e: psycopg.Error) -> str:
        reason = _why(self.pool.dsn, e)
        return (
            f"the connection to lease server {self.pool.server} holding this lease was lost ({reason}): "
            "the device and account were not held exclusively from then on"
        )


class PgLeasePool(LeasePoolBase[_PgHold]):
    """Takes leases as PostgreSQL session advisory locks for one run (one pytest process).

    :raises LeaseServerError: the server cannot be reached or its tables cannot be made (also
        later, from :meth:`acquire`, when the server goes away: no lease is then taken).
    """

    def __init__(self, dsn: str, run_id: str, operator: str, worker: str | None = None, **kw: Any) -> None:
        super().__init__(run_id, operator, worker, **kw)
        self.dsn = dsn
        self.server = describe_server(dsn)
        self._idle: list[psycopg.Connection[tuple[Any, ...]]] = []
        self._mutex = threading.Lock()
        conn = _connect(dsn)
        try:
            _ensure_schema(conn, self.server)
        except BaseException:
            conn.close()
            raise
        self._idle.append(conn)

    def close(self) -> None:
        """Close the idle connections (held leases keep theirs until released)."""
        with self._mutex:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _give_back(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        with self._mutex:
            self._idle.append(conn)

    def _connection(self) -> tuple[psycopg.Connection[tuple[Any, ...]], bool]:
        """A connection holding no lock, and whether it was kept from before (it may have died since)."""
        with self._mutex:
            conn = self._idle.pop() if self._idle else None
        if conn is not None and not conn.closed:
            return conn, True
        return _connect(self.dsn), False

    def _try(self, plan: _Plan, busy: set[str]) -> _PgHold | None:
        keys = [lock_key(name) for _, _, name in plan.locks]
        sql = _try_all(len(keys))
        conn, kept = self._connection()
        try:
            try:
                row = conn.execute(sql, keys).fetchone()
            except psycopg.OperationalError:
                if not kept:
                    raise
                # A kept connection the server ended meanwhile (a restart): once more on a new one.
                conn.close()
                conn = _connect(self.dsn)
                row = conn.execute(sql, keys).fetchone()
        except psycopg.Error as e:
            conn.close()  # its locks, if any, go with it
            raise LeaseServerError(
                f"lease server {self.server} went away while taking a lease: {_why(self.dsn, e)}"
            ) from None
        taken = int(row[0]) if row else 0
        if taken < len(keys):
            busy.add(plan.locks[taken][2])
            self._give_back(conn)
            return None
        return _PgHold(self, conn, keys)

    def _record(self, plan: _Plan, held: _PgHold, holders: Sequence[Holder]) -> None:
        rows = [
            (h.kind, h.id, key, h.run_id, h.host, h.pid, h.worker, h.case, h.operator, h.since,
             Jsonb(asdict(h.hold)) if h.hold else None)
            for h, key in zip(holders, held.keys, strict=True)
        ]  # fmt: skip
        try:
            with held.conn.cursor() as cur:
                # Over whatever record was there: a dead holder's, an expired hold, or the hold this
                # case takes over (kept while it runs when it resumes, ended when it starts over).
                cur.executemany(
                    f"INSERT INTO {HOLDERS} (kind, id, lock_key, backend_pid, run_id, host, pid, worker, case_name,"
                    " operator, since, hold) VALUES (%s, %s, %s, pg_backend_pid(), %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (kind, id) DO UPDATE SET lock_key = excluded.lock_key,"
                    " backend_pid = excluded.backend_pid, run_id = excluded.run_id, host = excluded.host,"
                    " pid = excluded.pid, worker = excluded.worker, case_name = excluded.case_name,"
                    " operator = excluded.operator, since = excluded.since, hold = excluded.hold",
                    rows,
                )
        except psycopg.Error as e:
            held.conn.close()
            raise LeaseServerError(
                f"lease server {self.server}: cannot write the holder record: {_why(self.dsn, e)}"
            ) from None

    def _rows(self, wanted: Sequence[tuple[Kind, str]]) -> list[Row]:
        conn, _ = self._connection()
        try:
            rows = _rows(conn, wanted)
        except psycopg.Error as e:
            conn.close()
            raise LeaseServerError(f"lease server {self.server} cannot be read: {_why(self.dsn, e)}") from None
        self._give_back(conn)
        return rows


def release_hold(dsn: str, kind: Kind, id: str, hold_id: str) -> bool:
    """End a hold on the lease server (``pytest-sop handoff release``, a voided pause), as
    :func:`pytest_sop.leasing.release_hold` does in a lock folder: its record is deleted.

    Returns False when the record carries no such hold (already ended, or taken over by a new run of
    the case). A hold taken over by a running resume is not touched.

    :raises SopError: the lock is held by a running case (the resume, or whoever has it now).
    :raises LeaseServerError: the server cannot be used.
    """
    server = describe_server(dsn)
    conn = _connect(dsn)
    try:
        _ensure_schema(conn, server)
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(lock_name(kind, id)),)).fetchone()
        if not (row and row[0]):
            raise SopError(f"{kind} {id} is in use by a running case now: its hold ends when that case does")
        # Deleted while this connection holds the lock, committed before it closes and lets it go.
        gone = conn.execute(
            f"DELETE FROM {HOLDERS} WHERE kind = %s AND id = %s AND hold->>'hold_id' = %s", (kind, id, hold_id)
        ).rowcount
    except psycopg.Error as e:
        raise LeaseServerError(f"lease server {server}: cannot release the hold: {_why(dsn, e)}") from None
    finally:
        conn.close()
    return gone > 0
