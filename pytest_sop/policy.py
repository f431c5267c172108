"""Who may run which SOP on which devices and accounts, and who may approve a checkpoint.

With no ``policy`` in sop.yaml everyone may run everything (and nobody holds a role, so
``approve`` checkpoints need a policy naming approvers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


def check_sop(
    policy: Policy | None, operator: str, sop: Sop, get_sop: Callable[[str], Sop | None], *, run_by: str | None = None
) -> tuple[list[Role], str | None]:
    """The operator's roles that allow ``sop`` and every SOP it runs, or why none does.

    ``run:`` steps are followed transitively, in ``steps`` and ``on_failure``, each SOP once
    (cycles end there). One role must allow them all: its device and account limits then
    hold for everything the case does. ``run_by`` names the SOP that runs ``sop``, for the reason.
    """
    if policy is None:
        return [], None
    roles = roles_of(policy, operator)
    if not roles:
        return [], f"operator {operator!r} is not in the policy"
    names = ", ".join(r.name for r in roles)
    seen = {sop.id}
    todo: list[tuple[Sop, str | None]] = [(sop, run_by)]
    while todo:
        current, caller = todo.pop(0)  # breadth first: the reason names the nearest SOP not allowed
        roles = [r for r in roles if _selected(r.sops, {"id": [current.id], "tag": current.tags})]
        if not roles:
            by = f" (run by {caller!r})" if caller else ""
            return [], f"{operator!r} (roles {names}) may not run SOP {current.id!r}{by}"
        for step in current.all_steps:
            target = get_sop(step.params["sop"]) if step.action == "run" else None
            if target is not None and target.id not in seen:
                seen.add(target.id)
                todo.append((target, current.id))
    return roles, None


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
        acc = {"id": [account.id], "tag": account.tags, "role": [account.role] if account.role else []}
        return _selected(role.accounts, acc)

    return [(d, a) for d, a in pairs if any(ok(r, d, a) for r in roles)]


def may_approve(policy: Policy | None, operator: str, role: str) -> bool:
    if policy is None:
        return False
    return any(r.name == role and r.may_approve for r in roles_of(policy, operator))
