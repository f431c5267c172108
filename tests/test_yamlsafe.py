"""The loader either loads or raises the project's own syntax error, never anything else."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
