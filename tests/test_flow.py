"""repeat, when:, xfail and the lint of every new shape. Cases run through a real Appium 3 server
(fake driver); what Allure records is read from the allure-results JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_sop.actions import build_registry
from pytest_sop.suite import Suite
from pytest_sop.suiteconfig import load_config
from tests.test_engine_fake import FAKE_CONFIG, allure_results, run_sop


def tree(steps: list[dict[str, Any]], depth: int = 0) -> list[str]:
    """Allure steps as indented `name: status` lines."""
    out: list[str] = []
    for s in steps:
        out.append("  " * depth + f"{s['name']}: {s['status']}")
        out += tree(s.get("steps", []), depth + 1)
    return out


def the_result(pytester: pytest.Pytester) -> dict[str, Any]:
    (res,) = allure_results(pytester.path / "allure")
    return res


# -- repeat ---------------------------------------------------------------------------------------

TYPE_ONE_MORE = """\
      - save_text: {from: {id: username}, as: typed}
      - type: {into: {id: username}, text: "${vars.typed}a"}
"""


def test_repeat_times_runs_its_steps_each_time_one_allure_step_per_iteration(
    pytester: pytest.Pytester, appium_url: str
) -> None:
    sop = "id: r\nsteps:\n  - repeat:\n      times: 3\n      steps:\n" + TYPE_ONE_MORE.replace("      ", "        ")
    sop += "  - assert_text: {in: {id: username}, equals: aaa}\n"
    run_sop(pytester, appium_url, {"r.sop.yaml": sop}).assert_outcomes(passed=1)
    lines = tree(the_result(pytester)["steps"])
    assert lines[:4] == [
        "repeat times=3: passed",
        "  iteration 1 of 3: passed",
        "    save_text from={id: username} as=typed: passed",
        "    type into={id: username} text='a': passed",
    ]
    assert [line.strip() for line in lines if "iteration" in line] == [f"iteration {i} of 3: passed" for i in (1, 2, 3)]
    assert lines[-1] == "assert_text in={id: username} equals='aaa': passed"


def while_sop(most: int) -> str:
    return (
        "id: w\nsteps:\n  - repeat:\n      while: {text: {in: {id: username}, matches: '^a{0,2}$'}}\n"
        f"      max: {most}\n      steps:\n" + TYPE_ONE_MORE.replace("      ", "        ")
    )


def test_repeat_while_stops_when_its_condition_no_longer_holds(pytester: pytest.Pytester, appium_url: str) -> None:
    sop = while_sop(5) + "  - assert_text: {in: {id: username}, equals: aaa}\n"
    run_sop(pytester, appium_url, {"w.sop.yaml": sop}).assert_outcomes(passed=1)
    lines = tree(the_result(pytester)["steps"])
    assert [line.strip() for line in lines if "iteration" in line] == [
        f"iteration {i} of at most 5: passed" for i in (1, 2, 3)
    ]


def test_repeat_while_reaching_max_with_the_condition_still_true_fails(
    pytester: pytest.Pytester, appium_url: str
) -> None:
    result = run_sop(pytester, appium_url, {"w.sop.yaml": while_sop(2)})
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "w.sop.yaml:3: repeat failed in SOP 'w'",
            "repeat reached max 2 iterations and its while condition still holds: "
            "text {id: username} matches '^a{0,2}$'",
        ]
    )
    res = the_result(pytester)
    assert res["status"] == "failed"
    assert [line.strip() for line in tree(res["steps"]) if "iteration" in line] == [
        "iteration 1 of at most 2: passed",
        "iteration 2 of at most 2: passed",
    ]


def test_a_failure_inside_a_repeat_names_the_inner_step(pytester: pytest.Pytester, appium_url: str) -> None:
    sop = (
        "id: f\nsteps:\n  - repeat:\n      times: 2\n      steps:\n        - tap: {id: nope}\n          timeout: 0.2\n"
    )
    result = run_sop(pytester, appium_url, {"f.sop.yaml": sop})
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["f.sop.yaml:6: tap failed in SOP 'f'", "{id: nope} is not found after *s"])
    lines = tree(the_result(pytester)["steps"])
    assert lines[:3] == ["repeat times=2: failed", "  iteration 1 of 2: failed", "    tap {id: nope}: failed"]


def test_a_checkpoint_reached_through_run_inside_a_repeat_breaks_instead_of_pausing(
    pytester: pytest.Pytester, appium_url: str
) -> None:
    """A pause keeps the step it stopped at, not the iteration: the case could not go on where it stopped."""
    check = "id: check\nkind: flow\nsteps:\n  - approve: {checkpoint: ok, role: lead}\n"
    loop = "id: loop\nsteps:\n  - repeat:\n      times: 2\n      steps:\n        - run: check\n"
    result = run_sop(pytester, appium_url, {"check.sop.yaml": check, "loop.sop.yaml": loop}, "-o", "sop_hold_timeout=0")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*approval 'ok' inside a repeat cannot pause the case*"])


# -- when -----------------------------------------------------------------------------------------


def test_a_step_whose_when_does_not_hold_is_skipped_with_the_reason(pytester: pytest.Pytester, appium_url: str) -> None:
    sop = """\
id: w
steps:
  - tap: {id: hidden_button}
    when: {visible: {id: hidden_button}}
  - type: {into: {id: username}, text: on fake}
    when: {platform: fake}
  - back
    # a platform this device is not
  - tap: {id: nope}
    when: {platform: android}
  - assert_text: {in: {id: username}, equals: on fake}
    when: {text: {in: {id: username}, contains: fake}}
"""
    sop = sop.replace("  - back\n    # a platform this device is not\n", "")
    run_sop(pytester, appium_url, {"w.sop.yaml": sop}).assert_outcomes(passed=1)
    res = the_result(pytester)
    assert res["status"] == "passed"
    assert tree(res["steps"]) == [
        "tap {id: hidden_button}: skipped",
        "type into={id: username} text='on fake': passed",
        "tap {id: nope}: skipped",
        "assert_text in={id: username} equals='on fake': passed",
    ]
    skipped = [s["statusDetails"]["message"] for s in res["steps"] if s["status"] == "skipped"]
    assert skipped == [
        "when visible {id: hidden_button}: does not hold",
        "when platform android: does not hold",
    ]


def test_when_is_checked_now_without_waiting(pytester: pytest.Pytester, appium_url: str) -> None:
    """The step's own timeout is for the step; the when is a glance (a wait would make every skip slow)."""
    sop = "id: n\nsteps:\n  - wait_for: {id: nope}\n    timeout: 0.1\n    when: {not_visible: {id: username}}\n"
    run_sop(pytester, appium_url, {"n.sop.yaml": sop}).assert_outcomes(passed=1)
    assert tree(the_result(pytester)["steps"]) == ["wait_for {id: nope}: skipped"]


# -- xfail ----------------------------------------------------------------------------------------


def test_xfail_that_fails_is_xfailed_with_its_reason(pytester: pytest.Pytester, appium_url: str) -> None:
    sop = "id: x\nxfail: bug 123, the login button is gone\nsteps:\n  - tap: {id: nope}\n    timeout: 0.2\n"
    result = run_sop(pytester, appium_url, {"x.sop.yaml": sop}, "-rxX")
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(["XFAIL x.sop.yaml::x - bug 123, the login button is gone"])
    res = the_result(pytester)
    assert res["status"] == "skipped"
    assert "bug 123, the login button is gone" in res["statusDetails"]["message"]


def test_xfail_that_passes_fails_strict(pytester: pytest.Pytester, appium_url: str) -> None:
    sop = "id: x\nxfail: bug 123\nsteps:\n  - tap: {id: login_button}\n"
    result = run_sop(pytester, appium_url, {"x.sop.yaml": sop})
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*[[]XPASS(strict)[]] bug 123*"])
    res = the_result(pytester)
    assert res["status"] == "failed"
    assert "XPASS(strict)" in res["statusDetails"]["message"] and "bug 123" in res["statusDetails"]["message"]


# -- lint -----------------------------------------------------------------------------------------


def lint(tmp_path: Path, files: dict[str, str]) -> list[str]:
    (tmp_path / "sop.yaml").write_text(FAKE_CONFIG)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    suite = Suite(
        load_config(str(tmp_path / "sop.yaml"), "sop.yaml"), build_registry(), str(tmp_path), base=str(tmp_path)
    )
    return [e.format() for name in files for e in suite.result(str(tmp_path / name)).errors]


H = "id: s\nsteps:\n"
BAD_FLOW = {
    "a checkpoint inside a repeat (a pause keeps the step, not the iteration)": (
        H + "  - repeat:\n      times: 2\n      steps:\n        - back\n        - approve: {checkpoint: c, role: lead}\n",
        "s.sop.yaml:7:11: steps[0].repeat.steps[1].approve: approve inside a repeat cannot pause the case; "
        "put it before or after the loop",
    ),
    "repeat with neither times nor while": (
        H + "  - repeat: {steps: [back]}\n",
        "s.sop.yaml:3:13: steps[0].repeat: expected exactly one of times, while, got 0",
    ),
    "repeat with both": (
        H + "  - repeat: {times: 2, while: {visible: {id: a}}, max: 3, steps: [back]}\n",
        "s.sop.yaml:3:13: steps[0].repeat: expected exactly one of times, while, got 2",
    ),
    "while without max": (
        H + "  - repeat:\n      while: {visible: {id: a}}\n      steps: [back]\n",
        "s.sop.yaml:4:7: steps[0].repeat: a repeat with while needs max: the most iterations it may take "
        "(max reached fails)",
    ),
    "max with times": (
        H + "  - repeat:\n      times: 2\n      max: 3\n      steps: [back]\n",
        "s.sop.yaml:5:12: steps[0].repeat.max: max goes with while; with times, times is the number of iterations",
    ),
    "times zero": (
        H + "  - repeat:\n      times: 0\n      steps: [back]\n",
        "s.sop.yaml:4:14: steps[0].repeat.times: expected at least 1, got 0",
    ),
    "times too many": (
        H + "  - repeat:\n      times: 100001\n      steps: [back]\n",
        "s.sop.yaml:4:14: steps[0].repeat.times: expected at most 100000, got 100001",
    ),
    "no steps": (
        H + "  - repeat:\n      times: 2\n      steps: []\n",
        "s.sop.yaml:5:14: steps[0].repeat.steps: expected a non-empty list of steps, got a list",
    ),
    "a bad step inside": (
        H + "  - repeat:\n      times: 2\n      steps:\n        - tapp: {id: x}\n",
        "s.sop.yaml:6:11: steps[0].repeat.steps[0].tapp: unknown action 'tapp' (did you mean 'tap'?)",
    ),
    "an unknown while condition": (
        H + "  - repeat:\n      while: {visibel: {id: a}}\n      max: 2\n      steps: [back]\n",
        "s.sop.yaml:4:15: steps[0].repeat.while.visibel: unknown condition 'visibel'; expected visible, "
        "not_visible, text or platform (did you mean 'visible'?)",
    ),
    "a step inside outside allowed_actions": (
        "id: s\nallowed_actions: [repeat, back]\nsteps:\n  - repeat:\n      times: 2\n      steps:\n"
        "        - tap: {id: x}\n",
        "s.sop.yaml:7:11: steps[0].repeat.steps[0].tap: action 'tap' is not in allowed_actions (repeat, back)",
    ),
    "a bad when": (
        H + "  - back:\n    when: {platfrom: android}\n",
        "s.sop.yaml:4:12: steps[0].when.platfrom: unknown condition 'platfrom'; expected visible, not_visible, "
        "text or platform (did you mean 'platform'?)",
    ),
    "a when with two conditions": (
        H + "  - back:\n    when: {visible: {id: a}, platform: web}\n",
        "s.sop.yaml:4:11: steps[0].when: expected one condition: visible, not_visible, text or platform",
    ),
    "a when platform that is not a name": (
        H + "  - back:\n    when: {platform: [web]}\n",
        "s.sop.yaml:4:22: steps[0].when.platform: expected a platform name, got a list",
    ),
    "when as a SOP key": (
        "id: s\nwhen: {platform: web}\nsteps: [back]\n",
        "s.sop.yaml:2:1: when: unknown key 'when'; 'when' is a step modifier, not a SOP "
        "key: write it in its step, lined up under the action",
    ),
    "xfail without a reason": (
        "id: s\nxfail: ''\nsteps: [back]\n",
        "s.sop.yaml:2:8: xfail: expected the reason the SOP is expected to fail, got empty text",
    ),
    "xfail as a boolean": (
        "id: s\nxfail: true\nsteps: [back]\n",
        "s.sop.yaml:2:8: xfail: expected text, got a boolean",
    ),
    "an unknown kind": (
        "id: s\nkind: flwo\nsteps: [back]\n",
        "s.sop.yaml:2:7: kind: expected case (the default: collected as a case) or flow (only run by other "
        "SOPs), got 'flwo' (did you mean 'flow'?)",
    ),
}


@pytest.mark.parametrize(("text", "expected"), BAD_FLOW.values(), ids=BAD_FLOW.keys())
def test_bad_flow_shapes_are_named_at_file_line_column(tmp_path: Path, text: str, expected: str) -> None:
    assert lint(tmp_path, {"s.sop.yaml": text}) == [expected]


def test_good_flow_shapes_lint_clean(tmp_path: Path) -> None:
    sop = """\
id: s
xfail: bug 7
allowed_actions: [repeat, tap, save_text, note]
steps:
  - repeat:
      times: 2
      steps:
        - save_text: {from: {id: username}, as: seen}
        - repeat:
            while: {not_visible: {id: "${vars.seen}"}}
            max: 3
            steps:
              - tap: {id: next}
                when: {platform: fake}
  - note: "${vars.seen}"
    when: {text: {in: {id: username}, matches: "^a+$"}}
"""
    assert lint(tmp_path, {"s.sop.yaml": sop}) == []


def test_on_as_a_key_stays_a_key(tmp_path: Path) -> None:
    """YAML 1.2: an input named `on` is a key named "on", and `optional: yes` is not a boolean."""
    sop = "id: s\ninputs:\n  - {id: r1, on: yes}\nsteps:\n  - note: '${inputs.on}'\n  - back:\n    optional: no\n"
    assert lint(tmp_path, {"s.sop.yaml": sop}) == [
        "s.sop.yaml:7:15: steps[1].optional: expected true or false, got text"
    ]


def test_dry_run_lists_the_steps_inside_a_repeat_and_the_when(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", sop=FAKE_CONFIG)
    (pytester.path / "r.sop.yaml").write_text(
        "id: r\nsteps:\n  - repeat:\n      times: 2\n      steps:\n        - tap: {id: a}\n"
        "        - back:\n          when: {platform: web}\n  - note: done\n"
    )
    result = pytester.runpytest("--sop", "--sop-dry-run")
    result.stdout.fnmatch_lines(
        [
            "  steps:",
            "     1. repeat times=2  (r.sop.yaml:3)",
            "       1.1. tap {id: a}  (r.sop.yaml:6)",
            "       1.2. back  [[]when platform web[]]  (r.sop.yaml:7)",
            "     2. note 'done'  (r.sop.yaml:9)",
        ]
    )


def test_when_on_failure_steps(pytester: pytest.Pytester, appium_url: str) -> None:
    sop = """\
id: f
steps:
  - tap: {id: nope}
    timeout: 0.2
on_failure:
  - note: on a phone
    when: {platform: android}
  - note: on the fake
    when: {platform: fake}
"""
    run_sop(pytester, appium_url, {"f.sop.yaml": sop}).assert_outcomes(failed=1)
    assert tree(the_result(pytester)["steps"])[1:] == [
        "on_failure: passed",
        "  note 'on a phone': skipped",
        "  note 'on the fake': passed",
    ]


def test_a_platform_no_device_has_is_an_error(tmp_path: Path) -> None:
    """A typo would skip the step on every device, silently; a common platform the suite lacks is fine."""
    sop = H + (
        "  - back:\n    when: {platform: fkae}\n"
        "  - repeat:\n      while: {platform: Fake}\n      max: 2\n      steps: [back]\n"
        "  - back:\n    when: {platform: ios}\n"
        "  - back:\n    when: {platform: andriod}\n"
    )
    assert lint(tmp_path, {"s.sop.yaml": sop}) == [
        "s.sop.yaml:4:22: steps[0].when.platform: no device in sop.yaml has platform 'fkae'; platforms: fake "
        "(did you mean 'fake'?)",
        "s.sop.yaml:12:22: steps[3].when.platform: no device in sop.yaml has platform 'andriod'; platforms: fake "
        "(did you mean 'android'?)",
    ]
