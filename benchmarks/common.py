"""Shared by the benchmarks: the machine they ran on, and their ``## `` sections of docs/benchmarks.md."""

from __future__ import annotations

import json
import os
import platform
import re
from importlib.metadata import version
from pathlib import Path


def write_section(path: Path, section: str, heading: re.Pattern[str]) -> None:
    """Replace the section whose heading matches ``heading``, keeping every other section."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    match = heading.search(text)
    if match:
        following = re.search(r"^## ", text[match.end() :], re.MULTILINE)
        end = match.end() + following.start() if following else len(text)
        text = text[: match.start()] + section.rstrip("\n") + ("\n\n" if following else "\n") + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def machine() -> str:
    """The facts a reader needs to compare numbers: OS, CPUs, Python, pytest, xdist, the plugin."""
    import pytest

    from pytest_sop import __version__ as plugin_version

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{platform.system()} {platform.release()} ({platform.machine()}), {cpus} CPU(s) available; "
        f"Python {platform.python_version()}, pytest {pytest.__version__}, pytest-xdist {version('pytest-xdist')}, "
        f"pytest-sop {plugin_version}"
    )


def appium_version(home: Path) -> str:
    try:
        data = json.loads((home / "node_modules" / "appium" / "package.json").read_text())
        fake = json.loads((home / "node_modules" / "@appium" / "fake-driver" / "package.json").read_text())
        return f"Appium {data['version']}, fake driver {fake['version']}"
    except (OSError, ValueError, KeyError):
        return "Appium (version unknown)"
