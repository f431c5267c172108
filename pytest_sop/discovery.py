"""``devices: [{discover: adb}]``: Android phones attached to this host, from ``adb devices -l``."""

from __future__ import annotations

import re
import shutil
import subprocess
from types import MappingProxyType

from .model import Device, SourcePos

_LINE = re.compile(r"^(\S+)\s+device\b(.*)$")


def parse_adb_devices(output: str, where: SourcePos) -> list[Device]:
    """Devices in state ``device`` (not offline or unauthorized), ids from their serials."""
    devices: list[Device] = []
    for line in output.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        serial, rest = m.group(1), m.group(2)
        props = dict(p.split(":", 1) for p in rest.split() if ":" in p)
        tags = ["discovered"] + ([props["model"].lower().replace("_", "-")] if "model" in props else [])
        dev_id = "adb-" + re.sub(r"[^a-z0-9-]+", "-", serial.lower()).strip("-")
        caps = {"platformName": "Android", "appium:automationName": "UiAutomator2", "appium:udid": serial}
        devices.append(Device(dev_id, "android", where, tuple(tags), MappingProxyType(caps)))
    return devices


def discover_adb(where: SourcePos, timeout: float = 10.0) -> list[Device]:
    """Attached devices; none when adb is not installed or does not answer."""
    adb = shutil.which("adb")
    if adb is None:
        return []
    try:
        out = subprocess.run([adb, "devices", "-l"], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_adb_devices(out.stdout, where)
