"""The dry run names the environment variables a case needs that are not set, never a value."""

from __future__ import annotations

from pathlib import Path

import pytest
from sopsuite import SOP_YAML, write_suite

from pytest_sop.actions import build_registry
from pytest_sop.model import Case
from pytest_sop.plan import MissingVariable, missing_variables
from pytest_sop.suite import Suite
from pytest_sop.suiteconfig import load_config

# Publishes with a secret input and the account's password; the app's url needs ${env.SOCIAL_HOST}.
SECRETS = """\
id: publish
app: social
requires:
  account: {role: publisher, each: true}
inputs:
  - {id: cat, caption: Cat, token: {env: POST_TOKEN}}
steps:
  - type: {into: {id: token}, text: "${inputs.token}"}
  - type: {into: {id: password}, text: "${account.password}"}
  - open_url: "/build/${env.BUILD_ID}"
"""
CONFIG = SOP_YAML.replace("    capabilities: {", "    url: 'http://${env.SOCIAL_HOST}/'\n    capabilities: {", 1)
ALL = ("PUB1_PASSWORD", "PUB2_PASSWORD", "POST_TOKEN", "BUILD_ID", "SOCIAL_HOST")


def cases(tmp_path: Path) -> tuple[Suite, list[Case]]:
    (tmp_path / "sop.yaml").write_text(CONFIG)
    (tmp_path / "s.sop.yaml").write_text(SECRETS)
    suite = Suite(load_config(str(tmp_path / "sop.yaml")), build_registry(), str(tmp_path), base=str(tmp_path))
    result = suite.result(str(tmp_path / "s.sop.yaml"))
    assert result.errors == ()
    return suite, list(result.cases)


def test_missing_variables_name_what_needs_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALL:
        monkeypatch.delenv(name, raising=False)
    suite, (pub1, pub2) = cases(tmp_path)
    assert missing_variables(pub1, suite.config) == [
        MissingVariable("POST_TOKEN", "input token of row cat"),
        MissingVariable("PUB1_PASSWORD", "account publisher-1, field password"),
        MissingVariable("BUILD_ID", "${env.BUILD_ID} in the steps"),
        MissingVariable("SOCIAL_HOST", "app social, url"),
    ]
    assert MissingVariable("PUB2_PASSWORD", "account publisher-2, field password") in missing_variables(
        pub2, suite.config
    )
    everything = {name: "set-to-something-long" for name in ALL}
    assert missing_variables(pub1, suite.config, everything) == []


def test_dry_run_names_unset_variables_and_no_value(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALL:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PUB1_PASSWORD", "hunter2-canary")  # set: not named, its value never shown
    monkeypatch.setenv("SOCIAL_HOST", "example.invalid")
    write_suite(pytester, {"s.sop.yaml": SECRETS}, config=CONFIG)
    result = pytester.runpytest("--sop", "--sop-dry-run")
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "s.sop.yaml::publish[[]cat-publisher-1]*",
            "  MISSING: environment variable POST_TOKEN is not set (input token of row cat): the case would stop "
            "where it is needed",
            "  MISSING: environment variable BUILD_ID is not set (${env.BUILD_ID} in the steps): the case would "
            "stop where it is needed",
            "s.sop.yaml::publish[[]cat-publisher-2]*",
            "  MISSING: environment variable POST_TOKEN is not set*",
            "  MISSING: environment variable PUB2_PASSWORD is not set (account publisher-2, field password)*",
        ]
    )
    assert "PUB1_PASSWORD" not in out and "SOCIAL_HOST" not in out
    assert "hunter2-canary" not in out and "example.invalid" not in out
    # CI's pre-check fails: the run would stop on them.
    result.stdout.fnmatch_lines(
        ["dry run: 2 case(s) need unset environment variables: BUILD_ID, POST_TOKEN, PUB2_PASSWORD"]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_plan_with_every_variable_set_names_none(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALL:
        monkeypatch.setenv(name, f"value-of-{name.lower()}")
    write_suite(pytester, {"s.sop.yaml": SECRETS}, config=CONFIG)
    result = pytester.runpytest("--sop", "--sop-dry-run")
    assert "MISSING" not in result.stdout.str()
    assert "value-of-pub1_password" not in result.stdout.str()
    assert result.ret == 0
