"""The action registry: each action declares its parameters once.

The SOP validator, ``pytest-sop lint`` and ``pytest-sop schema`` are all derived from
these declarations, so they cannot drift apart. Projects add actions with the
``pytest_sop_actions`` hook or the ``pytest_sop.actions`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal

ENTRY_POINT_GROUP = "pytest_sop.actions"

# text: a template string; name: a plain identifier; sop_id: another SOP's id;
# locator: a one-key mapping such as {id: compose}.
Kind = Literal["text", "name", "sop_id", "number", "integer", "boolean", "locator", "enum"]
Shape = Literal["none", "value", "locator", "fields"]
STEP_MODIFIERS = ("timeout", "retry", "optional", "name")


@dataclass(frozen=True)
class Param:
    name: str
    kind: Kind
    required: bool = True
    choices: tuple[str, ...] = ()
    doc: str = ""
    minimum: float | None = None


@dataclass(frozen=True)
class ActionSpec:
    """What one action accepts.

    ``shape`` says how it is written: ``none`` (``- back``), ``value`` (``- wait: 2``, the
    value is parameter ``params[0]``), ``locator`` (``- tap: {id: x}``, stored as
    ``locator``) or ``fields`` (``- type: {into: ..., text: ...}``). ``one_of`` lists
    groups of fields of which exactly one must be given. ``run(ctx, **params)`` executes it.
    """

    name: str
    doc: str
    shape: Shape = "none"
    params: tuple[Param, ...] = ()
    one_of: tuple[tuple[str, ...], ...] = ()
    run: Callable[..., Any] | None = field(default=None, compare=False)

    @property
    def bare_allowed(self) -> bool:
        return self.shape == "none" or all(not p.required for p in self.params)


_LOC = (Param("locator", "locator"),)
_MATCH = (
    Param("equals", "text", required=False, doc="the whole text equals this"),
    Param("contains", "text", required=False, doc="the text contains this"),
    Param("matches", "text", required=False, doc="a regular expression searched in the text"),
)

CORE_ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("launch_app", "Start (or restart) the SOP's app."),
    ActionSpec("close_app", "Stop the SOP's app."),
    ActionSpec("open_url", "Open a URL (web) or a deep link (app).", "value", (Param("url", "text"),)),
    ActionSpec("tap", "Tap an element.", "locator", _LOC),
    ActionSpec(
        "type",
        "Type text into an element.",
        "fields",
        (Param("into", "locator"), Param("text", "text")),
    ),
    ActionSpec("clear", "Clear a text field.", "locator", _LOC),
    ActionSpec("wait_for", "Wait until an element is visible.", "locator", _LOC),
    ActionSpec("wait_gone", "Wait until an element is gone or hidden.", "locator", _LOC),
    ActionSpec("assert_visible", "Fail unless an element is visible now.", "locator", _LOC),
    ActionSpec("assert_not_visible", "Fail if an element is visible now.", "locator", _LOC),
    ActionSpec(
        "assert_text",
        "Fail unless an element's text equals, contains or matches a value.",
        "fields",
        (Param("in", "locator"), *_MATCH),
        one_of=(("equals", "contains", "matches"),),
    ),
    ActionSpec(
        "save_text",
        "Save an element's text as ${vars.NAME}.",
        "fields",
        (Param("from", "locator"), Param("as", "name")),
    ),
    ActionSpec(
        "swipe",
        "Swipe across the screen.",
        "fields",
        (Param("direction", "enum", choices=("up", "down", "left", "right")),),
    ),
    ActionSpec("scroll_to", "Scroll until an element is visible.", "locator", _LOC),
    ActionSpec("back", "Press the system back button (browser back on web)."),
    ActionSpec("press_key", "Press a key, e.g. ENTER, HOME, BACK.", "value", (Param("key", "text"),)),
    ActionSpec("wait", "Wait a fixed number of seconds.", "value", (Param("seconds", "number", minimum=0),)),
    ActionSpec(
        "screenshot",
        "Attach a screenshot to the evidence.",
        "value",
        (Param("name", "text", required=False),),
    ),
    ActionSpec(
        "page_source",
        "Attach the page source to the evidence.",
        "value",
        (Param("name", "text", required=False),),
    ),
    ActionSpec("note", "Write a note into the record.", "value", (Param("text", "text"),)),
    ActionSpec("run", "Run another SOP's steps inline.", "value", (Param("sop", "sop_id"),)),
    ActionSpec(
        "approve",
        "A checkpoint where a person with a role must approve.",
        "fields",
        (
            Param("checkpoint", "name"),
            Param("role", "name"),
            Param("note", "text", required=False),
        ),
    ),
    ActionSpec(
        "handoff",
        "A person with a role acts on the device by hand (a captcha, a QR code, a photo check); the case "
        "pauses, keeping its device, until they mark it done (pytest-sop handoff done).",
        "fields",
        (Param("to", "name", doc="the role whose holder acts"), Param("note", "text", required=False)),
    ),
)

CONDITIONS: tuple[ActionSpec, ...] = (
    ActionSpec("visible", "The element is visible.", "locator", _LOC),
    ActionSpec("not_visible", "The element is not visible.", "locator", _LOC),
    ActionSpec(
        "text",
        "The element's text equals, contains or matches a value.",
        "fields",
        (Param("in", "locator"), *_MATCH),
        one_of=(("equals", "contains", "matches"),),
    ),
)


class ActionRegistry(Mapping[str, ActionSpec]):
    """Every action a SOP may use, by name. Immutable: ``with_actions`` returns a new one."""

    def __init__(self, specs: Iterable[ActionSpec] = CORE_ACTIONS) -> None:
        self._specs: dict[str, ActionSpec] = {}
        for spec in specs:
            self._specs[spec.name] = spec

    def with_actions(self, specs: Iterable[ActionSpec]) -> ActionRegistry:
        added = list(specs)
        for spec in added:
            if not isinstance(spec, ActionSpec):
                raise TypeError(f"expected an ActionSpec, got {spec!r}")
            if spec.name in self._specs and self._specs[spec.name] != spec:
                raise ValueError(f"action {spec.name!r} is registered twice")
            if spec.name in STEP_MODIFIERS:
                raise ValueError(f"{spec.name!r} is a step modifier and cannot be an action name")
        return ActionRegistry([*self._specs.values(), *added])

    def __getitem__(self, name: str) -> ActionSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


def _flatten(obj: Any) -> list[ActionSpec]:
    if callable(obj) and not isinstance(obj, ActionSpec):
        obj = obj()
    if isinstance(obj, ActionSpec):
        return [obj]
    return list(obj)


def entry_point_actions() -> list[ActionSpec]:
    """Actions from installed packages: ``[project.entry-points."pytest_sop.actions"]``."""
    found: list[ActionSpec] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.extend(_flatten(ep.load()))
    return found


def build_registry(extra: Iterable[Any] = ()) -> ActionRegistry:
    """Core actions + entry points + whatever hooks returned (specs or lists of specs)."""
    specs = entry_point_actions()
    for item in extra:
        specs.extend(_flatten(item))
    return ActionRegistry().with_actions(specs)
