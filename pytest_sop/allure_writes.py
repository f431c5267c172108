"""Allure results written off the case's thread: a finished result is masked and written on a
background thread while the next case starts; whoever reads the results first waits for them."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future

from .background import background


class _Writes:
    """The Allure results this process is writing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._futures: list[Future[None]] = []

    def add(self, future: Future[None]) -> None:
        with self._lock:
            if self._pid != os.getpid():  # a forked child waits for none of its parent's writes
                self._pid, self._futures = os.getpid(), []
            # Done ones are forgotten, unless they failed: the next wait says why.
            self._futures = [f for f in self._futures if not f.done() or f.exception() is not None]
            self._futures.append(future)

    def wait(self) -> None:
        with self._lock:
            futures, self._futures = (self._futures, []) if self._pid == os.getpid() else ([], [])
        for future in futures:
            future.result()


_writes = _Writes()


def write_later(write: Callable[[], None]) -> None:
    """Run ``write`` (one result to its file) on a background thread."""
    _writes.add(background.submit(write))


def allure_written() -> None:
    """Return once every result this process handed over is in its file; raise the first write's error."""
    _writes.wait()
