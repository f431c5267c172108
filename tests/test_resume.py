"""Pause and resume on the fake driver, through a real Appium 3 server, each run a real pytest process.

A case that stops at an approve checkpoint keeps its device and account (a hold in the lease
records), and ``pytest --sop --sop-resume`` continues it from there, on the same device and
account, with its saved vars, once the decision is in.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from test_engine_fake import APP

from pytest_sop.appium_server import ManagedAppium, open_sessions

POLICY = """\
accounts:
  - {id: eu-1, role: publisher}
policy:
  roles:
    lead: {may_approve: true}
    qa: {sops: ["*"]}
  operators: {alice: [lead, qa], bob: [qa]}
"""

# type and save_text run before the pause; the steps after it use what was saved.
CHECKED = """\
id: checked
requires:
  account: {role: publisher}
steps:
  - type: {into: {id: username}, text: draft}
  - save_text: {from: {id: username}, as: who}
  - approve: {checkpoint: caption-ok, role: lead, note: Check the caption}
  - type: {into: {id: password}, text: "${vars.who}-after"}
  - assert_text: {in: {id: password}, equals: draft-after}
"""

OTHER = "id: other\nsteps:\n  - assert_visible: {id: username}\n"


def devices(*ids: str) -> str:
    entries = "".join(
        f"  - id: {d}\n    platform: fake\n    capabilities:\n      platformName: Fake\n"
        f"      appium:automationName: Fake\n      appium:app: {APP}\n"
        for d in ids
    )
    return "devices:\n" + entries


def make_suite(folder: Path, sops: dict[str, str], config: str | None = None) -> Path:
    (folder / "sop.yaml").write_text(config or devices("fake-phone") + POLICY)
    (folder / "pytest.ini").write_text("[pytest]\nsop_lock_dir = locks\n")
    for name, text in sops.items():
        (folder / name).write_text(text)
    return folder


def run(folder: Path, url: str, *args: str, operator: str = "bob", timeout: float = 600) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "pytest", "--sop", "--sop-appium", url, "--sop-operator", operator,
           "-p", "no:cacheprovider", "-rs", "--sop-audit=audit.jsonl", "--alluredir=allure", *args]  # fmt: skip
    proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_sop", *args], cwd=folder, capture_output=True, text=True, timeout=120
    )


def audit(folder: Path) -> list[dict[str, Any]]:
    path = folder / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_ids(folder: Path) -> list[str]:
    return list(dict.fromkeys(e["run"] for e in audit(folder) if e["event"] == "lease"))


def steps_of_run(folder: Path, run_id: str) -> list[str]:
    return [e["step"] for e in audit(folder) if e["event"] == "step_start" and e["run"] == run_id]


def paused(folder: Path) -> list[dict[str, Any]]:
    listed = cli(folder, "handoff", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return list(json.loads(listed.stdout))


def leases(folder: Path) -> str:
    shown = cli(folder, "leases")
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def approve(folder: Path, *args: str) -> None:
    done = cli(folder, "approve", "checked", "caption-ok", "--by", "alice", *args)
    assert done.returncode == 0, done.stderr


def pause(folder: Path, url: str, *args: str) -> dict[str, Any]:
    code, out = run(folder, url, *args)
    assert code == 0 and "awaiting approval: caption-ok" in out, out
    (record,) = paused(folder)
    return record


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    return make_suite(tmp_path, {"checked.sop.yaml": CHECKED, "other.sop.yaml": OTHER})


def test_paused_case_keeps_its_device_and_goes_on_from_the_pause(suite: Path, appium_url: str) -> None:
    record = pause(suite, appium_url, "checked.sop.yaml")
    assert (record["sop"], record["case"], record["device"], record["account"]) == (
        "checked", "checked", "fake-phone", "eu-1"
    )  # fmt: skip
    assert record["waiting_for"] == "approval caption-ok (role lead)" and record["vars"] == ["who"]
    # The pausing process is gone; its hold is not.
    table = leases(suite)
    assert "device   fake-phone  hold   checked.sop.yaml::checked" in table, table
    assert "waiting for approval caption-ok (role lead)" in table

    # Another case (another run) may not take the held device: the timeout names the hold.
    code, out = run(suite, appium_url, "other.sop.yaml", "--sop-lease-timeout=0.5")
    assert code != 0 and "on hold" in out and "paused case checked.sop.yaml::checked" in out, out

    # No decision yet: nothing to resume.
    code, out = run(suite, appium_url, "--sop-resume")
    assert code == 5 and "2 deselected" in out, out
    assert paused(suite)

    approve(suite, "--note", "fine")
    code, out = run(suite, appium_url, "--sop-resume", "-v")
    assert code == 0 and "checked.sop.yaml::checked PASSED" in out and "1 passed, 1 deselected" in out, out

    pause_run, resume_run = run_ids(suite)[0], run_ids(suite)[-1]
    lease = next(e for e in audit(suite) if e["event"] == "lease" and e["run"] == resume_run)
    # Same device and account, and the audit log links the two runs.
    assert (lease["device"], lease["account"], lease["resumes_run"]) == ("fake-phone", "eu-1", pause_run)
    # Nothing before the pause was sent again: the resume starts at the checkpoint.
    before = steps_of_run(suite, pause_run)
    after = steps_of_run(suite, resume_run)
    assert [s.split(" ")[0] for s in before] == ["type", "save_text", "approve"]
    assert after[0] == f"resumed at approval caption-ok (role lead) (earlier steps ran in run {pause_run})"
    assert [s.split(" ")[0] for s in after[1:]] == ["approve", "type", "assert_text"]
    assert after[2] == "type into={id: password} text='draft-after'"  # the saved var reached it

    # The hold ended with the case.
    assert paused(suite) == []
    assert " hold " not in leases(suite)
    assert run(suite, appium_url, "other.sop.yaml")[0] == 0

    # Allure: the same case continued (one history id), linked to the pause's result, with the decision.
    results = [json.loads(p.read_text()) for p in (suite / "allure").glob("*-result.json")]
    mine = sorted((r for r in results if r["name"] == "checked"), key=lambda r: r["start"])
    assert [r["status"] for r in mine] == ["skipped", "passed"]
    assert mine[0]["historyId"] == mine[1]["historyId"]
    links = [(link["name"], link["url"]) for link in mine[1]["links"] if link["url"].endswith("-result.json")]
    assert links == [(f"paused run {pause_run}", f"{mine[0]['uuid']}-result.json")]
    labels = {(label["name"], label["value"]) for label in mine[1]["labels"]}
    assert ("approved_by", "alice") in labels


@pytest.mark.parametrize("ending", ["rejected", "failed", "broken"])
def test_the_hold_ends_when_the_resumed_case_ends(suite: Path, appium_url: str, ending: str) -> None:
    sop = CHECKED
    if ending == "failed":
        sop = CHECKED.replace("equals: draft-after", "equals: something-else") + "    timeout: 0.2\n"
    elif ending == "broken":
        sop = CHECKED + "  - tap: {uiautomator: 'new UiSelector()'}\n"
    (suite / "checked.sop.yaml").write_text(sop)
    pause(suite, appium_url, "checked.sop.yaml")
    approve(suite, *(["--reject", "--note", "blurry"] if ending == "rejected" else []))
    code, out = run(suite, appium_url, "--sop-resume")
    assert code == 1, out
    if ending == "rejected":
        assert "1 failed" in out and "rejected by alice: blurry" in out, out
    elif ending == "failed":
        assert "1 failed" in out and "expected it to equal 'something-else'" in out, out
    else:
        assert "1 failed" in out and "uiautomator locators work on Android only" in out, out
    assert paused(suite) == []
    assert " hold " not in leases(suite)
    assert run(suite, appium_url, "other.sop.yaml", "--sop-lease-timeout=0")[0] == 0


def test_an_edited_sop_is_not_resumed_and_its_hold_is_released(suite: Path, appium_url: str) -> None:
    pause(suite, appium_url, "checked.sop.yaml")
    approve(suite)
    (suite / "checked.sop.yaml").write_text(CHECKED + "  - note: added later\n")
    code, out = run(suite, appium_url, "--sop-resume")
    assert code == 1 and "SOP changed since it paused at caption-ok" in out and "1 error" in out, out
    assert paused(suite) == []
    assert " hold " not in leases(suite)
    assert run(suite, appium_url, "other.sop.yaml", "--sop-lease-timeout=0")[0] == 0


def test_an_expired_hold_frees_the_device_and_is_not_resumed(suite: Path, appium_url: str) -> None:
    pause(suite, appium_url, "checked.sop.yaml", "-o", "sop_hold_timeout=1")
    deadline = time.monotonic() + 60
    while paused(suite)[0]["state"] != "expired":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert " hold " not in leases(suite)
    assert run(suite, appium_url, "other.sop.yaml", "--sop-lease-timeout=0")[0] == 0
    approve(suite)
    code, out = run(suite, appium_url, "--sop-resume")
    assert code == 1 and "the hold of this paused case expired" in out, out
    assert paused(suite) == []


def test_a_released_hold_frees_the_device_and_nothing_resumes(suite: Path, appium_url: str) -> None:
    pause(suite, appium_url, "checked.sop.yaml")
    released = cli(suite, "handoff", "release", "checked", "--by", "alice")
    assert released.returncode == 0 and "released: checked [checked] on fake-phone with eu-1" in released.stdout
    (line,) = [e for e in audit(suite) if e["event"] == "hold_released"]
    assert (line["operator"], line["paused_run"]) == ("alice", run_ids(suite)[0])
    assert cli(suite, "audit", "verify", "audit.jsonl").returncode == 0
    assert paused(suite) == []
    assert " hold " not in leases(suite)
    assert run(suite, appium_url, "other.sop.yaml", "--sop-lease-timeout=0")[0] == 0
    approve(suite)
    code, out = run(suite, appium_url, "--sop-resume")
    assert code == 5, out  # nothing paused: nothing collected
    # Released again: refused, nothing is paused.
    assert cli(suite, "handoff", "release", "checked", "--by", "alice").returncode == 2


def test_run_again_without_resume_starts_over_on_the_held_device(suite: Path, appium_url: str) -> None:
    """A paused case run again from the start takes its own hold over: the old pause is over."""
    pause(suite, appium_url, "checked.sop.yaml")
    code, out = run(suite, appium_url, "checked.sop.yaml")
    assert code == 0 and "awaiting approval: caption-ok" in out, out
    (record,) = paused(suite)  # a new pause, not a second one
    pause_runs = run_ids(suite)
    assert len(pause_runs) == 2 and record["run_id"] == pause_runs[1]
    lease = next(e for e in audit(suite) if e["event"] == "lease" and e["run"] == pause_runs[1])
    assert lease["paused_run"] == pause_runs[0]
    assert [s.split(" ")[0] for s in steps_of_run(suite, pause_runs[1])] == ["type", "save_text", "approve"]


def test_resume_with_two_workers_over_several_paused_cases(tmp_path: Path, appium_url: str) -> None:
    config = devices("fake-a", "fake-b", "fake-c") + POLICY.replace("accounts:\n  - {id: eu-1, role: publisher}\n", "")
    sop = (
        CHECKED.replace("requires:\n  account: {role: publisher}\n", "")
        + "inputs:\n"
        + "".join(f"  - {{id: row{i}}}\n" for i in range(3))
    )
    suite = make_suite(tmp_path, {"checked.sop.yaml": sop}, config)
    code, out = run(suite, appium_url, "-n", "2")
    assert "3 skipped" in out, out
    held = {r["case"]: r["device"] for r in paused(suite)}
    assert sorted(held) == ["row0", "row1", "row2"] and sorted(held.values()) == ["fake-a", "fake-b", "fake-c"]
    approve(suite)
    code, out = run(suite, appium_url, "--sop-resume", "-n", "2")
    assert code == 0 and "3 passed" in out, out
    resume_run = run_ids(suite)[-1]
    resumed = {
        e["case"].split("[")[1].rstrip("]"): e["device"]
        for e in audit(suite) if e["event"] == "lease" and e["run"] == resume_run
    }  # fmt: skip
    assert resumed == held  # each on the device it paused on
    assert paused(suite) == []


def test_a_killed_resume_keeps_the_hold_and_resuming_again_works(tmp_path: Path, own_appium: ManagedAppium) -> None:
    # A long wait: the window to kill the run in, however late this host notices the step began.
    sop = CHECKED.replace("  - assert_text:", "  - wait: 15\n  - assert_text:")
    suite = make_suite(tmp_path, {"checked.sop.yaml": sop, "other.sop.yaml": OTHER})
    pause(suite, own_appium.url, "checked.sop.yaml")
    approve(suite)
    cmd = [sys.executable, "-m", "pytest", "--sop", "--sop-appium", own_appium.url, "--sop-operator", "bob",
           "-p", "no:cacheprovider", "--sop-audit=audit.jsonl", "--sop-resume"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=suite, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not any(e["event"] == "step_start" and e["step"].startswith("wait") for e in audit(suite)):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    for session in open_sessions(own_appium.url):  # what the killed run left open on the server
        req = urllib.request.Request(f"{own_appium.url}/session/{session['id']}", method="DELETE")
        urllib.request.urlopen(req, timeout=30).close()
    # Not a free device with a half-done case: still held, still paused.
    assert "device   fake-phone  hold" in leases(suite)
    assert len(paused(suite)) == 1
    code, out = run(suite, own_appium.url, "other.sop.yaml", "--sop-lease-timeout=0")
    assert code != 0 and "on hold" in out, out
    code, out = run(suite, own_appium.url, "--sop-resume")
    assert code == 0 and "1 passed" in out, out
    assert paused(suite) == [] and " hold " not in leases(suite)


def test_a_var_holding_a_secret_is_never_written_into_the_pause(
    tmp_path: Path, appium_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cret-Pass/word"
    config = devices("fake-phone") + POLICY.replace(
        "{id: eu-1, role: publisher}", "{id: eu-1, role: publisher, fields: {password: {env: RESUME_TEST_PW}}}"
    )
    sop = CHECKED.replace("text: draft}", 'text: "${account.password}"}').replace(
        '"${vars.who}-after"', '"${vars.who}"'
    )
    suite = make_suite(tmp_path, {"checked.sop.yaml": sop}, config)
    monkeypatch.setenv("RESUME_TEST_PW", secret)
    pause(suite, appium_url, "checked.sop.yaml")
    (record_file,) = (suite / ".sop" / "holds").glob("*.json")
    record = json.loads(record_file.read_text())
    assert record["vars"] == {} and record["withheld_vars"] == ["who"]
    assert secret not in record_file.read_text()
    approve(suite)
    code, out = run(suite, appium_url, "--sop-resume")
    assert code == 1 and "${vars.who} held a secret, which a pause never keeps" in out, out
    assert secret not in out
