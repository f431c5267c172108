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
    escalate_on: tuple[str, ...] = ("failed",),
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
        escalate_on=escalate_on,
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
    # a broken run is an occurrence, counted apart, and not a product failure in a row
    assert (second.count, second.failed, second.broken, second.failures_in_row) == (2, 1, 1, 1)
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
    two = record(ledger, "failed", minute=2)
    assert two is not None and (two.status, two.escalated_to) == ("open", None)
    three = record(ledger, "failed", minute=3)
    assert three is not None
    assert (three.status, three.escalated_to, three.escalated_at) == ("escalated", "ops-oncall", at(3))
    assert (three.failures_in_row, three.escalated_to_source) == (3, "escalate_to")
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
    third = record(ledger, "failed", minute=13)
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
    assert (again.status, again.count, again.failed, again.broken, again.failures_in_row) == ("open", 1, 0, 1, 0)
    assert again.first_seen == again.last_seen == at(20)
    assert (again.escalated_to, again.escalated_to_source, again.escalated_at) == (None, None, None)
    assert (again.resolved_by, again.resolved_note, again.resolved_at) == (None, None, None)
    assert again.changes == ("reopened",)
    assert len(ledger.exceptions()) == 1

    events = ledger.history(again.id)
    assert [e.kind for e in events] == ["opened", "recurred", "recurred", "escalated", "resolved", "reopened"]
    assert [e.actor for e in events] == ["bob", "bob", "bob", "bob", "carol", "dave"]
    assert events[3].detail == "to ops-oncall after 3 failures in a row"
    assert events[4].detail == "fixed the publish button"
    assert (events[5].at, events[5].detail) == (at(20), "broken: crashed on launch")

    # the reopened exception escalates again after another three product failures
    record(ledger, "failed", minute=21)
    record(ledger, "failed", minute=22)
    third = record(ledger, "failed", minute=23)
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
            "failed": 3,
            "broken": 0,
            "failures_in_row": 3,
            "last_error": "failed at minute 3",
            "evidence": "allure-results/r1-result.json",
            "escalated_to": "ops-oncall",
            "escalated_to_source": "escalate_to",
            "escalated_at": "2026-05-09T07:03:00.000000Z",
            "resolved_by": None,
            "resolved_note": None,
            "resolved_at": None,
        }
    ]


def test_format_exceptions_is_a_table(ledger: Ledger) -> None:
    assert format_exceptions([]) == "no exceptions"
    record(ledger, "failed", minute=1, message="boom with a long line " + "x" * 200 + "\nand a second line")
    for minute in range(3):
        record(ledger, "failed", case=OTHER, minute=2 + minute, message="no 'Posted'", escalate_to=None)
    record(ledger, "broken", case=OTHER, minute=5, message="device offline")
    text = format_exceptions(ledger.exceptions())
    lines = text.splitlines()
    assert len(lines) == 3
    assert lines[0].split() == [
        "ID", "STATUS", "CASE", "COUNT", "FAILED", "BROKEN", "LAST", "SEEN", "ESCALATED", "TO", "LAST", "ERROR"
    ]  # fmt: skip
    # 4 occurrences: 3 product failures, 1 infrastructure failure; escalated to the owner, and it says so
    assert lines[1].split()[2:6] == [OTHER, "4", "3", "1"]
    assert OTHER in lines[1] and "escalated" in lines[1] and "alice (owner)" in lines[1]
    assert "2026-05-09 07:05:00Z" in lines[1] and "device offline" in lines[1]
    assert CASE in lines[2] and " open " in lines[2] and "boom with a long line" in lines[2]
    assert lines[2].endswith("…") and "x" * 60 not in lines[2] and "second line" not in lines[2]
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
        if n and n % (CALLS // 5) == 0:
            barrier.wait()  # and meet again four times: a worker fast enough may otherwise write all its rows alone
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
        assert exc.failed == sum(r.outcome == "failed" for r in occurrences), exc.case
        assert exc.broken == sum(r.outcome == "broken" for r in occurrences), exc.case
        assert exc.last_seen == max(r.at for r in occurrences)
        assert [e.kind for e in ledger.history(exc.id)].count("opened") == 1
    assert {e.case for e in ledger.exceptions()} >= set(SHARED)
    # the writers really overlapped
    switches = sum(1 for a, b in itertools.pairwise(runs) if a.run_id != b.run_id)
    assert switches > WORKERS


# --- product and infrastructure failures; the whole message; the owner fallback ----------------------


def test_broken_runs_are_counted_apart_and_do_not_escalate_by_default(ledger: Ledger) -> None:
    """Device, session or server trouble says nothing about the product: it does not page anyone."""
    for minute in range(5):
        got = record(ledger, "broken", minute=minute, message="the Appium server went away")
    assert got is not None
    assert (got.status, got.count, got.failed, got.broken, got.failures_in_row) == ("open", 5, 0, 5, 0)
    # nor does it break a row of product failures
    record(ledger, "failed", minute=10)
    record(ledger, "failed", minute=11)
    mid = record(ledger, "broken", minute=12)
    assert mid is not None and (mid.status, mid.failures_in_row) == ("open", 2)
    third = record(ledger, "failed", minute=13)
    assert third is not None and (third.status, third.failed, third.broken, third.failures_in_row) == (
        "escalated",
        3,
        6,
        3,
    )
    assert ledger.history(third.id)[-1].detail == "to ops-oncall after 3 failures in a row"


def test_escalate_on_failed_and_broken(ledger: Ledger) -> None:
    both = ("failed", "broken")
    record(ledger, "broken", minute=1, escalate_on=both)
    record(ledger, "failed", minute=2, escalate_on=both)
    three = record(ledger, "broken", minute=3, escalate_on=both)
    assert three is not None
    assert (three.status, three.failed, three.broken, three.failures_in_row) == ("escalated", 1, 2, 3)
    # broken alone: product failures are then what does not count
    alone = [record(ledger, "failed", case=OTHER, minute=m, escalate_on=("broken",)) for m in range(4)]
    assert alone[-1] is not None and (alone[-1].status, alone[-1].failures_in_row) == ("open", 0)


@pytest.mark.parametrize("bad", [(), ("awaiting",), ("failed", "passed"), "failed"])
def test_escalate_on_is_checked(ledger: Ledger, bad: Any) -> None:
    with pytest.raises(ValueError, match="escalate_on must be some of failed, broken"):
        record(ledger, "failed", escalate_on=bad)
    assert ledger.runs() == []


def test_escalation_to_the_owner_says_it_is_the_fallback(ledger: Ledger) -> None:
    got = record(ledger, "failed", escalate_to=None, owner="social-ops", escalate_after=1)
    assert got is not None and (got.escalated_to, got.escalated_to_source) == ("social-ops", "owner")
    assert got.to_json()["escalated_to_source"] == "owner"
    assert ledger.history(got.id)[-1].detail == (
        "to social-ops (the SOP's owner; no escalate_to) after 1 failure in a row"
    )
    nobody = record(ledger, "failed", case=OTHER, escalate_to=None, owner=None, escalate_after=1)
    assert nobody is not None and (nobody.escalated_to, nobody.escalated_to_source) == ("unassigned", "none")
    assert ledger.history(nobody.id)[-1].detail == (
        "to unassigned (the SOP has no escalate_to and no owner) after 1 failure in a row"
    )
    assert "social-ops (owner)" in format_exceptions(ledger.exceptions())


FULL = """\
sops/compose-validation.sop.yaml:15: assert_visible failed in SOP 'compose-validation'

    14 |   - tap: {xpath: "//button[@id='publish']"}
>   15 |   - assert_visible: {id: compose-error}

{id: compose-error} is not found after 10s
  expected: {id: compose-error} visible
  found:    visible texts: 'Snapgram', 'pub1'"""

TRACEBACK = """\
def test_publish(sop_device):
>       assert banner == "Posted"
E       AssertionError: assert 'Error 500' == 'Posted'
E         - Posted
E         + Error 500

tests/test_publish.py:7: AssertionError"""


def test_the_whole_message_is_kept_and_one_line_views_show_its_headline(ledger: Ledger) -> None:
    got = record(ledger, "failed", message=FULL)
    assert got is not None and got.last_error == FULL
    assert got.headline == "sops/compose-validation.sop.yaml:15: assert_visible failed in SOP 'compose-validation'"
    assert ledger.runs()[0].message == FULL
    assert ledger.history(got.id)[0].detail == f"failed: {FULL}"
    py = record(ledger, "failed", case=OTHER, minute=1, message=TRACEBACK)
    assert py is not None and py.last_error == TRACEBACK
    assert py.headline == "AssertionError: assert 'Error 500' == 'Posted'"
    table = format_exceptions(ledger.exceptions(), error_width=200)
    assert "AssertionError: assert 'Error 500' == 'Posted'" in table
    assert "assert_visible failed in SOP 'compose-validation'" in table
    assert len(table.splitlines()) == 3


# --- older ledgers ----------------------------------------------------------------------------------

# The tables of a version 2 ledger as pytest-sop 0.1 wrote them (version 1: without audit_heads).
V2_TABLES = (
    """CREATE TABLE runs (id INTEGER PRIMARY KEY, case_id TEXT NOT NULL, sop TEXT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('passed', 'failed', 'broken', 'skipped', 'awaiting')),
        message TEXT NOT NULL, evidence TEXT, run_id TEXT NOT NULL, operator TEXT NOT NULL, device TEXT,
        account TEXT, at TEXT NOT NULL)""",
    """CREATE TABLE exceptions (id INTEGER PRIMARY KEY, case_id TEXT NOT NULL UNIQUE, sop TEXT NOT NULL,
        owner TEXT, status TEXT NOT NULL CHECK (status IN ('open', 'escalated', 'resolved')),
        first_seen TEXT NOT NULL, last_seen TEXT NOT NULL, count INTEGER NOT NULL,
        failures_in_row INTEGER NOT NULL, last_error TEXT NOT NULL, evidence TEXT, escalated_to TEXT,
        escalated_at TEXT, resolved_by TEXT, resolved_note TEXT, resolved_at TEXT)""",
    """CREATE TABLE exception_events (id INTEGER PRIMARY KEY,
        exception_id INTEGER NOT NULL REFERENCES exceptions (id), at TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('opened', 'recurred', 'escalated', 'resolved', 'reopened')),
        actor TEXT NOT NULL, run_id TEXT, detail TEXT NOT NULL)""",
)
V2_AUDIT_HEADS = """CREATE TABLE audit_heads (id INTEGER PRIMARY KEY, log_id TEXT NOT NULL, log_path TEXT NOT NULL,
    run_id TEXT NOT NULL, line INTEGER NOT NULL, sha256 TEXT NOT NULL, head_sha256 TEXT NOT NULL,
    signer TEXT NOT NULL, fingerprint TEXT NOT NULL, at TEXT NOT NULL)"""


def _old_ledger(path: Path, version: int) -> None:
    """A ledger as an older pytest-sop left it: CASE failed, broke and failed again (escalated to the owner
    after 3, as broken counted then); OTHER was resolved; a run of an earlier life before CASE's reopen."""
    conn = sqlite3.connect(path)
    with conn:
        for statement in V2_TABLES + ((V2_AUDIT_HEADS,) if version >= 2 else ()):
            conn.execute(statement)
        runs = [
            (CASE, "failed", "07:00"),  # before the reopen at 07:01: not counted
            (CASE, "failed", "07:01"),
            (CASE, "broken", "07:02"),
            (CASE, "failed", "07:03"),
            (CASE, "passed", "07:04"),
            (OTHER, "failed", "07:01"),
        ]
        for case, outcome, hhmm in runs:
            conn.execute(
                "INSERT INTO runs (case_id, sop, outcome, message, evidence, run_id, operator, device, account, at)"
                " VALUES (?, 's', ?, 'm', NULL, 'r', 'bob', NULL, NULL, ?)",
                (case, outcome, f"2026-05-09T{hhmm}:00.000000Z"),
            )
        conn.execute(
            "INSERT INTO exceptions VALUES (1, ?, 's', 'alice', 'escalated', '2026-05-09T07:01:00.000000Z',"
            " '2026-05-09T07:03:00.000000Z', 3, 0, 'm', NULL, 'alice', '2026-05-09T07:03:00.000000Z',"
            " NULL, NULL, NULL)",
            (CASE,),
        )
        conn.execute(
            "INSERT INTO exceptions VALUES (2, ?, 's', NULL, 'resolved', '2026-05-09T07:01:00.000000Z',"
            " '2026-05-09T07:01:00.000000Z', 1, 0, 'm', NULL, 'unassigned', '2026-05-09T07:01:00.000000Z',"
            " 'carol', 'fixed', '2026-05-09T07:05:00.000000Z')",
            (OTHER,),
        )
        conn.execute(f"PRAGMA user_version = {version}")
    conn.close()


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_ledger_is_upgraded_when_opened(tmp_path: Path, version: int) -> None:
    path = tmp_path / "ledger.sqlite"
    _old_ledger(path, version)
    ledger = Ledger(path)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    finally:
        conn.close()
    case, other = ledger.get(1), ledger.get(2)
    # counted from the runs since the exception was (re)opened
    assert (case.count, case.failed, case.broken, case.status, case.escalated_to) == (3, 2, 1, "escalated", "alice")
    assert case.escalated_to_source is None  # which rule chose alice, version 2 did not keep
    assert (other.status, other.failed, other.broken, other.escalated_to_source) == ("resolved", 0, 0, "none")
    assert [r.outcome for r in ledger.runs(case=CASE)] == ["failed", "failed", "broken", "failed", "passed"]
    # and it is written to like a new one
    again = record(ledger, "broken", case=OTHER, minute=30)
    assert again is not None and (again.status, again.count, again.failed, again.broken) == ("open", 1, 0, 1)
    Ledger(path)  # opening it again changes nothing
    assert ledger.get(1) == case


def _open_old(path: str, barrier: Any) -> None:
    barrier.wait()
    Ledger(path).exceptions()


def test_many_processes_opening_an_old_ledger_upgrade_it_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    _old_ledger(path, 2)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_open_old, args=(str(path), barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * 4  # a second ALTER TABLE would have failed one of them
    assert Ledger(path).get(1).failed == 2
