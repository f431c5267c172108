"""Locators with refinements, resolved per platform, and what a failed lookup found instead.

A plain locator (``{id: x}``) is sent as a hand-written client sends it. A refined one
(``{text: Delete, inside: {id: list}, index: 1}``) becomes, on Android and the fake driver, one
XPath the driver evaluates; on the web, a JSON description the page's one script resolves
(``REFINED``), so a refined lookup costs the same single command as a plain one (a
``text_matches`` pattern adds one: RE2 picks among the texts the page sends). What a platform
cannot do is refused when the step starts, and at lint when the SOP requires that platform.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import UnsupportedHere
from .model import Locator, Template

if TYPE_CHECKING:
    from selenium.webdriver.remote.webelement import WebElement

    from .session import DeviceSession

# WebDriver's "how" of an XPath lookup (AppiumBy.XPATH): this module is imported at collection,
# where Appium's client is not needed yet.
XPATH = "xpath"
# The "how" of a web lookup the page's script resolves; its "what" is the locator as JSON.
REFINED = "-sop refined"
# Elements with text of their own: the candidates a text_matches pattern is tried on.
_WEB_TEXTS = "//*[text()[normalize-space(.)!='']]"


def xpath_literal(text: str) -> str:
    if '"' not in text:
        return f'"{text}"'
    if "'" not in text:
        return f"'{text}'"
    parts = text.split('"')
    return "concat(" + ", '\"', ".join(f'"{p}"' for p in parts) + ")"


def by(session: DeviceSession, loc: Locator, text: Callable[[Template], str]) -> tuple[str, str]:
    """How to look ``loc`` up on this session; ``text`` renders a template to its real value."""
    if not loc.refined and loc.strategy not in ("text_contains", "text_matches"):
        return session.by(loc, text(loc.value))
    if session.kind == "web":
        if not loc.refined and loc.strategy == "text_contains":
            return XPATH, _web_text_contains(text(loc.value))
        return REFINED, json.dumps(_web_spec(session, loc, text))
    return _native(session, loc, text)


# -- the web: the page's script resolves the refinements ---------------------------------------


def _web_text_contains(value: str) -> str:
    return f"//*[text()[contains(normalize-space(.), {xpath_literal(value)})]]"


def _web_spec(session: DeviceSession, loc: Locator, text: Callable[[Template], str]) -> dict[str, Any]:
    value = text(loc.value)
    spec: dict[str, Any]
    if loc.strategy == "text_contains":
        spec = {"how": XPATH, "what": _web_text_contains(value)}
    elif loc.strategy == "text_matches":
        # RE2 runs here, not the browser's backtracking RegExp: the page sends its texts, the
        # pattern picks among them (:func:`prepare`), and the pattern never reaches the page.
        spec = {"how": XPATH, "what": _WEB_TEXTS, "pattern": value}
    else:
        how, what = session.by(loc, value)
        spec = {"how": how, "what": what}
    if loc.index is not None:
        spec["index"] = loc.index
    for key, nested in (("inside", loc.inside), ("below", loc.below)):
        if nested is not None:
            spec[key] = _web_spec(session, nested, text)
    for key, flag in (("checked", loc.checked), ("enabled", loc.enabled)):
        if flag is not None:
            spec[key] = flag
    return spec


# One function the page's scripts share: `sopFind(how, what, isShown)`, the matches of a plain
# lookup, or of a refined one (how = REFINED) with its refinements applied: state and container
# filter the matches; `below` keeps those shown whose top is at or below the reference's bottom,
# nearest first; `index` picks among the matches shown. `sopResolve` also gives the matches before
# `below` and `index`, which tell a hidden element from a missing one.
FIND_JS = """const sopInView = (el) => {
  const r = el.getBoundingClientRect();
  return r.bottom > 0 && r.right > 0 && r.top < window.innerHeight && r.left < window.innerWidth;
};
const sopOwnText = (el) =>
  Array.from(el.childNodes, (n) => (n.nodeType === Node.TEXT_NODE ? n.data : " "))
    .join("").replace(/\\s+/g, " ").trim();
const sopAll = (how, what) => {
  if (how === "css selector") return Array.from(document.querySelectorAll(what));
  const r = document.evaluate(what, document, null, XPathResult.ORDERED_NODE_SNAPSHOT_TYPE, null);
  const out = [];
  for (let i = 0; i < r.snapshotLength; i++) {
    const n = r.snapshotItem(i);
    if (n.nodeType === Node.ELEMENT_NODE) out.push(n);
  }
  return out;
};
const sopChecked = (el) => el.checked === true || el.getAttribute("aria-checked") === "true";
const sopEnabled = (el) => !(el.matches(":disabled") || el.closest('[aria-disabled="true"]'));
const sopResolve = (s, isShown) => {
  let found = sopAll(s.how, s.what);
  if (s.picks) {
    const all = found;
    found = s.picks.filter(([i, t]) => all[i] !== undefined && sopOwnText(all[i]) === t).map(([i]) => all[i]);
  }
  if (s.checked !== undefined) found = found.filter((el) => sopChecked(el) === s.checked);
  if (s.enabled !== undefined) found = found.filter((el) => sopEnabled(el) === s.enabled);
  if (s.inside) {
    const boxes = sopResolve(s.inside, isShown).picked.filter(isShown);
    found = found.filter((el) => boxes.some((box) => box !== el && box.contains(el)));
  }
  let picked = found;
  if (s.below || s.index !== undefined) {
    picked = found.filter(isShown);
    if (s.below) {
      const ref = sopResolve(s.below, isShown).picked.find(isShown);
      const edge = ref ? ref.getBoundingClientRect().bottom : Infinity;
      picked = picked
        .map((el) => [el, el.getBoundingClientRect().top - edge])
        .filter(([el, gap]) => gap >= -0.5)
        .sort((a, b) => a[1] - b[1])
        .map(([el]) => el);
    }
    if (s.index !== undefined) picked = s.index < picked.length ? [picked[s.index]] : [];
  }
  return {found, picked};
};
const sopFind = (how, what, isShown) =>
  how === REFINED ? sopResolve(JSON.parse(what), isShown).picked : sopAll(how, what);
""".replace("REFINED", json.dumps(REFINED))

# For a failure message and assert_count: [matches, matches shown, of those on screen]. For
# assert_state: the states of the first match on screen.
_TALLY_JS = """const {found, picked} = sopResolve(how === REFINED ? JSON.parse(what) : {how, what}, isShown);
const shown = picked.filter(isShown);
if (mode === "tally") return [found.length, shown.length, shown.filter(sopInView).length];
const el = shown.find(sopInView);
if (!el) return null;
return {checked: sopChecked(el), enabled: sopEnabled(el),
        selected: el.selected === true || el.getAttribute("aria-selected") === "true",
        focused: el === document.activeElement};
""".replace("REFINED", json.dumps(REFINED))
_TEXTS_JS = f"""return Array.from(sopAll("xpath", {json.dumps(_WEB_TEXTS)}), sopOwnText);"""
# The texts a person sees now: of elements shown and on screen, each once, in page order.
_ON_SCREEN_TEXTS_JS = f"""const seen = [];
for (const el of sopAll("xpath", {json.dumps(_WEB_TEXTS)})) {{
  const text = sopOwnText(el).slice(0, 60);
  if (text && !seen.includes(text) && isShown(el) && sopInView(el)) seen.push(text);
  if (seen.length >= limit) break;
}}
return seen;"""


def _page_script(session: DeviceSession, body: str, **args: Any) -> Any:
    from .session import displayed_atom

    # JSON literals are JavaScript literals: no value can break out of its string.
    head = "".join(f"const {k} = {json.dumps(v)};\n" for k, v in args.items())
    return session.driver.execute_script(f"{head}const isShown = ({displayed_atom()});\n{FIND_JS}{body}")


def prepare(session: DeviceSession, what: str) -> str:
    """A refined web lookup ready for the page: each ``text_matches`` pattern replaced by the texts it
    picks among the page's own (one command more, only for a locator that has a pattern)."""
    if '"pattern"' not in what:
        return what
    spec = json.loads(what)
    patterned = []
    todo = [spec]
    while todo:
        node = todo.pop()
        if "pattern" in node:
            patterned.append(node)
        todo += [node[k] for k in ("inside", "below") if k in node]
    if not patterned:
        return what
    from .textmatch import search

    texts = _page_script(session, _TEXTS_JS)
    for node in patterned:
        pattern = node.pop("pattern")
        node["picks"] = [[i, t] for i, t in enumerate(texts) if search(pattern, t, session_mask)]
    return json.dumps(spec)


def session_mask(text: str) -> str:
    """A bad pattern's message masks the run's secrets (the run's table of them)."""
    from . import masking

    return masking.mask(text)


def web_texts_on_screen(session: DeviceSession, limit: int) -> list[str]:
    """What a failure message lists as on screen: one command, only what a person can see."""
    return [str(t) for t in _page_script(session, _ON_SCREEN_TEXTS_JS, limit=limit) or []]


def web_elements(session: DeviceSession, what: str) -> list[WebElement]:
    """The matches of a refined web lookup (its refinements applied), in order."""
    found = _page_script(session, "return sopFind(how, what, isShown);", how=REFINED, what=prepare(session, what))
    return list(found or [])


# -- Android, iOS, the fake driver: one XPath ---------------------------------------------------

# What a driver's page source says of an element a person can see.
_SHOWN = {"android": "@displayed='true'", "ios": "@visible='true'", "fake": "not(@visible='false')"}


def _node_test(kind: str, strategy: str, value: str) -> str | None:
    """The XPath step that finds ``strategy: value`` on this platform; None for an xpath locator."""
    v = xpath_literal(value)
    if strategy == "xpath":
        return None
    if strategy == "text":
        return f"*[@text={v}]" if kind != "ios" else f"*[@label={v}]"
    if strategy == "text_contains":
        return f"*[contains(@text, {v})]" if kind != "ios" else f"*[contains(@label, {v})]"
    if kind == "android":
        return {
            "id": f"*[@resource-id={v} or substring-after(@resource-id, ':id/')={v}]",
            "accessibility_id": f"*[@content-desc={v}]",
            "class": f"*[@class={v}]",
        }[strategy]
    if kind == "ios":
        return {"id": f"*[@name={v}]", "accessibility_id": f"*[@name={v}]", "class": f"*[@type={v}]"}[strategy]
    return {"id": f"*[@id={v}]", "accessibility_id": f"*[@id={v}]", "class": f"*[local-name()={v}]"}[strategy]


# Platforms whose refined locators are one XPath: what that cannot say is refused on them.
PHONES = ("android", "ios", "fake")


def cannot_find_on(kind: str, loc: Locator, *, in_xpath: bool = False) -> str | None:
    """Why ``loc`` (or a locator it nests) cannot be looked up on a ``kind`` device; None when it can.
    ``in_xpath``: it must be one XPath (a container), so ``below`` cannot be resolved by hand."""
    if kind not in PHONES:
        return None
    if loc.strategy == "text_matches":
        return f"text_matches locators work on web devices only, not on {kind}: use text_contains, or an xpath"
    if loc.below is not None and in_xpath:
        return f"an inside: locator with below: works on web devices only, not on {kind}: move below: out of it"
    if loc.refined and loc.strategy in ("css", "uiautomator"):
        return (
            f"a {loc.strategy} locator cannot be refined on {kind} (index, inside, below, checked, enabled): "
            "write it as an xpath"
        )
    for nested, as_xpath in ((loc.inside, True), (loc.below, in_xpath)):
        reason = cannot_find_on(kind, nested, in_xpath=as_xpath) if nested is not None else None
        if reason:
            return reason
    return None


def _native(session: DeviceSession, loc: Locator, text: Callable[[Template], str]) -> tuple[str, str]:
    reason = cannot_find_on(session.kind, loc)
    if reason:
        raise UnsupportedHere(reason)
    if loc.below is None:
        return XPATH, _xpath(session.kind, loc, text)
    return REFINED, json.dumps(_native_spec(session.kind, loc, text))


def _native_spec(kind: str, loc: Locator, text: Callable[[Template], str]) -> dict[str, Any]:
    """A locator with ``below``: its matches shown (one XPath), then ordered by hand from their rects."""
    plain = dataclasses.replace(loc, below=None, index=None)
    spec: dict[str, Any] = {"xpath": f"({_xpath(kind, plain, text)})[{_SHOWN.get(kind, 'true()')}]"}
    if loc.index is not None:
        spec["index"] = loc.index
    if loc.below is not None:
        spec["below"] = _native_spec(kind, loc.below, text)
    return spec


def native_elements(session: DeviceSession, what: str) -> list[WebElement]:
    """The matches of a locator with ``below`` on a phone, nearest first: the shown matches' rects
    (one command each) against the reference's, its first shown match."""
    return _native_resolve(session, json.loads(what))


def _native_resolve(session: DeviceSession, spec: dict[str, Any]) -> list[WebElement]:
    found: list[WebElement] = session.find_all((XPATH, spec["xpath"]))
    if "below" in spec:
        ref = _native_resolve(session, spec["below"])
        if not ref:
            return []
        edge = ref[0].rect["y"] + ref[0].rect["height"]
        gaps = [(el.rect["y"] - edge, i) for i, el in enumerate(found)]
        found = [found[i] for gap, i in sorted(g for g in gaps if g[0] >= -0.5)]
    if "index" in spec:
        found = found[spec["index"] : spec["index"] + 1]
    return found


def _xpath(kind: str, loc: Locator, text: Callable[[Template], str]) -> str:
    value = text(loc.value)
    step = _node_test(kind, loc.strategy, value)
    inside = _xpath(kind, loc.inside, text) if loc.inside is not None else None  # never with below: refused
    if step is not None:
        expr = f"({inside})//{step}" if inside else f"//{step}"
    elif inside:  # the written xpath's matches that are descendants of the container's
        expr = f"({inside})//*[count(. | ({value})) = count({value})]"
    else:
        expr = value
    states = []
    if loc.checked is not None:
        states.append("@checked='true'" if loc.checked else "not(@checked='true')")
    if loc.enabled is not None:
        states.append("not(@enabled='false')" if loc.enabled else "@enabled='false'")
    if states:
        expr = f"({expr})[{' and '.join(states)}]"
    if loc.index is not None:
        expr = f"({expr})[{_SHOWN.get(kind, 'true()')}][{loc.index + 1}]"
    return expr


# -- what a lookup finds: counts, states, why it is not visible --------------------------------


def waited(since: float) -> str:
    """The time a step really waited (not its timeout): a slow device shows as such."""
    return f"{time.monotonic() - since:.1f}s"


def tally(session: DeviceSession, found_by: tuple[str, str]) -> tuple[int, int, int]:
    """(matches, shown, shown on screen) in one command on the web; on a phone, whose displayed
    elements are those on screen, the matches and their displayed states."""
    if session.kind == "web":
        how, what = found_by
        if how == REFINED:
            what = prepare(session, what)
        found, shown, on_screen = _page_script(session, _TALLY_JS, how=how, what=what, mode="tally")
        return int(found), int(shown), int(on_screen)
    from selenium.common.exceptions import StaleElementReferenceException

    matches = session.find_all(found_by)
    shown = 0
    for el in matches:
        try:
            shown += bool(el.is_displayed())
        except StaleElementReferenceException:
            continue
    return len(matches), shown, shown


def count_visible(session: DeviceSession, found_by: tuple[str, str]) -> int:
    return tally(session, found_by)[2]


def why_not_visible(session: DeviceSession, loc: Locator, text: Callable[[Template], str]) -> str:
    """``not found``, ``present but hidden`` or ``off screen``: what a person would see instead."""
    found, shown, on_screen = tally(session, by(session, loc, text))
    if on_screen:
        return "visible now"  # it showed up between the last look and this one
    if shown:
        return "off screen (shown, but outside the viewport)"
    if loc.index is not None:  # how many there are to pick from
        before = tally(session, by(session, dataclasses.replace(loc, index=None), text))[1]
        if before:
            return f"not found ({before} match{'es' if before != 1 else ''} shown, index {loc.index} asked)"
    if found:
        return "present but hidden" if session.kind != "android" else "present but not shown (hidden or off screen)"
    return "not found"


def states(session: DeviceSession, found_by: tuple[str, str], wanted: tuple[str, ...]) -> dict[str, bool] | None:
    """The states of the first match a person can see now (None when there is none)."""
    if session.kind == "web":
        how, what = found_by
        if how == REFINED:
            what = prepare(session, what)
        got = _page_script(session, _TALLY_JS, how=how, what=what, mode="state")
        return None if got is None else {k: bool(got[k]) for k in wanted}
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    el = session.visible(found_by)
    if el is None:
        return None
    out: dict[str, bool] = {}
    try:
        for state in wanted:
            if state == "enabled":
                out[state] = bool(el.is_enabled())
            elif state == "selected":
                out[state] = bool(el.is_selected())
            else:  # Android reports checked and focused as attributes
                value = el.get_attribute(state)
                if value not in ("true", "false"):
                    raise UnsupportedHere(f"the {session.kind} driver does not report whether an element is {state}")
                out[state] = value == "true"
    except (StaleElementReferenceException, NoSuchElementException):
        return None
    return out
