"""The immutable model of a suite: config, SOPs, steps, cases. Every part knows where it was written."""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeVar

T = TypeVar("T")

SEVERITIES = ("blocker", "critical", "normal", "minor", "trivial")
LOCATOR_STRATEGIES = (
    "id", "accessibility_id", "text", "text_contains", "text_matches", "xpath", "css", "class", "uiautomator",
)  # fmt: skip
# Keys a locator may add to its one strategy, narrowing its matches down (applied in this order of meaning:
# state and container filter, `below` orders by distance, `index` picks among what is left).
LOCATOR_REFINEMENTS = ("index", "inside", "below", "checked", "enabled")
TEXT_MATCHES = ("equals", "contains", "matches")
# Outcomes that may count toward escalating a case's exception (a SOP's escalate_on); the default is
# product failures only: device, session or server trouble (broken) does not page the SOP's people.
ESCALATING = ("failed", "broken")
DEFAULT_ESCALATE_ON = ("failed",)
EMPTY: Mapping[str, Any] = MappingProxyType({})

# Bounds of the numbers a SOP holds, checked at collection and stated in the JSON Schema.
# A step waits at most an hour; a longer wait is a schedule, not a step.
MAX_SECONDS = 3600  # a step's timeout, a wait
MAX_ATTEMPTS = 100  # retry attempts
MAX_BACKOFF = 600  # retry backoff, seconds (slept backoff x attempt number between attempts)
PERIOD_RANGE = (1, 366 * 86400)  # schedule every: 1s to 366d
# Any other number: beyond 2**53 a float is no longer exact, and JSON readers disagree.
MAX_EXACT = 2**53
# A repeat's times or max: a loop that runs longer is a bug (or a job for a schedule).
MAX_REPEAT = 100_000
# A shorter secret would be masked inside ordinary words ("1" in every timestamp).
MIN_SECRET_CHARS = 4


@dataclass(frozen=True, slots=True)
class SourcePos:
    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Secret:
    """A value written ``{env: NAME}``: only its variable name is ever kept."""

    env: str

    def __str__(self) -> str:
        return "***"


@dataclass(frozen=True, slots=True)
class Template:
    """A string that may hold ``${ns.name}`` references, split once at load time."""

    source: str
    # Literal text and (namespace, name) references, in order.
    parts: tuple[str | tuple[str, str], ...]

    @property
    def refs(self) -> tuple[tuple[str, str], ...]:
        return tuple(p for p in self.parts if isinstance(p, tuple))

    def __str__(self) -> str:
        return self.source


@dataclass(frozen=True, slots=True)
class Locator:
    """One strategy and its value, narrowed down by optional refinements (which may nest)."""

    strategy: str
    value: Template
    index: int | None = None  # 0-based among the matches shown
    inside: Locator | None = None  # a descendant of a match of this one
    below: Locator | None = None  # top at or below this one's bottom, nearest first
    checked: bool | None = None
    enabled: bool | None = None

    @property
    def refined(self) -> bool:
        return not (self.index is None and self.inside is None and self.below is None
                    and self.checked is None and self.enabled is None)  # fmt: skip

    def templates(self) -> Iterator[Template]:
        """Its value's template and those of the locators it nests."""
        yield self.value
        for nested in (self.inside, self.below):
            if nested is not None:
                yield from nested.templates()

    def render(self, show: Callable[[Template], str]) -> str:
        """As written, each template shown by ``show`` (its source, a value, a masked value)."""
        parts = [f"{self.strategy}: {show(self.value)}"]
        if self.index is not None:
            parts.append(f"index: {self.index}")
        for key, nested in (("inside", self.inside), ("below", self.below)):
            if nested is not None:
                parts.append(f"{key}: {nested.render(show)}")
        for key, flag in (("checked", self.checked), ("enabled", self.enabled)):
            if flag is not None:
                parts.append(f"{key}: {str(flag).lower()}")
        return "{" + ", ".join(parts) + "}"

    def __str__(self) -> str:
        return self.render(lambda t: t.source)


@dataclass(frozen=True, slots=True)
class TextMatch:
    """``equals|contains|matches: T`` against the text found in a locator."""

    locator: Locator
    how: Literal["equals", "contains", "matches"]
    expected: Template


@dataclass(frozen=True, slots=True)
class Retry:
    attempts: int = 1
    backoff: float = 0.0

    def __post_init__(self) -> None:
        # Zero attempts would run the step zero times and pass: refused on every path.
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ValueError(f"retry attempts must be a whole number, got {self.attempts!r}")
        if not 1 <= self.attempts <= MAX_ATTEMPTS:
            raise ValueError(f"retry attempts must be from 1 to {MAX_ATTEMPTS}, got {self.attempts}")
        if not 0 <= self.backoff <= MAX_BACKOFF:  # false for nan too
            raise ValueError(f"retry backoff must be from 0 to {MAX_BACKOFF} seconds, got {self.backoff}")


@dataclass(frozen=True, slots=True)
class Condition:
    """A ``done_when`` check: ``visible``, ``not_visible`` or ``text``."""

    kind: Literal["visible", "not_visible", "text"]
    locator: Locator
    match: TextMatch | None
    pos: SourcePos


@dataclass(frozen=True, slots=True)
class OnPlatform:
    """``platform: NAME`` in a ``when:`` or ``repeat: {while: ...}``: the leased device's platform is NAME."""

    platform: str
    pos: SourcePos


# What a step's ``when:`` and a repeat's ``while:`` check, now, without waiting.
Check = Condition | OnPlatform


@dataclass(frozen=True, slots=True)
class Args:
    """``run: {sop: ID, with: {NAME: VALUE}}``: the values the called SOP reads as ``${params.NAME}``."""

    values: tuple[tuple[str, Template], ...]

    def __str__(self) -> str:
        return "{" + ", ".join(f"{k}: {v.source}" for k, v in self.values) + "}"


@dataclass(frozen=True, slots=True)
class Step:
    action: str
    # Parameters as the action declares them: Template, Locator, numbers. A plain dict
    # typed read-only: a suite holds tens of thousands, and each proxy costs the GC.
    params: Mapping[str, Any]
    pos: SourcePos
    timeout: float | None = None
    retry: Retry | None = None
    optional: bool = False
    name: str | None = None
    when: Check | None = None  # run only when it holds; else recorded as skipped

    @property
    def label(self) -> str:
        return self.name or self.action

    @property
    def inner(self) -> tuple[Step, ...]:
        """The steps a ``repeat`` runs (none for any other action)."""
        return self.params["steps"] if self.action == "repeat" else ()


def each_step(steps: Iterable[Step]) -> Iterator[Step]:
    """Every step and, after each ``repeat``, the steps inside it (depth first)."""
    for step in steps:
        yield step
        if step.action == "repeat":
            yield from each_step(step.inner)


@dataclass(frozen=True, slots=True)
class DeviceRequirement:
    platform: str | None = None
    tags: tuple[str, ...] = ()
    id: str | None = None

    def __str__(self) -> str:
        return _describe(platform=self.platform, tags=self.tags, id=self.id) or "any device"


@dataclass(frozen=True, slots=True)
class AccountRequirement:
    role: str | None = None
    tags: tuple[str, ...] = ()
    id: str | None = None
    each: bool = False

    def __str__(self) -> str:
        return _describe(role=self.role, tags=self.tags, id=self.id) or "any account"


def _describe(**kv: Any) -> str:
    return " ".join(f"{k}=[{', '.join(v)}]" if isinstance(v, tuple) else f"{k}={v}" for k, v in kv.items() if v)


@dataclass(frozen=True, slots=True)
class InputRow:
    id: str
    values: Mapping[str, Any]
    pos: SourcePos


@dataclass(frozen=True, slots=True)
class Sop:
    id: str
    path: str
    pos: SourcePos
    steps: tuple[Step, ...]
    title: str = ""
    owner: str | None = None
    tags: tuple[str, ...] = ()
    severity: str = "normal"
    app: str | None = None
    device: DeviceRequirement | None = None
    account: AccountRequirement | None = None
    inputs: tuple[InputRow, ...] = ()
    allowed_actions: tuple[str, ...] | None = None
    retry: Retry | None = None
    schedule: float | None = None  # seconds
    escalate_to: str | None = None
    escalate_on: tuple[str, ...] = DEFAULT_ESCALATE_ON
    done_when: tuple[Condition, ...] = ()
    on_failure: tuple[Step, ...] = ()
    description: str = ""
    kind: Literal["case", "flow"] = "case"  # a flow is only run by other SOPs, never collected as a case
    xfail: str | None = None  # an expected failure: the reason
    params: tuple[str, ...] = ()  # the ${params.NAME} names its steps read (a flow's callers pass them)

    @property
    def all_steps(self) -> Iterator[Step]:
        """Its steps and on_failure steps, the steps inside repeats included."""
        return each_step((*self.steps, *self.on_failure))


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    platform: str
    pos: SourcePos
    tags: tuple[str, ...] = ()
    capabilities: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    server: str | None = None


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    pos: SourcePos
    role: str | None = None
    tags: tuple[str, ...] = ()
    devices: tuple[str, ...] | None = None  # affinity; None = any device
    fields: Mapping[str, str | Secret] = field(default_factory=lambda: EMPTY)


@dataclass(frozen=True, slots=True)
class App:
    id: str
    capabilities: Mapping[str, Any]
    pos: SourcePos
    url: str | None = None  # a web app's start page; relative open_url paths join it


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    may_approve: bool = False
    sops: tuple[str, ...] = ("*",)
    devices: tuple[str, ...] = ("*",)
    accounts: tuple[str, ...] = ("*",)


@dataclass(frozen=True, slots=True)
class Policy:
    roles: Mapping[str, Role]
    operators: Mapping[str, tuple[str, ...]]
    signers: str | None = None  # absolute path of the OpenSSH allowed_signers file (principals = operators)
    require_signatures: bool = False  # runs and decisions count only when signed


@dataclass(frozen=True, slots=True)
class Leases:
    """``leases:`` in sop.yaml: where devices and accounts are leased."""

    backend: str  # "file" (lock files, one host) or "postgres" (several hosts)
    pos: SourcePos
    dsn: str | Secret | None = None  # postgres: the server's connection string


@dataclass(frozen=True, slots=True)
class SuiteConfig:
    path: str | None  # None: no sop.yaml, an empty pool
    appium_server: str = "local"
    apps: Mapping[str, App] = field(default_factory=lambda: EMPTY)
    devices: tuple[Device, ...] = ()
    discover: tuple[str, ...] = ()  # e.g. ("adb",): devices found at run time
    accounts: tuple[Account, ...] = ()
    policy: Policy | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    leases: Leases | None = None  # None: lock files in the host's lock folder
    grids: tuple[tuple[str, SourcePos, str], ...] = ()  # discover: grid: (url, where, field) as written


@dataclass(frozen=True, slots=True)
class Case:
    """One pytest item: a SOP with one input row and at most one account pinned."""

    sop: Sop
    inputs: InputRow | None
    account_id: str | None  # set when the SOP expands over accounts (``each: true``)

    @property
    def case_id(self) -> str:
        parts = [p for p in ((self.inputs.id if self.inputs else None), self.account_id) if p]
        return "-".join(parts)

    @property
    def name(self) -> str:
        return f"{self.sop.id}[{self.case_id}]" if self.case_id else self.sop.id


class Shared:
    """One object for each distinct immutable value of a suite.

    10,000 SOP files write the same names, texts, locators and step parameters again and again;
    each copy would be held for the whole run. Values are looked up by a key that tells ``1``
    from ``1.0`` and ``True``, so sharing never changes a value's type.
    """

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[Hashable, Any] = {}

    @staticmethod
    def text(value: str) -> str:
        # The interpreter's own table: it drops a string nothing else holds.
        return sys.intern(value)

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        """The value stored under ``key``, made (once) by ``make()`` when there is none."""
        found = self._values.get(key)
        if found is None:
            found = self._values[key] = make()
        return found

    def value(self, value: T) -> T:
        """``value``, or the equal value of the same type met before."""
        return self._values.setdefault((type(value), value), value)  # type: ignore[no-any-return]

    def params(self, params: dict[str, Any]) -> dict[str, Any]:
        """A step's parameters, shared by every step written with the same ones (never changed)."""
        key = ("params", *((k, type(v), v) for k, v in params.items()))
        try:
            return self._values.setdefault(key, params)  # type: ignore[no-any-return]
        except TypeError:  # a plugin's parameter that cannot be a key: kept as it is
            return params
