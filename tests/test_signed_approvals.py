"""Signed approvals under attack (issue 8): a decision counts only when its approver signed it.

Real keys made by ssh-keygen; ``pytest-sop approve`` as a real subprocess; approval
checkpoints run through real pytest runs with the fake driver on a real Appium server. The
attacker here can write the approvals file (it is plain YAML) and holds a key of their own,
or another operator's, but not alice's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_engine_fake import FAKE_CONFIG
from test_signing import make_key, write_signers

from pytest_sop import approvals

POLICY = """\
policy:
  signers: allowed_signers
  require_signatures: {require}
  roles:
    lead: {{may_approve: true}}
    legal: {{may_approve: true}}
    qa: {{}}
  operators: {{alice: [lead, qa], bob: [qa], carol: [lead, qa], dave: [legal]}}
"""

CHECKED = """\
id: checked
steps:
  - note: before the checkpoint
  - approve: {checkpoint: caption-ok, role: lead, note: Check the caption}
  - note: after the checkpoint
"""

# The checkpoint lives in a SOP that another one runs.
OUTER = """\
id: outer
steps:
  - run: checked
"""

WAITING = "*awaiting approval: caption-ok ({})*"


class Suite:
    """A suite folder whose policy names alice, bob, carol and dave's keys; mallory's is not in it."""

    def __init__(self, pytester: pytest.Pytester, keys: Path, url: str, *, require: bool = True) -> None:
        self.pytester = pytester
        self.path = pytester.path
        self.url = url
        self.key = {name: make_key(keys, name) for name in ("alice", "bob", "carol", "dave", "mallory")}
        write_signers(self.path / "allowed_signers", {n: self.key[n] for n in ("alice", "bob", "carol", "dave")})
        (self.path / "sop.yaml").write_text(FAKE_CONFIG + POLICY.format(require=str(require).lower()))
        (self.path / "checked.sop.yaml").write_text(CHECKED)
        (self.path / "outer.sop.yaml").write_text(OUTER)
        # A paused case holds its device in the lock folder past the run: each test a folder of its own.
        pytester.makeini("[pytest]\nsop_lock_dir = locks\n")

    @property
    def approvals(self) -> Path:
        return self.path / "sop-approvals.yaml"

    @property
    def audit(self) -> Path:
        return self.path / "audit.jsonl"

    def approve(self, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
        """``pytest-sop approve ARGS`` in the suite folder, with ``key``'s file as SOP_SIGNING_KEY if given."""
        env = {k: v for k, v in os.environ.items() if k != "SOP_SIGNING_KEY"}
        if key is not None:
            env["SOP_SIGNING_KEY"] = str(self.key[key])
        cmd = [sys.executable, "-m", "pytest_sop", "approve", *args]
        return subprocess.run(cmd, cwd=self.path, env=env, capture_output=True, text=True, timeout=120)

    def run(self, operator: str, sop: str = "checked.sop.yaml") -> pytest.RunResult:
        """A signed run of ``sop`` by ``operator`` (their own key), recording Allure results and audit lines."""
        return self.pytester.runpytest(
            "--sop", "--sop-appium", self.url, "--sop-operator", operator, f"--sop-signing-key={self.key[operator]}",
            f"--sop-audit={self.audit}", "--alluredir", str(self.path / "allure"), "-rs", sop,
        )  # fmt: skip

    def forge(self, by: str, key: str | None, for_case: str | None = None, **changes: str | None) -> None:
        """Write a decision into the approvals file as an attacker can: by hand, or signed with ``key``,
        then edited by hand (``changes``)."""
        sha = approvals.file_sha256(str(self.path / "checked.sop.yaml"))
        approvals.record_decision(
            self.approvals, "checked", "caption-ok", by=by, approve=True, note="forged", sop_sha256=sha, case=for_case,
            key=str(self.key[key]) if key else None,
        )  # fmt: skip
        if changes:
            data = yaml.safe_load(self.approvals.read_text())
            data["decisions"][-1].update(changes)
            self.approvals.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture
def suite(pytester: pytest.Pytester, tmp_path: Path, appium_url: str) -> Suite:
    return Suite(pytester, tmp_path, appium_url)


# -- approve refuses, and writes nothing ------------------------------------------------------

REFUSALS = [
    pytest.param(["nosuch", "caption-ok", "--by", "alice"], "alice", "unknown SOP 'nosuch'", id="unknown-sop"),
    pytest.param(
        ["checked", "nope", "--by", "alice"],
        "alice",
        "has no approve step with checkpoint 'nope'",
        id="unknown-checkpoint",
    ),
    pytest.param(
        ["checked", "caption-ok", "--by", "bob"],
        "bob",
        "'bob' may not approve checkpoint 'caption-ok'",
        id="no-may-approve",
    ),
    pytest.param(
        ["checked", "caption-ok", "--by", "dave"],
        "dave",
        "no may_approve for role 'lead'",
        id="approver-of-another-role",
    ),
    pytest.param(
        ["checked", "caption-ok", "--by", "mallory"], "mallory", "'mallory' may not approve", id="not-in-policy"
    ),
    pytest.param(
        ["checked", "caption-ok", "--by", "alice"], "bob", "signed with bob's key, not alice's", id="anothers-key"
    ),
    pytest.param(
        ["checked", "caption-ok", "--by", "alice"], "mallory", "not in the signers file", id="key-not-in-signers"
    ),
    pytest.param(["checked", "caption-ok", "--by", "alice"], None, "require_signatures is true", id="no-key"),
    pytest.param(
        ["checked", "caption-ok", "--by", "alice", "--config", "missing.yaml"],
        "alice",
        "no suite config missing.yaml",
        id="no-config",
    ),
]


@pytest.mark.parametrize(("args", "key", "why"), REFUSALS)
def test_approve_refuses_with_exit_2_and_writes_nothing(
    pytester: pytest.Pytester, tmp_path: Path, args: list[str], key: str | None, why: str
) -> None:
    suite = Suite(pytester, tmp_path, "unused")
    proc = suite.approve(*args, key=key)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert why in proc.stderr, proc.stderr
    assert not suite.approvals.exists(), suite.approvals.read_text()
    assert not list(suite.path.glob("sop-approvals.yaml*")), "a temporary or lock file was left"

    before = b"decisions: []\npending:\n- {sop: checked, checkpoint: caption-ok, case: checked, operator: bob}\n"
    suite.approvals.write_bytes(before)
    proc = suite.approve(*args, key=key)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert suite.approvals.read_bytes() == before  # byte for byte: not even rewritten


def test_a_key_that_cannot_sign_is_refused(pytester: pytest.Pytester, tmp_path: Path) -> None:
    suite = Suite(pytester, tmp_path, "unused")
    locked = make_key(tmp_path, "alice-locked", passphrase="secret-pass")
    write_signers(suite.path / "allowed_signers", {"alice": locked})
    suite.key["alice"] = locked
    proc = suite.approve("checked", "caption-ok", "--by", "alice", key="alice")
    assert proc.returncode == 2 and "cannot sign" in proc.stderr, proc.stderr
    assert "secret-pass" not in proc.stderr + proc.stdout
    assert not suite.approvals.exists()


# -- what counts ------------------------------------------------------------------------------


def allure_approvals(path: Path) -> list[str]:
    """The text of every ``approval ...`` attachment in the Allure results."""
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        for a in node.get("attachments", []):
            if a["name"].startswith("approval "):
                found.append((path / a["source"]).read_text())
        for step in node.get("steps", []):
            walk(step)

    for result in path.glob("*-result.json"):
        walk(json.loads(result.read_text()))
    return found


def audit_events(path: Path, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [line for line in lines if line.get("event") == event]


def test_a_signed_approval_counts_and_the_record_says_by_which_key(suite: Suite) -> None:
    proc = suite.approve("checked", "caption-ok", "--by", "alice", "--note", "looks right", key="alice")
    assert proc.returncode == 0, proc.stderr
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(suite.key["alice"])], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    (entry,) = yaml.safe_load(suite.approvals.read_text())["decisions"]
    assert entry["fingerprint"] == fingerprint
    assert entry["signature"].startswith("-----BEGIN SSH SIGNATURE-----")
    assert entry["sop_sha256"] == approvals.file_sha256(str(suite.path / "checked.sop.yaml"))

    suite.run("bob").assert_outcomes(passed=1)
    (shown,) = allure_approvals(suite.path / "allure")
    assert shown.startswith(f"approved by alice at {entry['at']} (signed with {fingerprint}): looks right")
    (event,) = audit_events(suite.audit, "approval")
    assert (event["by"], event["signed"], event["fingerprint"]) == ("alice", True, fingerprint)


def test_an_approval_stops_counting_when_the_sop_file_changes(suite: Suite) -> None:
    assert suite.approve("checked", "caption-ok", "--by", "alice", key="alice").returncode == 0
    suite.run("bob").assert_outcomes(passed=1)
    sop = suite.path / "checked.sop.yaml"
    sop.write_text(sop.read_text().replace("after the checkpoint", "after the checkpoint, then publish"))
    result = suite.run("bob")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([WAITING.format("alice's approval not counted: SOP changed since")])
    (event,) = audit_events(suite.audit, "approval_pending")[-1:]
    assert event["not_counted"] == "alice's approval not counted: SOP changed since"

    assert suite.approve("checked", "caption-ok", "--by", "carol", key="carol").returncode == 0  # taken anew
    suite.run("bob").assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("forge", "operator", "why"),
    [
        pytest.param(
            lambda s: s.forge("alice", None), "bob", "alice's approval not counted: not signed", id="hand-written"
        ),
        pytest.param(
            lambda s: s.forge("alice", "mallory"),
            "bob",
            "alice's approval not counted: signed with a key that is not in the signers file",
            id="key-not-in-signers",
        ),
        pytest.param(
            lambda s: s.forge("alice", "carol"),
            "bob",
            "alice's approval not counted: signed with carol's key, not alice's",
            id="right-name-wrong-key",
        ),
        pytest.param(
            lambda s: s.forge("alice", "alice", note="edited afterwards"),
            "bob",
            "alice's approval not counted: the signature does not match what was signed (changed since)",
            id="signed-entry-edited",
        ),
        pytest.param(
            lambda s: s.forge("alice", "alice", "some-other-case", case=None),
            "bob",
            "alice's approval not counted: the signature does not match what was signed (changed since)",
            id="widened-to-a-case",
        ),
        pytest.param(
            lambda s: s.forge("dave", "dave"),
            "bob",
            "dave's approval not counted: dave may not approve for role lead",
            id="approver-of-another-role",
        ),
        pytest.param(
            lambda s: s.approve("checked", "caption-ok", "--by", "alice", key="alice"),
            "alice",
            "alice's approval not counted: alice is the operator running the case",
            id="runner-approves-themself",
        ),
        pytest.param(
            lambda s: s.approve("checked", "caption-ok", "--by", "alice", "--case", "other", key="alice"),
            "bob",
            "alice's approval not counted: for case other",
            id="for-another-case",
        ),
    ],
)
def test_forged_approvals_do_not_count_and_the_skip_says_why(suite: Suite, forge: Any, operator: str, why: str) -> None:
    forge(suite)
    result = suite.run(operator)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([WAITING.format(why)])


def test_a_forged_rejection_does_not_fail_the_case(suite: Suite) -> None:
    sha = approvals.file_sha256(str(suite.path / "checked.sop.yaml"))
    approvals.record_decision(
        suite.approvals, "checked", "caption-ok", by="carol", approve=False, note="no", sop_sha256=sha,
        key=str(suite.key["mallory"]),
    )  # fmt: skip
    result = suite.run("bob")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([WAITING.format("carol's rejection not counted: signed with a key*")])


def test_the_newest_decision_that_counts_is_used_past_forged_ones(suite: Suite) -> None:
    assert suite.approve("checked", "caption-ok", "--by", "carol", key="carol").returncode == 0
    suite.forge("alice", "mallory")  # newer, but forged: carol's stands
    suite.run("bob").assert_outcomes(passed=1)
    (event,) = audit_events(suite.audit, "approval")
    assert (event["by"], event["signed"]) == ("carol", True)


def test_a_checkpoint_inside_a_run_target_is_approved_on_the_sop_that_holds_it(suite: Suite) -> None:
    """Approving through the outer SOP would hash the wrong file: refused, naming the SOP to approve."""
    refused = suite.approve("outer", "caption-ok", "--by", "alice", key="alice")
    assert refused.returncode == 2 and "approve it there: pytest-sop approve checked caption-ok" in refused.stderr
    assert suite.approve("checked", "caption-ok", "--by", "alice", key="alice").returncode == 0
    suite.run("bob", "outer.sop.yaml").assert_outcomes(passed=1)
    inner = suite.path / "checked.sop.yaml"
    inner.write_text(inner.read_text() + "  - note: and more\n")  # the SOP asking for the checkpoint changed
    result = suite.run("bob", "outer.sop.yaml")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([WAITING.format("alice's approval not counted: SOP changed since")])


def test_without_required_signatures_unsigned_counts_but_a_wrong_signature_never(
    pytester: pytest.Pytester, tmp_path: Path, appium_url: str
) -> None:
    suite = Suite(pytester, tmp_path, appium_url, require=False)
    suite.forge("alice", "bob")
    result = suite.run("carol")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([WAITING.format("alice's approval not counted: signed with bob's key, not alice's")])
    proc = suite.approve("checked", "caption-ok", "--by", "alice")  # no key: allowed, unsigned, as before
    assert proc.returncode == 0 and "not signed" in proc.stdout, proc.stdout + proc.stderr
    suite.run("carol").assert_outcomes(passed=1)
    (event,) = audit_events(suite.audit, "approval")
    assert (event["by"], event["signed"], event["fingerprint"]) == ("alice", False, None)


def test_counting_is_the_same_in_xdist_workers(suite: Suite) -> None:
    """Workers judge decisions themselves (no key of theirs needed): one case counts, one is forged."""
    (suite.path / "second.sop.yaml").write_text(CHECKED.replace("id: checked", "id: second"))
    assert suite.approve("checked", "caption-ok", "--by", "alice", key="alice").returncode == 0
    sha = approvals.file_sha256(str(suite.path / "second.sop.yaml"))
    approvals.record_decision(
        suite.approvals, "second", "caption-ok", by="alice", approve=True, sop_sha256=sha, key=str(suite.key["carol"])
    )
    result = suite.pytester.runpytest(
        "--sop", "--sop-appium", suite.url, "--sop-operator", "bob", f"--sop-signing-key={suite.key['bob']}",
        "-n", "2", "-rs", "checked.sop.yaml", "second.sop.yaml",
        "-o", "sop_hold_timeout=0",  # one device: a paused case must not hold it from the other
    )  # fmt: skip
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines([WAITING.format("alice's approval not counted: signed with carol's key, not alice's")])
