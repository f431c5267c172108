"""Snapgram: a tiny mobile-first social web app to run first SOPs on.

Stdlib only, all state in memory. Start it with ``serve()`` (background thread),
``pytest-sop demo`` or ``python -m pytest_sop.demo`` (foreground).
"""

from __future__ import annotations

import os

from .server import DEFAULT_ACCOUNTS, DemoServer, serve
from .store import IN_REVIEW, PUBLISHED, REJECTED

#: The demo accounts' passwords come from these variables, as a suite's secrets do;
#: unset, they are the demo's own (never do this for a real app).
PASSWORD_ENV = {"pub1": "SNAPGRAM_PUB1_PASSWORD", "pub2": "SNAPGRAM_PUB2_PASSWORD"}
DEMO_PASSWORDS = {"SNAPGRAM_PUB1_PASSWORD": "pub1-demo-pass", "SNAPGRAM_PUB2_PASSWORD": "pub2-demo-pass"}
#: The port a suite's sop.yaml finds the demo on: ``url: http://127.0.0.1:${env.SNAPGRAM_PORT}/``.
PORT_ENV = "SNAPGRAM_PORT"


def demo_accounts() -> dict[str, str]:
    """pub1 and pub2, with the passwords the environment gives (else the demo's)."""
    return {user: os.environ.get(var) or DEMO_PASSWORDS[var] for user, var in PASSWORD_ENV.items()}


__all__ = [
    "DEFAULT_ACCOUNTS",
    "DEMO_PASSWORDS",
    "IN_REVIEW",
    "PASSWORD_ENV",
    "PORT_ENV",
    "PUBLISHED",
    "REJECTED",
    "DemoServer",
    "demo_accounts",
    "serve",
]
