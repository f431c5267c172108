"""Shared validation helpers: type checks that collect errors with exact positions."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from .errors import SopSyntaxError
from .model import (
    EMPTY,
    LOCATOR_REFINEMENTS,
    LOCATOR_STRATEGIES,
    MAX_EXACT,
    MIN_SECRET_CHARS,
    Locator,
    Secret,
    Shared,
    SourcePos,
    Template,
)
from .templates import TemplateError, parse
from .yamlsafe import Loaded, Path_, format_path

ID_RE = re.compile(r"[a-z0-9][a-z0-9-]*")
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "text",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


def closest(word: str, options: Iterable[str]) -> str | None:
    """The option ``word`` is most likely a typo of, or None when none is close."""
    close = difflib.get_close_matches(word, [str(o) for o in options], n=1)
    return close[0] if close else None


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """`` (did you mean 'timeout'?)`` for a typo of one of ``options``; empty when none is close.

    Every message about an unknown name (key, action, locator, condition, choice) ends with it.
    """
    close = closest(word, options)
    return f" (did you mean {close!r}?)" if close else ""


class Checker:
    """Walks loaded YAML, building model parts and collecting every error it meets."""

    def __init__(self, loaded: Loaded, shared: Shared | None = None) -> None:
        self.loaded = loaded
        self.path = loaded.path
        # Equal texts, templates and locators are one object across the files of a suite.
        self.shared = shared or Shared()
        self.errors: list[SopSyntaxError] = []
        # Every template written in the file, with where it was written.
        self.templates: list[tuple[Template, Path_]] = []

    def pos(self, path: Path_, *, key: bool = False) -> SourcePos:
        p = self.loaded.at(path, key=key)
        return SourcePos(self.path, p.line, p.col)

    def error(self, path: Path_, message: str, *, key: bool = False) -> None:
        p = self.loaded.at(path, key=key)
        self.errors.append(SopSyntaxError(self.path, p.line, p.col, format_path(path), message))

    def mapping(
        self,
        path: Path_,
        value: Any,
        *,
        allowed: Collection[str],
        required: Collection[str] = (),
        what: str = "a mapping",
        elsewhere: Mapping[str, str] = EMPTY,
    ) -> dict[str, Any] | None:
        """Check ``value`` is a mapping with only ``allowed`` keys and all ``required`` ones.

        ``elsewhere`` maps keys that belong at another level to where they go: ``timeout`` written
        as a SOP key (or misspelt ``timout``) is told it is a step modifier.
        """
        if not isinstance(value, dict):
            self.error(path, f"expected {what}, got {type_name(value)}")
            return None
        meant: set[str] = set()
        for key in value:
            if not isinstance(key, str):
                self.error(path + (key,), f"keys are text, got {type_name(key)}", key=True)
            elif key not in allowed:
                guess = closest(key, [*allowed, *elsewhere])
                mean = f" (did you mean {guess!r}?)" if guess and guess != key else ""
                if guess is not None and guess in elsewhere:
                    message = f"unknown key {key!r}{mean}; {elsewhere[guess]}"
                else:
                    message = f"unknown key {key!r}; expected one of: {', '.join(allowed)}{mean}"
                    if guess is not None:
                        meant.add(guess)
                self.error(path + (key,), message, key=True)
        for key in required:
            # A misspelt required key is reported once, as the typo (`attemps`), not also as missing.
            if key not in value and key not in meant:
                self.error(path, f"missing required key {key!r}")
        return value

    def string(self, path: Path_, value: Any, *, pattern: re.Pattern[str] | None = None, what: str = "") -> str | None:
        if not isinstance(value, str) or not value:
            self.error(
                path, f"expected {what or 'non-empty text'}, got {type_name(value) if value != '' else 'empty text'}"
            )
            return None
        if pattern and not pattern.fullmatch(value):
            self.error(path, f"{value!r} is not {what or 'valid'} (pattern {pattern.pattern})")
            return None
        return self.shared.text(value)

    def ident(self, path: Path_, value: Any) -> str | None:
        return self.string(path, value, pattern=ID_RE, what="an id: lower-case letters, digits and '-'")

    def strings(
        self, path: Path_, value: Any, *, pattern: re.Pattern[str] | None = None, what: str = ""
    ) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.error(path, f"expected a list of text, got {type_name(value)}")
            return ()
        out = [self.string(path + (i,), v, pattern=pattern, what=what) for i, v in enumerate(value)]
        return self.shared.value(tuple(s for s in out if s is not None))

    def number(
        self,
        path: Path_,
        value: Any,
        *,
        minimum: float | None = None,
        maximum: float = MAX_EXACT,
        integer: bool = False,
        unit: str = "",
    ) -> float | None:
        """A number within bounds; ``unit`` (e.g. " (seconds)") follows the maximum in messages.

        Non-finite numbers never get here: the YAML loader refuses .nan and .inf.
        """
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            self.error(path, f"expected {'a whole number' if integer else 'a number'}, got {type_name(value)}")
            return None
        if value < (-MAX_EXACT if minimum is None else minimum):
            self.error(path, f"expected at least {_num(-MAX_EXACT if minimum is None else minimum)}, got {value}")
            return None
        if value > maximum:
            self.error(path, f"expected at most {_num(maximum)}{unit}, got {value}")
            return None
        return value  # type: ignore[no-any-return]

    def boolean(self, path: Path_, value: Any) -> bool | None:
        if not isinstance(value, bool):
            self.error(path, f"expected true or false, got {type_name(value)}")
            return None
        return value

    def template(self, path: Path_, value: Any) -> Template | None:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.error(path, f"expected text, got {type_name(value)}")
            return None
        text = str(value)
        try:
            t = self.shared.get(("template", text), lambda: parse(text))
        except TemplateError as e:
            self.error(path, str(e))
            return None
        if t.refs:
            self.templates.append((t, path))
        return t

    def locator(self, path: Path_, value: Any) -> Locator | None:
        """One strategy key (``{id: compose}``) plus optional refinements, which may nest."""
        if isinstance(value, dict) and len(value) == 1:  # the common case, shared by every file writing it
            ((strategy, raw),) = value.items()
            if strategy in LOCATOR_STRATEGIES and strategy != "text_matches":
                t = self.strategy_value(path + (strategy,), raw)
                if t is None:
                    return None
                value = t
                return self.shared.get(("locator", strategy, t.source), lambda: Locator(strategy, value))
        if not isinstance(value, dict) or not value:
            got = "an empty mapping" if value == {} else type_name(value)
            self.error(
                path, f"expected a locator, a mapping such as {{id: compose}} or {{text: Save, index: 1}}, got {got}"
            )
            return None
        before = len(self.errors)
        keys = (*LOCATOR_STRATEGIES, *LOCATOR_REFINEMENTS)
        for key in value:
            if key not in keys:
                self.error(
                    path + (key,),
                    f"unknown locator {key!r}; expected one of: {', '.join(LOCATOR_STRATEGIES)}, "
                    f"with refinements {', '.join(LOCATOR_REFINEMENTS)}" + did_you_mean(str(key), keys),
                    key=True,
                )
        strategies = [k for k in value if k in LOCATOR_STRATEGIES]
        if len(strategies) > 1:
            self.error(
                path,
                f"a locator has one strategy, got {len(strategies)} ({', '.join(strategies)}); narrow one down "
                f"with {', '.join(LOCATOR_REFINEMENTS)}",
            )
        elif not strategies and len(self.errors) == before:
            self.error(path, f"missing the locator's strategy: one of {', '.join(LOCATOR_STRATEGIES)}")
        t = self.strategy_value(path + (strategies[0],), value[strategies[0]]) if len(strategies) == 1 else None
        if t is not None and strategies[0] == "text_matches":
            self.pattern(path + ("text_matches",), t)
        refinements = {k: self.refinement(path + (k,), k, value[k]) for k in LOCATOR_REFINEMENTS if k in value}
        if t is None or len(self.errors) != before:
            return None
        return self.shared.value(Locator(strategies[0], t, **refinements))

    def strategy_value(self, path: Path_, raw: Any) -> Template | None:
        if raw is None or raw == "":
            self.error(path, "expected the element to find, got nothing")
            return None
        return self.template(path, raw)

    def refinement(self, path: Path_, key: str, value: Any) -> Any:
        if key in ("inside", "below"):
            return self.locator(path, value)
        if key == "index":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_EXACT:
                shown = type_name(value) if isinstance(value, bool) or not isinstance(value, int) else value
                self.error(path, f"expected a whole number from 0 (the first match), got {shown}")
                return None
            return value
        return self.boolean(path, value)

    def pattern(self, path: Path_, template: Template) -> None:
        """A pattern written literally is compiled now; one built from ``${...}`` when it runs."""
        if template.refs:
            return
        from .textmatch import PatternError, compile_pattern

        try:
            compile_pattern("".join(p for p in template.parts if isinstance(p, str)))
        except PatternError as e:
            self.error(path, f"not a pattern RE2 accepts: {e}")

    def value_or_secret(self, path: Path_, value: Any) -> Any:
        """A plain value, or ``{env: NAME}`` which becomes a :class:`Secret`."""
        if isinstance(value, dict):
            if set(value) == {"env"}:
                name = self.string(path + ("env",), value["env"], pattern=ENV_RE, what="an environment variable name")
                if name is None:
                    return None
                self.secret_length(path + ("env",), name)
                return Secret(name)
            return {k: self.value_or_secret(path + (k,), v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value_or_secret(path + (i,), v) for i, v in enumerate(value)]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not -MAX_EXACT <= value <= MAX_EXACT:
            self.error(path, f"expected a number from {-MAX_EXACT} to {MAX_EXACT}, got {value}")
            return None
        return value

    def secret_length(self, path: Path_, name: str) -> None:
        """Refuse a secret too short to mask; say which variable, never what it holds.

        An unset variable is not an error here: only a case that needs it fails, naming it.
        """
        secret = os.environ.get(name)
        if secret is not None and len(secret) < MIN_SECRET_CHARS:
            self.error(
                path,
                f"${name} holds a secret shorter than {MIN_SECRET_CHARS} characters; a secret must be at least "
                f"{MIN_SECRET_CHARS} characters (a shorter one would be masked inside ordinary words)",
            )


def _num(x: float) -> str:
    """3600.0 -> 3600; 2**53 in full, not 9.0072e+15."""
    return str(int(x)) if float(x).is_integer() else str(x)
