"""``discover: adb`` adds the phones ``adb devices -l`` lists."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_sop.discovery import parse_adb_devices
from pytest_sop.model import SourcePos

ADB_OUTPUT = """List of devices attached
37281FDJH00A1B         device usb:1-1 product:husky model:Pixel_8_Pro device:husky transport_id:3
emulator-5554          device product:sdk_gphone64 model:sdk_gphone64_x86_64 device:emu64 transport_id:1
R58N12ABCDE            unauthorized usb:1-2 transport_id:4
0123456789             offline
"""


def test_parse_keeps_ready_devices_only() -> None:
    devices = parse_adb_devices(ADB_OUTPUT, SourcePos("sop.yaml", 4, 3))
    assert [d.id for d in devices] == ["adb-37281fdjh00a1b", "adb-emulator-5554"]
    assert devices[0].tags == ("discovered", "pixel-8-pro")
    assert devices[0].capabilities["appium:udid"] == "37281FDJH00A1B"
    assert devices[1].capabilities["appium:automationName"] == "UiAutomator2"


def test_discovered_devices_join_the_pool(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = pytester.path / "bin"
    bin_dir.mkdir()
    adb = bin_dir / "adb"
    adb.write_text("#!/bin/sh\ncat <<'OUT'\n" + ADB_OUTPUT + "OUT\n")
    adb.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    pytester.makefile(".yaml", sop="devices:\n  - discover: adb\n")
    Path(pytester.path / "s.sop.yaml").write_text("id: s\nrequires:\n  device: {tags: [pixel-8-pro]}\nsteps: [back]\n")
    result = pytester.runpytest("--sop", "--sop-dry-run")
    result.stdout.fnmatch_lines(["  device:  tags=[[]pixel-8-pro] -> adb-37281fdjh00a1b"])
