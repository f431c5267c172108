"""Which lease backend a run uses, chosen once: lock files on this host, or a PostgreSQL server
shared by several hosts.

``--sop-leases`` (ini ``sop_leases``) wins: ``file``, or a PostgreSQL connection string. Else
``leases:`` in sop.yaml (``backend: file|postgres``, ``dsn:`` a string or ``{env: NAME}``). Else
lock files. pytest and ``pytest-sop leases`` decide alike, with :func:`lease_target`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from .errors import SopError
from .leasing import Kind, LeasePool, LeasePoolBase, Row, lease_table
from .leasing import release_hold as release_file_hold
from .masking import remember
from .model import Account, Device, Leases, Secret

__all__ = ["LeaseTarget", "check_target", "dsn_problem", "lease_rows", "lease_target", "open_pool", "release_hold"]


@dataclass(frozen=True)
class LeaseTarget:
    backend: Literal["file", "postgres"]
    lock_dir: str  # file: the host's lock folder
    dsn: str | None = None  # postgres: the connection string, secrets revealed
    source: str = ""  # where the choice was written, for errors

    @property
    def server(self) -> str | None:
        """The lease server as ``postgresql://user:***@host:port/db`` (never its password); None: lock files."""
        if self.dsn is None:
            return None
        from .pg_leases import describe_server

        return describe_server(self.dsn)

    def describe(self) -> str:
        return f"lock folder {self.lock_dir}" if self.server is None else f"lease server {self.server}"


def dsn_problem(dsn: str) -> str | None:
    """What is wrong with a PostgreSQL connection string, never quoting it (it may hold a password)."""
    if not dsn.strip():
        return "expected a PostgreSQL connection string (postgresql://USER@HOST/DB), got an empty one"
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(dsn)
    except ProgrammingError as e:
        reason = " ".join(str(e).split())
        password = _password(dsn)
        if password:
            reason = reason.replace(password, "***")
        return f"expected a PostgreSQL connection string (postgresql://USER@HOST/DB or key=value pairs): {reason}"
    return None


def _password(dsn: str) -> str | None:
    """The password inside a URL-style DSN that does not parse, to keep it out of messages."""
    if "://" in dsn and "@" in dsn:
        creds = dsn.split("://", 1)[1].split("@", 1)[0]
        if ":" in creds:
            return creds.split(":", 1)[1] or None
    return None


def lease_target(flag: str | None, flag_source: str, leases: Leases | None, lock_dir: str) -> LeaseTarget:
    """The backend: ``flag`` (``--sop-leases``, from ``flag_source``) wins over sop.yaml's ``leases``.

    :raises SopError: a DSN that is not one, or a ``{env: NAME}`` DSN whose variable is not set;
        the message names where it was written and never shows a password.
    """
    if flag:
        if flag == "file":
            return LeaseTarget("file", lock_dir, source=flag_source)
        problem = dsn_problem(flag)
        if problem:
            raise SopError(f"{flag_source}: {problem}")
        remember((flag,))
        return LeaseTarget("postgres", lock_dir, flag, flag_source)
    if leases is None or leases.backend == "file":
        return LeaseTarget("file", lock_dir, source=str(leases.pos) if leases else "")
    where = f"{leases.pos} leases.dsn"
    dsn = leases.dsn
    if isinstance(dsn, Secret):
        value = os.environ.get(dsn.env)
        if not value:
            raise SopError(f"{where}: environment variable {dsn.env} is not set (it holds the lease server's DSN)")
        remember((value,))  # the whole DSN is a secret: masked in everything written
        problem = dsn_problem(value)
        if problem:
            raise SopError(f"{where} (${dsn.env}): {problem}")
        dsn = value
    assert isinstance(dsn, str)
    return LeaseTarget("postgres", lock_dir, dsn, where)


def check_target(target: LeaseTarget) -> None:
    """Before any case: the lease server answers and its tables are ready (lock files are checked
    elsewhere, before their first use).

    :raises SopError: naming the server (password masked) and what is wrong.
    """
    if target.dsn is not None:
        from .pg_leases import check_server

        check_server(target.dsn)


def open_pool(target: LeaseTarget, run_id: str, operator: str, worker: str | None, **kw: Any) -> LeasePoolBase[Any]:
    """This process's lease pool in the chosen backend."""
    if target.dsn is not None:
        from .pg_leases import PgLeasePool

        return PgLeasePool(target.dsn, run_id, operator, worker, **kw)
    return LeasePool(target.lock_dir, run_id, operator, worker, **kw)


def lease_rows(target: LeaseTarget, devices: Iterable[Device], accounts: Iterable[Account]) -> list[Row]:
    """The lease table (``pytest-sop leases``) of the chosen backend."""
    if target.dsn is not None:
        from .pg_leases import lease_table as pg_lease_table

        return pg_lease_table(target.dsn, devices, accounts)
    return lease_table(target.lock_dir, devices, accounts)


def release_hold(target: LeaseTarget, kind: Kind, id: str, hold_id: str) -> bool:
    """End a paused case's hold on a device or account in the chosen backend (see
    :func:`pytest_sop.leasing.release_hold`): False when there was no such hold.

    :raises SopError: a running case holds the lock now, or the lease server cannot be used.
    """
    if target.dsn is not None:
        from .pg_leases import release_hold as release_server_hold

        return release_server_hold(target.dsn, kind, id, hold_id)
    return release_file_hold(target.lock_dir, kind, id, hold_id)
