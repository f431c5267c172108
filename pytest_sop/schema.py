"""JSON Schema (2020-12) of SOP files, built from the action registry so it cannot drift.

Editors use it through yaml-language-server:
``# yaml-language-server: $schema=sop.schema.json`` at the top of a SOP file.
"""

from __future__ import annotations

from typing import Any

from .actions import CONDITIONS, ActionRegistry, ActionSpec, Param
from .checker import ENV_RE, ID_RE, NAME_RE
from .keys import KNOWN_KEYS
from .model import (
    ESCALATING,
    LOCATOR_STRATEGIES,
    MAX_ATTEMPTS,
    MAX_BACKOFF,
    MAX_EXACT,
    MAX_REPEAT,
    MAX_SECONDS,
    SEVERITIES,
)
from .sopfile import PARAM_RE, ROW_ID_RE, SECONDS_PARAMS, SOP_KINDS

DIALECT = "https://json-schema.org/draft/2020-12/schema"
_REF = "#/$defs/"


def _pattern(regex: Any) -> str:
    return f"^{regex.pattern}$"


def _seconds(description: str) -> dict[str, Any]:
    return {"type": "number", "minimum": 0, "maximum": MAX_SECONDS, "description": description}


# Any number without a bound of its own: exact as a float and the same in every JSON reader.
_EXACT = {"minimum": -MAX_EXACT, "maximum": MAX_EXACT}


def _param(spec: ActionSpec, p: Param) -> dict[str, Any]:
    out: dict[str, Any]
    if p.kind == "locator":
        out = {"$ref": _REF + "locator"}
    elif p.kind == "text":
        out = {"type": ["string", "number"]}
    elif p.kind == "name":
        out = {"type": "string", "pattern": _pattern(NAME_RE)}
    elif p.kind == "sop_id":
        out = {"type": "string", "pattern": _pattern(ID_RE)}
    elif p.kind in ("number", "integer"):
        out = {"type": p.kind, **_EXACT}
        if p.minimum is not None:
            out["minimum"] = p.minimum
        if (spec.name, p.name) in SECONDS_PARAMS:
            out["maximum"] = MAX_SECONDS
        if spec.name == "repeat":
            out["maximum"] = MAX_REPEAT
    elif p.kind == "boolean":
        out = {"type": "boolean"}
    elif p.kind == "key":
        out = {"anyOf": [{"enum": list(KNOWN_KEYS)}, {"type": "string", "pattern": "^KEYCODE_[A-Z0-9_]+$"}]}
    elif p.kind == "steps":
        out = {"type": "array", "minItems": 1, "items": {"$ref": _REF + "step"}}
    elif p.kind == "check":
        out = {"$ref": _REF + "check"}
    elif p.kind == "args":
        out = {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": _pattern(PARAM_RE)},
            "additionalProperties": {"type": ["string", "number"]},
        }
    else:
        out = {"enum": list(p.choices)}
    if p.doc:
        out["description"] = p.doc
    return out


def _argument(spec: ActionSpec) -> dict[str, Any]:
    if spec.shape == "none":
        return {"type": "null"}
    if spec.shape == "locator":
        return {"$ref": _REF + "locator"}
    if spec.shape == "value":
        value = _param(spec, spec.params[0])
        if len(spec.params) > 1:  # also written as fields: `run: {sop: x, with: {...}}`
            value = {"anyOf": [value, _fields(spec)]}
        return {"anyOf": [value, {"type": "null"}]} if spec.bare_allowed else value
    return _fields(spec)


def _fields(spec: ActionSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "object",
        "properties": {p.name: _param(spec, p) for p in spec.params},
        "required": [p.name for p in spec.params if p.required],
        "additionalProperties": False,
    }
    groups = [{"oneOf": [{"required": [n]} for n in group]} for group in spec.one_of]
    groups += [{"anyOf": [{"required": [n]} for n in group]} for group in spec.some_of]
    if groups:
        out["allOf"] = groups
    if spec.name == "repeat":
        out["dependentRequired"] = {"while": ["max"], "max": ["while"]}  # a while loop always ends
    if spec.short:
        return {"anyOf": [{"$ref": _REF + "locator"}, out]}
    return out


def _step(spec: ActionSpec, modifiers: bool = True) -> dict[str, Any]:
    props: dict[str, Any] = {spec.name: _argument(spec) | {"description": spec.doc}}
    if modifiers:
        props |= {
            "timeout": _seconds(f"seconds to wait for this step, at most {MAX_SECONDS}"),
            "retry": {"$ref": _REF + "retry"},
            "optional": {"type": "boolean", "description": "a failure is recorded and the case goes on"},
            "name": {"type": "string", "description": "a label for reports"},
            "when": {"$ref": _REF + "check", "description": "run only when this holds now; else skipped"},
        }
    return {"type": "object", "properties": props, "required": [spec.name], "additionalProperties": False}


def build_schema(registry: ActionRegistry) -> dict[str, Any]:
    specs = list(registry.values())
    bare = [s.name for s in specs if s.bare_allowed]
    text_list = {"type": "array", "items": {"type": "string", "pattern": _pattern(NAME_RE)}}
    return {
        "$schema": DIALECT,
        "$id": "https://pytest-sop.invalid/sop.schema.json",
        "title": "pytest-sop SOP file",
        "type": "object",
        "required": ["id", "steps"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "pattern": _pattern(ID_RE), "description": "unique in the suite"},
            "title": {"type": "string"},
            "description": {"type": "string"},
            "owner": {"type": "string"},
            "tags": text_list,
            "severity": {"enum": list(SEVERITIES)},
            "app": {"type": "string", "description": "an app from sop.yaml"},
            "requires": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "device": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"platform": {"type": "string"}, "tags": text_list, "id": {"type": "string"}},
                    },
                    "account": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "role": {"type": "string"},
                            "tags": text_list,
                            "id": {"type": "string"},
                            "each": {"type": "boolean", "description": "one case per matching account"},
                        },
                    },
                },
            },
            "inputs": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["id"],
                    "properties": {"id": {"type": ["string", "integer"], "pattern": _pattern(ROW_ID_RE)}},
                    "additionalProperties": {
                        "anyOf": [
                            {"type": ["string", "boolean"]},
                            {"type": "number", **_EXACT},
                            {"$ref": _REF + "secret"},
                        ]
                    },
                },
            },
            "allowed_actions": {"type": "array", "items": {"enum": [s.name for s in specs]}},
            "retry": {"$ref": _REF + "retry"},
            "schedule": {
                "type": "object",
                "required": ["every"],
                "additionalProperties": False,
                "properties": {
                    "every": {
                        "type": "string",
                        "pattern": r"^\d+(\.\d+)?\s*(s|m|h|d)$",
                        "description": "a period from 1s to 366d",
                    }
                },
            },
            "escalate_to": {"type": "string", "description": "who an exception escalates to (default: the owner)"},
            "escalate_on": {
                "type": "array",
                "minItems": 1,
                "uniqueItems": True,
                "items": {"enum": list(ESCALATING)},
                "description": "outcomes that count toward escalation: failed (the product), broken (device, "
                "session or server trouble); default [failed]",
            },
            "kind": {
                "enum": list(SOP_KINDS),
                "description": "case (default: collected as a case) or flow (only run by other SOPs)",
            },
            "xfail": {"type": "string", "minLength": 1, "description": "expected to fail (strict): the reason"},
            "steps": {"type": "array", "minItems": 1, "items": {"$ref": _REF + "step"}},
            "on_failure": {"type": "array", "items": {"$ref": _REF + "step"}},
            "done_when": {"type": "array", "items": {"oneOf": [_step(c, modifiers=False) for c in CONDITIONS]}},
        },
        "$defs": {
            "locator": {
                "type": "object",
                "description": "one strategy, optionally narrowed down by index, inside, below, checked, enabled",
                "additionalProperties": False,
                "properties": {
                    **{s: {"type": ["string", "number"], "minLength": 1} for s in LOCATOR_STRATEGIES},
                    "index": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": MAX_EXACT,
                        "description": "0-based among the matches shown",
                    },
                    "inside": {"$ref": _REF + "locator", "description": "a descendant of this element"},
                    "below": {
                        "$ref": _REF + "locator",
                        "description": "at or below this element's bottom, nearest first",
                    },
                    "checked": {"type": "boolean"},
                    "enabled": {"type": "boolean"},
                },
                "oneOf": [{"required": [s]} for s in LOCATOR_STRATEGIES],
            },
            "retry": {
                "type": "object",
                "required": ["attempts"],
                "additionalProperties": False,
                "properties": {
                    "attempts": {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS},
                    "backoff": {
                        "type": "number",
                        "minimum": 0,
                        "maximum": MAX_BACKOFF,
                        "description": "seconds, times the attempt number, slept between attempts",
                    },
                },
            },
            "secret": {
                "type": "object",
                "required": ["env"],
                "additionalProperties": False,
                "properties": {"env": {"type": "string", "pattern": _pattern(ENV_RE)}},
            },
            "step": {"oneOf": [{"enum": bare}, *(_step(s) for s in specs)]},
            "check": {
                "oneOf": [
                    *(_step(c, modifiers=False) for c in CONDITIONS),
                    {
                        "type": "object",
                        "properties": {"platform": {"type": "string", "pattern": _pattern(NAME_RE)}},
                        "required": ["platform"],
                        "additionalProperties": False,
                    },
                ]
            },
        },
    }
