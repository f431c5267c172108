"""A case's plan as text: what ``--sop-dry-run`` prints. Secrets are shown as ``***``.

A plan also names the environment variables the case needs that are not set (``{env: NAME}``
secrets its steps, device or app use; ``${env.NAME}`` in its steps): by name only, never a value.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .matching import candidate_accounts, candidate_devices, may_use
from .model import (
    Account,
    Args,
    Case,
    Check,
    Condition,
    Device,
    Locator,
    OnPlatform,
    Secret,
    Step,
    SuiteConfig,
    Template,
    TextMatch,
)
from .templates import TemplateError, parse, render


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
            return value.render(lambda t: render(t, lookup))
        if isinstance(value, TextMatch):
            return f"{value.how} {show(value.expected)}"
        if isinstance(value, Secret):
            return "***"
        if isinstance(value, Args):
            return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.values) + "}"
        if isinstance(value, (Condition, OnPlatform)):
            return describe_check(value, lookup)
        return str(value)

    return " ".join(
        show(v) if k in ("locator", "url", "seconds", "sop", "key", "text", "name", "script") and len(step.params) == 1
        else f"{k}={show(v)}"
        for k, v in step.params.items()
        if k != "steps"  # a repeat's steps are listed under it
    )  # fmt: skip


def describe_check(check: Check, lookup: Any) -> str:
    """A ``when:``/``while:`` condition in words: ``visible {id: x}``, ``platform android``."""
    if isinstance(check, OnPlatform):
        return f"platform {check.platform}"
    text = f"{check.kind} {{{check.locator.strategy}: {render(check.locator.value, lookup)}}}"
    return text + (f" {check.match.how} {render(check.match.expected, lookup)!r}" if check.match else "")


@dataclass(frozen=True)
class MissingVariable:
    """An environment variable a case needs that is not set: its name and what needs it (never a value)."""

    name: str
    needed_by: str

    def __str__(self) -> str:
        return f"environment variable {self.name} is not set ({self.needed_by})"


def _candidates(case: Case, config: SuiteConfig) -> tuple[list[Device], list[Account]]:
    """The devices and accounts the case may lease: its pinned account, else every matching one."""
    sop = case.sop
    devices = candidate_devices(config, sop.device)
    accounts = candidate_accounts(config, sop.device, sop.account) if sop.account else []
    if case.account_id:
        accounts = [a for a in accounts if a.id == case.account_id]
        devices = [d for d in devices if any(may_use(a, d) for a in accounts)]
    return devices, accounts


def _templates(value: Any) -> Iterator[Template]:
    if isinstance(value, Template):
        yield value
    elif isinstance(value, Locator):
        yield from value.templates()
    elif isinstance(value, TextMatch):
        yield from value.locator.templates()
        yield value.expected
    elif isinstance(value, Condition):
        yield from value.locator.templates()
        if value.match is not None:
            yield value.match.expected


def _values(step: Step) -> Iterator[Any]:
    """A step's own values that may hold templates: parameters (not a repeat's steps), a run's with, its when."""
    for k, v in step.params.items():
        if isinstance(v, Args):
            yield from (t for _, t in v.values)
        elif k != "steps" or step.action != "repeat":
            yield v
    if step.when is not None:
        yield step.when


def _secrets(value: Any) -> Iterator[Secret]:
    if isinstance(value, Secret):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _secrets(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _secrets(v)


def missing_variables(
    case: Case, config: SuiteConfig, environ: Mapping[str, str] = os.environ
) -> list[MissingVariable]:
    """What the case would stop on, for want of an environment variable: the ``{env: NAME}`` secrets of the
    account fields and inputs its steps use, of its app's and devices' capabilities, and the ``${env.NAME}``
    its steps and app url use. An account not pinned to the case is any of the matching ones: each is named."""
    sop = case.sop
    devices, accounts = _candidates(case, config)
    found: dict[tuple[str, str], None] = {}  # in order, once each

    def need(secret: Any, needed_by: str) -> None:
        for s in _secrets(secret):
            if s.env not in environ:
                found.setdefault((s.env, needed_by), None)

    steps: Iterable[Step] = sop.all_steps
    templates = [t for step in steps for v in _values(step) for t in _templates(v)]
    templates += [t for cond in sop.done_when for t in _templates(cond)]
    for ns, name in dict.fromkeys(ref for t in templates for ref in t.refs):
        if ns == "account":
            for account in accounts:
                need(account.fields.get(name), f"account {account.id}, field {name}")
        elif ns == "inputs" and case.inputs is not None:
            need(case.inputs.values.get(name), f"input {name} of row {case.inputs.id}")
        elif ns == "env" and name not in environ:
            found.setdefault((name, f"${{env.{name}}} in the steps"), None)
    app = config.apps.get(sop.app) if sop.app else None
    if app is not None:
        need(app.capabilities, f"app {app.id}, capabilities")
        try:
            url_refs = parse(app.url).refs if app.url else ()
        except TemplateError:
            url_refs = ()  # reported when the run starts
        for ns, name in url_refs:
            if ns == "env" and name not in environ:
                found.setdefault((name, f"app {app.id}, url"), None)
    for device in devices:
        need(device.capabilities, f"device {device.id}, capabilities")
    return [MissingVariable(name, needed_by) for name, needed_by in found]


def _step_lines(steps: Iterable[Step], lookup: Any, number: str) -> Iterator[str]:
    """One line per step, numbered ``3.`` at the top and ``3.1.`` inside a repeat, indented under it."""
    indent = "    " + "   " * number.count(".")
    for i, step in enumerate(steps, 1):
        mods = []
        if step.when is not None:
            mods.append(f"when {describe_check(step.when, lookup)}")
        if step.timeout is not None:
            mods.append(f"timeout={step.timeout:g}s")
        if step.retry:
            mods.append(f"retry={step.retry.attempts}")
        if step.optional:
            mods.append("optional")
        label = f"{step.name}: " if step.name else ""
        text = f"{label}{step.action} {describe_params(step, lookup)}".rstrip()
        extra = f"  [{', '.join(mods)}]" if mods else ""
        yield f"{indent}{f'{number}{i}.':>3} {text}{extra}  ({step.pos.file}:{step.pos.line})"
        if step.action == "repeat":
            yield from _step_lines(step.inner, lookup, f"{number}{i}.")


def plan_lines(case: Case, config: SuiteConfig, missing: list[MissingVariable] | None = None) -> Iterator[str]:
    """The case's plan; ``missing``: its :func:`missing_variables`, when the caller has them already."""
    sop = case.sop
    devices, accounts = _candidates(case, config)
    account: Account | None = accounts[0] if case.account_id and accounts else None
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
    for variable in missing_variables(case, config) if missing is None else missing:
        yield f"  MISSING: {variable}: the case would stop where it is needed"
    lookup = _lookup(case, account)
    for title, steps in (("steps", sop.steps), ("on_failure", sop.on_failure)):
        if not steps:
            continue
        yield f"  {title}:"
        yield from _step_lines(steps, lookup, "")
    for cond in sop.done_when:
        target = f"{cond.locator}" + (
            f" {cond.match.how} {render(cond.match.expected, lookup)!r}" if cond.match else ""
        )
        yield f"  done_when: {cond.kind} {target}"
