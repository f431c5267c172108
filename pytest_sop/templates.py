"""``${namespace.name}`` templates: split once when loaded, rendered at run time.

``${env.NAME}`` reads a (non-secret) environment variable when it is rendered: a port, a host,
a build number. An unset one is an error naming it, never an empty string. Secrets are
``{env: NAME}`` values in sop.yaml instead: those are masked, ``${env.NAME}`` values are not.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from .errors import SopError
from .masking import SecretMissing
from .model import Condition, Secret, Sop, Step, Template

NAMESPACES = ("inputs", "account", "device", "vars", "env", "params")
_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_REF = re.compile(r"([a-z]+)\.([A-Za-z0-9_][A-Za-z0-9_-]*)")


class TemplateError(ValueError):
    pass


class EnvMissing(SecretMissing):
    """An ``${env.NAME}`` whose variable is not set. Handled as a missing secret is: the case
    stops there (no retry, no ``optional`` pass), as a SOP error, not a product failure."""

    def __init__(self, name: str, where: str = "") -> None:
        self.name = name
        SopError.__init__(
            self, f"environment variable {name} is not set (${{env.{name}}}{' in ' + where if where else ''})"
        )


def env_value(name: str, where: str = "") -> str:
    value = os.environ.get(name)
    if value is None:
        raise EnvMissing(name, where)
    return value


def _templates_in(value: Any) -> Iterator[Template]:
    if isinstance(value, Template):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _templates_in(getattr(value, f.name))
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _templates_in(item)
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _templates_in(item)


def check_env(sop: Sop, get_sop: Callable[[str], Sop | None]) -> None:
    """Before a case starts: every ``${env.NAME}`` its steps (and the SOPs they run) use is set.

    :raises EnvMissing: naming the first unset variable and the step that uses it.
    """
    known = _env_refs.get(id(sop))
    if known is None or known[0] is not sop:
        known = _env_refs[id(sop)] = (sop, _env_refs_of(sop, get_sop))
    for name, where in known[1]:
        if name not in os.environ:
            raise EnvMissing(name, where)


# Per SOP (kept alive with it, so its id is not reused): the ${env.NAME} it and the SOPs it runs
# use, in step order, with where; found once, not for every case.
_env_refs: dict[int, tuple[Sop, list[tuple[str, str]]]] = {}


def _env_refs_of(sop: Sop, get_sop: Callable[[str], Sop | None]) -> list[tuple[str, str]]:
    refs: list[tuple[str, str]] = []
    seen, todo = {sop.id}, [sop]
    while todo:
        current = todo.pop(0)
        steps: tuple[Step | Condition, ...] = (*current.all_steps, *current.done_when)
        for step in steps:
            # A repeat's steps come next, each named where it is written: only its own templates here.
            for template in _templates_in(_without_steps(step)):
                refs.extend((name, f"{step.pos.file}:{step.pos.line}") for ns, name in template.refs if ns == "env")
            target = step.params.get("sop") if isinstance(step, Step) and step.action == "run" else None
            found = get_sop(target) if isinstance(target, str) else None
            if found is not None and found.id not in seen:
                seen.add(found.id)
                todo.append(found)
    return refs


def _without_steps(step: Step | Condition) -> Step | Condition:
    if isinstance(step, Step) and step.action == "repeat":
        return replace(step, params={k: v for k, v in step.params.items() if k != "steps"})
    return step


def parse(text: str) -> Template:
    """Split ``text`` into literal parts and references; raise TemplateError on a bad one."""
    if "$" not in text:
        return Template(text, (text,) if text else ())
    parts: list[str | tuple[str, str]] = []
    literal = ""
    pos = 0
    for m in _TOKEN.finditer(text):
        literal += text[pos : m.start()]
        pos = m.end()
        if m.group(0) == "$${":
            literal += "${"
            continue
        inner = m.group(1)
        if inner is None:
            raise TemplateError("'${' is not closed by '}' (write '$${' for a literal '${')")
        ref = _REF.fullmatch(inner.strip())
        if not ref:
            raise TemplateError(f"'${{{inner}}}' is not a reference; expected ${{namespace.name}}")
        ns, name = ref.groups()
        if ns not in NAMESPACES:
            close = difflib.get_close_matches(ns, NAMESPACES, n=1)  # checker's helper imports this module
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TemplateError(
                f"unknown namespace {ns!r} in '${{{inner}}}'; expected one of {', '.join(NAMESPACES)}{hint}"
            )
        if literal:
            parts.append(literal)
            literal = ""
        parts.append((ns, name))
    literal += text[pos:]
    if literal:
        parts.append(literal)
    return Template(text, tuple(parts))


Lookup = Callable[[str, str], "str | Secret | object"]


def render(template: Template, lookup: Lookup, *, reveal: Callable[[Secret], str] | None = None) -> str:
    """Fill in references. Secrets stay ``***`` unless ``reveal`` resolves them (run time only).

    ``${env.NAME}`` is read here, for every caller alike. An unset one raises :class:`EnvMissing`
    when the text is for the device (``reveal`` given); text only shown (a plan, a step title)
    shows the reference itself, and the case stops when the step uses it.
    """
    out: list[str] = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        if part[0] == "env":
            name = part[1]
            if reveal is None and name not in os.environ:
                out.append(f"${{env.{name}}}")
            else:
                out.append(env_value(name))
            continue
        value = lookup(*part)
        if isinstance(value, Secret):
            out.append(reveal(value) if reveal else "***")
        else:
            out.append(str(value))
    return "".join(out)


def render_setting(text: str, where: str) -> str:
    """A sop.yaml setting (``apps.NAME.url``) with its ``${env.NAME}`` references filled in.

    :raises SopError: another kind of reference, or a bad one, naming ``where``.
    :raises EnvMissing: an unset variable, naming it and ``where``.
    """
    try:
        template = parse(text)
    except TemplateError as e:
        raise SopError(f"{where}: {e}") from None
    other = [f"${{{ns}.{name}}}" for ns, name in template.refs if ns != "env"]
    if other:
        raise SopError(f"{where}: only ${{env.NAME}} can be used here, not {', '.join(other)}")
    return "".join(part if isinstance(part, str) else env_value(part[1], where) for part in template.parts)
