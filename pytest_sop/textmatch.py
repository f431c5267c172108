"""``matches:`` patterns, run by RE2: time linear in the text, so no pattern can outlast a timeout.

Python's ``re`` backtracks: ``(a+)+$`` against forty ``a`` and a ``!`` runs for hours, and a
step's timeout is only checked between attempts. RE2 has no backreferences and no lookaround,
which is what makes it linear; a pattern that needs them is refused with that reason.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .errors import StepBroken


class PatternError(ValueError):
    """A pattern RE2 refuses. ``code`` is RE2's reason without the part of the pattern it quotes."""

    def __init__(self, code: str, quoted: str) -> None:
        self.code = code
        self.quoted = quoted
        self.hint = _hint(code, quoted)
        super().__init__(f"{code}: {quoted}{self.hint}" if quoted else f"{code}{self.hint}")

    def without_pattern(self) -> str:
        """The reason, without the fragment of the pattern RE2 quotes (it may be part of a secret)."""
        return self.code + self.hint


def _hint(code: str, quoted: str) -> str:
    """What Python's re has and RE2 lacks, when that is what the pattern used."""
    if code == "invalid escape sequence" and quoted[1:2].isdigit():
        return " (RE2 has no backreferences)"
    if code == "invalid perl operator" and quoted.startswith(("(?=", "(?!", "(?<=", "(?<!")):
        return " (RE2 has no lookahead or lookbehind)"
    return ""


@functools.cache
def _options() -> Any:
    import re2  # type: ignore[import-untyped]  # loaded only when a SOP has a matches:

    options = re2.Options()
    options.log_errors = False  # RE2 would print the pattern, secrets included, to stderr
    return options


def compile_pattern(pattern: str) -> Any:
    """The compiled pattern (RE2 caches it); :class:`PatternError` when RE2 refuses it."""
    import re2

    try:
        return re2.compile(pattern, _options())
    except re2.error as e:
        raw = e.args[0] if e.args else b""
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        code, _, quoted = text.partition(": ")
        raise PatternError(code, quoted) from None


def search(pattern: str, text: str, mask: Callable[[str], str]) -> bool:
    """Whether ``pattern`` is found in ``text``. A bad pattern breaks the step, its secrets masked.

    ``mask`` hides the run's secrets; when it changes the pattern, RE2's quoted fragment is left
    out too, since a fragment of a secret is not something ``mask`` knows to hide.
    """
    try:
        regex = compile_pattern(pattern)
    except PatternError as e:
        shown = mask(pattern)
        reason = str(e) if shown == pattern else e.without_pattern()
        raise StepBroken(f"matches: pattern {shown!r} is not a pattern RE2 accepts: {reason}") from None
    return regex.search(text) is not None


def holds(how: str, expected: str, actual: str, mask: Callable[[str], str]) -> bool:
    """Whether ``actual`` equals (ends' whitespace aside), contains or matches ``expected``."""
    if how == "equals":
        return actual.strip() == expected.strip()
    if how == "contains":
        return expected in actual
    return search(expected, actual, mask)
