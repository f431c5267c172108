"""SOP steps on Appium's fake driver, through a real Appium 3 server."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from pytest_sop.appium_server import ManagedAppium, find_appium_home, open_sessions

APP = Path(__file__).parent / "apps" / "fake_app.xml"
FAKE_CONFIG = f"""\
devices:
  - id: fake-phone
    platform: fake
    capabilities:
      platformName: Fake
      appium:automationName: Fake
      appium:app: {APP}
"""


def allure_results(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(p.read_text()) for p in path.glob("*-result.json")]


def steps_of(result: dict) -> list[str]:  # type: ignore[type-arg]
    names: list[str] = []

    def walk(steps: list[dict]) -> None:  # type: ignore[type-arg]
        for s in steps:
            names.append(f"{s['name']}:{s['status']}")
            walk(s.get("steps", []))

    walk(result.get("steps", []))
    return names


def own_locks(folder: Path) -> list[str]:
    """A run's own lock folder (``-o sop_lock_dir=FOLDER/locks``): tests on the other xdist worker lease
    fake-phone, pixel-7 ... too, and must not queue behind it in the host's default folder. On the
    command line: pytester drops PYTEST_ADDOPTS. Not for a test whose ini names its own folder."""
    return ["-o", f"sop_lock_dir={folder / 'locks'}"]


def run_sop(pytester: pytest.Pytester, url: str, sops: dict[str, str], *args: str) -> pytest.RunResult:
    pytester.makefile(".yaml", sop=FAKE_CONFIG)
    for name, text in sops.items():
        (pytester.path / name).write_text(text)
    return pytester.runpytest(
        "--sop", "--sop-appium", url, "--alluredir", str(pytester.path / "allure"), *own_locks(pytester.path), *args
    )


def test_fake_driver_actions_pass_and_are_recorded(pytester: pytest.Pytester, appium_url: str) -> None:
    sop = """\
id: fake-tour
steps:
  - launch_app
  - wait_for: {id: username}
  - type: {into: {id: username}, text: alice}
  - assert_text: {in: {id: username}, equals: alice}
  - save_text: {from: {id: username}, as: who}
  - type: {into: {accessibility_id: password}, text: "${vars.who}-pw"}
  - assert_text: {in: {xpath: "//MockInputField[@id='password']"}, contains: "-pw"}
  - clear: {id: password}
  - assert_visible: {text: Log in}
  - assert_not_visible: {id: hidden_button}
  - tap: {id: login_button}
  - swipe: {direction: up}
  - scroll_to: {class: MockListView}
  - wait: 0.1
  - note: signed in as ${vars.who}
  - screenshot: after login
  - page_source
  - run: fake-check
"""
    check = "id: fake-check\nsteps:\n  - assert_visible: {id: status_label}\n"
    result = run_sop(pytester, appium_url, {"tour.sop.yaml": sop, "check.sop.yaml": check}, "-k", "fake-tour")
    result.assert_outcomes(passed=1)
    (res,) = allure_results(pytester.path / "allure")
    assert res["status"] == "passed"
    names = steps_of(res)
    assert "type into={id: username} text='alice':passed" in names
    assert "run fake-check:passed" in names
    assert "assert_visible {id: status_label}:passed" in names  # nested under run
    shots = [a for s in res["steps"] for a in s.get("attachments", []) if a["type"] == "image/png"]
    assert shots and (pytester.path / "allure" / shots[0]["source"]).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_missing_element_fails_at_its_line(pytester: pytest.Pytester, appium_url: str) -> None:
    sop = "id: missing\nsteps:\n  - launch_app\n  - tap: {id: no-such-button}\n    timeout: 0.3\n  - back\n"
    result = run_sop(pytester, appium_url, {"m.sop.yaml": sop})
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "m.sop.yaml:4: tap failed in SOP 'missing'",
            ">    4 |   - tap: {id: no-such-button}",
            "{id: no-such-button} is not found after *s",
            "  expected: {id: no-such-button} visible",
        ]
    )
    (res,) = allure_results(pytester.path / "allure")
    assert res["status"] == "failed"
    attachments = {a["name"]: a for a in res["attachments"]}
    assert {"screenshot at failure", "page source at failure"} <= set(attachments)


def test_failure_evidence_includes_the_sessions_appium_log(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a managed server, the failed case carries its own slice of Appium's log."""
    monkeypatch.setenv("SOP_APPIUM_HOME", str(find_appium_home(Path(__file__).parent)))
    sop = "id: missing\nsteps:\n  - tap: {id: no-such-button}\n    timeout: 0.2\n"
    pytester.makefile(".yaml", sop=FAKE_CONFIG)
    (pytester.path / "m.sop.yaml").write_text(sop)
    result = pytester.runpytest("--sop", "--alluredir", str(pytester.path / "allure"), *own_locks(pytester.path))
    result.assert_outcomes(failed=1)
    (res,) = allure_results(pytester.path / "allure")
    (log,) = [a for a in res["attachments"] if a["name"] == "appium log"]
    text = (pytester.path / "allure" / log["source"]).read_text()
    assert "no-such-button" in text
    tags = {line.split(" - [", 1)[1][:8] for line in text.splitlines() if " - [" in line}
    assert len(tags) == 1  # one session's lines only


def test_wrong_text_shows_both_texts(pytester: pytest.Pytester, appium_url: str) -> None:
    sop = (
        "id: wrong-text\nsteps:\n  - type: {into: {id: username}, text: alice}\n"
        "  - assert_text: {in: {id: username}, equals: bob}\n    timeout: 0.3\n"
    )
    result = run_sop(pytester, appium_url, {"w.sop.yaml": sop})
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["text of {id: username}: expected it to equal 'bob', found 'alice'", "  found:    'alice'"]
    )


def test_retry_and_optional_are_recorded(pytester: pytest.Pytester, appium_url: str) -> None:
    sop = """\
id: flaky
steps:
  - tap: {id: nope}
    timeout: 0.2
    retry: {attempts: 2, backoff: 0.1}
    optional: true
  - assert_visible: {id: username}
"""
    result = run_sop(pytester, appium_url, {"f.sop.yaml": sop})
    result.assert_outcomes(passed=1)
    (res,) = allure_results(pytester.path / "allure")
    names = [a["name"] for s in res["steps"] for a in s.get("attachments", [])]
    assert names[:2] == ["attempt 1 failed", "optional step failed"]


def test_sop_retry_keeps_every_attempt(pytester: pytest.Pytester, appium_url: str) -> None:
    sop = "id: twice\nretry: {attempts: 2}\nsteps:\n  - wait_for: {id: nope}\n    timeout: 0.2\n"
    result = run_sop(pytester, appium_url, {"t.sop.yaml": sop})
    result.assert_outcomes(failed=1)
    (res,) = allure_results(pytester.path / "allure")
    assert [s["name"] for s in res["steps"]] == ["attempt 1 of 2", "attempt 2 of 2"]


def test_missing_secret_is_an_error_naming_the_variable(
    pytester: pytest.Pytester, appium_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAKE_PIN", raising=False)
    pytester.makefile(".yaml", sop=FAKE_CONFIG + "accounts:\n  - id: a1\n    fields: {pin: {env: FAKE_PIN}}\n")
    (pytester.path / "s.sop.yaml").write_text(
        "id: s\nrequires:\n  account: {}\nsteps:\n  - type: {into: {id: username}, text: '${account.pin}'}\n"
    )
    result = pytester.runpytest("--sop", "--sop-appium", appium_url, *own_locks(pytester.path))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*environment variable FAKE_PIN is not set*"])


def test_session_not_created_is_an_error_naming_device_and_endpoint(pytester: pytest.Pytester, appium_url: str) -> None:
    pytester.makefile(
        ".yaml",
        sop="devices:\n  - id: pixel-real\n    platform: android\n    capabilities:\n      platformName: Android\n"
        "      appium:automationName: UiAutomator2\n      appium:udid: emulator-5554\n",
    )
    (pytester.path / "s.sop.yaml").write_text("id: s\nsteps: [back]\n")
    result = pytester.runpytest(
        "--sop", "--sop-appium", appium_url, "--alluredir", str(pytester.path / "allure"), *own_locks(pytester.path)
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*pixel-real: session not created on {appium_url}: *ANDROID_HOME*"])
    (res,) = allure_results(pytester.path / "allure")
    assert res["status"] == "broken"


def stop_at_step(server: ManagedAppium, audit: Path, step: str, done: threading.Event) -> None:
    """Kill ``server`` once the audit log says ``step`` started (or give up when ``done`` is set first)."""
    while not done.wait(0.02):
        lines = audit.read_text().split("\n")[:-1] if audit.exists() else []  # a last partial line is left out
        if any(e["event"] == "step_start" and e["step"] == step for e in map(json.loads, lines)):
            server.stop(grace=0)
            return


def test_appium_killed_mid_case_breaks_that_case(pytester: pytest.Pytester, tmp_path: Path) -> None:
    home = find_appium_home(Path(__file__).parent)
    assert home is not None
    server = ManagedAppium(home, tmp_path / "appium.log")
    url = server.start()
    pid = server.process.pid if server.process else 0
    # Killed once the case is in its wait, with its session open: not after a fixed time, which a
    # loaded host could spend before the session exists.
    audit, done = pytester.path / "audit.jsonl", threading.Event()
    killer = threading.Thread(target=stop_at_step, args=(server, audit, "wait 5", done))
    killer.start()
    try:
        sop = "id: long\nsteps:\n  - wait: 5\n  - tap: {id: login_button}\n"
        result = run_sop(pytester, url, {"l.sop.yaml": sop}, f"--sop-audit={audit}")
    finally:
        done.set()
        killer.join()
        server.stop()
    assert any(e["event"] == "step_start" and e["step"] == "wait 5" for e in map(json.loads, audit.open()))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*Appium at {url} stopped answering*"])
    (res,) = allure_results(pytester.path / "allure")
    assert res["status"] == "broken"
    with pytest.raises(OSError):
        open_sessions(url)
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


@pytest.mark.parametrize(("scope", "sessions"), [("case", 3), ("worker", 1)])
def test_session_scope(pytester: pytest.Pytester, appium_url: str, scope: str, sessions: int) -> None:
    """--sop-session worker keeps one session per device across cases; case (the default) opens one each."""
    sop = "id: typed\ninputs: [{id: a}, {id: b}, {id: c}]\nsteps:\n  - type: {into: {id: username}, text: x}\n"
    audit = pytester.path / "audit.jsonl"
    result = run_sop(pytester, appium_url, {"t.sop.yaml": sop}, "--sop-session", scope, f"--sop-audit={audit}")
    result.assert_outcomes(passed=3)
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    opened = {e["session"] for e in events if e["event"] == "session"}
    assert len(opened) == sessions
    assert [e["reused"] for e in events if e["event"] == "session"] == [False] + [scope == "worker"] * 2


def test_done_when_conditions_of_each_kind(pytester: pytest.Pytester, appium_url: str) -> None:
    """Held: the case passes. Not held, after every step passed: the case failed, at that condition."""
    held = """\
id: finished
steps:
  - type: {into: {id: username}, text: alice}
done_when:
  - visible: {id: username}
  - not_visible: {id: hidden_button}
  - text: {in: {id: username}, contains: lic}
"""
    unmet = """\
id: unfinished
steps:
  - type: {into: {id: username}, text: alice}
done_when:
  - visible: {id: username}
  - text: {in: {id: username}, equals: bob}
  - visible: {id: never-checked}
"""
    result = run_sop(pytester, appium_url, {"f.sop.yaml": held, "u.sop.yaml": unmet})
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "u.sop.yaml:6: done_when text failed in SOP 'unfinished'",
            "done_when not met: text of {id: username}: expected it to equal 'bob', found 'alice'",
        ]
    )
    statuses = {r["name"]: r["status"] for r in allure_results(pytester.path / "allure")}
    assert statuses == {"finished": "passed", "unfinished": "failed"}


def test_retry_backoff_waits_longer_after_each_attempt(pytester: pytest.Pytester, appium_url: str) -> None:
    """attempts 3, backoff 1: 1 s after the first attempt, 2 s after the second (3 s in all)."""
    sop = """\
id: patient
steps:
  - tap: {id: nope}
    timeout: 0.1
    retry: {attempts: 3, backoff: 1}
    optional: true
"""
    run_sop(pytester, appium_url, {"p.sop.yaml": sop}).assert_outcomes(passed=1)
    (res,) = allure_results(pytester.path / "allure")
    (step,) = res["steps"]
    # Without the backoff the three attempts take about 0.3 s; with a constant one, 2 s.
    assert step["stop"] - step["start"] >= 2900


def test_optional_failures_are_reported(pytester: pytest.Pytester, appium_url: str) -> None:
    """A case that passes despite failed optional steps says which, in Allure, the audit log and the terminal."""
    sop = """\
id: tolerant
steps:
  - tap: {id: banner-close}
    timeout: 0.1
    optional: true
  - assert_visible: {id: username}
"""
    audit = pytester.path / "audit.jsonl"
    result = run_sop(pytester, appium_url, {"t.sop.yaml": sop}, f"--sop-audit={audit}")
    result.assert_outcomes(passed=1, warnings=1)
    # The warnings summary points at the SOP's line, not at pytest-sop's code.
    result.stdout.fnmatch_lines(
        [
            "*t.sop.yaml:3: OptionalStepFailed: tolerant: optional step failed: t.sop.yaml:3 tap {id: banner-close}: *",
        ]
    )
    assert "runner.py" not in result.stdout.str()
    (res,) = allure_results(pytester.path / "allure")
    (summary,) = [a for a in res["attachments"] if a["name"] == "optional steps failed (1)"]
    text = (pytester.path / "allure" / summary["source"]).read_text()
    assert text.startswith("t.sop.yaml:3 tap {id: banner-close}: {id: banner-close} is not found")
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    (event,) = [e for e in events if e["event"] == "optional_failed"]
    assert (event["sop"], event["at"]) == ("tolerant", "t.sop.yaml:3")


def test_optional_failures_are_listed_with_the_failure(pytester: pytest.Pytester, appium_url: str) -> None:
    sop = """\
id: broken-later
steps:
  - tap: {id: banner-close}
    timeout: 0.1
    optional: true
  - tap: {id: no-such-button}
    timeout: 0.1
"""
    result = run_sop(pytester, appium_url, {"b.sop.yaml": sop})
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "b.sop.yaml:6: tap failed in SOP 'broken-later'",
            "optional steps that failed before it:",
            "  b.sop.yaml:3 tap {id: banner-close}: *",
        ]
    )
