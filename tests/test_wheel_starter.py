"""A newcomer's first run, as they would make it: the wheel in a fresh venv outside the repo, Appium
installed the way Appium's own docs say (a global npm install with ``appium driver install``), then
``pytest-sop init`` and ``pytest --sop`` on the demo app that ``pytest-sop demo`` serves.

Nothing here comes from the checkout at run time: no ``node_modules`` above the suite, no
``SOP_APPIUM_HOME``, no ``APPIUM_HOME`` unless the user set one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock

from tests import appium_installs

# pytest-timeout counts fixture setup: a test may build the shared wheel venv and the npm installs (or wait
# for the worker that does), which on a loaded host takes well over the 600 s default.
pytestmark = [pytest.mark.appium, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "pub1-demo-pass"


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, **kw)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (outside the repo) with only the wheel built from this checkout, and what it needs."""
    cache = appium_installs.cache_dir(tmp_path_factory)
    target = cache / "wheel-venv"
    done = cache / "wheel-venv.done"
    with FileLock(str(target) + ".lock"):
        if not done.exists():
            shutil.rmtree(target, ignore_errors=True)
            # A copy of what the wheel is built from: a build writes build/ and *.egg-info beside its source.
            source = cache / "wheel-source"
            shutil.rmtree(source, ignore_errors=True)
            source.mkdir()
            for name in ("pyproject.toml", "README.md"):
                shutil.copy2(ROOT / name, source / name)
            shutil.copytree(ROOT / "pytest_sop", source / "pytest_sop", ignore=shutil.ignore_patterns("__pycache__"))
            wheels = cache / "wheels"
            shutil.rmtree(wheels, ignore_errors=True)
            _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)])
            (wheel,) = wheels.glob("pytest_sop-*.whl")
            _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(target)])
            _run([str(target / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)])
            done.touch()
    return target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def demo(venv: Path) -> Iterator[int]:
    """``pytest-sop demo --port P`` from the installed wheel, until the test ends."""
    port = _free_port()
    proc = subprocess.Popen(
        [str(venv / "bin" / "pytest-sop"), "demo", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "SNAPGRAM_PUB1_PASSWORD": PASSWORD},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, f"pytest-sop demo exited: {proc.stderr.read() if proc.stderr else ''}"
            assert time.monotonic() < deadline, "pytest-sop demo did not listen within 120 s"
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


def _user_env(venv: Path, bin_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SOP_APPIUM_HOME", "APPIUM_HOME", "PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), str(bin_dir), os.environ.get("PATH", "/usr/bin:/bin")])
    env.update(extra)
    return env


def _first_run(venv: Path, project: Path, port: int, env: dict[str, str]) -> None:
    init = _run([str(venv / "bin" / "pytest-sop"), "init", str(project)], env=env, cwd=project.parent)
    assert "pytest --sop" in init.stdout
    assert not any(p.name == "node_modules" for p in (project, *project.parents) if (p / "node_modules").exists())
    env = {**env, "SNAPGRAM_PORT": str(port), "SNAPGRAM_PUB1_PASSWORD": PASSWORD}
    written_by_init = {p: p.stat().st_mtime_ns for p in project.rglob("*") if p.is_file()}
    run = subprocess.run(
        [str(venv / "bin" / "pytest"), "--sop", "-v", "-p", "no:cacheprovider", "--alluredir=allure-results"],
        capture_output=True, text=True, env=env, cwd=project, timeout=600,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "1 passed" in out, out
    # The run's record names the Appium it used: the user's, with its Chromium driver.
    props = (project / "allure-results" / "environment.properties").read_text()
    assert "chromium" in props.lower(), props
    # The secret never reached a file the run wrote (init's sop.yaml names the demo's in a comment).
    for path in project.rglob("*"):
        if path.is_file() and written_by_init.get(path) != path.stat().st_mtime_ns:
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_global_appium_with_drivers_in_its_default_home(
    venv: Path, demo: int, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``npm i -g appium`` then ``appium driver install chromium``: drivers in ~/.appium."""
    cache = appium_installs.cache_dir(tmp_path_factory)
    bin_dir = appium_installs.global_prefix(cache)
    home = appium_installs.user_home(cache, bin_dir, ["chromium"])
    _first_run(venv, tmp_path / "my-suite", demo, _user_env(venv, bin_dir, HOME=str(home)))


def test_global_appium_with_drivers_in_appium_home(
    venv: Path, demo: int, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The same Appium with ``APPIUM_HOME`` set, as ``appium driver install`` filled it."""
    cache = appium_installs.cache_dir(tmp_path_factory)
    bin_dir = appium_installs.global_prefix(cache)
    appium_home = appium_installs.appium_home(cache, bin_dir, ["chromium"])
    _first_run(venv, tmp_path / "my-suite", demo, _user_env(venv, bin_dir, APPIUM_HOME=str(appium_home)))
