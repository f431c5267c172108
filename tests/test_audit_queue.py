"""The audit log's background writer (issue 14): a case's lines go in few appends, the head files are
rewritten in place (no file created or deleted per append), and a writer killed mid-append leaves a
log the next run goes on with."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import filelock
import pytest

from pytest_sop.audit import AuditLog, AuditQueue, QueuedLog, verify


def head_of(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.with_name(path.name + ".head").read_text()))


def lines_in(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def test_lines_put_close_together_go_in_one_append(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sop-audit.jsonl"
    appends: list[int] = []
    real = AuditLog.append_many
    monkeypatch.setattr(
        AuditLog, "append_many", lambda self, entries, *a: appends.append(len(entries)) or real(self, entries, *a)
    )
    queue = AuditQueue()
    queue.linger = 60.0  # far longer than the test: only the flush writes
    log = QueuedLog(AuditLog(path), queue)
    for step in range(10):
        log.append("step_start", case="c[1]", step=step)
        time.sleep(0.02)  # as a case's steps come: a writer that wrote each line at once would have by now
    log.flush()
    queue.close()
    assert appends == [10]
    assert verify(path).ok and lines_in(path) == 10


def test_a_line_nobody_flushes_is_written_while_the_case_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "sop-audit.jsonl"
    queue = AuditQueue()
    queue.linger = 0.05
    QueuedLog(AuditLog(path), queue).append("step_start", case="c[1]", step="wait 60")
    deadline = time.monotonic() + 60
    while lines_in(path) < 1:
        assert time.monotonic() < deadline, "the writer never wrote the line"
        time.sleep(0.02)
    queue.close()
    assert verify(path).ok


def test_a_case_s_opening_lines_are_written_without_waiting_out_the_linger(tmp_path: Path) -> None:
    """A worker killed in its case's first step must leave the lease and session lines (seen lost:
    a crash 0.2 s into a case under load left only the controller's outcome line)."""
    path = tmp_path / "sop-audit.jsonl"
    queue = AuditQueue()
    queue.linger = 600.0  # far longer than the test
    log = QueuedLog(AuditLog(path), queue)
    log.append("lease", case="c[1]")
    log.append("session", case="c[1]")
    queue.write_soon()
    deadline = time.monotonic() + 60
    while lines_in(path) < 2:
        assert time.monotonic() < deadline, "the opening lines waited for the linger"
        time.sleep(0.02)
    log.append("step_start", case="c[1]")  # the lines after them wait again, for the flush
    time.sleep(0.3)
    assert lines_in(path) == 2
    queue.close()
    assert lines_in(path) == 3 and verify(path).ok


def test_appends_create_and_delete_no_files(tmp_path: Path) -> None:
    """Only the first append makes the log's files; later ones write into the same files. A head file
    renamed over the old one per append created and deleted a file each time, and on ext4 without a
    journal every file made after many deletions (each Allure result) paid for it."""
    path = tmp_path / "sop-audit.jsonl"
    queue = AuditQueue()
    log = QueuedLog(AuditLog(path), queue)
    log.append("lease", case="c[1]")
    log.flush()
    files = {p.name: p.stat().st_ino for p in tmp_path.iterdir()}
    assert set(files) == {"sop-audit.jsonl", "sop-audit.jsonl.head", "sop-audit.jsonl.head.next", "sop-audit.jsonl.lock"}
    for n in range(5):
        log.append("step_end", case="c[1]", step=n)
        log.flush()
    queue.close()
    assert {p.name: p.stat().st_ino for p in tmp_path.iterdir()} == files
    assert head_of(path)["seq"] == 6 and verify(path).reason == "6 lines, chain intact"


def test_a_head_file_that_cannot_be_written_fails_the_flush(tmp_path: Path) -> None:
    path = tmp_path / "sop-audit.jsonl"
    queue = AuditQueue()
    log = QueuedLog(AuditLog(path), queue)
    log.append("lease", case="c[1]")
    log.flush()
    in_the_way = tmp_path / "sop-audit.jsonl.head.next"
    in_the_way.unlink()
    in_the_way.mkdir()  # a head file cannot be written where a folder is
    log.append("outcome", case="c[1]")
    with pytest.raises(IsADirectoryError):
        log.flush()  # the case waiting on its line hears why it is not written
    assert lines_in(path) == 1
    in_the_way.rmdir()
    log.append("release", case="c[1]")
    log.flush()
    queue.close()
    assert head_of(path)["seq"] == 2 and verify(path).ok


def test_the_writers_lock_is_the_lock_filelock_takes(tmp_path: Path) -> None:
    """Another writer holding PATH.lock with filelock (an older version of this plugin, ``audit verify``)
    keeps this one waiting, and times out as filelock would."""
    path = tmp_path / "sop-audit.jsonl"
    with filelock.FileLock(str(path) + ".lock"), pytest.raises(filelock.Timeout):
        AuditLog(path, lock_timeout=0.3).append("lease", case="c[1]")
    AuditLog(path).append("lease", case="c[1]")
    assert verify(path).ok


def _killed_before_the_head(path: str) -> None:
    """Append two lines and die (SIGKILL) before the head file names them: a run killed mid-append."""
    AuditLog._commit_head = lambda self, head: os.kill(os.getpid(), signal.SIGKILL)  # type: ignore[method-assign,assignment,return-value]
    AuditLog(path).append_many([("step_start", {"case": "c[1]"}, None), ("step_end", {"case": "c[1]"}, None)])


def test_a_writer_killed_before_its_head_file_leaves_a_log_that_verifies_and_goes_on(tmp_path: Path) -> None:
    """A run killed between a batch's lines and its head file is a crash, not a tamper: the next run must not refuse the log (seen failing: a resume killed with
    kill -9, then every run said the log's last lines were "added after the last complete append")."""
    path = tmp_path / "sop-audit.jsonl"
    AuditLog(path).append("lease", case="c[1]")
    child = multiprocessing.get_context("spawn").Process(target=_killed_before_the_head, args=(str(path),))
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL and lines_in(path) == 3 and head_of(path)["seq"] == 1
    result = verify(path)
    assert result.ok and "stopped before it updated the head file" in result.reason, result.reason
    AuditLog(path).append("release", case="c[1]")  # the next append completes the head file
    assert head_of(path)["seq"] == 4 and verify(path).reason == "4 lines, chain intact"

    # A line added by hand is no such append: still said.
    with path.open("a") as f:
        f.write(json.dumps({"event": "outcome", "seq": 5, "ts": "x", "prev": "0" * 64}) + "\n")
    assert not verify(path).ok
