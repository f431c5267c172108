"""The pytest11 entry point ``sop``: the one place hooks are registered."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from . import hookspecs
from .allure_writes import allure_written
from .appium_service import AppiumService, appium_key
from .caserecord import attach_run_files, record_key
from .collect import SopFile, SopItem, abandon_next_sessions, finish_closing, get_suite, kept_session_key
from .config import WORKER_SETTINGS_KEY, addoption, resolve, settings_key, without_signing_key, worker_settings
from .errors import SopError, SopInvalid
from .fixtures import _sop_lease, sop_account, sop_device, sop_driver, sop_run  # noqa: F401 - fixtures
from .masking import guard_library_logs, mask
from .plan import missing_variables, plan_lines
from .recorders import clean_current_result, explain_xpass
from .runrecord import (
    RUN_ID_KEY,
    SIGNATURE_REFUSED,
    SIGNER_KEY,
    alluredir,
    audit_path,
    check_records,
    check_signature,
    close_ledger,
    flush_audit,
    init_run,
    leases_target,
    ledger_path,
    open_audit,
    prove_once,
    run_id_key,
    signer_input,
    who_where,
    write_run_files,
)
from .seal import seal_run
from .suiteconfig import load_config


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    addoption(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    settings = resolve(config)
    config.stash[settings_key] = settings
    config.addinivalue_line(
        "markers", "sop(device={...}, account={...}, app=NAME): what sop_device, sop_account and sop_driver use"
    )
    config.stash[appium_key] = AppiumService(config)
    init_run(config)
    guard_library_logs()
    config.pluginmanager.import_plugin("pytest_sop.report_masking")
    if hasattr(config, "workerinput") and getattr(config.option, "clean_alluredir", False):
        # The controller cleaned it; a worker (or one xdist starts after a crash) must not.
        config.option.clean_alluredir = False
    keep_audit_history(config)
    if config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(XdistHooks(config), "sop-xdist")
    if not settings.enabled:
        return
    if settings.dry_run:
        # A dry run touches no device, so it has nothing to spread over workers.
        config.option.numprocesses = None
        config.option.dist = "no"
    suite = get_suite(config)  # a bad sop.yaml stops the run here, as a usage error
    if not (hasattr(config, "workerinput") or config.option.collectonly or settings.dry_run):
        # The signature first: an unproven operator leaves no trace, not even a ledger file.
        check_signature(config, suite.config.policy)
        check_records(config)
        check_leases(config)


def check_leases(config: pytest.Config) -> None:
    """A lease server that cannot be used (a bad DSN, unreachable, refused) stops the run before any case."""
    from .lease_backend import check_target

    try:
        check_target(leases_target(config))
    except SopError as e:
        raise pytest.UsageError(mask(str(e))) from None


def keep_audit_history(config: pytest.Config) -> None:
    """``--clean-alluredir`` deletes the alluredir before anything runs: never with the audit history in it."""
    if hasattr(config, "workerinput") or not getattr(config.option, "clean_alluredir", False):
        return
    results, audit = alluredir(config), audit_path(config)
    if results is None or audit is None or not os.path.exists(audit):
        return
    if os.path.commonpath([os.path.abspath(results), os.path.abspath(audit)]) == os.path.abspath(results):
        raise pytest.UsageError(
            f"--clean-alluredir would delete the audit history in {audit}: keep the audit log elsewhere "
            "(--sop-audit PATH, and move the old log there), or clean the report folder yourself"
        )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    try:
        yield
        if isinstance(item, SopItem):
            # Last: the other plugins' setup (allure-pytest labelling the result) runs while Appium makes the session.
            item.join_session()
    except BaseException:
        if isinstance(item, SopItem):
            # Stopped in its setup, by a marker (skip), another plugin or its own: a session made for it
            # while the last case was reported, and not taken, must not hold the device meanwhile.
            abandon_next_sessions(item.config)
        raise


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    if isinstance(item, SopItem):
        report = outcome.get_result()
        if call.when != "call" and report.failed and call.excinfo and isinstance(call.excinfo.value, SopError):
            # pytest shows setup errors as tracebacks of its own internals; a lease timeout or a
            # session that could not be created is best said in its own words.
            report.longrepr = item.repr_failure(call.excinfo)
        item.record_report(report, call)
        record_lease(item, report, call.when)
    elif record_key in item.stash:  # a Python test that leased through the sop_* fixtures
        item.stash[record_key].report(outcome.get_result(), call)


leased_key = pytest.StashKey[str]()
#: The user property a case's setup report carries once it holds its lease (see scheduling.py).
LEASE_PROPERTY = "sop_lease"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if isinstance(item, SopItem):
        item.next_item = nextitem  # its session can be made while this case is reported


def record_lease(item: SopItem, report: pytest.TestReport, when: str) -> None:
    """What the case leased, in its setup report (xdist's controller schedules by it), and when it held
    the device, from lease to release, as Allure labels (the device timeline draws that span)."""
    lease = item.lease
    if when == "setup" and lease is not None:
        account = lease.account.id if lease.account else None
        report.user_properties.append((LEASE_PROPERTY, {"device": lease.device.id, "account": account}))
        item.stash[leased_key] = lease.since
    elif when == "teardown" and leased_key in item.stash and alluredir(item.config):
        from .recorders import AllureRecorder

        released = datetime.now(UTC).isoformat(timespec="milliseconds")
        AllureRecorder().add_labels([("leased", item.stash[leased_key]), ("released", released)])


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    allure_written()  # the run files below read the results
    # The last cases' sessions deleted and leases released; a lock that cannot be let go is freed
    # by the kernel when this process ends.
    with contextlib.suppress(OSError):
        finish_closing(config)
    if config.stash[settings_key].enabled and not config.stash[settings_key].dry_run:
        service = config.stash[appium_key]
        wanted = service.wanted(get_suite(config).config)
        config.stash[timeline_key] = write_run_files(config, service.url if wanted == "local" else wanted) or ""
        flush_audit(config)  # this process's last case lines come before the seal
        seal_run(session)  # last: the run's signed head covers every line it wrote
        attach_run_files(config, config.stash[timeline_key])  # the sealed log, as the report's run-level files


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    clean_current_result()  # allure-pytest has written its messages as module.Class: text; say them in words
    if report.when == "call" and report.failed and str(report.longrepr).startswith("[XPASS(strict)]"):
        explain_xpass(str(report.longrepr))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    timeline = config.stash.get(timeline_key, "")
    if timeline:
        terminalreporter.write_line(f"device timeline: {timeline}")
    path = audit_path(config) if config.stash[settings_key].enabled else None
    if path and os.path.exists(path):
        terminalreporter.write_line(f"audit log: {path} (check it with: pytest-sop audit verify {path})")


timeline_key = pytest.StashKey[str]()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    try:
        kept = config.stash.get(kept_session_key, None)
        if kept is not None:
            kept.quit()
        with contextlib.suppress(OSError):
            finish_closing(config)
    finally:
        try:
            flush_audit(config, close=True)
        finally:
            close_ledger(config)
            transport = sys.modules.get("pytest_sop.transport")  # imported only once a session was made
            if transport is not None:
                transport.kept_connections.close_idle()
            if appium_key in config.stash:
                config.stash[appium_key].stop()


class XdistHooks:
    """Registered only when xdist is present: hand the managed Appium to workers."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        """``pytest --sop -n N``: a worker is sent a case it can lease now, not one that waits for another's device."""
        from .scheduling import make_scheduler

        return make_scheduler(config, log)

    def pytest_handlecrashitem(self, crashitem: str, report: Any, sched: Any) -> None:
        """A worker died in a case: the dead worker cannot record its outcome, so the controller does."""
        if not self.config.stash[settings_key].enabled:
            return
        message = mask(str(report.longrepr)) if report.longrepr else "worker crashed"
        audit = open_audit(self.config, mask)
        if audit is not None:
            audit.append("outcome", case=crashitem, phase="call", outcome="failed", message=message.splitlines()[-1],
                         **who_where(self.config))  # fmt: skip
        from .ledger import Ledger

        sop = crashitem.split("::")[-1].split("[")[0]
        who = who_where(self.config)
        Ledger(ledger_path(self.config)).record_outcome(
            case=crashitem, sop=sop, owner=None, escalate_to=None, outcome="broken", message=message,
            evidence=None, run_id=who["run"], operator=who["operator"], device=None, account=None,
        )  # fmt: skip

    def pytest_configure_node(self, node: Any) -> None:
        config = node.config
        settings = config.stash[settings_key]
        node.workerinput[RUN_ID_KEY] = config.stash[run_id_key]
        node.workerinput[WORKER_SETTINGS_KEY] = worker_settings(settings)
        if not settings.enabled and settings.config_path is not None:
            # Python tests on the sop_* fixtures: the controller proves the operator, workers cannot.
            with contextlib.suppress(pytest.UsageError):  # a bad sop.yaml: each worker reports it
                node.workerinput[SIGNATURE_REFUSED] = prove_once(config)
        node.workerinput[SIGNER_KEY] = signer_input(config)
        # xdist hands workers the controller's command line too: not the key's path in it.
        node.workerinput["mainargv"] = without_signing_key(list(node.workerinput.get("mainargv", ())))
        if settings.enabled and config.stash[appium_key].wanted(get_suite(config).config) == "local":
            try:
                node.workerinput.update(config.stash[appium_key].worker_input())
            except SopError as e:  # no Appium, or it would not start: said once, not as an INTERNALERROR
                raise pytest.UsageError(str(e)) from None


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` with --sop: one worker per device in the pool.

    ``tryfirst``: xdist's own implementation (the CPU count) answers this first-result hook
    otherwise, whichever plugin happens to load first.
    """
    settings = resolve(config)
    if not settings.enabled:
        return None
    try:
        return max(1, len(load_config(settings.config_path).devices))
    except SopInvalid:
        return None  # reported with its lines once pytest configures


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> SopFile | None:
    if not parent.config.stash[settings_key].enabled:
        return None
    if get_suite(parent.config).matches(file_path.name):
        return SopFile.from_parent(parent, path=file_path)
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files named like SOPs that pytest never offers (a FIFO, a folder) stop the run; then ``--sop-due``."""
    settings = config.stash[settings_key]
    if settings.enabled:
        unusable = get_suite(config).unusable_files()
        if unusable:
            raise pytest.UsageError("SOP files that cannot be used:\n" + "\n".join(e.format() for e in unusable))
    if settings.enabled and settings.resume:
        from .resume import select

        select(config, items)  # only paused cases whose decision is in
    if not (settings.enabled and settings.due):
        return
    from .ledger import Ledger

    path = ledger_path(config)
    if not os.path.exists(path):
        return  # nothing has run yet: everything is due
    scheduled = [i for i in items if isinstance(i, SopItem) and i.case.sop.schedule is not None]
    passes = Ledger(path).last_passes(i.nodeid for i in scheduled)
    now = datetime.now(UTC)
    recent = {
        i.nodeid for i in scheduled
        if i.nodeid in passes and (now - passes[i.nodeid]).total_seconds() < (i.case.sop.schedule or 0)
    }  # fmt: skip
    if recent:
        config.hook.pytest_deselected(items=[i for i in items if i.nodeid in recent])
        items[:] = [i for i in items if i.nodeid not in recent]


def pytest_collection_finish(session: pytest.Session) -> None:
    if any(isinstance(item, SopItem) for item in session.items):
        # The collected suite (items, SOP models) lives until the process ends: moving it out
        # of the collector's reach spares every later full collection from rescanning it.
        gc.freeze()


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    settings = session.config.stash[settings_key]
    if not (settings.enabled and settings.dry_run) or session.config.option.collectonly:
        return None
    suite = get_suite(session.config)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    write = reporter.write_line if reporter else print
    cases = [item for item in session.items if isinstance(item, SopItem)]
    write("")
    short, needed = 0, set[str]()  # cases that would stop for want of a variable, and those variables
    for item in cases:
        missing = missing_variables(item.case, suite.config)
        for line in plan_lines(item.case, suite.config, missing):
            write(line)
        short += bool(missing)
        needed.update(m.name for m in missing)
    write(f"dry run: {len(cases)} case(s) planned, nothing was run")
    if short:  # a dry run is CI's pre-check: such a case fails it (exit 1)
        write(f"dry run: {short} case(s) need unset environment variables: {', '.join(sorted(needed))}")
        session.testsfailed = short
    return True
