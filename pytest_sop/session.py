"""The only module that talks to Appium: capabilities, sessions, locators per platform, device commands."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pkgutil
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

from appium import webdriver
from appium.options.common import AppiumOptions
from appium.webdriver.appium_connection import AppiumConnection
from appium.webdriver.client_config import AppiumClientConfig
from appium.webdriver.common.appiumby import AppiumBy
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from urllib3.exceptions import HTTPError

from . import appium_server, masking
from .appium_server import free_port
from .background import background
from .errors import DeviceError, UnsupportedHere
from .keys import ANDROID_KEYS
from .locating import (
    FIND_JS,
    REFINED,
    native_elements,
    prepare,
    web_elements,
    web_texts_on_screen,
    xpath_literal,
)
from .model import App, Device, Locator, SuiteConfig
from .templates import render_setting
from .transport import Sent, kept_connections, kept_open_applies

DEFAULT_CAPABILITIES = {"appium:newCommandTimeout": 120}
# press_key names (keys.py) as a browser's keys; BACK is the browser's back button, not a key.
WEB_KEYS: dict[str, str] = {
    "ENTER": Keys.ENTER, "TAB": Keys.TAB, "DELETE": Keys.DELETE, "BACKSPACE": Keys.BACKSPACE,
    "SPACE": Keys.SPACE, "ESCAPE": Keys.ESCAPE, "HOME": Keys.HOME, "END": Keys.END, "UP": Keys.ARROW_UP,
    "DOWN": Keys.ARROW_DOWN, "LEFT": Keys.ARROW_LEFT, "RIGHT": Keys.ARROW_RIGHT, "PAGE_UP": Keys.PAGE_UP,
    "PAGE_DOWN": Keys.PAGE_DOWN,
}  # fmt: skip

T = TypeVar("T")
# The first match a person could see, found and checked in the page in one command: displayed
# (Selenium's own isDisplayed atom, what is_displayed() runs) and, when asked, inside the viewport,
# since is_displayed() is true for elements scrolled out of sight and a phone user can't see those.
# What a field shows comes along: an input's value (a button's label, a text field's content), a
# select's chosen option; a checkbox shows no text. The locator leads the script, so
# Appium's log, which shortens long request bodies, still shows what was looked for.
# (sopFind, sopInView: locating.FIND_JS, which also resolves a refined locator's refinements.)
_FIND_SHOWN = """const isShown = (%s);
%s
for (const el of sopFind(how, what, isShown)) {
  if (!isShown(el)) continue;
  if (onScreen && !sopInView(el)) continue;
  if (el.localName === "select") return [el, el.selectedIndex < 0 ? "" : el.options[el.selectedIndex].label];
  const noText = ["checkbox", "radio", "file", "range", "color", "image", "hidden"];
  const field = el.localName === "textarea" || (el.localName === "input" && !noText.includes(el.type));
  return [el, field ? String(el.value) : null];
}
return null;"""
_find_shown_script: str | None = None


@functools.cache
def displayed_atom() -> str:
    """Selenium's isDisplayed atom: what is_displayed() runs, as a JavaScript function."""
    atom = pkgutil.get_data("selenium.webdriver.remote", "isDisplayed.js")
    if atom is None:  # pragma: no cover - part of every selenium wheel
        raise RuntimeError("selenium's isDisplayed.js is missing")
    return atom.decode("utf-8")


def find_shown_script() -> str:
    """The script body (``how``, ``what``, ``onScreen`` set before it): ``[element, its field text]`` or null."""
    global _find_shown_script
    if _find_shown_script is None:
        _find_shown_script = _FIND_SHOWN % (displayed_atom(), FIND_JS)
    return _find_shown_script


def appium_reason(exc: BaseException) -> str:
    """Appium's own message, without Selenium's stack trace lines."""
    if isinstance(exc, WebDriverException):
        msg = (exc.msg or type(exc).__name__).strip()
        return msg.split("\nStacktrace:")[0].strip()
    return str(exc) or type(exc).__name__


def kind_of(caps: Mapping[str, Any]) -> str:
    """web, android, ios or fake: decides how locators and device commands are sent."""
    automation = str(caps.get("appium:automationName", "")).lower()
    if automation == "fake":
        return "fake"
    if automation in ("chromium", "chrome", "safari", "gecko") or caps.get("browserName"):
        return "web"
    if automation in ("xcuitest",) or str(caps.get("platformName", "")).lower() == "ios":
        return "ios"
    return "android"


def device_position(config: SuiteConfig, device: Device) -> int:
    ids = [d.id for d in config.devices]
    return ids.index(device.id) if device.id in ids else len(ids)


# Parallel sessions on one host need their own ports; a device's position in the pool picks them,
# and its lease makes them exclusive. (automation kind, capability) -> first port.
PORT_BASES = {
    "android": {"appium:systemPort": 8200, "appium:mjpegServerPort": 7810, "appium:chromedriverPort": 9600},
    "ios": {"appium:wdaLocalPort": 8100, "appium:mjpegServerPort": 9100},
}


SENSITIVE_HEADER = "X-Appium-Is-Sensitive"


class SensitiveConnection(AppiumConnection):
    """Marks every request whose body carries a secret the run knows with ``X-Appium-Is-Sensitive``,
    so Appium masks the body (and the driver's arguments) in its own log."""

    _sensitive = False

    def _get_connection_manager(self) -> Any:
        if kept_open_applies(self._client_config, self._proxy_url):
            return kept_connections
        return super()._get_connection_manager()  # type: ignore[no-untyped-call]

    def send_now(self, method: str, path: str) -> Sent | None:
        """A request without a body on its way now, its response read later (:meth:`Sent.response`);
        None where this connection goes Selenium's own way (https, a proxy, urllib3 options)."""
        if not kept_open_applies(self._client_config, self._proxy_url):
            return None
        url = f"{self._client_config.remote_server_addr}{path}"
        headers = self.get_remote_connection_headers(urlsplit(url), self._client_config.keep_alive)
        headers.update(self._client_config.get_auth_header() or {})
        return kept_connections.send(method, url, headers=headers, timeout=self._client_config.timeout)

    def _request(self, method: str, url: str, body: Any = None) -> dict[str, Any]:
        self._sensitive = isinstance(body, str) and masking.known().found_in(body)
        try:
            return dict(super()._request(method, url, body))
        finally:
            self._sensitive = False

    def get_remote_connection_headers(  # type: ignore[override]  # per connection, not per class
        self, parsed_url: Any, keep_alive: bool = True
    ) -> dict[str, Any]:
        headers = dict(super().get_remote_connection_headers(parsed_url, keep_alive=keep_alive))
        if self._sensitive:
            headers[SENSITIVE_HEADER] = "true"
        return headers


def _local(endpoint: str) -> bool:
    return (urlsplit(endpoint).hostname or "") in ("127.0.0.1", "localhost", "::1")


def with_profile(caps: dict[str, Any], endpoint: str, folder: str | None = None) -> dict[str, Any]:
    """Chromium on this host (Appium's Chromium driver) gets a profile folder: ``folder``, the device's
    own that outlives the session as a phone's app data does (a paused case finds its page's storage
    again), else one of the run's own, which the run removes at its end."""
    options = caps.get("goog:chromeOptions", {})
    profile_root = appium_server.profile_root
    chromium = str(caps.get("appium:automationName", "")).lower() == "chromium"
    if (folder is None and profile_root is None) or not chromium or not _local(endpoint):
        return caps
    if not isinstance(options, dict):
        return caps
    args = [str(a) for a in options.get("args", [])]
    if any(a.startswith("--user-data-dir") for a in args):
        return caps
    if folder is not None:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    elif profile_root is not None:
        folder = profile_root()
    options = {**options, "args": [*args, f"--user-data-dir={folder}"]}
    return {**caps, "goog:chromeOptions": options}


def idle_limit(caps: Mapping[str, Any]) -> float:
    """The session's newCommandTimeout in seconds, as Appium reads it (60 when not given)."""
    given = caps.get("appium:newCommandTimeout", caps.get("newCommandTimeout", 60))
    try:
        return max(float(given), 0.0)
    except (TypeError, ValueError):
        return 60.0


def resuming(caps: dict[str, Any]) -> dict[str, Any]:
    """A paused case's next session: the app as the person left it, not reset and not relaunched."""
    if kind_of(caps) in ("android", "ios"):
        return {**caps, "appium:noReset": True, "appium:autoLaunch": False}
    return caps


def capabilities(device: Device, app: App | None, resolve: Callable[[Any], Any], position: int = 0) -> dict[str, Any]:
    """App + device + defaults; secrets resolved now, at session time only; ports per device position."""
    caps: dict[str, Any] = dict(DEFAULT_CAPABILITIES)
    if app is not None:
        caps.update(app.capabilities)
    caps.update(device.capabilities)
    caps = {k: resolve(v) for k, v in caps.items()}
    for name, base in PORT_BASES.get(kind_of(caps), {}).items():
        caps.setdefault(name, base + position)
    if kind_of(caps) == "web":
        # An emulated phone is a browser any pool may name: its chromedriver gets a free port,
        # since Appium ends whatever chromedriver already listens on the one it is given.
        caps.setdefault("appium:chromedriverPort", free_port())
    return caps


def session_key(
    device: Device, app: App | None, endpoint: str, caps: dict[str, Any], profile: str | None
) -> tuple[Any, ...]:
    """What a session is made with: two cases with equal keys can have the same session made for them
    (a chromedriver's port is any free one)."""
    made_with = {name: value for name, value in caps.items() if name != "appium:chromedriverPort"}
    return (device.id, app.id if app else None, endpoint, made_with, profile)


@dataclass
class DeviceSession:
    """One Appium session on one device, with the commands SOP actions need."""

    device: Device
    app: App | None
    endpoint: str
    driver: Any
    kind: str
    # The app's url with its ${env.NAME} references filled in when the session was made.
    url: str | None = None
    # A web device's profile is its own and outlives sessions: what the last case left there is
    # cleared at this session's first launch_app, as a new profile was before (see with_profile).
    clear_at_launch: bool = False
    # Seconds without a command after which Appium ends the session (its newCommandTimeout; 0: never).
    idle_limit: float = 0.0
    # When it was made (time.monotonic()): a session made ahead of its case waits idle meanwhile.
    made_at: float = field(default_factory=time.monotonic)
    # The deletion started by end_soon, which quit() then waits for.
    _ending: Future[None] | Sent | None = field(default=None, init=False, repr=False)

    @classmethod
    def create(
        cls, device: Device, app: App | None, endpoint: str, caps: dict[str, Any], mask: Callable[[str], str] = str,
        profile: str | None = None,
    ) -> DeviceSession:  # fmt: skip
        # Before the session: an unset ${env.NAME} in the url stops the case before it starts.
        url = render_setting(app.url, f"apps.{app.id}.url ({app.pos})") if app is not None and app.url else None
        caps = with_profile(caps, endpoint, profile)
        connection = SensitiveConnection(client_config=AppiumClientConfig(remote_server_addr=endpoint))
        try:
            driver = webdriver.Remote(connection, options=AppiumOptions().load_capabilities(caps))
        except WebDriverException as e:
            # Appium may echo capabilities, and they may hold secrets.
            reason = f"session not created on {endpoint}: {appium_reason(e)}"
            raise DeviceError(device.id, masking.mask(mask(reason))) from None
        except (OSError, HTTPError) as e:
            raise DeviceError(device.id, masking.mask(mask(f"Appium at {endpoint} cannot be reached: {e}"))) from None
        return cls(
            device, app, endpoint, driver, kind_of(caps), url, clear_at_launch=profile is not None,
            idle_limit=idle_limit(caps),
        )  # fmt: skip

    @property
    def session_id(self) -> str:
        return str(self.driver.session_id)

    def may_have_ended(self) -> bool:
        """Idle since it was made for half its newCommandTimeout or more: Appium may have ended it
        (a session made ahead of its case waits through the other plugins' setup)."""
        return self.idle_limit > 0 and time.monotonic() - self.made_at >= self.idle_limit / 2

    def alive(self) -> bool:
        try:
            self.driver.get_window_rect()
        except (WebDriverException, OSError, HTTPError):
            return False
        return True

    def reset_app(self) -> None:
        """Between cases that share this session: the app as a new session would find it, nothing the
        last case typed left on screen."""
        if self.kind == "web":
            self._forget_site()
            self.driver.get("about:blank")
        elif self.kind in ("android", "ios"):
            self.close_app()
        else:
            # The fake driver keeps its app for the session's life: empty every field by hand.
            for box in self.driver.find_elements(AppiumBy.XPATH, "//MockInputField"):
                box.clear()

    def _forget_site(self) -> None:
        """The open site's cookies and storage, gone."""
        with contextlib.suppress(WebDriverException):
            self.driver.execute_script("try { localStorage.clear(); sessionStorage.clear(); } catch (e) {}")
        self.driver.delete_all_cookies()

    def current_url(self) -> str | None:
        """The page a web case is on (to come back to it after a pause); None elsewhere."""
        if self.kind != "web":
            return None
        try:
            return str(self.driver.current_url)
        except (WebDriverException, OSError, HTTPError):
            return None

    def end_soon(self) -> None:
        """Start deleting the session: the case needs it no more, and the device's next session waits
        for this one to end (:meth:`quit` waits for it too). The DELETE is sent from this thread at
        once; handing it to another thread first would cost the device that thread's time to wake."""
        if self._ending is None:
            sent = self._send_delete()
            self._ending = background.submit(self.delete) if sent is None else sent

    def quit(self) -> None:
        """The session deleted; with :meth:`end_soon` before, once its DELETE is answered (read by
        the first thread to ask)."""
        ending = self._ending
        if isinstance(ending, Sent):
            with contextlib.suppress(OSError, HTTPError):  # as delete() ignores them
                ending.response()
            self.driver.stop_client()  # the rest of driver.quit()
            self.driver.command_executor.close()
        elif ending is not None:
            ending.result()
        else:
            self.delete()

    def _send_delete(self) -> Sent | None:
        """Selenium's DELETE of the session, sent now; None: this connection goes Selenium's own way."""
        driver = self.driver
        executor = driver.command_executor
        bidi = getattr(driver, "_websocket_connection", None) or getattr(driver, "_request", None)
        if not isinstance(executor, SensitiveConnection) or bidi is not None:
            return None  # BiDi's socket and handlers are closed as driver.quit() closes them
        try:
            return executor.send_now("DELETE", f"/session/{driver.session_id}")
        except (OSError, HTTPError):
            return None  # delete() tries again, and finds the server gone or says nothing

    def delete(self) -> None:
        """Delete the session now. The server may be gone; then nothing else holds the session either."""
        with contextlib.suppress(WebDriverException, OSError, HTTPError):
            self.driver.quit()

    # -- finding elements -------------------------------------------------------------
    def by(self, locator: Locator, value: str) -> tuple[str, str]:
        s, k = locator.strategy, self.kind
        if s == "uiautomator":
            if k != "android":
                raise UnsupportedHere(f"uiautomator locators work on Android only, not on {k}")
            return AppiumBy.ANDROID_UIAUTOMATOR, value
        if k == "web":
            css = {"id": f'[id="{value}"]', "accessibility_id": f'[aria-label="{value}"]', "class": f".{value}",
                   "css": value}.get(s)  # fmt: skip
            if css is not None:
                return AppiumBy.CSS_SELECTOR, css
            if s == "text":
                return AppiumBy.XPATH, f"//*[text()[normalize-space(.)={xpath_literal(value)}]]"
            return AppiumBy.XPATH, value
        if s == "text":
            return AppiumBy.XPATH, f"//*[@text={xpath_literal(value)}]"
        return {
            "id": AppiumBy.ID, "accessibility_id": AppiumBy.ACCESSIBILITY_ID, "xpath": AppiumBy.XPATH,
            "css": AppiumBy.CSS_SELECTOR, "class": AppiumBy.CLASS_NAME,
        }[s], value  # fmt: skip

    def find(self, by: tuple[str, str]) -> WebElement:
        """The first match, as a hand-written client finds it (NoSuchElementException if none)."""
        if by[0] == REFINED:
            found = self.find_all(by)
            if not found:
                raise NoSuchElementException("no element matches the refined locator")
            return found[0]
        el: WebElement = self.driver.find_element(*by)
        return el

    def find_all(self, by: tuple[str, str]) -> list[WebElement]:
        if by[0] == REFINED:  # refinements the page's script resolves (web), or rects (below on a phone)
            return web_elements(self, by[1]) if self.kind == "web" else native_elements(self, by[1])
        return list(self.driver.find_elements(*by))

    def _shown_in_page(self, by: tuple[str, str], on_screen: bool) -> tuple[WebElement, str | None] | None:
        # JSON literals are JavaScript literals: the locator cannot break out of its string.
        what = prepare(self, by[1]) if by[0] == REFINED else by[1]
        head = f"const how = {json.dumps(by[0])}, what = {json.dumps(what)}, onScreen = {json.dumps(on_screen)};\n"
        found = self.driver.execute_script(head + find_shown_script())
        return (found[0], found[1]) if found else None

    def visible(self, by: tuple[str, str], on_screen: bool = True) -> WebElement | None:
        """The first match a person could see now: displayed and, on the web, inside the viewport
        (unless ``on_screen`` is false: a click scrolls to its element itself).

        One command on the web; on a phone the first match and its displayed state (two), and
        only when that one is hidden, every match."""
        if self.kind == "web":
            shown = self._shown_in_page(by, on_screen)
            return shown[0] if shown else None
        try:
            first = self.find(by)
            if first.is_displayed():
                return first
        except (NoSuchElementException, StaleElementReferenceException):
            return None
        return self.visible_among_all(by)

    def visible_among_all(self, by: tuple[str, str]) -> WebElement | None:
        """As :meth:`visible`, every match asked at once: for waits that expect none shown."""
        if self.kind == "web":
            shown = self._shown_in_page(by, on_screen=True)
            return shown[0] if shown else None
        for el in self.find_all(by):
            try:
                if el.is_displayed():
                    return el
            except StaleElementReferenceException:
                continue
        return None

    def read_text(self, by: tuple[str, str]) -> str | None:
        """The text a person reads in the first match they could see, an input's value included;
        None while there is none.

        The web: one command finds what is shown, a second reads its text (none for an input,
        whose value came with it). A phone: the first match's text, as a hand-written client
        reads it (two commands); Android finds only what is on screen, and on iOS, whose finds
        include hidden elements, its displayed state is asked too."""
        if self.kind == "web":
            shown = self._shown_in_page(by, on_screen=True)
            if shown is None:
                return None
            el, value = shown
            return value if value is not None else str(el.text)
        try:
            el = self.find(by)
        except NoSuchElementException:
            return None
        if self.kind == "ios" and not el.is_displayed():
            other = self.visible(by)
            return None if other is None else str(other.text)
        return str(el.text)

    def visible_texts(self, limit: int = 12) -> list[str]:
        """Texts a person would see now: what a failure message shows near a missing element."""
        if self.kind == "web":  # one script, and only what is on screen
            return web_texts_on_screen(self, limit)
        xpath = "//*[text()[normalize-space(.)!='']]" if self.kind == "web" else "//*[@text!='']"
        texts: list[str] = []
        try:
            for el in self.driver.find_elements(AppiumBy.XPATH, xpath)[:200]:
                t = (el.text or el.get_attribute("text") or "").strip()
                if t and t not in texts and el.is_displayed():
                    texts.append(t.splitlines()[0][:60])
                if len(texts) >= limit:
                    break
        except (WebDriverException, NoSuchElementException):
            pass
        return texts

    # -- device commands --------------------------------------------------------------
    def launch_app(self) -> None:
        if self.kind == "web":
            if self.url is None:
                raise UnsupportedHere("launch_app on a web device needs the app's url in sop.yaml")
            self.driver.get(self.url)
            if self.clear_at_launch:
                self.clear_at_launch = False
                self._forget_site()
                self.driver.get(self.url)
        elif self.kind in ("android", "ios"):
            app_id = self.app_id()
            if app_id:
                self.driver.activate_app(app_id)
        # The fake driver opens its app with the session; there is nothing to start.

    def close_app(self) -> None:
        if self.kind == "web":
            self.driver.get("about:blank")
        elif self.kind in ("android", "ios"):
            app_id = self.app_id()
            if app_id:
                self.driver.terminate_app(app_id)

    def app_id(self) -> str | None:
        caps = self.app.capabilities if self.app else {}
        value = caps.get("appium:appPackage") or caps.get("appium:bundleId")
        return str(value) if value else None

    def open_url(self, url: str) -> None:
        if self.kind == "web":
            self.driver.get(urljoin(self.url, url) if self.url else url)
        elif self.kind == "android":
            self.driver.execute_script("mobile: deepLink", {"url": url, "package": self.app_id()})
        else:
            self.driver.get(url)

    def back(self) -> None:
        self.driver.back()

    def press_key(self, key: str) -> None:
        """One key by its press_key name (keys.py); a name this platform has no key for is an error."""
        name = key.upper()
        if self.kind == "android":
            if name not in ANDROID_KEYS:
                raise UnsupportedHere(f"Android has no key {key!r}")
            self.driver.press_keycode(ANDROID_KEYS[name])
        elif self.kind == "web":
            if name == "BACK":
                self.driver.back()
                return
            if name not in WEB_KEYS:
                raise UnsupportedHere(f"a web page has no key {key!r}; it has: BACK, {', '.join(WEB_KEYS)}")
            self.driver.switch_to.active_element.send_keys(WEB_KEYS[name])
        else:
            raise UnsupportedHere(f"press_key is not available on the {self.kind} driver")

    def swipe(self, direction: str) -> None:
        """Swipe the finger in ``direction``: swiping up moves the content up (scrolls down)."""
        if self.kind == "web":
            dy = {"up": 0.6, "down": -0.6}.get(direction, 0.0)
            dx = {"left": 0.6, "right": -0.6}.get(direction, 0.0)
            self.driver.execute_script(
                "window.scrollBy(arguments[0] * window.innerWidth, arguments[1] * window.innerHeight)", dx, dy
            )
            return
        rect = self.driver.get_window_rect()
        w, h = rect["width"], rect["height"]
        cx, cy = w // 2, h // 2
        dx = {"left": -1, "right": 1}.get(direction, 0) * int(w * 0.3)
        dy = {"up": -1, "down": 1}.get(direction, 0) * int(h * 0.3)
        self.driver.swipe(cx - dx, cy - dy, cx + dx, cy + dy, 400)

    def scroll_into_view(self, el: WebElement) -> None:
        if self.kind == "web":
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)

    def screenshot(self) -> bytes:
        return bytes(self.driver.get_screenshot_as_png())

    def page_source(self) -> str:
        return str(self.driver.page_source)

    def device_log(self, limit: int = 2000) -> str:
        """The device's own log where the platform has one (logcat on Android), newest lines last."""
        if self.kind != "android":
            return ""
        entries = self.driver.get_log("logcat")[-limit:]
        return "\n".join(str(e.get("message", "")) for e in entries)


def poll(fn: Callable[[], T | None], timeout: float, interval: float = 0.1) -> T | None:
    """Call ``fn`` until it returns something other than None, or the timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = fn()
        except StaleElementReferenceException:
            value = None
        if value is not None or time.monotonic() >= deadline:
            return value
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
