"""Three things that gave wrong results without a word, reproduced on the demo app in Chromium (mobile
emulation, through a real Appium server), and what text fields do now: what a person sees is what is
read, typing keeps the field's focus (and may append), press_key names are checked before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_bad_input import lint
from test_engine_fake import own_locks
from test_example_suite import CHROMIUM_CONFIG, SIGN_IN, demo  # noqa: F401  (demo: the fixture)

from pytest_sop.demo import DemoServer
from pytest_sop.demo.store import SEED_TASKS

# Signed in and on the feed: a step that opens a URL at once would race the sign-in's own navigation.
SIGNED_IN = SIGN_IN + "  - wait_for: {id: whoami}\n"

HEAD = "app: snapgram\nrequires:\n  account: {}\nsteps:\n" + SIGNED_IN
# Written in the language of the first release, so that each also runs on the code before the fix.
SILENT = {
    # An inline editor that saves when its field loses the focus: clearing the field must not blur it
    # (WebDriver's Element Clear does: the row was saved empty, so deleted, before a key was typed).
    "editor.sop.yaml": "id: editor\n"
    + HEAD
    + """\
  - open_url: /tasks?edit=1
  - wait_for: {id: task-edit}
  - type: {into: {id: task-edit}, text: Renamed by typing}
  - press_key: ENTER
  - assert_text: {in: {id: tasks-status}, equals: "Saved: Renamed by typing"}
    timeout: 5
  - assert_text: {in: {id: task-1-title}, equals: Renamed by typing}
""",
    # What a select shows is its chosen option, not every option's text (`contains: Deutsch` passed).
    "select.sop.yaml": "id: select\n"
    + HEAD
    + """\
  - open_url: /settings
  - assert_text: {in: {id: language}, equals: English}
    timeout: 1
""",
    # A page without a viewport meta tag: tapping a wide row's text opens the row; the tap used to land
    # beside the centre, on the row's checkbox, which got ticked.
    "classic.sop.yaml": "id: classic\n"
    + HEAD
    + f"""\
  - open_url: /tasks/classic
  - tap: {{text: "{SEED_TASKS[1]}"}}
  - assert_text: {{in: {{id: tasks-status}}, equals: "Opened: {SEED_TASKS[1]}"}}
    timeout: 2
""",
    # An input's value is what the person sees: equals "" on a field they typed into fails.
    "typed.sop.yaml": "id: typed\n"
    + HEAD
    + """\
  - open_url: /compose
  - type: {into: {id: caption}, text: Something typed}
  - assert_text: {in: {id: caption}, equals: ""}
    timeout: 0.5
""",
}


def run(pytester: pytest.Pytester, appium_url: str, demo: DemoServer, sops: dict[str, str]) -> pytest.RunResult:  # noqa: F811
    pytester.makefile(".yaml", sop=CHROMIUM_CONFIG.format(url=demo.url))
    for name, text in sops.items():
        (pytester.path / name).write_text(text)
    return pytester.runpytest(
        "--sop", "--sop-appium", appium_url, "--sop-session", "worker", "--sop-evidence", "none",
        "--alluredir", str(pytester.path / "allure"), "-p", "no:cacheprovider", "-v", *own_locks(pytester.path),
    )  # fmt: skip


@pytest.mark.appium
def test_silent_wrong_results_on_the_demo_app(pytester: pytest.Pytester, appium_url: str, demo: DemoServer) -> None:  # noqa: F811
    result = run(pytester, appium_url, demo, SILENT)
    for line in ("editor.sop.yaml::editor PASSED*", "select.sop.yaml::select PASSED*",
                 "classic.sop.yaml::classic PASSED*", "typed.sop.yaml::typed FAILED*"):  # fmt: skip
        result.stdout.fnmatch_lines([line])
    result.stdout.fnmatch_lines(["text of {id: caption}: expected it to equal '', found 'Something typed'"])
    result.assert_outcomes(passed=3, failed=1)


# -- press_key names and type's clear, checked before anything runs --------------------------------

KNOWN = (
    "ENTER, TAB, DELETE, BACKSPACE, SPACE, ESCAPE, HOME, END, UP, DOWN, LEFT, RIGHT, PAGE_UP, PAGE_DOWN, "
    "BACK, SEARCH, MENU, VOLUME_UP, VOLUME_DOWN, APP_SWITCH, or an Android KEYCODE_* name such as KEYCODE_DPAD_CENTER"
)
BAD_KEYS = {
    "a key combination": (
        "  - press_key: CTRL+A\n",
        f"s.sop.yaml:3:16: steps[0].press_key: unknown key 'CTRL+A'; expected one of: {KNOWN} "
        "(one key per step: combinations such as CTRL+A are not supported)",
    ),
    "a misspelt key": (
        "  - press_key: ENTRE\n",
        f"s.sop.yaml:3:16: steps[0].press_key: unknown key 'ENTRE'; expected one of: {KNOWN} (did you mean 'ENTER'?)",
    ),
    "an Android key code that does not exist": (
        "  - press_key: KEYCODE_WARP\n",
        f"s.sop.yaml:3:16: steps[0].press_key: unknown key 'KEYCODE_WARP'; expected one of: {KNOWN}",
    ),
    "a template": (
        '  - press_key: "${vars.key}"\n',
        f"s.sop.yaml:3:16: steps[0].press_key: unknown key '${{vars.key}}'; expected one of: {KNOWN}",
    ),
    "clear that is not a boolean": (
        "  - type: {into: {id: x}, text: hi, clear: maybe}\n",
        "s.sop.yaml:3:44: steps[0].type.clear: expected true or false, got text",
    ),
}


@pytest.mark.parametrize(("steps", "expected"), BAD_KEYS.values(), ids=BAD_KEYS)
def test_bad_keys_name_file_line_column_and_the_known_keys(tmp_path: Path, steps: str, expected: str) -> None:
    assert lint(tmp_path, {"s.sop.yaml": "id: s\nsteps:\n" + steps}) == [expected]


def test_known_keys_pass_lint_in_any_case(tmp_path: Path) -> None:
    keys = ["ENTER", "enter", "Tab", "BACKSPACE", "DELETE", "END", "PAGE_DOWN", "BACK", "KEYCODE_DPAD_CENTER"]
    steps = "".join(f"  - press_key: {k}\n" for k in keys) + "  - type: {into: {id: x}, text: y, clear: false}\n"
    assert lint(tmp_path, {"s.sop.yaml": "id: s\nsteps:\n" + steps}) == []
