"""Sub-flows: `run: {sop: ID, with: {NAME: VALUE}}` gives the called SOP ${params.NAME}; a `kind: flow`
SOP is only run by others. Cases run through a real Appium 3 server (fake driver)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_sop.actions import build_registry
from pytest_sop.suite import Suite
from pytest_sop.suiteconfig import load_config
from pytest_sop.templates import EnvMissing, check_env
from tests.test_engine_fake import FAKE_CONFIG, allure_results, own_locks, run_sop, steps_of

SECRET = "s3cret-flow-pw"
CONFIG = FAKE_CONFIG + "accounts:\n  - id: a1\n    fields: {username: ann, password: {env: FLOW_PW}}\n"

SIGN_IN = """\
id: sign-in
kind: flow
title: Sign in as someone
steps:
  - type: {into: {id: username}, text: "${params.user}"}
  - type: {into: {id: password}, text: "${params.password}"}
  - assert_text: {in: {id: password}, equals: "${params.password}"}
"""
MAIN = """\
id: main
requires:
  account: {}
inputs:
  - {id: row, who: bob}
steps:
  - run: {sop: sign-in, with: {user: "${inputs.who}-${account.username}", password: "${account.password}"}}
  - assert_text: {in: {id: username}, equals: bob-ann}
"""


def test_run_with_gives_the_flow_its_params_and_the_flow_is_no_case(
    pytester: pytest.Pytester, appium_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOW_PW", SECRET)
    pytester.makefile(".yaml", sop=CONFIG)
    (pytester.path / "sign-in.sop.yaml").write_text(SIGN_IN)
    (pytester.path / "main.sop.yaml").write_text(MAIN)
    result = pytester.runpytest(
        "--sop", "--sop-appium", appium_url, "--alluredir", str(pytester.path / "allure"), *own_locks(pytester.path)
    )
    result.assert_outcomes(passed=1)  # main only: the flow is not a case of its own
    (res,) = allure_results(pytester.path / "allure")
    assert res["name"] == "main[row]"
    names = steps_of(res)
    assert "run sop=sign-in with={user: 'bob-ann', password: '***'}:passed" in names
    assert "type into={id: username} text='bob-ann':passed" in names
    assert "type into={id: password} text='***':passed" in names
    written = "".join(p.read_text(errors="replace") for p in (pytester.path / "allure").iterdir() if p.is_file())
    assert SECRET not in written + result.stdout.str()


def test_kind_flow_is_not_collected(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", sop=CONFIG)
    (pytester.path / "sign-in.sop.yaml").write_text(SIGN_IN)
    (pytester.path / "main.sop.yaml").write_text(MAIN)
    result = pytester.runpytest("--sop", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["main.sop.yaml::main[[]row[]]", "1 test collected*"])
    assert "sign-in" not in result.stdout.str()


def lint(tmp_path: Path, files: dict[str, str]) -> list[str]:
    (tmp_path / "sop.yaml").write_text(CONFIG)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    suite = Suite(
        load_config(str(tmp_path / "sop.yaml"), "sop.yaml"), build_registry(), str(tmp_path), base=str(tmp_path)
    )
    return [e.format() for name in files for e in suite.result(str(tmp_path / name)).errors]


def test_a_missing_param_names_the_callers_run_step_and_the_name(tmp_path: Path) -> None:
    caller = "id: c\nrequires:\n  account: {}\nsteps:\n  - launch_app\n  - run: {sop: sign-in, with: {usr: x, password: y}}\n"
    assert lint(tmp_path, {"sign-in.sop.yaml": SIGN_IN, "c.sop.yaml": caller}) == [
        "c.sop.yaml:6:10: steps[1].run: SOP 'sign-in' reads ${params.user}, which this run step does not pass; "
        "pass it with `run: {sop: sign-in, with: {user: VALUE}}` (did you mean 'usr'?)",
        "c.sop.yaml:6:37: steps[1].run.with.usr: SOP 'sign-in' does not read ${params.usr}; it reads: user, "
        "password (did you mean 'user'?)",
    ]


def test_run_id_of_a_flow_with_params_passes_none(tmp_path: Path) -> None:
    caller = "id: c\nsteps:\n  - repeat:\n      times: 2\n      steps:\n        - run: sign-in\n"
    errors = lint(tmp_path, {"sign-in.sop.yaml": SIGN_IN, "c.sop.yaml": caller})
    assert errors == [
        "c.sop.yaml:6:16: steps[0].repeat.steps[0].run: SOP 'sign-in' reads ${params.user}, which this run step "
        "does not pass; pass it with `run: {sop: sign-in, with: {user: VALUE}}`",
        "c.sop.yaml:6:16: steps[0].repeat.steps[0].run: SOP 'sign-in' reads ${params.password}, which this run "
        "step does not pass; pass it with `run: {sop: sign-in, with: {password: VALUE}}`",
    ]


def test_run_id_stays_valid(tmp_path: Path) -> None:
    flow = "id: tidy\nkind: flow\nsteps: [back]\n"
    assert lint(tmp_path, {"tidy.sop.yaml": flow, "c.sop.yaml": "id: c\nsteps:\n  - run: tidy\n"}) == []


def test_params_in_a_case_is_an_error(tmp_path: Path) -> None:
    sop = "id: c\nsteps:\n  - note: hello ${params.who}\n"
    assert lint(tmp_path, {"c.sop.yaml": sop}) == [
        "c.sop.yaml:3:11: steps[0].note: ${params.who} is used but this SOP is collected as a case, where no caller "
        "passes params: add `kind: flow` (a flow is only run by other SOPs, with `run: {sop: ID, with: {who: VALUE}}`)"
    ]


def test_a_flow_is_still_checked(tmp_path: Path) -> None:
    flow = "id: f\nkind: flow\nsteps:\n  - tapp: {id: x}\n"
    assert lint(tmp_path, {"f.sop.yaml": flow}) == [
        "f.sop.yaml:4:5: steps[0].tapp: unknown action 'tapp' (did you mean 'tap'?)"
    ]


def test_bad_with_shapes(tmp_path: Path) -> None:
    flow = "id: f\nkind: flow\nsteps:\n  - note: '${params.a}'\n"
    caller = (
        "id: c\nsteps:\n  - run: {sop: f, with: []}\n  - run: {sop: f, with: {a: [1]}}\n"
        "  - run: {sop: f, with: {'a b': 1}}\n  - run: {sop: f, wiht: {a: 1}}\n"
    )
    assert lint(tmp_path, {"f.sop.yaml": flow, "c.sop.yaml": caller}) == [
        "c.sop.yaml:3:25: steps[0].run.with: expected a mapping of names to values such as "
        "{user: '${account.username}'}, got a list",
        "c.sop.yaml:4:29: steps[1].run.with.a: expected text, got a list",
        "c.sop.yaml:5:26: steps[2].run.with.a b: expected a name (letters, digits, '_', '-'), got 'a b'",
        "c.sop.yaml:6:19: steps[3].run.wiht: unknown key 'wiht'; expected one of: sop, with (did you mean 'with'?)",
    ]


def test_env_in_a_with_a_when_or_a_repeat_is_checked_before_the_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a case's setup calls, before any lease: ${env.X} in what a run passes, in a when, inside a repeat."""
    (tmp_path / "sop.yaml").write_text(CONFIG)
    (tmp_path / "f.sop.yaml").write_text("id: f\nkind: flow\nsteps:\n  - note: '${params.a}'\n")
    (tmp_path / "c.sop.yaml").write_text(
        "id: c\nsteps:\n  - run: {sop: f, with: {a: '${env.F_WITH}'}}\n  - back:\n"
        "    when: {visible: {id: '${env.F_WHEN}'}}\n  - repeat:\n      times: 2\n      steps:\n"
        "        - note: '${env.F_INNER}'\n"
    )
    suite = Suite(load_config(str(tmp_path / "sop.yaml")), build_registry(), str(tmp_path), base=str(tmp_path))
    assert suite.result(str(tmp_path / "c.sop.yaml")).errors == ()
    sop = suite.get_sop("c")
    assert sop is not None
    for name in ("F_WITH", "F_WHEN", "F_INNER"):
        monkeypatch.delenv(name, raising=False)
    for name, where in [("F_WITH", "c.sop.yaml:3"), ("F_WHEN", "c.sop.yaml:4"), ("F_INNER", "c.sop.yaml:9")]:
        with pytest.raises(EnvMissing) as e:
            check_env(sop, suite.get_sop)
        assert str(e.value) == f"environment variable {name} is not set (${{env.{name}}} in {where})"
        monkeypatch.setenv(name, "set")
    check_env(sop, suite.get_sop)


def test_an_unset_env_passed_to_a_flow_stops_the_case_before_it_starts(
    pytester: pytest.Pytester, appium_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("F_WHO", raising=False)
    flow = "id: f\nkind: flow\nsteps:\n  - type: {into: {id: username}, text: '${params.who}'}\n"
    caller = "id: c\nsteps:\n  - launch_app\n  - run: {sop: f, with: {who: '${env.F_WHO}'}}\n"
    result = run_sop(pytester, appium_url, {"f.sop.yaml": flow, "c.sop.yaml": caller})
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*environment variable F_WHO is not set (${env.F_WHO} in c.sop.yaml:4)*"])
    (res,) = allure_results(pytester.path / "allure")
    assert res["status"] == "broken" and res.get("steps", []) == []


def test_a_flow_passes_its_params_on(pytester: pytest.Pytester, appium_url: str) -> None:
    """${params.X} in a flow's own run step is the value its caller passed, rendered in the flow's frame."""
    inner = "id: inner\nkind: flow\nsteps:\n  - type: {into: {id: username}, text: '${params.name}!'}\n"
    outer = "id: outer\nkind: flow\nsteps:\n  - run: {sop: inner, with: {name: '${params.first} ${params.last}'}}\n"
    main = (
        "id: main\nsteps:\n  - run: {sop: outer, with: {first: Ada, last: Lovelace}}\n"
        "  - assert_text: {in: {id: username}, equals: 'Ada Lovelace!'}\n"
    )
    result = run_sop(pytester, appium_url, {"inner.sop.yaml": inner, "outer.sop.yaml": outer, "m.sop.yaml": main})
    result.assert_outcomes(passed=1)
    events = json.dumps(allure_results(pytester.path / "allure"))
    assert "text='Ada Lovelace!'" in events
