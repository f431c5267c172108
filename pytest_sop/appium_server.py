"""Which Appium a run uses, and a managed Appium 3 server: started on a free port, health-checked,
always stopped.

Appium is looked for where its users keep it, in this order: ``SOP_APPIUM_HOME`` (a folder whose
node_modules has appium), the project's node_modules (the nearest folder at or above the rootdir
that has node_modules/appium), then ``appium`` on PATH (``npm install -g appium``) with its own
``APPIUM_HOME`` left as the user has it (default ``~/.appium``).

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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from .errors import SopError

_PR_SET_PDEATHSIG = 1
# Makes a new browser profile folder that the run removes at its end (set by the run's Appium service).
profile_root: Callable[[], str] | None = None

#: automationName (lower case) -> (Appium's name for the driver, its npm package).
KNOWN_DRIVERS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "chromium": ("chromium", "appium-chromium-driver"),
        "uiautomator2": ("uiautomator2", "appium-uiautomator2-driver"),
        "fake": ("fake", "@appium/fake-driver"),
        "xcuitest": ("xcuitest", "appium-xcuitest-driver"),
        "espresso": ("espresso", "appium-espresso-driver"),
        "mac2": ("mac2", "appium-mac2-driver"),
        "gecko": ("gecko", "appium-geckodriver"),
        "safari": ("safari", "appium-safari-driver"),
    }
)
# Drivers `appium driver install NAME` knows by name; others are installed from npm.
_APPIUM_REGISTRY = frozenset({"chromium", "uiautomator2", "xcuitest", "espresso", "mac2", "gecko", "safari"})
NODE_FIX = "install Node.js 20.19 or newer (https://nodejs.org/en/download)"
DRIVER_LIST_TIMEOUT = 60.0  # seconds; about half a second when the machine is idle

Source = Literal["SOP_APPIUM_HOME", "project", "PATH"]


class AppiumNotFound(SopError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class AppiumInstall:
    """The Appium a run uses: how to start it, where it was found, and the drivers it has.

    Only plain values, so the controller can hand it to xdist workers (:meth:`to_plain`).
    """

    command: tuple[str, ...]  # what runs before ``server --port ...``
    env: Mapping[str, str]  # set over the caller's environment when Appium runs
    source: Source
    location: str  # the appium that runs: node_modules/appium or the executable on PATH
    home: str  # the npm folder (SOP_APPIUM_HOME, project) or Appium's own APPIUM_HOME (PATH)
    version: str | None
    drivers: Mapping[str, str]  # installed drivers: name -> version
    automation_names: Mapping[str, str] = field(default_factory=dict)  # automationName (lower) -> driver
    tried: tuple[str, ...] = ()  # the places looked at, in order, this one last

    def describe(self) -> str:
        version = f"Appium {self.version}" if self.version else "Appium"
        drivers = ", ".join(f"{n} {v}" for n, v in sorted(self.drivers.items())) or "none"
        where = {
            "SOP_APPIUM_HOME": f"SOP_APPIUM_HOME={self.home}",
            "project": f"the project's node_modules in {self.home}",
            "PATH": f"appium on PATH ({self.location}), APPIUM_HOME={self.home}",
        }[self.source]
        return f"{version} from {where}; drivers installed: {drivers}"

    def driver_for(self, automation_name: str) -> str | None:
        """The driver that serves ``automation_name``: as the installed drivers declare it, else
        the known one; None when neither says."""
        key = automation_name.lower()
        return self.automation_names.get(key) or (KNOWN_DRIVERS[key][0] if key in KNOWN_DRIVERS else None)

    def install_driver_command(self, driver: str) -> str:
        """The one command that adds ``driver`` where this Appium looks for it."""
        package = next((pkg for name, pkg in KNOWN_DRIVERS.values() if name == driver), driver)
        if self.source == "PATH":
            spec = driver if driver in _APPIUM_REGISTRY else f"--source=npm {package}"
            return f"appium driver install {spec}"
        return f"npm install --prefix {self.home} --save-dev {package}"

    def missing_driver(self, automation_name: Any, device: str) -> str | None:
        """Why ``device`` cannot run on this Appium, or None when its driver is installed (or
        when which driver it needs is not known)."""
        if not isinstance(automation_name, str) or not automation_name:
            return None
        driver = self.driver_for(automation_name)
        if driver is None or driver in self.drivers:
            return None
        return (
            f"device {device} needs Appium's {driver} driver (automationName {automation_name}), "
            f"which is not installed.\nAppium used: {self.describe()}\n"
            f"{_tried_text(self.tried)}\nfix: {self.install_driver_command(driver)}"
        )

    def to_plain(self) -> dict[str, Any]:
        return {
            "command": list(self.command), "env": dict(self.env), "source": self.source,
            "location": self.location, "home": self.home, "version": self.version,
            "drivers": dict(self.drivers), "automation_names": dict(self.automation_names),
            "tried": list(self.tried),
        }  # fmt: skip

    @classmethod
    def from_plain(cls, data: Mapping[str, Any]) -> AppiumInstall:
        return cls(
            command=tuple(data["command"]), env=dict(data["env"]), source=data["source"],
            location=data["location"], home=data["home"], version=data["version"],
            drivers=dict(data["drivers"]), automation_names=dict(data["automation_names"]),
            tried=tuple(data["tried"]),
        )  # fmt: skip


def _tried_text(tried: Iterable[str]) -> str:
    return "looked, in order, at:\n" + "\n".join(f"  {i}. {place}" for i, place in enumerate(tried, 1))


def _has_appium(folder: Path) -> bool:
    return (folder / "node_modules" / "appium" / "index.js").is_file()


def _project_folder(start: Path) -> Path | None:
    for folder in (start.resolve(), *start.resolve().parents):
        if _has_appium(folder):
            return folder
    return None


def find_appium_home(start: Path) -> Path | None:
    """The npm folder whose node_modules has appium: ``SOP_APPIUM_HOME``, else the nearest folder
    at or above ``start`` with node_modules/appium. (Appium's own ``APPIUM_HOME`` is where it keeps
    drivers, not an install of Appium: see :func:`find_appium` for an ``appium`` on PATH.)"""
    env = os.environ.get("SOP_APPIUM_HOME")
    if env:
        return Path(env).expanduser()
    return _project_folder(start)


def _drivers_in(folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Drivers installed as npm dependencies of ``folder`` (as Appium finds them there):
    name -> version, and automationName (lower case) -> name."""
    drivers: dict[str, str] = {}
    automation: dict[str, str] = {}
    try:
        meta = json.loads((folder / "package.json").read_text())
    except (OSError, ValueError):
        return drivers, automation
    # `appium driver install` with APPIUM_HOME there writes devDependencies; npm --save, dependencies.
    deps = [*(meta.get("dependencies") or {}), *(meta.get("devDependencies") or {})]
    for dep in deps:
        try:
            pkg = json.loads((folder / "node_modules" / dep / "package.json").read_text())
        except (OSError, ValueError):
            continue
        appium = pkg.get("appium") or {}
        name = appium.get("driverName") if isinstance(appium, dict) else None
        if name:
            drivers[str(name)] = str(pkg.get("version", "?"))
            if appium.get("automationName"):
                automation[str(appium["automationName"]).lower()] = str(name)
    return drivers, automation


def installed_drivers(home: Path) -> dict[str, str]:
    """Appium drivers installed as npm dependencies of ``home``: name -> version (as Appium finds them)."""
    return _drivers_in(home)[0]


def _package_version(package_json: Path) -> str | None:
    try:
        meta = json.loads(package_json.read_text())
    except (OSError, ValueError):
        return None
    return str(meta["version"]) if meta.get("name") == "appium" and meta.get("version") else None


def _major(version: str) -> int:
    head = version.split(".")[0]
    return int(head) if head.isdigit() else 0


def _install_command(folder: Path, automation_names: Iterable[str]) -> str:
    packages = ["appium"]
    for name in automation_names:
        known = KNOWN_DRIVERS.get(name.lower())
        if known and known[1] not in packages:
            packages.append(known[1])
    return f"npm install --prefix {folder} --save-dev {' '.join(packages)}"


def _npm_folder_install(folder: Path, source: Source, tried: list[str]) -> AppiumInstall:
    tried.append(f"{'SOP_APPIUM_HOME' if source == 'SOP_APPIUM_HOME' else 'the project'}: {folder}/node_modules/appium")
    node = shutil.which("node")
    if node is None:
        raise AppiumNotFound(
            f"node is not on PATH, and Appium 3 runs on Node.js\n{_tried_text(tried)}\nfix: {NODE_FIX}"
        )
    index = folder / "node_modules" / "appium" / "index.js"
    drivers, automation = _drivers_in(folder)
    return AppiumInstall(
        command=(node, str(index)), env={"APPIUM_HOME": str(folder)}, source=source, location=str(index.parent),
        home=str(folder), version=_package_version(index.parent / "package.json"), drivers=drivers,
        automation_names=automation, tried=tuple(tried),
    )  # fmt: skip


def _parse_driver_list(stdout: str) -> dict[str, Any]:
    """``appium driver list --installed --json``'s object; log lines around it are ignored."""
    with contextlib.suppress(ValueError):
        value = json.loads(stdout)
        if isinstance(value, dict):
            return value
    start, end = stdout.find("{"), stdout.rfind("}")
    value = json.loads(stdout[start : end + 1]) if 0 <= start < end else None
    if not isinstance(value, dict):
        raise ValueError("no JSON object in its output")
    return value


def _path_install(appium: str, tried: list[str]) -> AppiumInstall:
    home = os.environ.get("APPIUM_HOME") or str(Path.home() / ".appium")
    tried.append(f"appium on PATH: {appium} (APPIUM_HOME={home})")
    reinstall = "npm install -g appium@3"
    if shutil.which("node") is None:
        raise AppiumNotFound(
            f"node is not on PATH, and Appium 3 runs on Node.js\n{_tried_text(tried)}\nfix: {NODE_FIX}"
        )
    real = Path(os.path.realpath(appium))
    version = _package_version(real.parent / "package.json")  # npm links bin/appium to appium/index.js
    if version is not None and _major(version) < 3:
        raise AppiumNotFound(
            f"appium on PATH is Appium {version}; pytest-sop needs Appium 3\n{_tried_text(tried)}\nfix: {reinstall}"
        )
    argv = [appium, "driver", "list", "--installed", "--json"]
    # Named even when it is the default: without APPIUM_HOME, Appium takes a working folder whose
    # package.json lists appium (what `pytest-sop init` writes) for its home, and finds no drivers there.
    env = {"APPIUM_HOME": home}
    output = ""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=DRIVER_LIST_TIMEOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
        )  # fmt: skip
        output = (done.stderr or done.stdout).strip()[-1500:]
        if done.returncode != 0:
            raise ValueError(f"it exited with status {done.returncode}")
        listed = _parse_driver_list(done.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        raise AppiumNotFound(
            f"appium on PATH does not work: `{' '.join(argv[1:])}` failed: {e}\n{output}\n"
            f"{_tried_text(tried)}\nfix: {reinstall}"
        ) from None
    drivers: dict[str, str] = {}
    automation: dict[str, str] = {}
    for name, meta in listed.items():
        if isinstance(meta, dict) and meta.get("installed", True):
            drivers[str(name)] = str(meta.get("version", "?"))
            if meta.get("automationName"):
                automation[str(meta["automationName"]).lower()] = str(name)
    return AppiumInstall(
        command=(appium,), env=env, source="PATH", location=appium, home=home, version=version, drivers=drivers,
        automation_names=automation, tried=tuple(tried),
    )  # fmt: skip


def find_appium(start: Path, needs: Iterable[str] = ()) -> AppiumInstall:
    """The Appium a run started at ``start`` (its rootdir) uses; ``needs``: the automationNames
    of its devices, for the install command when none is found.

    Raises AppiumNotFound naming the places looked at, in order, and the command that fixes it.
    """
    tried: list[str] = []
    folder = os.environ.get("SOP_APPIUM_HOME")
    if folder:
        path = Path(folder).expanduser()
        if not _has_appium(path):
            tried.append(f"SOP_APPIUM_HOME: {folder} has no node_modules/appium/index.js")
            fix = _install_command(path, needs)
            raise AppiumNotFound(f"no Appium found\n{_tried_text(tried)}\nfix: {fix} (or unset SOP_APPIUM_HOME)")
        return _npm_folder_install(path, "SOP_APPIUM_HOME", tried)
    tried.append("SOP_APPIUM_HOME: not set")
    project = _project_folder(start)
    if project is not None:
        return _npm_folder_install(project, "project", tried)
    tried.append(f"the project: no node_modules/appium in {start.resolve()} or a folder above it")
    appium = shutil.which("appium")
    if appium is not None:
        return _path_install(appium, tried)
    tried.append("appium on PATH: none")
    raise AppiumNotFound(f"no Appium found\n{_tried_text(tried)}\nfix: {_install_command(start.resolve(), needs)}")


def appium_in(folder: Path) -> AppiumInstall:
    """The Appium in ``folder``'s node_modules (as ``SOP_APPIUM_HOME`` names one)."""
    if not _has_appium(folder):
        raise AppiumNotFound(f"{folder} has no node_modules/appium/index.js\nfix: {_install_command(folder, ())}")
    return _npm_folder_install(folder, "project", [])


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
    """``appium``: the Appium to start (:func:`find_appium`), or a folder whose node_modules has it.

    ``mask`` rewrites every log line before it reaches the file (Appium logs request bodies).

    ``tmpdir``: Appium's TMPDIR, so what it and the drivers and browsers it starts leave behind
    (profiles, sockets, downloaded files) stays in one folder the caller removes.
    """

    appium: AppiumInstall | Path
    log_path: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    mask: Callable[[str], str] = str
    tmpdir: Path | None = None
    _pump: threading.Thread | None = None

    def __post_init__(self) -> None:
        if isinstance(self.appium, Path):
            self.appium = appium_in(self.appium)

    @property
    def install(self) -> AppiumInstall:
        assert isinstance(self.appium, AppiumInstall)
        return self.appium

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            *self.install.command, "server",
            "--address", "127.0.0.1", "--port", str(self.port),
            "--log-level", "debug", "--log-no-colors", "--log-timestamp",
            "--allow-insecure", "*:session_discovery",
        ]  # fmt: skip

    def start(self, timeout: float = 60.0) -> str:
        self.port = self.port or free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.install.env}
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
