"""``devices: [{discover: grid, url: URL}]``: the slots of a Selenium Grid 4 that relays to Appium.

Every slot of the grid's ``/status`` whose stereotype names Appium capabilities (``appium:...``)
is a device: its ``id`` from the stereotype's ``appium:udid`` (else the node's address and the
slot's place on it), ``platform`` from ``platformName``, capabilities from the stereotype, and
the grid as its server, so sessions go through the grid. Slots of browsers the grid drives
itself are left out. The list is sorted by id, so every process of a run sees the same devices.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from .errors import DeviceError, SopError
from .model import Device, SourcePos

GRID_TAG = "grid"
STATUS_TIMEOUT = 30.0


class GridError(SopError):
    """The grid cannot be asked for its slots, or answered something that is not a Grid 4 status."""


def _ident(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "slot"


def relays_to_appium(stereotype: dict[str, Any]) -> bool:
    return any(isinstance(k, str) and k.startswith("appium:") for k in stereotype)


def parse_grid_status(data: Any, url: str, where: SourcePos) -> list[Device]:
    """The devices a Grid 4 ``/status`` answer holds; GridError when it is not one."""
    nodes = (
        data.get("value", {}).get("nodes") if isinstance(data, dict) and isinstance(data.get("value"), dict) else None
    )
    if not isinstance(nodes, list):
        raise GridError(f"the grid at {url} answered /status without value.nodes: is it a Selenium Grid 4?")
    devices: dict[str, Device] = {}
    for node in nodes:
        if not isinstance(node, dict) or node.get("availability", "UP") != "UP":
            continue
        address = urlsplit(str(node.get("uri", ""))).netloc or str(node.get("id", "node"))
        stereotypes = [
            s["stereotype"]
            for s in node.get("slots", [])
            if isinstance(s, dict) and isinstance(s.get("stereotype"), dict)
        ]
        # The slot's place among the node's slots, in an order that survives a restart (slot ids do not).
        stereotypes.sort(key=lambda s: json.dumps(s, sort_keys=True))
        for n, caps in enumerate(stereotypes):
            if not relays_to_appium(caps):
                continue
            udid = caps.get("appium:udid")
            dev_id = _ident(str(udid)) if udid else f"grid-{_ident(address)}-{n}"
            platform = str(caps.get("platformName", "")).lower() or "unknown"
            if dev_id in devices:  # one device, however many slots name it
                continue
            devices[dev_id] = Device(
                dev_id, platform, where, ("discovered", GRID_TAG), MappingProxyType(dict(caps)), url.rstrip("/")
            )
    return [devices[k] for k in sorted(devices)]


def discover_grid(url: str, where: SourcePos, timeout: float = STATUS_TIMEOUT) -> list[Device]:
    """The grid's Appium slots as devices.

    :raises GridError: the grid cannot be reached or does not answer as a Grid 4, naming it.
    """
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/status", timeout=timeout) as r:
            data = json.loads(r.read())
    except (OSError, urllib.error.URLError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise GridError(f"the grid at {url} cannot be asked for its slots: {reason}") from None
    return parse_grid_status(data, url, where)


def is_grid_device(device: Device) -> bool:
    return GRID_TAG in device.tags and "discovered" in device.tags


def _free_slot(device: Device) -> bool | None:
    """Whether a slot of the grid serving ``device`` is free now; None when the grid has no such slot."""
    assert device.server is not None
    try:
        with urllib.request.urlopen(f"{device.server}/status", timeout=STATUS_TIMEOUT) as r:
            nodes = json.loads(r.read()).get("value", {}).get("nodes", [])
    except (OSError, ValueError, AttributeError):
        return False  # asked again until the deadline; the session request then says what is wrong
    wanted = dict(device.capabilities)
    slots = [s for n in nodes if isinstance(n, dict) for s in n.get("slots", []) if isinstance(s, dict)]
    mine = [s for s in slots if s.get("stereotype") == wanted]
    if not mine:
        return None
    return any(s.get("session") is None for s in mine)


def wait_for_slot(device: Device, timeout: float, poll: float = 0.5) -> None:
    """Wait until the grid has a free slot for ``device``, at most ``timeout`` seconds (the lease
    timeout): a slot held by someone outside this suite's leases would otherwise leave the session
    request queued in the grid for as long as the grid likes.

    :raises DeviceError: no slot became free in time, or the grid no longer has the device's slot.
    """
    deadline = time.monotonic() + timeout
    while True:
        free = _free_slot(device)
        if free:
            return
        if free is None:
            raise DeviceError(device.id, f"the grid at {device.server} no longer has a slot for this device")
        if time.monotonic() >= deadline:
            raise DeviceError(
                device.id,
                f"the grid at {device.server} kept this device's slot busy for {timeout:g} s (the lease timeout): "
                "a session the grid holds for someone else; the session request was not queued",
            )
        time.sleep(poll)
