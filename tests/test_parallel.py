"""Parallel runs and leases end to end: real pytest processes, xdist workers and a real Appium 3
server with the fake driver (issue 4).

Every run here uses its own lock folder (``-o sop_lock_dir=...``) and its own audit log, and
proves what it claims from what the runs recorded: the audit log's lease, session, release and
outcome events, the holder records and ``pytest-sop leases``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_engine_fake import APP

from pytest_sop.appium_server import ManagedAppium, open_sessions
from pytest_sop.audit import verify
from pytest_sop.leasing import LeasePool, holder_path
from pytest_sop.suiteconfig import load_config

Event = dict[str, Any]


def fake_device(id: str) -> str:
    return (
        f"  - id: {id}\n    platform: fake\n    capabilities:\n"
        f"      platformName: Fake\n      appium:automationName: Fake\n      appium:app: {APP}\n"
    )


def write_suite(path: Path, config: str, files: dict[str, str]) -> None:
    # A pytest.ini pins the rootdir (and so sop.yaml) to this folder, for workers too.
    (path / "pytest.ini").write_text("[pytest]\n")
    (path / "sop.yaml").write_text(config)
    for name, text in files.items():
        (path / name).write_text(text)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what would tell an inner pytest it is an xdist worker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env.pop("PYTEST_ADDOPTS", None)
    return {**env, **extra}


def pytest_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "--sop", "-p", "no:cacheprovider", "-q", *args]


def read_events(path: Path) -> list[Event]:
    """The audit log's events; a last line still being written (no newline yet) is left out."""
    if not path.exists():
        return []
    *lines, _partial = path.read_text().split("\n")
    return [json.loads(line) for line in lines if line.strip()]


def ts(event: Event) -> dt.datetime:
    return dt.datetime.fromisoformat(event["ts"])


def summary_counts(output: str) -> dict[str, int]:
    """``{"passed": 9}`` from pytest's last summary line."""
    last = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    assert last, output
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", last[-1])}


def delete_session(url: str, session_id: str) -> None:
    req = urllib.request.Request(f"{url.rstrip('/')}/session/{session_id}", method="DELETE")
    with urllib.request.urlopen(req, timeout=10):
        pass


def open_session_ids(url: str) -> set[str]:
    return {str(s["id"]) for s in open_sessions(url)}


def close_leftover_sessions(url: str, audit: Path) -> set[str]:
    """Delete the sessions this run's audit log names that are still open (a killed holder's); returns their ids."""
    left = {e["session"] for e in read_events(audit) if e["event"] == "session"} & open_session_ids(url)
    for session_id in left:
        delete_session(url, session_id)
    return left


@dataclass
class Hold:
    """One case's lease as the audit log tells it.

    ``start`` is the "lease" event (written just after the locks were taken) and ``inner_end``
    the case's last event before its "release" (written while still holding): that interval
    lies inside the real hold, so two of them can never overlap when the leases are exclusive.
    ``end`` is the "release" event, written just after unlocking.
    """

    run: str
    case: str
    device: str
    account: str | None
    start: dt.datetime
    inner_end: dt.datetime
    waited: float = 0.0
    end: dt.datetime | None = None

    def __str__(self) -> str:
        return (
            f"{self.run}:{self.case} [{self.start.time()} .. {self.inner_end.time()} .. {self.end and self.end.time()}]"
        )


def holds_from(run: str, events: list[Event]) -> list[Hold]:
    holds: list[Hold] = []
    open_: dict[str, Hold] = {}
    for e in sorted(events, key=lambda e: e["seq"]):
        case = e.get("case")
        if case is None:
            continue
        if e["event"] == "lease":
            assert case not in open_, f"{run}: {case} leased twice without a release"
            hold = Hold(run, case, e["device"], e.get("account"), ts(e), ts(e), e["waited"])
            open_[case] = hold
            holds.append(hold)
        elif e["event"] == "release":
            hold = open_.pop(case)
            assert (hold.device, hold.account) == (e["device"], e.get("account")), e
            hold.end = ts(e)
        elif case in open_:
            open_[case].inner_end = ts(e)
    return holds


def overlaps(holds: list[Hold], key: str) -> tuple[list[tuple[Hold, Hold]], float]:
    """Pairs of holds of one resource whose inner intervals meet, and the largest overlap of their
    lease -> release intervals (seconds), per device (``key="device"``) or account."""
    by_resource: dict[str, list[Hold]] = defaultdict(list)
    for h in holds:
        resource = getattr(h, key)
        if resource is not None:
            by_resource[resource].append(h)
    clashes: list[tuple[Hold, Hold]] = []
    worst_outer = 0.0
    for group in by_resource.values():
        group.sort(key=lambda h: h.start)
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                if b.start < a.inner_end:
                    clashes.append((a, b))
                if a.end is not None:
                    worst_outer = max(worst_outer, (a.end - b.start).total_seconds())
    return clashes, worst_outer


# Runs started together start their cases together, whatever each one's start-up took: the conftest.py of
# their suite makes each worker wait before its first case, holding nothing, until every run is here.
MEET = """\
import os
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
met = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if met:
        return
    (HERE / f"arrived-{os.environ['SOP_TEST_RUN']}").touch()
    deadline = time.monotonic() + 300
    while not all((HERE / f"arrived-{run}").exists() for run in os.environ["SOP_TEST_RUNS"].split(",")):
        if time.monotonic() > deadline:
            raise RuntimeError("the other runs never started")
        time.sleep(0.05)
    met.append(True)
"""


def meet_env(run: str, *runs: str) -> dict[str, str]:
    """The environment that tells MEET this process is ``run``, one of ``runs``."""
    return {"SOP_TEST_RUN": run, "SOP_TEST_RUNS": ",".join(runs)}


# -- 1. two concurrent parallel runs on one pool ----------------------------------------------

POOL = (
    "devices:\n"
    + fake_device("dev-a")
    + fake_device("dev-b")
    + fake_device("dev-c")
    + """\
accounts:
  - id: acc-pinned
    role: member
    devices: [dev-a]
    fields: {user: pinned}
  - id: acc-2
    role: member
    fields: {user: two}
  - id: acc-3
    role: member
    fields: {user: three}
"""
)

POOL_SOPS = {
    # 4 cases, no account: any device
    "browse.sop.yaml": """\
id: browse
inputs: [{id: r1}, {id: r2}, {id: r3}, {id: r4}]
steps:
  - wait: 0.6
  - assert_visible: {id: username}
""",
    # 3 cases, one per account: sign-in[acc-pinned] may only run on dev-a
    "sign-in.sop.yaml": """\
id: sign-in
requires:
  account: {role: member, each: true}
steps:
  - type: {into: {id: username}, text: "${account.user}"}
  - wait: 0.6
  - assert_text: {in: {id: username}, equals: "${account.user}"}
""",
    # 2 cases that need the pinned account, hence dev-a
    "pinned.sop.yaml": """\
id: pinned
requires:
  account: {id: acc-pinned}
inputs: [{id: p1}, {id: p2}]
steps:
  - wait: 0.6
  - note: on ${device.id}
""",
}
POOL_CASES = 9


def test_two_concurrent_xdist_runs_never_share_a_device_or_account(pytester: pytest.Pytester, appium_url: str) -> None:
    # MEET: the runs' cases start together, however long either run took to start its workers.
    write_suite(pytester.path, POOL, {**POOL_SOPS, "conftest.py": MEET})
    lock_dir = pytester.path / "locks"
    runs = {"n4": "4", "n2": "2"}
    procs: dict[str, subprocess.Popen[str]] = {}
    for run, workers in runs.items():
        cmd = pytest_cmd(
            "-n", workers, "--sop-appium", appium_url, f"-o=sop_lock_dir={lock_dir}",
            f"--sop-audit={pytester.path / f'audit-{run}.jsonl'}", "--sop-lease-timeout=300",
        )  # fmt: skip
        procs[run] = subprocess.Popen(
            cmd, cwd=pytester.path, env=clean_env(**meet_env(run, *runs)), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    outputs = {}
    try:
        for run, proc in procs.items():
            outputs[run] = proc.communicate(timeout=600)[0]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    holds: list[Hold] = []
    for run, proc in procs.items():
        out = outputs[run]
        assert proc.returncode == 0, out
        assert summary_counts(out) == {"passed": POOL_CASES}, out
        log = pytester.path / f"audit-{run}.jsonl"
        assert verify(log).ok, verify(log)
        events = read_events(log)
        outcomes = {(e["case"], e["phase"]): e["outcome"] for e in events if e["event"] == "outcome"}
        assert len(outcomes) == POOL_CASES and set(outcomes.values()) == {"passed"}, outcomes
        assert {phase for _, phase in outcomes} == {"call"}
        run_holds = holds_from(run, events)
        assert len(run_holds) == POOL_CASES and all(h.end is not None for h in run_holds), run_holds
        assert {h.case for h in run_holds} == {case for case, _ in outcomes}
        # xdist really spread the run: more than one worker took leases
        assert len({e["worker"] for e in events if e["event"] == "lease"}) > 1
        holds += run_holds

    # The two runs really ran at the same time: some hold of one overlaps a hold of the other.
    n4 = [h for h in holds if h.run == "n4"]
    n2 = [h for h in holds if h.run == "n2"]
    assert any(a.start < b.inner_end and b.start < a.inner_end for a in n4 for b in n2), "the runs did not overlap"

    for key in ("device", "account"):
        clashes, worst_outer = overlaps(holds, key)
        assert not clashes, f"{key} held by two cases at once:\n" + "\n".join(f"  {a}\n  {b}" for a, b in clashes)
        # "release" is recorded while the lease is still held, so whole lease -> release intervals
        # of one resource never overlap either: the audit log proves exclusivity on its own.
        assert worst_outer <= 0.0, f"{key}: lease -> release intervals overlap by {worst_outer:.3f} s"

    # Affinity: the pinned account only ever ran on its device, and it did run (3 cases per run).
    pinned = [h for h in holds if h.account == "acc-pinned"]
    assert len(pinned) == 6 and {h.device for h in pinned} == {"dev-a"}, pinned
    # Cases really contended for the pool: some waited for a lease.
    assert max(h.waited for h in holds) > 0.05
    # Every device was used: the pool was shared, not serialised on one phone.
    assert {h.device for h in holds} == {"dev-a", "dev-b", "dev-c"}


# -- 2. a worker that dies mid-case ----------------------------------------------------------

DIE_CONFTEST = """\
import os
from pathlib import Path

from pytest_sop.actions import ActionSpec

MARKER = Path(__file__).with_name("died-once")


def die_once(ctx):
    if not MARKER.exists():
        MARKER.write_text(str(os.getpid()))
        os._exit(3)


def pytest_sop_actions():
    return [ActionSpec("die_once", "Kill this process, the first time only.", run=die_once)]
"""


CRASH_CASE = "a-crash.sop.yaml::crash"


@dataclass
class CrashRun:
    returncode: int
    out: str
    events: list[Event]
    died_pid: int
    leftover_sessions: set[str]  # open on Appium after the run (closed since)


@pytest.fixture(scope="module")
def crash_run(appium_server: ManagedAppium, tmp_path_factory: pytest.TempPathFactory) -> CrashRun:
    """``-n 2`` on one device; the first case's worker calls ``os._exit(3)`` in a step."""
    path = tmp_path_factory.mktemp("crash")
    write_suite(
        path,
        "devices:\n" + fake_device("dev-a"),
        {
            "conftest.py": DIE_CONFTEST,
            # The first item: xdist hands items 0-1 to one worker and 2-3 to the other, so the
            # dying worker's second case is rescheduled, and needs dev-a after the crash.
            "a-crash.sop.yaml": "id: crash\nsteps:\n  - wait: 0.2\n  - die_once\n  - wait: 5\n",
            "b-work.sop.yaml": (
                "id: work\ninputs: [{id: w1}, {id: w2}, {id: w3}, {id: w4}, {id: w5}]\n"
                "steps:\n  - wait: 0.3\n  - assert_visible: {id: username}\n"
            ),
        },
    )
    audit = path / "audit.jsonl"
    try:
        proc = subprocess.run(
            pytest_cmd(
                "-n", "2", "-rA", "--sop-appium", appium_server.url, f"-o=sop_lock_dir={path / 'locks'}",
                f"--sop-audit={audit}", "--sop-lease-timeout=30",
            ),
            cwd=path, env=clean_env(), capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        leftover = close_leftover_sessions(appium_server.url, audit)
    marker = path / "died-once"
    died_pid = int(marker.read_text()) if marker.exists() else 0
    return CrashRun(proc.returncode, proc.stdout + proc.stderr, read_events(audit), died_pid, leftover)


def test_worker_dying_mid_case_frees_its_device(crash_run: CrashRun) -> None:
    out = crash_run.out
    assert crash_run.returncode == 1, out
    assert summary_counts(out) == {"failed": 1, "passed": 5}, out
    assert re.search(rf"worker 'gw\d' crashed while running '{re.escape(CRASH_CASE)}'", out), out
    assert re.search(r"\[gw\d\] node down: Not properly terminated", out), out
    assert f"FAILED {CRASH_CASE}" in out, out
    assert crash_run.died_pid > 0, "the die_once action never ran"

    events = crash_run.events
    crash = [e for e in events if e.get("case") == CRASH_CASE]
    assert [e["event"] for e in crash[:2]] == ["lease", "session"], crash
    crash_lease, crash_session = crash[0], crash[1]
    assert crash_lease["device"] == "dev-a" and int(crash_lease["pid"]) == crash_run.died_pid
    assert not [e for e in crash if e["event"] == "release" and int(e["pid"]) == crash_run.died_pid]

    leases = {e["case"]: e for e in events if e["event"] == "lease"}
    work = {c: e for c, e in leases.items() if c.startswith("b-work")}
    assert len(work) == 5 and all(e["device"] == "dev-a" for e in work.values()), work
    outcomes = {e["case"]: e["outcome"] for e in events if e["event"] == "outcome" and e["case"] != CRASH_CASE}
    assert outcomes == dict.fromkeys(work, "passed"), outcomes
    # The dead worker never released dev-a: the kernel did, and later cases of live workers leased it.
    after = [e for e in work.values() if ts(e) > ts(crash_lease)]
    assert after, "no case leased dev-a after the crash"
    assert all(int(e["pid"]) != crash_run.died_pid for e in after)
    # Its Appium session was the only one left open (the fixture closed it for the next tests).
    assert crash_run.leftover_sessions == {crash_session["session"]}


def test_crashed_case_outcome_is_in_the_audit_log(crash_run: CrashRun) -> None:
    outcomes = [e for e in crash_run.events if e["event"] == "outcome" and e.get("case") == CRASH_CASE]
    assert [e["outcome"] for e in outcomes] in (["failed"], ["error"]), outcomes
    assert "crashed" in outcomes[0]["message"]


# -- 3. lease timeout ------------------------------------------------------------------------


def test_lease_timeout_is_a_setup_error_naming_the_holder(pytester: pytest.Pytester, appium_url: str) -> None:
    write_suite(
        pytester.path,
        "devices:\n" + fake_device("dev-only"),
        {"s.sop.yaml": "id: s\nsteps:\n  - wait: 0.1\n  - assert_visible: {id: username}\n"},
    )
    lock_dir = pytester.path / "locks"
    audit = pytester.path / "audit.jsonl"
    config = load_config(str(pytester.path / "sop.yaml"))
    pool = LeasePool(lock_dir, "outer-run", "outer-op", None)
    lease = pool.acquire([(config.devices[0], None)], case="outer::holder-case", timeout=0, requirement="test")
    try:
        started = time.monotonic()
        result = pytester.runpytest_subprocess(
            "--sop", "-p", "no:cacheprovider", "--sop-appium", appium_url, "--sop-lease-timeout", "0.5",
            f"-o=sop_lock_dir={lock_dir}", f"--sop-audit={audit}",
        )  # fmt: skip
        elapsed = time.monotonic() - started
    finally:
        lease.release()
    result.assert_outcomes(errors=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of*",
            "*no device free for device any within 0.5 s*",
            f"*device dev-only: held by case outer::holder-case (pid {os.getpid()} on *operator outer-op, run outer-run*",
        ]
    )
    assert elapsed < 30
    events = [e for e in read_events(audit) if e.get("case") == "s.sop.yaml::s"]
    assert [e["event"] for e in events] == ["outcome"], events
    assert (events[0]["phase"], events[0]["outcome"]) == ("setup", "error")
    # no session was created (the appium_url fixture checks the server has none open, too)
    assert open_session_ids(appium_url) == set()


def test_lease_timeout_report_is_the_message_not_a_pytest_traceback(pytester: pytest.Pytester) -> None:
    write_suite(pytester.path, "devices:\n" + fake_device("dev-only"), {"s.sop.yaml": "id: s\nsteps:\n  - wait: 0.1\n"})
    lock_dir = pytester.path / "locks"
    config = load_config(str(pytester.path / "sop.yaml"))
    lease = LeasePool(lock_dir, "outer-run", "outer-op", None).acquire(
        [(config.devices[0], None)], case="outer::holder-case", timeout=0, requirement="test"
    )
    try:
        # Appium is never reached: the case stops at its lease.
        result = pytester.runpytest(
            "--sop", "-p", "no:cacheprovider", "--sop-appium", "http://127.0.0.1:9", "--sop-lease-timeout", "0",
            f"-o=sop_lock_dir={lock_dir}",
        )  # fmt: skip
    finally:
        lease.release()
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    section = out[out.index("ERROR at setup of") : out.index("short test summary info")]
    assert "device dev-only: held by case outer::holder-case" in section
    assert "_pytest" not in section and "pluggy" not in section, section


# -- 4. pytest-sop leases while a run holds, and after it is killed --------------------------

LEASES_CONFIG = (
    "devices:\n"
    + fake_device("dev-a")
    + fake_device("dev-b")
    + """\
accounts:
  - id: acc-1
    role: member
    devices: [dev-a]
    fields: {user: holder, pin: {env: HOLD_PIN}}
"""
)
SECRET = "s3cr3t-pin-4711"


def leases_table(pytester: pytest.Pytester, lock_dir: Path) -> dict[tuple[str, str], list[str]]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_sop", "leases", "--config", "sop.yaml", "--lock-dir", str(lock_dir)],
        cwd=pytester.path, env=clean_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["KIND", "ID", "STATE"], proc.stdout
    return {(cells[0], cells[1]): cells[2:] for cells in (line.split() for line in lines[1:])}


def test_leases_command_shows_the_holding_case_then_free_after_kill_9(
    pytester: pytest.Pytester, appium_url: str
) -> None:
    write_suite(
        pytester.path,
        LEASES_CONFIG,
        {
            "hold.sop.yaml": (
                "id: hold\nrequires:\n  account: {id: acc-1}\nsteps:\n"
                "  - type: {into: {id: password}, text: '${account.pin}'}\n  - wait: 60\n"
            )
        },
    )
    lock_dir = pytester.path / "locks"
    audit = pytester.path / "audit.jsonl"
    proc = subprocess.Popen(
        pytest_cmd("--sop-appium", appium_url, f"-o=sop_lock_dir={lock_dir}", f"--sop-audit={audit}", "--sop-operator=op-4"),
        cwd=pytester.path, env=clean_env(HOLD_PIN=SECRET), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    session_id = None
    try:
        deadline = time.monotonic() + 60
        while session_id is None:  # the secret is typed, and the case is in its long wait
            assert proc.poll() is None, f"the holding run ended early ({proc.returncode})"
            assert time.monotonic() < deadline, "the holding run did not reach its wait step"
            events = read_events(audit)
            if any(e["event"] == "step_start" and e["step"].startswith("wait") for e in events):
                session_id = next(e["session"] for e in events if e["event"] == "session")
            else:
                time.sleep(0.1)

        held = leases_table(pytester, lock_dir)
        for key in (("device", "dev-a"), ("account", "acc-1")):
            state, case, operator, pid, *_ = held[key]
            assert (state, case, operator, int(pid)) == ("held", "hold.sop.yaml::hold", "op-4", proc.pid), held
        assert held[("device", "dev-b")][0] == "free", held
        for record in lock_dir.iterdir():
            assert SECRET not in record.read_text(errors="replace"), record
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        leftover = close_leftover_sessions(appium_url, audit)
    assert proc.returncode == -signal.SIGKILL
    assert leftover == {session_id}  # the killed run's session, now closed for the next tests

    freed = leases_table(pytester, lock_dir)
    assert freed[("device", "dev-a")][:2] == ["free", "-"], freed
    assert freed[("account", "acc-1")][:2] == ["free", "-"], freed
    # The dead holder's records are still there: the table is right despite them.
    stale = json.loads(holder_path(lock_dir, "device", "dev-a").read_text())
    assert stale["pid"] == proc.pid and stale["case"] == "hold.sop.yaml::hold"
