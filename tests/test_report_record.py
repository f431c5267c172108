"""What a case leaves in the Allure results, read from the result files: attempts, optional steps,
the SOP link and version, approvals, messages in words, the run's timeline and audit log.

Through a real Appium 3 server on its fake driver; the rendered report is checked in test_report_html.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_engine_fake import FAKE_CONFIG, allure_results, own_locks, run_sop
from test_policy_approvals import CHECKED, POLICY

pytestmark = pytest.mark.appium

PASSES = "id: steady\nretry: {attempts: 2}\nsteps:\n  - launch_app\n  - assert_visible: {id: username}\n"
FAILS = "id: missing\nsteps:\n  - launch_app\n  - tap: {id: no-such-button}\n    timeout: 0.2\n"
TOLERANT = """\
id: tolerant
steps:
  - tap: {id: banner-close}
    timeout: 0.1
    optional: true
  - assert_visible: {id: username}
"""


def walk(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for step in steps:
        out += [step, *walk(step.get("steps", []))]
    return out


def params(result: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in result.get("parameters", [])}


def labels(result: dict[str, Any], name: str) -> list[str]:
    return [label["value"] for label in result["labels"] if label["name"] == name]


def events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, text=True).stdout


def test_a_first_attempt_that_passes_is_not_wrapped(pytester: pytest.Pytester, appium_url: str) -> None:
    run_sop(pytester, appium_url, {"s.sop.yaml": PASSES}).assert_outcomes(passed=1)
    (res,) = allure_results(pytester.path / "allure")
    assert [s["name"] for s in res["steps"]] == ["launch_app", "assert_visible {id: username}"]


def test_a_retried_case_groups_each_attempt(pytester: pytest.Pytester, appium_url: str) -> None:
    """Attempt 1 is grouped after the fact, once attempt 2 follows; each says how it ended."""
    sop = "id: twice\nretry: {attempts: 2}\nsteps:\n  - launch_app\n  - wait_for: {id: nope}\n    timeout: 0.2\n"
    audit = pytester.path / "audit.jsonl"
    run_sop(pytester, appium_url, {"t.sop.yaml": sop}, f"--sop-audit={audit}").assert_outcomes(failed=1)
    (res,) = allure_results(pytester.path / "allure")
    assert [s["name"] for s in res["steps"]] == ["attempt 1 of 2", "attempt 2 of 2"]
    first, second = res["steps"]
    assert [s["name"] for s in first["steps"]] == [s["name"] for s in second["steps"]][:2]
    assert first["status"] == second["status"] == "failed"
    assert re.fullmatch(r"\{id: nope\} is not found after \d+\.\ds", first["statusDetails"]["message"])
    assert first["start"] <= first["steps"][0]["start"] and first["stop"] <= second["start"]
    (retry,) = [e for e in events(audit) if e["event"] == "attempt_failed"]
    assert (retry["attempt"], retry["attempts"], retry["sop"]) == (1, 2, "twice")


def test_a_failed_optional_step_is_broken_and_the_case_passes(pytester: pytest.Pytester, appium_url: str) -> None:
    audit = pytester.path / "audit.jsonl"
    result = run_sop(pytester, appium_url, {"t.sop.yaml": TOLERANT}, f"--sop-audit={audit}")
    result.assert_outcomes(passed=1, warnings=1)
    (res,) = allure_results(pytester.path / "allure")
    assert res["status"] == "passed"
    assert [(s["name"], s["status"]) for s in res["steps"]] == [
        ("tap {id: banner-close}", "broken"),
        ("assert_visible {id: username}", "passed"),
    ]
    details = res["steps"][0]["statusDetails"]
    assert re.fullmatch(r"\{id: banner-close\} is not found after \d+\.\ds", details["message"])
    assert "trace" not in details
    ends = [(e["step"], e["status"]) for e in events(audit) if e["event"] == "step_end"]
    assert ends == [("tap {id: banner-close}", "broken"), ("assert_visible {id: username}", "passed")]


def test_messages_are_in_words(pytester: pytest.Pytester, appium_url: str) -> None:
    """No Python class name in the error box, nor a traceback of pytest-sop's code in the failed step."""
    result = run_sop(pytester, appium_url, {"m.sop.yaml": FAILS}, "-n", "1")
    result.assert_outcomes(failed=1)
    assert "pytest_sop." not in result.stdout.str()
    (res,) = allure_results(pytester.path / "allure")
    assert re.fullmatch(r"\{id: no-such-button\} is not found after \d+\.\ds", res["statusDetails"]["message"])
    assert res["statusDetails"]["trace"].startswith("m.sop.yaml:4: tap failed in SOP 'missing'")
    failed = res["steps"][-1]["statusDetails"]
    assert list(failed) == ["message"]
    assert failed["message"] == res["statusDetails"]["message"]


def test_the_sop_link_is_relative_to_the_project(pytester: pytest.Pytester, appium_url: str) -> None:
    (pytester.path / "sops").mkdir()
    run_sop(pytester, appium_url, {"sops/s.sop.yaml": PASSES}).assert_outcomes(passed=1)
    (res,) = allure_results(pytester.path / "allure")
    assert [(link["url"], link["name"]) for link in res["links"]] == [("sops/s.sop.yaml", "SOP file sops/s.sop.yaml")]


def test_sop_version_and_source_url_from_git(pytester: pytest.Pytester, appium_url: str) -> None:
    """sha256 and commit as parameters and in the case's first audit line; the link into the repository."""
    project = pytester.path / "suite"
    (project / "sops").mkdir(parents=True)
    pytester.makeini("[pytest]\nsop_source_url = https://git.example/org/repo/blob/{commit}/\n")
    (project / "sop.yaml").write_text(FAKE_CONFIG)
    sop_file = project / "sops" / "s.sop.yaml"
    sop_file.write_text(PASSES)
    git(pytester.path, "init", "-q")
    git(pytester.path, "add", "suite")
    git(pytester.path, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "sops")
    commit = git(pytester.path, "rev-parse", "HEAD").strip()
    digest = hashlib.sha256(sop_file.read_bytes()).hexdigest()
    audit = pytester.path / "audit.jsonl"
    args = ["--sop", "--sop-config", "suite/sop.yaml", "--sop-appium", appium_url, f"--sop-audit={audit}"]
    args += own_locks(pytester.path)
    pytester.runpytest(*args, "--alluredir", str(pytester.path / "allure")).assert_outcomes(passed=1)
    (res,) = allure_results(pytester.path / "allure")
    assert [link["url"] for link in res["links"]] == [
        f"https://git.example/org/repo/blob/{commit}/suite/sops/s.sop.yaml#L1"
    ]
    assert params(res)["SOP sha256"] == f"'{digest}'" and params(res)["SOP commit"] == f"'{commit}'"
    assert all(p.get("excluded") for p in res["parameters"] if p["name"].startswith("SOP "))  # history id stays
    (lease,) = [e for e in events(audit) if e["event"] == "lease"]
    assert (lease["sop_sha256"], lease["sop_commit"], lease["sop_dirty"]) == (digest, commit, False)

    sop_file.write_text(PASSES + "  - launch_app\n")  # changed since the commit
    pytester.runpytest(*args, "--alluredir", str(pytester.path / "again")).assert_outcomes(passed=1)
    (res,) = allure_results(pytester.path / "again")
    assert params(res)["SOP commit"] == f"'{commit} (the SOP file has uncommitted changes)'"
    lease = [e for e in events(audit) if e["event"] == "lease"][-1]
    assert lease["sop_dirty"] is True and lease["sop_sha256"] == hashlib.sha256(sop_file.read_bytes()).hexdigest()


def test_outside_git_there_is_no_commit(pytester: pytest.Pytester, appium_url: str) -> None:
    audit = pytester.path / "audit.jsonl"
    pytester.makefile(".cfg", setup="")  # the pytester folder is in no repository
    if subprocess.run(["git", "-C", str(pytester.path), "rev-parse"], capture_output=True).returncode == 0:
        pytest.skip("the temporary folder is inside a git repository")
    run_sop(pytester, appium_url, {"s.sop.yaml": PASSES}, f"--sop-audit={audit}").assert_outcomes(passed=1)
    (res,) = allure_results(pytester.path / "allure")
    assert "SOP commit" not in params(res) and len(params(res)["SOP sha256"]) == 66
    (lease,) = [e for e in events(audit) if e["event"] == "lease"]
    assert "sop_commit" not in lease and len(lease["sop_sha256"]) == 64


def test_approvals_are_labels_and_parameters(pytester: pytest.Pytester, appium_url: str) -> None:
    pytester.makefile(".yaml", sop=FAKE_CONFIG + POLICY)
    (pytester.path / "checked.sop.yaml").write_text(CHECKED)
    approve = [sys.executable, "-m", "pytest_sop", "approve", "checked", "caption-ok", "--by", "alice"]
    subprocess.run([*approve, "--note", "looks right"], cwd=pytester.path, check=True, capture_output=True)
    result = pytester.runpytest(
        "--sop", "--sop-appium", appium_url, "--sop-operator", "bob", "--alluredir", str(pytester.path / "allure"),
        *own_locks(pytester.path),
    )
    result.assert_outcomes(passed=1)
    (res,) = allure_results(pytester.path / "allure")
    assert labels(res, "approved_by") == ["alice"]
    shown = params(res)["approval caption-ok"]
    assert shown.startswith("'approved by alice at 20") and shown.endswith("(not signed): looks right'")


def test_the_timeline_and_audit_log_are_the_runs_attachments(pytester: pytest.Pytester, appium_url: str) -> None:
    """Allure's global attachments (``*-globals.json``): copies taken after the run's last audit line."""
    results = pytester.path / "allure"
    run_sop(pytester, appium_url, {"s.sop.yaml": PASSES}).assert_outcomes(passed=1)
    (found,) = [json.loads(p.read_text()) for p in results.glob("*-globals.json")]  # one: Allure 3 repeats per file
    attached = {a["name"]: a for a in found["attachments"]}
    assert set(attached) == {"device timeline", "audit log"}
    assert attached["device timeline"]["type"] == "image/svg+xml"
    timeline = (results / attached["device timeline"]["source"]).read_bytes()
    assert timeline == (results / "device-timeline.svg").read_bytes()
    assert (results / attached["audit log"]["source"]).read_bytes() == (results / "sop-audit.jsonl").read_bytes()
