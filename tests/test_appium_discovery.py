"""Appium found the way its users have it: SOP_APPIUM_HOME, the project's node_modules, then
``appium`` on PATH with its own APPIUM_HOME. Real installs (tests/appium_installs.py), real runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from appium_installs import ROOT, cache_dir, global_appium_with_drivers, global_prefix, pinned, user_home
from test_engine_fake import FAKE_CONFIG as FAKE_SUITE

from pytest_sop.appium_server import AppiumInstall, AppiumNotFound, ManagedAppium, find_appium, find_appium_home

HELLO = "id: hello\nsteps:\n  - launch_app\n  - assert_visible: {id: login_button}\n"
FAKE_VERSION = pinned("@appium/fake-driver")
# pytest-timeout counts fixture setup: the first test on a worker to need the shared installs builds them
# (or waits for the worker that does), with npm, which on a loaded host takes well over the 600 s default.
INSTALLS = pytest.mark.timeout(1800)


@pytest.fixture(scope="session")
def global_appium(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(bin folder of an `npm i -g --prefix` Appium, an APPIUM_HOME with the fake and chromium drivers)."""
    return global_appium_with_drivers(tmp_path_factory)


def outside_env(path: str, **extra: str) -> dict[str, str]:
    """A user's environment: no SOP_APPIUM_HOME, Appium's APPIUM_HOME only if given."""
    drop = ("SOP_APPIUM_HOME", "APPIUM_HOME", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_TESTRUNUID")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(PATH=path, PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def run_suite(tmp_path: Path, env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`pytest --sop` on a one-SOP fake-driver suite in a folder with no node_modules above it."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "sop.yaml").write_text(FAKE_SUITE)
    (suite / "hello.sop.yaml").write_text(HELLO)
    assert find_appium_home(suite) is None or "SOP_APPIUM_HOME" in os.environ  # nothing above it
    argv = [sys.executable, "-m", "pytest", "--sop", "-p", "no:cacheprovider", "-rA"]
    argv += ["-o", f"sop_lock_dir={tmp_path / 'locks'}", f"--alluredir={tmp_path / 'allure'}", *args]
    return subprocess.run(argv, cwd=suite, env=dict(env), capture_output=True, text=True, timeout=600)


def environment(tmp_path: Path) -> dict[str, str]:
    lines = (tmp_path / "allure" / "environment.properties").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line)


def system_path() -> str:
    """A PATH with node but no appium."""
    path = os.pathsep.join(p for p in ("/usr/local/bin", "/usr/bin", "/bin") if not Path(p, "appium").exists())
    assert shutil.which("node", path=path), "these tests need node in /usr/bin or /usr/local/bin"
    return path


@pytest.mark.appium
@INSTALLS
def test_appium_on_path_runs_with_drivers_from_its_appium_home(
    global_appium: tuple[Path, Path], tmp_path: Path
) -> None:
    """The layout `appium driver install` makes with APPIUM_HOME set (which crashed: Appium's
    APPIUM_HOME was taken for an install of Appium itself)."""
    bin_dir, home = global_appium
    env = outside_env(f"{bin_dir}{os.pathsep}{system_path()}", APPIUM_HOME=str(home))
    result = run_suite(tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    props = environment(tmp_path)
    assert props["Appium.driver.fake"] == FAKE_VERSION
    assert props["Appium.driver.chromium"] == pinned("appium-chromium-driver")


@pytest.mark.appium
@INSTALLS
def test_appium_on_path_runs_with_drivers_from_the_default_home(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """`npm i -g appium` and `appium driver install` with APPIUM_HOME unset: drivers in ~/.appium."""
    cache = cache_dir(tmp_path_factory)
    bin_dir = global_prefix(cache)
    home = user_home(cache, bin_dir, ["fake"])
    result = run_suite(tmp_path, outside_env(f"{bin_dir}{os.pathsep}{system_path()}", HOME=str(home)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert environment(tmp_path)["Appium.driver.fake"] == FAKE_VERSION


@pytest.mark.appium
@INSTALLS
def test_a_missing_driver_is_named_with_the_command_that_installs_it(
    global_appium: tuple[Path, Path], tmp_path: Path
) -> None:
    bin_dir, _ = global_appium
    empty = tmp_path / "empty-appium-home"
    empty.mkdir()
    result = run_suite(tmp_path, outside_env(f"{bin_dir}{os.pathsep}{system_path()}", APPIUM_HOME=str(empty)))
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "device fake-phone needs Appium's fake driver (automationName Fake), which is not installed" in out
    assert f"3. appium on PATH: {bin_dir / 'appium'} (APPIUM_HOME={empty})" in out
    assert "fix: appium driver install --source=npm @appium/fake-driver" in out
    assert "Traceback" not in out and "node:internal" not in out


def test_nothing_found_lists_the_places_tried_and_the_fix(tmp_path: Path) -> None:
    result = run_suite(tmp_path, outside_env(system_path()))
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    suite = (tmp_path / "suite").resolve()
    expected = [
        "no Appium found",
        "looked, in order, at:",
        "  1. SOP_APPIUM_HOME: not set",
        f"  2. the project: no node_modules/appium in {suite} or a folder above it",
        "  3. appium on PATH: none",
        f"fix: npm install --prefix {suite} --save-dev appium @appium/fake-driver",
    ]
    assert "\n".join(expected) in out
    assert "package.json" not in out


def test_nothing_found_with_xdist_is_a_usage_error_not_an_internal_error(tmp_path: Path) -> None:
    result = run_suite(tmp_path, outside_env(system_path()), "-n", "2")
    out = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, out
    assert "INTERNALERROR" not in out
    assert "no Appium found" in out and "3. appium on PATH: none" in out and "fix: npm install --prefix" in out


@pytest.mark.appium
@INSTALLS
def test_node_missing_names_what_was_found(
    global_appium: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bin_dir, _ = global_appium
    monkeypatch.delenv("SOP_APPIUM_HOME", raising=False)
    monkeypatch.setenv("PATH", str(bin_dir))  # appium, but no node
    with pytest.raises(AppiumNotFound) as e:
        find_appium(tmp_path)
    message = str(e.value)
    assert message.startswith("node is not on PATH, and Appium 3 runs on Node.js")
    assert f"3. appium on PATH: {bin_dir / 'appium'}" in message
    assert "fix: install Node.js 20.19 or newer" in message


@pytest.mark.appium
@INSTALLS
def test_a_broken_appium_on_path_says_so_and_how_to_reinstall(
    global_appium: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A real install with its build gone (an interrupted upgrade), linked the way npm links it."""
    bin_dir, _ = global_appium
    package = tmp_path / "prefix" / "lib" / "node_modules" / "appium"
    shutil.copytree(bin_dir.parent / "lib" / "node_modules" / "appium", package, copy_function=os.link, symlinks=True)
    (package / "build" / "lib" / "main.js").unlink()
    (tmp_path / "prefix" / "bin").mkdir()
    (tmp_path / "prefix" / "bin" / "appium").symlink_to("../lib/node_modules/appium/index.js")
    monkeypatch.delenv("SOP_APPIUM_HOME", raising=False)
    monkeypatch.setenv("APPIUM_HOME", str(tmp_path / "appium-home"))
    monkeypatch.setenv("PATH", f"{tmp_path / 'prefix' / 'bin'}{os.pathsep}{system_path()}")
    with pytest.raises(AppiumNotFound) as e:
        find_appium(tmp_path)
    message = str(e.value)
    assert message.startswith("appium on PATH does not work: `driver list --installed --json` failed")
    assert "3. appium on PATH:" in message and message.endswith("fix: npm install -g appium@3")


@INSTALLS
def test_the_projects_node_modules_comes_before_appium_on_path(
    global_appium: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """And its drivers, read from package.json, are the ones Appium itself lists there."""
    bin_dir, _ = global_appium
    monkeypatch.delenv("SOP_APPIUM_HOME", raising=False)
    monkeypatch.setenv("APPIUM_HOME", "/nonexistent/appium-home")  # Appium's, not an install of it
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    found = find_appium(ROOT / "tests")
    assert (found.source, found.home, found.env) == ("project", str(ROOT), {"APPIUM_HOME": str(ROOT)})
    assert found.version == pinned("appium")
    listed = subprocess.run(
        [*found.command, "driver", "list", "--installed", "--json"], env={**os.environ, **found.env},
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    assert found.drivers == {name: d["version"] for name, d in json.loads(listed.stdout).items()}
    assert found.driver_for("Chromium") == "chromium" and found.missing_driver("Chromium", "web") is None


@INSTALLS
def test_sop_appium_home_comes_first_and_a_missing_driver_has_its_npm_command(
    global_appium: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir, _ = global_appium
    folder = bin_dir.parent / "lib"  # node_modules/appium, no drivers
    monkeypatch.setenv("SOP_APPIUM_HOME", str(folder))
    found = find_appium(ROOT)
    assert (found.source, found.drivers, found.tried) == (
        "SOP_APPIUM_HOME",
        {},
        (f"SOP_APPIUM_HOME: {folder}/node_modules/appium",),
    )
    message = found.missing_driver("UiAutomator2", "pixel-7")
    assert message is not None and message.startswith("device pixel-7 needs Appium's uiautomator2 driver")
    assert message.endswith(f"fix: npm install --prefix {folder} --save-dev appium-uiautomator2-driver")
    assert found.missing_driver("SomethingNew", "x") is None  # which driver it needs is not known


def test_sop_appium_home_without_appium_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SOP_APPIUM_HOME", str(tmp_path))
    with pytest.raises(AppiumNotFound) as e:
        find_appium(ROOT, ["Chromium"])
    assert str(e.value) == (
        f"no Appium found\nlooked, in order, at:\n  1. SOP_APPIUM_HOME: {tmp_path} has no node_modules/appium/index.js\n"
        f"fix: npm install --prefix {tmp_path} --save-dev appium appium-chromium-driver (or unset SOP_APPIUM_HOME)"
    )


def test_what_was_found_crosses_to_xdist_workers_as_plain_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOP_APPIUM_HOME", raising=False)
    found = find_appium(ROOT)
    plain = found.to_plain()
    assert json.loads(json.dumps(plain)) == plain
    assert AppiumInstall.from_plain(plain) == found
    given = ManagedAppium(ROOT, Path("unused.log")).install  # a folder, as existing callers pass it
    assert (given.command, given.env, given.drivers) == (found.command, found.env, found.drivers)
