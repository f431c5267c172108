"""Gestures on the demo app in Chromium (mobile emulation) through a real Appium server: the page
really sees a double tap, a long press, a swipe on a row and a drag; a tap lands on the element's
centre, and a tap another element would receive fails naming it. Also reload and eval_js; and the
fake driver, which takes W3C pointer actions (and logs them) but whose app does not react to them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_bad_input import lint
from test_engine_fake import own_locks
from test_example_suite import CHROMIUM_CONFIG, SIGN_IN, demo  # noqa: F401  (demo: the fixture)
from test_step_commands import APP, FAKE_CONFIG

from pytest_sop.demo import DemoServer
from pytest_sop.demo.store import SEED_TASKS

# Signed in and on the feed: a step that opens a URL at once would race the sign-in's own navigation.
SIGNED_IN = SIGN_IN + "  - wait_for: {id: whoami}\n"

HEAD = "app: snapgram\nrequires:\n  account: {}\n"
GESTURES = (
    "id: gestures\n"
    + HEAD
    + """\
allowed_actions: [launch_app, type, tap, open_url, double_tap, long_press, swipe, drag, hide_keyboard, reload,
  eval_js, press_key, clear, save_text, wait_for, assert_text, assert_visible, assert_not_visible]
steps:
"""
    + SIGNED_IN
    + f"""\
  - open_url: /tasks
  - double_tap: {{id: task-1-title}}
  - type: {{into: {{id: task-edit}}, text: Call the printer}}
  - assert_text: {{in: {{id: task-edit}}, equals: Call the printer}}
  - type: {{into: {{id: task-edit}}, text: " today", clear: false}}
  - save_text: {{from: {{id: task-edit}}, as: typed}}
  - hide_keyboard
  - assert_text: {{in: {{id: tasks-status}}, equals: "Saved: Call the printer today"}}
  - reload
  - assert_text: {{in: {{id: task-1-title}}, equals: "${{vars.typed}}"}}
  - long_press: {{id: task-2-title}}
  - assert_text: {{in: {{id: tasks-status}}, equals: "Held: {SEED_TASKS[1]}"}}
  - assert_visible: {{id: task-2-delete}}
  - swipe: {{direction: left, at: {{id: task-3}}}}
  - assert_text: {{in: {{id: tasks-status}}, equals: "Swiped: {SEED_TASKS[2]}"}}
  - assert_visible: {{id: task-3-delete}}
  - long_press: {{at: {{id: task-4-title}}, seconds: 0.1}}
  - assert_text: {{in: {{id: tasks-status}}, equals: "Opened: {SEED_TASKS[3]}"}}
  - assert_not_visible: {{id: task-4-delete}}
  - drag: {{from: {{id: task-5-handle}}, to: {{id: task-1-handle}}}}
  - assert_text: {{in: {{id: tasks-status}}, equals: "Moved: {SEED_TASKS[4]}"}}
  - assert_text: {{in: {{css: "#tasks > li:first-child .task-title"}}, equals: "{SEED_TASKS[4]}"}}
  - tap: {{id: task-2-done}}
  - assert_text: {{in: {{id: tasks-status}}, equals: "Done: {SEED_TASKS[1]}"}}
  - eval_js: "return Array.from(document.querySelectorAll('#tasks .task-done'), (box) => box.checked)"
  - eval_js: "return 'pw=' + '${{account.password}}'"
  - tap: {{id: task-2-delete}}
  - assert_text: {{in: {{id: tasks-status}}, equals: "Deleted: {SEED_TASKS[1]}"}}
  - double_tap: {{id: task-3-title}}
  - clear: {{id: task-edit}}
  - assert_visible: {{id: task-edit}}
  - type: {{into: {{id: task-edit}}, text: Kept}}
  - press_key: ENTER
  - assert_text: {{in: {{id: task-3-title}}, equals: Kept}}
  - open_url: /settings
  - tap: {{css: "#language option[value=de]"}}
  - assert_text: {{in: {{id: language}}, equals: Deutsch}}
  - open_url: /tasks/classic
  - tap: {{id: cookie-ok}}
  - tap: {{id: classic-home}}
  - assert_visible: {{id: compose}}
"""
)
FAILING = {
    # The cookie banner lies over the side column's link: the tap would land on the banner.
    "covered.sop.yaml": "id: covered\n"
    + HEAD
    + "steps:\n"
    + SIGNED_IN
    + """\
  - open_url: /tasks/classic
  - tap: {id: classic-home}
    timeout: 1
""",
    "keyless.sop.yaml": "id: keyless\n" + HEAD + "steps:\n" + SIGNED_IN + "  - press_key: KEYCODE_DPAD_CENTER\n",
}


def attachments(steps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for step in steps:
        yield from step.get("attachments", [])
        yield from attachments(step.get("steps", []))


@pytest.mark.appium
def test_gestures_on_chromium(pytester: pytest.Pytester, appium_url: str, demo: DemoServer) -> None:  # noqa: F811
    pytester.makefile(".yaml", sop=CHROMIUM_CONFIG.format(url=demo.url))
    (pytester.path / "gestures.sop.yaml").write_text(GESTURES)
    for name, text in FAILING.items():
        (pytester.path / name).write_text(text)
    allure = pytester.path / "allure"
    result = pytester.runpytest(
        "--sop", "--sop-appium", appium_url, "--sop-session", "worker", "--sop-evidence", "none",
        "--alluredir", str(allure), "-p", "no:cacheprovider", "-v", *own_locks(pytester.path),
    )  # fmt: skip
    result.stdout.fnmatch_lines(["gestures.sop.yaml::gestures PASSED*"])
    result.stdout.fnmatch_lines(
        [
            "covered.sop.yaml:12: tap failed in SOP 'covered'",
            "{id: classic-home} would not get the tap after 1s: another element would receive it: "
            'div#cookie-banner "We use cookies to remember you. OK"',
            "  expected: {id: classic-home} receives the tap",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*a web page has no key 'KEYCODE_DPAD_CENTER'; it has: BACK, ENTER, TAB, DELETE, BACKSPACE, *"]
    )
    result.assert_outcomes(passed=1, failed=2)
    (gestures,) = [
        r for p in allure.glob("*-result.json") for r in [json.loads(p.read_text())] if r["name"] == "gestures"
    ]
    results = [
        (allure / a["source"]).read_text() for a in attachments(gestures["steps"]) if a["name"] == "eval_js result"
    ]
    # The order after the drag is 5, 1, 2, 3, 4, and only task 2 is ticked; the secret is masked.
    assert [json.loads(r) for r in results] == [[False, False, True, False, False], "pw=***"]
    assert not [p for p in allure.iterdir() if "s3cret-canary-77" in p.read_text(errors="replace")]


# -- the fake driver: W3C pointer actions at the element's centre, which it logs -------------------

RECORD_ACTIONS = """\
import json
from pytest_sop import ActionSpec, Param


def record_actions(ctx, path):
    with open(path, "w") as f:
        json.dump(ctx.session.driver.get_log("actions"), f)


def pytest_sop_actions():
    return [ActionSpec("record_actions", "The fake driver's log of pointer actions, to a file.", "value",
                       (Param("path", "text"),), run=record_actions)]
"""
FAKE_STEPS = """\
id: fake-gestures
steps:
  - double_tap: {id: login_button}
  - long_press: {at: {id: help_button}, seconds: 0.3}
  - swipe: {direction: left, at: {id: list}}
  - drag: {from: {id: login_button}, to: {id: status_label}}
  - type: {into: {id: username}, text: ali}
  - type: {into: {id: username}, text: ce, clear: false}
  - assert_text: {in: {id: username}, equals: alice}
  - record_actions: actions.json
"""
FAKE_UNSUPPORTED = {
    name: f"id: {name.replace('_', '-')}\nallowed_actions: [{name}]\nsteps:\n  - {step}\n"
    for name, step in {
        "hide_keyboard": "hide_keyboard",
        "reload": "reload",
        "eval_js": "eval_js: return 1",
        "press_key": "press_key: ENTER",
    }.items()
}


def pointer_moves(source: dict[str, Any]) -> list[tuple[int, int]]:
    return [(a["x"], a["y"]) for a in source["actions"] if a["type"] == "pointerMove"]


def test_gestures_on_the_fake_driver(pytester: pytest.Pytester, appium_url: str) -> None:
    """Pointer actions at the centre of each element's rect (fake_app.xml gives them); what a gesture
    the fake driver lacks says so by name; typing with clear: false appends."""
    pytester.makefile(".yaml", sop=FAKE_CONFIG.format(app=APP))
    pytester.makeconftest(RECORD_ACTIONS)
    (pytester.path / "fake.sop.yaml").write_text(FAKE_STEPS)
    for name, text in FAKE_UNSUPPORTED.items():
        (pytester.path / f"{name}.sop.yaml").write_text(text)
    result = pytester.runpytest(
        "--sop", "--sop-appium", appium_url, "--sop-session", "worker", "-p", "no:cacheprovider", *own_locks(pytester.path)
    )
    result.stdout.fnmatch_lines(["*hide_keyboard is not available on the fake driver*"])
    result.stdout.fnmatch_lines(["*reload is not available on the fake driver*"])
    result.stdout.fnmatch_lines(["*eval_js runs in web pages only, not on the fake driver*"])
    result.stdout.fnmatch_lines(["*press_key is not available on the fake driver*"])
    result.assert_outcomes(passed=1, failed=4)
    sources = [s for batch in json.loads((pytester.path / "actions.json").read_text()) for s in batch]
    assert [s["parameters"]["pointerType"] for s in sources] == ["touch"] * 4
    double, long, swipe, drag = sources
    # login_button: left 40, top 460, 1000 x 120; help_button: top 600; list: 0, 900, 1080 x 1000.
    assert pointer_moves(double) == [(540, 520)]
    assert [a["type"] for a in double["actions"]].count("pointerDown") == 2
    assert pointer_moves(long) == [(540, 660)]
    assert {"type": "pause", "duration": 300} in long["actions"]
    assert pointer_moves(swipe) == [(540, 1400), (540 - 432, 1400)]
    # From login_button to status_label (top 760, height 80), in four moves.
    assert pointer_moves(drag)[0] == (540, 520) and pointer_moves(drag)[-1] == (540, 800)


# -- bad forms: FILE:LINE:COLUMN, the field, what was expected --------------------------------------

BAD_GESTURES = {
    "double_tap without a locator": (
        "  - double_tap\n",
        "s.sop.yaml:3:5: steps[0]: double_tap needs a locator such as {id: compose}",
    ),
    "long_press bare": (
        "  - long_press\n",
        "s.sop.yaml:3:5: steps[0]: long_press needs a locator such as {id: compose}, or {at: ..., seconds: ...}",
    ),
    "long_press seconds without at": (
        "  - long_press: {seconds: 2}\n",
        "s.sop.yaml:3:17: steps[0].long_press: missing required key 'at'",
    ),
    "long_press negative seconds": (
        "  - long_press: {at: {id: x}, seconds: -1}\n",
        "s.sop.yaml:3:40: steps[0].long_press.seconds: expected at least 0, got -1",
    ),
    "long_press over an hour": (
        "  - long_press: {at: {id: x}, seconds: 7200}\n",
        "s.sop.yaml:3:40: steps[0].long_press.seconds: expected at most 3600 (seconds), got 7200",
    ),
    "long_press with a misspelt locator": (
        "  - long_press: {idd: x}\n",
        "s.sop.yaml:3:18: steps[0].long_press.idd: unknown locator 'idd'; expected one of: id, accessibility_id, "
        "text, text_contains, text_matches, xpath, css, class, uiautomator, with refinements index, inside, below, "
        "checked, enabled (did you mean 'id'?)",
    ),
    "long_press with a misspelt field": (
        "  - long_press: {att: {id: x}}\n",
        "s.sop.yaml:3:18: steps[0].long_press.att: unknown key 'att'; expected one of: at, seconds (did you mean 'at'?)",
    ),
    "drag without to": (
        "  - drag: {from: {id: a}}\n",
        "s.sop.yaml:3:11: steps[0].drag: missing required key 'to'",
    ),
    "drag onto text": (
        "  - drag: {from: {id: a}, to: b}\n",
        "s.sop.yaml:3:31: steps[0].drag.to: expected a locator, a mapping such as {id: compose} or "
        "{text: Save, index: 1}, got text",
    ),
    "swipe at without direction": (
        "  - swipe: {at: {id: row}}\n",
        "s.sop.yaml:3:12: steps[0].swipe: missing required key 'direction'",
    ),
    "swipe at two keys": (
        "  - swipe: {direction: left, at: {id: row, css: .x}}\n",
        "s.sop.yaml:3:34: steps[0].swipe.at: a locator has one strategy, got 2 (id, css); narrow one down with "
        "index, inside, below, checked, enabled",
    ),
    "hide_keyboard with a value": (
        "  - hide_keyboard: {id: x}\n",
        "s.sop.yaml:3:20: steps[0].hide_keyboard: hide_keyboard takes no parameters, got a mapping",
    ),
    "reload with a value": (
        "  - reload: now\n",
        "s.sop.yaml:3:13: steps[0].reload: reload takes no parameters, got text",
    ),
    "eval_js without allowed_actions": (
        "  - eval_js: return 1\n",
        "s.sop.yaml:3:5: steps[0].eval_js: action 'eval_js' runs only in a SOP whose allowed_actions names it: "
        "add allowed_actions listing 'eval_js' and the SOP's other actions",
    ),
    "eval_js in on_failure without allowed_actions": (
        "  - back\non_failure:\n  - eval_js: return 1\n",
        "s.sop.yaml:5:5: on_failure[0].eval_js: action 'eval_js' runs only in a SOP whose allowed_actions names "
        "it: add allowed_actions listing 'eval_js' and the SOP's other actions",
    ),
}


@pytest.mark.parametrize(("steps", "expected"), BAD_GESTURES.values(), ids=BAD_GESTURES)
def test_bad_gesture_forms_name_file_line_column(tmp_path: Path, steps: str, expected: str) -> None:
    assert lint(tmp_path, {"s.sop.yaml": "id: s\nsteps:\n" + steps}) == [expected]


def test_eval_js_only_where_allowed_actions_names_it(tmp_path: Path) -> None:
    listed = "id: s\nallowed_actions: [eval_js]\nsteps:\n  - eval_js: return document.title\n"
    not_listed = "id: t\nallowed_actions: [back]\nsteps:\n  - eval_js: return 1\n"
    assert lint(tmp_path, {"s.sop.yaml": listed, "t.sop.yaml": not_listed}) == [
        "t.sop.yaml:4:5: steps[0].eval_js: action 'eval_js' is not in allowed_actions (back)"
    ]


def test_a_flow_may_not_smuggle_eval_js_into_a_sop_that_does_not_allow_it(tmp_path: Path) -> None:
    """eval_js in a SOP another one runs: the caller's allowed_actions must name it too."""
    inner = "id: inner\nallowed_actions: [eval_js]\nsteps:\n  - eval_js: return 1\n"
    outer = "id: outer\nallowed_actions: [run, back]\nsteps:\n  - run: inner\n"
    assert lint(tmp_path, {"inner.sop.yaml": inner, "outer.sop.yaml": outer}) == [
        "outer.sop.yaml:4:10: steps[0].run: runs 'inner' whose step 'eval_js' (inner.sop.yaml:4) is not in allowed_actions"
    ]
