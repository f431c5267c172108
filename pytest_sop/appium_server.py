"""A managed Appium 3 server: started on a free port, health-checked, always stopped.

Appium runs in its own process group with a parent-death signal, so neither Ctrl-C nor a
crashed pytest leaves it (or the drivers it started) behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import SopError

_PR_SET_PDEATHSIG = 1
# Makes a new browser profile folder that the run removes at its end (set by the run's Appium service).
profile_root: Callable[[], str] | None = None


class AppiumNotFound(SopError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_appium_home(start: Path) -> Path | None:
    """``SOP_APPIUM_HOME``, else the nearest folder at or above ``start`` with node_modules/appium."""
    env = os.environ.get("SOP_APPIUM_HOME") or os.environ.get("APPIUM_HOME")
    if env:
        return Path(env)
    for folder in (start.resolve(), *start.resolve().parents):
        if (folder / "node_modules" / "appium" / "index.js").is_file():
            return folder
    return None


def installed_drivers(home: Path) -> dict[str, str]:
    """Appium drivers installed as npm dependencies of ``home``: name -> version (as Appium finds them)."""
    drivers: dict[str, str] = {}
    try:
        deps = json.loads((home / "package.json").read_text()).get("dependencies", {})
    except (OSError, ValueError):
        return drivers
    for dep in deps:
        try:
            meta = json.loads((home / "node_modules" / dep / "package.json").read_text())
        except (OSError, ValueError):
            continue
        name = (meta.get("appium") or {}).get("driverName")
        if name:
            drivers[str(name)] = str(meta.get("version", "?"))
    return drivers


def status(url: str, timeout: float = 2.0) -> dict[str, object] | None:
    """Appium's ``GET /status`` value, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/status", timeout=timeout) as resp:
            body = json.load(resp)
    except (OSError, ValueError):
        return None
    value = body.get("value") if isinstance(body, dict) else None
    return value if isinstance(value, dict) else None


def open_sessions(url: str) -> list[dict[str, object]]:
    """``GET /appium/sessions`` (needs session_discovery, which a managed server enables)."""
    with urllib.request.urlopen(url.rstrip("/") + "/appium/sessions", timeout=5) as resp:
        value = json.load(resp).get("value", [])
    return list(value)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class ManagedAppium:
    """``mask`` rewrites every log line before it reaches the file (Appium logs request bodies).

    ``tmpdir``: Appium's TMPDIR, so what it and the drivers and browsers it starts leave behind
    (profiles, sockets, downloaded files) stays in one folder the caller removes.
    """

    home: Path
    log_path: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    mask: Callable[[str], str] = str
    tmpdir: Path | None = None
    _pump: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        node = shutil.which("node")
        if node is None:
            raise AppiumNotFound("node is not on PATH; Appium 3 needs Node.js (apt-get install nodejs)")
        return [
            node, str(self.home / "node_modules" / "appium" / "index.js"), "server",
            "--address", "127.0.0.1", "--port", str(self.port),
            "--log-level", "debug", "--log-no-colors", "--log-timestamp",
            "--allow-insecure", "*:session_discovery",
        ]  # fmt: skip

    def start(self, timeout: float = 60.0) -> str:
        self.port = self.port or free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "APPIUM_HOME": str(self.home)}
        if self.tmpdir is not None:
            self.tmpdir.mkdir(parents=True, exist_ok=True)
            env.update(TMPDIR=str(self.tmpdir), TMP=str(self.tmpdir), TEMP=str(self.tmpdir))
        self.process = subprocess.Popen(
            self.command(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent,
        )  # fmt: skip
        self._pump = threading.Thread(target=self._write_log, args=(self.process,), daemon=True, name="appium-log")
        self._pump.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._pump.join(5)
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise SopError(f"Appium exited with status {self.process.returncode} while starting:\n{tail}")
            value = status(self.url, timeout=1)
            if value and value.get("ready", True):
                return self.url
            time.sleep(0.1)
        self.stop()
        raise SopError(f"Appium did not answer {self.url}/status within {timeout:g}s; see {self.log_path}")

    def _write_log(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with open(self.log_path, "w", encoding="utf-8") as log:
            for raw in proc.stdout:
                log.write(self.mask(raw.decode("utf-8", "replace")))
                log.flush()

    def stop(self, grace: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # Appium ends its sessions and drivers on TERM
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
        # Anything Appium left in its group (a stuck chromedriver) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if self._pump is not None:
            self._pump.join(5)


def session_log(log_path: Path, session_id: str) -> str:
    """The lines of Appium's log that belong to one session (tagged with its first 8 characters)."""
    tag = f"[{session_id[:8]}]"
    out: list[str] = []
    keep = False
    try:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line[:4].isdigit():  # a new timestamped entry
                    keep = tag in line
                if keep:
                    out.append(line)
    except OSError:
        return ""
    return "".join(out)
