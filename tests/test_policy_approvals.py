"""Policy (who may run what) and approval checkpoints (four eyes), through a real Appium server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from test_engine_fake import FAKE_CONFIG

POLICY = """\
accounts:  # us-1 first: a case that may use only eu-1 gets it from the policy, not the order
  - {id: us-1, role: publisher, tags: [us]}
  - {id: eu-1, role: publisher, tags: [eu]}
policy:
  roles:
    lead: {may_approve: true}
    legal: {may_approve: true}
    qa: {sops: ["tag:smoke"], accounts: ["tag:eu"]}
    ops: {sops: ["id:checked"]}
  operators: {alice: [lead, qa], bob: [qa], carol: [ops], dave: [legal]}
"""

CHECKED = """\
id: checked
tags: [smoke]
requires:
  account: {role: publisher}
steps:
  - type: {into: {id: username}, text: draft}
  - approve: {checkpoint: caption-ok, role: lead, note: Check the caption}
  - assert_text: {in: {id: username}, equals: draft}
"""


def run(pytester: pytest.Pytester, url: str, operator: str) -> pytest.RunResult:
    return pytester.runpytest("--sop", "--sop-appium", url, "--sop-operator", operator, "-rs")


def approve(pytester: pytest.Pytester, *args: str) -> None:
    cmd = [sys.executable, "-m", "pytest_sop", "approve", "checked", "caption-ok", *args]
    subprocess.run(cmd, cwd=pytester.path, check=True, capture_output=True)


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".yaml", sop=FAKE_CONFIG + POLICY)
    (pytester.path / "checked.sop.yaml").write_text(CHECKED)
    return pytester


def test_checkpoint_waits_then_passes_with_someone_elses_approval(suite: pytest.Pytester, appium_url: str) -> None:
    result = run(suite, appium_url, "bob")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*awaiting approval: caption-ok*"])
    pending = yaml.safe_load((suite.path / "sop-approvals.yaml").read_text())["pending"]
    assert [(p["sop"], p["checkpoint"], p["operator"]) for p in pending] == [("checked", "caption-ok", "bob")]

    approve(suite, "--by", "bob", "--note", "my own")  # bob is no lead: not usable
    run(suite, appium_url, "bob").assert_outcomes(skipped=1)
    approve(suite, "--by", "alice", "--note", "looks right")
    run(suite, appium_url, "bob").assert_outcomes(passed=1)
    run(suite, appium_url, "alice").assert_outcomes(skipped=1)  # four eyes: not her own run


def test_approval_by_an_approver_of_another_role_does_not_count(suite: pytest.Pytester, appium_url: str) -> None:
    """dave may approve, but as legal: the checkpoint asks for a lead."""
    approve(suite, "--by", "dave", "--note", "legal says fine")
    result = run(suite, appium_url, "bob")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*awaiting approval: caption-ok*"])


def test_approval_for_another_case_does_not_count(suite: pytest.Pytester, appium_url: str) -> None:
    approve(suite, "--by", "alice", "--case", "some-other-case", "--note", "not this one")
    run(suite, appium_url, "bob").assert_outcomes(skipped=1)
    approve(suite, "--by", "alice", "--case", "checked", "--note", "this one")  # the case id of a SOP without rows
    run(suite, appium_url, "bob").assert_outcomes(passed=1)


def test_rejection_fails_the_case(suite: pytest.Pytester, appium_url: str) -> None:
    approve(suite, "--by", "alice", "--reject", "--note", "caption is blurry")
    result = run(suite, appium_url, "bob")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*rejected by alice: caption is blurry*"])


def test_operators_outside_the_policy_run_nothing(suite: pytest.Pytester, appium_url: str) -> None:
    result = run(suite, appium_url, "mallory")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*not permitted: operator 'mallory' is not in the policy*"])


def test_role_limits_accounts(suite: pytest.Pytester, appium_url: str) -> None:
    """qa may use eu accounts only (us-1 comes first in the pool); ops may use any account."""
    approve(suite, "--by", "alice")
    for operator, account in (("bob", "eu-1"), ("carol", "us-1")):
        audit = suite.path / f"{operator}.jsonl"
        suite.runpytest(
            "--sop", "--sop-appium", appium_url, "--sop-operator", operator, f"--sop-audit={audit}"
        ).assert_outcomes(passed=1)
        leases = [json.loads(line) for line in audit.read_text().splitlines() if '"event":"lease"' in line]
        assert [lease["account"] for lease in leases] == [account]
    (suite.path / "other.sop.yaml").write_text("id: other\nsteps: [back]\n")
    result = run(suite, appium_url, "carol")
    result.stdout.fnmatch_lines(["*not permitted: 'carol' (roles ops) may not run SOP 'other'*"])
