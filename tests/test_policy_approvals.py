"""Policy (who may run what) and approval checkpoints (four eyes), through a real Appium server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_engine_fake import FAKE_CONFIG

from pytest_sop import approvals
from pytest_sop.errors import SopError

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
    # A paused case holds its device in the lock folder past the run: each test a folder of its own.
    pytester.makeini("[pytest]\nsop_lock_dir = locks\n")
    return pytester


def test_checkpoint_waits_then_passes_with_someone_elses_approval(suite: pytest.Pytester, appium_url: str) -> None:
    result = run(suite, appium_url, "bob")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*awaiting approval: caption-ok*"])
    pending = yaml.safe_load((suite.path / "sop-approvals.yaml").read_text())["pending"]
    assert [(p["sop"], p["checkpoint"], p["operator"]) for p in pending] == [("checked", "caption-ok", "bob")]

    cmd = [sys.executable, "-m", "pytest_sop", "approve", "checked", "caption-ok", "--by", "bob"]
    refused = subprocess.run(cmd, cwd=suite.path, capture_output=True, text=True)
    assert refused.returncode == 2 and "'bob' may not approve" in refused.stderr  # bob is no lead: refused
    run(suite, appium_url, "bob").assert_outcomes(skipped=1)
    approve(suite, "--by", "alice", "--note", "looks right")
    run(suite, appium_url, "bob").assert_outcomes(passed=1)
    run(suite, appium_url, "alice").assert_outcomes(skipped=1)  # four eyes: not her own run


def test_approval_by_an_approver_of_another_role_does_not_count(suite: pytest.Pytester, appium_url: str) -> None:
    """dave may approve, but as legal: the checkpoint asks for a lead."""
    path = suite.path / "sop-approvals.yaml"  # written by hand: approve refuses it
    approvals.record_decision(path, "checked", "caption-ok", by="dave", approve=True, note="legal says fine")
    result = run(suite, appium_url, "bob")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        ["*awaiting approval: caption-ok (dave's approval not counted: dave may not approve for role lead)*"]
    )


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


def test_approvals_file_keeps_decisions_and_pending_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "sop-approvals.yaml"
    assert approvals.read(path) == {"decisions": [], "pending": []}  # no file yet: nothing decided
    approvals.record_pending(path, "checked", "caption-ok", "cat", "bob")
    approvals.record_pending(path, "checked", "caption-ok", "cat", "bob")  # still waiting: one record
    approvals.record_pending(path, "checked", "caption-ok", "dog", "bob")
    approvals.record_pending(path, "checked", "other-checkpoint", "cat", "bob")
    pending = approvals.read(path)["pending"]
    assert [(p["sop"], p["checkpoint"], p["case"], p["operator"]) for p in pending] == [
        ("checked", "caption-ok", "cat", "bob"), ("checked", "caption-ok", "dog", "bob"),
        ("checked", "other-checkpoint", "cat", "bob"),
    ]  # fmt: skip
    assert all(p["since"].endswith("Z") for p in pending)

    cat = approvals.record_decision(path, "checked", "caption-ok", by="alice", approve=True, note="ok", case="cat")
    assert (cat.decision, cat.by, cat.note, cat.case) == (approvals.APPROVED, "alice", "ok", "cat")
    left = [(p["checkpoint"], p["case"]) for p in approvals.read(path)["pending"]]
    assert left == [("caption-ok", "dog"), ("other-checkpoint", "cat")]  # only what the decision answered
    approvals.record_decision(path, "checked", "caption-ok", by="alice", approve=False, note="blurry")
    assert [(p["checkpoint"], p["case"]) for p in approvals.read(path)["pending"]] == [("other-checkpoint", "cat")]
    approvals.record_decision(path, "checked", "other-checkpoint", by="carol", approve=True)
    first, second, third = approvals.decisions(path)
    assert first == cat
    assert (second.decision, second.by, second.note, second.case) == (approvals.REJECTED, "alice", "blurry", None)
    assert (third.decision, third.note) == (approvals.APPROVED, "")


def test_a_decision_written_by_hand_with_empty_fields(tmp_path: Path) -> None:
    path = tmp_path / "sop-approvals.yaml"
    path.write_text(
        "decisions:\n  - {sop: s, checkpoint: c, decision: approved, by: a, at: 2026, note: n, case: null}\n"
    )
    (decision,) = approvals.decisions(path)
    assert (decision.case, decision.at) == (None, "2026")  # no case: it answers every case
    assert approvals.find(path, "s", "c", "any-case", usable=lambda d: True) == decision


def test_the_latest_usable_decision_for_the_case_counts(tmp_path: Path) -> None:
    path = tmp_path / "sop-approvals.yaml"
    every = lambda d: True  # noqa: E731
    assert approvals.find(path, "checked", "caption-ok", "cat", usable=every) is None
    approvals.record_decision(path, "checked", "caption-ok", by="alice", approve=True, case="cat")
    approvals.record_decision(path, "checked", "caption-ok", by="carol", approve=False, case="dog")
    approvals.record_decision(path, "checked", "other", by="alice", approve=True)
    approvals.record_decision(path, "another-sop", "caption-ok", by="alice", approve=True)
    found = approvals.find(path, "checked", "caption-ok", "cat", usable=every)
    assert found is not None and (found.by, found.case) == ("alice", "cat")
    assert approvals.find(path, "checked", "caption-ok", "fish", usable=every) is None
    approvals.record_decision(path, "checked", "caption-ok", by="dave", approve=False)  # for every case
    found = approvals.find(path, "checked", "caption-ok", "cat", usable=every)
    assert found is not None and found.by == "dave"  # the latest wins
    found = approvals.find(path, "checked", "caption-ok", "cat", usable=lambda d: d.by != "dave")
    assert found is not None and found.by == "alice"  # unless it is not usable


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("decisions: [\n", "not a valid approvals file"),
        ("- just a list\n", "expected a mapping with 'decisions' and 'pending'"),
        (
            "decisions:\n  - {sop: s, checkpoint: c, decision: approved, by: a, at: t, colour: red}\n",
            "decision 1 is not",
        ),
    ],
)
def test_a_broken_approvals_file_is_an_error_naming_it(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "sop-approvals.yaml"
    path.write_text(text)
    with pytest.raises(SopError, match=re.escape(str(path)) + ".*" + re.escape(error)):
        approvals.decisions(path)
    assert path.read_text() == text
