"""The policy holds for everything a case runs: `run:` targets are checked like the case itself."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, cast

import pytest
from test_engine_fake import FAKE_CONFIG, allure_results, own_locks

from pytest_sop.actions import build_registry
from pytest_sop.errors import NotPermitted
from pytest_sop.masking import Secrets
from pytest_sop.model import Account, Case, Device, Policy, Role, Sop, SourcePos, Step
from pytest_sop.policy import allowed_pairs, check_sop, may_approve
from pytest_sop.recorders import Recorder
from pytest_sop.runner import Context, run_steps

POS = SourcePos("x.sop.yaml", 1, 1)
QA = Role("qa", sops=("tag:smoke",), accounts=("tag:eu",))
FIN = Role("fin", sops=("id:publish-post", "id:refund"), accounts=("tag:us",))
POLICY = Policy(roles={"qa": QA, "fin": FIN}, operators={"bob": ("qa",), "erin": ("qa", "fin")})


def sop(
    sop_id: str, runs: tuple[str, ...] = (), *, on_failure: tuple[str, ...] = (), tags: tuple[str, ...] = ()
) -> Sop:
    def steps(ids: tuple[str, ...]) -> tuple[Step, ...]:
        return tuple(Step("run", {"sop": i}, POS) for i in ids)

    return Sop(sop_id, "x.sop.yaml", POS, steps(runs), tags=tags, on_failure=steps(on_failure))


def suite_of(*sops: Sop) -> Any:
    return {s.id: s for s in sops}.get


def test_a_run_target_the_role_may_not_run_is_refused_naming_who_runs_it() -> None:
    publish, refund = sop("publish-post", ("refund",), tags=("smoke",)), sop("refund")
    note = Step("note", {"text": "steps that run nothing are passed over"}, POS)
    publish = replace(publish, steps=(note, *publish.steps))
    roles, reason = check_sop(POLICY, "bob", publish, suite_of(publish, refund))
    assert (roles, reason) == ([], "'bob' (roles qa) may not run SOP 'refund' (run by 'publish-post')")
    assert check_sop(POLICY, "bob", refund, suite_of(refund)) == ([], "'bob' (roles qa) may not run SOP 'refund'")
    assert check_sop(POLICY, "erin", sop("other"), suite_of()) == ([], "'erin' (roles qa, fin) may not run SOP 'other'")
    assert check_sop(POLICY, "mallory", refund, suite_of()) == ([], "operator 'mallory' is not in the policy")


def test_run_targets_are_followed_through_on_failure_and_other_sops() -> None:
    publish = sop("publish-post", ("helper",), tags=("smoke",))
    helper = sop("helper", on_failure=("refund",), tags=("smoke",))
    _, reason = check_sop(POLICY, "bob", publish, suite_of(publish, helper, sop("refund")))
    assert reason == "'bob' (roles qa) may not run SOP 'refund' (run by 'helper')"


def test_only_roles_that_allow_every_sop_count() -> None:
    """qa allows the case but not what it runs: only fin's limits (us accounts) may apply."""
    publish, refund = sop("publish-post", ("refund",), tags=("smoke",)), sop("refund")
    assert check_sop(POLICY, "erin", publish, suite_of(publish, refund)) == ([FIN], None)
    assert check_sop(POLICY, "erin", publish, suite_of(publish)) == ([QA, FIN], None)  # unknown target: collection says


@pytest.mark.timeout(10)  # a cycle followed forever shows up as this test's failure, not a hang
def test_run_cycles_end() -> None:
    a, b = sop("a", ("b",), tags=("smoke",)), sop("b", ("a", "b"), tags=("smoke",))
    assert check_sop(POLICY, "bob", a, suite_of(a, b)) == ([QA], None)
    assert check_sop(None, "bob", a, suite_of(a, b)) == ([], None)


def test_run_time_check_limits_the_leased_account() -> None:
    """Steps run from Python had no collection check: the target is checked on the case's device and account."""
    device = Device("fake-phone", "fake", POS)
    caller = sop("python-steps", ("refund",))
    policy = Policy(roles={"open": Role("open", accounts=("tag:eu",))}, operators={"bob": ("open",)})

    def context(account: Account, policy: Policy = policy) -> Context:
        return Context(
            case=Case(caller, None, None), session=cast(Any, None), device=device, account=account,
            secrets=Secrets(), recorder=Recorder(), registry=build_registry(), get_sop=suite_of(sop("refund")),
            operator="bob", policy=policy,
        )  # fmt: skip

    with pytest.raises(NotPermitted) as e:
        run_steps(context(Account("eu-1", POS, tags=("eu",)), POLICY), caller.steps)
    assert str(e.value) == "not permitted: 'bob' (roles qa) may not run SOP 'refund' (run by 'python-steps')"

    with pytest.raises(NotPermitted) as e:
        run_steps(context(Account("us-1", POS, tags=("us",))), caller.steps)
    assert str(e.value) == (
        "not permitted: 'bob' may not run SOP 'refund' (run by 'python-steps') on fake-phone with account us-1"
    )
    run_steps(context(Account("eu-1", POS, tags=("eu",))), caller.steps)  # refund has no steps: nothing to drive


def test_device_and_account_selectors_of_each_kind() -> None:
    phone, lab_ipad, spare = (
        Device("phone", "android", POS),
        Device("ipad", "ios", POS, ("lab",)),
        Device("spare", "ios", POS),
    )
    publisher, viewer = Account("pub", POS, "publisher"), Account("view", POS, "viewer", ("eu",))
    pairs = [(d, a) for d in (phone, lab_ipad, spare) for a in (publisher, viewer, None)]
    android = Role("android", devices=("platform:android",), accounts=("role:publisher",))
    lab = Role("lab", devices=("tag:lab", "id:spare"), accounts=("id:view",))
    eu = Role("eu", accounts=("tag:eu",))
    policy = Policy({r.name: r for r in (android, lab, eu)}, {})
    assert allowed_pairs(policy, [android], pairs) == [(phone, publisher), (phone, None)]
    assert allowed_pairs(policy, [lab], pairs) == [(lab_ipad, viewer), (lab_ipad, None), (spare, viewer), (spare, None)]
    assert allowed_pairs(policy, [eu], pairs) == [(d, a) for d, a in pairs if a is not publisher]
    assert allowed_pairs(policy, [android, lab], pairs) == [
        (phone, publisher), (phone, None), (lab_ipad, viewer), (lab_ipad, None), (spare, viewer), (spare, None)
    ]  # fmt: skip
    assert allowed_pairs(policy, [], pairs) == [] and allowed_pairs(None, [], pairs) == pairs

    # a tag may hold a colon; a selector kind the thing does not have selects nothing
    team = Account("team", POS, tags=("team:eu",))
    odd = Role("odd", accounts=("platform:android", "tag:team:eu"))
    assert allowed_pairs(policy, [odd], [(phone, team), (phone, viewer)]) == [(phone, team)]


def test_who_may_approve() -> None:
    policy = Policy({"lead": Role("lead", may_approve=True), "qa": Role("qa")}, {"alice": ("lead",), "bob": ("qa",)})
    assert may_approve(policy, "alice", "lead")
    assert not may_approve(policy, "alice", "qa")  # approving is per role
    assert not may_approve(policy, "bob", "qa")  # holding the role is not enough
    assert not may_approve(None, "alice", "lead")  # without a policy nobody approves


POLICY_YAML = """\
policy:
  roles:
    qa: {sops: ["tag:smoke"]}
  operators: {bob: [qa]}
"""
PUBLISH = """\
id: publish-post
tags: [smoke]
steps:
  - assert_visible: {id: username}
  - run: helper
"""
HELPER = "id: helper\ntags: [smoke]\nsteps:\n  - note: helping\n  - run: refund\n"
REFUND = "id: refund\nsteps:\n  - note: refunded\n"


def run_suite(
    pytester: pytest.Pytester, url: str, sops: dict[str, str], config: str = FAKE_CONFIG, *args: str
) -> pytest.RunResult:
    pytester.makefile(".yaml", sop=config)
    for name, text in sops.items():
        (pytester.path / name).write_text(text)
    audit = pytester.path / "audit.jsonl"
    return pytester.runpytest(
        "--sop", "--sop-appium", url, "--sop-operator", "bob", "-rs", f"--sop-audit={audit}",
        "--alluredir", str(pytester.path / "allure"), *own_locks(pytester.path), *args,
    )  # fmt: skip


def refund_ran(pytester: pytest.Pytester) -> bool:
    lines = (pytester.path / "audit.jsonl").read_text().splitlines()
    return any("refunded" in e["step"] for e in map(json.loads, lines) if e["event"] == "step_start")


def test_run_of_a_sop_the_operator_may_not_run_skips_the_case(pytester: pytest.Pytester, appium_url: str) -> None:
    sops = {"publish.sop.yaml": PUBLISH, "helper.sop.yaml": HELPER, "refund.sop.yaml": REFUND}
    result = run_suite(pytester, appium_url, sops, FAKE_CONFIG + POLICY_YAML)
    result.assert_outcomes(skipped=3)  # publish-post and helper, which run refund, and refund itself
    reason = "not permitted: 'bob' (roles qa) may not run SOP 'refund'"
    skips = {r["name"]: r["statusDetails"]["message"] for r in allure_results(pytester.path / "allure")}
    assert skips.keys() == {"publish-post", "helper", "refund"}
    assert f"{reason} (run by 'helper')" in skips["publish-post"] and f"{reason} (run by 'helper')" in skips["helper"]
    assert skips["refund"].rstrip().endswith(reason)
    assert not refund_ran(pytester)
    assert {r["status"] for r in allure_results(pytester.path / "allure")} == {"skipped"}


def test_run_in_on_failure_is_checked_too(pytester: pytest.Pytester, appium_url: str) -> None:
    failing = (
        "id: failing\ntags: [smoke]\nsteps:\n  - tap: {id: nope}\n    timeout: 0.1\non_failure:\n  - run: refund\n"
    )
    result = run_suite(
        pytester, appium_url, {"f.sop.yaml": failing, "refund.sop.yaml": REFUND}, FAKE_CONFIG + POLICY_YAML
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) == 0 and not refund_ran(pytester)


def test_run_obeys_allowed_actions_of_every_sop_running(pytester: pytest.Pytester, appium_url: str) -> None:
    """`b` may only note and run; it runs `c`, which taps. `a` (no limits of its own) runs `b`."""
    sops = {
        "a.sop.yaml": "id: a\nsteps:\n  - run: b\n",
        "b.sop.yaml": "id: b\nallowed_actions: [note, run]\nsteps:\n  - note: b\n  - run: c\n",
        "c.sop.yaml": "id: c\nsteps:\n  - tap: {id: login_button}\n",
    }
    # Collection refuses b, and a, which runs b: nothing of them runs.
    result = run_suite(pytester, appium_url, sops, FAKE_CONFIG, "--continue-on-collection-errors")
    result.stdout.fnmatch_lines(
        [
            "*a.sop.yaml:3:*run*SOP 'b' (b.sop.yaml) has errors in what it runs*",
            "*b.sop.yaml:5:*run*runs 'c' whose step 'tap'*is not in allowed_actions*",
        ]
    )
    assert {r["name"] for r in allure_results(pytester.path / "allure")} == {"c"}
    # Steps run from Python have no collection check: the run-time check stops them.
    pytester.makepyfile(
        test_from_python="""
        import pytest

        @pytest.mark.sop(device={"platform": "fake"})
        def test_runs_b(sop_run):
            sop_run([{"run": "b"}])
        """
    )
    inner = pytester.runpytest("--sop-appium", appium_url, "test_from_python.py", *own_locks(pytester.path))
    inner.assert_outcomes(failed=1)
    inner.stdout.fnmatch_lines(["*SOP 'b' runs 'c' whose step 'tap' (c.sop.yaml:3) is not in its allowed_actions*"])


def test_steps_run_from_python_are_checked_too(pytester: pytest.Pytester, appium_url: str) -> None:
    """sop_run with a step list has no SOP for collection to check: the run: target is checked when it runs."""
    pytester.makepyfile(
        test_py="""
        import pytest

        @pytest.mark.sop(device={"platform": "fake"})
        def test_steps(sop_run):
            sop_run([{"note": "before"}, {"run": "refund"}])
        """
    )
    result = run_suite(pytester, appium_url, {"refund.sop.yaml": REFUND}, FAKE_CONFIG + POLICY_YAML, "test_py.py")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*not permitted: 'bob' (roles qa) may not run SOP 'refund' (run by 'python-steps')"])
    steps = [json.loads(line).get("step", "") for line in (pytester.path / "audit.jsonl").read_text().splitlines()]
    assert "note 'before'" in steps and not refund_ran(pytester)
