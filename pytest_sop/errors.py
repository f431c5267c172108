"""The exception tree. Every error a user can cause names where it came from."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class SopError(Exception):
    """Base of every error pytest-sop raises on purpose."""


class SopSyntaxError(SopError):
    """One problem in one file, at one position: ``FILE:LINE:COLUMN: field: message``."""

    def __init__(self, path: str, line: int, col: int, field: str, message: str) -> None:
        self.path = path
        self.line = line
        self.col = col
        self.field = field
        self.message = message
        super().__init__(self.format())

    def format(self) -> str:
        where = f"{self.path}:{self.line}:{self.col}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"

    def sort_key(self) -> tuple[str, int, int]:
        return (self.path, self.line, self.col)


class SopInvalid(SopError):
    """All problems found in one or more files, reported together."""

    def __init__(self, errors: Iterable[SopSyntaxError]) -> None:
        self.errors: Sequence[SopSyntaxError] = sorted(errors, key=SopSyntaxError.sort_key)
        super().__init__("\n".join(e.format() for e in self.errors))


class LeaseTimeout(SopError, TimeoutError):
    """No device or account meeting a requirement became free in time."""


class DeviceError(SopError):
    """A device (or the Appium server behind it) could not be used."""

    def __init__(self, device: str, msg: str) -> None:
        self.device = device
        super().__init__(f"{device}: {msg}")


class StepFailed(SopError, AssertionError):
    """A step's expectation did not hold: the product did something else (pytest failed)."""

    def __init__(self, message: str, *, expected: str = "", found: str = "") -> None:
        self.expected = expected
        self.found = found
        super().__init__(message)


class StepBroken(SopError):
    """The step could not be carried out: device, server or SOP trouble (Allure broken)."""


class UnsupportedHere(SopError):
    """An action or locator this platform cannot do."""


class CaseSkipped(SopError):
    """The case stops here and is reported skipped, its message the reason."""


class Paused(CaseSkipped):
    """The case stops to wait for a person (pytest skipped): a hold keeps its device and account.

    ``kind`` (``approval`` or ``handoff``), ``name`` (the checkpoint or handoff), ``role`` and
    ``sop`` (the SOP whose step it is) say what it waits for.
    """

    def __init__(
        self, message: str, *, kind: str = "", name: str = "", role: str = "", sop: str = "", note: str = ""
    ) -> None:
        self.kind, self.name, self.role, self.sop, self.note = kind, name, role, sop, note
        super().__init__(message)


class AwaitingApproval(Paused):
    """Stopped at an ``approve`` checkpoint that has no approval yet (pytest skipped)."""


class AwaitingHandoff(Paused):
    """Stopped at a ``handoff`` step nobody has marked done yet (pytest skipped)."""


class NotPermitted(CaseSkipped):
    """The policy does not let the operator run a SOP the case reached (a ``run:`` step)."""


class ActionNotAllowed(SopError):
    """A ``run:`` target uses an action outside a running SOP's allowed_actions: never retried or optional."""


class OptionalStepFailed(UserWarning):
    """An ``optional: true`` step failed and the case went on: shown in pytest's warnings summary."""


class LeaseServerError(SopError):
    """The lease server cannot be used: a bad DSN, unreachable, refused, or a foreign schema."""


class LeaseLost(SopError):
    """A held lease's server connection went away: another run may have used the device since."""
