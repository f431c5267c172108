"""pytest collection: a SOP file is a ``SopFile``; each case is a ``SopItem``."""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .actions import build_registry
from .allure_meta import UNSIGNED, labels_for
from .appium_server import session_log
from .appium_service import appium_key
from .background import background
from .caserecord import CaseRecord
from .config import settings_key
from .errors import CaseSkipped, LeaseLost, Paused, SopError, SopInvalid, StepBroken, StepFailed
from .grid import is_grid_device, wait_for_slot
from .leasing import pairs_for
from .model import Account, Case, Device
from .policy import allowed_pairs, check_sop
from .runrecord import alluredir, last_device_key, lease_pool, run_id_key, run_signer
from .suite import Suite, display_path
from .suiteconfig import load_config
from .templates import check_env

if TYPE_CHECKING:  # Appium and Selenium load only when a case runs, not on every pytest start
    from .holds import PauseRecord
    from .leasing import Lease
    from .masking import Secrets
    from .recorders import Recorder
    from .runner import Context
    from .session import DeviceSession

suite_key = pytest.StashKey[Suite]()


def get_suite(config: pytest.Config) -> Suite:
    """The run's suite: sop.yaml and every SOP file beside it, loaded once and lazily."""
    if suite_key not in config.stash:
        settings = config.stash[settings_key]
        try:
            shown = (
                display_path(settings.config_path, str(config.invocation_params.dir)) if settings.config_path else None
            )
            suite_config = load_config(settings.config_path, shown)
        except SopInvalid as e:
            raise pytest.UsageError(f"invalid suite config:\n{e}") from None
        root = os.path.dirname(settings.config_path) if settings.config_path else str(config.rootpath)
        config.stash[suite_key] = Suite(
            suite_config,
            build_registry(config.hook.pytest_sop_actions()),
            root,
            settings.patterns,
            base=str(config.invocation_params.dir),
            ignore=config.getini("norecursedirs"),
        )
    return config.stash[suite_key]


_tags_key = pytest.StashKey[dict[str, pytest.MarkDecorator]]()
# With --sop-session worker: the session the last case left open, for the next case to reuse.
kept_session_key = pytest.StashKey["DeviceSession | None"]()


class NextSession:
    """A session made for the case expected next on a device as soon as the last case's session is
    deleted, so its creation overlaps pytest's report of the last case and the next one's setup.
    ``key`` is what the session was made with; the next case takes it only if its own key is equal."""

    def __init__(self, key: tuple[Any, ...], create: Callable[[], DeviceSession]) -> None:
        self.key = key
        self._create = create
        self.future: Future[DeviceSession] = Future()

    def make(self) -> None:
        try:
            self.future.set_result(self._create())
        except BaseException as e:  # the case that takes it reports it, as its own session's error
            self.future.set_exception(e)


class Closing:
    """A case's device given back in the background: its session deleted, then its lease released,
    unless the next case of this process takes the lease over first (:meth:`take`). The case's
    release line is written before the lease is released; the device is never free while its
    session lives.

    With ``next``, the next case's session is made once this one is deleted, and the lease stays held
    for that case: it takes both (:meth:`take`), or :meth:`abandon` deletes the session and releases.
    With ``kept`` (``--sop-session worker``), the session is not deleted but kept for the worker's next
    case, and so is the lease: that case takes both, or :meth:`abandon` deletes it and releases."""

    def __init__(
        self, session: DeviceSession, lease: Lease, written: Callable[[], None], next: NextSession | None = None,
        *, kept: bool = False,
    ) -> None:  # fmt: skip
        self.lease = lease
        self.next = next
        self.kept = session if kept else None
        self._written = written  # waits until the case's release line is in the audit log
        self.quit_done = threading.Event()
        self._mutex = threading.Lock()
        self._settled = False  # taken over, or released
        self._dropped: Future[None] | None = None
        if kept:
            self.quit_done.set()  # nothing to wait for: the session goes on
            self._done: Future[None] = Future()
            self._done.set_result(None)
        else:
            self._done = background.submit(lambda: self._run(session))

    def _run(self, session: DeviceSession) -> None:
        try:
            session.quit()
        finally:
            self.quit_done.set()
            if self.next is not None:
                self.next.make()
            else:
                with self._mutex:
                    settled, self._settled = self._settled, True
                if not settled:
                    self._release()

    def _release(self) -> None:
        """The release line in the log first: the log alone shows no two holders overlapped. An error
        is said by finish() (releasing) or by the next flush (the line), in the process's main thread."""
        try:
            self._written()
        finally:
            self.lease.release()

    def holds(self, pairs: list[tuple[Any, Any]]) -> bool:
        return lease_in(self.lease, pairs)

    def finished(self) -> bool:
        """Nothing of it runs any more: :meth:`finish` returns at once."""
        return self._done.done() and (self._dropped is None or self._dropped.done())

    def take(self, case: str, requirement: str) -> Lease | None:
        """The lease, held on for ``case``, if it was not released yet. Its session may still be
        closing: wait for :attr:`quit_done` (or :attr:`next`) before the device's next session."""
        with self._mutex:
            if self._settled:
                return None
            self._settled = True
        try:
            return self.lease.hand_over(case, requirement)
        except BaseException:  # e.g. its lease server went away: nothing is handed over
            self._dropped = background.submit(self._drop)
            raise

    def abandon(self) -> None:
        """The case a session was made or kept for does not take this device: that session is deleted
        and the lease released, in the background."""
        if self.next is None and self.kept is None:
            return
        with self._mutex:
            if self._settled:
                return
            self._settled = True
        self._dropped = background.submit(self._drop)

    def _drop(self) -> None:
        """Once the last session is deleted, the one made for the next case too; then the lease let go
        (a failure to delete the last one is said by finish(), which reads the same future)."""
        try:
            with contextlib.suppress(BaseException):
                self._done.result()
                if self.next is not None:
                    self.next.future.result().quit()
                if self.kept is not None:
                    self.kept.quit()
        finally:
            self._release()

    def finish(self) -> None:
        """Wait until the session is deleted and the lease released (or taken over)."""
        self.abandon()
        self._done.result()
        if self._dropped is not None:
            self._dropped.result()


# Devices this process is giving back (Closing), the newest last.
closing_key = pytest.StashKey[list[Closing]]()


def finish_closing(config: pytest.Config) -> None:
    """Every device this process gave back is released (the end of the run)."""
    closing = config.stash.get(closing_key, [])
    errors: list[BaseException] = []
    while closing:
        try:
            closing.pop(0).finish()
        except BaseException as e:
            errors.append(e)
    if errors:
        raise errors[0]


def lease_in(lease: Lease, pairs: list[tuple[Any, Any]]) -> bool:
    held = (lease.device.id, lease.account.id if lease.account else None)
    return any((d.id, a.id if a else None) == held for d, a in pairs)


def abandon_next_sessions(config: pytest.Config) -> None:
    """Sessions made for a next case that did not take them are deleted, their devices released."""
    for closing in config.stash.get(closing_key, []):
        closing.abandon()


def _quit_when_created(creating: Future[DeviceSession]) -> None:
    if creating.exception() is None:
        creating.result().quit()


class SopFile(pytest.File):
    def collect(self) -> Iterator[SopItem]:
        suite = get_suite(self.config)
        result = suite.result(str(self.path))
        if result.errors:
            raise SopCollectError("\n".join(e.format() for e in result.errors))
        for case in result.cases:
            yield SopItem.from_parent(self, name=case.name, case=case)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> Any:  # type: ignore[override]
        if isinstance(excinfo.value, SopError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class SopCollectError(SopError):
    """All errors of one SOP file, shown as ``FILE:LINE:COLUMN: field: message`` lines."""


class SopItem(pytest.Item):
    def __init__(self, *, case: Case, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        markers = self.config.stash.setdefault(_tags_key, {})
        for tag in case.sop.tags:
            marker = markers.get(tag)
            if marker is None:  # registering the tag as a marker keeps --strict-markers happy
                self.config.addinivalue_line("markers", f"{tag}: SOP tag")
                marker = markers[tag] = getattr(pytest.mark, tag)
            self.add_marker(marker)  # one Mark per tag for the suite, not one per item
        if case.sop.xfail:
            # Expected to fail (a known product bug): a pass is a failure, XPASS(strict), so the SOP is
            # updated once the bug is fixed. Only a step failure is the expected one: a broken device is not.
            self.add_marker(pytest.mark.xfail(reason=case.sop.xfail, strict=True, raises=StepFailed))

    device_session: DeviceSession | None = None
    _creating: Future[DeviceSession] | None = None  # its session, asked for in setup
    _join: Callable[[], None] | None = None  # setup's end, once the session is made (join_session)
    _make_again: Callable[[], DeviceSession] | None = None  # the same session asked for anew (join_session)
    context: Context | None = None
    next_item: pytest.Item | None = None  # the case after this one in this process (set at teardown)
    session_key: tuple[Any, ...] | None = None  # what this case's session was made with
    lease_lost: str | None = None  # why its lease stopped being exclusive, found at teardown

    def setup(self) -> None:
        """Choose a device and account, and ask Appium for the session (:meth:`join_session` waits for it):
        trouble here or there is an error. A session made ahead for this case and not taken is deleted
        by plugin.py's ``pytest_runtest_setup`` when setup stops, whoever stopped it."""
        with self.interruptible("setup"):
            self._setup()

    @contextlib.contextmanager
    def interruptible(self, phase: str) -> Iterator[None]:
        """Ctrl-C, ``pytest.exit`` or a dying interpreter mid-case: pytest reports nothing, so record it here.

        The device is given back at once (session ended, then the lease), not at the end of the session.
        """
        try:
            yield
        except (KeyboardInterrupt, SystemExit, pytest.exit.Exception) as e:
            try:
                if self.case_record is not None:
                    self.case_record.interrupted(phase, e)
            finally:
                self.give_back(background=False)
            raise

    def _setup(self) -> None:
        from .masking import Secrets
        from .recorders import AllureRecorder, AuditRecorder, Recorders
        from .resume import browser_profile, find_pause, resume_fields
        from .session import DeviceSession, capabilities, device_position, resuming, session_key

        suite = get_suite(self.config)
        settings = self.config.stash[settings_key]
        self.secrets = secrets = Secrets()
        sop = self.case.sop
        self.case_record = CaseRecord(
            self.config, self.nodeid, sop.id, owner=sop.owner, escalate_to=sop.escalate_to,
            escalate_on=sop.escalate_on, mask=secrets.mask,
        )  # fmt: skip
        self.allure_labels()  # first: a case skipped by policy is labelled too
        check_env(sop, suite.get_sop)  # an unset ${env.NAME} stops the case before it holds anything
        self.pause = find_pause(self)  # a paused case goes on (--sop-resume) or starts again on what it holds
        self.resuming = settings.resume and self.pause is not None
        lease, closing = self.take_lease()
        self.closing = closing
        kept = self.config.stash.get(kept_session_key, None)
        self.config.stash[kept_session_key] = None
        if kept is not None and closing is not None and closing.kept is kept:
            self.device_session = kept  # kept with the lease this case took: deleted with it if setup stops
        device, account = lease.device, lease.account
        app = suite.config.apps.get(sop.app) if sop.app else None
        made = closing.next if closing is not None else None  # a session made for this case, if any
        try:
            try:
                caps = capabilities(device, app, secrets.resolve, device_position(suite.config, device))
                caps = resuming(caps) if self.resuming else caps
                endpoint = self.config.stash[appium_key].endpoint(device, suite.config)
            finally:
                self.case_record.leased(lease, **(self.sop_version or {}), **resume_fields(self.pause, self.resuming))
            if self.pause is not None and not self.resuming:
                from .holds import drop_record

                drop_record(self.pause)  # started again from the beginning: that pause is over
            profile = browser_profile(self, device.id)
            self.session_key = session_key(device, app, endpoint, caps, profile)
        except BaseException:
            if made is not None:
                made.future.add_done_callback(_quit_when_created)
            raise
        creating: Future[DeviceSession] | None = None
        if kept is not None and self.device_session is kept and not self.resuming and kept.app == app and kept.alive():
            kept.reset_app()
            self.device_session = kept
        elif made is not None and not self.resuming and made.key == self.session_key:
            creating = made.future  # made for this case while the last one was reported
        else:
            if kept is not None:
                kept.quit()
                self.device_session = None
            if closing is not None:
                closing.quit_done.wait()  # one session at a time on a device: the last case's is deleted first
            # The session request is in flight while the bookkeeping that does not need it is done.
            timeout = settings.lease_timeout

            def create() -> DeviceSession:
                if made is not None:  # made for a case unlike this one: deleted before this one's
                    with contextlib.suppress(BaseException):
                        made.future.result().quit()
                if is_grid_device(device):  # its slot may be busy outside our leases: waited for, not queued
                    wait_for_slot(device, timeout)
                return DeviceSession.create(device, app, endpoint, caps, secrets.mask, profile)

            creating = background.submit(create)
        try:
            AllureRecorder().add_labels([("device", device.id)] + ([("account", account.id)] if account else []))
            # Allure's steps cost time even when nothing listens: use them only with an alluredir.
            sinks: list[Recorder] = [AllureRecorder()] if alluredir(self.config) else []
            if self.case_record.audit is not None:
                sinks.append(AuditRecorder(self.case_record.audit, self.nodeid, self.config.stash[run_id_key]))
            recorder = Recorders(*sinks)
        except BaseException:
            if creating is not None:
                self.device_session = self.session_from(creating)  # deleted at teardown
            raise
        self._creating = creating
        self._make_again = functools.partial(DeviceSession.create, device, app, endpoint, caps, secrets.mask, profile)
        self._join = functools.partial(self._with_session, kept, device, account, endpoint, secrets, recorder)

    def join_session(self) -> None:
        """The end of setup, once the case's session is made: called after the other plugins' setup
        (``pytest_runtest_setup``), which then runs while Appium creates the session."""
        join, self._join = self._join, None
        make_again, self._make_again = self._make_again, None  # its capabilities hold secrets: kept no longer
        if join is None:
            return
        with self.interruptible("setup"):
            creating, self._creating = self._creating, None
            if creating is not None:
                self.device_session = self.session_from(creating)
                if make_again and self.device_session.may_have_ended() and not self.device_session.alive():
                    self.device_session.delete()  # Appium ended it while it waited: another, made now
                    self.device_session = self.session_from(background.submit(make_again))
            join()

    def _with_session(
        self, kept: DeviceSession | None, device: Device, account: Account | None, endpoint: str, secrets: Secrets,
        recorder: Recorder,
    ) -> None:  # fmt: skip
        """What needs the session: its line in the audit log, and the case's context."""
        from .resume import go_back, restore
        from .runner import Context

        assert self.device_session is not None and self.case_record is not None
        suite = get_suite(self.config)
        settings = self.config.stash[settings_key]
        if self.resuming and self.pause is not None:
            go_back(self.device_session, self.pause)
        reused = self.device_session is kept
        self.record(
            "session", device=device.id, endpoint=endpoint, session=self.device_session.session_id, reused=reused
        )
        self.case_record.write_soon()  # what it holds is on record before its first step, should it crash
        self.context = Context(
            case=self.case, session=self.device_session, device=device, account=account, secrets=secrets,
            recorder=recorder, registry=suite.registry, get_sop=suite.get_sop, evidence=settings.evidence,
            operator=settings.operator, policy=suite.config.policy,
            approvals_path=os.path.join(str(self.config.invocation_params.dir), settings.approvals),
        )  # fmt: skip
        if self.resuming and self.pause is not None:
            restore(self.context, self.pause)

    secrets: Secrets | None = None
    # Pause and resume (resume.py): the case's pause found at setup, whether this run goes on from it,
    # the pause it reached now (kept as a hold at teardown), and whether it reached an outcome.
    pause: PauseRecord | None = None
    resuming: bool = False
    paused_now: PauseRecord | None = None
    finished: bool = False
    case_record: CaseRecord | None = None
    closing: Closing | None = None  # the device's last session, closing, when this case held its lease on
    sop_version: dict[str, Any] | None = None

    @property
    def lease(self) -> Lease | None:
        return self.case_record.lease if self.case_record else None

    @staticmethod
    def session_from(creating: Future[DeviceSession]) -> DeviceSession:
        """The session being created; if this process is stopped while waiting, it is deleted when it comes."""
        try:
            return creating.result()
        except BaseException:
            if not creating.done():
                creating.add_done_callback(_quit_when_created)
            raise

    def take_lease(self) -> tuple[Lease, Closing | None]:
        """A device and account held only by this case, preferring this worker's last device; and the
        device's last case's closing session when its lease was held on for this case.

        The policy comes first: a case the operator may not run is skipped before any lease.
        """
        sop = self.case.sop
        config = self.config
        suite = get_suite(config)
        policy = suite.config.policy
        operator = config.stash[settings_key].operator
        roles, reason = check_sop(policy, operator, sop, suite.get_sop)  # and every SOP it runs
        if reason:
            pytest.skip(f"not permitted: {reason}")
        pairs = pairs_for(
            suite.config, sop.device, sop.account,
            account_id=self.case.account_id, prefer_device=config.stash.get(last_device_key, None),
        )  # fmt: skip
        pairs = allowed_pairs(policy, roles, pairs)
        if not pairs:
            pytest.skip(f"not permitted: {operator!r} may not use the devices and accounts this SOP needs")
        if self.pause is not None:
            from .resume import only_held

            pairs = only_held(pairs, self.pause)  # a paused case keeps its device and account
            if not pairs:
                raise SopError(
                    f"this case paused on device {self.pause.device}"
                    + (f" with account {self.pause.account}" if self.pause.account else "")
                    + ", which the suite or policy no longer offers it: end the pause (pytest-sop handoff release)"
                )
        requirement = f"device {sop.device or 'any'}" + (f", account {sop.account}" if sop.account else "")
        closing = config.stash.setdefault(closing_key, [])
        last = closing[-1] if closing else None
        for done in [c for c in closing if c.finished() and c is not last]:
            closing.remove(done)
            done.finish()  # an error it kept (a release line not written) stops this case before it holds anything
        lease = None
        if last is not None and last.holds(pairs):
            # The device this worker just used, still held: held on, never free in between.
            lease = last.take(self.nodeid, requirement)
        abandon_next_sessions(config)  # made for this case, but it takes another device
        if lease is None:
            for earlier in [c for c in closing if c.holds(pairs)]:
                earlier.finish()  # released in a moment: wait for it rather than take a second choice
            lease = lease_pool(config).acquire(
                pairs, case=self.nodeid, timeout=config.stash[settings_key].lease_timeout, requirement=requirement,
                hold=self.pause.hold_id if self.pause else None, keep_hold=self.resuming,
            )  # fmt: skip
            last = None
        config.stash[last_device_key] = lease.device.id
        return lease, last

    def record(self, event: str, **fields: Any) -> None:
        """An audit line about this case, with who ran it where."""
        if self.case_record is not None:
            self.case_record.event(event, **fields)

    def allure_labels(self) -> None:
        from .recorders import AllureRecorder

        sop = self.case.sop
        operator = self.config.stash[settings_key].operator
        signer = run_signer(self.config)
        suite_dir = os.path.dirname(os.path.abspath(get_suite(self.config).config.path or "sop.yaml"))
        suite_name = os.path.basename(suite_dir) or "SOPs"
        labels = labels_for(self.case, None, None, operator, suite_name, signer.fingerprint if signer else UNSIGNED)
        allure = AllureRecorder()
        # allure-pytest adds the tag and framework labels itself, from the marks
        allure.add_labels([(name, value) for name, value in labels if name not in ("tag", "framework")])
        path = os.path.join(str(self.config.invocation_params.dir), sop.path)
        self.sop_version = sop_version(self.config, path)
        allure.identify_case(
            self.case.case_id, (sop_link(self.config, path, sop.pos.line, sop.id), f"SOP file {sop.path}")
        )
        shown = [("SOP sha256", self.sop_version["sop_sha256"])]
        if "sop_commit" in self.sop_version:
            dirty = " (the SOP file has uncommitted changes)" if self.sop_version["sop_dirty"] else ""
            shown.append(("SOP commit", self.sop_version["sop_commit"] + dirty))
        allure.add_parameters(shown)

    def record_report(self, report: pytest.TestReport, call: pytest.CallInfo[None]) -> None:
        """The case's outcome, once per phase that decides it: audit log, then run ledger."""
        if self.case_record is None:  # setup stopped before the record existed
            self.case_record = CaseRecord(self.config, self.nodeid, self.case.sop.id, owner=self.case.sop.owner,
                                          escalate_to=self.case.sop.escalate_to,
                                          escalate_on=self.case.sop.escalate_on)  # fmt: skip
        self.case_record.report(report, call)

    def runtest(self) -> None:
        from .recorders import AllureRecorder
        from .runner import run_case

        assert self.context is not None
        sop = self.case.sop
        # Set now, not in setup: allure-pytest writes its own description after setup.
        AllureRecorder().describe("\n\n".join(t for t in (sop.title, sop.description) if t))
        try:
            with self.interruptible("call"):
                run_case(self.context)
            self.finished = True
            if self.config.stash[settings_key].session != "worker":
                # Passed: nothing reads the app any more. Its session ends while pytest and Allure
                # report the case, off the device's way to its next case (a failure keeps it for hooks).
                self.context.session.end_soon()
        except Paused as e:
            from .resume import capture

            self.finished = True
            self.paused_now = capture(self, e)
            pytest.skip(str(e))
        except CaseSkipped as e:
            self.finished = True
            pytest.skip(str(e))
        except (StepFailed, StepBroken):
            self.finished = True
            self.attach_appium_log()
            raise

    def attach_appium_log(self) -> None:
        service = self.config.stash[appium_key]
        if self.device_session is not None and self.context is not None and service.log_path is not None:
            text = session_log(service.log_path, self.device_session.session_id)
            if text:  # masked by the recorder, in every spelling (Selenium's character arrays too)
                self.context.recorder.attach("appium log", self.context.secrets.mask(text), "text/plain", "log")

    def teardown(self) -> None:
        creating, self._creating, self._join = self._creating, None, None
        if creating is not None:  # another plugin's setup failed after this one's: the session, deleted below
            with contextlib.suppress(Exception):
                self.device_session = self.session_from(creating)
        # Asked before giving back: a lease whose server went away while the case ran was not
        # exclusive, and the case says so (broken) rather than pass unnoticed.
        lease = self.lease
        lost = self.lease_lost = lease.lost() if lease is not None else None
        self.give_back(background=True)
        if lost is not None:
            raise LeaseLost(f"device {lease.device.id if lease else '?'}: {lost}")

    def give_back(self, *, background: bool) -> None:
        """The case's release line now; the session deleted and the lease released in the background
        (``background``), off the device's critical path: the next case of this process holds the lease
        on if it can use the device, and creates its session only once this one is deleted."""
        session, self.device_session = self.device_session, None
        record = self.case_record
        if self.closing is not None:
            self.closing.quit_done.wait()  # the lease this case held on is never freed before that session ends
        if self.keep_hold(session):
            return
        held = self.lease
        # --sop-session worker: the session is kept for the next case when that case takes this device and
        # account, and so is the lease (another run would make a second session on a device left free).
        keep = (
            background and session is not None and held is not None
            and self.config.stash[settings_key].session == "worker" and self.next_case(held) is not None
            and session.alive()
        )  # fmt: skip
        if session is None or record is None or not background:
            try:
                if session is not None:
                    session.quit()
            finally:
                if record is not None:
                    record.release()
            return
        try:
            lease = record.give_back(wait=False)
        except BaseException:
            session.quit()
            raise
        if lease is None:
            session.quit()
        elif keep:
            self.config.stash[kept_session_key] = session
            self.config.stash.setdefault(closing_key, []).append(Closing(session, lease, record.written, kept=True))
        else:
            try:
                upcoming = self.next_session(lease)
            except Exception:  # e.g. an unset secret in its capabilities: that case says so in its own setup
                upcoming = None
            closing = Closing(session, lease, record.written, upcoming)
            self.config.stash.setdefault(closing_key, []).append(closing)

    def next_case(self, lease: Lease) -> SopItem | None:
        """This process's next case, when it would take this device and account on (hand-over)."""
        case = self.next_item
        if not isinstance(case, SopItem) or self.config.stash[settings_key].resume or self.lease_lost:
            return None  # a resume's session is made differently; a lost lease is not exclusive any more
        sop = case.case.sop
        pairs = pairs_for(get_suite(self.config).config, sop.device, sop.account, account_id=case.case.account_id)
        return case if sop.app == self.case.sop.app and lease_in(lease, pairs) else None

    def next_session(self, lease: Lease) -> NextSession | None:
        """The session of this process's next case, to be made as soon as this one's is deleted, when
        that case would take this device and account on (hand-over) with a session made alike."""
        from .resume import browser_profile
        from .session import DeviceSession, capabilities, device_position, session_key

        case = self.next_case(lease)
        if case is None or self.secrets is None or is_grid_device(lease.device):
            return None  # a grid slot is waited for
        suite = get_suite(self.config)
        sop = case.case.sop
        device, mask = lease.device, self.secrets.mask
        app = suite.config.apps.get(sop.app) if sop.app else None
        caps = capabilities(device, app, self.secrets.resolve, device_position(suite.config, device))
        endpoint = self.config.stash[appium_key].endpoint(device, suite.config)
        profile = browser_profile(case, device.id)
        return NextSession(
            session_key(device, app, endpoint, caps, profile),
            lambda: DeviceSession.create(device, app, endpoint, caps, mask, profile),
        )

    def keep_hold(self, session: DeviceSession | None) -> bool:
        """A case that paused now keeps its lease as a new hold; a resume that did not reach an outcome
        (interrupted, or its session could not be made) keeps the hold it took. True when it did."""
        from .holds import drop_record
        from .resume import keep

        record = self.case_record
        lease = record.lease if record is not None else None
        hold = self.paused_now or (self.pause if self.resuming and not self.finished else None)
        if self.resuming and self.pause is not None and self.finished:
            drop_record(self.pause)  # went on (passed, failed, rejected, paused again): that pause is over
        if record is None or lease is None or hold is None:
            return False
        if session is not None:
            session.quit()  # the device as the case left it, its session ended before the hold begins
        record.lease = None
        if hold is self.paused_now:
            keep(self, lease, hold)
        else:
            lease.keep_for(hold.hold)
            self.record("hold", hold=hold.hold_id, device=hold.device, account=hold.account, kept="not finished")
        record.flush()
        return True

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        from .masking import mask
        from .outcome import describe_failure
        from .report_masking import mask_value

        # Every secret the run knows, not only this case's: a reused session may show another case's.
        err = excinfo.value
        if self.context is not None and self.context.failure is not None and isinstance(err, SopError):
            base = str(self.config.invocation_params.dir)
            return mask(describe_failure(self.context.failure, str(err), base))
        if isinstance(err, SopError):
            return mask(str(err))
        # An unexpected exception: its traceback (with -l, its locals too) is masked before anyone prints
        # it, and starts where the plugin's code does, as a Python test's starts at the test function.
        if not self.config.getoption("fulltrace", False):
            from _pytest._code.code import filter_traceback

            excinfo.traceback = excinfo.traceback.filter(filter_traceback)
        return mask_value(super().repr_failure(excinfo, style), mask)

    def reportinfo(self) -> tuple[Any, int, str]:
        return self.path, self.case.sop.pos.line - 1, f"SOP {self.name}"


# -- which version of a SOP ran, and where to read it ---------------------------------------------

SOURCE_URL_INI = "sop_source_url"
SOURCE_URL_FIELDS = ("commit", "path", "line", "sop")
_git_key = pytest.StashKey[dict[str, tuple[str, str] | None]]()


def _git(folder: str, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return None  # no git here
    return done.stdout if done.returncode == 0 else None


def git_head(config: pytest.Config, folder: str) -> tuple[str, str] | None:
    """(repository root, commit) of the git repository holding ``folder``, asked once per run; None: not in one."""
    cache = config.stash.setdefault(_git_key, {})
    if folder not in cache:
        out = _git(folder, "rev-parse", "--show-toplevel", "HEAD")
        lines = out.split("\n") if out else []
        cache[folder] = (lines[0], lines[1]) if len(lines) >= 2 and lines[1] else None
    return cache[folder]


def sop_version(config: pytest.Config, path: str) -> dict[str, Any]:
    """The SOP file's sha256 and, in a git repository, its commit and whether the file differs from it."""
    version: dict[str, Any] = {"sop_sha256": _sha256_of(config, path)}
    head = git_head(config, os.path.dirname(os.path.abspath(path)))
    if head is not None:
        changed = _changed_files(config, head[0])
        version["sop_commit"] = head[1]
        # Untracked is not in the commit either; no answer from git: not known to be clean.
        version["sop_dirty"] = changed is None or os.path.realpath(path) in changed
    return version


_hashes_key = pytest.StashKey[dict[str, tuple[tuple[int, ...], str]]]()


def _sha256_of(config: pytest.Config, path: str) -> str:
    """The file's sha256 (the hash approvals are taken on), hashed again only when the file changed:
    an edit changes its ctime, which no one can set back."""
    from .approvals import file_sha256

    st = os.stat(path)
    stamp = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    cache = config.stash.setdefault(_hashes_key, {})
    known = cache.get(path)
    if known is None or known[0] != stamp:
        known = cache[path] = (stamp, file_sha256(path))
    return known[1]


_changed_key = pytest.StashKey[dict[str, frozenset[str] | None]]()


def _changed_files(config: pytest.Config, repo: str) -> frozenset[str] | None:
    """Files of ``repo`` that differ from its HEAD (untracked included), asked once per run and repository:
    a git process per case would cost every case its start-up."""
    cache = config.stash.setdefault(_changed_key, {})
    if repo not in cache:
        out = _git(repo, "status", "--porcelain=v1", "-z", "--untracked-files=all")
        if out is None:
            cache[repo] = None
        else:
            entries = out.split("\0")
            paths: set[str] = set()
            skip = False
            for entry in entries:
                if skip or len(entry) < 4:  # a rename's second field is its old name
                    skip = False
                    continue
                skip = entry[0] in "RC"
                paths.add(os.path.realpath(os.path.join(repo, entry[3:])))
            cache[repo] = frozenset(paths)
    return cache[repo]


def project_folder(config: pytest.Config) -> str:
    """The folder of sop.yaml, else pytest's rootdir: what SOP links are relative to."""
    path = config.stash[settings_key].config_path
    return os.path.dirname(os.path.abspath(path)) if path else str(config.rootpath)


def source_url_template(config: pytest.Config) -> str | None:
    try:
        value = config.getini(SOURCE_URL_INI)
    except ValueError:  # not registered: no source URL was asked for
        return None
    return (str(value).strip() or None) if value else None


def sop_link(config: pytest.Config, path: str, line: int, sop_id: str) -> str:
    """Where the report's SOP link points: ``sop_source_url`` filled in, else the file relative to the project.

    :raises SopError: for a template with a placeholder it does not know.
    """
    abspath = os.path.abspath(path)
    relative = Path(os.path.relpath(abspath, project_folder(config))).as_posix()
    template = source_url_template(config)
    if template is None:
        return relative
    head = git_head(config, os.path.dirname(abspath))
    in_repo = Path(os.path.relpath(abspath, head[0])).as_posix() if head else relative
    fields = {"commit": head[1] if head else "HEAD", "path": in_repo, "line": str(line), "sop": sop_id}
    if "{path}" not in template:
        template += "{path}#L{line}"
    try:
        return template.format_map(fields)
    except (KeyError, IndexError, ValueError) as e:
        known = ", ".join(f"{{{f}}}" for f in SOURCE_URL_FIELDS)
        raise SopError(f"ini {SOURCE_URL_INI} = {template!r}: {e} is not a placeholder; known: {known}") from None
