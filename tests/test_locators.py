"""Locator refinements (index, inside, below, checked, enabled) and the text_contains/text_matches
strategies: lint, schema and dry run; on the fake driver (one XPath) and on Chromium (the page's
one script), through a real Appium server; and what a failed lookup says it found."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml
from test_bad_input import lint
from test_engine_fake import own_locks
from test_step_commands import between_screenshots, requests_of, session_of
from webpages import APPS, serving, web_config

from pytest_sop.actions import build_registry
from pytest_sop.appium_server import ManagedAppium
from pytest_sop.schema import build_schema

HEAD = "id: s\nsteps:\n"

BAD = {
    "two strategies": (
        HEAD + "  - tap: {id: a, text: b}\n",
        "s.sop.yaml:3:10: steps[0].tap: a locator has one strategy, got 2 (id, text); narrow one down with index, "
        "inside, below, checked, enabled",
    ),
    "no strategy": (
        HEAD + "  - tap: {index: 2}\n",
        "s.sop.yaml:3:10: steps[0].tap: missing the locator's strategy: one of id, accessibility_id, text, "
        "text_contains, text_matches, xpath, css, class, uiautomator",
    ),
    "unknown refinement": (
        HEAD + "  - tap: {text: Delete, indx: 1}\n",
        "s.sop.yaml:3:25: steps[0].tap.indx: unknown locator 'indx'; expected one of: id, accessibility_id, text, "
        "text_contains, text_matches, xpath, css, class, uiautomator, with refinements index, inside, below, "
        "checked, enabled (did you mean 'index'?)",
    ),
    "negative index": (
        HEAD + "  - tap: {text: Delete, index: -1}\n",
        "s.sop.yaml:3:32: steps[0].tap.index: expected a whole number from 0 (the first match), got -1",
    ),
    "index as text": (
        HEAD + "  - tap: {text: Delete, index: x}\n",
        "s.sop.yaml:3:32: steps[0].tap.index: expected a whole number from 0 (the first match), got text",
    ),
    "index as a fraction": (
        HEAD + "  - tap: {text: Delete, index: 1.5}\n",
        "s.sop.yaml:3:32: steps[0].tap.index: expected a whole number from 0 (the first match), got a number",
    ),
    "checked maybe": (
        HEAD + "  - tap: {class: done, checked: maybe}\n",
        "s.sop.yaml:3:33: steps[0].tap.checked: expected true or false, got text",
    ),
    "enabled as a number": (
        HEAD + "  - tap: {class: done, enabled: 1}\n",
        "s.sop.yaml:3:33: steps[0].tap.enabled: expected true or false, got a number",
    ),
    "bad regex": (
        HEAD + "  - tap: {text_matches: '(Delete'}\n",
        "s.sop.yaml:3:25: steps[0].tap.text_matches: not a pattern RE2 accepts: missing ): (Delete",
    ),
    "regex RE2 cannot run": (
        HEAD + "  - tap: {text_matches: '(?=x)y'}\n",
        "s.sop.yaml:3:25: steps[0].tap.text_matches: not a pattern RE2 accepts: invalid perl operator: (?= "
        "(RE2 has no lookahead or lookbehind)",
    ),
    "bad nested locator": (
        HEAD + "  - tap: {text: Delete, inside: {id: list, index: -2}}\n",
        "s.sop.yaml:3:51: steps[0].tap.inside.index: expected a whole number from 0 (the first match), got -2",
    ),
    "nested locator that is not one": (
        HEAD + "  - tap: {text: Delete, below: Bob}\n",
        "s.sop.yaml:3:32: steps[0].tap.below: expected a locator, a mapping such as {id: compose} or "
        "{text: Save, index: 1}, got text",
    ),
    "empty strategy in a refined locator": (
        HEAD + "  - tap: {text: '', index: 1}\n",
        "s.sop.yaml:3:17: steps[0].tap.text: expected the element to find, got nothing",
    ),
    "in done_when": (
        "id: s\nsteps: [back]\ndone_when:\n  - visible: {text: Saved, index: false}\n",
        "s.sop.yaml:4:35: done_when[0].visible.index: expected a whole number from 0 (the first match), got a boolean",
    ),
    "below in a container on a phone, known at lint": (
        "id: s\nrequires:\n  device: {platform: android}\nsteps:\n  - tap: {text: Delete, inside: {id: list, "
        "below: {text: Bob}}}\n",
        "s.sop.yaml:5:10: steps[0].tap: an inside: locator with below: works on web devices only, not on android: "
        "move below: out of it (requires.device.platform is android)",
    ),
    "text_matches nested, on a phone": (
        "id: s\nrequires:\n  device: {platform: fake}\nsteps: [back]\ndone_when:\n  - text: {in: {text: a, inside: "
        "{text_matches: x}}, equals: b}\n",
        "s.sop.yaml:6:16: done_when[0].text.in: text_matches locators work on web devices only, not on fake",
    ),
    "refined css on a phone": (
        "id: s\nrequires:\n  device: {platform: android}\nsteps:\n  - assert_count: {of: {css: .row, index: 1}, "
        "equals: 1}\n",
        "s.sop.yaml:5:24: steps[0].assert_count.of: a css locator cannot be refined on android",
    ),
    "in assert_text": (
        HEAD + "  - assert_text: {in: {text_contains: Total, insde: {id: cart}}, contains: '3'}\n",
        "s.sop.yaml:3:46: steps[0].assert_text.in.insde: unknown locator 'insde';",
    ),
}


@pytest.mark.parametrize("text, expected", list(BAD.values()), ids=list(BAD))
def test_bad_locators_name_file_line_column(tmp_path: Path, text: str, expected: str) -> None:
    errors = lint(tmp_path, {"s.sop.yaml": text})
    assert any(e.startswith(expected) for e in errors), errors


GOOD = """\
id: s
steps:
  - tap: {text: Delete, inside: {class: row, index: 2, inside: {id: list}}, enabled: true}
  - tap: {text_contains: Del, below: {text_matches: '^B\\w+$'}, index: 0}
  - assert_count: {of: {css: .done, checked: true}, at_least: 1}
done_when:
  - text: {in: {text_contains: Order, index: 0}, contains: placed}
"""


def test_refined_locators_pass_lint_schema_and_show_in_the_dry_run(pytester: pytest.Pytester) -> None:
    assert lint(pytester.path, {"s.sop.yaml": GOOD}) == []
    validator = jsonschema.Draft202012Validator(build_schema(build_registry()))
    assert not [e.message for e in validator.iter_errors(yaml.safe_load(GOOD))]
    for bad in ("{id: a, text: b}", "{index: 1}", "{text: a, index: -1}", "{text: a, checked: maybe}",
                "{text: a, inside: {index: 0}}", "{text: a, nearby: {id: b}}"):  # fmt: skip
        assert list(validator.iter_errors(yaml.safe_load(f"id: s\nsteps:\n  - tap: {bad}\n"))), bad
    pytester.makefile(".yaml", sop="devices:\n  - id: p\n    platform: android\n")
    (pytester.path / "s.sop.yaml").write_text(GOOD)
    result = pytester.runpytest("--sop", "--sop-dry-run")
    result.stdout.fnmatch_lines(
        [
            "*1. tap {text: Delete, inside: {class: row, index: 2, inside: {id: list}}, enabled: true}  (s.sop.yaml:3)",
            "*2. tap {text_contains: Del, index: 0, below: {text_matches: ^B\\w+$}}  (s.sop.yaml:4)",
            "*3. assert_count of={css: .done, checked: true} at_least=1  (s.sop.yaml:5)",
            "*done_when: text {text_contains: Order, index: 0} contains 'placed'",
        ]
    )


# -- the fake driver: refinements as one XPath --------------------------------------------------

FAKE_APP = """\
<?xml version="1.0" encoding="UTF-8"?>
<app width="1080" height="2400">
    <MockButton id="other_delete" text="Delete other" top="0" left="0" width="1080" height="100" />
    <MockListView id="list" top="100" left="0" width="1080" height="1000">
        <MockButton id="ghost_delete" text="Delete ghost" visible="false" />
        <MockCheckBox id="milk_done" text="Milk" checked="false" top="120" left="0" width="100" height="100" />
        <MockButton id="milk_delete" text="Delete milk" top="120" left="200" width="800" height="100" />
        <MockCheckBox id="bread_done" text="Bread" checked="true" top="240" left="0" width="100" height="100" />
        <MockButton id="bread_delete" text="Delete bread" top="240" left="200" width="800" height="100" />
        <MockButton id="tea_delete" text="Delete tea" enabled="false" top="360" left="200" width="800" height="100" />
    </MockListView>
    <MockLabel id="note" text="Order #4521 placed" top="1200" left="0" width="1080" height="100" />
</app>
"""
FAKE_CONFIG = """\
devices:
  - id: fake-phone
    platform: fake
    capabilities:
      platformName: Fake
      appium:automationName: Fake
      appium:app: {app}
"""


CLICKS = """\
from pytest_sop import ActionSpec, Param
from pytest_sop.errors import StepFailed


def clicks(ctx, of, equals):
    found = int(ctx.session.find(of).get_attribute("clicks") or 0)
    if found != equals:
        raise StepFailed(f"{of}: {found} clicks, expected {equals}")


def pytest_sop_actions():
    return [ActionSpec("clicks", "How often the fake driver's element was clicked.", "fields",
                       (Param("of", "locator"), Param("equals", "integer")), run=clicks)]
"""


def run_fake(pytester: pytest.Pytester, url: str, sops: dict[str, str]) -> pytest.RunResult:
    app = pytester.path / "rows.xml"
    app.write_text(FAKE_APP)
    pytester.makefile(".yaml", sop=FAKE_CONFIG.format(app=app))
    for name, text in sops.items():
        (pytester.path / name).write_text(text)
    return pytester.runpytest(
        "--sop", "--sop-appium", url, "--sop-evidence", "none", "-p", "no:cacheprovider", *own_locks(pytester.path)
    )


def test_refinements_on_the_fake_driver(pytester: pytest.Pytester, appium_url: str) -> None:
    """index counts the matches shown (the hidden 'ghost' is skipped), inside keeps a container's
    descendants, checked/enabled read the element's attributes, below orders the shown matches by
    their rects; what this cannot say (text_matches, below in a container, a refined css) is refused
    at its step, naming the platform."""
    # Each refined locator is tapped; the fake driver counts an element's clicks, read back by its id.
    picks = {
        "{text_contains: Delete, index: 1}": "milk_delete",
        "{text_contains: Delete, inside: {id: list}, index: 1}": "bread_delete",
        "{class: MockCheckBox, checked: true}": "bread_done",
        "{class: MockCheckBox, checked: false, inside: {id: list}}": "milk_done",
        "{text_contains: Delete, enabled: true, index: 2}": "bread_delete",
        '{xpath: "//MockButton", inside: {id: list}, index: 0}': "milk_delete",
        "{text: Delete bread, inside: {class: MockListView, index: 0}}": "bread_delete",
        # below: the shown matches' rects against the reference's bottom, nearest first
        "{class: MockCheckBox, below: {id: other_delete}}": "milk_done",
        "{class: MockCheckBox, below: {id: other_delete}, index: 1}": "bread_done",
        "{text_contains: Delete, below: {text: Milk}}": "bread_delete",
        "{text_contains: Delete, enabled: true, below: {class: MockCheckBox, below: {text: Delete other}}}": (
            "bread_delete"
        ),
    }
    counts: dict[str, int] = {}
    good = "id: good\nsteps:\n"
    for loc, el in picks.items():
        counts[el] = counts.get(el, 0) + 1
        good += f"  - tap: {loc}\n  - clicks: {{of: {{id: {el}}}, equals: {counts[el]}}}\n"
    good += """\
  - assert_visible: {text_contains: Delete, enabled: false}
  - assert_visible: {id: tea_delete, enabled: false, inside: {id: list}}
  - assert_not_visible: {id: milk_delete, enabled: false}
  - assert_not_visible: {text_contains: Delete, index: 4}
"""
    pytester.makeconftest(CLICKS)
    sops = {
        "good.sop.yaml": good,
        "below.sop.yaml": "id: below\nsteps:\n  - tap: {text: Delete milk, inside: {id: list, below: {text: Milk}}}\n",
        "regex.sop.yaml": "id: regex\nsteps:\n  - tap: {text_matches: '^Delete'}\n",
        "css.sop.yaml": "id: css\nsteps:\n  - tap: {css: '#list', index: 0}\n",
        "hidden.sop.yaml": "id: hidden\nsteps:\n  - wait_for: {text: Delete ghost, inside: {id: list}}\n    timeout: 0.3\n",
        "index.sop.yaml": "id: index\nsteps:\n  - tap: {text_contains: Delete, index: 7}\n    timeout: 0.3\n",
    }
    result = run_fake(pytester, appium_url, sops)
    result.assert_outcomes(passed=1, failed=5)
    result.stdout.fnmatch_lines(["*an inside: locator with below: works on web devices only, not on fake*"])
    result.stdout.fnmatch_lines(["*text_matches locators work on web devices only, not on fake: use text_contains*"])
    result.stdout.fnmatch_lines(["*a css locator cannot be refined on fake (index, inside, below, checked, enabled)*"])
    result.stdout.fnmatch_lines(["{text: Delete ghost, inside: {id: list}} is present but hidden after *s"])
    result.stdout.fnmatch_lines(
        ["{text_contains: Delete, index: 7} is not found (4 matches shown, index 7 asked) after *s"]
    )


# -- Chromium: refinements in the page's one script ---------------------------------------------

ROWS = """\
id: rows
app: page
steps:
  - launch_app
  - tap: {text: Delete, inside: {id: list}}
  - assert_text: {in: {id: log}, equals: delete Milk}
  - tap: {text: Delete, index: 2}
  - assert_text: {in: {id: log}, equals: delete Bread}
  - tap: {text: Delete, below: {text: Bread}}
  - assert_text: {in: {id: log}, equals: delete Eggs}
  - tap: {text: Delete, inside: {class: row, index: 0}}
  - assert_text: {in: {id: log}, equals: delete Milk}
  - tap: {text_matches: '^Del.te$', inside: {id: list}, index: 1}
  - assert_text: {in: {id: log}, equals: delete Bread}
  - tap: {text: Delete, below: {text: Milk}, index: 1}
  - assert_text: {in: {id: log}, equals: delete Eggs}
  - tap: {css: .done, checked: false}
  - assert_visible: {css: .done, checked: false, below: {text: Bread}}
  - assert_visible: {text: Delete, enabled: false}
  - assert_visible: {text: Delete, enabled: false, inside: {id: tea}}
  - assert_not_visible: {text: Delete, enabled: false, inside: {id: other}}
  - assert_not_visible: {css: .done, checked: false, inside: {class: row, index: 0}}
  - assert_visible: {text_contains: "#4521"}
  - assert_text: {in: {text_matches: '^Order #\\d+ placed$'}, equals: 'Order #4521 placed'}
  - assert_not_visible: {text_matches: '^Order #\\d+$'}
  - assert_not_visible: {text: Delete, index: 5}
  - screenshot: start
  - assert_visible: {text: Delete, inside: {id: list}, index: 1}
  - screenshot: plain regex
  - assert_visible: {text_matches: '^Eggs$'}
  - screenshot: end
"""
FAILS = {
    "off-screen.sop.yaml": "id: off-screen\napp: page\nsteps:\n  - launch_app\n  - wait_for: {text: Far away}\n"
    "    timeout: 0.5\n",
    "hidden.sop.yaml": "id: hidden\napp: page\nsteps:\n  - launch_app\n  - assert_visible: {text: Ghost, inside: "
    "{id: list}}\n    timeout: 0.5\n",
    "missing.sop.yaml": "id: missing\napp: page\nsteps:\n  - launch_app\n  - tap: {text: Delete, inside: {id: list}, "
    "index: 9}\n    timeout: 0.5\n",
    "slow-read.sop.yaml": "id: slow-read\napp: page\nsteps:\n  - launch_app\n  - assert_text: {in: {id: hiddenp}, "
    "equals: x}\n    timeout: 1\n",
}


@pytest.mark.appium
def test_refinements_on_chromium(pytester: pytest.Pytester, appium_url: str, appium_server: ManagedAppium) -> None:
    """Each refinement picks the element a person means (the log line says which Delete was tapped); a
    refined lookup is still one script; a failure tells off screen from hidden from not found, with
    the time it waited."""
    www = pytester.path / "www"
    www.mkdir()
    shutil.copy(APPS / "rows.html", www / "index.html")
    with serving(www) as base:
        pytester.makefile(".yaml", sop=web_config(base + "index.html"))
        (pytester.path / "rows.sop.yaml").write_text(ROWS)
        for name, text in FAILS.items():
            (pytester.path / name).write_text(text)
        audit = pytester.path / "audit.jsonl"
        result = pytester.runpytest(
            "--sop", "--sop-appium", appium_url, "--sop-session", "worker", "--sop-evidence", "none",
            f"--sop-audit={audit}", "-p", "no:cacheprovider", "-k", "rows or off-screen or hidden or missing or slow",
            *own_locks(pytester.path),
        )  # fmt: skip
    result.assert_outcomes(passed=1, failed=4)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "{text: Far away} is off screen (shown, but outside the viewport) after *s",
            "  expected: * visible",
            "  found:    visible texts: 'nothing yet', 'Delete', 'Milk', *'Jump'",  # what is on screen, not 'Far away'
        ]
    )
    result.stdout.fnmatch_lines(["{text: Ghost, inside: {id: list}} is present but hidden after *s"])
    result.stdout.fnmatch_lines(
        ["{text: Delete, index: 9, inside: {id: list}} is not found (4 matches shown, index 9 asked) after *s"]
    )
    # assert_text polled its whole timeout before saying why: the time it says is the time it waited.
    # (The message shows twice when CI is set: pytest's short summary then keeps every line.)
    waited = set(re.findall(r"\{id: hiddenp\} is present but hidden after (\d+\.\d)s", out))
    assert len(waited) == 1 and float(waited.pop()) >= 1.0, out
    assert appium_server.log_path is not None
    groups = between_screenshots(requests_of(appium_server.log_path, session_of(audit)))
    assert groups == [["POST /execute/sync"], ["POST /execute/sync", "POST /execute/sync"]]
