"""What one case leaves in the audit log and the run ledger, whoever ran it.

A SOP case and a Python test that leases through the ``sop_*`` fixtures are recorded alike:
the lease, the release, and one outcome per phase that decides it. Recording never turns a
case's outcome into an internal error: a record that cannot be written fails the case, with
the reason, and the lease is still released.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from .runrecord import alluredir, case_audit, ledger_outcome, run_ledger, who_where

if TYPE_CHECKING:
    from .audit import QueuedLog
    from .leasing import Lease

record_key = pytest.StashKey["CaseRecord"]()


class CaseRecord:
    """The audit and ledger record of one case (``nodeid``), for SOP ``sop`` (a Python test: its node id)."""

    def __init__(
        self,
        config: pytest.Config,
        nodeid: str,
        sop: str,
        *,
        owner: str | None = None,
        escalate_to: str | None = None,
        escalate_on: tuple[str, ...] = ("failed",),
        mask: Any = str,
    ) -> None:
        self.config = config
        self.nodeid = nodeid
        self.sop = sop
        self.owner = owner
        self.escalate_to = escalate_to
        self.escalate_on = escalate_on
        self.mask = mask
        self.audit: QueuedLog | None = case_audit(config, mask)
        self.lease: Lease | None = None
        self.decided = False  # an outcome that decides the case was recorded

    def event(self, event: str, **fields: Any) -> None:
        """An audit line about this case, with who ran it where: written in the background, in order
        (:meth:`flush` waits for it)."""
        if self.audit is not None:
            self.audit.append(event, case=self.nodeid, sop=self.sop, **who_where(self.config), **fields)

    def write_soon(self) -> None:
        """This case's lines so far are written now, in the background (see AuditQueue.write_soon)."""
        if self.audit is not None:
            self.audit.queue.write_soon()

    def flush(self) -> None:
        """Every audit line of this case so far is in the file; raises when one could not be written."""
        if self.audit is not None:
            self.audit.flush()

    def leased(self, lease: Lease, **sop_version: Any) -> None:
        """The case's first line: what it holds, and which version of its SOP file (sha256, git commit) runs."""
        self.lease = lease
        account = lease.account.id if lease.account else None
        self.event("lease", device=lease.device.id, account=account, waited=lease.waited, **sop_version)

    def release(self) -> None:
        """Recorded while still held (the audit log alone proves no two cases overlapped), released whatever happens."""
        lease = self.give_back()
        if lease is not None:
            lease.release()

    def give_back(self, *, wait: bool = True) -> Lease | None:
        """The case's release line, in the log while the lease is still held; the lease itself is then the
        caller's to release (after the device's session is deleted). Released here if the line cannot be written.

        ``wait=False``: the line is queued, and the caller calls :meth:`written` before releasing the
        lease; an error writing it fails the next flush (the next case's outcome, or the run's end)."""
        lease, self.lease = self.lease, None
        if lease is None:
            return None
        try:
            self.event("release", device=lease.device.id, account=lease.account.id if lease.account else None)
            if wait:
                self.flush()
        except BaseException:
            lease.release()
            raise
        return lease

    def written(self) -> None:
        """Every audit line of this case so far is in the file, or failed (see :meth:`give_back`)."""
        if self.audit is not None:
            self.audit.written()

    def report(self, report: pytest.TestReport, call: pytest.CallInfo[None]) -> None:
        """The outcome of one phase: an audit line when it says something, a ledger row when it decides the case.

        A record that cannot be written makes the report failed, naming why: a case whose
        outcome is not on record must not pass.
        """
        try:
            self._report(report, call)
        except Exception as e:  # the audit log or ledger failed: say so on the case, not as INTERNALERROR
            report.outcome = "failed"
            report.longrepr = self.mask(f"{report.longreprtext}\nthe case's record could not be written: {e}".strip())

    def _report(self, report: pytest.TestReport, call: pytest.CallInfo[None]) -> None:
        text = self.mask(report.longreprtext) if report.longreprtext else ""
        last = text.splitlines()[-1] if text else ""
        assertion = call.excinfo is not None and isinstance(call.excinfo.value, AssertionError)
        says = ledger_outcome(report, assertion)
        unaudited: Exception | None = None
        if report.when == "call" or report.outcome != "passed":
            outcome = "error" if report.when != "call" and report.failed else report.outcome
            try:
                self.event("outcome", phase=report.when, outcome=outcome, message=last)
                self.flush()  # in the log before pytest reports the case
            except Exception as e:  # the ledger still hears of the case, as broken
                unaudited = e
                says = "broken"
                text = last = f"the audit log could not be written: {e}"
        if says is not None and (report.when != "teardown" or says == "broken"):
            self.ledger(says, text)  # the whole message: the ledger is where someone reads why
        if unaudited is not None:
            raise unaudited

    def interrupted(self, phase: str, error: BaseException) -> None:
        """Ctrl-C or an internal error in the middle of the case: pytest writes no report, so this is its outcome."""
        if self.decided:
            return
        message = self.mask(f"{type(error).__name__}: {error}".rstrip(": ").strip())
        try:
            self.event("outcome", phase=phase, outcome="interrupted", message=message)
            self.flush()
        finally:
            self.ledger("broken", f"interrupted in {phase}: {message}")

    def ledger(self, outcome: str, message: str) -> None:
        from .recorders import AllureRecorder

        lease = self.lease
        who = who_where(self.config)
        self.decided = True
        record = run_ledger(self.config).record_outcome(
            case=self.nodeid, sop=self.sop, owner=self.owner, escalate_to=self.escalate_to, outcome=outcome,
            message=self.mask(message), evidence=alluredir(self.config),
            run_id=who["run"], operator=who["operator"], device=lease.device.id if lease else None,
            account=lease.account.id if lease and lease.account else None,
            escalate_after=int(self.config.getini("sop_escalate_after")), escalate_on=self.escalate_on,
        )  # fmt: skip
        if record is not None and "escalated" in record.changes:
            self.event(
                "escalated", exception=record.id, to=record.escalated_to, to_source=record.escalated_to_source,
                count=record.failures_in_row,
            )  # fmt: skip
            self.flush()
        if record is not None and record.escalated_to:
            AllureRecorder().add_labels([("escalated_to", record.escalated_to)])


def attach_run_files(config: pytest.Config, timeline: str) -> None:
    """The device timeline and the audit log as the report's run-level (global) attachments: once, by
    the controlling process, after the run's last audit line (its seal)."""
    from .allure_meta import write_globals
    from .runrecord import audit_path

    results = alluredir(config)
    if hasattr(config, "workerinput") or results is None:
        return
    audit = audit_path(config)
    files = [("device timeline", timeline, "image/svg+xml", "svg")] if timeline else []
    if audit:
        files.append(("audit log", audit, "text/plain", "jsonl"))
    write_globals(results, files)
