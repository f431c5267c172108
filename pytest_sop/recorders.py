"""Where a run's record goes. The runner tells a Recorder what happened; sinks decide how to keep it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


class Recorder:
    """Records nothing; the base of every sink."""

    @contextlib.contextmanager
    def step(self, title: str, params: dict[str, str] | None = None) -> Iterator[None]:
        yield

    def attach(self, name: str, body: bytes | str, mime: str, extension: str) -> None:
        pass


class AllureRecorder(Recorder):
    """Allure steps and attachments, through allure-pytest's running listener."""

    def __init__(self) -> None:
        import allure

        self._allure: Any = allure

    @contextlib.contextmanager
    def step(self, title: str, params: dict[str, str] | None = None) -> Iterator[None]:
        from allure_commons._allure import StepContext  # the step type allure.step() returns

        with StepContext(title, params or {}):  # type: ignore[no-untyped-call]
            yield

    def attach(self, name: str, body: bytes | str, mime: str, extension: str) -> None:
        self._allure.attach(body, name=name, attachment_type=mime, extension=extension)


class Recorders(Recorder):
    """Several sinks as one."""

    def __init__(self, *sinks: Recorder) -> None:
        self.sinks = sinks

    @contextlib.contextmanager
    def step(self, title: str, params: dict[str, str] | None = None) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for sink in self.sinks:
                stack.enter_context(sink.step(title, params))
            yield

    def attach(self, name: str, body: bytes | str, mime: str, extension: str) -> None:
        for sink in self.sinks:
            sink.attach(name, body, mime, extension)
