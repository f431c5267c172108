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
# locator: a mapping such as {id: compose}; key: a press_key name (keys.py);
# steps: a list of steps (a repeat's); check: a condition checked now (`when`, `while`);
# args: {NAME: VALUE} passed to a called SOP as ${params.NAME}.
Kind = Literal[
    "text", "name", "sop_id", "number", "integer", "boolean", "locator", "enum", "key", "steps", "check", "args"
]
Shape = Literal["none", "value", "locator", "fields"]
STEP_MODIFIERS = ("timeout", "retry", "optional", "name", "when")
# What assert_state checks of an element.
STATES = ("checked", "enabled", "selected", "focused")


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
    value is parameter ``params[0]``; with more parameters, fields may be written instead:
    ``run: {sop: x}``), ``locator`` (``- tap: {id: x}``, stored as
    ``locator``) or ``fields`` (``- type: {into: ..., text: ...}``). ``one_of`` lists
    groups of fields of which exactly one must be given, ``some_of`` groups of which at least
    one must be. ``run(ctx, **params)`` executes it.

    ``short``: a ``fields`` action that may also be written with a bare locator, which is then
    that parameter (``long_press: {id: x}`` is ``long_press: {at: {id: x}}``).
    ``explicit``: a SOP may use it only when its ``allowed_actions`` names it (``eval_js``).
    """

    name: str
    doc: str
    shape: Shape = "none"
    params: tuple[Param, ...] = ()
    one_of: tuple[tuple[str, ...], ...] = ()
    some_of: tuple[tuple[str, ...], ...] = ()
    run: Callable[..., Any] | None = field(default=None, compare=False)
    short: str | None = None
    explicit: bool = False

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
    ActionSpec(
        "tap", "Tap the centre of an element; fails when another element would receive the tap.", "locator", _LOC
    ),
    ActionSpec("double_tap", "Tap the centre of an element twice, quickly.", "locator", _LOC),
    ActionSpec(
        "long_press",
        "Press and hold the centre of an element.",
        "fields",
        (
            Param("at", "locator"),
            Param("seconds", "number", required=False, doc="how long to hold (default 1)", minimum=0),
        ),
        short="at",
    ),
    ActionSpec(
        "drag",
        "Drag an element onto another one.",
        "fields",
        (Param("from", "locator", doc="the element picked up"), Param("to", "locator", doc="where it is dropped")),
    ),
    ActionSpec(
        "type",
        "Type text into an element: what it held is cleared first unless clear is false; the field keeps its focus.",
        "fields",
        (
            Param("into", "locator"),
            Param("text", "text"),
            Param("clear", "boolean", required=False, doc="false appends to what the field holds (default true)"),
        ),
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
        "assert_count",
        "Fail unless the number of visible matches equals, is at least or is at most N (waits up to the "
        "step's timeout for it to hold).",
        "fields",
        (
            Param("of", "locator"),
            Param("equals", "integer", required=False, minimum=0, doc="exactly this many visible matches"),
            Param("at_least", "integer", required=False, minimum=0, doc="this many visible matches or more"),
            Param("at_most", "integer", required=False, minimum=0, doc="this many visible matches or fewer"),
        ),
        one_of=(("equals", "at_least", "at_most"),),
    ),
    ActionSpec(
        "assert_state",
        "Fail unless a visible element is (or is not) checked, enabled, selected or focused.",
        "fields",
        (
            Param("of", "locator"),
            *(Param(state, "boolean", required=False, doc=f"whether it is {state}") for state in STATES),
        ),
        some_of=(STATES,),
    ),
    ActionSpec(
        "assert_url",
        "Fail unless the page's URL equals, contains or matches a value (web).",
        "fields",
        _MATCH,
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
        "Swipe across the screen, or across an element with at.",
        "fields",
        (
            Param("direction", "enum", choices=("up", "down", "left", "right"), doc="the way the finger moves"),
            Param("at", "locator", required=False, doc="swipe on this element (default: the screen)"),
        ),
    ),
    ActionSpec("scroll_to", "Scroll until an element is visible.", "locator", _LOC),
    ActionSpec("back", "Press the system back button (browser back on web)."),
    ActionSpec("press_key", "Press one key, e.g. ENTER, TAB, BACK.", "value", (Param("key", "key"),)),
    ActionSpec("hide_keyboard", "Close the on-screen keyboard (web: the field loses its focus)."),
    ActionSpec("reload", "Reload the page (web); relaunch the app without resetting it (a phone)."),
    ActionSpec(
        "eval_js",
        "Run JavaScript in the page (web only); its return value is recorded. Only where allowed_actions names it.",
        "value",
        (Param("script", "text"),),
        explicit=True,
    ),
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
    ActionSpec(
        "run",
        "Run another SOP's steps inline; `with` gives it ${params.NAME}.",
        "value",
        (Param("sop", "sop_id"), Param("with", "args", required=False, doc="values the SOP reads as ${params.NAME}")),
    ),
    ActionSpec(
        "repeat",
        "Run steps N times, or while a condition holds (checked before each iteration, at most max times).",
        "fields",
        (
            Param("times", "integer", required=False, minimum=1, doc="how many times"),
            Param("while", "check", required=False, doc="checked now before each iteration; needs max"),
            Param("max", "integer", required=False, minimum=1, doc="at most this many iterations (with while)"),
            Param("steps", "steps"),
        ),
        one_of=(("times", "while"),),
    ),
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
