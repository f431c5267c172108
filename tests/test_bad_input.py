"""Every kind of bad input is an error naming FILE:LINE:COLUMN, the field and what was expected."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sopsuite import SOP_YAML, write_suite

from pytest_sop.actions import build_registry
from pytest_sop.suite import Suite
from pytest_sop.suiteconfig import load_config


def lint(tmp_path: Path, files: dict[str, str], config: str = SOP_YAML) -> list[str]:
    (tmp_path / "sop.yaml").write_text(config)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    suite = Suite(load_config(str(tmp_path / "sop.yaml")), build_registry(), str(tmp_path), base=str(tmp_path))
    return [e.format() for name in files for e in suite.result(str(tmp_path / name)).errors]


GOOD_HEAD = "id: s\nsteps:\n"

CASES = {
    "malformed YAML": (
        "id: s\nsteps: [tap\n",
        "s.sop.yaml:2:8: malformed YAML: this '[' is never closed: end the list with ']' on the same line",
    ),
    "tab": (
        "id: s\nsteps:\n\t- back\n",
        "s.sop.yaml:3:1: malformed YAML: a tab character; YAML is indented with spaces only: replace the tab with spaces",
    ),
    "list item indented deeper than the one above": (
        GOOD_HEAD + "  - back\n    - back\n",
        "s.sop.yaml:3:5: steps[0]: unknown action 'back - back'; a '- ' item indented deeper than the item above "
        "joins it as one text: line up the '-'s",
    ),
    "no space after '-' in a list of one": (
        GOOD_HEAD + "  -tap: {id: x}\n",
        "s.sop.yaml:3:3: steps: expected a non-empty list of steps, got a mapping; a list item needs a space after "
        "its '-' (`- tap: ...`, not `-tap: ...`)",
    ),
    "duplicate key": (
        "id: s\nsteps:\n  - back\nid: t\n",
        "s.sop.yaml:4:1: id: duplicate key 'id' (first at line 1)",
    ),
    "unknown key": (
        "id: s\nowners: me\nsteps:\n  - back\n",
        "s.sop.yaml:2:1: owners: unknown key 'owners'; expected one of: id, title, description, owner,",
    ),
    "unknown action": (
        GOOD_HEAD + "  - back\n  - tapp: {id: x}\n",
        "s.sop.yaml:4:5: steps[1].tapp: unknown action 'tapp' (did you mean 'tap'?)",
    ),
    "wrong type": (GOOD_HEAD + "  - wait: soon\n", "s.sop.yaml:3:11: steps[0].wait: expected a number, got text"),
    "missing required key": ("id: s\ntitle: no steps\n", "s.sop.yaml:1:1: missing required key 'steps'"),
    "missing required parameter": (
        GOOD_HEAD + "  - type: {into: {id: caption}}\n",
        "s.sop.yaml:3:11: steps[0].type: missing required key 'text'",
    ),
    "bad id": (
        "id: Publish_Post\nsteps:\n  - back\n",
        "s.sop.yaml:1:5: id: 'Publish_Post' is not an id: lower-case letters, digits and '-'",
    ),
    "bad locator": (
        GOOD_HEAD + "  - tap: {name: compose}\n",
        "s.sop.yaml:3:11: steps[0].tap.name: unknown locator 'name'; expected one of: id, accessibility_id, text, "
        "text_contains, text_matches, xpath, css, class, uiautomator, with refinements index, inside, below, checked, "
        "enabled",
    ),
    "locator with two strategies": (
        GOOD_HEAD + "  - tap: {id: a, text: b}\n",
        "s.sop.yaml:3:10: steps[0].tap: a locator has one strategy, got 2 (id, text); narrow one down with index, "
        "inside, below, checked, enabled",
    ),
    "bad modifier": (
        GOOD_HEAD + "  - back: null\n    optional: maybe\n",
        "s.sop.yaml:4:15: steps[0].optional: expected true or false, got text",
    ),
    "two actions in one step": (
        GOOD_HEAD + "  - back: null\n    tap: {id: x}\n",
        "s.sop.yaml:3:5: steps[0]: expected exactly one action per step, found 2 (back, tap)",
    ),
    "action outside allowed_actions": (
        "id: s\nallowed_actions: [tap]\nsteps:\n  - tap: {id: x}\non_failure:\n  - page_source\n",
        "s.sop.yaml:6:5: on_failure[0]: action 'page_source' is not in allowed_actions (tap)",
    ),
    "unknown app": ("id: s\napp: chat\nsteps:\n  - back\n", "s.sop.yaml:2:6: app: unknown app 'chat'; apps in"),
    "unmet device requirement": (
        "id: s\nrequires:\n  device: {platform: ios}\nsteps:\n  - back\n",
        "s.sop.yaml:3:11: requires.device: no device in",
    ),
    "unmet account requirement": (
        "id: s\nrequires:\n  account: {role: admin}\nsteps:\n  - back\n",
        "s.sop.yaml:3:12: requires.account: no account in",
    ),
    "account affinity makes a requirement unmeetable": (
        "id: s\nrequires:\n  device: {tags: [eu]}\n  account: {id: publisher-1}\nsteps:\n  - back\n",
        "s.sop.yaml:4:12: requires.account: no account in",
    ),
    "unknown template namespace": (
        GOOD_HEAD + "  - open_url: ${environ.HOME}\n",  # ${env.NAME} is a namespace now
        "s.sop.yaml:3:15: steps[0].open_url: unknown namespace 'environ' in '${environ.HOME}'",
    ),
    "unknown input name": (
        "id: s\ninputs:\n  - {id: a, caption: x}\n  - {id: b}\nsteps:\n  - type: {into: {id: c}, text: '${inputs.caption}'}\n",
        "s.sop.yaml:6:33: steps[0].type.text: ${inputs.caption} is missing from input row(s): b",
    ),
    "unknown account field": (
        "id: s\nrequires:\n  account: {role: publisher}\nsteps:\n  - type: {into: {id: c}, text: '${account.pin}'}\n",
        "s.sop.yaml:5:33: steps[0].type.text: ${account.pin} is not a field of account(s) publisher-1, publisher-2",
    ),
    "var never saved": (
        GOOD_HEAD + "  - open_url: '${vars.link}'\n",
        "s.sop.yaml:3:15: steps[0].open_url: ${vars.link} is never saved",
    ),
    "unclosed template": (
        GOOD_HEAD + "  - note: 'cost ${inputs.x'\n",
        "s.sop.yaml:3:11: steps[0].note: '${' is not closed by '}'",
    ),
    "unknown run target": (GOOD_HEAD + "  - run: nowhere\n", "s.sop.yaml:3:10: steps[0].run: unknown SOP 'nowhere'"),
    "bad severity": (
        "id: s\nseverity: urgent\nsteps:\n  - back\n",
        "s.sop.yaml:2:11: severity: expected one of: blocker, critical, normal, minor, trivial, got 'urgent'",
    ),
    "bad schedule": (
        "id: s\nschedule: {every: daily}\nsteps:\n  - back\n",
        "s.sop.yaml:2:19: schedule.every: expected a period such as 30m, 24h or 7d, got 'daily'",
    ),
    "bad swipe direction": (
        GOOD_HEAD + "  - swipe: {direction: north}\n",
        "s.sop.yaml:3:24: steps[0].swipe.direction: expected one of: up, down, left, right, got 'north'",
    ),
    "bare action that needs a value": (
        GOOD_HEAD + "  - tap\n",
        "s.sop.yaml:3:5: steps[0]: tap needs a locator such as {id: compose}",
    ),
    "empty file": ("", "s.sop.yaml:1:1: the file is empty; expected a mapping"),
    "a list instead of a SOP": ("- id: s\n", "s.sop.yaml:1:1: expected a SOP mapping, got a list"),
    "python tag": (
        "id: s\nsteps: !!python/object/apply:os.system ['echo x']\n",
        "s.sop.yaml:2:8: steps: tag tag:yaml.org,2002:python/object/apply:os.system is not allowed; plain data only",
    ),
}


@pytest.mark.parametrize("text, expected", list(CASES.values()), ids=list(CASES))
def test_bad_input_names_file_line_column_and_field(tmp_path: Path, text: str, expected: str) -> None:
    errors = lint(tmp_path, {"s.sop.yaml": text})
    assert any(e.startswith(expected) for e in errors), errors


def test_all_errors_of_a_file_are_reported_together(tmp_path: Path) -> None:
    errors = lint(tmp_path, {"s.sop.yaml": "id: S\napp: chat\nsteps:\n  - tapp: {id: x}\n  - wait: soon\n"})
    assert [e.split(": ")[0] for e in errors] == [
        "s.sop.yaml:1:5",
        "s.sop.yaml:2:6",
        "s.sop.yaml:4:5",
        "s.sop.yaml:5:11",
    ]


def test_run_cycle_is_reported_with_the_chain(tmp_path: Path) -> None:
    errors = lint(
        tmp_path,
        {
            "a.sop.yaml": "id: a\nsteps:\n  - run: b\n",
            "b.sop.yaml": "id: b\nsteps:\n  - back\n  - run: c\n",
            "c.sop.yaml": "id: c\nsteps:\n  - run: a\n",
        },
    )
    assert "a.sop.yaml:3:10: steps[0].run: run cycle: a -> b -> c -> a" in errors
    assert "b.sop.yaml:4:10: steps[1].run: run cycle: b -> c -> a -> b" in errors


def test_duplicate_sop_ids_across_files(tmp_path: Path) -> None:
    errors = lint(tmp_path, {"a.sop.yaml": "id: same\nsteps: [back]\n", "b.sop.yaml": "id: same\nsteps: [back]\n"})
    assert errors == [
        "a.sop.yaml:1:5: id: SOP id 'same' is also used by b.sop.yaml; ids must be unique in the suite",
        "b.sop.yaml:1:5: id: SOP id 'same' is also used by a.sop.yaml; ids must be unique in the suite",
    ]


def test_run_target_outside_allowed_actions(tmp_path: Path) -> None:
    errors = lint(
        tmp_path,
        {"a.sop.yaml": "id: a\nallowed_actions: [run]\nsteps:\n  - run: b\n", "b.sop.yaml": "id: b\nsteps: [back]\n"},
    )
    assert errors == [
        "a.sop.yaml:4:10: steps[0].run: runs 'b' whose step 'back' (b.sop.yaml:2) is not in allowed_actions"
    ]


def test_a_sop_running_a_refused_run_is_refused_too(tmp_path: Path) -> None:
    files = {
        "a.sop.yaml": "id: a\nsteps:\n  - run: b\n",
        "b.sop.yaml": "id: b\nallowed_actions: [run]\nsteps:\n  - run: c\n",
        "c.sop.yaml": "id: c\nsteps: [back]\n",
    }
    assert lint(tmp_path, files) == [
        "a.sop.yaml:3:10: steps[0].run: SOP 'b' (b.sop.yaml) has errors in what it runs",
        "b.sop.yaml:4:10: steps[0].run: runs 'c' whose step 'back' (c.sop.yaml:2) is not in allowed_actions",
    ]


def test_python_tag_did_not_execute(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    errors = lint(tmp_path, {"s.sop.yaml": f"id: s\nsteps: !!python/object/apply:os.system ['touch {marker}']\n"})
    assert errors and "not allowed" in errors[0]
    assert not marker.exists()


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    bomb = "id: s\nsteps: [back]\n" + "\n".join(lines) + "\n"
    errors = lint(tmp_path, {"s.sop.yaml": bomb})
    assert len(errors) == 1
    assert errors[0].startswith("s.sop.yaml:")
    assert "more than 100000 values after expanding aliases" in errors[0]


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    big = "id: s\nsteps: [back]\ndescription: " + "x" * (1024 * 1024) + "\n"
    assert lint(tmp_path, {"s.sop.yaml": big}) == [
        f"s.sop.yaml:1:1: file is {len(big)} bytes; at most 1048576 bytes expected"
    ]


def test_bad_suite_config_names_its_line(pytester: pytest.Pytester) -> None:
    write_suite(
        pytester, {"s.sop.yaml": "id: s\nsteps: [back]\n"}, config="devices:\n  - id: a\n    platfrom: android\n"
    )
    result = pytester.runpytest("--sop")
    # The typo is the one error: 'platform' is not reported missing as well.
    result.stderr.fnmatch_lines(
        ["sop.yaml:3:5: devices[[]0].platfrom: unknown key 'platfrom'*(did you mean 'platform'?)"]
    )
    assert "missing required key" not in result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_one_bad_file_does_not_hide_another_and_nothing_runs(pytester: pytest.Pytester) -> None:
    write_suite(
        pytester,
        {
            "a.sop.yaml": "id: a\nsteps:\n  - tapp: {id: x}\n",
            "b.sop.yaml": "id: b\nsteps:\n  - wait: soon\n",
            "c.sop.yaml": "id: c\nsteps: [back]\n",
        },
    )
    pytester.makepyfile(test_plain=f"def test_ran():\n    open({os.fspath(pytester.path / 'ran')!r}, 'w').close()\n")
    result = pytester.runpytest("--sop")
    result.stdout.fnmatch_lines(
        [
            "*ERROR collecting a.sop.yaml*",
            "a.sop.yaml:3:5: steps[[]0].tapp: unknown action 'tapp' (did you mean 'tap'?)",
            "*ERROR collecting b.sop.yaml*",
            "b.sop.yaml:3:11: steps[[]0].wait: expected a number, got text",
            "*Interrupted: 2 errors during collection*",
        ]
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert not (pytester.path / "ran").exists()


def test_an_app_url_takes_only_env_references(pytester: pytest.Pytester) -> None:
    """An app's url is rendered before a case has inputs or an account: only ${env.NAME} can fill it."""
    config = "apps:\n  a:\n    url: http://127.0.0.1/${inputs.y}\n  b:\n    url: http://127.0.0.1:${env.PORT\n"
    write_suite(pytester, {"s.sop.yaml": "id: s\nsteps: [back]\n"}, config=config)
    result = pytester.runpytest("--sop")
    result.stderr.fnmatch_lines(
        [
            "sop.yaml:3:10: apps.a.url: '${inputs.y}' cannot be used in an app's url; only ${env.NAME} can",
            "sop.yaml:5:10: apps.b.url: '${' is not closed by '}'*",
        ]
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
