"""The audit log's background writer (issue 14): a case's lines go in few appends, a flush does not wait
for the head file's rename, and the log is never seen with a head file behind its last line."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import filelock
import pytest

from pytest_sop.audit import AuditLog, AuditQueue, QueuedLog, verify


def head_of(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.with_name(path.name + ".head").read_text()))


def lines_in(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


class Held:
    """A ``later`` that keeps what it is given until the test runs it, so the test sees the moment between."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Future[None], Callable[[], None]]] = []

    def __call__(self, fn: Callable[[], None]) -> Future[None]:
        future: Future[None] = Future()
        self.jobs.append((future, fn))
        return future

    def run_all(self) -> None:
        for future, fn in self.jobs:
            try:
                fn()
            except BaseException as e:
                future.set_exception(e)
            else:
                future.set_result(None)
        self.jobs.clear()


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


def _verify_in_child(path: str, out: Any) -> None:
    out.put(verify(path).reason)


def test_flush_returns_before_the_head_file_is_replaced_and_the_lock_is_held_until_it_is(tmp_path: Path) -> None:
    path = tmp_path / "sop-audit.jsonl"
    later = Held()
    queue = AuditQueue(later)
    log = QueuedLog(AuditLog(path), queue)
    log.append("lease", case="c[1]")
    log.flush()
    assert lines_in(path) == 1 and not path.with_name(path.name + ".head").exists()
    assert len(later.jobs) == 1  # the head file waits for the other thread

    # Nobody sees the log in between: another process's verify waits for the writers' lock.
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=_verify_in_child, args=(str(path), out))
    child.start()
    with pytest.raises(filelock.Timeout):
        filelock.FileLock(str(path) + ".lock", timeout=0.2).acquire()
    later.run_all()
    child.join(120)
    assert out.get(timeout=10) == "1 lines, chain intact"
    assert head_of(path)["seq"] == 1

    log.append("release", case="c[1]")
    log.flush()
    closer = threading.Thread(target=queue.close)
    closer.start()
    closer.join(0.3)
    assert closer.is_alive(), "close() returned with a head file still being replaced"
    later.run_all()
    closer.join(60)
    assert not closer.is_alive() and head_of(path)["seq"] == 2 and verify(path).ok


def test_a_head_file_that_could_not_be_replaced_fails_the_next_flush(tmp_path: Path) -> None:
    path = tmp_path / "sop-audit.jsonl"
    later = Held()
    queue = AuditQueue(later)
    log = QueuedLog(AuditLog(path), queue)
    log.append("lease", case="c[1]")
    log.flush()
    in_the_way = tmp_path / "sop-audit.jsonl.head"
    in_the_way.mkdir()  # os.replace cannot put a file over a folder
    later.run_all()
    in_the_way.rmdir()
    with filelock.FileLock(str(path) + ".lock", timeout=10):
        pass  # the lock is free again
    log.append("outcome", case="c[1]")
    with pytest.raises(IsADirectoryError):
        log.flush()  # its own line is written; the error is the one before it
    assert lines_in(path) == 2
    later.run_all()
    queue.close()
    assert verify(path).ok


def test_the_writers_lock_is_the_lock_filelock_takes(tmp_path: Path) -> None:
    """Another writer holding PATH.lock with filelock (an older version of this plugin, ``audit verify``)
    keeps this one waiting, and times out as filelock would."""
    path = tmp_path / "sop-audit.jsonl"
    with filelock.FileLock(str(path) + ".lock"), pytest.raises(filelock.Timeout):
        AuditLog(path, lock_timeout=0.3).append("lease", case="c[1]")
    AuditLog(path).append("lease", case="c[1]")
    assert verify(path).ok


def _killed_before_the_head(path: str) -> None:
    """Append two lines and die (SIGKILL) before the head file is replaced: a run killed mid-append."""
    AuditLog(path).append_many(
        [("step_start", {"case": "c[1]"}, None), ("step_end", {"case": "c[1]"}, None)],
        lambda finish: os.kill(os.getpid(), signal.SIGKILL),
    )


def test_a_writer_killed_before_its_head_file_leaves_a_log_that_verifies_and_goes_on(tmp_path: Path) -> None:
    """The head file lags while a batch's head is replaced on another thread; a run killed then is a
    crash, not a tamper: the next run must not refuse the log (seen failing: a resume killed with
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
