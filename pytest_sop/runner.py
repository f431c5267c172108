"""Runs one case on one device session: steps, waits, retries, on_failure, done_when, evidence.

It knows nothing of pytest: outcomes are exceptions from :mod:`errors`, and what happened
goes to a :class:`Recorder`.
"""

from __future__ import annotations

import functools
import inspect
import json
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from selenium.common.exceptions import (
    ElementClickInterceptedException,
    ElementNotInteractableException,
    InvalidElementStateException,
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.remote.webelement import WebElement
from urllib3.exceptions import HTTPError

from . import decisions, locating, statechecks, textmatch
from .actions import ActionRegistry
from .approvals import APPROVED, record_pending
from .errors import (
    ActionNotAllowed,
    AwaitingApproval,
    AwaitingHandoff,
    CaseSkipped,
    NotPermitted,
    OptionalStepFailed,
    Paused,
    SopError,
    StepBroken,
    StepFailed,
    UnsupportedHere,
)

# Names, not the module: pytester's in-process runs re-import the package's modules, and a module
# attribute of the package kept from an earlier run would hold an earlier Selenium's exceptions.
from .gestures import (
    TapIntercepted,
    Target,
    double_tap,
    drag,
    eval_js,
    hide_keyboard,
    long_press,
    reload,
    swipe_on,
    tap,
    type_into,
    web_field,
    web_target,
)
from .masking import SecretMissing, Secrets
from .model import (
    Account,
    Args,
    Case,
    Check,
    Condition,
    Device,
    Locator,
    OnPlatform,
    Policy,
    Sop,
    Step,
    Template,
    TextMatch,
    each_step,
)
from .plan import describe_params
from .policy import allowed_pairs, check_sop
from .recorders import BrokenStep, Recorder, record_skipped
from .session import DeviceSession, appium_reason, poll
from .templates import render

DEFAULT_TIMEOUT = 10.0


@dataclass
class Failure:
    """Where a case stopped, for the report: the step (or condition) and the SOP it is in."""

    sop: Sop
    step: Step | Condition
    error: BaseException
    optional_failures: tuple[str, ...] = ()  # optional steps that failed before it
    note: str = ""  # what else the reader must know (a resumed case not retried)


@dataclass
class Context:
    """Everything one case's steps can see. Project actions receive it as ``ctx``."""

    case: Case
    session: DeviceSession
    device: Device
    account: Account | None
    secrets: Secrets
    recorder: Recorder
    registry: ActionRegistry
    get_sop: Callable[[str], Sop | None]
    evidence: str = "failure"  # step | failure | none
    operator: str = ""
    policy: Policy | None = None
    approvals_path: str | None = None
    vars: dict[str, str] = field(default_factory=dict)
    failure: Failure | None = None
    optional_failures: list[str] = field(default_factory=list)
    optional_steps: list[Step] = field(default_factory=list)  # the steps of optional_failures, in order
    _sop_stack: list[Sop] = field(default_factory=list)
    # The ${params.X} of each SOP on _sop_stack, as its run step passed them.
    _params: list[Mapping[str, object]] = field(default_factory=list)
    # Pause and resume (see holds.py): the step running now, as (SOP id, index) per step list, outermost
    # first; where the case paused; and, resuming, the indexes to go on from and when it paused.
    position: list[tuple[str, int]] = field(default_factory=list)
    paused_at: list[tuple[str, int]] | None = None
    resume_at: list[int] = field(default_factory=list)
    paused_since: str | None = None
    withheld_vars: tuple[str, ...] = ()  # vars the pause did not keep: they held a secret

    # -- templates ----------------------------------------------------------------------
    def lookup(self, ns: str, name: str) -> object:
        if ns == "inputs":
            row = self.case.inputs
            if row is None or name not in row.values:
                raise StepBroken(f"${{inputs.{name}}} has no value in this case")
            return row.values[name]
        if ns == "account":
            if self.account is None:
                raise StepBroken(f"${{account.{name}}}: this case has no account")
            if name in ("id", "role"):
                return getattr(self.account, name)
            return self.account.fields[name]
        if ns == "device":
            return getattr(self.device, name)
        if ns == "params":
            passed = self._params[-1] if self._params else {}
            if name not in passed:
                raise StepBroken(f"${{params.{name}}}: no run step passed it to SOP {self.sop.id!r}")
            return passed[name]
        if name not in self.vars:
            if name in self.withheld_vars:
                raise StepBroken(f"${{vars.{name}}} held a secret, which a pause never keeps: save it again after")
            raise StepBroken(f"${{vars.{name}}} was not saved before this step")
        return self.vars[name]

    def text(self, t: Template) -> str:
        """The real value, secrets included: only ever sent to the device."""
        return render(t, self.lookup, reveal=self.secrets.reveal)

    def shown(self, t: Template) -> str:
        """The value as reports may show it: secrets are ***, also when read back from the screen."""
        return self.secrets.mask(render(t, self.lookup))

    def by(self, loc: Locator) -> tuple[str, str]:
        return locating.by(self.session, loc, self.text)

    def show_locator(self, loc: Locator) -> str:
        return loc.render(self.shown)

    def describe(self, step: Step) -> tuple[str, dict[str, str]]:
        params: dict[str, str] = {}
        for k, v in step.params.items():
            if isinstance(v, Template):
                params[k] = self.shown(v)
            elif isinstance(v, Locator):
                params[k] = self.show_locator(v)
            elif isinstance(v, (Condition, OnPlatform)):
                params[k] = describe_check(self, v)
            elif isinstance(v, Args):
                params.update((f"with {name}", self.shown(t)) for name, t in v.values)
            elif k != "steps" or step.action != "repeat":  # a repeat's steps are recorded as they run
                params[k] = str(v)
        title = step.name or f"{step.action} {describe_params(step, self.lookup)}".rstrip()
        return self.secrets.mask(title), params

    @property
    def sop(self) -> Sop:
        return self._sop_stack[-1] if self._sop_stack else self.case.sop


# -- the actions ------------------------------------------------------------------------


def _timeout(step: Step) -> float:
    return step.timeout if step.timeout is not None else DEFAULT_TIMEOUT


def _near(ctx: Context) -> str:
    texts = ctx.session.visible_texts()
    return f"visible texts: {', '.join(repr(t) for t in texts)}" if texts else "no visible text on screen"


def _not_visible(ctx: Context, loc: Locator, since: float) -> NoReturn:
    where = locating.why_not_visible(ctx.session, loc, ctx.text)
    raise StepFailed(
        f"{ctx.show_locator(loc)} is {where} after {locating.waited(since)}",
        expected=f"{ctx.show_locator(loc)} visible",
        found=_near(ctx),
    )


def _wait_visible(ctx: Context, loc: Locator, timeout: float, since: float | None = None) -> Any:
    """The element once a person can see it (on screen), waiting up to ``timeout``; else the step
    fails saying whether it is off screen, hidden or not there, and how long was waited since ``since``."""
    since = time.monotonic() if since is None else since
    by = ctx.by(loc)
    el = poll(lambda: ctx.session.visible(by), timeout)
    if el is None:
        _not_visible(ctx, loc, since)
    return el


# What the driver answers while an element cannot take an action yet: nothing matches, the match
# went away, or it cannot be used now (hidden, disabled, another element on top of it).
_NOT_THERE = (NoSuchElementException, StaleElementReferenceException)
_NOT_READY = (ElementNotInteractableException, InvalidElementStateException, ElementClickInterceptedException)
_POLL = 0.1


def _act(
    ctx: Context,
    loc: Locator,
    timeout: float,
    action: Callable[[Any], None],
    find: Callable[[tuple[str, str]], Any] | None = None,
) -> None:
    """Find the element and act on it at once, as a hand-written client does: no displayed check
    first, since the action itself fails on an element a person could not use (W3C click, clear and
    send keys do; the fake driver's click does). Wait only while the driver says the element is not
    there or not usable, until ``timeout``; then fail as a wait for it would.

    ``find``: instead of the driver's find, one that finds only what a person could see (the web's
    web_target): then the action gets what it returns."""
    by = ctx.by(loc)
    start = time.monotonic()
    deadline = start + timeout
    refused: WebDriverException | None = None
    target: WebElement | None = None
    while True:
        el = None
        try:
            el = target or (find or ctx.session.find)(by)
            target = None
            action(el)
            return
        except _NOT_THERE:
            refused = None
        except _NOT_READY as e:
            refused = e
            # The first match may be hidden while another one is shown: that one, at once.
            shown = ctx.session.visible(by, on_screen=False) if find is None else None
            if shown is not None and shown != el and time.monotonic() < deadline:
                target = shown
                continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(_POLL, remaining))
    if refused is not None and ctx.session.visible(by, on_screen=False) is not None:
        if isinstance(refused, ElementClickInterceptedException):
            _intercepted(ctx, loc, timeout, refused)
        raise refused  # shown, and still refused (typing into a label): the driver's reason stands
    _not_visible(ctx, loc, start)


def _intercepted(ctx: Context, loc: Locator, timeout: float, e: ElementClickInterceptedException) -> NoReturn:
    other = e.other if isinstance(e, TapIntercepted) else appium_reason(e)
    raise StepFailed(
        ctx.secrets.mask(f"{ctx.show_locator(loc)} would not get the tap after {timeout:g}s: another element "
                         f"would receive it: {other}"),
        expected=f"{ctx.show_locator(loc)} receives the tap",
        found=ctx.secrets.mask(f"{other} on top of it"),
    )  # fmt: skip


def _gesture(ctx: Context, loc: Locator, timeout: float, do: Callable[[Target], None]) -> None:
    """A finger on the element: on the web at the centre of what is seen of it, checked to be on it."""
    web = ctx.session.kind == "web"
    _act(ctx, loc, timeout, do, find=(lambda by: web_target(ctx.session, by)) if web else None)


_VERB = {"equals": "equal", "contains": "contain", "matches": "match"}


def _check_text(ctx: Context, match: TextMatch, timeout: float) -> None:
    expected = ctx.text(match.expected)
    shown = ctx.shown(match.expected)
    seen: list[str] = []
    start = time.monotonic()

    by = ctx.by(match.locator)

    def ok() -> bool | None:
        actual = ctx.session.read_text(by)
        if actual is None:
            return None
        seen.append(actual)
        return True if textmatch.holds(match.how, expected, actual, ctx.secrets.mask) else None

    if poll(ok, timeout) is None:
        if not seen or ctx.session.kind != "web":
            # Never read, or read on a phone without asking whether it is shown: say why if it isn't.
            _wait_visible(ctx, match.locator, 0, start)
        found = ctx.secrets.mask(seen[-1]) if seen else ""
        raise StepFailed(
            f"text of {ctx.show_locator(match.locator)}: expected it to {_VERB[match.how]} {shown!r}, found {found!r}",
            expected=f"{match.how} {shown!r}",
            found=repr(found),
        )


def holds_now(ctx: Context, check: Check) -> bool:
    """A ``when:`` or ``while:`` condition, checked once, now: no waiting for the screen to change."""
    if isinstance(check, OnPlatform):
        return ctx.device.platform.lower() == check.platform.lower()
    try:
        by = ctx.by(check.locator)
        if check.kind == "visible":
            return ctx.session.visible(by) is not None
        if check.kind == "not_visible":
            return ctx.session.visible_among_all(by) is None
        assert check.match is not None
        actual = ctx.session.read_text(by)
        return actual is not None and textmatch.holds(
            check.match.how, ctx.text(check.match.expected), actual, ctx.secrets.mask
        )
    except WebDriverException as e:
        raise StepBroken(ctx.secrets.mask(f"Appium: {appium_reason(e)}")) from None


def describe_check(ctx: Context, check: Check) -> str:
    if isinstance(check, OnPlatform):
        return f"platform {check.platform}"
    text = f"{check.kind} {ctx.show_locator(check.locator)}"
    return text + (f" {check.match.how} {ctx.shown(check.match.expected)!r}" if check.match else "")


def _attach_screenshot(ctx: Context, name: str) -> None:
    ctx.recorder.attach(name, ctx.session.screenshot(), "image/png", "png")


def _attach_source(ctx: Context, name: str) -> None:
    source = ctx.secrets.mask(ctx.session.page_source())
    mime, ext = ("text/html", "html") if ctx.session.kind == "web" else ("application/xml", "xml")
    ctx.recorder.attach(name, source, mime, ext)


def do_tap(ctx: Context, step: Step) -> None:
    _gesture(ctx, step.params["locator"], _timeout(step), lambda t: tap(ctx.session, t))


def do_double_tap(ctx: Context, step: Step) -> None:
    _gesture(ctx, step.params["locator"], _timeout(step), lambda t: double_tap(ctx.session, t))


def do_long_press(ctx: Context, step: Step) -> None:
    seconds = float(step.params.get("seconds", 1.0))
    _gesture(ctx, step.params["at"], _timeout(step), lambda t: long_press(ctx.session, t, seconds))


def do_swipe(ctx: Context, step: Step) -> None:
    direction = step.params["direction"]
    if "at" not in step.params:
        ctx.session.swipe(direction)
        return
    _gesture(ctx, step.params["at"], _timeout(step), lambda t: swipe_on(ctx.session, t, direction))


def do_drag(ctx: Context, step: Step) -> None:
    ends = {"from": step.params["from"], "to": step.params["to"]}
    timeout = _timeout(step)
    missing: tuple[str, ...] = ()
    refused: list[TapIntercepted] = []

    def attempt() -> bool | None:
        nonlocal missing
        try:
            missing = drag(ctx.session, ctx.by(ends["from"]), ctx.by(ends["to"]))
        except TapIntercepted as e:
            refused[:] = [e]
            return None
        return None if missing else True

    if poll(attempt, timeout) is None:
        if missing:
            _not_visible(ctx, ends[missing[0]], timeout)
        _intercepted(ctx, ends["from"], timeout, refused[0])


def _typing(ctx: Context, loc: Locator, timeout: float, text: str | None, clear: bool) -> None:
    """Clear (unless ``clear`` is false) and type, the field keeping its focus throughout."""
    session = ctx.session
    web = session.kind == "web"

    def type_in(el: WebElement) -> None:
        if clear and not web:
            el.clear()  # phones set the text: the focus stays
        if text is not None:
            type_into(session, el, text, clear=clear)

    # The web: one script finds, focuses and clears; WebDriver's own clear would blur the field first.
    _act(ctx, loc, timeout, type_in, find=(lambda by: web_field(session, by, clear=clear)) if web else None)


def do_type(ctx: Context, step: Step) -> None:
    clear = step.params.get("clear", True)
    _typing(ctx, step.params["into"], _timeout(step), ctx.text(step.params["text"]), clear)


def do_clear(ctx: Context, step: Step) -> None:
    _typing(ctx, step.params["locator"], _timeout(step), None, True)


def do_eval_js(ctx: Context, step: Step) -> None:
    value = eval_js(ctx.session, ctx.text(step.params["script"]))
    shown = ctx.secrets.mask(json.dumps(value, default=str, indent=1))
    ctx.recorder.attach("eval_js result", shown, "application/json", "json")


def do_wait_for(ctx: Context, step: Step) -> None:
    _wait_visible(ctx, step.params["locator"], _timeout(step))


def _wait_hidden(ctx: Context, loc: Locator, timeout: float) -> None:
    by = ctx.by(loc)
    start = time.monotonic()
    if poll(lambda: True if ctx.session.visible_among_all(by) is None else None, timeout) is None:
        raise StepFailed(
            f"{ctx.show_locator(loc)} is still visible after {locating.waited(start)}",
            expected=f"{ctx.show_locator(loc)} not visible",
            found="visible",
        )


def do_wait_gone(ctx: Context, step: Step) -> None:
    _wait_hidden(ctx, step.params["locator"], _timeout(step))


def do_assert_visible(ctx: Context, step: Step) -> None:
    # Assertions give the screen its timeout to settle (a tap may still be loading a page).
    _wait_visible(ctx, step.params["locator"], _timeout(step))


def do_assert_not_visible(ctx: Context, step: Step) -> None:
    _wait_hidden(ctx, step.params["locator"], _timeout(step))


def do_assert_text(ctx: Context, step: Step) -> None:
    from .sopfile import text_match

    _check_text(ctx, text_match(step.params), _timeout(step))


def do_save_text(ctx: Context, step: Step) -> None:
    loc = step.params["from"]
    by = ctx.by(loc)
    start = time.monotonic()
    text = poll(lambda: ctx.session.read_text(by), _timeout(step))
    if text is None:
        _wait_visible(ctx, loc, 0, start)  # fails, saying whether it is missing or hidden
        text = poll(lambda: ctx.session.read_text(by), 0) or ""  # it showed up just now
    ctx.vars[step.params["as"]] = text


def do_scroll_to(ctx: Context, step: Step) -> None:
    """Bring an element into view: scrolled to directly on the web, swiped towards on a phone."""
    loc = step.params["locator"]
    by = ctx.by(loc)
    start = time.monotonic()
    deadline = start + _timeout(step)
    while ctx.session.visible(by) is None:
        if time.monotonic() > deadline:
            _wait_visible(ctx, loc, 0, start)  # fails, naming what is on screen instead
        found = ctx.session.find_all(by)
        if found and ctx.session.kind == "web":
            ctx.session.scroll_into_view(found[0])
        else:
            ctx.session.swipe("up")


def do_wait(ctx: Context, step: Step) -> None:
    time.sleep(float(step.params["seconds"]))


def do_screenshot(ctx: Context, step: Step) -> None:
    name = ctx.shown(step.params["name"]) if "name" in step.params else "screenshot"
    _attach_screenshot(ctx, name)


def do_page_source(ctx: Context, step: Step) -> None:
    name = ctx.shown(step.params["name"]) if "name" in step.params else "page source"
    _attach_source(ctx, name)


def do_note(ctx: Context, step: Step) -> None:
    ctx.recorder.attach("note", ctx.shown(step.params["text"]), "text/plain", "txt")


def do_run(ctx: Context, step: Step) -> None:
    target = ctx.get_sop(step.params["sop"])
    if target is None:
        raise StepBroken(f"SOP {step.params['sop']!r} is not in the suite")
    _may_run(ctx, target)
    _obeys_allowed_actions(ctx, target)
    passed = _passed(ctx, step.params.get("with"))  # the caller's values, in the caller's frame
    ctx._sop_stack.append(target)
    ctx._params.append(passed)
    try:
        run_steps(ctx, target.steps)
    finally:
        ctx._sop_stack.pop()
        ctx._params.pop()


def _passed(ctx: Context, args: Args | None) -> Mapping[str, object]:
    """``with: {NAME: VALUE}`` worked out now. A value that is one reference (``${account.password}``)
    is passed as it is, a secret still a secret; any other is rendered (shown masked like any step text)."""
    if args is None:
        return {}
    out: dict[str, object] = {}
    for name, template in args.values:
        (part,) = template.parts if len(template.parts) == 1 else (None,)
        if isinstance(part, tuple) and part[0] != "env":
            out[name] = ctx.lookup(*part)
        else:
            out[name] = ctx.text(template)
    return out


def do_repeat(ctx: Context, step: Step) -> None:
    """``times: N`` iterations, or as long as ``while`` holds (checked now, before each) and at most ``max``.
    Each iteration is a step of its own in the record, its steps inside it."""
    try:
        _repeat(ctx, step)
    except Paused as e:
        # A pause keeps the step it stopped at, not the iteration: it could not go on where it stopped.
        raise StepBroken(
            f"{e.kind} {e.name!r} inside a repeat cannot pause the case: decide it beforehand, or put the "
            "checkpoint outside the loop"
        ) from None


def _repeat(ctx: Context, step: Step) -> None:
    steps: tuple[Step, ...] = step.params["steps"]
    if "times" in step.params:
        times = step.params["times"]
        for i in range(1, times + 1):
            with ctx.recorder.step(f"iteration {i} of {times}"):
                run_steps(ctx, steps)
        return
    check, most = step.params["while"], step.params["max"]
    for i in range(1, most + 1):
        if not holds_now(ctx, check):
            return
        with ctx.recorder.step(f"iteration {i} of at most {most}"):
            run_steps(ctx, steps)
    if holds_now(ctx, check):
        what = describe_check(ctx, check)
        raise StepFailed(
            f"repeat reached max {most} iterations and its while condition still holds: {what}",
            expected=f"{what} no longer holding within {most} iterations",
            found=f"it still holds after {most}",
        )


def _may_run(ctx: Context, target: Sop) -> None:
    """Checked again when it runs: steps run from Python (the sop_run fixture) had no collection check."""
    roles, reason = check_sop(ctx.policy, ctx.operator, target, ctx.get_sop, run_by=ctx.sop.id)
    if reason is None and not allowed_pairs(ctx.policy, roles, [(ctx.device, ctx.account)]):
        on = ctx.device.id + (f" with account {ctx.account.id}" if ctx.account else "")
        reason = f"{ctx.operator!r} may not run SOP {target.id!r} (run by {ctx.sop.id!r}) on {on}"
    if reason:
        raise NotPermitted(f"not permitted: {reason}")


def _runs(sop: Sop, get_sop: Callable[[str], Sop | None]) -> Iterator[Sop]:
    """``sop`` and every SOP its steps run, each once."""
    seen, todo = {sop.id}, [sop]
    while todo:
        current = todo.pop()
        yield current
        for step in each_step(current.steps):
            target = get_sop(step.params["sop"]) if step.action == "run" else None
            if target is not None and target.id not in seen:
                seen.add(target.id)
                todo.append(target)


def _obeys_allowed_actions(ctx: Context, target: Sop) -> None:
    """Every SOP running now limits what the target (and what it runs) may do, as collection checks."""
    callers = [s for s in (ctx.case.sop, *ctx._sop_stack) if s.allowed_actions is not None]
    if not callers:
        return
    for inner in _runs(target, ctx.get_sop):
        for step in each_step(inner.steps):
            for caller in callers:
                assert caller.allowed_actions is not None
                if step.action not in caller.allowed_actions:
                    raise ActionNotAllowed(
                        f"SOP {caller.id!r} runs {target.id!r} whose step {step.action!r} "
                        f"({step.pos.file}:{step.pos.line}) is not in its allowed_actions"
                    )


def do_approve(ctx: Context, step: Step) -> None:
    """Pass with a decision that counts: signed by its approver when signed (always, with
    ``require_signatures``), taken on the SOP file as it is now, by someone else than the
    operator running the case who holds the step's role with may_approve (four eyes).

    A decision names the SOP holding the step, and its recorded sha256 is of that SOP's file:
    changing the file that asks for the checkpoint voids it.
    """
    checkpoint, role = step.params["checkpoint"], step.params["role"]
    sop_id, case_id = ctx.sop.id, ctx.case.case_id or ctx.case.sop.id
    path = ctx.approvals_path
    verdict = decisions.approval(ctx.policy, ctx.operator, path, sop_id, ctx.sop.path, checkpoint, role, case_id)
    decision = verdict.decision
    if decision is None:
        reason = verdict.reason()
        if path:
            record_pending(path, sop_id, checkpoint, case_id, ctx.operator)
        ctx.recorder.event("approval_pending", sop=sop_id, checkpoint=checkpoint, role=role, not_counted=reason)
        raise AwaitingApproval(
            f"awaiting approval: {checkpoint}" + (f" ({reason})" if reason else ""),
            kind="approval", name=checkpoint, role=role, sop=sop_id,
            note=ctx.shown(step.params["note"]) if "note" in step.params else "",
        )  # fmt: skip
    signed_by = verdict.signed_by
    signer = signed_by.get(decision)
    how = f"signed with {signer.fingerprint}" if signer else "not signed"
    said = f"{decision.decision} by {decision.by} at {decision.at} ({how})" + (
        f": {decision.note}" if decision.note else ""
    )
    ctx.recorder.attach(f"approval {checkpoint}", said, "text/plain", "txt")
    # On the case itself, not only in the attachment: who decided which checkpoint, and when.
    ctx.recorder.add_labels([(f"{decision.decision}_by", decision.by)])
    ctx.recorder.add_parameters([(f"approval {checkpoint}", said)])
    ctx.recorder.event(
        "approval", sop=decision.sop, checkpoint=checkpoint, decision=decision.decision, by=decision.by,
        at=decision.at, note=decision.note, signed=signer is not None,
        fingerprint=signer.fingerprint if signer else None, sop_sha256=decision.sop_sha256,
    )  # fmt: skip
    if decision.decision != APPROVED:
        raise StepFailed(f"rejected by {decision.by}: {decision.note}", expected="approved", found=said)


def handoff_name(step: Step) -> str:
    """A handoff's name, in skip reasons and ``handoff done``: its ``name:``, else the role it goes to."""
    return step.name or str(step.params["to"])


def do_handoff(ctx: Context, step: Step) -> None:
    """Pause until a holder of the ``to`` role marks it done after the pause (``pytest-sop handoff done``):
    they act on the held device by hand. A case reaching it for the first time always pauses."""
    role, name = str(step.params["to"]), handoff_name(step)
    sop_id, case_id = ctx.sop.id, ctx.case.case_id or ctx.case.sop.id
    verdict = decisions.handoff(
        ctx.policy, ctx.approvals_path, sop_id, ctx.sop.path, name, role, case_id, ctx.paused_since
    )
    done = verdict.decision
    if done is None:
        reason = verdict.reason()
        note = ctx.shown(step.params["note"]) if "note" in step.params else ""
        ctx.recorder.event("handoff_pending", sop=sop_id, handoff=name, role=role, note=note, not_counted=reason)
        raise AwaitingHandoff(
            f"awaiting handoff: {name}" + (f" ({reason})" if reason else ""),
            kind="handoff", name=name, role=role, sop=sop_id, note=note,
        )  # fmt: skip
    signer = verdict.signed_by.get(done)
    how = f"signed with {signer.fingerprint}" if signer else "not signed"
    said = f"done by {done.by} at {done.at} ({how})" + (f": {done.note}" if done.note else "")
    ctx.recorder.attach(f"handoff {name}", said, "text/plain", "txt")
    ctx.recorder.add_labels([("handoff_by", done.by)])
    ctx.recorder.add_parameters([(f"handoff {name}", said)])
    ctx.recorder.event(
        "handoff", sop=done.sop, handoff=name, by=done.by, at=done.at, note=done.note, signed=signer is not None,
        fingerprint=signer.fingerprint if signer else None, sop_sha256=done.sop_sha256,
    )  # fmt: skip


CORE: dict[str, Callable[[Context, Step], None]] = {
    "launch_app": lambda ctx, step: ctx.session.launch_app(),
    "close_app": lambda ctx, step: ctx.session.close_app(),
    "open_url": lambda ctx, step: ctx.session.open_url(ctx.text(step.params["url"])),
    "tap": do_tap,
    "type": do_type,
    "clear": do_clear,
    "wait_for": do_wait_for,
    "wait_gone": do_wait_gone,
    "assert_visible": do_assert_visible,
    "assert_not_visible": do_assert_not_visible,
    "assert_text": do_assert_text,
    "save_text": do_save_text,
    "assert_count": lambda ctx, step: statechecks.assert_count(ctx, step.params, _timeout(step)),
    "assert_state": lambda ctx, step: statechecks.assert_state(ctx, step.params, _timeout(step)),
    "assert_url": lambda ctx, step: statechecks.assert_url(ctx, step.params, _timeout(step)),
    "swipe": do_swipe,
    "double_tap": do_double_tap,
    "long_press": do_long_press,
    "drag": do_drag,
    "hide_keyboard": lambda ctx, step: hide_keyboard(ctx.session),
    "reload": lambda ctx, step: reload(ctx.session),
    "eval_js": do_eval_js,
    "scroll_to": do_scroll_to,
    "back": lambda ctx, step: ctx.session.back(),
    "press_key": lambda ctx, step: ctx.session.press_key(step.params["key"]),
    "wait": do_wait,
    "screenshot": do_screenshot,
    "page_source": do_page_source,
    "note": do_note,
    "run": do_run,
    "repeat": do_repeat,
    "approve": do_approve,
    "handoff": do_handoff,
}


def _project_action(ctx: Context, step: Step) -> None:
    spec = ctx.registry[step.action]
    if spec.run is None:
        raise StepBroken(f"action {step.action!r} is registered without a run function")
    params = {
        k: ctx.text(v) if isinstance(v, Template) else ctx.by(v) if isinstance(v, Locator) else v
        for k, v in step.params.items()
    }
    if "timeout" not in params and _takes_timeout(spec.run):
        params["timeout"] = _timeout(step)  # the step's `timeout:`, else the default wait
    spec.run(ctx, **params)


@functools.cache
def _takes_timeout(run: Callable[..., Any]) -> bool:
    """Whether a project action's run function has a ``timeout`` keyword (or ``**kwargs``)."""
    try:
        params = inspect.signature(run).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        (p.name == "timeout" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)) or p.kind == p.VAR_KEYWORD
        for p in params
    )


# -- running ----------------------------------------------------------------------------


def _execute(ctx: Context, step: Step) -> None:
    """One attempt of one step; Appium trouble becomes StepBroken with Appium's reason."""
    try:
        CORE.get(step.action, _project_action)(ctx, step)
    except (StepFailed, CaseSkipped, StepBroken, SecretMissing):
        raise
    except AssertionError as e:
        # A project action's plain `assert`: a step failure, so retry, optional and on_failure apply.
        raise StepFailed(ctx.secrets.mask(str(e) or f"assertion failed in {step.action}")) from None
    except UnsupportedHere as e:
        raise StepBroken(str(e)) from None
    except WebDriverException as e:
        raise StepBroken(ctx.secrets.mask(f"Appium: {appium_reason(e)}")) from None
    except (HTTPError, OSError) as e:
        raise StepBroken(f"Appium at {ctx.session.endpoint} stopped answering: {e}") from None


def run_step(ctx: Context, step: Step) -> None:
    title, params = ctx.describe(step)
    if step.when is not None and not _when_holds(ctx, step, step.when):
        _skipped(ctx, step.when, title, params)
        return
    attempts = step.retry.attempts if step.retry else 1
    try:
        with ctx.recorder.step(title, params):
            for attempt in range(1, attempts + 1):
                try:
                    _execute(ctx, step)
                    break
                except (StepFailed, StepBroken) as e:
                    if attempt == attempts:
                        if step.optional:
                            ctx.failure = None  # a step inside it (a run's, a repeat's) failed: the case goes on
                            _optional_failed(ctx, step, title, e)
                            raise BrokenStep(str(e)) from None  # the step broken, the case going on
                        ctx.failure = ctx.failure or Failure(ctx.sop, step, e)
                        raise
                    ctx.failure = None  # the next attempt starts afresh
                    ctx.recorder.attach(f"attempt {attempt} failed", str(e), "text/plain", "txt")
                    time.sleep(step.retry.backoff * attempt if step.retry else 0)
                except (CaseSkipped, SecretMissing) as e:
                    ctx.failure = ctx.failure or Failure(ctx.sop, step, e)
                    raise
            if ctx.evidence == "step" and step.action not in ("screenshot", "note"):
                _attach_screenshot(ctx, f"after {title}")
    except BrokenStep:
        return


def _skipped(ctx: Context, check: Check, title: str, params: dict[str, str]) -> None:
    reason = f"when {describe_check(ctx, check)}: does not hold"
    record_skipped(ctx.recorder, title, params, ctx.secrets.mask(reason))


def _when_holds(ctx: Context, step: Step, check: Check) -> bool:
    try:
        return holds_now(ctx, check)
    except (StepBroken, SecretMissing) as e:
        ctx.failure = ctx.failure or Failure(ctx.sop, step, e)
        raise


def _optional_failed(ctx: Context, step: Step, title: str, error: SopError) -> None:
    where = f"{step.pos.file}:{step.pos.line}"
    ctx.optional_failures.append(f"{where} {title}: {error}")
    ctx.optional_steps.append(step)
    ctx.recorder.attach("optional step failed", str(error), "text/plain", "txt")
    ctx.recorder.event("optional_failed", sop=ctx.sop.id, step=title, at=where, message=str(error))


def _report_optional_failures(ctx: Context) -> None:
    """A case that passed despite optional failures says so: in its result and in pytest's warnings summary."""
    if not ctx.optional_failures:
        return
    ctx.recorder.attach(
        f"optional steps failed ({len(ctx.optional_failures)})", "\n".join(ctx.optional_failures), "text/plain", "txt"
    )
    for line, step in zip(ctx.optional_failures, ctx.optional_steps, strict=True):
        # Pointed at the SOP's line, where the user would look, not at this module.
        warnings.warn_explicit(
            OptionalStepFailed(f"{ctx.case.name}: optional step failed: {line}"),
            OptionalStepFailed, step.pos.file, step.pos.line,
        )  # fmt: skip


def run_steps(ctx: Context, steps: Iterable[Step]) -> None:
    """The steps in order; resuming, from the one the case paused at (those before it ran before the pause).

    The step's place is kept in ``ctx.position`` while it runs, so a pause knows where it stopped,
    inside ``run:`` sub-SOPs too (each step list adds a level).
    """
    start = ctx.resume_at.pop(0) if ctx.resume_at else 0
    for index, step in enumerate(steps):
        if index < start:
            continue
        ctx.position.append((ctx.sop.id, index))
        try:
            run_step(ctx, step)
        except Paused:
            if ctx.paused_at is None:  # the innermost level says it first
                ctx.paused_at = list(ctx.position)
            raise
        finally:
            ctx.position.pop()


def check_condition(ctx: Context, cond: Condition) -> None:
    title = f"done_when {cond.kind} {ctx.show_locator(cond.locator)}"
    with ctx.recorder.step(title):
        try:
            if cond.kind == "visible":
                _wait_visible(ctx, cond.locator, DEFAULT_TIMEOUT)
            elif cond.kind == "not_visible":
                _wait_hidden(ctx, cond.locator, DEFAULT_TIMEOUT)
            else:
                assert cond.match is not None
                _check_text(ctx, cond.match, DEFAULT_TIMEOUT)
        except StepFailed as e:
            ctx.failure = Failure(
                ctx.case.sop, cond, StepFailed(f"done_when not met: {e}", expected=e.expected, found=e.found)
            )
            raise ctx.failure.error from None
        except WebDriverException as e:
            raise StepBroken(f"Appium: {appium_reason(e)}") from None


def run_case(ctx: Context) -> None:
    """All steps, then done_when. On failure: on_failure steps, then failure evidence.

    A SOP with ``retry`` runs its first attempt unwrapped: a case that passes at once reads like
    any other. Once an attempt fails and another follows, the first one's steps are grouped
    under "attempt 1 of N" after the fact, and each further attempt runs in a step of its own.
    """
    sop = ctx.case.sop
    attempts = sop.retry.attempts if sop.retry else 1
    # A resumed case gets one attempt: another would start over on a reset app, undoing what people
    # did at the pause, and take their decision for its own. Run it again to start over.
    resumed = ctx.paused_since is not None and attempts > 1
    attempts = 1 if resumed else attempts
    for attempt in range(1, attempts + 1):
        ctx.failure = None
        ctx.optional_failures, ctx.optional_steps = [], []  # each attempt is reported on its own
        title = f"attempt {attempt} of {attempts}"
        mark = ctx.recorder.mark() if attempt == 1 else None
        try:
            if attempt == 1:
                _run_once(ctx)
            else:
                with ctx.recorder.step(title):
                    _run_once(ctx)
            _report_optional_failures(ctx)
            return
        except (StepFailed, StepBroken) as e:
            if attempt == attempts:
                if resumed and ctx.failure is not None:
                    ctx.failure.note = (
                        f"not retried (retry: {sop.retry.attempts if sop.retry else 1} attempts): it was resumed "
                        "from a pause, and another attempt would start over on a reset app"
                    )
                raise
            if attempt == 1:
                ctx.recorder.group(mark, title, e)
            ctx.recorder.event("attempt_failed", sop=sop.id, attempt=attempt, attempts=attempts, message=str(e))
            ctx.recorder.attach(f"attempt {attempt} failed", str(e), "text/plain", "txt")
            ctx.session.reset_app()  # the next attempt starts where a new session would


def _run_once(ctx: Context) -> None:
    sop = ctx.case.sop
    try:
        run_steps(ctx, sop.steps)
        for cond in sop.done_when:
            check_condition(ctx, cond)
    except (StepFailed, StepBroken):
        if ctx.failure is not None:
            ctx.failure.optional_failures = tuple(ctx.optional_failures)
        on_failure(ctx)
        raise


def on_failure(ctx: Context) -> None:
    """The SOP's on_failure steps, then evidence; neither may hide the original failure."""
    sop = ctx.case.sop
    if sop.on_failure:
        with ctx.recorder.step("on_failure"):
            for step in sop.on_failure:
                title, params = ctx.describe(step)
                try:
                    if step.when is not None and not holds_now(ctx, step.when):
                        _skipped(ctx, step.when, title, params)
                        continue
                    with ctx.recorder.step(title, params):
                        _execute(ctx, step)
                except SopError as e:
                    ctx.recorder.attach(f"on_failure {step.action} failed", str(e), "text/plain", "txt")
    if ctx.evidence == "none":
        return
    try:
        _attach_screenshot(ctx, "screenshot at failure")
        _attach_source(ctx, "page source at failure")
        device_log = ctx.session.device_log()
        if device_log:
            ctx.recorder.attach("device log", ctx.secrets.mask(device_log), "text/plain", "log")
    except (WebDriverException, HTTPError, OSError):
        pass  # the device may be what failed; the error already says so
