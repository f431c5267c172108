"""Which case an xdist worker is sent next (issue 14, device busy): ``pytest --sop -n 2`` hands a
worker a case it can lease now, not one that waits for the device another worker holds.

Real pytest processes (xdist workers) and a real Appium 3 server with the fake driver; the audit
log's lease lines (``waited``: seconds the case waited for its lease) are the witnesses.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from test_parallel import clean_env, fake_device, holds_from, pytest_cmd, read_events, summary_counts, write_suite

TWO_PHONES = "devices:\n" + fake_device("dev-a") + fake_device("dev-b")

# In collection order the cases that can only use dev-b come first: xdist's load scheduler sends
# the first two to one worker and the third (dev-b again) to the other, which then waits for dev-b
# while dev-a is free and cases that could use it are pending.
SOPS = {
    "a-pinned.sop.yaml": """\
id: pinned
requires:
  device: {id: dev-b}
inputs: [{id: p1}, {id: p2}, {id: p3}]
steps:
  - wait: 1.0
  - assert_visible: {id: username}
""",
    "b-any.sop.yaml": """\
id: any
inputs: [{id: r1}, {id: r2}, {id: r3}]
steps:
  - wait: 1.0
  - assert_visible: {id: username}
""",
}


def run(path: Path, appium_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pytest_cmd(
            "-n", "2", "--sop-appium", appium_url, f"-o=sop_lock_dir={path / 'locks'}",
            f"--sop-audit={path / 'audit.jsonl'}", "--sop-lease-timeout=60", *args,
        ),
        cwd=path, env=clean_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_a_case_for_a_busy_device_waits_while_another_case_can_run(tmp_path: Path, appium_url: str) -> None:
    write_suite(tmp_path, TWO_PHONES, SOPS)
    proc = run(tmp_path, appium_url, "-vv")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert summary_counts(proc.stdout) == {"passed": 6}, out
    assert "scheduling tests via LeaseScheduling" in proc.stdout, out
    holds = holds_from("run", read_events(tmp_path / "audit.jsonl"))
    assert len(holds) == 6 and all(h.end is not None for h in holds), holds
    # No case waited for its lease: dev-b's cases went to the worker holding dev-b, the others to dev-a.
    waits = {h.case: round(h.waited, 3) for h in holds if h.waited > 0.5}
    assert not waits, f"cases waited for a lease (seconds): {waits}\n" + "\n".join(map(str, holds))
    assert {h.device for h in holds if "pinned" in h.case} == {"dev-b"}
    assert {h.device for h in holds if "::any" in h.case} == {"dev-a"}
    # Both devices were busy at once: the run was spread, not serialised.
    pinned = [h for h in holds if "pinned" in h.case]
    anywhere = [h for h in holds if "::any" in h.case]
    assert any(a.start < b.inner_end and b.start < a.inner_end for a in pinned for b in anywhere)


PYTHON_TESTS = """\
def test_one():
    pass


def test_two():
    pass
"""


def test_when_no_case_can_run_now_one_is_sent_anyway(tmp_path: Path, appium_url: str) -> None:
    """One phone, two workers: every case needs the phone the other worker holds. Nothing stalls:
    each worker is sent a case and waits for its lease; Python tests in the run are sent too."""
    sops = {"only.sop.yaml": "id: only\ninputs: [{id: o1}, {id: o2}, {id: o3}, {id: o4}]\nsteps:\n  - wait: 0.3\n"}
    write_suite(tmp_path, "devices:\n" + fake_device("solo"), {**sops, "test_plain.py": PYTHON_TESTS})
    proc = run(tmp_path, appium_url, "test_plain.py", ".")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert summary_counts(proc.stdout) == {"passed": 6}, out
    holds = holds_from("run", read_events(tmp_path / "audit.jsonl"))
    assert len(holds) == 4 and {h.device for h in holds} == {"solo"}, holds


def test_other_dist_modes_are_xdists_own(tmp_path: Path, appium_url: str) -> None:
    write_suite(tmp_path, TWO_PHONES, SOPS)
    proc = run(tmp_path, appium_url, "--dist=loadfile", "-vv")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "scheduling tests via LoadFileScheduling" in proc.stdout, out
