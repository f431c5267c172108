"""A throwaway PostgreSQL cluster for tests: ``initdb`` + ``pg_ctl`` on a free loopback port.

PostgreSQL refuses to run as root, so as root the cluster belongs to ``nobody`` (its folder is
made in /tmp and given to that user); otherwise to the current user. The superuser ``sop`` has
a password, so tests see it masked wherever a DSN is shown.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

PASSWORD = "pg-secret-4711"


def pg_bin() -> Path | None:
    """The newest installed server binaries (Debian's /usr/lib/postgresql/N/bin), or those on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    def __init__(self) -> None:
        bin_ = pg_bin()
        if bin_ is None:
            raise RuntimeError("PostgreSQL server binaries are not installed: run scripts/setup (apt postgresql)")
        self.bin = bin_
        self.root = Path(tempfile.mkdtemp(prefix="sop-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            self._as = {"user": 65534, "group": 65534, "extra_groups": []}  # nobody
            os.chown(self.root, 65534, 65534)
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self._as:
            os.chown(pwfile, 65534, 65534)
        self._run(
            "initdb", "-D", str(self.data), "-U", "sop", f"--pwfile={pwfile}", "--auth-local=trust",
            "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        pwfile.unlink()

    @property
    def dsn(self) -> str:
        return f"postgresql://sop:{PASSWORD}@127.0.0.1:{self.port}/postgres"

    @property
    def socket_dsn(self) -> str:
        """Through the Unix socket in the cluster's folder: reachable from another network namespace."""
        return f"host={self.root} port={self.port} user=sop dbname=postgres password={PASSWORD}"

    def _run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / tool), *args], capture_output=True, text=True, timeout=timeout, check=True,
            cwd=self.root, **self._as,
        )  # fmt: skip

    def start(self) -> None:
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
            "-c fsync=off -c max_connections=200 -c shared_buffers=16MB"
        )
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "120", "-o", opts)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "120")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        if self.running():
            with contextlib.suppress(subprocess.SubprocessError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def wait_until(check: Any, limit: float, step: float = 0.02) -> float:
    """Seconds until ``check()`` holds; raises AssertionError after ``limit`` seconds."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > limit:
            raise AssertionError(f"not within {limit} s")
        time.sleep(step)
    return time.monotonic() - start
