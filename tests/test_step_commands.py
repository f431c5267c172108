"""What each step sends to Appium, counted in the real server's log (fake driver), and the waits
that remain when the element is not there yet."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_engine_fake import own_locks

from pytest_sop.appium_server import ManagedAppium

APP = Path(__file__).parent / "apps" / "fake_app.xml"
FAKE_CONFIG = """\
devices:
  - id: fake-phone
    platform: fake
    capabilities:
      platformName: Fake
      appium:automationName: Fake
      appium:app: {app}
"""
# The fake app with a web view: while the session is in its WEBVIEW_1 context, the native
# elements (login_button...) are not found; switching back makes them appear.
WEBVIEW_APP = APP.read_text().replace(
    "</app>",
    '    <MockWebView>\n        <html><body><p id="web_text">in the web view</p></body></html>\n    </MockWebView>\n</app>',
)
# A project action that hides the native screen for a while: into the web view now, back to
# the native app after `seconds`, from another thread (the session answers both).
HIDE_ACTION = """\
import threading
from pytest_sop import ActionSpec, Param


def hide_native_for(ctx, seconds):
    driver = ctx.session.driver
    driver.switch_to.context("WEBVIEW_1")
    threading.Timer(float(seconds), driver.switch_to.context, args=("NATIVE_APP",)).start()


def pytest_sop_actions():
    return [ActionSpec("hide_native_for", "The web view in front for a while.", "value",
                       (Param("seconds", "number"),), run=hide_native_for)]
"""
REQUEST = re.compile(r"\[HTTP\] --> (GET|POST|DELETE) /session/([^/ ]+)(/\S*)?")


def requests_of(log: Path, session: str, deadline: float = 60.0) -> list[str]:
    """Every command the session sent, in order (``POST /element``...), once its DELETE is logged."""
    end = time.monotonic() + deadline
    while True:
        found = [
            f"{m[1]} {re.sub(r'/element/[^/]+', '/element/:id', m[3] or '')}".rstrip()
            for m in REQUEST.finditer(log.read_text(errors="replace"))
            if m[2] == session
        ]
        if found and found[-1] == "DELETE":  # Appium writes its log asynchronously
            return found
        if time.monotonic() > end:
            raise AssertionError(f"no DELETE for session {session} in {log}: {found}")
        time.sleep(0.2)


def between_screenshots(requests: list[str]) -> list[list[str]]:
    """The commands of the steps between ``screenshot`` steps, one list per step."""
    groups: list[list[str]] = []
    for r in requests:
        if r == "GET /screenshot":
            groups.append([])
        elif groups:
            groups[-1].append(r)
    return groups[:-1]  # after the last screenshot: the session's end


def session_of(audit: Path) -> str:
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    (session,) = {e["session"] for e in events if e["event"] == "session"}
    return str(session)


def run_sop(pytester: pytest.Pytester, url: str, sop: str, app: Path = APP) -> tuple[pytest.RunResult, Path]:
    pytester.makefile(".yaml", sop=FAKE_CONFIG.format(app=app))
    (pytester.path / "s.sop.yaml").write_text(sop)
    audit = pytester.path / "audit.jsonl"
    args = ["--sop", "--sop-appium", url, f"--sop-audit={audit}", "-p", "no:cacheprovider", *own_locks(pytester.path)]
    return pytester.runpytest(*args), audit


HAPPY = {
    "tap": ("tap: {id: login_button}", ["POST /element", "POST /element/:id/click"]),
    "type": (
        "type: {into: {id: username}, text: alice}",
        ["POST /element", "POST /element/:id/clear", "POST /element/:id/value"],
    ),
    "assert_text": ("assert_text: {in: {id: username}, equals: alice}", ["POST /element", "GET /element/:id/text"]),
    "assert_visible": ("assert_visible: {id: status_label}", ["POST /element", "GET /element/:id/displayed"]),
    "wait_for": ("wait_for: {id: password}", ["POST /element", "GET /element/:id/displayed"]),
    "clear": ("clear: {id: password}", ["POST /element", "POST /element/:id/clear"]),
    "save_text": ("save_text: {from: {id: username}, as: who}", ["POST /element", "GET /element/:id/text"]),
}


def test_each_step_sends_what_a_hand_written_client_sends(
    pytester: pytest.Pytester, appium_url: str, appium_server: ManagedAppium
) -> None:
    """tap = find element + click, type = find + clear + send keys, assert_text = find + text,
    assert_visible = find + displayed: no find-all, no displayed check before an action."""
    steps = "".join(f"  - screenshot: before {name}\n  - {yaml}\n" for name, (yaml, _) in HAPPY.items())
    result, audit = run_sop(pytester, appium_url, f"id: counted\nsteps:\n{steps}  - screenshot: end\n")
    result.assert_outcomes(passed=1)
    assert appium_server.log_path is not None
    groups = between_screenshots(requests_of(appium_server.log_path, session_of(audit)))
    assert dict(zip(HAPPY, groups, strict=True)) == {name: commands for name, (_, commands) in HAPPY.items()}


def test_an_element_that_appears_late_is_waited_for(
    pytester: pytest.Pytester, appium_url: str, appium_server: ManagedAppium
) -> None:
    """Not found at first (the web view is in front): the step polls until it is, then acts once."""
    app = pytester.path / "webview_app.xml"
    app.write_text(WEBVIEW_APP)
    pytester.makeconftest(HIDE_ACTION)
    sop = """\
id: late
steps:
  - hide_native_for: 1.5
  - tap: {id: login_button}
  - screenshot: after
  - hide_native_for: 1.5
  - type: {into: {id: username}, text: alice}
  - hide_native_for: 1.5
  - assert_text: {in: {id: username}, equals: alice}
  - hide_native_for: 1.5
  - assert_visible: {id: status_label}
"""
    start = time.monotonic()
    result, audit = run_sop(pytester, appium_url, sop, app)
    result.assert_outcomes(passed=1)
    assert time.monotonic() - start >= 6  # each step waited for its element
    assert appium_server.log_path is not None
    commands = requests_of(appium_server.log_path, session_of(audit))
    tap = commands[: commands.index("GET /screenshot")]
    assert tap.count("POST /element/:id/click") == 1  # acted once, when it was there
    assert tap.count("POST /element") >= 3  # polled while it was not


def test_an_element_that_never_appears_fails_as_before(pytester: pytest.Pytester, appium_url: str) -> None:
    sop = "id: never\nsteps:\n  - type: {into: {id: nowhere}, text: x}\n    timeout: 0.5\n"
    start = time.monotonic()
    result, _ = run_sop(pytester, appium_url, sop)
    result.assert_outcomes(failed=1)
    assert time.monotonic() - start >= 0.5
    result.stdout.fnmatch_lines(
        [
            "s.sop.yaml:3: type failed in SOP 'never'",
            "{id: nowhere} is not found after *s",
            "  expected: {id: nowhere} visible",
            "  found:    no visible text on screen",
        ]
    )


def test_a_hidden_element_is_not_tapped(pytester: pytest.Pytester, appium_url: str) -> None:
    """The fake driver refuses to click a hidden element; the step waits its timeout and says why."""
    sop = "id: hidden\nsteps:\n  - tap: {id: hidden_button}\n    timeout: 0.5\n"
    result, _ = run_sop(pytester, appium_url, sop)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["{id: hidden_button} is present but hidden after *s", "  expected: {id: hidden_button} visible"]
    )


# -- the web (Appium's Chromium driver) --------------------------------------------------------

PAGE = """<!doctype html>
<html><head><meta name="viewport" content="width=device-width, initial-scale=1"></head><body>
<p id="label">Hello there</p>
<input id="name">
<button id="arm" onclick="arm()">Arm</button>
<button id="hidden" style="display:none">Hidden</button>
<button class="twin" style="display:none">Twin</button>
<button class="twin" onclick="this.textContent = 'twin clicked'">Twin</button>
<div style="position:relative">
  <button id="covered" onclick="this.textContent = 'covered clicked'">Covered</button>
  <div id="cover" style="position:absolute; inset:0; width:300px; height:60px; background:gray"></div>
</div>
<div style="height:4000px"></div>
<button id="far" onclick="this.textContent = 'far clicked'">Far</button>
<script>
function arm() {
  setTimeout(() => {
    const late = document.createElement("button");
    late.id = "late";
    late.textContent = "Late";
    late.onclick = () => { late.textContent = "late clicked"; };
    document.body.prepend(late);
    document.getElementById("cover").remove();
  }, 1500);
}
</script>
</body></html>
"""
WEB_CONFIG = """\
apps:
  page: {{url: "{url}"}}
devices:
  - id: web-phone
    platform: web
    capabilities:
      platformName: linux
      browserName: chrome
      appium:automationName: Chromium
      appium:executable: /usr/bin/chromedriver
      appium:autodownloadEnabled: false
      goog:chromeOptions:
        binary: /usr/bin/chromium
        args: [--headless=new, --no-sandbox, --disable-gpu, --disable-dev-shm-usage, --disable-background-networking, --no-first-run]
        mobileEmulation: {{deviceName: Pixel 7}}
"""
WEB_HAPPY = {
    # One script finds what is shown, brings it on screen and checks what is at its centre; one
    # pointer action touches that point.
    "tap": ("tap: {id: arm}", ["POST /execute/sync", "POST /actions"]),
    # One script finds the first match shown on screen (and brings an input's value along).
    "assert_visible": ("assert_visible: {id: label}", ["POST /execute/sync"]),
    # One script finds, focuses and clears the field (WebDriver's clear would blur it); then the keys.
    "type": ("type: {into: {id: name}, text: alice}", ["POST /execute/sync", "POST /element/:id/value"]),
    "assert_text input": ("assert_text: {in: {id: name}, equals: alice}", ["POST /execute/sync"]),
    "assert_text": (
        "assert_text: {in: {id: label}, equals: Hello there}",
        ["POST /execute/sync", "GET /element/:id/text"],
    ),
}


@pytest.fixture
def page_url(tmp_path: Path) -> Iterator[str]:
    import functools
    import http.server
    import threading

    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text(PAGE)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=tmp_path / "www"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()


@pytest.mark.appium
def test_web_steps_act_first_and_visible_means_on_screen(
    pytester: pytest.Pytester, appium_url: str, appium_server: ManagedAppium, page_url: str
) -> None:
    """On Chromium: the same commands as by hand; waits for a late element and for a cover to go;
    a hidden first match is passed over; a tap scrolls to its element, yet an element below the
    fold is not visible (a person can't see it) and a hidden one is never tapped."""
    steps = "".join(f"  - screenshot: before {name}\n  - {yaml}\n" for name, (yaml, _) in WEB_HAPPY.items())
    acts = """\
  - screenshot: end
  - tap: {id: late}
  - assert_text: {in: {id: late}, equals: late clicked}
  - tap: {id: covered}
  - assert_text: {in: {id: covered}, equals: covered clicked}
  - tap: {class: twin}
  - assert_text: {in: {xpath: "//button[@class='twin'][2]"}, equals: twin clicked}
  - assert_not_visible: {id: far}
  - tap: {id: far}
  - assert_text: {in: {id: far}, equals: far clicked}
"""
    sops = {
        "web.sop.yaml": f"id: web\napp: page\nsteps:\n  - launch_app\n{steps}{acts}",
        "hidden.sop.yaml": "id: hidden\napp: page\nsteps:\n  - launch_app\n  - tap: {id: hidden}\n    timeout: 0.5\n",
        "below.sop.yaml": "id: below\napp: page\nsteps:\n  - launch_app\n  - wait_for: {id: far}\n    timeout: 0.5\n",
    }
    pytester.makefile(".yaml", sop=WEB_CONFIG.format(url=page_url))
    for name, text in sops.items():
        (pytester.path / name).write_text(text)
    audit = pytester.path / "audit.jsonl"
    result = pytester.runpytest(
        "--sop",
        "--sop-appium",
        appium_url,
        "--sop-session",
        "worker",
        "--sop-evidence",
        "none",
        f"--sop-audit={audit}",
        "-p",
        "no:cacheprovider",
        *own_locks(pytester.path),
    )
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["{id: hidden} is present but hidden after *s", "  expected: {id: hidden} visible"])
    result.stdout.fnmatch_lines(
        ["{id: far} is off screen (shown, but outside the viewport) after *s", "  found:    visible texts: *"]
    )
    assert appium_server.log_path is not None
    groups = between_screenshots(requests_of(appium_server.log_path, session_of(audit)))
    assert dict(zip(WEB_HAPPY, groups[: len(WEB_HAPPY)], strict=True)) == {
        name: commands for name, (_, commands) in WEB_HAPPY.items()
    }
