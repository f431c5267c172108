"""Who may run which SOP on which devices and accounts, and who may approve a checkpoint.

With no ``policy`` in sop.yaml everyone may run everything (and nobody holds a role, so
``approve`` checkpoints need a policy naming approvers).
"""

from __future__ import annotations

from collections.abc import Sequence

from .model import Account, Device, Policy, Role, Sop

Pair = tuple[Device, Account | None]


def _selected(selectors: Sequence[str], attrs: dict[str, Sequence[str]]) -> bool:
    for sel in selectors:
        if sel == "*":
            return True
        kind, _, value = sel.partition(":")
        if value in attrs.get(kind, ()):
            return True
    return False


def roles_of(policy: Policy, operator: str) -> list[Role]:
    return [policy.roles[name] for name in policy.operators.get(operator, ()) if name in policy.roles]


def may_run(policy: Policy | None, operator: str, sop: Sop) -> tuple[list[Role], str | None]:
    """The operator's roles that allow this SOP, or why none does."""
    if policy is None:
        return [], None
    roles = roles_of(policy, operator)
    if not roles:
        return [], f"operator {operator!r} is not in the policy"
    allowed = [r for r in roles if _selected(r.sops, {"id": [sop.id], "tag": sop.tags})]
    if not allowed:
        names = ", ".join(r.name for r in roles)
        return [], f"{operator!r} (roles {names}) may not run SOP {sop.id!r}"
    return allowed, None


def allowed_pairs(policy: Policy | None, roles: Sequence[Role], pairs: Sequence[Pair]) -> list[Pair]:
    """The (device, account) pairs one of the roles may use."""
    if policy is None:
        return list(pairs)

    def ok(role: Role, device: Device, account: Account | None) -> bool:
        dev = {"id": [device.id], "tag": device.tags, "platform": [device.platform]}
        if not _selected(role.devices, dev):
            return False
        if account is None:
            return True
        acc = {"id": [account.id], "tag": account.tags, "role": [account.role or ""]}
        return _selected(role.accounts, acc)

    return [(d, a) for d, a in pairs if any(ok(r, d, a) for r in roles)]


def may_approve(policy: Policy | None, operator: str, role: str) -> bool:
    if policy is None:
        return False
    return any(r.name == role and r.may_approve for r in roles_of(policy, operator))
