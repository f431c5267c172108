"""Shared by the benchmarks: the machine they ran on, their ``## `` sections of docs/benchmarks.md, and
the pieces of a measurement every side-by-side benchmark needs."""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import subprocess
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class BenchBroken(RuntimeError):
    """The benchmark itself broke (a run failed, sessions were left open): exit status 2, no verdict."""


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


def rusage_children() -> float:
    """CPU seconds (user + system) of every finished child process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def schedule(round_: int, n1: int, n2: int) -> list[tuple[str, int]]:
    """The round's runs, sides interleaved so that load drifting during a round hits both alike."""
    first, second = ("sop", "user") if round_ % 2 == 0 else ("user", "sop")
    runs = [(first, n1), (second, n1), (first, n2), (second, n2)]
    return runs if (round_ // 2) % 2 == 0 else runs[::-1]


def check_no_sessions(url: str | None) -> None:
    """A run that left a session open on the server broke the benchmark (``url`` None: no server)."""
    if url is None:
        return
    from pytest_sop.appium_server import open_sessions

    left = open_sessions(url)
    if left:
        raise BenchBroken(f"{len(left)} session(s) left open on {url}")


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def snapshot_plugin(ref: str, into: Path) -> str:
    """The package as committed at ``ref``, extracted into ``into``: edits under way in the work tree
    (other people's, half done) neither break a run nor make the numbers describe no commit."""
    try:
        sha = git("rev-parse", "--verify", f"{ref}^{{commit}}")
        into.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", sha, "pytest_sop"], cwd=REPO, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise BenchBroken(f"cannot take pytest_sop at {ref!r} from git: {e}") from e
    return f"plugin source: `{ref}` = commit {sha[:12]} (`git archive`; work tree edits not measured)"
