"""``${namespace.name}`` templates: split once when loaded, rendered at run time."""

from __future__ import annotations

import re
from collections.abc import Callable

from .model import Secret, Template

NAMESPACES = ("inputs", "account", "device", "vars")
_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_REF = re.compile(r"([a-z]+)\.([A-Za-z0-9_][A-Za-z0-9_-]*)")


class TemplateError(ValueError):
    pass


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
            raise TemplateError(f"unknown namespace {ns!r} in '${{{inner}}}'; expected one of {', '.join(NAMESPACES)}")
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
    """Fill in references. Secrets stay ``***`` unless ``reveal`` resolves them (run time only)."""
    out: list[str] = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value = lookup(*part)
        if isinstance(value, Secret):
            out.append(reveal(value) if reveal else "***")
        else:
            out.append(str(value))
    return "".join(out)
