"""A newcomer's first hour: pytest-sop init, pytest-sop demo, --version, finding sop.yaml, ${env.NAME}."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_engine_fake import FAKE_CONFIG, own_locks

from conftest import ctrl_c_reaches_children
from pytest_sop.starter import KIT_FILES

ROOT = Path(__file__).resolve().parents[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without what a test run or an earlier suite left in it."""
    drop = ("PYTEST_XDIST", "PYTEST_ADDOPTS", "SNAPGRAM_")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(drop)}, **extra}


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_sop", *args], cwd=cwd, env=env or clean_env(),
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def pytest_in(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=folder,
                          env=env or clean_env(), capture_output=True, text=True, timeout=600)  # fmt: skip


# -- init ------------------------------------------------------------------------------------


def test_init_writes_a_suite_that_lints_and_plans(tmp_path: Path) -> None:
    folder = tmp_path / "my suite"  # made, and quoted in the commands
    result = cli("init", str(folder), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == sorted(KIT_FILES)
    out = result.stdout
    assert f"cd '{folder}'" in out
    assert "npm install" in out and "pytest-sop demo --port 8765 &" in out
    assert "SNAPGRAM_PORT=8765 SNAPGRAM_PUB1_PASSWORD=pub1-demo-pass pytest --sop" in out

    lint = cli("lint", cwd=folder)
    assert (lint.returncode, lint.stdout) == (0, ""), lint.stdout + lint.stderr
    assert "1 SOP file(s), 1 case(s): all valid" in lint.stderr

    # As printed, without the variables: the dry run names them and fails; with them, it passes.
    plan = pytest_in(folder, "--sop", "--sop-dry-run", env=clean_env())
    assert plan.returncode == 1, plan.stdout + plan.stderr
    assert "need unset environment variables: SNAPGRAM_PORT, SNAPGRAM_PUB1_PASSWORD" in plan.stdout
    env = clean_env(SNAPGRAM_PORT="8765", SNAPGRAM_PUB1_PASSWORD="pub1-demo-pass")
    plan = pytest_in(folder, "--sop", "--sop-dry-run", env=env)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "dry run: 1 case(s) planned" in plan.stdout
    assert "sign-in" in plan.stdout and "pixel-7" in plan.stdout


def test_init_here_prints_no_cd(tmp_path: Path) -> None:
    result = cli("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "cd " not in result.stdout
    assert (tmp_path / "sops" / "sign-in.sop.yaml").is_file()


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nmine = 1\n")
    (tmp_path / "sops").mkdir()
    (tmp_path / "sops" / "sign-in.sop.yaml").write_text("id: mine\n")
    result = cli("init", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert "refused" in result.stderr and "nothing was written" in result.stderr
    assert str(tmp_path / "pytest.ini") in result.stderr
    assert str(tmp_path / "sops" / "sign-in.sop.yaml") in result.stderr
    assert (tmp_path / "pytest.ini").read_text() == "[pytest]\nmine = 1\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["pytest.ini", "sign-in.sop.yaml", "sops"]


def test_the_kit_pins_the_appium_this_repo_is_tested_with() -> None:
    kit = json.loads((ROOT / "pytest_sop" / "starter_kit" / "package.json").read_text())["dependencies"]
    lock = json.loads((ROOT / "package-lock.json").read_text())["packages"]
    assert kit == {name: lock[f"node_modules/{name}"]["version"] for name in ("appium", "appium-chromium-driver")}
    assert kit["appium"].startswith("3.")


def test_version() -> None:
    for command in (
        [sys.executable, "-m", "pytest_sop", "--version"],
        [str(Path(sys.executable).parent / "pytest-sop"), "--version"],
    ):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert re.fullmatch(r"pytest-sop \d+\.\d+\S* \(Python 3\.\d+\.\d+\S*, pytest \d+\.\d+\S*\)\n", result.stdout)
        assert f"Python {sys.version.split()[0]}" in result.stdout
        assert f"pytest {pytest.__version__}" in result.stdout


# -- demo ------------------------------------------------------------------------------------


@pytest.fixture
def demo() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``pytest-sop demo`` on a free port, in the background as the README starts it."""
    with ctrl_c_reaches_children():
        proc = subprocess.Popen([sys.executable, "-m", "pytest_sop", "demo"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=clean_env())  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once it listens, however long the start takes
        found = re.search(r"Snapgram on (http://127\.0\.0\.1:(\d+)/)", line)
        assert found, line + proc.stderr.read() if proc.stderr else line
        assert f"export SNAPGRAM_PORT={found.group(2)}" in proc.stdout.readline()
        yield proc, found.group(1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)


def test_demo_serves_the_app_until_ctrl_c(demo: tuple[subprocess.Popen[str], str]) -> None:
    proc, url = demo
    with urllib.request.urlopen(url, timeout=30) as page:
        body = page.read().decode()
    assert page.status == 200 and "Snapgram" in body and 'id="username"' in body
    # The demo accounts' passwords are the ones the example suite and the starter kit use.
    form = b"username=pub1&password=pub1-demo-pass"
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    with browser.open(urllib.request.Request(url + "login", data=form, method="POST"), timeout=30) as signed_in:
        assert 'id="whoami"' in signed_in.read().decode()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0


def test_demo_on_a_busy_port_says_so(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "pytest_sop.demo", "--port", str(port)], capture_output=True,
                                text=True, timeout=60, env=clean_env())  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == f"pytest-sop demo: port {port} is in use: give another with --port N\n"


# -- which sop.yaml pytest uses ----------------------------------------------------------------

SOP = "id: {id}\nsteps: [back]\n"


def test_a_run_without_sop_yaml_says_where_it_looked(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "sops").mkdir()
    (tmp_path / "sops" / "s.sop.yaml").write_text(SOP.format(id="s"))
    result = pytest_in(tmp_path, "--sop", "sops")
    assert result.returncode == 4, result.stdout + result.stderr  # a usage error, before any case
    assert f"ERROR: no sop.yaml found (looked in {tmp_path}, {tmp_path / 'sops'} and the folders above them); " \
           "run pytest-sop init" in result.stderr  # fmt: skip
    assert "id:" not in result.stdout + result.stderr  # not blamed on the SOP's id line


def test_pytest_finds_the_sop_yaml_beside_the_paths_it_is_given(tmp_path: Path) -> None:
    """The rootdir (pytest.ini here) has no sop.yaml: the suite given on the command line has one."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    suite = tmp_path / "suites" / "phone"
    (suite / "sops").mkdir(parents=True)
    (suite / "sop.yaml").write_text("devices:\n  - {id: only-here, platform: android}\n")
    (suite / "sops" / "s.sop.yaml").write_text(SOP.format(id="s"))
    result = pytest_in(tmp_path, "--sop", "--sop-dry-run", "suites/phone/sops/s.sop.yaml::s")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "only-here" in result.stdout

    # --sop-config still wins
    (tmp_path / "other.yaml").write_text("devices:\n  - {id: other-phone, platform: android}\n")
    result = pytest_in(tmp_path, "--sop", "--sop-dry-run", "--sop-config", "other.yaml", "suites/phone")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "other-phone" in result.stdout and "only-here" not in result.stdout

    # ...and the rootdir's wins over one further down
    (tmp_path / "sop.yaml").write_text("devices:\n  - {id: root-phone, platform: android}\n")
    result = pytest_in(tmp_path, "--sop", "--sop-dry-run", "suites/phone")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "root-phone" in result.stdout


def test_paths_of_two_suites_in_one_run_are_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "sop.yaml").write_text(f"devices:\n  - {{id: {name}-phone, platform: android}}\n")
        (tmp_path / name / f"{name}.sop.yaml").write_text(SOP.format(id=name))
    result = pytest_in(tmp_path, "--sop", "--sop-dry-run", "a", "b")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "the paths given belong to different suites" in result.stderr
    assert str(tmp_path / "a" / "sop.yaml") in result.stderr and str(tmp_path / "b" / "sop.yaml") in result.stderr


# -- ${env.NAME} -----------------------------------------------------------------------------

ENV_APP = FAKE_CONFIG + "apps:\n  home:\n    url: http://127.0.0.1:${env.H2_DEMO_PORT}/\n"
ENV_SOP = """\
id: env-sop
app: home
steps:
  - launch_app
  - type: {into: {id: username}, text: "${env.H2_WHO}"}
  - assert_text: {in: {id: username}, equals: "${env.H2_WHO}"}
"""


@pytest.mark.appium
def test_env_templates_fill_in_step_text(
    pytester: pytest.Pytester, appium_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("H2_DEMO_PORT", "8765")
    monkeypatch.setenv("H2_WHO", "from-the-env")
    pytester.makefile(".yaml", sop=ENV_APP)
    (pytester.path / "e.sop.yaml").write_text(ENV_SOP)
    result = pytester.runpytest(
        "--sop", "--sop-appium", appium_url, "--alluredir", str(pytester.path / "allure"), *own_locks(pytester.path)
    )
    result.assert_outcomes(passed=1)
    (res,) = [json.loads(p.read_text()) for p in (pytester.path / "allure").glob("*-result.json")]
    assert "type into={id: username} text='from-the-env'" in [s["name"] for s in res["steps"]]


@pytest.mark.appium
def test_an_unset_env_in_the_app_url_stops_the_case_before_it_starts(
    pytester: pytest.Pytester, appium_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("H2_DEMO_PORT", raising=False)
    monkeypatch.setenv("H2_WHO", "x")
    pytester.makefile(".yaml", sop=ENV_APP)
    (pytester.path / "e.sop.yaml").write_text(ENV_SOP)
    audit = pytester.path / "audit.jsonl"
    result = pytester.runpytest("--sop", "--sop-appium", appium_url, "--sop-audit", str(audit), *own_locks(pytester.path))
    result.assert_outcomes(errors=1)  # in setup: no step ran
    result.stdout.fnmatch_lines(
        ["*environment variable H2_DEMO_PORT is not set (${env.H2_DEMO_PORT} in apps.home.url (sop.yaml:*"]
    )
    assert "INTERNALERROR" not in result.stdout.str()
    events = [json.loads(line)["event"] for line in audit.read_text().splitlines()]
    assert "step" not in events and "session" not in events


@pytest.mark.appium
def test_an_unset_env_in_step_text_stops_the_case_before_it_starts(
    pytester: pytest.Pytester, appium_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("H2_DEMO_PORT", "8765")
    monkeypatch.delenv("H2_WHO", raising=False)
    pytester.makefile(".yaml", sop=ENV_APP)
    # optional and retried: an unset variable is no product failure to pass over or try again
    sop = ENV_SOP.replace(
        'text: "${env.H2_WHO}"}', 'text: "${env.H2_WHO}"}\n    optional: true\n    retry: {attempts: 3}'
    )
    (pytester.path / "e.sop.yaml").write_text(sop)
    result = pytester.runpytest(
        "--sop", "--sop-appium", appium_url, "--alluredir", str(pytester.path / "allure"), *own_locks(pytester.path)
    )
    # An error in setup, before the lease: no step ran, nothing was retried or passed over.
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*environment variable H2_WHO is not set*e.sop.yaml:*"])
    (res,) = [json.loads(p.read_text()) for p in (pytester.path / "allure").glob("*-result.json")]
    assert res["status"] == "broken"
    assert res.get("steps", []) == []


@pytest.mark.appium
def test_the_starter_suite_passes_on_chromium_as_init_says_to_run_it(
    tmp_path: Path, demo: tuple[subprocess.Popen[str], str]
) -> None:
    """init, then the demo in the background and pytest --sop, with this checkout's Appium (no npm install here)."""
    assert cli("init", cwd=tmp_path).returncode == 0
    port = demo[1].rsplit(":", 1)[1].strip("/")
    env = clean_env(SOP_APPIUM_HOME=str(ROOT), SNAPGRAM_PORT=port, SNAPGRAM_PUB1_PASSWORD="pub1-demo-pass")
    run = pytest_in(tmp_path, "--sop", "-v", "--alluredir=allure-results", *own_locks(tmp_path), env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    assert "sign-in" in run.stdout and "1 passed" in run.stdout
    assert "pub1-demo-pass" not in run.stdout + run.stderr
    assert (tmp_path / "allure-results" / "sop-audit.jsonl").is_file()


def test_check_env_names_an_unset_variable_before_the_case_and_where_it_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a case's setup calls: the SOP, the SOPs it runs and its done_when, before any lease or session."""
    from pytest_sop.actions import build_registry
    from pytest_sop.suite import Suite
    from pytest_sop.suiteconfig import load_config
    from pytest_sop.templates import EnvMissing, check_env

    (tmp_path / "sop.yaml").write_text(FAKE_CONFIG)
    (tmp_path / "main.sop.yaml").write_text(
        "id: main\nsteps:\n  - note: on ${env.H2_HOST}\n  - run: inner\n"
        "done_when:\n  - text: {in: {id: x}, equals: '${env.H2_DONE}'}\n"
    )
    (tmp_path / "inner.sop.yaml").write_text("id: inner\nsteps:\n  - type: {into: {id: u}, text: '${env.H2_INNER}'}\n")
    suite = Suite(load_config(str(tmp_path / "sop.yaml")), build_registry(), str(tmp_path), base=str(tmp_path))
    sop = suite.get_sop("main")
    assert sop is not None
    for name in ("H2_HOST", "H2_INNER", "H2_DONE"):
        monkeypatch.delenv(name, raising=False)
    expected = [("H2_HOST", "main.sop.yaml:3"), ("H2_DONE", "main.sop.yaml:6"), ("H2_INNER", "inner.sop.yaml:3")]
    for name, where in expected:
        with pytest.raises(EnvMissing) as e:
            check_env(sop, suite.get_sop)
        assert str(e.value) == f"environment variable {name} is not set (${{env.{name}}} in {where})"
        monkeypatch.setenv(name, "")  # set, even empty, is set
    check_env(sop, suite.get_sop)
