"""The state checks: how many matches are visible, an element's state, the page's URL.

Each waits up to its step's timeout for what it checks to hold, then fails saying what it found.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from . import locating, textmatch
from .actions import STATES
from .errors import StepFailed, UnsupportedHere
from .session import poll

if TYPE_CHECKING:
    from .runner import Context

_COUNTS = {"equals": ("exactly", int.__eq__), "at_least": ("at least", int.__ge__), "at_most": ("at most", int.__le__)}
_VERB = {"equals": "equal", "contains": "contain", "matches": "match"}


def assert_count(ctx: Context, params: Mapping[str, Any], timeout: float) -> None:
    """``{of: LOCATOR, equals|at_least|at_most: N}``: visible matches, those a person sees on screen."""
    loc = params["of"]
    how = next(h for h in _COUNTS if h in params)
    phrase, compare = _COUNTS[how]
    want = int(params[how])
    by = ctx.by(loc)
    counts: list[int] = []

    def holds() -> bool | None:
        counts.append(locating.count_visible(ctx.session, by))
        return True if compare(counts[-1], want) else None

    start = time.monotonic()
    if poll(holds, timeout) is None:
        found = counts[-1] if counts else 0
        raise StepFailed(
            f"count of {ctx.show_locator(loc)}: expected {phrase} {want} visible, found {found} "
            f"after {locating.waited(start)}",
            expected=f"{phrase} {want}",
            found=str(found),
        )


def _show_states(states: Mapping[str, bool]) -> str:
    return ", ".join(f"{k}: {str(v).lower()}" for k, v in states.items())


def assert_state(ctx: Context, params: Mapping[str, Any], timeout: float) -> None:
    """``{of: LOCATOR, checked|enabled|selected|focused: BOOL}``, of the first match a person sees."""
    loc = params["of"]
    wanted = {s: bool(params[s]) for s in STATES if s in params}
    by = ctx.by(loc)
    last: list[dict[str, bool]] = []

    def holds() -> bool | None:
        got = locating.states(ctx.session, by, tuple(wanted))
        if got is None:
            return None
        last.append(got)
        return True if got == wanted else None

    start = time.monotonic()
    if poll(holds, timeout) is not None:
        return
    shown = ctx.show_locator(loc)
    if not last:
        where = locating.why_not_visible(ctx.session, loc, ctx.text)
        raise StepFailed(f"{shown} is {where} after {locating.waited(start)}", expected=f"{shown} visible", found=where)
    raise StepFailed(
        f"state of {shown}: expected {_show_states(wanted)}, found {_show_states(last[-1])} "
        f"after {locating.waited(start)}",
        expected=_show_states(wanted),
        found=_show_states(last[-1]),
    )


def assert_url(ctx: Context, params: Mapping[str, Any], timeout: float) -> None:
    """``{equals|contains|matches: T}`` against the page's URL; ``equals`` takes a path relative to the app's url."""
    session = ctx.session
    if session.kind != "web":
        raise UnsupportedHere(f"assert_url works on web devices only, not on {session.kind}")
    how = next(h for h in _VERB if h in params)
    expected = ctx.text(params[how])
    wanted = {expected, urljoin(session.url, expected)} if how == "equals" and session.url else {expected}
    seen: list[str] = []

    def holds() -> bool | None:
        url = str(session.driver.current_url)
        seen.append(url)
        return True if any(textmatch.holds(how, w, url, ctx.secrets.mask) for w in wanted) else None

    start = time.monotonic()
    if poll(holds, timeout) is None:
        shown, found = ctx.shown(params[how]), ctx.secrets.mask(seen[-1] if seen else "")
        raise StepFailed(
            f"URL: expected it to {_VERB[how]} {shown!r}, found {found!r} after {locating.waited(start)}",
            expected=f"{how} {shown!r}",
            found=repr(found),
        )
