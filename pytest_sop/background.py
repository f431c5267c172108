"""Device work off a case's critical path (a session created, a session deleted) on threads that live
as long as the process: starting a thread per case costs more than the work it hands off on a busy
machine, since ``Thread.start`` waits until the new thread has been scheduled."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


class Background:
    """Runs each function given on an idle thread, or a new one when none is idle (daemon threads:
    a hung Appium request never keeps the process from exiting). Its result or error in a Future."""

    def __init__(self) -> None:
        self._pid = 0
        self._tasks: queue.SimpleQueue[tuple[Future[object], Callable[[], object]]] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        if self._pid != os.getpid():  # a forked child has none of its parent's threads
            self._pid, self._tasks, self._idle = os.getpid(), queue.SimpleQueue(), threading.Semaphore(0)
        future: Future[T] = Future()
        self._tasks.put((future, fn))  # type: ignore[arg-type]  # the queue holds futures of any result type
        if not self._idle.acquire(blocking=False):
            threading.Thread(target=self._work, args=(self._tasks, self._idle), name="sop-device", daemon=True).start()
        return future

    @staticmethod
    def _work(tasks: queue.SimpleQueue[tuple[Future[object], Callable[[], object]]], idle: threading.Semaphore) -> None:
        while True:
            future, fn = tasks.get()
            try:
                future.set_result(fn())
            except BaseException as e:
                future.set_exception(e)
            del future, fn  # a finished session is not kept alive by an idle thread
            idle.release()


background = Background()
