"""The example suite's Allure 3 report, built with the pinned CLI and read the way a person reads it.

The single-file report is opened from disk in headless Chromium through a real Appium session;
every check goes through the rendered page (its text, clicks into a case, a loaded image), never
through the result files' names.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from appium import webdriver
from appium.options.common import AppiumOptions
from selenium.common.exceptions import ElementClickInterceptedException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from pytest_sop.appium_server import ManagedAppium, find_appium_home, free_port, open_sessions

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_example_suite import CHROMIUM_CONFIG  # noqa: E402

from conftest import ExampleRun  # noqa: E402

# pytest-timeout counts fixture setup: the first test on a worker runs the example suite (conftest example_run)
# or waits for the worker that does, which on a loaded host can take longer than the 600 s default.
pytestmark = [pytest.mark.appium, pytest.mark.timeout(1800)]

T = TypeVar("T")
# sign-in, sign-out-and-back, compose-validation, scroll-feed, change-settings, review-post, tidy-tasks,
# 4 x publish-post (rename-task is a flow: not a case; caption-review, tag handoff, is left out of a plain run)
EXAMPLE_CASES = 11
# A section of the results tree that is not expanded has no tree content beside it.
COLLAPSED = (
    "//div[@data-testid='tree-section'][not(following-sibling::div[@data-testid='tree-content'])]"
    "/span[@data-testid='tree-section-title']"
)
SIGN_IN_STEPS = [
    "launch_app",
    "wait_for {id: username}",
    "type into={id: username} text='pub?'",
    "type into={id: password} text='***'",
    "tap {text: Sign in}",
    "wait_for {id: whoami}",
    "assert_text in={id: whoami} equals='pub?'",
    "done_when visible {id: compose}",
]


def load_scale() -> float:
    """How much slower than an idle machine this one is now: waits are scaled by it (at least 1)."""
    return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


def poll(what: str, fn: Callable[[], T | None], timeout: float = 60.0) -> T:
    """``fn()`` once it is truthy; the SPA renders after the page has loaded, so everything waits,
    up to ``timeout`` seconds on an idle machine and proportionally longer on a loaded one."""
    limit = timeout * load_scale()
    deadline = time.monotonic() + limit
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"the report did not show {what} within {limit:.0f}s")
        time.sleep(0.25)


def click(element: WebElement, what: str) -> None:
    """Click ``element`` in the middle of the view, once nothing lies over it: near the top of the page
    the report's header can cover it, and panels fade in and out as it renders (seen in CI:
    ElementClickInterceptedException, the header over a case's title)."""

    def clicked() -> bool:
        element.parent.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        try:
            element.click()
        except ElementClickInterceptedException:
            return False
        return True

    poll(what, clicked)


def build_report(run: ExampleRun, out: Path) -> Path:
    """The single-file Allure 3 report of the example suite's run."""
    # A flaky case still belongs in the report; a run that did not get to every case does not.
    assert run.returncode in (0, 1), run.output[-5000:]
    assert len(list(run.results.glob("*-result.json"))) == EXAMPLE_CASES, run.output[-3000:]
    build = subprocess.run(
        [str(ROOT / "node_modules" / ".bin" / "allure"), "generate", str(run.results), "-o", str(out),
         "--config", str(ROOT / "example_suite" / "allurerc.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    assert [p.name for p in out.glob("*.html")] == ["index.html"]  # one file, openable from disk
    return out / "index.html"


@pytest.fixture(scope="session")
def report(example_run: ExampleRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the shared example run, built once per worker."""
    return build_report(example_run, tmp_path_factory.mktemp("allure-report"))


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium, desktop-sized, with the capabilities the example tests use on Chromium.

    Its Appium server is its own: the shared one must have no session open between tests."""
    home = find_appium_home(ROOT)
    assert home is not None, "Appium is not installed: run `npm ci`"
    server = ManagedAppium(home, tmp_path_factory.mktemp("report-appium") / "appium.log")
    server.start()
    caps = yaml.safe_load(CHROMIUM_CONFIG.format(url="unused"))["devices"][0]["capabilities"]
    chrome = caps["goog:chromeOptions"]
    del chrome["mobileEmulation"]
    chrome["args"] = [*chrome["args"], "--window-size=1400,1000"]
    caps["appium:chromedriverPort"] = free_port()  # a port of its own: Appium ends any chromedriver on its port
    # Idle between the report tests and the end of the worker's session: no command timeout (the
    # server is this fixture's own, and stops with it).
    caps["appium:newCommandTimeout"] = 0
    try:
        driver = webdriver.Remote(server.url, options=AppiumOptions().load_capabilities(caps))
        try:
            yield driver
        finally:
            driver.quit()
        assert open_sessions(server.url) == []
    finally:
        server.stop()


def open_report(driver: Any, index: Path, attempts: int = 3) -> None:
    """Open the report and wait for its results tree; a first render that never comes is loaded again."""
    for attempt in range(1, attempts + 1):
        driver.get("about:blank")
        driver.get(index.as_uri())
        try:
            poll("its results tree", lambda: driver.find_elements(By.CSS_SELECTOR, "[data-testid=tree-section-title]"))
            return
        except AssertionError:
            if attempt == attempts:
                raise


def unfolded(driver: Any, clicked: set[str]) -> Callable[[], bool]:
    """Whether none of the ``clicked`` sections is folded any more."""
    return lambda: not clicked & {e.id for e in driver.find_elements(By.XPATH, COLLAPSED)}


def expand_tree(driver: Any) -> list[WebElement]:
    """Click every folded section of the results tree open; the case titles it then lists."""
    for _ in range(10):
        folded = driver.find_elements(By.XPATH, COLLAPSED)
        if not folded:
            break
        for title in folded:
            click(title, f"section {title.text!r} clickable")
        poll("the sections unfolded", unfolded(driver, {title.id for title in folded}))
    return poll("case titles", lambda: driver.find_elements(By.CSS_SELECTOR, "[data-testid=tree-leaf-title]"))


def open_case(driver: Any, index: Path, name: Callable[[str], bool]) -> None:
    open_report(driver, index)
    leaves = [leaf for leaf in expand_tree(driver) if name(leaf.text)]
    assert leaves, [leaf.text for leaf in expand_tree(driver)]
    click(leaves[0], f"case {leaves[0].text!r} clickable")
    poll("the case's steps", lambda: driver.find_elements(By.CSS_SELECTOR, "[data-testid=test-result-steps-root]"))
    toggle = driver.find_element(By.CSS_SELECTOR, "[data-testid=test-result-steps-subtree-toggle]")
    click(toggle, "the steps' toggle clickable")  # unfold every step, nested ones too


def step_titles(driver: Any) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "[data-testid=test-result-step-title]")]


def matches(pattern: list[str], titles: list[str]) -> bool:
    """``titles`` equals ``pattern`` where ``?`` in the pattern stands for any one character."""
    return len(pattern) == len(titles) and all(
        len(p) == len(t) and all(a in ("?", b) for a, b in zip(p, t, strict=True))
        for p, t in zip(pattern, titles, strict=True)
    )


def test_report_lists_every_example_sop(report: Path, browser: Any) -> None:
    open_report(browser, report)
    cases = {leaf.text for leaf in expand_tree(browser)}
    for name in ("sign-in", "sign-out-and-back", "compose-validation", "scroll-feed", "change-settings"):
        assert name in cases, cases
    assert any(case.startswith("publish-post[") for case in cases), cases
    sections = {e.text for e in browser.find_elements(By.CSS_SELECTOR, "[data-testid=tree-section-title]")}
    assert {f"{name}.sop.yaml" for name in ("sign-in", "sign-out", "publish-post", "settings")} <= sections
    # The overview names what the run ran on, from environment.properties.
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "pytest-sop" in body and "Appium.server" in body


def test_report_lists_every_case_of_a_sop_with_inputs_and_accounts(report: Path, browser: Any) -> None:
    open_report(browser, report)
    cases = sorted(leaf.text for leaf in expand_tree(browser))
    publish = [case for case in cases if case.startswith("publish-post[")]
    assert publish == [f"publish-post[{row}-publisher-{n}]" for row in ("cat", "sunset") for n in (1, 2)]
    assert len(cases) == EXAMPLE_CASES


def test_report_shows_a_cases_steps_and_labels(report: Path, browser: Any) -> None:
    open_case(browser, report, lambda name: name == "sign-in")

    def all_steps() -> list[str] | None:
        titles = step_titles(browser)
        return titles if len(titles) >= len(SIGN_IN_STEPS) else None

    titles = poll("every step of sign-in", all_steps)
    assert matches(SIGN_IN_STEPS, titles), titles
    more = [b for b in browser.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Show more"]
    if more:  # the report lists the first labels and folds the rest
        click(more[0], "'Show more' clickable")
        poll("every label", lambda: "Show less" in browser.find_element(By.TAG_NAME, "body").text)
    body = browser.find_element(By.TAG_NAME, "body").text
    for label in ("sop\nsign-in", "owner\nsocial-ops", "severity\nblocker", "operator_signed\nunsigned"):
        assert label in body, body[:3000]
    assert "device\n" in body and "account\npublisher-" in body and "SOP file sops/sign-in.sop.yaml" in body


def test_report_shows_a_screenshot(report: Path, browser: Any) -> None:
    """publish-post takes a screenshot named 'posted': opened in the report, it is a loaded picture."""
    open_case(browser, report, lambda name: name.startswith("publish-post["))
    poll("the screenshot step", lambda: "screenshot 'posted'" in step_titles(browser))
    headers = browser.find_elements(By.CSS_SELECTOR, "[data-testid=test-result-attachment-header]")
    posted = [h for h in headers if "posted" in h.text.split("\n") and "image/png" in h.text]
    assert posted, [h.text for h in headers]
    click(posted[-1], "the screenshot's header clickable")

    def loaded() -> list[dict[str, Any]] | None:
        shown = browser.execute_script(
            "return [...document.querySelectorAll('[data-testid=test-result-attachment] img')].map(i => "
            "({src: i.src.slice(0, 5), width: i.naturalWidth, height: i.naturalHeight, done: i.complete}))"
        )
        return [img for img in shown if img["done"] and img["width"] > 0] or None

    images = poll("the screenshot, loaded", loaded)
    assert all(img["src"] in ("blob:", "data:") for img in images), images
    assert all(img["height"] > img["width"] > 0 for img in images), images  # a phone-shaped screen


def body_text(driver: Any) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


def show_every_label(driver: Any) -> None:
    more = [b for b in driver.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Show more"]
    for button in more:  # the report lists the first labels and parameters and folds the rest
        click(button, "'Show more' clickable")
    if more:
        poll("every label", lambda: "Show less" in body_text(driver))


def test_report_wraps_attempts_only_when_a_case_was_retried(report: Path, browser: Any) -> None:
    """publish-post has retry: {attempts: 2}; a case that passed at once reads like any other."""
    open_case(browser, report, lambda name: name.startswith("publish-post["))
    titles = poll("the case's steps", lambda: step_titles(browser) or None)
    attempts = [t for t in titles if t.startswith("attempt ")]
    assert attempts in ([], ["attempt 1 of 2", "attempt 2 of 2"]), titles
    if not attempts:
        assert titles[0] == "run sign-in", titles


def test_report_shows_a_failed_optional_step_as_broken(report: Path, browser: Any) -> None:
    """change-settings' optional 'Open settings by its label' finds nothing on the web: broken, the case passed."""
    open_case(browser, report, lambda name: name == "change-settings")
    optional = "Open settings by its label (the web app has none, so this may be skipped)"
    poll("the optional step", lambda: optional in step_titles(browser))
    status = browser.execute_script(
        "const t = [...document.querySelectorAll('[data-testid=test-result-step-title]')]"
        ".find(e => e.textContent.trim() === arguments[0]);"
        "const header = t.closest('[data-testid=test-result-step-header]') || t.parentElement;"
        "return header.outerHTML;",
        optional,
    )
    assert "broken" in status and "passed" not in status, status
    assert re.search(r"\{accessibility_id: Settings\} is not found after \d+\.\ds", body_text(browser))


def test_report_shows_sop_version_link_and_approval(report: Path, browser: Any) -> None:
    open_case(browser, report, lambda name: name.startswith("review-post"))
    poll("the case's steps", lambda: step_titles(browser) or None)
    show_every_label(browser)
    body = body_text(browser)
    assert "approved_by\ndemo-lead" in body, body[:3000]
    assert "approval announcement-ok" in body and "approved by demo-lead at 2026-11-25T09:00:00Z" in body
    assert "SOP sha256" in body
    in_git = subprocess.run(["git", "-C", str(ROOT), "rev-parse"], capture_output=True).returncode == 0
    assert ("SOP commit" in body) == in_git, body[:3000]  # a checkout: the commit the SOP ran at
    assert "pytest_sop." not in body
    # Relative to the project (the result's url is checked in test_report_record). Allure 3 makes only
    # web addresses clickable (sop_source_url); no anchor points at a machine's file:// path.
    (link,) = [e for e in browser.find_elements(By.CSS_SELECTOR, "[data-testid=test-result-meta-link]")
               if "SOP file" in e.text]  # fmt: skip
    assert link.text == "SOP file sops/review-post.sop.yaml"
    hrefs = [a.get_attribute("href") or "" for a in browser.find_elements(By.TAG_NAME, "a")]
    assert not [h for h in hrefs if h.startswith("file:") and "sop.yaml" in h], hrefs


def test_report_has_the_timeline_and_audit_log_as_global_attachments(report: Path, browser: Any) -> None:
    open_report(browser, report)
    tab = poll(
        "the Global Attachments tab",
        lambda: [e for e in browser.find_elements(By.XPATH, "//*[starts-with(normalize-space(.), 'Global Attachments')]")
                 if e.tag_name in ("button", "a") or e.get_attribute("role") == "tab"],
    )  # fmt: skip
    assert tab[0].text.split()[-1] == "2", tab[0].text  # each once
    click(tab[0], "the Global Attachments tab clickable")
    poll("the run's attachments", lambda: "device timeline" in body_text(browser) and "audit log" in body_text(browser))
    headers = browser.find_elements(By.CSS_SELECTOR, "[data-testid=test-result-attachment-header]")
    timeline = [h for h in headers if "device timeline" in h.text]
    assert timeline, [h.text for h in headers]
    click(timeline[0], "the timeline's header clickable")

    def loaded() -> list[dict[str, Any]] | None:
        shown = browser.execute_script(
            "return [...document.querySelectorAll('img')].map(i => ({width: i.naturalWidth, done: i.complete,"
            " src: i.src.slice(0, 5)}))"
        )
        return [
            img for img in shown if img["done"] and img["width"] >= 480 and img["src"] in ("blob:", "data:")
        ] or None

    poll("the device timeline, loaded", loaded)
