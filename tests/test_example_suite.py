"""The example suite, and failure paths, on Chromium through Appium's Chromium driver."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_engine_fake import own_locks

from conftest import EXAMPLE_PUBLISH_DELAY, ExampleRun
from pytest_sop.demo import DemoServer, serve

ROOT = Path(__file__).resolve().parents[1]

CHROMIUM_CONFIG = """\
apps:
  snapgram: {{url: "{url}"}}
devices:
  - id: pixel-7
    platform: web
    capabilities:
      platformName: linux
      browserName: chrome
      appium:automationName: Chromium
      appium:executable: /usr/bin/chromedriver
      appium:autodownloadEnabled: false
      goog:chromeOptions:
        binary: /usr/bin/chromium
        args: [--headless=new, --no-sandbox, --disable-gpu, --disable-dev-shm-usage, --disable-background-networking, --no-first-run]
        mobileEmulation: {{deviceName: Pixel 7}}
accounts:
  - id: publisher-1
    fields: {{username: pub1, password: {{env: DEMO_PW}}}}
"""


@pytest.fixture
def demo(monkeypatch: pytest.MonkeyPatch) -> Iterator[DemoServer]:
    monkeypatch.setenv("DEMO_PW", "s3cret-canary-77")
    with serve(accounts={"pub1": "s3cret-canary-77"}, publish_delay=0.2) as server:
        yield server


SIGN_IN = """\
  - launch_app
  - type: {into: {id: username}, text: "${account.username}"}
  - type: {into: {id: password}, text: "${account.password}"}
  - tap: {text: Sign in}
"""


def test_wrong_text_and_secret_on_chromium(pytester: pytest.Pytester, appium_url: str, demo: DemoServer) -> None:
    pytester.makefile(".yaml", sop=CHROMIUM_CONFIG.format(url=demo.url))
    (pytester.path / "s.sop.yaml").write_text(
        "id: s\napp: snapgram\nrequires:\n  account: {}\nsteps:\n" + SIGN_IN
        # signed in first: the short timeout is for the wrong text, not for a slow page load
        + "  - wait_for: {id: whoami}\n"
        + "  - assert_text: {in: {id: whoami}, equals: somebody-else}\n    timeout: 0.5\n"
    )  # fmt: skip
    result = pytester.runpytest(
        "--sop", "--sop-appium", appium_url, "--alluredir", str(pytester.path / "allure"), *own_locks(pytester.path)
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "s.sop.yaml:11: assert_text failed in SOP 's'",
            "text of {id: whoami}: expected it to equal 'somebody-else', found 'pub1'",
        ]
    )
    (res,) = [json.loads(p.read_text()) for p in (pytester.path / "allure").glob("*-result.json")]
    assert res["status"] == "failed"
    titles = [s["name"] for s in res["steps"]]
    assert "type into={id: password} text='***'" in titles
    assert "s3cret-canary-77" not in result.stdout.str()


# pytest-timeout counts fixture setup: the first test on a worker runs the example suite (conftest example_run)
# or waits for the worker that does, which on a loaded host can take longer than the 600 s default.
EXAMPLE_RUN = pytest.mark.timeout(1800)


@EXAMPLE_RUN
def test_example_suite_passes(example_run: ExampleRun) -> None:
    """README command 1's run: the whole example suite, on a real Appium server it manages itself, -n auto."""
    assert example_run.returncode == 0, example_run.output[-5000:]
    # rename-task is a flow: run by tidy-tasks, not a case; caption-review (tag handoff) pauses and keeps
    # its phone, so a plain run leaves it out (pytest.ini: xdist's summary does not count it as deselected)
    assert " 11 passed" in example_run.output
    assert "caption-review" not in example_run.output
    assert "created: 2/2 workers" in example_run.output  # -n auto: one worker per demo phone
    statuses = [json.loads(p.read_text())["status"] for p in example_run.results.glob("*-result.json")]
    assert statuses == ["passed"] * 11


@EXAMPLE_RUN
def test_example_suite_checkpoint_used_the_leads_approval(example_run: ExampleRun) -> None:
    """review-post passed its approve step on demo-lead's decision, and the audit log says so."""
    events = [json.loads(line) for line in (example_run.results / "sop-audit.jsonl").read_text().splitlines()]
    approvals = [e for e in events if e["event"] == "approval"]
    assert [(e["sop"], e["checkpoint"], e["decision"], e["by"]) for e in approvals] == [
        ("review-post", "announcement-ok", "approved", "demo-lead")
    ]
    assert {e["operator"] for e in events if e["event"] == "lease"} == {"demo-operator"}


def _example(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """pytest in the example suite, with a lock folder of its own (other tests lease its phones too)."""
    locks = ["-o", f"sop_lock_dir={tmp_path / 'locks'}"]
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *locks, *args],
                          cwd=ROOT / "example_suite", env={**EXAMPLE_PUBLISH_DELAY, **env}, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


def _env(**extra: str) -> dict[str, str]:
    drop = ("PYTEST_XDIST", "PYTEST_ADDOPTS", "SNAPGRAM_")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(drop)}, **extra}


def test_example_suite_on_a_busy_snapgram_port_is_a_usage_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = _example(tmp_path, "--collect-only", "-q", env=_env(SNAPGRAM_PORT=str(port)))
    assert run.returncode == 4, run.stdout + run.stderr
    assert "INTERNALERROR" not in run.stdout + run.stderr
    assert f"ERROR: the demo app's port SNAPGRAM_PORT={port} is in use: set another, or unset it for a free one" in (
        run.stderr
    )


def test_example_suite_serves_its_app_on_a_free_port(appium_url: str, tmp_path: Path) -> None:
    """8765, the port it once had fixed, taken by someone else: the suite's app goes elsewhere and a SOP passes."""
    with socket.socket() as other:
        with contextlib.suppress(OSError):  # already taken is as good
            other.bind(("127.0.0.1", 8765))
            other.listen()
        run = _example(tmp_path, "--sop", "--sop-appium", appium_url, "sops/sign-in.sop.yaml", "-v", env=_env())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    assert "1 passed" in run.stdout


def test_example_suite_uses_a_snapgram_already_running_on_its_port(appium_url: str, tmp_path: Path) -> None:
    """As scripts/demo-handoff has it: Snapgram outlives each run, and a run finds it on SNAPGRAM_PORT."""
    log = tmp_path / "snapgram.log"
    with log.open("w") as requests:
        app = subprocess.Popen([sys.executable, "-m", "pytest_sop.demo", "--port", "0", "--log-requests"],
                               stdout=subprocess.PIPE, stderr=requests, text=True, env=_env())  # fmt: skip
        try:
            assert app.stdout is not None
            ready = app.stdout.readline()  # "Snapgram on http://127.0.0.1:PORT/ ...", once it listens
            port = re.search(r"^Snapgram on http://127\.0\.0\.1:(\d+)/", ready)
            assert port is not None, ready
            run = _example(tmp_path, "--sop", "--sop-appium", appium_url, "sops/sign-in.sop.yaml", "-v",
                           env=_env(SNAPGRAM_PORT=port[1]))  # fmt: skip
        finally:
            app.terminate()
            app.wait(timeout=60)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    assert "1 passed" in run.stdout
    assert '"POST /login HTTP/1.1" 303' in log.read_text()  # signed in on that app, not one of its own
