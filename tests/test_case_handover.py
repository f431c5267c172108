"""A case's device given back off its critical path (issue 14): the session deleted in the background,
the worker's next case holding the lease on. Real pytest processes (xdist workers), a real Appium 3
server with the fake driver, the lock files themselves and Appium's own log as witnesses.

- One session at a time on a device: Appium's log never has a second ``POST /session`` begin
  before the last session's ``DELETE`` has been answered (one fake device: every session is its).
- The lease held on between two cases of one worker is the next case's: while a case runs, the
  device's holder record names that case (what ``pytest-sop leases`` shows), and no other
  process could take the device in between (the audit log's lease/release order never overlaps).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from test_engine_fake import APP
from test_parallel import clean_env, holds_from, overlaps, pytest_cmd, read_events, summary_counts, write_suite

from pytest_sop.appium_server import ManagedAppium, open_sessions
from pytest_sop.audit import verify

CONFIG = f"""\
devices:
  - id: solo
    platform: fake
    capabilities:
      platformName: Fake
      appium:automationName: Fake
      appium:app: {APP}
"""

# A step that reads the device's holder record from inside the case, as `pytest-sop leases` would.
# A session that takes a while to end, as a real phone's does (the fake driver's ends at once):
# the window in which a next session could come too early is then wide open.
CONFTEST = """\
import json
import os
import time

from pytest_sop import session
from pytest_sop.actions import ActionSpec
from pytest_sop.leasing import lock_path

_delete = session.DeviceSession.delete


def slow_delete(self):
    time.sleep(0.8)
    _delete(self)


session.DeviceSession.delete = slow_delete
session.DeviceSession._send_delete = lambda self: None  # the DELETE not sent at once: slow_delete sends it


def note_holder(ctx):
    path = lock_path(os.environ["HOLDER_LOCK_DIR"], "device", ctx.device.id)
    with open(path) as f:
        record = json.loads(f.read() or "null")
    with open(os.environ["HOLDER_NOTES"], "a") as out:
        out.write(json.dumps({"case": record and record["case"], "pid": record and record["pid"],
                              "me": os.getpid(), "running": ctx.case.name}) + "\\n")


def pytest_sop_actions():
    return [ActionSpec("note_holder", "Write down the device's holder record.", run=note_holder)]
"""

CASES = 8
SOP = (
    "id: handed\ninputs: [" + ", ".join(f"{{id: c{i}}}" for i in range(CASES)) + "]\n"
    "steps:\n  - note_holder\n  - type: {into: {id: username}, text: x}\n  - note_holder\n"
)

_HTTP = re.compile(r"\[HTTP\] (-->|<--) (POST /session|DELETE /session/[0-9a-f-]+)(?: |$)")


def sessions_open_at_once(log: str) -> int:
    """The most sessions Appium's log shows open at one time: a session counts from the moment its
    POST /session arrives until its DELETE is answered (whatever its status)."""
    most = now = 0
    for line in log.splitlines():
        m = _HTTP.search(line)
        if m is None:
            continue
        direction, what = m.groups()
        if direction == "-->" and what == "POST /session":
            now += 1
        elif direction == "<--" and what.startswith("DELETE"):
            now -= 1
        most = max(most, now)
    return most


def run_in_one_process(
    pytester: pytest.Pytester, own_appium: ManagedAppium, files: dict[str, str], *args: str, config: str = CONFIG
) -> tuple[str, str, Path]:
    """The suite run by one pytest process (no xdist): its output, Appium's log, the audit log's path.
    The suite's code finds the lock folder in $HOLDER_LOCK_DIR and Appium in $APPIUM_URL."""
    write_suite(pytester.path, config, files)
    locks, audit = pytester.path / "locks", pytester.path / "audit.jsonl"
    env = clean_env(HOLDER_LOCK_DIR=str(locks), HOLDER_NOTES=str(pytester.path / "n.jsonl"), APPIUM_URL=own_appium.url)
    proc = subprocess.run(
        pytest_cmd(
            "-p", "no:xdist", "--sop-appium", own_appium.url, f"-o=sop_lock_dir={locks}", f"--sop-audit={audit}", *args
        ),
        cwd=pytester.path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return proc.stdout + proc.stderr, own_appium.log_path.read_text(), audit


def sessions_made_and_deleted(log: str) -> tuple[int, int]:
    """Appium's log: how many sessions were asked for, and how many deleted."""
    return log.count("--> POST /session "), len(re.findall(r"<-- DELETE /session/\S+ 200", log))


def assert_held_in_turn(audit: Path, cases: list[str]) -> None:
    """The audit log: these cases held the device, one after another, each lease released."""
    holds = holds_from("run", read_events(audit))
    assert [h.case.split("::")[1] for h in holds] == cases and all(h.end is not None for h in holds)
    assert not overlaps(holds, "device")[0]


def test_one_session_at_a_time_and_the_held_lease_names_its_case(
    pytester: pytest.Pytester, own_appium: ManagedAppium
) -> None:
    write_suite(pytester.path, CONFIG, {"handed.sop.yaml": SOP, "conftest.py": CONFTEST})
    locks, notes, audit = pytester.path / "locks", pytester.path / "holders.jsonl", pytester.path / "audit.jsonl"
    proc = subprocess.run(
        pytest_cmd(
            "-n", "2", "--sop-appium", own_appium.url, f"-o=sop_lock_dir={locks}", f"--sop-audit={audit}",
            "--sop-lease-timeout=300",
        ),
        cwd=pytester.path, env=clean_env(HOLDER_LOCK_DIR=str(locks), HOLDER_NOTES=str(notes)),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert summary_counts(out) == {"passed": CASES}, out
    assert open_sessions(own_appium.url) == []

    # Appium's word: never two sessions on the one device.
    log = own_appium.log_path.read_text()
    assert log.count("--> POST /session") >= CASES, log[-3000:]
    assert sessions_open_at_once(log) == 1, "a session was created before the last one was deleted"

    # The holder record names the case that runs, both before and after its first step.
    events = read_events(audit)
    lease_of = {e["case"]: e for e in events if e["event"] == "lease"}
    seen = [json.loads(line) for line in notes.read_text().splitlines()]
    assert len(seen) == 2 * CASES
    running = {e["case"]: e["pid"] for e in events if e["event"] == "session"}
    for note in seen:
        assert note["case"] in lease_of and note["case"].endswith("::" + note["running"]), note
        assert note["pid"] == note["me"], f"the record names another process: {note}"
    assert {n["case"] for n in seen} == set(running)

    # The lease really was held on across cases of one worker (not taken afresh every time) ...
    assert verify(audit).ok, verify(audit)
    held_on = [e for e in events if e["event"] == "lease" and e["waited"] == 0.0]
    assert held_on, "no case held its worker's last lease on"
    # ... and the audit log still proves that no two cases held the device at once.
    holds = holds_from("run", events)
    assert len(holds) == CASES and all(h.end is not None for h in holds)
    clashes, worst = overlaps(holds, "device")
    assert not clashes and worst <= 0.0, clashes


def test_a_session_made_for_the_next_case_is_deleted_when_that_case_does_not_take_the_device(
    pytester: pytest.Pytester, own_appium: ManagedAppium
) -> None:
    """The next case's session is made while the last case is reported. Case b stops before it holds
    anything (an unset ${env.NAME}), so the session made for it is deleted, the device released, and c
    gets the device: no session left open, never two at once, the audit log still proves no overlap."""
    sops = {
        "a.sop.yaml": "id: a\nsteps:\n  - type: {into: {id: username}, text: x}\n",
        "b.sop.yaml": "id: b\nsteps:\n  - type: {into: {id: username}, text: '${env.SOP_TEST_NEVER_SET}'}\n",
        "c.sop.yaml": "id: c\nsteps:\n  - type: {into: {id: username}, text: y}\n",
        "conftest.py": CONFTEST,
    }
    out, log, audit = run_in_one_process(pytester, own_appium, sops)
    assert summary_counts(out) == {"passed": 2, "error": 1}, out
    assert "SOP_TEST_NEVER_SET" in out, out
    assert open_sessions(own_appium.url) == []
    made, deleted = sessions_made_and_deleted(log)
    assert made == 3 and deleted == 3, (made, deleted)  # a's, the one made for b, c's
    assert sessions_open_at_once(log) == 1
    assert verify(audit).ok
    assert_held_in_turn(audit, ["a", "c"])


def test_a_session_asked_for_is_deleted_when_a_later_setup_hook_fails(
    pytester: pytest.Pytester, own_appium: ManagedAppium
) -> None:
    """A case's session is waited for after every other plugin's setup (they run while Appium makes
    it). When a hook after the plugin's own setup fails, that session is still deleted before the
    device goes to the next case: no session left open, never two at once."""
    sops = {
        "a.sop.yaml": "id: a\nsteps:\n  - type: {into: {id: username}, text: x}\n",
        "b.sop.yaml": "id: b\nsteps:\n  - type: {into: {id: username}, text: y}\n",
        "c.sop.yaml": "id: c\nsteps:\n  - type: {into: {id: username}, text: z}\n",
        "conftest.py": (
            "import pytest\n\n\n@pytest.hookimpl(trylast=True)\ndef pytest_runtest_setup(item):\n"
            "    if item.name == 'b':\n        raise RuntimeError('the lab is closed for b')\n"
        ),
    }
    out, log, audit = run_in_one_process(pytester, own_appium, sops)
    assert summary_counts(out) == {"passed": 2, "error": 1}, out
    assert "the lab is closed for b" in out, out
    assert open_sessions(own_appium.url) == []
    made, deleted = sessions_made_and_deleted(log)
    assert made == deleted == 3, (made, deleted)
    assert sessions_open_at_once(log) == 1
    assert_held_in_turn(audit, ["a", "b", "c"])


# For the suites' own code: whether the device's lock is free (another process could take it), and
# the sessions open on Appium.
DEVICE_STATE = """\
import os
import subprocess
import sys

from pytest_sop.appium_server import open_sessions
from pytest_sop.leasing import lock_path

TRY_LOCK = "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)"


def device_state():
    lock = lock_path(os.environ["HOLDER_LOCK_DIR"], "device", "solo")
    free = subprocess.run([sys.executable, "-c", TRY_LOCK, str(lock)], capture_output=True).returncode == 0
    return open_sessions(os.environ["APPIUM_URL"]), free
"""

# A Python test after the SOP cases: the device free again (no session on Appium, its lock file
# lockable by another process) within 20 s, while this test still runs.
DEVICE_FREE = (
    DEVICE_STATE
    + """
import time


def test_the_device_is_free_while_other_tests_run():
    deadline = time.monotonic() + 20
    while True:
        sessions, free = device_state()
        if not sessions and free:
            return
        assert time.monotonic() < deadline, f"still held: sessions {sessions}, lock free: {free}"
        time.sleep(0.2)
"""
)


@pytest.mark.parametrize("how", ["skip", "skipif", "xfail(run=False)"])
def test_a_session_made_for_a_case_that_is_skipped_does_not_hold_the_device(
    pytester: pytest.Pytester, own_appium: ManagedAppium, how: str
) -> None:
    """Case b is skipped by a marker before its setup runs, so it never takes the session made for it
    while a was reported. That session is deleted and the device released at once, not when the run
    ends: the Python test after b finds Appium empty and the device's lock free."""
    marker = {"skip": "skip(reason='not today')", "skipif": "skipif(True, reason='not today')"}.get(
        how, "xfail(run=False, reason='not today')"
    )
    sops = {
        "a.sop.yaml": "id: a\nsteps:\n  - type: {into: {id: username}, text: x}\n",
        "b.sop.yaml": "id: b\nsteps:\n  - type: {into: {id: username}, text: y}\n",
        "test_later.py": DEVICE_FREE,
        "conftest.py": (
            "import pytest\n\n\ndef pytest_collection_modifyitems(items):\n    for item in items:\n"
            f"        if item.name == 'b':\n            item.add_marker(pytest.mark.{marker})\n"
        ),
    }
    out, log, _ = run_in_one_process(pytester, own_appium, sops)
    skipped = "xfailed" if how.startswith("xfail") else "skipped"
    assert summary_counts(out) == {"passed": 2, skipped: 1}, out
    made, deleted = sessions_made_and_deleted(log)
    assert made == deleted, (made, deleted)
    assert sessions_open_at_once(log) == 1


def test_a_session_made_for_the_next_case_that_appium_ended_while_idle_is_made_again(
    pytester: pytest.Pytester, own_appium: ManagedAppium
) -> None:
    """The session made for case b while a was reported waits, idle, for b's setup. A slow setup hook
    (here 4 s) outlasts the device's newCommandTimeout (2 s), so Appium ends that session: b gets a
    new one, and passes."""
    config = CONFIG.replace("appium:app:", "appium:newCommandTimeout: 2\n      appium:app:")
    sops = {
        "a.sop.yaml": "id: a\nsteps:\n  - type: {into: {id: username}, text: x}\n",
        "b.sop.yaml": "id: b\nsteps:\n  - type: {into: {id: username}, text: y}\n",
        "conftest.py": (
            "import time\n\nimport pytest\n\n\n@pytest.hookimpl(trylast=True)\ndef pytest_runtest_setup(item):\n"
            "    if item.name == 'b':\n        time.sleep(4)\n"
        ),
    }
    out, log, _ = run_in_one_process(pytester, own_appium, sops, config=config)
    assert summary_counts(out) == {"passed": 2}, out
    assert open_sessions(own_appium.url) == []
    assert sessions_open_at_once(log) == 1


# Before case c's own setup in a `--sop-session worker` run: whenever Appium has a session open on the
# device, the device's lock is held (another process cannot take it).
NEVER_FREE_WITH_A_SESSION = (
    DEVICE_STATE
    + """
import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.name != "c":
        return
    sessions, free = device_state()
    assert sessions, "no session kept for c"
    assert not free, f"the device is free while its session lives: {sessions}"
"""
)


def test_a_session_kept_for_the_worker_keeps_its_device_leased(
    pytester: pytest.Pytester, own_appium: ManagedAppium
) -> None:
    """``--sop-session worker`` keeps the device's session open between cases for the worker's next
    case. Another run taking the device meanwhile would make a second session on the phone, so the
    lease is held with it: just before c's setup, the session is open and the lock held; c reuses
    the session. A Python test next is no case to keep it for: the session is deleted after c."""
    sops = {
        "a.sop.yaml": "id: a\nsteps:\n  - type: {into: {id: username}, text: x}\n",
        "c.sop.yaml": "id: c\nsteps:\n  - type: {into: {id: username}, text: y}\n",
        "conftest.py": NEVER_FREE_WITH_A_SESSION,
        "test_d.py": DEVICE_FREE,
    }
    out, _, audit = run_in_one_process(pytester, own_appium, sops, "--sop-session", "worker")
    assert summary_counts(out) == {"passed": 3}, out
    assert open_sessions(own_appium.url) == []
    assert [e["reused"] for e in read_events(audit) if e["event"] == "session"] == [False, True]
    assert verify(audit).ok
    assert_held_in_turn(audit, ["a", "c"])


def test_a_kept_session_is_deleted_when_the_case_it_was_kept_for_stops_in_setup(
    pytester: pytest.Pytester, own_appium: ManagedAppium
) -> None:
    """``--sop-session worker``: case c takes the device and the session kept for it, and its setup then
    fails (resetting the app between cases fails). The kept session is c's from the hand-over on, so it
    is deleted before the lease is released: nothing is left open on Appium."""
    sops = {
        "a.sop.yaml": "id: a\nsteps:\n  - type: {into: {id: username}, text: x}\n",
        "c.sop.yaml": "id: c\nsteps:\n  - type: {into: {id: username}, text: y}\n",
        "conftest.py": (
            "from pytest_sop import session\n\n\ndef broken_reset(self):\n    raise RuntimeError('reset failed')\n\n\n"
            "session.DeviceSession.reset_app = broken_reset\n"
        ),
    }
    out, _, audit = run_in_one_process(pytester, own_appium, sops, "--sop-session", "worker")
    assert summary_counts(out) == {"passed": 1, "error": 1}, out
    assert "reset failed" in out, out
    assert open_sessions(own_appium.url) == []
    assert_held_in_turn(audit, ["a", "c"])


def test_an_error_left_by_the_last_give_back_stops_the_next_case_before_it_holds_a_device(
    pytester: pytest.Pytester, own_appium: ManagedAppium
) -> None:
    """Case a's release line cannot be written (its device is released all the same, in the
    background). The next case says so as its error before it leases anything, so nothing of b's is
    left held: c then gets device solo2 at once, rather than waiting for a lease nobody releases."""
    config = CONFIG + CONFIG.split("devices:\n", 1)[1].replace("id: solo", "id: solo2")
    sops = {
        "a.sop.yaml": "id: a\nrequires:\n  device: {id: solo}\nsteps:\n  - type: {into: {id: username}, text: x}\n",
        "b.sop.yaml": "id: b\nrequires:\n  device: {id: solo2}\nsteps:\n  - type: {into: {id: username}, text: y}\n",
        "c.sop.yaml": "id: c\nrequires:\n  device: {id: solo2}\nsteps:\n  - type: {into: {id: username}, text: z}\n",
        "conftest.py": (
            "import time\n\nimport pytest\n\nfrom pytest_sop import caserecord\nfrom pytest_sop.collect import closing_key\n\n"
            "_written = caserecord.CaseRecord.written\n\n\n"
            "def written(self):\n    if self.nodeid.endswith('::a'):\n        raise OSError('the audit disk is full')\n"
            "    _written(self)\n\n\ncaserecord.CaseRecord.written = written\n\n\n"
            "@pytest.hookimpl(tryfirst=True)\ndef pytest_runtest_setup(item):\n"
            "    deadline = time.monotonic() + 20  # a's device given back (and its error kept) before b starts\n"
            "    while not all(c.finished() for c in item.config.stash.get(closing_key, [])):\n"
            "        assert time.monotonic() < deadline\n        time.sleep(0.05)\n"
        ),
    }
    out, _, _ = run_in_one_process(pytester, own_appium, sops, "--sop-lease-timeout=10", config=config)
    assert summary_counts(out) == {"passed": 2, "error": 1}, out
    assert "the audit disk is full" in out, out
    assert open_sessions(own_appium.url) == []
