"""repeat and when on Chromium (mobile emulation, through a real Appium server) against the demo app's task
list: a while loop that ticks until nothing is left unticked, a times loop, and steps that run or are
skipped by platform and by what is on screen."""

from __future__ import annotations

import json

import pytest
from test_engine_fake import own_locks
from test_example_suite import CHROMIUM_CONFIG, SIGN_IN, demo  # noqa: F401  (demo: the fixture)

from pytest_sop.demo import DemoServer

pytestmark = pytest.mark.appium

TIDY = (
    "id: tidy\napp: snapgram\nrequires:\n  account: {}\nsteps:\n"
    + SIGN_IN
    + """\
  - wait_for: {id: whoami}
  - open_url: /tasks
  - assert_count: {of: {class: task-done, checked: false}, equals: 5}
  - repeat:
      while: {visible: {class: task-done, checked: false}}
      max: 10
      steps:
        - tap: {class: task-done, checked: false}
        - assert_text: {in: {id: tasks-status}, contains: "Done:"}
        - note: never on the web
          when: {platform: android}
  - assert_count: {of: {class: task-done, checked: true}, equals: 5}
  - repeat:
      times: 2
      steps:
        - tap: {class: task-done, index: 0}
  - assert_state: {of: {class: task-done, index: 0}, checked: true}
  - note: only on the web
    when: {platform: web}
  - tap: {id: no-such-banner}
    when: {visible: {id: no-such-banner}}
"""
)


def test_repeat_and_when_on_chromium(pytester: pytest.Pytester, appium_url: str, demo: DemoServer) -> None:  # noqa: F811
    pytester.makefile(".yaml", sop=CHROMIUM_CONFIG.format(url=demo.url))
    (pytester.path / "tidy.sop.yaml").write_text(TIDY)
    allure = pytester.path / "allure"
    result = pytester.runpytest(
        "--sop", "--sop-appium", appium_url, "--sop-evidence", "none", "--alluredir", str(allure),
        "-p", "no:cacheprovider", "-v", *own_locks(pytester.path),
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    (res,) = [json.loads(p.read_text()) for p in allure.glob("*-result.json")]

    def steps(s: dict) -> list[dict]:  # type: ignore[type-arg]
        return [s, *[x for c in s.get("steps", []) for x in steps(c)]]

    every = [s for top in res["steps"] for s in steps(top)]
    iterations = [s["name"] for s in every if s["name"].startswith("iteration ")]
    # Five unticked tasks: five iterations of the while loop, then the times loop's two.
    assert iterations == [f"iteration {i} of at most 10" for i in range(1, 6)] + ["iteration 1 of 2", "iteration 2 of 2"]
    skipped = [s["name"] for s in every if s["status"] == "skipped"]
    assert skipped.count("note 'never on the web'") == 5, skipped
    assert any(name.startswith("tap") and "no-such-banner" in name for name in skipped), skipped
    assert "note 'only on the web'" in [s["name"] for s in every if s["status"] == "passed"]
