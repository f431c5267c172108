"""Where a run's record goes. The runner tells a Recorder what happened; sinks decide how to keep it."""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Iterator
from typing import Any, Protocol

from _pytest.outcomes import Skipped  # pytest.skip.Exception, by a name type checkers know

from . import masking


class AuditSink(Protocol):
    """Where audit lines go: an :class:`~pytest_sop.audit.AuditLog`, or a case's queued one."""

    def append(self, event: str, /, **fields: Any) -> Any: ...


def masked(body: bytes | str) -> bytes | str:
    """Evidence with every secret the run knows masked: text in every spelling, bytes in UTF-8 and UTF-16."""
    return masking.mask(body) if isinstance(body, str) else masking.known().mask_bytes(body)


class BrokenStep(Exception):
    """Raised out of a step to record it broken (an optional step that failed) without failing the case:
    the runner catches it just outside the step."""


class SkippedStep(Skipped):
    """Raised out of a step to record it skipped (its ``when:`` did not hold), the reason its message:
    a skip is what Allure records as skipped. Caught just outside the step by :func:`record_skipped`."""


def record_skipped(recorder: Recorder, title: str, params: dict[str, str], reason: str) -> None:
    """A step that did not run, recorded as skipped with the reason."""
    try:
        with recorder.step(title, params):
            raise SkippedStep(reason)
    except SkippedStep:
        pass


class Recorder:
    """Records nothing; the base of every sink."""

    @contextlib.contextmanager
    def step(self, title: str, params: dict[str, str] | None = None) -> Iterator[None]:
        yield

    def mark(self) -> Any:
        """Where the record is now, for :meth:`group`."""
        return None

    def group(self, mark: Any, title: str, error: BaseException) -> None:
        """Put what was recorded since ``mark`` (at the case's top level) into one step ``title``,
        ended by ``error``: a first attempt, once it turns out there will be a second."""

    def attach(self, name: str, body: bytes | str, mime: str, extension: str) -> None:
        pass

    def event(self, name: str, **fields: Any) -> None:
        """Something worth a line of its own in the record (an approval, say)."""

    def add_labels(self, labels: list[tuple[str, str]]) -> None:
        """Labels of the case (the report filters and groups by them)."""

    def add_parameters(self, parameters: list[tuple[str, str]]) -> None:
        """Parameters that describe this run of the case, not which case it is."""


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

    def mark(self) -> Any:
        test = current_test()
        return (test, len(test.steps), len(test.attachments)) if test is not None else None

    def group(self, mark: Any, title: str, error: BaseException) -> None:
        from allure_commons.model2 import Status, StatusDetails, TestStepResult

        if mark is None:
            return
        test, n_steps, n_attachments = mark
        steps, attachments = test.steps[n_steps:], test.attachments[n_attachments:]
        del test.steps[n_steps:], test.attachments[n_attachments:]
        group = TestStepResult(
            name=title,
            status=Status.FAILED if isinstance(error, AssertionError) else Status.BROKEN,
            statusDetails=StatusDetails(message=str(error)),
            start=steps[0].start if steps else _now_ms(),
            stop=_now_ms(),
        )
        group.steps, group.attachments = steps, attachments
        test.steps.append(group)

    def add_parameters(self, parameters: list[tuple[str, str]]) -> None:
        """Parameters that describe the run, not the case: left out of Allure's history id."""
        for name, value in parameters:
            self._allure.dynamic.parameter(name, masking.mask(value), excluded=True)

    def add_labels(self, labels: list[tuple[str, str]]) -> None:
        for name, value in labels:
            self._allure.dynamic.label(name, masking.mask(value))

    def identify_case(self, case_id: str, link: tuple[str, str]) -> None:
        """The case id as a parameter (Allure's history id then tells the cases of one SOP apart)."""
        if case_id:
            self._allure.dynamic.parameter("case", case_id)
        self._allure.dynamic.link(link[0], name=link[1])

    def describe(self, text: str) -> None:
        self._allure.dynamic.description(text)


def _now_ms() -> int:
    return int(time.time() * 1000)  # Allure's clock: ms since the epoch


def current_test() -> Any:
    """allure-pytest's result of the case running now (allure_commons TestResult), or None."""
    import allure_commons
    from allure_commons.model2 import TestResult

    for plugin in allure_commons.plugin_manager.get_plugins():
        logger = getattr(plugin, "allure_logger", None)
        if logger is not None:
            test = logger.get_test(None)
            if isinstance(test, TestResult):
                return test
    return None


# allure-pytest writes an error as ``module.Class: text``; pytest-sop's errors are said in words.
_CLASS_PREFIX = re.compile(r"\A(?:pytest_sop(?:\.\w+)+|Skipped): ")


def human_message(message: str | None) -> str | None:
    """``message`` without the Python class name of a pytest-sop error (or a skip) in front of it."""
    return _CLASS_PREFIX.sub("", message).rstrip("\n") if message else message


def clean_messages(result: Any) -> None:
    """The messages of a case's result and its steps in words. A pytest-sop error's step keeps
    no Python traceback: where it happened is the step itself (the case's trace has its SOP line)."""
    from allure_commons.model2 import TestStepResult

    details = result.statusDetails
    if details is not None and details.message and _CLASS_PREFIX.match(details.message):
        details.message = human_message(details.message)
        if isinstance(result, TestStepResult):
            details.trace = None
    for step in result.steps:
        clean_messages(step)


def explain_xpass(message: str) -> None:
    """A strict xfail that passed: allure-pytest marks it failed without a word; say why, with the reason."""
    from allure_commons.model2 import StatusDetails

    test = current_test()
    if test is not None and test.statusDetails is None:
        test.statusDetails = StatusDetails(message=f"{message}: expected to fail, but every step passed")


def clean_current_result() -> None:
    """The running case's Allure messages in words (see :func:`clean_messages`), once allure-pytest set them."""
    test = current_test()
    if test is not None:
        clean_messages(test)


class Recorders(Recorder):
    """Several sinks as one."""

    def __init__(self, *sinks: Recorder) -> None:
        self.sinks = sinks

    def mark(self) -> Any:
        return [sink.mark() for sink in self.sinks]

    def group(self, mark: Any, title: str, error: BaseException) -> None:
        for sink, at in zip(self.sinks, mark, strict=True):
            sink.group(at, title, error)

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

    def add_labels(self, labels: list[tuple[str, str]]) -> None:
        for sink in self.sinks:
            sink.add_labels(labels)

    def add_parameters(self, parameters: list[tuple[str, str]]) -> None:
        for sink in self.sinks:
            sink.add_parameters(parameters)


class AuditRecorder(Recorder):
    """Step and evidence events in the hash-chained audit log; evidence by its sha256.

    Every line names its run, so a signed log can tell that no line of a run follows its seal.
    """

    def __init__(self, log: AuditSink, case: str, run: str) -> None:
        self.log = log
        self.case = case
        self.run = run

    @contextlib.contextmanager
    def step(self, title: str, params: dict[str, str] | None = None) -> Iterator[None]:
        self.log.append("step_start", case=self.case, run=self.run, step=title, params=params or {})
        status = "failed"
        why: dict[str, str] = {}
        try:
            yield
            status = "passed"
        except BrokenStep:
            status = "broken"
            raise
        except SkippedStep as e:
            status, why = "skipped", {"reason": str(e)}
            raise
        finally:
            self.log.append("step_end", case=self.case, run=self.run, step=title, status=status, **why)

    def attach(self, name: str, body: bytes | str, mime: str, extension: str) -> None:
        body = masked(body)  # the sha256 of exactly what the Allure sink writes
        data = body.encode("utf-8") if isinstance(body, str) else body
        digest = hashlib.sha256(data).hexdigest()
        self.log.append("evidence", case=self.case, run=self.run, name=name, type=mime, bytes=len(data), sha256=digest)

    def event(self, name: str, **fields: Any) -> None:
        self.log.append(name, case=self.case, run=self.run, **fields)
