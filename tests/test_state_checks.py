"""assert_count, assert_state and assert_url: on Chromium and the fake driver through a real Appium
server, with what a failure says it found; lint of their bad forms."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_bad_input import lint
from test_engine_fake import own_locks
from test_locators import run_fake
from webpages import APPS, serving, web_config

HEAD = "id: s\nsteps:\n"
BAD = {
    "count without a bound": (
        HEAD + "  - assert_count: {of: {class: row}}\n",
        "s.sop.yaml:3:19: steps[0].assert_count: expected exactly one of equals, at_least, at_most, got 0",
    ),
    "count with two bounds": (
        HEAD + "  - assert_count: {of: {class: row}, at_least: 1, at_most: 3}\n",
        "s.sop.yaml:3:19: steps[0].assert_count: expected exactly one of equals, at_least, at_most, got 2",
    ),
    "negative count": (
        HEAD + "  - assert_count: {of: {class: row}, equals: -1}\n",
        "s.sop.yaml:3:46: steps[0].assert_count.equals: expected at least 0, got -1",
    ),
    "count as text": (
        HEAD + "  - assert_count: {of: {class: row}, at_least: two}\n",
        "s.sop.yaml:3:48: steps[0].assert_count.at_least: expected a whole number, got text",
    ),
    "count of a bad locator": (
        HEAD + "  - assert_count: {of: {class: row, index: -1}, equals: 1}\n",
        "s.sop.yaml:3:44: steps[0].assert_count.of.index: expected a whole number from 0 (the first match), got -1",
    ),
    "state without a state": (
        HEAD + "  - assert_state: {of: {id: x}}\n",
        "s.sop.yaml:3:19: steps[0].assert_state: expected at least one of checked, enabled, selected, focused, "
        "got none",
    ),
    "unknown state": (
        HEAD + "  - assert_state: {of: {id: x}, chekced: true}\n",
        "s.sop.yaml:3:33: steps[0].assert_state.chekced: unknown key 'chekced'; expected one of: of, checked, "
        "enabled, selected, focused (did you mean 'checked'?)",
    ),
    "state maybe": (
        HEAD + "  - assert_state: {of: {id: x}, enabled: maybe}\n",
        "s.sop.yaml:3:42: steps[0].assert_state.enabled: expected true or false, got text",
    ),
    "url with two matches": (
        HEAD + "  - assert_url: {equals: /a, contains: b}\n",
        "s.sop.yaml:3:17: steps[0].assert_url: expected exactly one of equals, contains, matches, got 2",
    ),
    "url pattern RE2 refuses": (
        HEAD + "  - assert_url: {matches: '(?=x)'}\n",
        "s.sop.yaml:3:27: steps[0].assert_url.matches: not a pattern RE2 accepts: invalid perl operator: (?= "
        "(RE2 has no lookahead or lookbehind)",
    ),
    "url on a phone": (
        "id: s\nrequires:\n  device: {platform: android}\nsteps:\n  - assert_url: {contains: x}\n",
        "s.sop.yaml:5:17: steps[0].assert_url: assert_url works on web devices only; this SOP requires platform android",
    ),
    "not in allowed_actions": (
        "id: s\nallowed_actions: [tap]\nsteps:\n  - assert_count: {of: {id: x}, equals: 1}\n",
        "s.sop.yaml:4:5: steps[0].assert_count: action 'assert_count' is not in allowed_actions (tap)",
    ),
}


@pytest.mark.parametrize("text, expected", list(BAD.values()), ids=list(BAD))
def test_bad_state_checks_name_file_line_column(tmp_path: Path, text: str, expected: str) -> None:
    errors = lint(tmp_path, {"s.sop.yaml": text})
    assert any(e.startswith(expected) for e in errors), errors


def test_state_checks_on_the_fake_driver(pytester: pytest.Pytester, appium_url: str) -> None:
    """Counts and enabled/selected work on the fake driver; what it cannot say is refused by name."""
    good = """\
id: good
steps:
  - assert_count: {of: {text_contains: Delete}, equals: 4}
  - assert_count: {of: {text_contains: Delete, inside: {id: list}}, at_least: 3}
  - assert_count: {of: {class: MockCheckBox, checked: true}, at_most: 1}
  - assert_state: {of: {id: tea_delete}, enabled: false}
  - assert_state: {of: {id: milk_delete}, enabled: true, selected: false}
"""
    sops = {
        "good.sop.yaml": good,
        "count.sop.yaml": "id: count\nsteps:\n  - assert_count: {of: {text_contains: Delete}, at_most: 2}\n"
        "    timeout: 0.3\n",
        "checked.sop.yaml": "id: checked\nsteps:\n  - assert_state: {of: {id: milk_done}, checked: false}\n",
        "url.sop.yaml": "id: url\nsteps:\n  - assert_url: {contains: x}\n",
    }
    result = run_fake(pytester, appium_url, sops)
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines(["count of {text_contains: Delete}: expected at most 2 visible, found 4 after *s"])
    result.stdout.fnmatch_lines(["the fake driver does not report whether an element is checked"])
    result.stdout.fnmatch_lines(["assert_url works on web devices only, not on fake"])


GOOD = """\
id: good
app: page
steps:
  - launch_app
  - assert_state: {of: {id: search}, focused: true, enabled: true}
  - assert_state: {of: {id: tab2}, selected: true}
  - assert_state: {of: {id: tab1}, selected: false, focused: false}
  - assert_state: {of: {css: .done, index: 1}, checked: true, enabled: true}
  - assert_state: {of: {text: Delete, inside: {id: tea}}, enabled: false}
  - assert_count: {of: {class: row}, equals: 4}
  - assert_count: {of: {text: Delete}, at_least: 5}
  - assert_count: {of: {text: Delete}, at_most: 5}
  - assert_count: {of: {id: far}, equals: 0}
  - assert_count: {of: {css: .done, checked: true}, equals: 1}
  - tap: {css: .done, index: 0}
  - assert_state: {of: {css: .done, index: 0}, checked: true}
  - assert_count: {of: {css: .done, checked: true}, equals: 2}
  - tap: {id: grow}
  - assert_count: {of: {class: row}, equals: 5}
  - assert_url: {equals: index.html}
  - assert_url: {contains: /index.html}
  - assert_url: {matches: '^http://127\\.0\\.0\\.1:\\d+/index\\.html$'}
  - tap: {id: jump}
  - assert_url: {equals: 'index.html#done'}
"""
FAILS = {
    "count.sop.yaml": "id: count\napp: page\nsteps:\n  - launch_app\n  - assert_count: {of: {class: row}, equals: 7}\n"
    "    timeout: 0.5\n",
    "state.sop.yaml": "id: state\napp: page\nsteps:\n  - launch_app\n  - assert_state: {of: {text: Delete, inside: "
    "{id: tea}}, enabled: true, checked: false}\n    timeout: 0.5\n",
    "state-off-screen.sop.yaml": "id: state-off-screen\napp: page\nsteps:\n  - launch_app\n  - assert_state: "
    "{of: {id: far}, enabled: true}\n    timeout: 0.3\n",
    "url.sop.yaml": "id: url\napp: page\nsteps:\n  - launch_app\n  - assert_url: {equals: /elsewhere}\n"
    "    timeout: 0.3\n",
}


@pytest.mark.appium
def test_state_checks_on_chromium(pytester: pytest.Pytester, appium_url: str) -> None:
    """Counts are of matches on screen and wait for the count to hold (a row added a second later);
    states are the element's (checked, enabled, selected, focused); the URL is the page's, a relative
    one joined to the app's url; each failure says what it found."""
    www = pytester.path / "www"
    www.mkdir()
    shutil.copy(APPS / "rows.html", www / "index.html")
    with serving(www) as base:
        pytester.makefile(".yaml", sop=web_config(base + "index.html"))
        (pytester.path / "good.sop.yaml").write_text(GOOD)
        for name, text in FAILS.items():
            (pytester.path / name).write_text(text)
        result = pytester.runpytest(
            "--sop", "--sop-appium", appium_url, "--sop-session", "worker", "--sop-evidence", "none",
            "-p", "no:cacheprovider", *own_locks(pytester.path),
        )  # fmt: skip
    result.assert_outcomes(passed=1, failed=4)
    result.stdout.fnmatch_lines(["count of {class: row}: expected exactly 7 visible, found 4 after *s"])
    result.stdout.fnmatch_lines(
        [
            "state of {text: Delete, inside: {id: tea}}: expected checked: false, enabled: true, found "
            "checked: false, enabled: false after *s"
        ]
    )
    result.stdout.fnmatch_lines(["{id: far} is off screen (shown, but outside the viewport) after *s"])
    result.stdout.fnmatch_lines(
        ["URL: expected it to equal '/elsewhere', found 'http://127.0.0.1:*/index.html' after *s"]
    )
