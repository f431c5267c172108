"""The run's own promises under attack (issue 13): -n auto, the audit history, records checked
before the first lease, fixtures under the policy, interrupted cases, one run id per run.

Real pytest processes against a real Appium 3 server with the fake driver; each run has its own
lock folder, audit log and ledger.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from test_parallel import clean_env, fake_device, pytest_cmd, read_events, write_suite

from conftest import ctrl_c_reaches_children
from pytest_sop.audit import verify

NOTE_SOP = {"note.sop.yaml": "id: note\nsteps:\n  - note: on ${device.id}\n"}


def run(path: Path, appium_url: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    cmd = pytest_cmd("--sop-appium", appium_url, f"-o=sop_lock_dir={path / 'locks'}", "-rA", *args)
    return subprocess.run(
        cmd, cwd=path, env=clean_env(), capture_output=True, text=True, timeout=timeout
    )  # fmt: skip


def ledger_rows(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        return [(str(case), str(outcome)) for case, outcome in conn.execute("SELECT case_id, outcome FROM runs")]


# -- -n auto ------------------------------------------------------------------------------


def test_n_auto_starts_one_worker_per_device_even_with_more_devices_than_cores(tmp_path: Path, appium_url: str) -> None:
    """Five phones on this two-core machine: five workers, not xdist's CPU count."""
    write_suite(tmp_path, "devices:\n" + "".join(fake_device(f"phone-{i}") for i in range(5)), NOTE_SOP)
    proc = run(tmp_path, appium_url, "-n", "auto", "-v")  # -v: xdist says how many workers it made
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "created: 5/5 workers" in proc.stdout, proc.stdout


def test_workers_of_one_run_share_its_run_id(tmp_path: Path, appium_url: str) -> None:
    sops = {f"note-{i}.sop.yaml": f"id: note-{i}\nsteps:\n  - note: {i}\n" for i in range(4)}
    write_suite(tmp_path, "devices:\n" + fake_device("phone-a") + fake_device("phone-b"), sops)
    proc = run(tmp_path, appium_url, "-n", "2", f"--sop-audit={tmp_path / 'audit.jsonl'}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = read_events(tmp_path / "audit.jsonl")
    assert len({e["worker"] for e in events if e["event"] == "lease"}) == 2, events
    assert len({e["run"] for e in events}) == 1  # every line names its run, step and evidence lines too
    rows = sqlite3.connect(tmp_path / ".sop" / "ledger.sqlite").execute("SELECT DISTINCT run_id FROM runs").fetchall()
    assert rows == [(events[0]["run"],)]


# -- the audit history and --clean-alluredir -----------------------------------------------


def test_clean_alluredir_never_deletes_the_audit_history(tmp_path: Path, appium_url: str) -> None:
    write_suite(tmp_path, "devices:\n" + fake_device("phone-a"), NOTE_SOP)
    results = tmp_path / "allure-results"
    first = run(tmp_path, appium_url, f"--alluredir={results}")
    assert first.returncode == 0, first.stdout + first.stderr
    history = (results / "sop-audit.jsonl").read_bytes()
    assert b'"event":"outcome"' in history

    second = run(tmp_path, appium_url, f"--alluredir={results}", "--clean-alluredir")
    assert second.returncode == pytest.ExitCode.USAGE_ERROR, second.stdout + second.stderr
    assert "--clean-alluredir would delete the audit history" in second.stderr
    assert (results / "sop-audit.jsonl").read_bytes() == history

    # With the audit log kept elsewhere, cleaning the report folder is fine.
    third = run(tmp_path, appium_url, f"--alluredir={results}", "--clean-alluredir", "--sop-audit=audit.jsonl")
    assert third.returncode == 0, third.stdout + third.stderr
    assert not (results / "sop-audit.jsonl").exists() and verify(tmp_path / "audit.jsonl").ok


# -- records that cannot be written stop the run before the first lease --------------------


def _no_case_ran(proc: subprocess.CompletedProcess[str], path: Path, what: str) -> None:
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    assert "nothing was run" in proc.stderr and what in proc.stderr, proc.stderr
    assert "passed" not in proc.stdout and not (path / "locks").exists(), proc.stdout


def test_a_corrupt_ledger_stops_the_run_before_any_lease(tmp_path: Path, appium_url: str) -> None:
    write_suite(tmp_path, "devices:\n" + fake_device("phone-a"), NOTE_SOP)
    ledger = tmp_path / ".sop" / "ledger.sqlite"
    ledger.parent.mkdir()
    ledger.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    proc = run(tmp_path, appium_url, f"--sop-audit={tmp_path / 'audit.jsonl'}")
    _no_case_ran(proc, tmp_path, "run ledger")
    assert not (tmp_path / "audit.jsonl").exists()


def test_a_changed_audit_log_stops_the_run_before_any_lease(tmp_path: Path, appium_url: str) -> None:
    write_suite(tmp_path, "devices:\n" + fake_device("phone-a"), NOTE_SOP)
    audit = tmp_path / "audit.jsonl"
    first = run(tmp_path, appium_url, f"--sop-audit={audit}")
    assert first.returncode == 0, first.stdout + first.stderr
    audit.write_text(audit.read_text().replace('"outcome":"passed"', '"outcome":"failed"', 1))
    before = audit.read_bytes()
    (tmp_path / "locks").rename(tmp_path / "locks-first")
    proc = run(tmp_path, appium_url, f"--sop-audit={audit}")
    _no_case_ran(proc, tmp_path, f"audit log {audit} (line")
    assert audit.read_bytes() == before


def test_a_broken_approvals_file_stops_the_run_before_any_lease(tmp_path: Path, appium_url: str) -> None:
    write_suite(tmp_path, "devices:\n" + fake_device("phone-a"), NOTE_SOP)
    (tmp_path / "sop-approvals.yaml").write_text("decisions: [{sop: a\n")
    proc = run(tmp_path, appium_url)
    _no_case_ran(proc, tmp_path, "approvals file")


def test_an_unwritable_audit_log_stops_the_run_before_any_lease(tmp_path: Path, appium_url: str) -> None:
    write_suite(tmp_path, "devices:\n" + fake_device("phone-a"), NOTE_SOP)
    (tmp_path / "audit.jsonl").mkdir()  # root writes through modes; a folder in the file's place stops anyone
    proc = run(tmp_path, appium_url, f"--sop-audit={tmp_path / 'audit.jsonl'}")
    _no_case_ran(proc, tmp_path, "audit log")


# -- the sop_* fixtures are governed and recorded like cases ------------------------------

POLICY_SUITE = (
    "devices:\n" + fake_device("phone-a") + "    tags: [lab]\n" + fake_device("phone-b") + "accounts:\n"
    "  - id: shop-1\n    role: shopper\n    fields: {name: one}\n"
    "  - id: admin-1\n    role: admin\n    fields: {name: root}\n"
    "policy:\n"
    "  roles:\n"
    "    qa: {sops: ['*'], devices: ['tag:lab'], accounts: ['role:shopper']}\n"
    "  operators: {alice: [qa]}\n"
)

FIXTURE_TESTS = """
import pytest

@pytest.mark.sop(device={"id": "phone-a"}, account={"role": "shopper"})
def test_allowed(sop_device, sop_account):
    assert (sop_device.id, sop_account.id) == ("phone-a", "shop-1")

@pytest.mark.sop(device={"id": "phone-b"})
def test_device_outside_the_role(sop_device):
    raise AssertionError("leased a device the policy keeps from qa")

@pytest.mark.sop(device={"id": "phone-a"}, account={"role": "admin"})
def test_account_outside_the_role(sop_account):
    raise AssertionError("leased an account the policy keeps from qa")
"""


def test_fixtures_obey_the_policy_and_are_audited_and_in_the_ledger(tmp_path: Path, appium_url: str) -> None:
    write_suite(tmp_path, POLICY_SUITE, {"test_fixtures_policy.py": FIXTURE_TESTS})
    audit = tmp_path / "audit.jsonl"
    proc = run(tmp_path, appium_url, "--sop-operator=alice", f"--sop-audit={audit}", "test_fixtures_policy.py")
    out = proc.stdout
    assert "1 passed, 2 skipped" in out, out
    assert out.count("not permitted: 'alice' may not use the devices and accounts this test asks for") == 2, out

    events = read_events(audit)
    allowed = "test_fixtures_policy.py::test_allowed"
    assert [e["event"] for e in events if e["case"] == allowed] == ["lease", "outcome", "release"]
    lease = next(e for e in events if e["event"] == "lease")
    assert (lease["device"], lease["account"], lease["operator"]) == ("phone-a", "shop-1", "alice")
    assert {e["event"] for e in events if e["case"] != allowed} == {"outcome"}
    rows = dict(ledger_rows(tmp_path / ".sop" / "ledger.sqlite"))
    assert rows[allowed] == "passed"
    assert rows["test_fixtures_policy.py::test_device_outside_the_role"] == "skipped"

    nobody = run(tmp_path, appium_url, "--sop-operator=mallory", "test_fixtures_policy.py")
    assert "3 skipped" in nobody.stdout and "operator 'mallory' is not in the policy" in nobody.stdout, nobody.stdout


# -- an interrupted case still has an outcome, a ledger row and a release ------------------


def test_ctrl_c_mid_case_records_the_outcome_and_releases_the_device(tmp_path: Path, appium_url: str) -> None:
    write_suite(tmp_path, "devices:\n" + fake_device("phone-a"), {"slow.sop.yaml": "id: slow\nsteps:\n  - wait: 60\n"})
    audit = tmp_path / "audit.jsonl"
    cmd = pytest_cmd("--sop-appium", appium_url, f"-o=sop_lock_dir={tmp_path / 'locks'}", f"--sop-audit={audit}")
    with ctrl_c_reaches_children():
        proc = subprocess.Popen(
            cmd, cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    try:
        deadline = time.monotonic() + 60
        while not any(e["event"] == "step_start" for e in read_events(audit)):
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[0]
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    events = read_events(audit)
    outcome = [e for e in events if e["event"] == "outcome"]
    assert [(e["phase"], e["outcome"]) for e in outcome] == [("call", "interrupted")], events
    assert [e["event"] for e in events][-2:] == ["outcome", "release"]
    assert ledger_rows(tmp_path / ".sop" / "ledger.sqlite") == [("slow.sop.yaml::slow", "broken")]
    assert verify(audit).ok


DAMAGE_AUDIT = """
from pytest_sop import ActionSpec


def damage(ctx) -> None:
    # An internal failure in the middle of a case: the audit log's head stops matching.
    with open(ctx.recorder.sinks[-1].log.head_path, "w") as head:
        head.write("garbage")


def pytest_sop_actions():
    return [ActionSpec("damage_audit", "Break the audit log's head file.", shape="none", run=damage)]
"""


def test_an_internal_error_mid_case_fails_it_and_still_records_and_releases(tmp_path: Path, appium_url: str) -> None:
    sops = {"conftest.py": DAMAGE_AUDIT, "hurt.sop.yaml": "id: hurt\nsteps:\n  - damage_audit\n  - note: after\n"}
    write_suite(tmp_path, "devices:\n" + fake_device("phone-a"), sops)
    proc = run(tmp_path, appium_url, f"--sop-audit={tmp_path / 'audit.jsonl'}")
    out = proc.stdout + proc.stderr
    assert "INTERNALERROR" not in out and proc.returncode == pytest.ExitCode.TESTS_FAILED, out
    assert "passed" not in out.splitlines()[-1], out
    assert ("hurt.sop.yaml::hurt", "broken") in ledger_rows(tmp_path / ".sop" / "ledger.sqlite"), out
    # The phone is free again: another run takes it without waiting.
    (tmp_path / "hurt.sop.yaml").unlink()
    (tmp_path / "conftest.py").unlink()
    write_suite(tmp_path, "devices:\n" + fake_device("phone-a"), NOTE_SOP)
    again = run(tmp_path, appium_url, f"--sop-audit={tmp_path / 'audit-2.jsonl'}", "--sop-lease-timeout=0")
    assert again.returncode == 0, again.stdout + again.stderr
