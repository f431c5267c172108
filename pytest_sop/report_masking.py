"""Secrets masked in what pytest and Allure write about tests: terminal, JUnit XML, Allure results.

A failure's report (its traceback, ``-l`` locals, captured output, user properties) is masked
in place when it is made, before any reporter reads it, so the terminal, ``--junitxml`` and
xdist's controller only ever see the masked text; SOP cases and Python tests alike. Allure's
file writer is wrapped as well: allure-pytest takes a failure's message from the exception
itself, and user code may attach anything.

Registered by the ``sop`` plugin with ``config.pluginmanager.import_plugin``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from . import masking
from .allure_writes import allure_written, write_later
from .errors import SopError

# Objects of these modules are plain data (pytest's failure representations, Allure's model):
# their strings are masked; anything else a report refers to is left alone.
_DATA_MODULES = ("_pytest.", "allure_commons.")
# Allure's ids and file names tie results, containers and attachments together: never masked.
_IDS = frozenset({"uuid", "id", "historyId", "testCaseId", "source", "children"})


def mask_value(value: Any, mask: Callable[[str], str], seen: set[int] | None = None) -> Any:
    """``value`` with every string in it masked; containers and data objects are changed in place."""
    if isinstance(value, str):
        return mask(value)
    if value is None or isinstance(value, (bool, int, float, bytes)):
        return value
    seen = set() if seen is None else seen
    if id(value) in seen:
        return value
    seen.add(id(value))
    if isinstance(value, list):
        value[:] = [mask_value(v, mask, seen) for v in value]
    elif isinstance(value, dict):
        items = [(mask_value(k, mask, seen), mask_value(v, mask, seen)) for k, v in value.items()]
        value.clear()
        value.update(items)
    elif isinstance(value, tuple):
        items = [mask_value(v, mask, seen) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    elif type(value).__module__.startswith(_DATA_MODULES) and hasattr(value, "__dict__"):
        for name, attr in list(vars(value).items()):
            if name in _IDS:
                continue
            masked = mask_value(attr, mask, seen)
            if masked is not attr:
                object.__setattr__(value, name, masked)
    return value


def mask_report(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Mask what a report shows: the failure, captured output, user properties."""
    mask = masking.mask
    if not masking.known().values:
        return
    if report.longrepr is not None:
        report.longrepr = mask_value(report.longrepr, mask)
    report.sections = [(title, mask(text)) for title, text in report.sections]
    if isinstance(report, pytest.TestReport):
        report.user_properties = [mask_value(p, mask) for p in report.user_properties]


def pytest_configure(config: pytest.Config) -> None:
    # The secrets of this run stay with it: a run inside another (pytester) leaves the outer one as it
    # was. A cleanup runs after every pytest_unconfigure, when Appium's log is written to the end.
    config.add_cleanup(functools.partial(masking.forget_since, masking.known_values()))


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    # trylast: the innermost wrapper, so every other plugin's wrapper sees the masked report.
    outcome = yield
    mask_report(outcome.get_result())


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    mask_report(outcome.get_result())


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Know sop.yaml's secrets before any test runs (a Python test may hold one in a local)."""
    from .collect import get_suite

    with contextlib.suppress(pytest.UsageError, SopError, OSError):
        masking.remember(masking.suite_secret_values(get_suite(session.config).config))
    mask_allure_files()


def pytest_collection_finish(session: pytest.Session) -> None:
    """The secrets of the collected cases' inputs: known before the case that reveals them runs."""
    values: set[str] = set()
    for item in session.items:
        case = getattr(item, "case", None)
        row = getattr(case, "inputs", None)
        if row is not None:
            values |= masking.secret_values(row.values)
    masking.remember(values)


# -- Allure --------------------------------------------------------------------------------------


def mask_allure_files() -> None:
    """Wrap allure-pytest's file writer (when it is on) so results and attachments are masked."""
    try:
        import allure_commons
        from allure_commons.logger import AllureFileLogger
    except ImportError:  # pragma: no cover - allure-pytest is a dependency
        return
    manager = allure_commons.plugin_manager
    for plugin in manager.get_plugins():
        if isinstance(plugin, AllureFileLogger) and not getattr(plugin, "_sop_masked", False):
            _wrap(manager, plugin, allure_commons.hookimpl)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    allure_written()  # what allure-pytest reported last (session-scoped containers) is written too


def _wrap(manager: Any, logger: Any, hookimpl: Any) -> None:
    # Hook functions are read when a plugin registers: re-register the same object with masking
    # versions, under its own name (allure-pytest unregisters it by that name at the end).
    name = manager.get_name(logger)
    manager.unregister(logger)
    report_item, attach_data = logger._report_item, logger.report_attached_data

    def masked_item(item: Any) -> None:
        # A result handed over is finished (Allure has let go of it): masked and written off the
        # case's thread, while the next case starts.
        write_later(lambda: report_item(mask_value(item, masking.mask)))

    @hookimpl  # type: ignore[untyped-decorator]
    def report_attached_data(body: str | bytes, file_name: str) -> None:
        attach_data(masking.mask(body) if isinstance(body, str) else masking.known().mask_bytes(body), file_name)

    @hookimpl  # type: ignore[untyped-decorator]
    def report_attached_file(source: str, file_name: str) -> None:
        attach_data(masking.known().mask_bytes(Path(source).read_bytes()), file_name)

    logger._report_item = masked_item
    logger.report_attached_data = report_attached_data
    logger.report_attached_file = report_attached_file
    logger._sop_masked = True
    manager.register(logger, name)
