"""Project actions: StepFailed, an AssertionError as a step failure, the step's timeout, and lint
loading the suite's conftest.py actions. Cases run through a real Appium 3 server (fake driver)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_engine_fake import FAKE_CONFIG, allure_results, run_sop, steps_of

CONFTEST = """\
from pathlib import Path

from pytest_sop import ActionSpec, Param, StepFailed


def check_title(ctx, title):
    # A plain assert, as a project writes it: a step failure like any other.
    assert title == "Login", f"title is Login, not {title}"


def flaky(ctx):
    marker = Path("flaky-ran")
    if not marker.exists():
        marker.write_text("once")
        assert False, "not ready yet"


def refuse(ctx):
    raise StepFailed("the banner is wrong", expected="a banner", found="nothing")


def record_timeout(ctx, timeout):
    Path("timeouts.txt").open("a").write(f"{timeout:g}\\n")


def pytest_sop_actions():
    return [
        ActionSpec("check_title", "Check the title.", "value", (Param("title", "text"),), run=check_title),
        ActionSpec("flaky", "Fails once.", run=flaky),
        ActionSpec("refuse", "Always fails.", run=refuse),
        ActionSpec("record_timeout", "Writes its timeout.", run=record_timeout),
    ]
"""


def project(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)


def test_an_assertion_error_is_a_step_failure_with_retry_and_optional(
    pytester: pytest.Pytester, appium_url: str
) -> None:
    project(pytester)
    sop = """\
id: asserts
steps:
  - flaky:
    retry: {attempts: 2}
  - check_title: Settings
    optional: true
  - assert_visible: {id: username}
"""
    result = run_sop(pytester, appium_url, {"a.sop.yaml": sop})
    result.assert_outcomes(passed=1)
    (res,) = allure_results(pytester.path / "allure")
    assert res["status"] == "passed"
    names = [a["name"] for s in res["steps"] for a in s.get("attachments", [])]
    assert names == ["attempt 1 failed", "optional step failed"]
    result.stdout.fnmatch_lines(
        ["*optional step failed: a.sop.yaml:5 check_title title='Settings': title is Login, not Settings"]
    )


def test_an_assertion_error_fails_the_case_with_on_failure_and_evidence(
    pytester: pytest.Pytester, appium_url: str
) -> None:
    project(pytester)
    sop = """\
id: asserts
steps:
  - launch_app
  - check_title: Settings
on_failure:
  - note: cleaning up
"""
    result = run_sop(pytester, appium_url, {"a.sop.yaml": sop})
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["a.sop.yaml:4: check_title failed in SOP 'asserts'", "*title is Login, not Settings*"])
    (res,) = allure_results(pytester.path / "allure")
    assert res["status"] == "failed"
    assert "on_failure:passed" in steps_of(res)
    assert {"screenshot at failure", "page source at failure"} <= {a["name"] for a in res["attachments"]}


def test_step_failed_from_pytest_sop_says_expected_and_found(pytester: pytest.Pytester, appium_url: str) -> None:
    project(pytester)
    result = run_sop(pytester, appium_url, {"r.sop.yaml": "id: r\nsteps:\n  - refuse\n"})
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["the banner is wrong", "  expected: a banner", "  found:    nothing"])


def test_the_steps_timeout_reaches_the_action(pytester: pytest.Pytester, appium_url: str) -> None:
    project(pytester)
    sop = "id: t\nsteps:\n  - record_timeout:\n    timeout: 2.5\n  - record_timeout\n"
    run_sop(pytester, appium_url, {"t.sop.yaml": sop}).assert_outcomes(passed=1)
    assert (pytester.path / "timeouts.txt").read_text().split() == ["2.5", "10"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_sop", *args], cwd=cwd, capture_output=True, text=True)


def test_lint_knows_the_suites_conftest_actions(tmp_path: Path) -> None:
    (tmp_path / "sop.yaml").write_text(FAKE_CONFIG)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    sops = tmp_path / "sops"
    sops.mkdir()
    (sops / "a.sop.yaml").write_text("id: a\nsteps:\n  - check_title: Login\n  - flaky\n")
    result = run_cli("lint", ".", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # and from elsewhere, naming the file
    result = run_cli("lint", str(sops / "a.sop.yaml"), cwd=tmp_path.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    (sops / "b.sop.yaml").write_text("id: b\nsteps:\n  - check_titel: Login\n")
    result = run_cli("lint", ".", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "sops/b.sop.yaml:3:5: steps[0].check_titel: unknown action 'check_titel' (did you mean 'check_title'?)"
    ]


def test_lint_says_when_a_conftest_cannot_be_loaded(tmp_path: Path) -> None:
    (tmp_path / "sop.yaml").write_text(FAKE_CONFIG)
    (tmp_path / "conftest.py").write_text("import no_such_module_here\n")
    (tmp_path / "a.sop.yaml").write_text("id: a\nsteps: [back]\n")
    result = run_cli("lint", ".", cwd=tmp_path)
    assert result.returncode == 1
    assert "conftest.py:1:1: cannot load the project's actions: ModuleNotFoundError" in result.stdout
