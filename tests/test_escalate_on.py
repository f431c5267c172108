"""A SOP's ``escalate_on``: which outcomes count toward escalating its exceptions, checked where it is written."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml
from sopsuite import SOP_YAML

from pytest_sop.actions import build_registry
from pytest_sop.schema import build_schema
from pytest_sop.suite import Suite
from pytest_sop.suiteconfig import load_config


def parse(tmp_path: Path, text: str) -> tuple[list[str], object]:
    (tmp_path / "sop.yaml").write_text(SOP_YAML)
    (tmp_path / "s.sop.yaml").write_text(text)
    suite = Suite(load_config(str(tmp_path / "sop.yaml")), build_registry(), str(tmp_path), base=str(tmp_path))
    result = suite.result(str(tmp_path / "s.sop.yaml"))
    sop = result.cases[0].sop if result.cases else None
    return [e.format() for e in result.errors], sop


STEPS = "steps:\n  - back\n"


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("", ("failed",)),  # product failures only, unless the SOP says otherwise
        ("escalate_on: [failed, broken]\n", ("failed", "broken")),
        ("escalate_on: [broken]\n", ("broken",)),
        ("escalate_on: broken\n", ("broken",)),
    ],
)
def test_escalate_on_is_read(tmp_path: Path, written: str, expected: tuple[str, ...]) -> None:
    errors, sop = parse(tmp_path, "id: s\n" + written + STEPS)
    assert errors == []
    assert sop.escalate_on == expected  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        (
            "escalate_on: [failed, brokn]\n",
            "s.sop.yaml:2:23: escalate_on[1]: expected one of: failed, broken (product or infrastructure failures), "
            "got 'brokn' (did you mean 'broken'?)",
        ),
        (
            "escalate_on: []\n",
            "s.sop.yaml:2:14: escalate_on: expected a list of one or both of: failed, broken, got an empty list",
        ),
        ("escalate_on: {failed: true}\n", "s.sop.yaml:2:14: escalate_on: expected a list of text, got a mapping"),
        (
            "escalate_on: awaiting\n",
            "s.sop.yaml:2:14: escalate_on: expected one of: failed, broken (product or infrastructure failures), "
            "got 'awaiting'",
        ),
        (
            "escalete_on: [broken]\n",
            "s.sop.yaml:2:1: escalete_on: unknown key 'escalete_on'; expected one of: id, title, description, owner, "
            "tags, severity, app, requires, inputs, allowed_actions, retry, schedule, escalate_to, escalate_on, "
            "steps, done_when, on_failure, kind, xfail (did you mean 'escalate_on'?)",
        ),
    ],
)
def test_bad_escalate_on_names_its_position(tmp_path: Path, written: str, expected: str) -> None:
    errors, _ = parse(tmp_path, "id: s\n" + written + STEPS)
    assert errors == [expected]


def test_schema_states_escalate_on() -> None:
    validator = jsonschema.Draft202012Validator(build_schema(build_registry()))
    good = yaml.safe_load("id: s\nescalate_on: [failed, broken]\n" + STEPS)
    assert list(validator.iter_errors(good)) == []
    for bad in ("[]", "[awaiting]", "[failed, failed]"):
        assert list(validator.iter_errors(yaml.safe_load(f"id: s\nescalate_on: {bad}\n" + STEPS))), bad
