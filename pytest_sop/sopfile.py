"""One ``*.sop.yaml`` file -> a :class:`Sop`, with every error in the file reported together."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from .actions import CONDITIONS, STEP_MODIFIERS, ActionRegistry, ActionSpec, Param
from .checker import ID_RE, NAME_RE, Checker, closest, did_you_mean, type_name
from .errors import SopSyntaxError
from .keys import KNOWN_KEYS, key_name, known_keys_text
from .locating import PHONES, cannot_find_on
from .model import (
    DEFAULT_ESCALATE_ON,
    ESCALATING,
    LOCATOR_REFINEMENTS,
    LOCATOR_STRATEGIES,
    MAX_ATTEMPTS,
    MAX_BACKOFF,
    MAX_EXACT,
    MAX_REPEAT,
    MAX_SECONDS,
    PERIOD_RANGE,
    SEVERITIES,
    AccountRequirement,
    Args,
    Check,
    Condition,
    DeviceRequirement,
    InputRow,
    Locator,
    OnPlatform,
    Retry,
    Shared,
    Sop,
    Step,
    Template,
    TextMatch,
)
from .yamlsafe import Loaded, Path_, Pos, load, read_file

SOP_KEYS = (
    "id", "title", "description", "owner", "tags", "severity", "app", "requires", "inputs",
    "allowed_actions", "retry", "schedule", "escalate_to", "escalate_on", "steps", "done_when", "on_failure",
    "kind", "xfail",
)  # fmt: skip
SOP_KINDS = ("case", "flow")
# A name a caller passes with `run: {sop: ID, with: {NAME: VALUE}}`: what ${params.NAME} can name.
PARAM_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
# Step modifiers written as SOP keys: most often a step's line indented too little.
_STEP_KEYS_AT_TOP = {
    m: f"{m!r} is a step modifier, not a SOP key: write it in its step, lined up under the action"
    + (" (a SOP's own name is its title)" if m == "name" else "")
    for m in STEP_MODIFIERS
    if m not in SOP_KEYS
}
ROW_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_EVERY_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Parameters of core actions that are seconds a step waits: bounded like a timeout.
SECONDS_PARAMS = {("wait", "seconds"), ("long_press", "seconds")}
# Core actions whose ``matches:`` is a pattern, compiled at collection when written literally.
_PATTERN_ACTIONS = ("assert_text", "text", "assert_url")
_CONDITIONS = ActionRegistry(CONDITIONS)
# Steps that may pause a case for a person (approve, handoff).
PAUSING = ("approve", "handoff")


# Template namespaces the suite checks (suite.py): the others are checked per file, here.
SUITE_NAMESPACES = frozenset(("vars", "device", "account"))
# Fields the suite checks may name in an error, besides templates and run steps.
_SUITE_FIELDS: tuple[Path_, ...] = (("id",), ("app",), ("requires", "device"), ("requires", "account"))


NO_POSITIONS: Mapping[Path_, tuple[int, int]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ParsedSop:
    """A file's SOP (None when the file is not a mapping) plus what suite checks need.

    With ``errors`` the SOP is incomplete: good for more checks, never for running.
    The YAML data and its position tables are not kept: a suite of 10,000 files would hold
    them all at once (the suite reads every file before checking the first). What the suite
    checks read is kept instead, until the file is checked: its templates with suite-level
    references, its run steps, and where the fields they may name are written.
    """

    path: str
    sop: Sop | None
    errors: tuple[SopSyntaxError, ...]
    raw_id: str | None = None  # ``id`` as written, when it is text: the file is found by it even with errors
    templates: tuple[tuple[Template, Path_], ...] = ()  # those with ${vars|device|account.X}
    run_steps: tuple[tuple[Step, Path_], ...] = ()  # ``run`` steps, on_failure included
    positions: Mapping[Path_, tuple[int, int]] = field(default_factory=lambda: NO_POSITIONS)
    platforms: tuple[tuple[str, Path_], ...] = ()  # ``platform: NAME`` in a when or while, checked against sop.yaml

    def at(self, path: Path_) -> Pos:
        """Where ``path`` is written, for the paths the suite checks name; else its nearest kept ancestor."""
        while path not in self.positions and path:
            path = path[:-1]
        return Pos(*self.positions.get(path, (1, 1)))


def parse_sop_file(
    path: str, registry: ActionRegistry, display: str | None = None, shared: Shared | None = None
) -> ParsedSop:
    """Parse the file at ``path``; messages name it ``display`` (default: ``path``).

    ``shared``: the suite's table of equal values, so files writing the same steps share them.
    """
    shown = display or path
    try:
        loaded = load(shown, read_file(path, shown))
    except SopSyntaxError as e:
        return ParsedSop(shown, None, (e,))
    return _SopParser(loaded, registry, shared).parse()


class _SopParser(Checker):
    def __init__(self, loaded: Loaded, registry: ActionRegistry, shared: Shared | None = None) -> None:
        super().__init__(loaded, shared)
        self.registry = registry
        self.run_steps: list[tuple[Step, Path_]] = []
        self.platform: str | None = None  # the one the SOP requires, when it names one
        self.allowed: tuple[str, ...] | None = None  # the SOP's allowed_actions, for steps at every depth
        self.platforms: list[tuple[str, Path_]] = []

    def parse(self) -> ParsedSop:
        data = self.loaded.data
        sop = self.sop(data)
        raw_id = data.get("id") if isinstance(data, dict) else None
        templates = tuple((t, p) for t, p in self.templates if any(ns in SUITE_NAMESPACES for ns, _ in t.refs))
        wanted = [*_SUITE_FIELDS, *(p for _, p in templates), *(p + ("run",) for _, p in self.run_steps)]
        wanted += [  # each name a run step passes, for an error about that name
            p + ("run", "with", name) for step, p in self.run_steps for name, _ in _args(step).values
        ]
        wanted += [p for _, p in self.platforms]
        at = self.loaded.at
        positions = {p: (pos.line, pos.col) for p in wanted for pos in (at(p),)}
        return ParsedSop(
            self.path, sop, tuple(self.errors), raw_id if isinstance(raw_id, str) else None,
            templates, tuple(self.run_steps), positions, tuple(self.platforms),
        )  # fmt: skip

    def sop(self, data: Any) -> Sop | None:
        doc = self.mapping(
            (), data, allowed=SOP_KEYS, required=("id", "steps"), what="a SOP mapping", elsewhere=_STEP_KEYS_AT_TOP
        )
        if doc is None:
            return None
        get = doc.get
        sop_id = self.ident(("id",), get("id")) if "id" in doc else None
        title = self.text_field("title", get("title"))
        description = self.text_field("description", get("description"))
        owner = self.name_field("owner", get("owner"))
        escalate_to = self.name_field("escalate_to", get("escalate_to"))
        escalate_on = self.escalate_on(get("escalate_on")) if "escalate_on" in doc else DEFAULT_ESCALATE_ON
        app = self.name_field("app", get("app"))
        tags = self.strings(("tags",), get("tags"), pattern=NAME_RE, what="a tag") if "tags" in doc else ()
        severity = "normal"
        if "severity" in doc:
            if get("severity") in SEVERITIES:
                severity = SEVERITIES[SEVERITIES.index(get("severity"))]
            else:
                self.error(
                    ("severity",),
                    f"expected one of: {', '.join(SEVERITIES)}, got {get('severity')!r}"
                    + did_you_mean(str(get("severity")), SEVERITIES),
                )
        device, account = self.requires(get("requires")) if "requires" in doc else (None, None)
        self.platform = device.platform.lower() if device is not None and device.platform else None
        inputs = self.inputs(get("inputs")) if "inputs" in doc else ()
        allowed = self.allowed = self.allowed_actions(get("allowed_actions")) if "allowed_actions" in doc else None
        kind = self.kind(get("kind")) if "kind" in doc else "case"
        xfail = self.text_field("xfail", get("xfail")) if "xfail" in doc else None
        if xfail is not None and not xfail.strip():
            self.error(("xfail",), "expected the reason the SOP is expected to fail, got empty text")
        retry = self.retry(("retry",), get("retry")) if "retry" in doc else None
        schedule = self.schedule(get("schedule")) if "schedule" in doc else None
        # A missing `steps` is reported by mapping() (or as the typo of it), not again here.
        steps = self.step_list(("steps",), get("steps"), allowed, required=True) if "steps" in doc else ()
        on_failure = self.step_list(("on_failure",), get("on_failure"), allowed) if "on_failure" in doc else ()
        done_when = self.conditions(get("done_when")) if "done_when" in doc else ()
        self.check_input_refs(inputs, "inputs" in doc)
        params = self.check_param_refs(kind)
        # Built even when the file has errors, so the suite checks can report theirs too.
        return Sop(
            id=sop_id or str(get("id")), path=self.path, pos=self.pos(()), steps=steps, title=title or sop_id or "",
            owner=owner, tags=tags, severity=severity, app=app, device=device, account=account,
            inputs=inputs, allowed_actions=allowed, retry=retry, schedule=schedule,
            escalate_to=escalate_to, escalate_on=escalate_on, done_when=done_when, on_failure=on_failure,
            description=description or "", kind=kind, xfail=xfail, params=params,
        )  # fmt: skip

    def kind(self, value: Any) -> Literal["case", "flow"]:
        if value == "flow":
            return "flow"
        if value != "case":
            self.error(
                ("kind",),
                f"expected case (the default: collected as a case) or flow (only run by other SOPs), got {value!r}"
                + did_you_mean(str(value), SOP_KINDS),
            )
        return "case"

    def check_param_refs(self, kind: str) -> tuple[str, ...]:
        """The ${params.NAME} names the SOP reads; only a flow has a caller to pass them."""
        names: dict[str, None] = {}
        for template, path in self.templates:
            for ns, name in template.refs:
                if ns != "params":
                    continue
                names.setdefault(name, None)
                if kind != "flow":
                    self.error(
                        path,
                        f"${{params.{name}}} is used but this SOP is collected as a case, where no caller passes "
                        "params: add `kind: flow` (a flow is only run by other SOPs, with `run: {sop: ID, with: "
                        f"{{{name}: VALUE}}}}`)",
                    )
        return tuple(names)

    def name_field(self, key: str, value: Any) -> str | None:
        """A text field many SOPs write alike (owner, app): one string for all of them."""
        text = self.text_field(key, value)
        return None if text is None else self.shared.text(text)

    def text_field(self, key: str, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.error((key,), f"expected text, got {type_name(value)}")
            return None
        return str(value)

    def escalate_on(self, value: Any) -> tuple[str, ...]:
        """Which outcomes count toward escalation: some of failed (the product) and broken (device,
        session or server trouble), e.g. ``[failed, broken]``; ``failed`` when not written."""
        p: Path_ = ("escalate_on",)
        if isinstance(value, list) and not value:
            self.error(p, f"expected a list of one or both of: {', '.join(ESCALATING)}, got an empty list")
            return DEFAULT_ESCALATE_ON
        names = self.strings(p, value)
        for i, name in enumerate(names):
            if name not in ESCALATING:
                self.error(
                    p + (i,) if isinstance(value, list) else p,
                    f"expected one of: {', '.join(ESCALATING)} (product or infrastructure failures), got {name!r}"
                    + did_you_mean(name, ESCALATING),
                )
        chosen = tuple(n for n in ESCALATING if n in names)
        return chosen or DEFAULT_ESCALATE_ON

    def requires(self, value: Any) -> tuple[DeviceRequirement | None, AccountRequirement | None]:
        req = self.mapping(("requires",), value, allowed=("device", "account"))
        if req is None:
            return None, None
        device = account = None
        if "device" in req:
            p: Path_ = ("requires", "device")
            d = self.mapping(p, req["device"], allowed=("platform", "tags", "id"))
            if d is not None:
                device = self.shared.value(
                    DeviceRequirement(
                        platform=self.opt_str(p + ("platform",), d.get("platform")),
                        tags=self.strings(p + ("tags",), d["tags"], pattern=NAME_RE, what="a tag")
                        if "tags" in d
                        else (),
                        id=self.opt_str(p + ("id",), d.get("id")),
                    )
                )
        if "account" in req:
            p = ("requires", "account")
            a = self.mapping(p, req["account"], allowed=("role", "tags", "id", "each"))
            if a is not None:
                account = self.shared.value(
                    AccountRequirement(
                        role=self.opt_str(p + ("role",), a.get("role")),
                        tags=self.strings(p + ("tags",), a["tags"], pattern=NAME_RE, what="a tag")
                        if "tags" in a
                        else (),
                        id=self.opt_str(p + ("id",), a.get("id")),
                        each=bool(self.boolean(p + ("each",), a["each"])) if "each" in a else False,
                    )
                )
        return device, account

    def opt_str(self, path: Path_, value: Any) -> str | None:
        return None if value is None else self.string(path, value)

    def inputs(self, value: Any) -> tuple[InputRow, ...]:
        if not isinstance(value, list) or not value:
            self.error(
                ("inputs",),
                f"expected a non-empty list of rows such as {{id: cat, caption: Hi}}, got {type_name(value)}",
            )
            return ()
        rows: list[InputRow] = []
        seen: dict[str, int] = {}
        for i, row in enumerate(value):
            p: Path_ = ("inputs", i)
            if not isinstance(row, dict):
                self.error(p, f"expected a row mapping such as {{id: cat, caption: Hi}}, got {type_name(row)}")
                continue
            if "id" not in row:
                self.error(p, "missing required key 'id' (it names the row in the case id)")
                continue
            row_id = self.string(p + ("id",), str(row["id"]) if isinstance(row["id"], int) else row["id"],
                                 pattern=ROW_ID_RE, what="a row id")  # fmt: skip
            if row_id is None:
                continue
            if row_id in seen:
                self.error(p + ("id",), f"duplicate row id {row_id!r} (also row {seen[row_id]})")
                continue
            seen[row_id] = i
            values: dict[str, Any] = {}
            for k, v in row.items():
                if k == "id":
                    continue
                if not isinstance(k, str) or not NAME_RE.fullmatch(k):
                    self.error(p + (k,), f"expected an input name (letters, digits, '_'), got {k!r}", key=True)
                elif isinstance(v, (dict, list)) and not (isinstance(v, dict) and set(v) == {"env"}):
                    self.error(p + (k,), f"expected a text or number value, got {type_name(v)}")
                else:
                    values[k] = self.value_or_secret(p + (k,), v)
            rows.append(InputRow(row_id, MappingProxyType(values), self.pos(p)))
        return tuple(rows)

    def allowed_actions(self, value: Any) -> tuple[str, ...] | None:
        names = self.strings(("allowed_actions",), value)
        for i, name in enumerate(names):
            if name not in self.registry:
                self.error(("allowed_actions", i), f"unknown action {name!r}" + did_you_mean(name, self.registry))
        return names

    def retry(self, path: Path_, value: Any) -> Retry | None:
        r = self.mapping(path, value, allowed=("attempts", "backoff"), required=("attempts",))
        if r is None or "attempts" not in r:  # its absence is reported once, by mapping()
            return None
        attempts = self.number(path + ("attempts",), r.get("attempts"), minimum=1, maximum=MAX_ATTEMPTS, integer=True)
        backoff = (
            self.number(path + ("backoff",), r["backoff"], minimum=0, maximum=MAX_BACKOFF, unit=" (seconds)")
            if "backoff" in r
            else 0.0
        )
        if attempts is None or backoff is None:
            return None
        return self.shared.value(Retry(int(attempts), float(backoff)))

    def schedule(self, value: Any) -> float | None:
        s = self.mapping(("schedule",), value, allowed=("every",), required=("every",))
        if s is None or "every" not in s:
            return None
        m = _EVERY_RE.fullmatch(str(s["every"]).strip())
        if not m:
            self.error(("schedule", "every"), f"expected a period such as 30m, 24h or 7d, got {s['every']!r}")
            return None
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
        low, high = PERIOD_RANGE
        if not low <= seconds <= high:
            self.error(("schedule", "every"), f"expected a period from 1s to 366d, got {s['every']!r}")
            return None
        return seconds

    def step_list(
        self, path: Path_, value: Any, allowed: tuple[str, ...] | None, *, required: bool = False
    ) -> tuple[Step, ...]:
        if not isinstance(value, list) or (required and not value):
            hint = ""
            if isinstance(value, dict) and any(isinstance(k, str) and k.startswith("-") for k in value):
                hint = "; a list item needs a space after its '-' (`- tap: ...`, not `-tap: ...`)"
            self.error(
                path, f"expected a {'non-empty ' if required else ''}list of steps, got {type_name(value)}{hint}"
            )
            return ()
        steps = [self.step(path + (i,), raw, allowed) for i, raw in enumerate(value)]
        return tuple(s for s in steps if s is not None)

    def step(self, path: Path_, raw: Any, allowed: tuple[str, ...] | None) -> Step | None:
        modifiers: dict[str, Any] = {}
        if isinstance(raw, str):
            name, arg, arg_path = raw, None, path
            if name in STEP_MODIFIERS:
                self.error(path, f"{name!r} is a step modifier, not an action")
                return None
        elif isinstance(raw, dict):
            actions = [k for k in raw if k not in STEP_MODIFIERS]
            modifiers = {k: v for k, v in raw.items() if k in STEP_MODIFIERS}
            known = [k for k in actions if isinstance(k, str) and k in self.registry]
            if len(actions) > 1 and len(known) == 1:
                # One real action beside misspelt modifiers (`timout: 5`): name each typo, check the rest.
                for key in actions:
                    if key not in known:
                        self.error(
                            path + (key,),
                            f"unknown key {key!r} beside action {known[0]!r}; a step has one action and the "
                            f"modifiers {', '.join(STEP_MODIFIERS)}"
                            + did_you_mean(str(key), (*STEP_MODIFIERS, *self.registry)),
                            key=True,
                        )
                actions = known
            if len(actions) != 1:
                found = ", ".join(map(str, actions)) or "none"
                self.error(path, f"expected exactly one action per step, found {len(actions)} ({found})")
                return None
            name = actions[0]
            arg, arg_path = raw[name], path + (name,)
        else:
            self.error(
                path, f"expected a step: an action name or a mapping such as {{tap: {{id: x}}}}, got {type_name(raw)}"
            )
            return None
        if not isinstance(name, str) or name not in self.registry:
            hint = did_you_mean(str(name), self.registry)
            if isinstance(name, str) and " - " in name:
                # `- back` then `    - tap` indented deeper: YAML reads both lines as one text.
                hint = "; a '- ' item indented deeper than the item above joins it as one text: line up the '-'s"
            self.error(arg_path, f"unknown action {name!r}{hint}", key=True)
            return None
        if allowed is not None and name not in allowed:
            self.error(arg_path, f"action {name!r} is not in allowed_actions ({', '.join(allowed)})", key=True)
        spec = self.registry[name]
        if spec.explicit and allowed is None:
            self.error(
                arg_path,
                f"action {name!r} runs only in a SOP whose allowed_actions names it: add allowed_actions "
                f"listing {name!r} and the SOP's other actions",
                key=True,
            )
        params = self.arguments(spec, arg_path, arg, bare=isinstance(raw, str))
        if params is not None and self.platform in PHONES:
            self.platform_can(name, arg_path, params)
        timeout = retry = None
        if "timeout" in modifiers:
            timeout = self.number(
                path + ("timeout",), modifiers["timeout"], minimum=0, maximum=MAX_SECONDS, unit=" (seconds)"
            )
        if "retry" in modifiers:
            retry = self.retry(path + ("retry",), modifiers["retry"])
        optional = bool(self.boolean(path + ("optional",), modifiers["optional"])) if "optional" in modifiers else False
        label = self.string(path + ("name",), modifiers["name"]) if "name" in modifiers else None
        when = self.check(path + ("when",), modifiers["when"]) if "when" in modifiers else None
        if params is None:
            return None
        if name == "repeat" and not self.repeat_counts(arg_path, params):
            return None
        # The registry's name and shared parameters: only the position is this step's own.
        step = Step(spec.name, self.shared.params(params), self.pos(path), timeout, retry, optional, label, when)
        if name == "run":
            self.run_steps.append((step, path))
        return step

    def repeat_counts(self, path: Path_, params: dict[str, Any]) -> bool:
        """``times: N``, or ``while`` with ``max: N``: a repeat always ends."""
        if "while" in params and "max" not in params:
            self.error(path, "a repeat with while needs max: the most iterations it may take (max reached fails)")
            return False
        if "times" in params and "max" in params:
            self.error(path + ("max",), "max goes with while; with times, times is the number of iterations")
            return False
        return True

    def check(self, path: Path_, raw: Any) -> Check | None:
        """A ``when:`` or ``while:`` condition: a ``done_when`` condition, or ``platform: NAME``."""
        if isinstance(raw, dict) and len(raw) == 1 and "platform" in raw:
            name = self.string(path + ("platform",), raw["platform"], pattern=NAME_RE, what="a platform name")
            if name is None:
                return None
            self.platforms.append((name, path + ("platform",)))
            return OnPlatform(name, self.pos(path))
        return self.condition(path, raw, extra=("platform",))

    def arguments(self, spec: ActionSpec, path: Path_, arg: Any, *, bare: bool) -> dict[str, Any] | None:
        if spec.shape == "none":
            if arg is not None:
                self.error(path, f"{spec.name} takes no parameters, got {type_name(arg)}")
                return None
            return {}
        if arg is None:
            if spec.bare_allowed:
                return {}
            self.error(path, f"{spec.name} needs {self.describe(spec)}")
            return None
        if spec.shape == "locator":
            loc = self.locator(path, arg)
            return {"locator": loc} if loc else None
        if spec.shape == "value" and len(spec.params) > 1 and isinstance(arg, dict):
            return self.fields(spec, path, arg)  # `run: {sop: x, with: {...}}`
        if spec.shape == "value":
            value = self.param(spec, spec.params[0], path, arg)
            return {spec.params[0].name: value} if value is not None else None
        if spec.short and self.is_locator(spec, arg):
            loc = self.locator(path, arg)
            return {spec.short: loc} if loc else None
        return self.fields(spec, path, arg)

    def platform_can(self, action: str, path: Path_, params: Mapping[str, Any]) -> None:
        """What the SOP's required platform cannot do is an error now, not when its step runs."""
        assert self.platform is not None
        if action == "assert_url":
            self.error(path, f"assert_url works on web devices only; this SOP requires platform {self.platform}")
        for key, value in params.items():
            reason = cannot_find_on(self.platform, value) if isinstance(value, Locator) else None
            if reason:
                self.error(
                    path if key == "locator" else path + (key,),
                    f"{reason} (requires.device.platform is {self.platform})",
                )

    @staticmethod
    def is_locator(spec: ActionSpec, arg: Any) -> bool:
        """``{id: x}`` rather than ``{at: ..., seconds: ...}``: one key, nearer a locator strategy than a field."""
        if not isinstance(arg, dict) or not arg:
            return False
        names = [p.name for p in spec.params]
        keys = [k for k in arg if isinstance(k, str)]
        if len(keys) != len(arg) or any(k in names for k in keys):
            return False
        # A refined locator ({text: x, index: 1}) has several keys; a lone key is judged by what it is nearer.
        near = [*LOCATOR_STRATEGIES, *LOCATOR_REFINEMENTS, *names]
        return all(closest(k, near) not in names for k in keys)

    def fields(self, spec: ActionSpec, path: Path_, arg: Any) -> dict[str, Any] | None:
        names = [p.name for p in spec.params]
        required = [p.name for p in spec.params if p.required]
        before = len(self.errors)
        given = self.mapping(path, arg, allowed=names, required=required, what=f"a mapping with {', '.join(names)}")
        if given is None:
            return None
        for group in spec.one_of:
            present = [n for n in group if n in given]
            if len(present) != 1:
                self.error(path, f"expected exactly one of {', '.join(group)}, got {len(present)}")
        for group in spec.some_of:
            if not any(n in given for n in group):
                self.error(path, f"expected at least one of {', '.join(group)}, got none")
        out = {}
        for p in spec.params:
            if p.name in given:
                out[p.name] = self.param(spec, p, path + (p.name,), given[p.name])
        if spec.name in _PATTERN_ACTIONS and isinstance(out.get("matches"), Template):
            self.pattern(path + ("matches",), out["matches"])
        return out if len(self.errors) == before else None

    def param(self, spec: ActionSpec, p: Param, path: Path_, value: Any) -> Any:
        if p.kind == "locator":
            return self.locator(path, value)
        if p.kind == "text":
            return self.template(path, value)
        if p.kind == "name":
            return self.string(path, value, pattern=NAME_RE, what="a name (letters, digits, '_', '-', '.')")
        if p.kind == "sop_id":
            return self.ident(path, value)
        if p.kind in ("number", "integer"):
            seconds = (spec.name, p.name) in SECONDS_PARAMS
            return self.number(
                path, value, minimum=p.minimum,
                maximum=MAX_SECONDS if seconds else MAX_REPEAT if spec.name == "repeat" else MAX_EXACT,
                integer=p.kind == "integer", unit=" (seconds)" if seconds else "",
            )  # fmt: skip
        if p.kind == "boolean":
            return self.boolean(path, value)
        if p.kind == "key":
            return self.key(path, value)
        if p.kind == "steps":
            steps = self.step_list(path, value, self.allowed, required=True)
            for i, inner in enumerate(steps or ()):
                if inner.action in PAUSING:  # a pause keeps the step, not the iteration: it could not go on
                    self.error(
                        path + (i, inner.action),
                        f"{inner.action} inside a repeat cannot pause the case; put it before or after the loop",
                        key=True,
                    )
            return steps or None
        if p.kind == "check":
            return self.check(path, value)
        if p.kind == "args":
            return self.args(path, value)
        if value not in p.choices:
            self.error(
                path, f"expected one of: {', '.join(p.choices)}, got {value!r}" + did_you_mean(str(value), p.choices)
            )
            return None
        return value

    def key(self, path: Path_, value: Any) -> str | None:
        name = key_name(value) if isinstance(value, str) else None
        if name is None:
            hint = " (one key per step: combinations such as CTRL+A are not supported)" if "+" in str(value) else ""
            self.error(
                path,
                f"unknown key {value!r}; expected one of: {known_keys_text()}{hint}"
                + did_you_mean(str(value).upper(), KNOWN_KEYS),
            )
            return None
        return self.shared.text(name)

    def args(self, path: Path_, value: Any) -> Args | None:
        """``with: {NAME: VALUE}``: each value text or a number, templates of the caller allowed."""
        if not isinstance(value, dict) or not value:
            got = "an empty mapping" if value == {} else type_name(value)
            self.error(
                path, f"expected a mapping of names to values such as {{user: '${{account.username}}'}}, got {got}"
            )
            return None
        values: list[tuple[str, Template]] = []
        for k, v in value.items():
            if not isinstance(k, str) or not PARAM_RE.fullmatch(k):
                self.error(path + (k,), f"expected a name (letters, digits, '_', '-'), got {k!r}", key=True)
                continue
            t = self.template(path + (k,), v)
            if t is not None:
                values.append((self.shared.text(k), t))
        return Args(tuple(values)) if len(values) == len(value) else None

    @staticmethod
    def describe(spec: ActionSpec) -> str:
        if spec.shape == "locator":
            return "a locator such as {id: compose}"
        if spec.short:
            fields = ", ".join(f"{p.name}: ..." for p in spec.params)
            return f"a locator such as {{id: compose}}, or {{{fields}}}"
        return " and ".join(p.name for p in spec.params if p.required) or "a value"

    def conditions(self, value: Any) -> tuple[Condition, ...]:
        if not isinstance(value, list):
            self.error(("done_when",), f"expected a list of conditions, got {type_name(value)}")
            return ()
        found = (self.condition(("done_when", i), raw) for i, raw in enumerate(value))
        return tuple(c for c in found if c is not None)

    def condition(self, p: Path_, raw: Any, extra: tuple[str, ...] = ()) -> Condition | None:
        """One of visible, not_visible or text (``extra``: other kinds the caller accepts, for messages)."""
        kinds = (*_CONDITIONS, *extra)
        expected = ", ".join(kinds[:-1]) + " or " + kinds[-1]
        if not isinstance(raw, dict) or len(raw) != 1:
            self.error(p, f"expected one condition: {expected}")
            return None
        ((kind, arg),) = raw.items()
        if kind not in _CONDITIONS:
            self.error(
                p + (kind,),
                f"unknown condition {kind!r}; expected {expected}" + did_you_mean(str(kind), kinds),
                key=True,
            )
            return None
        params = self.arguments(_CONDITIONS[kind], p + (kind,), arg, bare=False)
        if params is None:
            return None
        if self.platform in PHONES:
            self.platform_can(kind, p + (kind,), params)
        if kind == "text":
            match = text_match(params)
            return Condition("text", match.locator, match, self.pos(p))
        return Condition(kind, params["locator"], None, self.pos(p))

    def check_input_refs(self, rows: tuple[InputRow, ...], declared: bool) -> None:
        for template, path in self.templates:
            for ns, name in template.refs:
                if ns != "inputs":
                    continue
                if not declared:
                    self.error(path, f"${{inputs.{name}}} is used but the SOP has no inputs")
                    continue
                missing = [r.id for r in rows if name not in r.values]
                if len(missing) == len(rows):  # in no row at all: most likely a typo
                    names = sorted({k for r in rows for k in r.values})
                    known = ", ".join(names) or "none"
                    self.error(
                        path,
                        f"${{inputs.{name}}} is not an input of this SOP; inputs are: {known}"
                        + did_you_mean(name, names),
                    )
                elif missing:
                    self.error(path, f"${{inputs.{name}}} is missing from input row(s): {', '.join(missing)}")


def _args(step: Step) -> Args:
    found = step.params.get("with")
    return found if isinstance(found, Args) else Args(())


def text_match(params: Mapping[str, Any]) -> TextMatch:
    how: Literal["equals", "contains", "matches"] = next(h for h in ("equals", "contains", "matches") if h in params)
    return TextMatch(params["in"], how, params[how])


__all__ = ["ID_RE", "ParsedSop", "parse_sop_file", "text_match"]
