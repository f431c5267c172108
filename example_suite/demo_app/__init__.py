"""Snapgram: a tiny mobile-first social web app for the example SOPs.

Stdlib only, all state in memory. Start it with ``serve()`` (background
thread) or ``python -m example_suite.demo_app`` (foreground).
"""

from .server import DEFAULT_ACCOUNTS, DemoServer, serve
from .store import IN_REVIEW, PUBLISHED, REJECTED

__all__ = [
    "DEFAULT_ACCOUNTS",
    "IN_REVIEW",
    "PUBLISHED",
    "REJECTED",
    "DemoServer",
    "serve",
]
