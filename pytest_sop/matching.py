"""Which devices and accounts can serve a SOP's ``requires``, honouring account affinity."""

from __future__ import annotations

from collections.abc import Iterable

from .model import Account, AccountRequirement, Device, DeviceRequirement, SuiteConfig


def device_matches(req: DeviceRequirement | None, device: Device) -> bool:
    if req is None:
        return True
    return (
        (req.platform is None or req.platform.lower() == device.platform)
        and (req.id is None or req.id == device.id)
        and set(req.tags) <= set(device.tags)
    )


def account_matches(req: AccountRequirement | None, account: Account) -> bool:
    if req is None:
        return True
    return (
        (req.role is None or req.role == account.role)
        and (req.id is None or req.id == account.id)
        and set(req.tags) <= set(account.tags)
    )


def may_use(account: Account, device: Device) -> bool:
    """An account with ``devices:`` affinity may only run on those devices."""
    return account.devices is None or device.id in account.devices


def discovered_may_match(config: SuiteConfig, req: DeviceRequirement | None) -> bool:
    """Devices found at run time (``discover: adb``) are Android phones known by serial only."""
    if not config.discover:
        return False
    return req is None or ((req.platform in (None, "android")) and not req.tags)


def candidate_devices(config: SuiteConfig, req: DeviceRequirement | None) -> list[Device]:
    return [d for d in config.devices if device_matches(req, d)]


def candidate_accounts(
    config: SuiteConfig,
    dev_req: DeviceRequirement | None,
    acc_req: AccountRequirement | None,
    devices: Iterable[Device] | None = None,
) -> list[Account]:
    """Accounts matching ``acc_req`` that may use at least one device matching ``dev_req``."""
    pool = list(devices) if devices is not None else candidate_devices(config, dev_req)
    open_pool = discovered_may_match(config, dev_req)
    return [
        a for a in config.accounts if account_matches(acc_req, a) and (open_pool or any(may_use(a, d) for d in pool))
    ]
