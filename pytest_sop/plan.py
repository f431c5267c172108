"""A case's plan as text: what ``--sop-dry-run`` prints. Secrets are shown as ``***``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .matching import candidate_accounts, candidate_devices, may_use
from .model import Account, Case, Locator, Secret, Step, SuiteConfig, Template, TextMatch
from .templates import render


def _lookup(case: Case, account: Account | None) -> Any:
    def lookup(ns: str, name: str) -> object:
        if ns == "inputs" and case.inputs is not None:
            return case.inputs.values.get(name, f"${{inputs.{name}}}")
        if ns == "account" and account is not None:
            if name in ("id", "role"):
                return getattr(account, name)
            return account.fields.get(name, f"${{account.{name}}}")
        return f"${{{ns}.{name}}}"  # device and vars are known only at run time

    return lookup


def describe_params(step: Step, lookup: Any) -> str:
    def show(value: Any) -> str:
        if isinstance(value, Template):
            return repr(render(value, lookup))
        if isinstance(value, Locator):
            return f"{{{value.strategy}: {render(value.value, lookup)}}}"
        if isinstance(value, TextMatch):
            return f"{value.how} {show(value.expected)}"
        if isinstance(value, Secret):
            return "***"
        return str(value)

    return " ".join(
        show(v) if k in ("locator", "url", "seconds", "sop", "key", "text", "name") and len(step.params) == 1
        else f"{k}={show(v)}"
        for k, v in step.params.items()
    )  # fmt: skip


def plan_lines(case: Case, config: SuiteConfig) -> Iterator[str]:
    sop = case.sop
    devices = candidate_devices(config, sop.device)
    account: Account | None = None
    accounts = candidate_accounts(config, sop.device, sop.account) if sop.account else []
    if case.account_id:
        account = next(a for a in accounts if a.id == case.account_id)
        devices = [d for d in devices if may_use(account, d)]
    yield f"{sop.path}::{case.name}  {sop.title}"
    yield f"  device:  {sop.device or 'any device'} -> {', '.join(d.id for d in devices) or 'discovered at run time'}"
    if sop.account is not None:
        if account is not None:
            yield f"  account: {account.id}"
        else:
            # Which one is leased is decided at run time; show the first for the rendering.
            account = accounts[0] if accounts else None
            yield f"  account: {sop.account} -> {', '.join(a.id for a in accounts)}"
    if sop.app:
        yield f"  app:     {sop.app}"
    lookup = _lookup(case, account)
    for title, steps in (("steps", sop.steps), ("on_failure", sop.on_failure)):
        if not steps:
            continue
        yield f"  {title}:"
        for i, step in enumerate(steps, 1):
            mods = []
            if step.timeout is not None:
                mods.append(f"timeout={step.timeout:g}s")
            if step.retry:
                mods.append(f"retry={step.retry.attempts}")
            if step.optional:
                mods.append("optional")
            label = f"{step.name}: " if step.name else ""
            text = f"{label}{step.action} {describe_params(step, lookup)}".rstrip()
            extra = f"  [{', '.join(mods)}]" if mods else ""
            yield f"    {i:>2}. {text}{extra}  ({step.pos.file}:{step.pos.line})"
    for cond in sop.done_when:
        target = f"{cond.locator}" + (
            f" {cond.match.how} {render(cond.match.expected, lookup)!r}" if cond.match else ""
        )
        yield f"  done_when: {cond.kind} {target}"
