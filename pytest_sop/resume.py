"""Pause and resume of SOP cases under pytest: which cases ``--sop-resume`` runs, and how a case keeps
its device and account when it pauses (:mod:`holds`) and finds them, its place and its vars again.

- A case that pauses (``approve`` without a decision, ``handoff``) writes its pause record and
  turns its lease into a hold (:meth:`Lease.keep_for`) instead of releasing it.
- ``--sop-resume`` collects only paused cases whose decision is in (or that can no longer be
  resumed, to say why and end their hold); each takes its hold over, opens a session on the
  same device without reset or relaunch, restores vars and goes on from the paused step, which
  runs again to judge and record the decision (it sends nothing to the device).
- Run again without ``--sop-resume``, a paused case starts from the beginning on its held
  device and account; its pause is then over.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from . import decisions, holds
from .config import settings_key
from .errors import Paused, SopError
from .holds import PauseRecord, Waiting
from .lease_backend import LeaseTarget, release_hold
from .model import Sop, each_step

if TYPE_CHECKING:
    from .collect import SopItem
    from .leasing import Lease
    from .runner import Context


def suite_folder(config: pytest.Config) -> str:
    """The folder of sop.yaml (else pytest's rootdir): where ``.sop/holds/`` is."""
    from .collect import project_folder

    return project_folder(config)


def browser_profile(item: SopItem, device_id: str) -> str | None:
    """A web demo phone's own browser profile, kept like a phone's app data (``.sop/browser/DEVICE``),
    for a case that can pause or goes on from a pause; None: the run's own, removed at its end.

    Only those: a profile keeps what pages stored (typed text in Chromium's session files too), and
    a case that cannot pause needs nothing to outlive its run.
    """
    from urllib.parse import quote

    from .collect import get_suite

    if not (item.resuming or can_pause(item.case.sop, get_suite(item.config).get_sop)):
        return None
    return os.path.join(suite_folder(item.config), ".sop", "browser", quote(device_id, safe=""))


def can_pause(sop: Sop, get_sop: Callable[[str], Sop | None]) -> bool:
    """Whether ``sop``, or a SOP it runs, has an ``approve`` or ``handoff`` step."""
    seen, todo = {sop.id}, [sop]
    while todo:
        for step in each_step(todo.pop().steps):
            if step.action in ("approve", "handoff"):
                return True
            target = get_sop(step.params["sop"]) if step.action == "run" else None
            if target is not None and target.id not in seen:
                seen.add(target.id)
                todo.append(target)
    return False


def hold_target(record: PauseRecord, target: LeaseTarget | None) -> LeaseTarget:
    """Where a pause's hold is: the pausing run's lock folder, or the lease server, reached with
    ``target``'s DSN (the record never keeps one: it may hold a password).

    :raises SopError: the hold is on a lease server and ``target`` names none; nothing was changed.
    """
    if record.lease_server is None:
        return LeaseTarget("file", record.lock_dir)
    if target is None or target.dsn is None:
        raise SopError(
            f"the hold of paused case {record.case} is on lease server {record.lease_server}: give its DSN "
            "(sop.yaml leases:, or --leases DSN) to release it"
        )
    if target.server != record.lease_server:  # released there, it would stay held where it is
        raise SopError(
            f"the hold of paused case {record.case} is on lease server {record.lease_server}, not on "
            f"{target.server}: give that server's DSN (sop.yaml leases:, or --leases DSN) to release it"
        )
    return target


def end_hold(record: PauseRecord, target: LeaseTarget | None) -> None:
    """The hold released on the device and account (when no running case has them), and its record gone.
    ``target``: where this run or command leases (the DSN of a hold on a lease server)."""
    where = hold_target(record, target)
    try:
        release_hold(where, "device", record.device, record.hold_id)
        if record.account:
            release_hold(where, "account", record.account, record.hold_id)
    finally:
        holds.drop_record(record)


def changed_since(record: PauseRecord) -> bool:
    from .approvals import file_sha256

    try:
        return file_sha256(record.sop_file) != record.sop_sha256
    except OSError:
        return True


def decision_in(config: pytest.Config, record: PauseRecord) -> bool:
    """Whether what the paused case waits for is decided now (approved, rejected or done)."""
    from .collect import get_suite

    suite = get_suite(config)
    settings = config.stash[settings_key]
    waiting = record.waiting
    sop = suite.get_sop(waiting.sop)
    if sop is None:
        return True  # gone from the suite: collected, to end its hold with the reason
    policy = suite.config.policy
    path = os.path.join(str(config.invocation_params.dir), settings.approvals)
    if waiting.kind == "handoff":
        verdict = decisions.handoff(
            policy, path, sop.id, sop.path, waiting.name, waiting.role, record.case_id, record.since
        )
    else:
        verdict = decisions.approval(
            policy, settings.operator, path, sop.id, sop.path, waiting.name, waiting.role, record.case_id
        )
    return verdict.decision is not None


_paused_key = pytest.StashKey[dict[str, PauseRecord]]()


def paused_cases(config: pytest.Config) -> dict[str, PauseRecord]:
    """The suite's pause records by case, read once per process: a case looks its own up, not every file."""
    if _paused_key not in config.stash:
        config.stash[_paused_key] = {r.case: r for r in holds.records(suite_folder(config))}  # newest last wins
    return config.stash[_paused_key]


def select(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--sop-resume``: keep only paused cases that can go on now (or must be told why they cannot)."""
    from .collect import SopItem

    paused = paused_cases(config)
    keep = []
    for item in items:
        record = paused.get(item.nodeid) if isinstance(item, SopItem) else None
        if record is not None and (record.expired() or changed_since(record) or decision_in(config, record)):
            keep.append(item)
    if len(keep) != len(items):
        chosen = {id(i) for i in keep}
        config.hook.pytest_deselected(items=[i for i in items if id(i) not in chosen])
        items[:] = keep


def find_pause(item: SopItem) -> PauseRecord | None:
    """The case's pause, if it is paused and may go on; resuming, an error for one that cannot.

    :raises SopError: (``--sop-resume`` only) the SOP file changed since the pause, or the hold
        expired; the hold ends and the record goes, naming why. Or this run leases in another backend
        than the one the hold is in (lock files, a lease server): nothing changes.
    """
    from .runrecord import leases_target

    config = item.config
    record = paused_cases(config).get(item.nodeid)
    if record is None or not holds.record_path(record.suite, record.hold_id).exists():
        return None  # not paused, or its pause ended since this process read it (released)
    resuming = config.stash[settings_key].resume
    if record.expired():
        holds.drop_record(record)  # the lease mechanism ignores an expired hold already
        item.record("hold_expired", hold=record.hold_id, paused_run=record.run_id, expired=record.expires)
        if resuming:
            raise SopError(
                f"the hold of this paused case expired at {record.expires} (ini sop_hold_timeout): its device and "
                "account were given up; run the case again from the start"
            )
        return None
    here = leases_target(config).server
    if resuming and record.lease_server != here:
        # Taken in another backend or server, the device would be this case's twice over: the hold stays.
        kept = f"lease server {record.lease_server}" if record.lease_server else f"lock folder {record.lock_dir}"
        raise SopError(
            f"this case paused with its hold in {kept}, and this run leases from "
            f"{'lease server ' + here if here else 'lock files'}: resume it with the leases it paused with "
            "(or end the pause: pytest-sop handoff release)"
        )
    if resuming and changed_since(record):
        end_hold(record, leases_target(config))
        item.record("hold_released", hold=record.hold_id, paused_run=record.run_id, reason="SOP changed")
        raise SopError(
            f"SOP changed since it paused at {record.waiting.name}: the hold on device {record.device} is released; "
            "run the case again from the start"
        )
    return record


def only_held(pairs: list[Any], record: PauseRecord) -> list[Any]:
    """The one (device, account) pair the paused case holds."""
    return [(d, a) for d, a in pairs if (d.id, a.id if a else None) == (record.device, record.account)]


def resume_fields(record: PauseRecord | None, resuming: bool) -> dict[str, Any]:
    """What the case's lease line in the audit log says of its pause: the run it continues, or the pause it ends."""
    if record is None:
        return {}
    if resuming:
        return {"resumes_run": record.run_id, "hold": record.hold_id, "paused_at": record.waiting.name}
    return {"supersedes_hold": record.hold_id, "paused_run": record.run_id}


def restore(ctx: Context, record: PauseRecord) -> None:
    """The context as it was at the pause: vars, the place to go on from, when it paused; and the
    report says it is the same case continued (a link to the pause's result, the run it continues)."""
    from .recorders import AllureRecorder

    ctx.vars.update(record.vars)
    ctx.withheld_vars = tuple(record.withheld_vars)
    ctx.resume_at = [int(level["index"]) for level in record.position]
    ctx.paused_since = record.since
    said = f"run {record.run_id}, paused at {record.waiting.describe()} since {record.since} by {record.operator}"
    ctx.recorder.add_parameters([("resumed from", said)])
    uuid = record.evidence.get("allure_uuid")
    if uuid:
        AllureRecorder()._allure.dynamic.link(f"{uuid}-result.json", name=f"paused run {record.run_id}")
    with ctx.recorder.step(f"resumed at {record.waiting.describe()} (earlier steps ran in run {record.run_id})"):
        pass


def go_back(session: Any, record: PauseRecord) -> None:
    """Web: the page the case paused on (the device's profile kept its storage). Elsewhere the app is
    where the person left it."""
    if record.url and session.kind == "web":
        session.driver.get(record.url)


def capture(item: SopItem, paused: Paused) -> PauseRecord | None:
    """The pause record of a case that just paused, while its session is open (the page it is on) and
    its Allure result is the running one; None when holds are off (``sop_hold_timeout = 0``)."""
    from .recorders import current_test
    from .runrecord import alluredir, audit_path, leases_target, ledger_path, who_where

    config = item.config
    settings = config.stash[settings_key]
    ctx, lease = item.context, item.lease
    if ctx is None or lease is None or settings.hold_timeout <= 0:
        return None
    since = holds.now()
    test = current_test() if alluredir(config) else None
    position = [{"sop": sop, "index": index, "kind": "steps"} for sop, index in (ctx.paused_at or [])]
    kept, withheld = holds.vars_to_keep(ctx.vars, ctx.secrets.mask)
    who = who_where(config)
    evidence: dict[str, Any] = {
        "alluredir": alluredir(config), "audit": audit_path(config), "audit_run_id": who["run"],
        "ledger": ledger_path(config),  # where a release's sealed head is remembered
    }  # fmt: skip
    if test is not None:
        evidence.update(allure_uuid=test.uuid, history_id=getattr(test, "historyId", None))
    return PauseRecord(
        hold_id=holds.new_hold_id(), suite=suite_folder(config), sop=item.case.sop.id, case=item.nodeid,
        case_id=item.case.case_id or item.case.sop.id,
        sop_file=os.path.abspath(os.path.join(str(config.invocation_params.dir), item.case.sop.path)),
        sop_sha256=(item.sop_version or {}).get("sop_sha256", ""), position=position,
        waiting=Waiting(paused.kind, paused.name, paused.role, paused.sop or item.case.sop.id, paused.note),
        vars=kept, withheld_vars=withheld, device=lease.device.id,
        account=lease.account.id if lease.account else None, operator=settings.operator, run_id=who["run"],
        lock_dir=settings.lock_dir, since=holds.stamp(since),
        expires=holds.stamp(since + dt.timedelta(seconds=settings.hold_timeout)),
        url=_page(item, ctx.secrets.mask), evidence=evidence, lease_server=leases_target(config).server,
    )  # fmt: skip


def _page(item: SopItem, mask: Any) -> str | None:
    """The page a web case paused on, unless its address shows a secret (then the resume opens none)."""
    url = item.device_session.current_url() if item.device_session is not None else None
    return url if url is None or mask(url) == url else None


def keep(item: SopItem, lease: Lease, record: PauseRecord) -> None:
    """The paused case's lease becomes its hold: the record first (a crash in between leaves a record
    whose lease is free, never a hold nobody can resume), then the hold into the lock files."""
    holds.write_record(record)
    try:
        lease.keep_for(record.hold)
    except SopError:
        holds.drop_record(record)
        raise
    item.record(
        "hold", hold=record.hold_id, device=record.device, account=record.account,
        waiting_for=record.waiting.describe(), expires=record.expires,
        position=[level["index"] for level in record.position], vars=sorted(record.vars),
    )  # fmt: skip
