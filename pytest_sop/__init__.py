"""pytest-sop: run standard operating procedures (YAML) on mobile devices through Appium."""

from __future__ import annotations

from .actions import ActionRegistry, ActionSpec, Param
from .errors import DeviceError, LeaseTimeout, SopError, SopInvalid, SopSyntaxError

__version__ = "0.1.0"

__all__ = [
    "ActionRegistry",
    "ActionSpec",
    "DeviceError",
    "LeaseTimeout",
    "Param",
    "SopError",
    "SopInvalid",
    "SopSyntaxError",
    "__version__",
]
