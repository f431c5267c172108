"""Hooks pytest-sop adds, for projects and plugins."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec
def pytest_sop_actions() -> Any:
    """Return an ``ActionSpec`` or a list of them to add project actions.

    The validator, ``allowed_actions``, ``pytest-sop lint`` and ``pytest-sop schema``
    then know them. Implement it in a ``conftest.py`` or a plugin.
    """
