"""The run ledger: exceptions opened, counted, escalated, resolved and re-opened; schedules; many writers."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pytest_sop.errors import SopError
from pytest_sop.ledger import SCHEMA_VERSION, ExceptionRecord, Ledger, LedgerError, format_exceptions

CASE = "sops/a.sop.yaml::publish-post[cat-publisher-1]"
OTHER = "sops/b.sop.yaml::login[cat-reader-2]"
T0 = datetime(2026, 5, 9, 7, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def record(
    ledger: Ledger,
    outcome: str,
    *,
    case: str = CASE,
    minute: int = 0,
    message: str | None = None,
    owner: str | None = "alice",
    escalate_to: str | None = "ops-oncall",
    evidence: str | None = "allure-results/r1-result.json",
    escalate_after: int = 3,
    run_id: str = "run-1",
    operator: str = "bob",
) -> ExceptionRecord | None:
    return ledger.record_outcome(
        case=case,
        sop="publish-post",
        owner=owner,
        escalate_to=escalate_to,
        outcome=outcome,
        message=message if message is not None else f"{outcome} at minute {minute}",
        evidence=evidence,
        run_id=run_id,
        operator=operator,
        device="pixel-7",
        account="cat-publisher-1",
        at=at(minute),
        escalate_after=escalate_after,
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / ".sop" / "ledger.sqlite")


# --- the file ---------------------------------------------------------------------------------------


def test_file_is_created_in_wal_mode_with_a_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "ledger.sqlite"
    Ledger(path)
    assert path.is_file()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()
    assert {"runs", "exceptions", "exception_events"} <= tables
    Ledger(path)  # opening again keeps what is there


def test_ledger_from_a_newer_version_or_not_a_database_is_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite"
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(LedgerError, match="newer"):
        Ledger(newer)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SopError, match=r"junk\.sqlite"):
        Ledger(junk)


def test_create_false_refuses_a_missing_ledger(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="no run ledger"):
        Ledger(tmp_path / "nope.sqlite", create=False)
    assert not (tmp_path / "nope.sqlite").exists()


# --- runs and exceptions ------------------------------------------------------------------------------


def test_every_outcome_is_a_run_row(ledger: Ledger) -> None:
    for n, outcome in enumerate(["passed", "failed", "broken", "skipped", "awaiting"]):
        record(ledger, outcome, minute=n, run_id=f"run-{n}")
    runs = ledger.runs(case=CASE)
    assert [r.outcome for r in runs] == ["passed", "failed", "broken", "skipped", "awaiting"]
    first = runs[0]
    assert (first.case, first.sop, first.operator, first.device, first.account) == (
        CASE,
        "publish-post",
        "bob",
        "pixel-7",
        "cat-publisher-1",
    )
    assert first.at == at(0)
    assert first.message == "passed at minute 0"
    assert [r.run_id for r in ledger.runs(run_id="run-3")] == ["run-3"]


def test_passed_and_skipped_open_nothing(ledger: Ledger) -> None:
    assert record(ledger, "passed") is None
    assert record(ledger, "skipped", message="not permitted: role reader") is None
    assert ledger.exceptions() == []
    assert len(ledger.runs()) == 2


def test_failure_opens_an_exception_and_recurrences_count(ledger: Ledger) -> None:
    first = record(ledger, "failed", minute=1, message="expected 'Posted' but found 'Error 500'")
    assert first is not None
    assert (first.case, first.sop, first.owner, first.status) == (CASE, "publish-post", "alice", "open")
    assert (first.count, first.failures_in_row) == (1, 1)
    assert first.first_seen == first.last_seen == at(1)
    assert first.last_error == "expected 'Posted' but found 'Error 500'"
    assert first.evidence == "allure-results/r1-result.json"
    assert first.escalated_to is None
    assert first.changes == ("opened",)

    second = record(ledger, "broken", minute=5, message="device offline", evidence="allure-results/r2-result.json")
    assert second is not None
    assert second.id == first.id
    assert (second.count, second.failures_in_row) == (2, 2)
    assert second.first_seen == at(1)
    assert second.last_seen == at(5)
    assert second.last_error == "device offline"
    assert second.evidence == "allure-results/r2-result.json"
    assert second.changes == ("recurred",)
    assert ledger.exceptions() == [second]  # one exception per case


def test_passed_resets_failures_in_row_but_leaves_the_exception_open(ledger: Ledger) -> None:
    record(ledger, "failed", minute=1)
    record(ledger, "failed", minute=2)
    after = record(ledger, "passed", minute=3)
    assert after is not None
    assert (after.status, after.failures_in_row, after.count) == ("open", 0, 2)
    assert after.last_seen == at(2)  # a pass is not an occurrence
    assert after.changes == ("reset",)
    assert [e.status for e in ledger.exceptions(open_only=True)] == ["open"]


def test_three_failures_in_a_row_escalate_to_escalate_to(ledger: Ledger) -> None:
    record(ledger, "failed", minute=1)
    two = record(ledger, "broken", minute=2)
    assert two is not None and (two.status, two.escalated_to) == ("open", None)
    three = record(ledger, "failed", minute=3)
    assert three is not None
    assert (three.status, three.escalated_to, three.escalated_at) == ("escalated", "ops-oncall", at(3))
    assert three.failures_in_row == 3
    assert three.changes == ("recurred", "escalated")
    four = record(ledger, "failed", minute=4)
    assert four is not None
    assert (four.status, four.escalated_to, four.escalated_at) == ("escalated", "ops-oncall", at(3))
    assert four.changes == ("recurred",)  # escalated once, not on every later failure
    assert [e.kind for e in ledger.history(three.id)] == ["opened", "recurred", "recurred", "escalated", "recurred"]
    # a pass does not de-escalate
    five = record(ledger, "passed", minute=5)
    assert five is not None and (five.status, five.failures_in_row) == ("escalated", 0)


def test_two_failures_a_pass_and_one_failure_do_not_escalate(ledger: Ledger) -> None:
    record(ledger, "failed", minute=1)
    record(ledger, "failed", minute=2)
    record(ledger, "passed", minute=3)
    after = record(ledger, "failed", minute=4)
    assert after is not None
    assert (after.status, after.escalated_to, after.failures_in_row, after.count) == ("open", None, 1, 3)
    assert ledger.exceptions(escalated_only=True) == []


def test_escalation_target_falls_back_to_the_owner_then_unassigned(ledger: Ledger) -> None:
    got = record(ledger, "failed", escalate_to=None, owner="alice", escalate_after=1)
    assert got is not None and (got.status, got.escalated_to) == ("escalated", "alice")
    assert got.changes == ("opened", "escalated")
    nobody = record(ledger, "failed", case=OTHER, escalate_to=None, owner=None, escalate_after=1)
    assert nobody is not None and nobody.escalated_to == "unassigned"


def test_escalate_after_is_configurable(ledger: Ledger) -> None:
    for minute in range(4):
        got = record(ledger, "failed", minute=minute, escalate_after=5)
        assert got is not None and got.status == "open"
    got = record(ledger, "failed", minute=4, escalate_after=5)
    assert got is not None and got.status == "escalated"
    with pytest.raises(ValueError, match="escalate_after"):
        record(ledger, "failed", escalate_after=0)


def test_awaiting_opens_an_exception_but_does_not_count_toward_escalation(ledger: Ledger) -> None:
    for minute in range(5):
        got = record(ledger, "awaiting", minute=minute, message="awaiting approval: publish")
        assert got is not None
    assert got is not None
    assert (got.status, got.count, got.failures_in_row, got.escalated_to) == ("open", 5, 0, None)
    assert got.last_error == "awaiting approval: publish"
    # awaiting neither counts nor breaks a row of failures
    record(ledger, "failed", minute=10)
    record(ledger, "failed", minute=11)
    mid = record(ledger, "awaiting", minute=12)
    assert mid is not None and (mid.status, mid.failures_in_row) == ("open", 2)
    third = record(ledger, "broken", minute=13)
    assert third is not None and (third.status, third.failures_in_row) == ("escalated", 3)


def test_resolve_then_recurrence_reopens_the_same_exception(ledger: Ledger) -> None:
    for minute in range(3):
        record(ledger, "failed", minute=minute, operator="bob")
    escalated = ledger.exceptions()[0]
    assert escalated.status == "escalated"

    done = ledger.resolve(escalated.id, by="carol", note="fixed the publish button", at=at(10))
    assert (done.status, done.resolved_by, done.resolved_note, done.resolved_at) == (
        "resolved",
        "carol",
        "fixed the publish button",
        at(10),
    )
    assert done.failures_in_row == 0
    assert ledger.exceptions(open_only=True) == []
    assert ledger.exceptions(status="resolved") == [done]
    assert record(ledger, "passed", minute=11) is None  # nothing unresolved to touch
    with pytest.raises(SopError, match="already resolved"):
        ledger.resolve(escalated.id, by="carol", note="again")

    again = record(ledger, "broken", minute=20, message="crashed on launch", operator="dave")
    assert again is not None
    assert again.id == escalated.id
    assert (again.status, again.count, again.failures_in_row) == ("open", 1, 1)
    assert again.first_seen == again.last_seen == at(20)
    assert (again.escalated_to, again.escalated_at) == (None, None)
    assert (again.resolved_by, again.resolved_note, again.resolved_at) == (None, None, None)
    assert again.changes == ("reopened",)
    assert len(ledger.exceptions()) == 1

    events = ledger.history(again.id)
    assert [e.kind for e in events] == ["opened", "recurred", "recurred", "escalated", "resolved", "reopened"]
    assert [e.actor for e in events] == ["bob", "bob", "bob", "bob", "carol", "dave"]
    assert events[3].detail == "to ops-oncall after 3 failures in a row"
    assert events[4].detail == "fixed the publish button"
    assert (events[5].at, events[5].detail) == (at(20), "broken: crashed on launch")

    # the reopened exception escalates again after another three
    record(ledger, "failed", minute=21)
    third = record(ledger, "failed", minute=22)
    assert third is not None and (third.status, third.escalated_to) == ("escalated", "ops-oncall")


def test_resolving_an_unknown_id_is_a_sop_error(ledger: Ledger) -> None:
    with pytest.raises(SopError, match="no exception with id 42"):
        ledger.resolve(42, by="carol", note="n/a")
    with pytest.raises(SopError, match="no exception with id 42"):
        ledger.get(42)
    got = record(ledger, "failed")
    assert got is not None
    with pytest.raises(SopError, match="--by"):
        ledger.resolve(got.id, by="  ", note="who?")
    assert ledger.get(got.id).status == "open"


def test_filters_and_order(ledger: Ledger) -> None:
    third = "sops/c.sop.yaml::x[y]"
    record(ledger, "failed", case=CASE, minute=1)
    record(ledger, "failed", case=OTHER, minute=2, escalate_after=1)
    record(ledger, "failed", case=third, minute=3)
    record(ledger, "failed", case=CASE, minute=4)
    ledger.resolve(ledger.exceptions()[-1].id, by="carol", note="ok")  # the oldest last_seen: OTHER
    assert [e.case for e in ledger.exceptions()] == [CASE, third, OTHER]
    assert [e.case for e in ledger.exceptions(open_only=True)] == [CASE, third]
    assert [e.case for e in ledger.exceptions(status="open")] == [CASE, third]
    assert ledger.exceptions(escalated_only=True) == []
    assert [e.case for e in ledger.exceptions(status="resolved")] == [OTHER]
    with pytest.raises(ValueError, match="status"):
        ledger.exceptions(status="closed")
    with pytest.raises(ValueError, match="one of"):
        ledger.exceptions(open_only=True, escalated_only=True)


def test_bad_arguments_are_refused(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="unknown outcome"):
        record(ledger, "xfailed")
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.record_outcome(
            case=CASE,
            sop="s",
            owner=None,
            escalate_to=None,
            outcome="failed",
            message="m",
            evidence=None,
            run_id="r",
            operator="o",
            device=None,
            account=None,
            at=datetime(2026, 1, 1),
        )
    assert ledger.runs() == []  # nothing half-written


def test_only_what_is_passed_is_stored(ledger: Ledger) -> None:
    got = record(ledger, "failed", message="login failed for user ***", evidence=None)
    assert got is not None
    assert (got.last_error, got.evidence) == ("login failed for user ***", None)
    again = record(ledger, "failed", minute=1, message="still ***", evidence="allure/x.json")
    assert again is not None and again.evidence == "allure/x.json"
    kept = record(ledger, "failed", minute=2, message="", evidence=None)
    assert kept is not None and (kept.last_error, kept.evidence) == ("", "allure/x.json")  # latest known evidence
    assert [r.message for r in ledger.runs()] == ["login failed for user ***", "still ***", ""]


def test_json_has_the_required_keys(ledger: Ledger) -> None:
    record(ledger, "failed", minute=1)
    record(ledger, "failed", minute=2)
    record(ledger, "failed", minute=3)
    [exc] = ledger.exceptions()
    data = json.loads(json.dumps([e.to_json() for e in ledger.exceptions()]))
    assert data == [
        {
            "id": exc.id,
            "case": CASE,
            "sop": "publish-post",
            "owner": "alice",
            "status": "escalated",
            "first_seen": "2026-05-09T07:01:00.000000Z",
            "last_seen": "2026-05-09T07:03:00.000000Z",
            "count": 3,
            "failures_in_row": 3,
            "last_error": "failed at minute 3",
            "evidence": "allure-results/r1-result.json",
            "escalated_to": "ops-oncall",
            "escalated_at": "2026-05-09T07:03:00.000000Z",
            "resolved_by": None,
            "resolved_note": None,
            "resolved_at": None,
        }
    ]


def test_format_exceptions_is_a_table(ledger: Ledger) -> None:
    assert format_exceptions([]) == "no exceptions"
    record(ledger, "failed", minute=1, message="boom\nwith a second line " + "x" * 200)
    for minute in range(3):
        record(ledger, "broken", case=OTHER, minute=2 + minute, message="device offline")
    text = format_exceptions(ledger.exceptions())
    lines = text.splitlines()
    assert len(lines) == 3
    assert lines[0].split() == ["ID", "STATUS", "CASE", "COUNT", "LAST", "SEEN", "ESCALATED", "TO", "LAST", "ERROR"]
    assert OTHER in lines[1] and "escalated" in lines[1] and "ops-oncall" in lines[1]
    assert "2026-05-09 07:04:00Z" in lines[1] and "device offline" in lines[1]
    assert CASE in lines[2] and " open " in lines[2] and "boom with a second line" in lines[2]
    assert lines[2].endswith("…") and "x" * 60 not in lines[2]
    status_col = lines[0].index("STATUS")
    assert lines[1][status_col:].startswith("escalated") and lines[2][status_col:].startswith("open")


# --- schedules ------------------------------------------------------------------------------------


def test_last_passed_and_due(ledger: Ledger) -> None:
    assert ledger.last_passed(CASE) is None
    assert ledger.due(CASE, 1800, at(0))  # never passed
    record(ledger, "passed", minute=10)
    record(ledger, "failed", minute=20)
    record(ledger, "skipped", minute=25)
    record(ledger, "passed", case=OTHER, minute=50)
    assert ledger.last_passed(CASE) == at(10)
    assert ledger.last_passes() == {CASE: at(10), OTHER: at(50)}
    assert ledger.last_passes([OTHER, "never"]) == {OTHER: at(50)}
    assert not ledger.due(CASE, 30 * 60, at(39))  # passed 29 minutes ago, schedule 30m
    assert ledger.due(CASE, 30 * 60, at(40))
    assert ledger.due(CASE, None, at(11))  # no schedule: always due
    assert ledger.due(CASE, 60)  # default now: T0 + 10 minutes is long past
    assert not ledger.due(CASE, 100 * 365 * 86400)
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.due(CASE, 60, datetime(2026, 5, 9, 8))


# --- many writers -----------------------------------------------------------------------------------

WORKERS = 6
CALLS = 100
SHARED = [f"sops/shared.sop.yaml::case[{k}]" for k in range(4)]
CYCLE = ["failed", "passed", "broken", "awaiting", "failed", "skipped", "failed"]


def _write_many(path: str, worker: int, barrier: Any) -> None:
    barrier.wait()  # all workers open (and create) the fresh file at once
    ledger = Ledger(path)
    for n in range(CALLS):
        ledger.record_outcome(
            case=SHARED[(n // 2) % len(SHARED)] if n % 2 else f"sops/own.sop.yaml::case[w{worker}]",
            sop="shared",
            owner="alice",
            escalate_to="ops",
            outcome=CYCLE[(n + worker) % len(CYCLE)],
            message=f"w{worker} n{n}",
            evidence=None,
            run_id=f"w{worker}",
            operator=f"op{worker}",
            device=None,
            account=None,
        )


def test_many_processes_write_without_locking_errors(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    procs = [ctx.Process(target=_write_many, args=(str(path), w, barrier)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * WORKERS  # a "database is locked" would have killed a worker

    ledger = Ledger(path)
    runs = ledger.runs()
    assert len(runs) == WORKERS * CALLS
    for w in range(WORKERS):
        assert [r.message for r in runs if r.run_id == f"w{w}"] == [f"w{w} n{n}" for n in range(CALLS)]
    # every occurrence was counted exactly once: no lost update between writers
    for exc in ledger.exceptions():
        occurrences = [r for r in runs if r.case == exc.case and r.outcome in {"failed", "broken", "awaiting"}]
        assert exc.count == len(occurrences), exc.case
        assert exc.last_seen == max(r.at for r in occurrences)
        assert [e.kind for e in ledger.history(exc.id)].count("opened") == 1
    assert {e.case for e in ledger.exceptions()} >= set(SHARED)
    # the writers really overlapped
    switches = sum(1 for a, b in itertools.pairwise(runs) if a.run_id != b.run_id)
    assert switches > WORKERS
