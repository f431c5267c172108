"""Where a run's record goes. The runner tells a Recorder what happened; sinks decide how to keep it."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import masking

if TYPE_CHECKING:
    from .audit import AuditLog


def masked(body: bytes | str) -> bytes | str:
    """Evidence with every secret the run knows masked: text in every spelling, bytes in UTF-8 and UTF-16."""
    return masking.mask(body) if isinstance(body, str) else masking.known().mask_bytes(body)


class Recorder:
    """Records nothing; the base of every sink."""

    @contextlib.contextmanager
    def step(self, title: str, params: dict[str, str] | None = None) -> Iterator[None]:
        yield

    def attach(self, name: str, body: bytes | str, mime: str, extension: str) -> None:
        pass

    def event(self, name: str, **fields: Any) -> None:
        """Something worth a line of its own in the record (an approval, say)."""


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
        self._allure.attach(masked(body), name=name, attachment_type=mime, extension=extension)

    def add_labels(self, labels: list[tuple[str, str]]) -> None:
        for name, value in labels:
            self._allure.dynamic.label(name, value)

    def identify_case(self, case_id: str, link: tuple[str, str]) -> None:
        """The case id as a parameter (Allure's history id then tells the cases of one SOP apart)."""
        if case_id:
            self._allure.dynamic.parameter("case", case_id)
        self._allure.dynamic.link(link[0], name=link[1])

    def describe(self, text: str) -> None:
        self._allure.dynamic.description(text)


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

    def event(self, name: str, **fields: Any) -> None:
        for sink in self.sinks:
            sink.event(name, **fields)


class AuditRecorder(Recorder):
    """Step and evidence events in the hash-chained audit log; evidence by its sha256.

    Every line names its run, so a signed log can tell that no line of a run follows its seal.
    """

    def __init__(self, log: AuditLog, case: str, run: str) -> None:
        self.log = log
        self.case = case
        self.run = run

    @contextlib.contextmanager
    def step(self, title: str, params: dict[str, str] | None = None) -> Iterator[None]:
        self.log.append("step_start", case=self.case, run=self.run, step=title, params=params or {})
        status = "failed"
        try:
            yield
            status = "passed"
        finally:
            self.log.append("step_end", case=self.case, run=self.run, step=title, status=status)

    def attach(self, name: str, body: bytes | str, mime: str, extension: str) -> None:
        body = masked(body)  # the sha256 of exactly what the Allure sink writes
        data = body.encode("utf-8") if isinstance(body, str) else body
        digest = hashlib.sha256(data).hexdigest()
        self.log.append("evidence", case=self.case, run=self.run, name=name, type=mime, bytes=len(data), sha256=digest)

    def event(self, name: str, **fields: Any) -> None:
        self.log.append(name, case=self.case, run=self.run, **fields)
