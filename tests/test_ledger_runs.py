"""The run ledger in real runs: exceptions open, escalate and resolve; --sop-due skips recent passes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_engine_fake import FAKE_CONFIG, own_locks

FLAKY = """\
id: flaky
owner: social-ops
escalate_to: social-leads
schedule: {every: 1h}
steps:
  - assert_visible: {id: "${inputs.target}"}
    timeout: 0.2
inputs:
  - {id: good, target: username}
  - {id: bad, target: nope}
"""


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_sop", *args], cwd=cwd, capture_output=True, text=True)


def exceptions(cwd: Path, *args: str) -> list[dict[str, object]]:
    result = cli(cwd, "exceptions", "list", "--json", *args)
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def test_exceptions_open_escalate_and_reopen(pytester: pytest.Pytester, appium_url: str) -> None:
    pytester.makefile(".yaml", sop=FAKE_CONFIG)
    (pytester.path / "flaky.sop.yaml").write_text(FLAKY)
    audit = pytester.path / "audit.jsonl"
    for run in range(3):
        result = pytester.runpytest("--sop", "--sop-appium", appium_url, f"--sop-audit={audit}", *own_locks(pytester.path))
        result.assert_outcomes(passed=1, failed=1)
        (exc,) = exceptions(pytester.path)
        assert (exc["case"], exc["count"]) == ("flaky.sop.yaml::flaky[bad]", run + 1)
        assert exc["escalated_to"] == (None if run < 2 else "social-leads")
        assert exc["status"] == ("open" if run < 2 else "escalated")
    assert exceptions(pytester.path, "--escalated") == exceptions(pytester.path)
    escalations = [json.loads(line) for line in audit.read_text().splitlines() if '"event":"escalated"' in line]
    assert [(e["case"], e["to"]) for e in escalations] == [("flaky.sop.yaml::flaky[bad]", "social-leads")]

    resolved = cli(pytester.path, "exceptions", "resolve", str(exc["id"]), "--by", "lead", "--note", "fixed the id")
    assert resolved.returncode == 0, resolved.stderr
    assert exceptions(pytester.path, "--open") == []
    pytester.runpytest("--sop", "--sop-appium", appium_url, *own_locks(pytester.path)).assert_outcomes(passed=1, failed=1)
    (again,) = exceptions(pytester.path, "--open")
    assert (again["id"], again["status"], again["count"]) == (exc["id"], "open", 1)  # the same one, re-opened

    assert cli(pytester.path, "exceptions", "resolve", "999", "--by", "x", "--note", "y").returncode == 1


def test_due_deselects_cases_that_passed_within_their_schedule(pytester: pytest.Pytester, appium_url: str) -> None:
    pytester.makefile(".yaml", sop=FAKE_CONFIG)
    (pytester.path / "flaky.sop.yaml").write_text(FLAKY)
    (pytester.path / "always.sop.yaml").write_text("id: always\nsteps:\n  - assert_visible: {id: username}\n")
    first = pytester.runpytest("--sop", "--sop-appium", appium_url, "--sop-due", *own_locks(pytester.path))
    first.assert_outcomes(passed=2, failed=1)  # nothing ran before: all due
    second = pytester.runpytest("--sop", "--sop-appium", appium_url, "--sop-due", "-v", *own_locks(pytester.path))
    second.assert_outcomes(passed=1, failed=1, deselected=1)
    second.stdout.fnmatch_lines(["*always.sop.yaml::always PASSED*", "*flaky.sop.yaml::flaky[[]bad] FAILED*"])


WHOLE = """\
id: missing-banner
steps:
  - assert_visible: {id: nope}
    timeout: 0.2
"""


def test_the_ledger_keeps_the_whole_error_of_a_real_failure(pytester: pytest.Pytester, appium_url: str) -> None:
    """Not only its last line (the ``found:`` line): the headline, the SOP around the step, expected and found.

    Needs caserecord.py to hand the ledger the whole masked longrepr (it kept its last line)."""
    pytester.makefile(".yaml", sop=FAKE_CONFIG)
    (pytester.path / "missing-banner.sop.yaml").write_text(WHOLE)
    pytester.runpytest("--sop", "--sop-appium", appium_url, *own_locks(pytester.path)).assert_outcomes(failed=1)
    (exc,) = exceptions(pytester.path)
    error = str(exc["last_error"])
    assert error.splitlines()[0].startswith("missing-banner.sop.yaml:3: assert_visible failed"), error
    assert "expected:" in error and "found:" in error
    assert (exc["count"], exc["failed"], exc["broken"]) == (1, 1, 0)
    table = cli(pytester.path, "exceptions", "list").stdout
    assert "missing-banner.sop.yaml:3: assert_visible failed" in table


UNREACHABLE = """\
id: unreachable
owner: social-ops
{escalate_on}steps:
  - launch_app
"""


@pytest.mark.parametrize(
    ("escalate_on", "escalated_to"), [("", None), ("escalate_on: [failed, broken]\n", "social-ops")]
)
def test_infrastructure_failures_escalate_only_when_the_sop_says_so(
    pytester: pytest.Pytester, escalate_on: str, escalated_to: str | None
) -> None:
    """A server nobody answers makes the case broken: counted apart, escalated (to the owner, said so)
    only with escalate_on naming broken. Real runs, so the SOP's setting must reach the ledger."""
    pytester.makefile(".yaml", sop=FAKE_CONFIG)
    (pytester.path / "u.sop.yaml").write_text(UNREACHABLE.format(escalate_on=escalate_on))
    nobody = "http://127.0.0.1:9"  # discard port: connection refused
    result = pytester.runpytest("--sop", "--sop-appium", nobody, "-o", "sop_escalate_after=1", *own_locks(pytester.path))
    result.assert_outcomes(errors=1)
    (exc,) = exceptions(pytester.path)
    assert (exc["broken"], exc["failed"], exc["escalated_to"]) == (1, 0, escalated_to)
    if escalated_to:
        assert exc["escalated_to_source"] == "owner"
