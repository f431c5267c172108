"""Pause and resume on Chromium (Appium's Chromium driver) with the demo app: a web demo phone keeps
its browser profile like a phone keeps app data, and the case comes back to the page it paused on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_sop.demo import DEMO_PASSWORDS, PORT_ENV, DemoServer, demo_accounts, serve

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """\
apps:
  snapgram:
    url: http://127.0.0.1:${env.SNAPGRAM_PORT}/
    capabilities: {}
devices:
  - id: web-phone
    platform: web
    capabilities:
      platformName: linux
      browserName: chrome
      appium:automationName: Chromium
      appium:executable: /usr/bin/chromedriver
      appium:autodownloadEnabled: false
      goog:chromeOptions:
        binary: /usr/bin/chromium
        args: [--headless=new, --no-sandbox, --disable-gpu, --disable-dev-shm-usage, --no-first-run,
               --disable-background-networking, --disable-component-update, --disable-sync]
        mobileEmulation: {deviceName: Pixel 7}
accounts:
  - id: publisher-1
    role: publisher
    fields: {username: pub1, password: {env: SNAPGRAM_PUB1_PASSWORD}}
policy:
  roles: {lead: {may_approve: true}, publisher: {sops: ["*"]}}
  operators: {operator: [publisher], lead: [lead]}
"""
# The caption is typed, then the case waits for a lead; after the resume it must still be there.
DRAFT = """\
id: draft
app: snapgram
requires:
  account: {role: publisher}
steps:
  - launch_app
  - type: {into: {id: username}, text: "${account.username}"}
  - type: {into: {id: password}, text: "${account.password}"}
  - tap: {id: sign-in}
  - tap: {id: compose}
  - type: {into: {id: caption}, text: Cat of the day}
  - approve: {checkpoint: caption-ok, role: lead, note: Check the caption}
  - assert_text: {in: {id: caption}, equals: Cat of the day}
  - tap: {id: publish}
  - wait_for: {id: post-published}
    timeout: 15
"""


@pytest.fixture
def snapgram() -> Iterator[DemoServer]:
    server = serve(port=0, accounts=demo_accounts())
    yield server
    server.close()


def run(folder: Path, url: str, port: int, *args: str, operator: str = "operator") -> tuple[int, str]:
    env = {**os.environ, **DEMO_PASSWORDS, PORT_ENV: str(port)}
    cmd = [sys.executable, "-m", "pytest", "--sop", "--sop-appium", url, "--sop-operator", operator,
           "-p", "no:cacheprovider", "-rs", "-v", "--sop-audit=audit.jsonl", *args]  # fmt: skip
    proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def test_what_was_typed_before_the_pause_is_on_the_page_after_the_resume(
    tmp_path: Path, appium_url: str, snapgram: DemoServer
) -> None:
    (tmp_path / "sop.yaml").write_text(CONFIG)
    (tmp_path / "pytest.ini").write_text("[pytest]\nsop_lock_dir = locks\n")
    (tmp_path / "draft.sop.yaml").write_text(DRAFT)
    code, out = run(tmp_path, appium_url, snapgram.port)
    assert code == 0 and "awaiting approval: caption-ok" in out, out
    record = json.loads(next((tmp_path / ".sop" / "holds").glob("*.json")).read_text())
    assert record["url"].endswith("/compose")  # the page it paused on
    assert (tmp_path / ".sop" / "browser" / "web-phone").is_dir()  # the device's own profile

    approved = subprocess.run(
        [sys.executable, "-m", "pytest_sop", "approve", "draft", "caption-ok", "--by", "lead"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert approved.returncode == 0, approved.stderr
    code, out = run(tmp_path, appium_url, snapgram.port, "--sop-resume")
    assert code == 0 and "draft.sop.yaml::draft PASSED" in out, out
    # Not signed in again, not typed again: the resume went on from the checkpoint.
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    runs = list(dict.fromkeys(e["run"] for e in lines if e["event"] == "lease"))
    resumed = [e["step"].split(" ")[0] for e in lines if e["event"] == "step_start" and e["run"] == runs[-1]]
    assert resumed == ["resumed", "approve", "assert_text", "tap", "wait_for"]
