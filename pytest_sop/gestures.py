"""What a finger and a keyboard do on each platform: taps at an element's centre, double taps, long
presses, swipes on an element, drags, typing that keeps the field's focus, reload, page scripts.

The web (Appium's Chromium driver): one script finds the element a person could see, brings it on
screen and works out the centre of its visible part and which element a finger there would touch;
W3C pointer actions then touch exactly that point (a touch pointer when the page takes touch, as in
mobile emulation). ChromeDriver's own element click picks its point in a viewport of its own, which
in mobile emulation of a page without a viewport meta tag is not the page's: it landed beside the
centre, on a neighbour, without a word.

Android (UiAutomator2): the driver's ``mobile:`` gestures on the element (doubleClickGesture,
longClickGesture, swipeGesture, dragGesture). Written from the driver's documentation and not run
here: this machine has no Android device.

Other drivers (the fake driver, iOS): W3C pointer actions at the centre of the element's rect. The
fake driver accepts and logs them (its app does not react to them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from selenium.common.exceptions import ElementClickInterceptedException, NoSuchElementException
from selenium.webdriver.remote.command import Command
from selenium.webdriver.remote.webelement import WebElement

from .errors import StepFailed, UnsupportedHere
from .locating import REFINED, prepare
from .session import DeviceSession, find_shown_script

DOUBLE_TAP_GAP = 0.1  # seconds between the two taps of a double tap: well inside every platform's limit
TAP_HOLD = 0.05  # a tap's finger on the glass
SWIPE_SPAN = 0.4  # a swipe on an element runs from its centre this share of its size (ends inside it)
DRAG_MOVE = 0.5  # seconds a drag takes from one element to the other


class TapIntercepted(ElementClickInterceptedException):
    """Another element is where the finger would land: the step waits for it to go, then fails naming it."""

    def __init__(self, other: str) -> None:
        super().__init__(f"another element would receive the tap: {other}")
        self.other = other


@dataclass(frozen=True)
class Point:
    """Where a finger lands on the web: viewport pixels of the page, the element it is on, and its size."""

    element: WebElement
    x: int
    y: int
    width: float
    height: float
    touch: bool  # the page takes touch (mobile emulation): touch pointers, as a phone sends


Target = Point | WebElement

# Finds the first match a person could see (session's script, as a function), brings it on screen,
# and answers the centre of its visible part (WebDriver's in-view centre point, in the page's own
# viewport) and what a finger there would touch: the element, one inside it, or another one.
_TARGET = """const firstShown = (how, what, onScreen) => {
%s
};
const describe = (e) => {
  let s = e.localName + (e.id ? "#" + e.id : "");
  for (const c of Array.from(e.classList).slice(0, 3)) s += "." + c;
  const text = (e.innerText || "").trim().split("\\n")[0].slice(0, 40);
  return text ? s + " " + JSON.stringify(text) : s;
};
const centre = (el) => {
  const r = el.getBoundingClientRect();
  const x = Math.floor((Math.max(r.left, 0) + Math.min(r.right, innerWidth)) / 2);
  const y = Math.floor((Math.max(r.top, 0) + Math.min(r.bottom, innerHeight)) / 2);
  return [x, y, r.width, r.height];
};
const onScreen = (el) => {
  const r = el.getBoundingClientRect();
  return r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth;
};
const aim = (el) => {
  // An option of a closed list has no place on screen: WebDriver's click chooses it, as a person
  // does in the list the select opens.
  if (el.localName === "option") return [el, -1, -1, 0, 0, null, false];
  if (!onScreen(el)) el.scrollIntoView({block: "center", inline: "center"});
  const [x, y, w, h] = centre(el);
  const hit = document.elementFromPoint(x, y);
  const other = hit === el || (hit && el.contains(hit)) ? null : hit ? describe(hit) : "nothing (outside the page)";
  return [el, x, y, w, h, other, navigator.maxTouchPoints > 0];
};
"""
_AIM = "const found = firstShown(how, what, false);\nreturn found ? aim(found[0]) : null;"
# Both ends of a drag: the first brought on screen; the second must then be on screen too.
_AIM_BOTH = """const a = firstShown(how, what, false), b = firstShown(how2, what2, false);
if (!a || !b) return {missing: [a ? null : "from", b ? null : "to"].filter(Boolean)};
const r = b[0].getBoundingClientRect();
const seen = r.bottom > 0 && r.right > 0 && r.top < innerHeight && r.left < innerWidth;
return {from: aim(a[0]), to: seen ? centre(b[0]).slice(0, 2) : null};"""
# A field found as a person would, focused, and emptied without losing the focus (WebDriver's
# Element Clear blurs it: an inline editor that saves on blur saved it empty). Appending puts the
# caret at the end, where WebDriver's typing into an unfocused field would put it.
_FIELD = """const found = firstShown(how, what, false);
if (!found) return null;
const el = found[0];
if (document.activeElement !== el) el.focus();
if (el.isContentEditable) {
  const range = document.createRange();
  range.selectNodeContents(el);
  if (!clear) range.collapse(false);
  getSelection().removeAllRanges();
  getSelection().addRange(range);
  if (clear) document.execCommand("delete");
} else if ("value" in el) {
  if (clear && el.value !== "") {
    try { el.select(); document.execCommand("delete"); } catch (e) {}
    if (el.value !== "") {
      el.value = "";
      el.dispatchEvent(new Event("input", {bubbles: true}));
    }
  } else if (!clear) {
    try { el.setSelectionRange(el.value.length, el.value.length); } catch (e) {}
  }
}
return el;"""
_script_cache: dict[str, str] = {}


def _script(tail: str) -> str:
    if tail not in _script_cache:
        _script_cache[tail] = _TARGET % find_shown_script() + tail
    return _script_cache[tail]


def _head(**values: Any) -> str:
    # JSON literals are JavaScript literals: a locator cannot break out of its string.
    return "".join(f"const {k} = {json.dumps(v)};\n" for k, v in values.items())


def _what(session: DeviceSession, by: tuple[str, str]) -> str:
    """The locator as the page's script takes it: a refined one with its patterns resolved."""
    return prepare(session, by[1]) if by[0] == REFINED else by[1]


def _point(found: list[Any]) -> Point:
    el, x, y, w, h, other, touch = found
    if other is not None:
        raise TapIntercepted(str(other))
    return Point(el, int(x), int(y), float(w), float(h), bool(touch))


def web_target(session: DeviceSession, by: tuple[str, str]) -> Point:
    """The first match a person could see, on screen, with the centre a finger would touch: one command."""
    found = session.driver.execute_script(_head(how=by[0], what=_what(session, by)) + _script(_AIM))
    if not found:
        raise NoSuchElementException(f"no shown element matches {by[1]}")
    return _point(found)


# -- pointer actions -------------------------------------------------------------------------------


def _perform(session: DeviceSession, touch: bool, steps: list[dict[str, Any]]) -> None:
    kind = "touch" if touch else "mouse"
    # The pointer's id is its kind: a driver keeps each id's kind for the whole session.
    source = {"type": "pointer", "id": kind, "parameters": {"pointerType": kind}, "actions": steps}
    session.driver.execute(Command.W3C_ACTIONS, {"actions": [source]})


def _move(x: float, y: float, seconds: float = 0) -> dict[str, Any]:
    return {"type": "pointerMove", "duration": int(seconds * 1000), "x": int(x), "y": int(y), "origin": "viewport"}


_DOWN = {"type": "pointerDown", "button": 0}
_UP = {"type": "pointerUp", "button": 0}


def _pause(seconds: float) -> dict[str, Any]:
    return {"type": "pause", "duration": int(seconds * 1000)}


def _press(seconds: float) -> list[dict[str, Any]]:
    return [_DOWN, _pause(seconds), _UP]


def _centre(t: Target) -> tuple[float, float, float, float, bool]:
    """x, y, width, height of where to touch, and whether a touch pointer is right."""
    if isinstance(t, Point):
        return t.x, t.y, t.width, t.height, t.touch
    r = t.rect
    return r["x"] + r["width"] / 2, r["y"] + r["height"] / 2, r["width"], r["height"], True


def _element(t: Target) -> WebElement:
    return t.element if isinstance(t, Point) else t


def _mobile(session: DeviceSession, command: str, **args: Any) -> None:
    session.driver.execute_script(f"mobile: {command}", args)


def tap(session: DeviceSession, t: Target) -> None:
    if isinstance(t, Point) and t.x >= 0:
        _perform(session, t.touch, [_move(t.x, t.y), *_press(TAP_HOLD)])
    else:
        # UiAutomator2, XCUITest and the fake driver click their element's centre themselves.
        _element(t).click()


def double_tap(session: DeviceSession, t: Target) -> None:
    if session.kind == "android":
        _mobile(session, "doubleClickGesture", elementId=_element(t).id)
        return
    x, y, _, _, touch = _centre(t)
    _perform(session, touch, [_move(x, y), *_press(TAP_HOLD), _pause(DOUBLE_TAP_GAP), *_press(TAP_HOLD)])


def long_press(session: DeviceSession, t: Target, seconds: float) -> None:
    if session.kind == "android":
        _mobile(session, "longClickGesture", elementId=_element(t).id, duration=int(seconds * 1000))
        return
    x, y, _, _, touch = _centre(t)
    _perform(session, touch, [_move(x, y), *_press(seconds)])


_DIRECTION = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}


def swipe_on(session: DeviceSession, t: Target, direction: str) -> None:
    """The finger moves ``direction`` across the element, from its centre."""
    if session.kind == "android":
        _mobile(session, "swipeGesture", elementId=_element(t).id, direction=direction, percent=2 * SWIPE_SPAN)
        return
    x, y, w, h, touch = _centre(t)
    dx, dy = _DIRECTION[direction]
    end = _move(x + dx * w * SWIPE_SPAN, y + dy * h * SWIPE_SPAN, 0.3)
    _perform(session, touch, [_move(x, y), _DOWN, end, _UP])


def drag(session: DeviceSession, source: tuple[str, str], dest: tuple[str, str]) -> tuple[str, ...]:
    """Pick up the first element and drop it on the second's centre. Returns the ends not found
    (``from``, ``to``) for the caller to wait on; empty once dragged."""
    if session.kind == "web":
        head = _head(how=source[0], what=_what(session, source), how2=dest[0], what2=_what(session, dest))
        found = session.driver.execute_script(head + _script(_AIM_BOTH))
        if found.get("missing"):
            return tuple(found["missing"])
        p = _point(found["from"])
        if found["to"] is None:
            raise StepFailed("the element to drop on is off screen while the one to drag is on it: scroll first")
        (to_x, to_y), touch = found["to"], p.touch
        x, y = float(p.x), float(p.y)
    else:
        picked = session.find_all(source)
        dropped = session.find_all(dest)
        if not picked or not dropped:
            return ("from",) * (not picked) + ("to",) * (not dropped)
        r = dropped[0].rect
        to_x, to_y = r["x"] + r["width"] / 2, r["y"] + r["height"] / 2
        if session.kind == "android":
            _mobile(session, "dragGesture", elementId=picked[0].id, endX=int(to_x), endY=int(to_y))
            return ()
        x, y, _, _, touch = _centre(picked[0])
    hold = _pause(0.2)  # picked up before it moves, and let go after it stops, as a finger does
    moves = [_move(x + (to_x - x) * i / 4, y + (to_y - y) * i / 4, DRAG_MOVE / 4) for i in (1, 2, 3, 4)]
    _perform(session, touch, [_move(x, y), _DOWN, hold, *moves, hold, _UP])
    return ()


# -- text fields ----------------------------------------------------------------------------------


def web_field(session: DeviceSession, by: tuple[str, str], *, clear: bool) -> WebElement:
    """The field a person would type into, focused, emptied when ``clear``: one command, no blur."""
    el = session.driver.execute_script(_head(how=by[0], what=_what(session, by), clear=clear) + _script(_FIELD))
    if el is None:
        raise NoSuchElementException(f"no shown element matches {by[1]}")
    return el  # type: ignore[no-any-return]


def field(session: DeviceSession, by: tuple[str, str], *, clear: bool) -> WebElement:
    if session.kind == "web":
        return web_field(session, by, clear=clear)
    el = session.find(by)
    if clear:
        el.clear()  # UiAutomator2 and XCUITest set the text; the focus stays where it is
    return el


def type_into(session: DeviceSession, el: WebElement, text: str, *, clear: bool) -> None:
    if session.kind == "fake" and not clear:
        # The fake driver's typing replaces what its field holds: send what the field will hold.
        text = (el.text or "") + text
    el.send_keys(text)


# -- the page and the app --------------------------------------------------------------------------


def hide_keyboard(session: DeviceSession) -> None:
    if session.kind == "web":
        # A browser on this host shows no on-screen keyboard; closing one leaves the field, as here.
        session.driver.execute_script("if (document.activeElement) document.activeElement.blur();")
    elif session.kind in ("android", "ios"):
        _mobile(session, "hideKeyboard")
    else:
        raise UnsupportedHere(f"hide_keyboard is not available on the {session.kind} driver")


def reload(session: DeviceSession) -> None:
    if session.kind == "web":
        session.driver.refresh()
    elif session.kind in ("android", "ios"):
        if session.app_id() is None:
            raise UnsupportedHere("reload on a phone needs the app's appium:appPackage or appium:bundleId in sop.yaml")
        session.close_app()
        session.launch_app()
    else:
        raise UnsupportedHere(f"reload is not available on the {session.kind} driver")


def eval_js(session: DeviceSession, script: str) -> Any:
    if session.kind != "web":
        raise UnsupportedHere(f"eval_js runs in web pages only, not on the {session.kind} driver")
    return session.driver.execute_script(script)
