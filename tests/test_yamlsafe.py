"""The loader either loads or raises the project's own syntax error, never anything else."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_sop import yamlsafe
from pytest_sop.errors import SopSyntaxError
from pytest_sop.yamlsafe import load

YAMLISH = st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#%@`,? \t\n0123456789.~=<$")), max_size=200)


def _load_or_syntax_error(source: str | bytes) -> None:
    try:
        loaded = load("f.yaml", source)
    except SopSyntaxError as e:
        assert e.path == "f.yaml" and e.line >= 1 and e.col >= 1
        return
    assert isinstance(loaded.key_pos, dict)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_any_text(source: str) -> None:
    _load_or_syntax_error(source)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(YAMLISH)
def test_yaml_like_text(source: str) -> None:
    _load_or_syntax_error(source)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_any_bytes(source: bytes) -> None:
    _load_or_syntax_error(source)


def test_deep_nesting_is_a_syntax_error() -> None:
    _load_or_syntax_error("[" * 5000 + "]" * 5000)


def test_positions_of_keys_and_values() -> None:
    loaded = load("f.yaml", "id: a\nsteps:\n  - tap: {id: x}\n")
    assert loaded.at(("steps", 0, "tap", "id")).line == 3
    assert loaded.at(("steps", 0, "tap", "id")).col == 15
    assert loaded.at(("steps",), key=True).col == 1


def test_merge_keys_keep_explicit_values() -> None:
    loaded = load("f.yaml", "base: &b {a: 1, b: 2}\nc:\n  <<: *b\n  b: 3\n")
    assert loaded.data["c"] == {"a": 1, "b": 3}


def test_dates_stay_text() -> None:
    assert load("f.yaml", "when: 2026-11-25\n").data == {"when": "2026-11-25"}


# Common mistakes, each in plain words with a hint, at FILE:LINE:COLUMN. PyYAML's own words
# ("mapping values are not allowed here", "expected <block end>") never reach the user.
H = "id: s\nsteps:\n"
MISTAKES = {
    "a step's modifier indented like the '-'": (
        H + "  - wait_for: {id: whoami}\n  timeout: 10\n",
        "f.yaml:4:3: malformed YAML: this line is lined up with the '-' of the item on line 3 but does not start "
        "with '- ': indent it to column 5 (under 'wait_for') to add it to that item (a step's timeout, retry, "
        "optional or name), start it with '- ' for a new item, or indent it less to end the list",
    ),
    "a step's modifier indented too far": (
        H + "  - wait_for: {id: whoami}\n      timeout: 10\n",
        "f.yaml:4:7: malformed YAML: this line is indented 6 space(s), but the keys around it are indented "
        "4 (line 3): line it up with the keys it belongs beside",
    ),
    "a key indented under a plain value": (
        "id: s\n  title: x\nsteps: [back]\n",
        "f.yaml:2:3: malformed YAML: a `key: value` cannot start here: this line is indented more than line 1 "
        "above, which does not end with ':' to open a mapping: line it up with the key it belongs beside",
    ),
    "a key indented between two levels": (
        "id: s\nrequires:\n  device: {}\n account: {}\nsteps: [back]\n",
        "f.yaml:4:2: malformed YAML: this line is indented 1 space(s), but the keys around it are indented "
        "0 (line 1) or 2 (line 3): line it up with the keys it belongs beside",
    ),
    "a list item indented less than the one above": (
        H + "  - back\n - back\n",
        "f.yaml:4:2: malformed YAML: this '- ' item is indented 1 space(s), the item on line 3 2: line up the "
        "'-' of the items of one list",
    ),
    "no space after '-'": (
        H + "  -back\n  - tap: {id: x}\n",
        "f.yaml:4:3: malformed YAML: a `key: value` cannot start here: line 3 starts '-' with no space after it: "
        "a list item is '- item'",
    ),
    "tab indentation": (
        H + "\t- back\n",
        "f.yaml:3:1: malformed YAML: a tab character; YAML is indented with spaces only: replace the tab with spaces",
    ),
    "tab after spaces": (
        H + "  \t- back\n",
        "f.yaml:3:3: malformed YAML: a tab character; YAML is indented with spaces only: replace the tab with spaces",
    ),
    "': ' inside a plain value": (
        "id: s\ntitle: Sign in: now\nsteps: [back]\n",
        "f.yaml:2:15: malformed YAML: a second ': ' on this line: quote a value that holds ': ' "
        '(title: "Sign in: now")',
    ),
    "': ' inside {...}": (
        H + "  - tap: {text: Sign in: now}\n",
        "f.yaml:3:24: malformed YAML: a ':' inside {...} that is not after a key: quote a value that holds ': ' "
        '(text: "Sign in: now")',
    ),
    "unclosed double quote": (
        'id: s\ntitle: "Sign in\nsteps: [back]\n',
        'f.yaml:2:8: malformed YAML: this " is never closed: end the text with a matching " on the same line',
    ),
    "unclosed single quote": (
        "id: s\ntitle: 'Sign in\nsteps: [back]\n",
        "f.yaml:2:8: malformed YAML: this ' is never closed: end the text with a matching ' on the same line",
    ),
    "unclosed [": (
        "id: s\nsteps: [back\n",
        "f.yaml:2:8: malformed YAML: this '[' is never closed: end the list with ']' on the same line",
    ),
    "unclosed {": (
        H + "  - tap: {id: x\n  - back\n",
        "f.yaml:3:10: malformed YAML: this '{' is never closed: end the mapping with '}' on the same line",
    ),
    "text after a quoted value": (
        'id: s\ntitle: "Sign" in\nsteps: [back]\n',
        "f.yaml:2:15: malformed YAML: more text after a complete value: quote the whole value, or none of it",
    ),
    "a value starting with '@'": (
        "id: s\nowner: @ops\nsteps: [back]\n",
        "f.yaml:2:8: malformed YAML: a value cannot start with '@' unless it is quoted: write it in quotes ('@...')",
    ),
    "missing ':' after a key": (
        H + "  - tap: {id: x}\n    timeout 10\n",
        "f.yaml:4:5: malformed YAML: this line is not `key: value` nor a '- item': is the ':' after the key "
        "missing (or the space after it)? A longer text goes on one line, or in quotes",
    ),
    "a list on its key's line": (
        "id: s\nsteps: - back\n",
        "f.yaml:2:8: malformed YAML: a list cannot start on the same line as its key: put each '- item' on a line "
        "of its own, indented under the key",
    ),
    "two documents": (
        "id: s\nsteps: [back]\n---\nid: t\n",
        "f.yaml:3:1: malformed YAML: a second document ('---'); a file holds one SOP (or one config): remove the "
        "'---' line",
    ),
}


@pytest.mark.parametrize(("source", "expected"), MISTAKES.values(), ids=MISTAKES.keys())
@pytest.mark.parametrize("loader", ["C", "Python"])
def test_common_mistakes_are_explained(
    source: str, expected: str, loader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same words from libyaml (CSafeLoader) and from PyYAML's pure-Python loader."""
    if loader == "Python":
        monkeypatch.setattr(yamlsafe, "_Loader", yaml.SafeLoader)
    elif not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML built without libyaml")
    with pytest.raises(SopSyntaxError) as info:
        load("f.yaml", source)
    assert info.value.format() == expected


def test_only_yaml_1_2_booleans() -> None:
    """YAML 1.1's yes/no/on/off are text, keys and values alike: `on:` is a key named "on"."""
    loaded = load("f.yaml", "on: yes\noff: No\nYES: ON\ny: n\na: true\nb: False\nc: TRUE\nd: 'true'\n")
    assert loaded.data == {"on": "yes", "off": "No", "YES": "ON", "y": "n", "a": True, "b": False, "c": True,
                           "d": "true"}  # fmt: skip
    assert loaded.at(("on",), key=True).line == 1


def test_a_yaml_1_1_boolean_is_not_a_boolean_field(tmp_path: Path) -> None:
    from pytest_sop.actions import ActionRegistry
    from pytest_sop.sopfile import parse_sop_file

    path = tmp_path / "a.sop.yaml"
    path.write_text("id: a\nsteps:\n  - back:\n    optional: yes\n  - back:\n    optional: true\n")
    parsed = parse_sop_file(str(path), ActionRegistry(), "a.sop.yaml")
    assert [e.format() for e in parsed.errors] == [
        "a.sop.yaml:4:15: steps[0].optional: expected true or false, got text"
    ]
