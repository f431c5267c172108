"""Secrets: ``{env: NAME}`` values resolved only at run time, and masked in everything written.

A secret is masked in its raw form and in the forms it takes on its way through HTTP and
JSON (URL-encoded, JSON-escaped, base64), so neither Appium's log nor a page source nor a
failure message can carry it out.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, quote_plus

from .errors import SopError
from .model import Secret, SuiteConfig

MASK = "***"
# Every value this process revealed: the logging filter masks them in any library's log.
_revealed: set[str] = set()


class SecretMissing(SopError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"environment variable {name} is not set (it holds a secret in sop.yaml)")


def forms(value: str) -> set[str]:
    """The spellings a secret takes in URLs, JSON and headers."""
    out = {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]}
    out.add(base64.b64encode(value.encode()).decode().rstrip("="))
    return {f for f in out if f}


def mask_text(text: str, values: Iterable[str]) -> str:
    spellings = sorted({f for v in values for f in forms(v)}, key=len, reverse=True)
    for s in spellings:
        if s in text:
            text = text.replace(s, MASK)
    return text


class Secrets:
    """Resolves secrets for one case and masks every value it resolved."""

    def __init__(self, environ: Callable[[str], str | None] = os.environ.get) -> None:
        self._environ = environ
        self.values: set[str] = set()

    def reveal(self, secret: Secret) -> str:
        value = self._environ(secret.env)
        if value is None:
            raise SecretMissing(secret.env)
        if value:
            self.values.add(value)
            _revealed.add(value)
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
        return mask_text(text, self.values) if self.values else text


def suite_secret_values(config: SuiteConfig, environ: Callable[[str], str | None] = os.environ.get) -> set[str]:
    """The values of every secret sop.yaml names that the environment sets (for Appium's log)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, Secret):
            v = environ(value.env)
            if v:
                found.add(v)
        elif isinstance(value, dict) or hasattr(value, "items"):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    for account in config.accounts:
        walk(account.fields)
    for device in config.devices:
        walk(device.capabilities)
    for app in config.apps.values():
        walk(app.capabilities)
    return found


class _MaskFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _revealed:
            record.msg = mask_text(record.getMessage(), _revealed)
            record.args = None
        return True


def guard_library_logs() -> None:
    """Mask secrets in what Selenium, urllib3 and Appium's client log (they log request bodies)."""
    # Logger filters are not inherited, so they go on the loggers that log requests.
    for name in ("selenium.webdriver.remote.remote_connection", "urllib3.connectionpool", "appium.webdriver"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _MaskFilter) for f in logger.filters):
            logger.addFilter(_MaskFilter())
