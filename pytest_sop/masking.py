"""Secrets: ``{env: NAME}`` values resolved only at run time, and masked in everything written.

A secret is masked in every spelling it takes on its way through JSON, HTTP, Selenium, Appium
and Python's tracebacks: raw, JSON-escaped (``\\uXXXX`` too), Python's repr, Selenium's array of
single characters, URL-encoded, base64 (standard and URL-safe, also inside a longer base64 text),
hex, and UTF-16 bytes.

The spellings of a set of secrets are compiled once into one regular expression (longest
first), so masking a step title costs one ``re.sub``. The run's secrets (sop.yaml and every
SOP's ``inputs``) are known from the start through :func:`remember`; a secret revealed later is
added when it is revealed.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

from .errors import SopError
from .model import Secret, SuiteConfig

if TYPE_CHECKING:
    from .suite import Suite

MASK = "***"
# Shorter values are refused at collection; masking them would garble every message (and hash).
MIN_SECRET = 4
# A base64 run shorter than this inside a longer base64 text is too likely to be chance.
MIN_BASE64_CORE = 5


class SecretMissing(SopError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"environment variable {name} is not set (it holds a secret in sop.yaml)")


# -- spellings ------------------------------------------------------------------------------------


def _lower_percent(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def _json_forms(value: str) -> set[str]:
    out = {json.dumps(value, ensure_ascii=False)[1:-1], json.dumps(value)[1:-1]}
    out |= {re.sub(r"\\u[0-9a-f]{4}", lambda m: m.group().upper().replace("\\U", "\\u"), f) for f in out}
    out |= {f.replace("/", "\\/") for f in out}  # encoders that escape the solidus
    return out


def _python_forms(value: str) -> set[str]:
    """Python's repr and ascii spellings (tracebacks, ``-l`` locals, assertions), with either quote escaped."""
    out = set()
    for text in (repr(value)[1:-1], ascii(value)[1:-1]):
        plain = text.replace("\\'", "'").replace('\\"', '"')
        out |= {plain, plain.replace("'", "\\'"), plain.replace('"', '\\"')}
    return out


def _base64_forms(raw: bytes) -> set[str]:
    """The whole value, and the characters that depend on it alone at each of the 3 byte alignments."""
    out = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode("ascii")
        start = (0, 2, 3)[offset]  # the first characters mix in the bytes before the value
        end = (offset + len(raw)) // 3 * 4  # the last group may mix in the bytes after it
        core = encoded[start:end]
        if offset == 0:
            out.add(encoded.rstrip("="))
        if len(core) >= MIN_BASE64_CORE:
            out.add(core)
    return out | {f.replace("+", "-").replace("/", "_") for f in out}


def spellings(value: str) -> set[str]:
    """Every plain spelling of ``value`` (the character arrays are patterns: see :func:`char_array`)."""
    raw = value.encode("utf-8")
    out = {value} | _json_forms(value) | _python_forms(value) | _base64_forms(raw)
    for url in (quote(value, safe=""), quote(value), quote_plus(value), quote_plus(value, safe="/")):
        out |= {url, _lower_percent(url)}
    out |= {raw.hex(), raw.hex().upper()}
    return {f for f in out if f}


def char_array(value: str) -> str:
    """Selenium's ``"value": ["C", "z", ...]``: one JSON string per character, any whitespace between."""
    items = []
    for ch in value:
        escapes = sorted(_json_forms(ch), key=len, reverse=True)
        items.append('"(?:' + "|".join(re.escape(e) for e in escapes) + ')"')
    return r"\s*,\s*".join(items)


class Masker:
    """Masks a fixed set of secrets; built once per set (see :func:`masker_for`)."""

    def __init__(self, values: Iterable[str]) -> None:
        self.values = frozenset(v for v in values if v)
        arrays = [char_array(v) for v in sorted(self.values, key=len, reverse=True)]
        plain = sorted({f for v in self.values for f in spellings(v)}, key=len, reverse=True)
        pattern = [f"(?P<array>{'|'.join(arrays)})"] if arrays else []
        pattern += [re.escape(f) for f in plain]
        self._text: re.Pattern[str] | None = re.compile("|".join(pattern)) if pattern else None
        # Bytes: the same spellings in UTF-8, and the raw value in UTF-16, masked in its own encoding.
        self._utf16 = {v.encode(enc): MASK.encode(enc) for v in self.values for enc in ("utf-16-le", "utf-16-be")}
        byte_plain = sorted({f.encode("utf-8") for f in plain} | set(self._utf16), key=len, reverse=True)
        byte_pattern = [f"(?P<array>{'|'.join(arrays)})".encode()] if arrays else []
        byte_pattern += [re.escape(f) for f in byte_plain]
        self._bytes: re.Pattern[bytes] | None = re.compile(b"|".join(byte_pattern)) if byte_pattern else None

    def __call__(self, text: str) -> str:
        if self._text is None or not text:
            return text
        return self._text.sub(_text_mask, text)

    def found_in(self, text: str) -> bool:
        return self._text is not None and self._text.search(text) is not None

    def mask_bytes(self, data: bytes) -> bytes:
        if self._bytes is None or not data:
            return data
        utf16 = self._utf16

        def replace(m: re.Match[bytes]) -> bytes:
            if m.group("array") is not None:
                return b'"***"'
            return utf16.get(m.group(), b"***")

        return self._bytes.sub(replace, data)


def _text_mask(m: re.Match[str]) -> str:
    return '"***"' if m.group("array") is not None else MASK


@functools.lru_cache(maxsize=64)
def _masker(values: frozenset[str]) -> Masker:
    return Masker(values)


def masker_for(values: Iterable[str]) -> Masker:
    return _masker(frozenset(values))


def mask_text(text: str, values: Iterable[str]) -> str:
    return masker_for(values)(text)


def mask_bytes(data: bytes, values: Iterable[str]) -> bytes:
    return masker_for(values).mask_bytes(data)


# -- the run's secrets ------------------------------------------------------------------------------

# Every secret this process knows the run may reveal: what the library log filter, the Appium log,
# the reports and each case mask. Replaced, never changed in place, so other threads can read it.
_known: frozenset[str] = frozenset()
_known_masker = Masker(())


def remember(values: Iterable[str]) -> None:
    """Add secrets to the run's set: from now on they are masked everywhere in this process."""
    new = frozenset(v for v in values if len(v) >= MIN_SECRET) - _known
    if new:
        _set_known(_known | new)


def _set_known(values: frozenset[str]) -> None:
    global _known, _known_masker
    _known = values
    _known_masker = masker_for(values)


def known_values() -> frozenset[str]:
    return _known


def forget_since(before: frozenset[str]) -> None:
    """Back to the secrets known before a run began (a pytest run inside another, as pytester does)."""
    _set_known(before)


def known() -> Masker:
    """The masker of every secret the run knows so far."""
    return _known_masker


def mask(text: str) -> str:
    """``text`` with every secret the run knows masked."""
    return _known_masker(text)


class Secrets:
    """Resolves secrets for one case; masks them and every other secret the run knows."""

    def __init__(self, environ: Callable[[str], str | None] = os.environ.get) -> None:
        self._environ = environ
        self.values: set[str] = set()

    def reveal(self, secret: Secret) -> str:
        value = self._environ(secret.env)
        if value is None:
            raise SecretMissing(secret.env)
        if value and value not in self.values:
            self.values.add(value)
            remember((value,))
        return value

    def resolve(self, value: Any) -> Any:
        if isinstance(value, Secret):
            return self.reveal(value)
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    def mask(self, text: str) -> str:
        return _known_masker(text)


def _walk(value: Any, environ: Callable[[str], str | None], found: set[str]) -> None:
    if isinstance(value, Secret):
        v = environ(value.env)
        if v:
            found.add(v)
    elif isinstance(value, dict) or hasattr(value, "items"):
        for v in value.values():
            _walk(v, environ, found)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _walk(v, environ, found)


def secret_values(value: Any, environ: Callable[[str], str | None] = os.environ.get) -> set[str]:
    """The values of the secrets in ``value`` (a mapping, a list, a Secret) that the environment sets."""
    found: set[str] = set()
    _walk(value, environ, found)
    return found


def suite_secret_values(config: SuiteConfig, environ: Callable[[str], str | None] = os.environ.get) -> set[str]:
    """The values of every secret sop.yaml names that the environment sets."""
    found: set[str] = set()
    for account in config.accounts:
        _walk(account.fields, environ, found)
    for device in config.devices:
        _walk(device.capabilities, environ, found)
    for app in config.apps.values():
        _walk(app.capabilities, environ, found)
    return found


def run_secret_values(suite: Suite, sops: bool, environ: Callable[[str], str | None] = os.environ.get) -> set[str]:
    """Every secret the run can reveal: sop.yaml's, and with ``sops`` those of every SOP's ``inputs``."""
    found = suite_secret_values(suite.config, environ)
    if sops:
        for path in suite.scan():
            for case in suite.result(path).cases:
                if case.inputs is not None:
                    _walk(case.inputs.values, environ, found)
    return found


class _MaskFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        masker = _known_masker
        if masker.values:
            record.msg = masker(record.getMessage())
            record.args = None
        return True


def guard_library_logs() -> None:
    """Mask secrets in what Selenium, urllib3 and Appium's client log (they log request bodies)."""
    # Logger filters are not inherited, so they go on the loggers that log requests.
    for name in ("selenium.webdriver.remote.remote_connection", "urllib3.connectionpool", "appium.webdriver"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _MaskFilter) for f in logger.filters):
            logger.addFilter(_MaskFilter())
