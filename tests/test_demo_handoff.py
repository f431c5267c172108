"""scripts/demo-handoff, as scripts/demo runs it: the example suite's caption-review pauses for a lead,
demo-lead approves, and the case goes on from its checkpoint on the same phone, where the caption it
typed is still in the field. Real Appium, Chromium and Snapgram; run on a copy of the example suite
with a lock folder of its own, so its hold never stands in the way of another run of the suite."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_example_suite import _env

pytestmark = pytest.mark.appium

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "demo-handoff"
CAPTION_STEP = "assert_text in={id: caption} equals='Draft for the lead'"


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    """A copy of the example suite: its own .sop/ (holds, browser profiles), nothing of the repo's."""
    copy = tmp_path / "example_suite"
    shutil.copytree(ROOT / "example_suite", copy, ignore=shutil.ignore_patterns(".sop", ".pytest_cache", "__pycache__"))
    return copy


def demo_handoff(suite: Path, results: Path, appium_url: str) -> subprocess.CompletedProcess[str]:
    addopts = f"--sop-appium={appium_url} -o sop_lock_dir={suite.parent / 'locks'} -p no:cacheprovider"
    return subprocess.run(["bash", str(SCRIPT), str(suite), str(results)], env=_env(PYTEST_ADDOPTS=addopts),
                          capture_output=True, text=True, timeout=900)  # fmt: skip


def caption_review_results(results: Path) -> list[dict[str, Any]]:
    found = [json.loads(p.read_text()) for p in results.glob("*-result.json")]
    return sorted((r for r in found if r["name"].startswith("caption-review")), key=lambda r: r["start"])


def label(result: dict[str, Any], name: str) -> str:
    (value,) = [lab["value"] for lab in result["labels"] if lab["name"] == name]
    return str(value)


def audit(results: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (results / "sop-audit.jsonl").read_text().splitlines()]


def paused(suite: Path) -> list[Path]:
    return list((suite / ".sop" / "holds").glob("*.json"))


def free_leases(suite: Path) -> list[list[str]]:
    """``pytest-sop leases`` on the copy's lock folder: kind, id and state of each row."""
    leases = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-m", "pytest_sop", "leases", "--lock-dir", str(suite.parent / "locks")],
        cwd=suite, env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert leases.returncode == 0, leases.stderr
    return [row.split()[:3] for row in leases.stdout.splitlines()[1:5]]


ALL_FREE = [["device", "pixel-7", "free"], ["device", "iphone-14", "free"],
            ["account", "publisher-1", "free"], ["account", "publisher-2", "free"]]  # fmt: skip


def test_caption_review_pauses_and_goes_on_on_the_same_phone_after_the_leads_approval(
    suite: Path, tmp_path: Path, appium_url: str
) -> None:
    approvals_before = (suite / "sop-approvals.yaml").read_text()
    run = demo_handoff(suite, tmp_path / "results", appium_url)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    assert "caption-review.sop.yaml::caption-review SKIPPED" in out
    assert "awaiting approval: caption-check" in out
    assert "approved: caption-review / caption-check (every case) by demo-lead" in out
    assert "caption-review.sop.yaml::caption-review PASSED" in out

    pause, resumed = caption_review_results(tmp_path / "results")
    assert (pause["status"], resumed["status"]) == ("skipped", "passed")
    assert resumed["historyId"] == pause["historyId"]  # the same case, continued
    assert label(resumed, "device") == label(pause, "device")
    assert label(resumed, "account") == label(pause, "account") == "publisher-1"
    steps = [(s["name"], s["status"]) for s in resumed["steps"]]
    # Nothing before the checkpoint ran again: the caption in the field is the one typed before the pause.
    assert not any(name.startswith(("run sign-in", "type ")) for name, _ in steps), steps
    assert (CAPTION_STEP, "passed") in steps
    assert ("assert_text in={id: posted-caption} equals='Draft for the lead'", "passed") in steps

    events = audit(tmp_path / "results")
    leases = [e for e in events if e["event"] == "lease"]
    assert len(leases) == 2 and leases[1]["resumes_run"] == leases[0]["run"]
    assert leases[1]["device"] == leases[0]["device"]
    assert [(e["checkpoint"], e["decision"], e["by"]) for e in events if e["event"] == "approval"] == [
        ("caption-check", "approved", "demo-lead")
    ]
    assert paused(suite) == []
    assert (suite / "sop-approvals.yaml").read_text() == approvals_before  # the decision went elsewhere

    again = demo_handoff(suite, tmp_path / "again", appium_url)
    assert again.returncode == 0, (again.stdout + again.stderr)[-6000:]
    assert [r["status"] for r in caption_review_results(tmp_path / "again")] == ["skipped", "passed"]


def test_a_pause_it_cannot_see_through_is_released(suite: Path, tmp_path: Path, appium_url: str) -> None:
    """The lead's approval is refused (the policy gives demo-lead no role): the step fails, the script
    says so in its exit status, and the pause it made is released, so the phone is free again."""
    config = suite / "sop.yaml"
    text = config.read_text()
    config.write_text(text.replace("    demo-lead: [lead]\n", "    demo-lead: [publisher]\n"))
    run = demo_handoff(suite, tmp_path / "results", appium_url)
    out = run.stdout + run.stderr
    assert run.returncode != 0, out[-6000:]
    assert "caption-review.sop.yaml::caption-review SKIPPED" in out
    assert "released: caption-review [caption-review] on " in out
    assert paused(suite) == []
    assert free_leases(suite) == ALL_FREE

    config.write_text(text)
    again = demo_handoff(suite, tmp_path / "again", appium_url)
    assert again.returncode == 0, (again.stdout + again.stderr)[-6000:]


def test_a_pause_left_by_a_killed_run_is_released_first(suite: Path, tmp_path: Path, appium_url: str) -> None:
    """A pause with no demo-handoff around to end it (as after kill -9) would keep a phone from the plain
    run of the suite: scripts/demo ends it first (--release-only), and demo-handoff itself does too."""
    pause = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-m", "pytest", "--sop", "-m", "handoff", f"--sop-appium={appium_url}",
         "-o", f"sop_lock_dir={suite.parent / 'locks'}", "-p", "no:cacheprovider", "-rs"],
        cwd=suite, env=_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert pause.returncode == 0 and "awaiting approval: caption-check" in pause.stdout, pause.stdout + pause.stderr
    (left,) = paused(suite)
    assert json.loads(left.read_text())["case"] == "sops/caption-review.sop.yaml::caption-review"
    assert free_leases(suite) != ALL_FREE

    released = subprocess.run(["bash", str(SCRIPT), "--release-only", str(suite)], env=_env(),
                              capture_output=True, text=True, timeout=300)  # fmt: skip
    assert released.returncode == 0, released.stdout + released.stderr
    assert "released: caption-review [caption-review] on " in released.stdout
    assert "$ pytest" not in released.stdout  # nothing else ran
    assert paused(suite) == []
    assert free_leases(suite) == ALL_FREE

    run = demo_handoff(suite, tmp_path / "results", appium_url)
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
    assert [r["status"] for r in caption_review_results(tmp_path / "results")] == ["skipped", "passed"]
    assert paused(suite) == []
