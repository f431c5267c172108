"""Real Appium installs made the way users make them, for tests that run pytest-sop outside the repo.

- :func:`global_prefix`: ``npm install -g --prefix DIR appium@<pinned>`` (an ``npm i -g`` install);
  its ``bin`` folder goes on PATH.
- :func:`appium_home`: an ``APPIUM_HOME`` filled by that appium's ``appium driver install``.
- :func:`user_home`: a HOME whose default ``~/.appium`` was filled the same way, APPIUM_HOME unset.

Versions are the ones package-lock.json pins, so npm's cache from ``npm ci`` serves most of it.
Each install is built once per test run into a folder shared by xdist workers, under a file lock,
and marked done only after it was built whole.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
#: Appium's driver name -> its npm package.
DRIVER_PACKAGES = {"fake": "@appium/fake-driver", "chromium": "appium-chromium-driver"}
# npm may fetch what its cache lacks; a slow, shared machine needs a generous limit.
INSTALL_TIMEOUT = 900


def pinned(package: str) -> str:
    """The version of ``package`` that package-lock.json pins."""
    lock = json.loads((ROOT / "package-lock.json").read_text())
    return str(lock["packages"][f"node_modules/{package}"]["version"])


def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder shared by every xdist worker of this run (one worker alone: its own basetemp)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = root / "appium-installs"
    path.mkdir(parents=True, exist_ok=True)
    return path


@functools.cache
def _npm_cache() -> str:
    done = subprocess.run(["npm", "config", "get", "cache"], capture_output=True, text=True, check=True, timeout=120)
    return done.stdout.strip()


def install_env(**extra: str) -> dict[str, str]:
    """The environment installs run in: no Appium of ours or the caller's, npm's own cache kept
    even under another HOME."""
    env = {k: v for k, v in os.environ.items() if k not in ("SOP_APPIUM_HOME", "APPIUM_HOME")}
    env.update(
        npm_config_cache=_npm_cache(), npm_config_prefer_offline="true", npm_config_audit="false",
        npm_config_fund="false", npm_config_update_notifier="false",
    )  # fmt: skip
    env.update(extra)
    return env


def _run(argv: list[str], env: Mapping[str, str], cwd: Path) -> None:
    """``cwd``: not the repo, whose package.json Appium would take for its home (APPIUM_HOME unset)."""
    done = subprocess.run(argv, env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")


def _built(target: Path, build: Callable[[Path], None]) -> Path:
    """``target``, built by ``build`` unless an earlier build of it finished (a half-built one is redone)."""
    done = target.with_name(target.name + ".done")
    with FileLock(str(target) + ".lock"):
        if not done.exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            build(target)
            done.touch()
    return target


def global_prefix(cache: Path) -> Path:
    """The ``bin`` folder of ``npm install -g --prefix DIR appium@<pinned>``: put it on PATH."""

    def build(prefix: Path) -> None:
        argv = ["npm", "install", "-g", "--prefix", str(prefix), "--prefer-offline", "--no-audit", "--no-fund"]
        _run([*argv, f"appium@{pinned('appium')}"], install_env(), prefix)

    return _built(cache / "global-prefix", build) / "bin"


def _install_drivers(bin_dir: Path, drivers: Iterable[str], env: Mapping[str, str], cwd: Path) -> None:
    for driver in drivers:
        package = DRIVER_PACKAGES[driver]
        _run([str(bin_dir / "appium"), "driver", "install", "--source=npm", f"{package}@{pinned(package)}"], env, cwd)


def appium_home(cache: Path, bin_dir: Path, drivers: Iterable[str]) -> Path:
    """An ``APPIUM_HOME`` where ``appium driver install`` (of the appium in ``bin_dir``) put ``drivers``."""
    drivers = tuple(drivers)

    def build(home: Path) -> None:
        _install_drivers(bin_dir, drivers, install_env(APPIUM_HOME=str(home)), home)

    return _built(cache / f"appium-home-{'-'.join(drivers)}", build)


def user_home(cache: Path, bin_dir: Path, drivers: Iterable[str]) -> Path:
    """A HOME whose default ``~/.appium`` holds ``drivers``, installed with APPIUM_HOME unset."""
    drivers = tuple(drivers)

    def build(home: Path) -> None:
        _install_drivers(bin_dir, drivers, install_env(HOME=str(home)), home)

    return _built(cache / f"user-home-{'-'.join(drivers)}", build)


def global_appium_with_drivers(
    tmp_path_factory: pytest.TempPathFactory, drivers: Iterable[str] = ("fake", "chromium")
) -> tuple[Path, Path]:
    """``(bin_dir, appium_home)``: a global-prefix Appium and an ``APPIUM_HOME`` with ``drivers``.

    Run pytest-sop with ``bin_dir`` on PATH and ``APPIUM_HOME=appium_home`` (SOP_APPIUM_HOME unset,
    no node_modules above the suite)."""
    cache = cache_dir(tmp_path_factory)
    bin_dir = global_prefix(cache)
    return bin_dir, appium_home(cache, bin_dir, drivers)
