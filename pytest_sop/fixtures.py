"""Fixtures for Python tests: a device, an account, an Appium driver, and SOP steps run from Python.

Pick what you need with the ``sop`` marker or indirect parameters. The device and account
are leased like a SOP case's: no other test or case holds them meanwhile. ::

    @pytest.mark.sop(device={"platform": "web"}, account={"role": "publisher"}, app="snapgram")
    def test_feed(sop_driver, sop_run):
        sop_run("sign-in")
        sop_run([{"tap": {"id": "compose"}}, {"wait_for": {"id": "caption"}}])
        assert sop_driver.find_element("css selector", "#caption").is_displayed()
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from .errors import CaseSkipped, LeaseLost, SopError, SopInvalid, SopSyntaxError
from .model import Account, AccountRequirement, Case, Device, DeviceRequirement, InputRow, Sop, SourcePos

if TYPE_CHECKING:
    from .leasing import Lease
    from .masking import Secrets
    from .runner import Context

_context_key: pytest.StashKey[Context] = pytest.StashKey()
_secrets_key: pytest.StashKey[Secrets] = pytest.StashKey()


def _wanted(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    # Indirect parameters of sop_device / sop_account, else the sop marker.
    callspec = getattr(request.node, "callspec", None)
    param = callspec.params.get(f"sop_{name}") if callspec else None
    if isinstance(param, dict):
        return dict(param)
    marker = request.node.get_closest_marker("sop")
    return dict(marker.kwargs.get(name, {})) if marker else {}


def _tags(value: Any) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value or ())


@pytest.fixture
def _sop_lease(request: pytest.FixtureRequest) -> Iterator[Lease]:
    """One lease for the test: the device and the account it asked for, held until it ends.

    The policy applies as to a SOP case: an operator it does not name, or a device or account
    none of their roles may use, skips the test before any lease. The lease, its release and
    the test's outcome go into the audit log and the run ledger.
    """
    from .caserecord import CaseRecord, record_key
    from .collect import get_suite
    from .config import settings_key
    from .leasing import pairs_for
    from .masking import Secrets
    from .policy import allowed_pairs, roles_of
    from .runrecord import lease_pool

    config = request.config
    node = request.node
    secrets = node.stash[_secrets_key] = Secrets()
    record = node.stash[record_key] = CaseRecord(config, node.nodeid, node.nodeid, mask=secrets.mask)
    suite = get_suite(config)
    policy = suite.config.policy
    operator = config.stash[settings_key].operator
    roles = roles_of(policy, operator) if policy is not None else []
    if policy is not None and not roles:
        pytest.skip(f"not permitted: operator {operator!r} is not in the policy")
    dev, acc = _wanted(request, "device"), _wanted(request, "account")
    device_req = DeviceRequirement(platform=dev.get("platform"), tags=_tags(dev.get("tags")), id=dev.get("id"))
    account_req = (
        AccountRequirement(role=acc.get("role"), tags=_tags(acc.get("tags")), id=acc.get("id")) if acc else None
    )
    pairs = pairs_for(suite.config, device_req, account_req)
    allowed = allowed_pairs(policy, roles, pairs)
    if pairs and not allowed:
        pytest.skip(f"not permitted: {operator!r} may not use the devices and accounts this test asks for")
    requirement = f"device {device_req}" + (f", account {account_req}" if account_req else "")
    timeout = config.stash[settings_key].lease_timeout
    record.leased(lease_pool(config).acquire(allowed, case=node.nodeid, timeout=timeout, requirement=requirement))
    lease = record.lease
    try:
        assert lease is not None
        yield lease
    finally:
        lost = lease.lost() if lease is not None else None  # asked while still held, as a case's teardown does
        record.release()
    if lost is not None and lease is not None:
        raise LeaseLost(f"device {lease.device.id}: {lost}")


@pytest.fixture
def sop_account(_sop_lease: Lease) -> Account | None:
    """An account from sop.yaml matching ``account={role, tags, id}``, leased for this test; None if none asked."""
    return _sop_lease.account


@pytest.fixture
def sop_device(_sop_lease: Lease) -> Device:
    """A device from sop.yaml matching ``device={platform, tags, id}``, leased for this test."""
    return _sop_lease.device


@pytest.fixture
def sop_driver(request: pytest.FixtureRequest, sop_device: Device, sop_account: Account | None) -> Iterator[Any]:
    """An Appium driver (appium-python-client) on ``sop_device``, quit after the test."""
    from .appium_service import appium_key
    from .caserecord import record_key
    from .collect import get_suite
    from .config import settings_key
    from .grid import is_grid_device, wait_for_slot
    from .recorders import AllureRecorder, AuditRecorder, Recorder, Recorders
    from .runner import Context
    from .runrecord import run_id_key
    from .session import DeviceSession, capabilities, device_position

    suite = get_suite(request.config)
    marker = request.node.get_closest_marker("sop")
    app_name = marker.kwargs.get("app") if marker else None
    if app_name is not None and app_name not in suite.config.apps:
        raise SopError(f"unknown app {app_name!r}; apps in sop.yaml: {', '.join(suite.config.apps) or 'none'}")
    app = suite.config.apps.get(app_name) if app_name else None
    secrets = request.node.stash[_secrets_key]
    endpoint = request.config.stash[appium_key].endpoint(sop_device, suite.config)
    caps = capabilities(sop_device, app, secrets.resolve, device_position(suite.config, sop_device))
    if is_grid_device(sop_device):  # its slot may be busy outside our leases: waited for, not queued
        wait_for_slot(sop_device, request.config.stash[settings_key].lease_timeout)
    session = DeviceSession.create(sop_device, app, endpoint, caps, secrets.mask)
    sop = Sop(
        id="python-test",
        path=str(request.node.path),
        pos=SourcePos(str(request.node.path), 1, 1),
        steps=(),
        app=app_name,
    )
    settings = request.config.stash[settings_key]
    record = request.node.stash[record_key]
    record.event("session", device=sop_device.id, endpoint=endpoint, session=session.session_id, reused=False)
    sinks: list[Recorder] = [AllureRecorder()]
    if record.audit is not None:
        sinks.append(AuditRecorder(record.audit, request.node.nodeid, request.config.stash[run_id_key]))
    request.node.stash[_context_key] = Context(
        case=Case(sop, None, None), session=session, device=sop_device, account=sop_account, secrets=secrets,
        recorder=Recorders(*sinks), registry=suite.registry, get_sop=suite.get_sop, evidence=settings.evidence,
        operator=settings.operator, policy=suite.config.policy,
        approvals_path=os.path.join(str(request.config.invocation_params.dir), settings.approvals),
    )  # fmt: skip
    try:
        yield session.driver
    finally:
        session.quit()


@pytest.fixture
def sop_run(request: pytest.FixtureRequest, sop_driver: Any) -> Callable[..., dict[str, str]]:
    """Run a SOP by id, or a list of steps written as in a SOP file, on ``sop_driver``'s session.

    Returns the ``vars`` saved so far. A step that fails raises, so the test fails there.
    """
    from .collect import get_suite
    from .policy import allowed_pairs, check_sop
    from .runner import run_case
    from .sopfile import _SopParser
    from .yamlsafe import load

    ctx = request.node.stash[_context_key]
    suite = get_suite(request.config)

    def run(what: str | list[Any], inputs: Mapping[str, Any] | None = None) -> dict[str, str]:
        if isinstance(what, str):
            sop = suite.get_sop(what)
            if sop is None:
                raise SopError(f"no valid SOP with id {what!r} in the suite")
            roles, reason = check_sop(ctx.policy, ctx.operator, sop, suite.get_sop)
            if reason is None and not allowed_pairs(ctx.policy, roles, [(ctx.device, ctx.account)]):
                reason = f"{ctx.operator!r} may not run SOP {sop.id!r} on {ctx.device.id}"
            if reason:
                pytest.skip(f"not permitted: {reason}")
        else:
            source = yaml.safe_dump({"id": "python-steps", "steps": what}, sort_keys=False)
            try:
                parsed = _SopParser(load(f"{request.node.nodeid} steps", source), suite.registry).parse()
            except SopSyntaxError as e:  # the loader's own refusals (.nan), reported like every bad step
                raise SopInvalid([e]) from None
            if parsed.errors or parsed.sop is None:
                raise SopInvalid(parsed.errors)
            sop = parsed.sop
        row = InputRow("python", MappingProxyType(dict(inputs or {})), sop.pos) if inputs else None
        ctx.case = Case(sop, row, None)
        try:
            run_case(ctx)
        except CaseSkipped as e:  # a checkpoint without approval, a run: target the policy forbids
            pytest.skip(str(e))
        return dict(ctx.vars)

    return run
