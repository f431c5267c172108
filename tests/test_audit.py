"""The tamper-evident audit log: format, tamper detection with exact line numbers, masking, many processes."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import multiprocessing
import re
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pytest_sop.audit import GENESIS, AuditError, AuditLog, audit_main, verify
from pytest_sop.masking import mask_text

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def make_log(tmp_path: Path, count: int = 10) -> Path:
    path = tmp_path / "sop-audit.jsonl"
    log = AuditLog(path)
    for k in range(1, count + 1):
        log.append("step", case=f"sop/login.yaml[{k % 3}]", step=k, device="emulator-5554")
    return path


def lines_of(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return data[:-1].split(b"\n")


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def sha(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


# --- the line format -------------------------------------------------------------------------


def test_lines_are_canonical_json_chained_by_sha256_of_the_previous_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(path)
    first = log.append("lease", device="emulator-5554", account="qa-1")
    second = log.append("outcome", status="passed", nested={"b": [1, 2], "a": None})
    lines = lines_of(path)
    assert [first.encode(), second.encode()] == lines
    records = [json.loads(line) for line in lines]
    assert [r["seq"] for r in records] == [1, 2]
    assert records[0]["prev"] == GENESIS == "0" * 64
    assert records[1]["prev"] == sha(lines[0])  # the previous line's bytes, without its newline
    assert records[0]["event"] == "lease" and records[0]["device"] == "emulator-5554"
    assert records[1]["nested"] == {"a": None, "b": [1, 2]}
    for line, record in zip(lines, records, strict=True):
        assert line.decode() == json.dumps(record, sort_keys=True, separators=(",", ":"))
    assert json.loads((tmp_path / "a.jsonl.head").read_text()) == {"seq": 2, "sha256": sha(lines[1])}


def test_timestamps_are_utc_with_z_and_microseconds(tmp_path: Path) -> None:
    before = datetime.now(UTC)
    path = make_log(tmp_path, 3)
    after = datetime.now(UTC)
    stamps = [json.loads(line)["ts"] for line in lines_of(path)]
    for ts in stamps:
        assert TS.fullmatch(ts), ts
        when = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%f%z")
        assert when.utcoffset() == timedelta(0)
        assert before - timedelta(seconds=1) <= when <= after + timedelta(seconds=1)
    assert stamps == sorted(stamps)


def test_chain_keys_cannot_be_passed_as_fields(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl")
    with pytest.raises(ValueError, match="prev, seq"):
        log.append("step", seq=5, prev=GENESIS)
    assert not (tmp_path / "a.jsonl").exists()


def test_a_second_writer_continues_the_chain_after_a_line_longer_than_the_tail_block(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    AuditLog(path).append("evidence", blob="x" * 10_000)
    AuditLog(path).append("evidence", blob="y" * 5_000)
    AuditLog(path).append("outcome", status="failed")
    assert [json.loads(line)["seq"] for line in lines_of(path)] == [1, 2, 3]
    result = verify(path)
    assert result.ok, result.reason
    assert result.lines == 3


# --- verify: the untouched log, and each kind of tampering -----------------------------------------


def test_untouched_log_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = make_log(tmp_path)
    result = verify(path)
    assert (result.ok, result.line, result.reason) == (True, None, "10 lines, chain intact")
    assert audit_main(str(path)) == 0
    assert capsys.readouterr().out == "OK: 10 lines, chain intact\n"


def test_empty_log_passes(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"")
    assert verify(path).ok


def test_missing_log_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = verify(tmp_path / "nope.jsonl")
    assert (result.ok, result.line) == (False, None)
    assert "does not exist" in result.reason
    assert audit_main(str(tmp_path / "nope.jsonl")) == 1
    assert capsys.readouterr().out.startswith("FAILED: ")


def test_edited_line_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = make_log(tmp_path)
    lines = lines_of(path)
    lines[6] = lines[6].replace(b'"step":7', b'"step":70')
    write_lines(path, lines)
    result = verify(path)
    assert (result.ok, result.line) == (False, 7)
    assert result.reason == "line 7 was changed: its sha256 does not match the prev of line 8"
    assert audit_main(str(path)) == 1
    assert (
        capsys.readouterr().out == "FAILED: line 7: line 7 was changed: its sha256 does not match the prev of line 8\n"
    )


@pytest.mark.parametrize("number", [1, 5, 9])
def test_edited_line_anywhere_is_named(tmp_path: Path, number: int) -> None:
    path = make_log(tmp_path)
    lines = lines_of(path)
    lines[number - 1] = lines[number - 1].replace(b"emulator-5554", b"emulator-5556")
    write_lines(path, lines)
    result = verify(path)
    assert (result.ok, result.line) == (False, number)
    assert "changed" in result.reason


def test_edited_last_line_is_caught_by_the_head_file(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    lines = lines_of(path)
    lines[9] = lines[9].replace(b'"step":10', b'"step":11')
    write_lines(path, lines)
    result = verify(path)
    assert (result.ok, result.line) == (False, 10)
    assert result.reason == "line 10 was changed: its sha256 does not match the head file"


def test_line_edited_into_invalid_json_is_named(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    lines = lines_of(path)
    lines[3] = lines[3][:-5]
    write_lines(path, lines)
    result = verify(path)
    assert (result.ok, result.line) == (False, 4)
    assert "line 4 was changed" in result.reason


def test_edited_prev_field_names_that_line(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    lines = lines_of(path)
    record = json.loads(lines[5])
    record["prev"] = "f" * 64
    lines[5] = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    write_lines(path, lines)
    result = verify(path)
    assert (result.ok, result.line) == (False, 6)
    assert result.reason == "line 6 was changed: its prev does not match the sha256 of line 5"


def test_removed_line_is_named(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    lines = lines_of(path)
    del lines[6]
    write_lines(path, lines)
    result = verify(path)
    assert (result.ok, result.line) == (False, 7)
    assert result.reason == "a line was removed before line 7: seq 7 is missing, and line 7 has seq 8"


def test_several_removed_lines_are_named(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    lines = lines_of(path)
    del lines[1:4]
    write_lines(path, lines)
    result = verify(path)
    assert (result.ok, result.line) == (False, 2)
    assert "seq 2 to 4 is missing" in result.reason


def test_removed_first_line_is_named(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    write_lines(path, lines_of(path)[1:])
    result = verify(path)
    assert (result.ok, result.line) == (False, 1)
    assert "removed" in result.reason


def test_inserted_forged_line_is_named(tmp_path: Path) -> None:
    """A forger who fills in seq and prev correctly for the new line still breaks the line after it."""
    path = make_log(tmp_path)
    lines = lines_of(path)
    forged = {
        "event": "approval",
        "seq": 4,
        "prev": sha(lines[2]),
        "ts": "2026-01-01T00:00:00.000000Z",
        "by": "mallory",
    }
    lines.insert(3, json.dumps(forged, sort_keys=True, separators=(",", ":")).encode())
    write_lines(path, lines)
    result = verify(path)
    assert (result.ok, result.line) == (False, 4)
    assert result.reason == "line 4 was inserted: line 5 follows line 3 in the chain"


def test_inserted_copy_of_a_line_is_named(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    lines = lines_of(path)
    lines.insert(8, lines[4])  # a copy of line 5 becomes line 9
    write_lines(path, lines)
    result = verify(path)
    assert (result.ok, result.line) == (False, 9)
    assert "line 9 was inserted" in result.reason


def test_inserted_blank_line_is_named(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    lines = lines_of(path)
    lines.insert(2, b"")
    write_lines(path, lines)
    result = verify(path)
    assert (result.ok, result.line) == (False, 3)
    assert "line 3 was inserted" in result.reason


def test_line_appended_by_hand_is_caught_by_the_head_file(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    lines = lines_of(path)
    record = {
        "event": "outcome",
        "seq": 11,
        "prev": sha(lines[9]),
        "ts": "2026-01-01T00:00:00.000000Z",
        "status": "passed",
    }
    lines.append(json.dumps(record, sort_keys=True, separators=(",", ":")).encode())
    write_lines(path, lines)
    result = verify(path)
    assert (result.ok, result.line) == (False, 11)
    assert "not recorded in the head file" in result.reason


@pytest.mark.parametrize(("a", "b"), [(4, 5), (3, 8), (1, 2), (9, 10)])
def test_swapped_lines_are_named(tmp_path: Path, a: int, b: int) -> None:
    path = make_log(tmp_path)
    lines = lines_of(path)
    lines[a - 1], lines[b - 1] = lines[b - 1], lines[a - 1]
    write_lines(path, lines)
    result = verify(path)
    assert (result.ok, result.line) == (False, a)
    assert (
        result.reason == f"line {a} is out of order: it has seq {b} where {a} was expected, and seq {a} is at line {b}"
    )


def test_swapped_last_lines_without_head_file_are_named(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    (tmp_path / "sop-audit.jsonl.head").unlink()
    lines = lines_of(path)
    lines[8], lines[9] = lines[9], lines[8]
    write_lines(path, lines)
    result = verify(path)
    assert (result.ok, result.line) == (False, 9)
    assert "out of order" in result.reason


def test_tail_cut_mid_line_is_named(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])
    result = verify(path)
    assert (result.ok, result.line) == (False, 10)
    assert (
        result.reason
        == "line 10 was cut short: the file ends without a newline and is not valid JSON (the tail was truncated)"
    )


def test_tail_cut_at_the_last_newline_is_named(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    path.write_bytes(path.read_bytes()[:-1])
    result = verify(path)
    assert (result.ok, result.line) == (False, 10)
    assert "cut short" in result.reason


def test_removed_last_line_is_caught_by_the_head_file(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    write_lines(path, lines_of(path)[:-1])
    result = verify(path)
    assert (result.ok, result.line) == (False, 10)
    assert (
        result.reason
        == "the tail was cut: the log ends at line 9 but the head file records 10 lines, so line 10 onwards was removed"
    )


def test_removed_last_lines_are_caught_by_the_head_file(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    write_lines(path, lines_of(path)[:-3])
    result = verify(path)
    assert (result.ok, result.line) == (False, 8)


def test_emptied_log_is_caught_by_the_head_file(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    path.write_bytes(b"")
    result = verify(path)
    assert (result.ok, result.line) == (False, 1)


def test_without_head_file_the_chain_alone_is_checked_and_the_reason_says_so(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    (tmp_path / "sop-audit.jsonl.head").unlink()
    result = verify(path)
    assert result.ok
    assert "no head file" in result.reason
    lines = lines_of(path)
    del lines[4]
    write_lines(path, lines)
    assert (verify(path).ok, verify(path).line) == (False, 5)


def test_damaged_head_file_fails(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    (tmp_path / "sop-audit.jsonl.head").write_text("{nope")
    result = verify(path)
    assert (result.ok, result.line) == (False, None)
    assert "head file" in result.reason


def test_append_refuses_to_extend_a_cut_log_so_the_cut_stays_visible(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    write_lines(path, lines_of(path)[:-1])
    head_before = (tmp_path / "sop-audit.jsonl.head").read_bytes()
    with pytest.raises(AuditError, match="disagrees"):
        AuditLog(path).append("step")
    assert (tmp_path / "sop-audit.jsonl.head").read_bytes() == head_before
    assert verify(path).line == 10


def test_append_refuses_to_extend_a_line_cut_mid_way(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    path.write_bytes(path.read_bytes()[:-10])
    size = path.stat().st_size
    with pytest.raises(AuditError, match="no newline"):
        AuditLog(path).append("step")
    assert path.stat().st_size == size


def test_append_continues_after_a_writer_stopped_before_updating_the_head(tmp_path: Path) -> None:
    path = make_log(tmp_path, 3)
    lines = lines_of(path)
    head = tmp_path / "sop-audit.jsonl.head"
    head.write_text(json.dumps({"seq": 2, "sha256": sha(lines[1])}))  # as if the head write of line 3 never happened
    AuditLog(path).append("step")
    assert verify(path).ok


# --- masking ------------------------------------------------------------------------------------

SECRET = 'hunter2-"quoted"\\back-slash-S3cr3t'


def secret_mask(text: str) -> str:
    return mask_text(text, [SECRET])


def test_secrets_never_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(path, mask=secret_mask)
    b64 = base64.b64encode(SECRET.encode()).decode()
    url = urllib.parse.quote(SECRET, safe="")
    log.append("step", action="type", text=SECRET, nested={"list": ["x", f"pw={SECRET};"], SECRET: 1})
    log.append("step", url=f"https://example.test/login?pw={url}", header=f"Basic {b64}")
    raw = path.read_bytes()
    escaped = json.dumps(SECRET)[1:-1]  # the JSON-escaped form, quotes and backslashes escaped
    for form in (SECRET, escaped, b64, url, "hunter2"):
        assert form.encode() not in raw, form
    assert raw.count(b"***") == 5
    assert verify(path).ok


def test_mask_touches_free_text_only(tmp_path: Path) -> None:
    """Structure (the chain keys, the event name, ids, outcomes) is written as given; free text is masked."""
    path = tmp_path / "a.jsonl"
    log = AuditLog(path, mask=lambda s: s.replace("emulator-5554", "***").replace("outcome", "OUTCOME"))
    line = log.append("outcome", device="emulator-5554", outcome="passed", note="outcome on emulator-5554")
    record = json.loads(line)
    assert (record["event"], record["device"]) == ("outcome", "emulator-5554")
    assert record["note"] == "OUTCOME on ***"
    assert verify(path).ok


def test_mask_that_hits_digits_leaves_seq_ts_and_prev_alone(tmp_path: Path) -> None:
    """A secret as short as one digit would garble a hash or a timestamp: those are never masked."""
    path = tmp_path / "a.jsonl"
    log = AuditLog(path, mask=lambda s: s.replace("0", "*"))
    for k in range(12):
        log.append("step", step=f"step {k * 10}", case=f"c[{k * 10}]")
    records = [json.loads(line) for line in lines_of(path)]
    assert [r["seq"] for r in records] == list(range(1, 13))
    assert records[0]["prev"] == GENESIS and all(TS.fullmatch(r["ts"]) for r in records)
    assert records[10]["step"] == "step 1**" and records[10]["case"] == "c[100]"
    assert verify(path).ok


def test_free_text_whose_json_spelling_completes_a_secret_is_masked_whole(tmp_path: Path) -> None:
    """A newline written as ``\\n`` followed by "bxyz" spells the secret "nbxyz" in the file."""
    path = tmp_path / "a.jsonl"
    line = AuditLog(path, mask=lambda s: mask_text(s, ["nbxyz"])).append("note", text="a\nbxyz")
    assert json.loads(line)["text"] == "***" and "nbxyz" not in path.read_text()


# --- many processes ---------------------------------------------------------------------------------

WORKERS = 6
APPENDS = 300


def _append_many(path: str, worker: int, barrier: Any) -> None:
    log = AuditLog(path)
    for n in range(APPENDS):
        if n % (APPENDS // 5) == 0:
            # All start together, and meet again four times: an append is fast enough that a process
            # may write all its lines in one time slice, so without these the writers may not overlap.
            barrier.wait()
        # Lines of different lengths, some longer than a pipe buffer and the tail block, make torn writes show.
        log.append("step", worker=worker, n=n, pad="x" * (worker * 1200 + n % 7))


def test_many_processes_append_without_torn_or_interleaved_lines(tmp_path: Path) -> None:
    path = tmp_path / "sop-audit.jsonl"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    procs = [ctx.Process(target=_append_many, args=(str(path), w, barrier)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * WORKERS

    data = path.read_bytes()
    assert data.endswith(b"\n")
    lines = data[:-1].split(b"\n")
    assert len(lines) == WORKERS * APPENDS
    records = [json.loads(line) for line in lines]  # every line is whole, valid JSON
    assert [r["seq"] for r in records] == list(range(1, WORKERS * APPENDS + 1))
    for w in range(WORKERS):
        mine = [r for r in records if r["worker"] == w]
        assert [r["n"] for r in mine] == list(range(APPENDS))
        assert all(r["pad"] == "x" * (w * 1200 + r["n"] % 7) for r in mine)
    for before, line, record in zip(lines, lines[1:], records[1:], strict=False):
        assert record["prev"] == sha(before), line[:80]
    # the writers really overlapped: no worker wrote all its lines in one run
    switches = sum(1 for a, b in itertools.pairwise(records) if a["worker"] != b["worker"])
    assert switches > WORKERS
    result = verify(path)
    assert (result.ok, result.reason) == (True, f"{WORKERS * APPENDS} lines, chain intact")
