"""pytest-sop: run standard operating procedures (YAML) on mobile devices through Appium."""

from __future__ import annotations

from .actions import ActionRegistry, ActionSpec, Param
from .errors import DeviceError, LeaseTimeout, OptionalStepFailed, SopError, SopInvalid, SopSyntaxError, StepFailed

__version__ = "0.1.0"

__all__ = [
    "ActionRegistry",
    "ActionSpec",
    "DeviceError",
    "LeaseTimeout",
    "OptionalStepFailed",
    "Param",
    "SopError",
    "SopInvalid",
    "SopSyntaxError",
    "StepFailed",
    "__version__",
]
