"""Every unknown name a user can misspell, in a SOP file or in sop.yaml, gets a did-you-mean."""

from __future__ import annotations

from pathlib import Path

import pytest
from sopsuite import SOP_YAML

from pytest_sop.actions import build_registry
from pytest_sop.errors import SopInvalid
from pytest_sop.suite import Suite
from pytest_sop.suiteconfig import load_config


def lint(tmp_path: Path, sop: str, config: str = SOP_YAML) -> list[str]:
    """Every error of ``s.sop.yaml`` (or of sop.yaml, when that is bad), with paths relative to ``tmp_path``."""
    (tmp_path / "sop.yaml").write_text(config)
    (tmp_path / "s.sop.yaml").write_text(sop)
    try:
        suite = Suite(
            load_config(str(tmp_path / "sop.yaml"), "sop.yaml"), build_registry(), str(tmp_path), base=str(tmp_path)
        )
    except SopInvalid as e:
        return [err.format() for err in e.errors]
    return [e.format() for e in suite.result(str(tmp_path / "s.sop.yaml")).errors]


H = "id: s\nsteps:\n"
BACK = H + "  - back\n"

SOP_TYPOS = {
    "step modifier timeout": (
        H + "  - tap: {id: x}\n    timout: 5\n",
        "s.sop.yaml:4:5: steps[0].timout: unknown key 'timout' beside action 'tap'; a step has one action and "
        "the modifiers timeout, retry, optional, name, when (did you mean 'timeout'?)",
    ),
    "step modifier optional": (
        H + "  - back: null\n    optinal: true\n",
        "s.sop.yaml:4:5: steps[0].optinal: unknown key 'optinal' beside action 'back'; a step has one action and "
        "the modifiers timeout, retry, optional, name, when (did you mean 'optional'?)",
    ),
    "top-level key": (
        "id: s\ntitel: x\nsteps:\n  - back\n",
        "s.sop.yaml:2:1: titel: unknown key 'titel'; expected one of: id, title, description, owner, tags, "
        "severity, app, requires, inputs, allowed_actions, retry, schedule, escalate_to, escalate_on, steps, done_when, "
        "on_failure, kind, xfail (did you mean 'title'?)",
    ),
    "step modifier written as a SOP key": (
        "id: s\ntimeout: 5\nsteps:\n  - back\n",
        "s.sop.yaml:2:1: timeout: unknown key 'timeout'; 'timeout' is a step modifier, not a SOP key: write it "
        "in its step, lined up under the action",
    ),
    "misspelt step modifier written as a SOP key": (
        "id: s\nsteps:\n  - back\noptinal: true\n",
        "s.sop.yaml:4:1: optinal: unknown key 'optinal' (did you mean 'optional'?); 'optional' is a step "
        "modifier, not a SOP key: write it in its step, lined up under the action",
    ),
    "requires": (
        "id: s\nrequire:\n  device: {}\nsteps:\n  - back\n",
        "s.sop.yaml:2:1: require: unknown key 'require'; expected one of: id, title, description, owner, tags, "
        "severity, app, requires, inputs, allowed_actions, retry, schedule, escalate_to, escalate_on, steps, done_when, "
        "on_failure, kind, xfail (did you mean 'requires'?)",
    ),
    "requires.device key": (
        "id: s\nrequires:\n  device: {platfrom: android}\nsteps:\n  - back\n",
        "s.sop.yaml:3:12: requires.device.platfrom: unknown key 'platfrom'; expected one of: platform, tags, id "
        "(did you mean 'platform'?)",
    ),
    "action parameter": (
        H + "  - type: {into: {id: x}, txt: hi}\n",
        "s.sop.yaml:3:27: steps[0].type.txt: unknown key 'txt'; expected one of: into, text, clear (did you mean 'text'?)",
    ),
    "locator": (
        H + "  - tap: {acessibility_id: x}\n",
        "s.sop.yaml:3:11: steps[0].tap.acessibility_id: unknown locator 'acessibility_id'; expected one of: id, "
        "accessibility_id, text, text_contains, text_matches, xpath, css, class, uiautomator, with refinements index, "
        "inside, below, checked, enabled (did you mean 'accessibility_id'?)",
    ),
    "retry key, reported once": (
        "id: s\nretry: {attemps: 2}\nsteps:\n  - back\n",
        "s.sop.yaml:2:9: retry.attemps: unknown key 'attemps'; expected one of: attempts, backoff "
        "(did you mean 'attempts'?)",
    ),
    "steps key, reported once": (
        "id: s\nstep:\n  - back\n",
        "s.sop.yaml:2:1: step: unknown key 'step'; expected one of: id, title, description, owner, tags, "
        "severity, app, requires, inputs, allowed_actions, retry, schedule, escalate_to, escalate_on, steps, done_when, "
        "on_failure, kind, xfail (did you mean 'steps'?)",
    ),
    "done_when condition": (
        BACK + "done_when:\n  - visibel: {id: x}\n",
        "s.sop.yaml:5:5: done_when[0].visibel: unknown condition 'visibel'; expected visible, not_visible or text "
        "(did you mean 'visible'?)",
    ),
    "severity": (
        "id: s\nseverity: critcal\nsteps:\n  - back\n",
        "s.sop.yaml:2:11: severity: expected one of: blocker, critical, normal, minor, trivial, got 'critcal' "
        "(did you mean 'critical'?)",
    ),
    "parameter choice": (
        H + "  - swipe: {direction: lef}\n",
        "s.sop.yaml:3:24: steps[0].swipe.direction: expected one of: up, down, left, right, got 'lef' "
        "(did you mean 'left'?)",
    ),
    "input name": (
        "id: s\ninputs:\n  - {id: a, caption: x}\nsteps:\n  - type: {into: {id: x}, text: '${inputs.captoin}'}\n",
        "s.sop.yaml:5:33: steps[0].type.text: ${inputs.captoin} is not an input of this SOP; inputs are: caption "
        "(did you mean 'caption'?)",
    ),
    "action": (
        H + "  - tapp: {id: x}\n",
        "s.sop.yaml:3:5: steps[0].tapp: unknown action 'tapp' (did you mean 'tap'?)",
    ),
}


@pytest.mark.parametrize(("text", "expected"), SOP_TYPOS.values(), ids=SOP_TYPOS.keys())
def test_sop_typo_gets_did_you_mean(tmp_path: Path, text: str, expected: str) -> None:
    assert lint(tmp_path, text) == [expected]


CONFIG_TYPOS = {
    "top-level key": (
        SOP_YAML + "polcy: {}\n",
        "sop.yaml:22:1: polcy: unknown key 'polcy'; expected one of: appium, apps, devices, accounts, policy, leases "
        "(did you mean 'policy'?)",
    ),
    "appium": (
        SOP_YAML + "appium: {sever: local}\n",
        "sop.yaml:22:10: appium.sever: unknown key 'sever'; expected one of: server (did you mean 'server'?)",
    ),
    "app key": (
        SOP_YAML.replace("    capabilities: {platformName", "    capabilites: {platformName"),
        "sop.yaml:3:5: apps.social.capabilites: unknown key 'capabilites'; expected one of: capabilities, url "
        "(did you mean 'capabilities'?)",
    ),
    # The device with the typo is still known by id: the account pinned to it gets no second error.
    "device key": (
        SOP_YAML.replace("    platform: android\n    tags: [phone]\n", "    platfrom: android\n    tags: [phone]\n"),
        "sop.yaml:6:5: devices[0].platfrom: unknown key 'platfrom'; expected one of: id, platform, tags, "
        "capabilities, server (did you mean 'platform'?)",
    ),
    "discover": (
        SOP_YAML.replace("devices:\n", "devices:\n  - discover: abd\n", 1),
        "sop.yaml:5:15: devices[0].discover: expected one of: adb, grid, got 'abd' (did you mean 'adb'?)",
    ),
    "account key": (
        SOP_YAML.replace("    role: viewer", "    rol: viewer"),
        "sop.yaml:20:5: accounts[2].rol: unknown key 'rol'; expected one of: id, role, tags, devices, fields "
        "(did you mean 'role'?)",
    ),
    "account's device": (
        SOP_YAML.replace("devices: [pixel-a]", "devices: [pixel-aa]"),
        "sop.yaml:14:15: accounts[0].devices[0]: unknown device 'pixel-aa'; devices are: pixel-a, pixel-b "
        "(did you mean 'pixel-a'?)",
    ),
    "policy key": (
        SOP_YAML + "policy: {role: {}}\n",
        "sop.yaml:22:10: policy.role: unknown key 'role'; expected one of: roles, operators, signers, "
        "require_signatures (did you mean 'roles'?)",
    ),
    "role key": (
        SOP_YAML + "policy:\n  roles:\n    lead: {may_aprove: true}\n",
        "sop.yaml:24:12: policy.roles.lead.may_aprove: unknown key 'may_aprove'; expected one of: may_approve, "
        "sops, devices, accounts (did you mean 'may_approve'?)",
    ),
    "operator's role": (
        SOP_YAML + "policy:\n  roles:\n    lead: {may_approve: true}\n  operators:\n    bob: [leed]\n",
        "sop.yaml:26:11: policy.operators.bob[0]: unknown role 'leed'; roles are: lead (did you mean 'lead'?)",
    ),
}


@pytest.mark.parametrize(("config", "expected"), CONFIG_TYPOS.values(), ids=CONFIG_TYPOS.keys())
def test_config_typo_gets_did_you_mean(tmp_path: Path, config: str, expected: str) -> None:
    assert lint(tmp_path, BACK, config) == [expected]


def test_a_step_with_two_real_actions_is_still_one_error(tmp_path: Path) -> None:
    """Two known actions in one step is not a typo: the old message, no guess."""
    assert lint(tmp_path, H + "  - back: null\n    tap: {id: x}\n") == [
        "s.sop.yaml:3:5: steps[0]: expected exactly one action per step, found 2 (back, tap)"
    ]


def test_misspelt_modifier_does_not_hide_the_steps_other_errors(tmp_path: Path) -> None:
    assert lint(tmp_path, H + "  - tap: {id: x}\n    timout: 5\n    optional: maybe\n") == [
        "s.sop.yaml:4:5: steps[0].timout: unknown key 'timout' beside action 'tap'; a step has one action and "
        "the modifiers timeout, retry, optional, name, when (did you mean 'timeout'?)",
        "s.sop.yaml:5:15: steps[0].optional: expected true or false, got text",
    ]


REFERENCE_TYPOS = {
    "template namespace": (
        H + "  - type: {into: {id: x}, text: '${acount.username}'}\n",
        "unknown namespace 'acount' in '${acount.username}'; expected one of inputs, account, device, vars, env, params "
        "(did you mean 'account'?)",
    ),
    "app": (
        "id: s\napp: socal\nsteps: [back]\n",
        "unknown app 'socal'; apps in sop.yaml: social (did you mean 'social'?)",
    ),
    "run target": (H + "  - run: ss\n", "has that id (did you mean 's'?)"),
    "saved variable": (
        H + "  - save_text: {from: {id: x}, as: total}\n  - type: {into: {id: y}, text: '${vars.totl}'}\n",
        "${vars.totl} is never saved; add a save_text step with 'as: totl' before it (did you mean 'total'?)",
    ),
    "device field": (H + "  - type: {into: {id: x}, text: '${device.idd}'}\n", "(did you mean 'id'?)"),
    "account field": (
        "id: s\nrequires: {account: {role: publisher}}\nsteps:\n  - type: {into: {id: x}, text: '${account.usrname}'}\n",
        "${account.usrname} is not a field of account(s) publisher-1, publisher-2 (did you mean 'username'?)",
    ),
}


@pytest.mark.parametrize(("text", "expected"), REFERENCE_TYPOS.values(), ids=REFERENCE_TYPOS.keys())
def test_reference_typo_gets_did_you_mean(tmp_path: Path, text: str, expected: str) -> None:
    (error,) = lint(tmp_path, text)
    assert error.endswith(expected), error
