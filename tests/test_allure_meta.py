"""Allure metadata: labels, history ids, categories, environment, executor, atomic writes."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from allure_commons.types import LabelType
from hypothesis import given
from hypothesis import strategies as st

import pytest_sop
from pytest_sop.allure_meta import (
    categories,
    collect_environment,
    environment_properties,
    executor,
    labels_for,
    write_globals,
    write_json_atomic,
    write_text_atomic,
)
from pytest_sop.model import Case, InputRow, Sop, SourcePos
from pytest_sop.recorders import human_message

POS = SourcePos("social/publish.sop.yaml", 1, 1)


def make_sop(sop_id: str = "publish-post", **kw: Any) -> Sop:
    return Sop(id=sop_id, path=POS.file, pos=POS, steps=(), **kw)


def make_case(sop: Sop | None = None, row: str | None = None, account: str | None = None, **values: Any) -> Case:
    inputs = InputRow(id=row, values=values, pos=POS) if row is not None else None
    return Case(sop=sop or make_sop(), inputs=inputs, account_id=account)


FULL_SOP = make_sop(
    title="Publish a post with an image", owner="social-ops", tags=("smoke", "social"), severity="critical"
)


# -- labels ---------------------------------------------------------------------------------


def test_labels_carry_every_contract_label_in_order() -> None:
    case = make_case(FULL_SOP, row="cat", account="publisher-1")
    labels = labels_for(case, "pixel-a", "publisher-1", "alice", "social")
    assert labels == [
        ("sop", "publish-post"),
        ("device", "pixel-a"),
        ("account", "publisher-1"),
        ("operator", "alice"),
        ("owner", "social-ops"),
        ("severity", "critical"),
        ("tag", "smoke"),
        ("tag", "social"),
        ("epic", "social"),
        ("feature", "Publish a post with an image"),
        ("story", "cat-publisher-1"),
        ("framework", "pytest-sop"),
    ]


def test_label_names_are_the_ones_allure_knows() -> None:
    names = {name for name, _ in labels_for(make_case(FULL_SOP, row="cat"), "d", "a", "op", "suite")}
    known = {LabelType.SEVERITY, LabelType.TAG, LabelType.EPIC, LabelType.FEATURE, LabelType.STORY}
    assert known | {LabelType.FRAMEWORK} <= names
    assert names == known | {LabelType.FRAMEWORK, "sop", "device", "account", "operator", "owner"}


def test_labels_leave_out_what_the_case_does_not_have() -> None:
    labels = labels_for(make_case(make_sop("wipe")), None, None, "ci-bot", "")
    assert labels == [
        ("sop", "wipe"),
        ("operator", "ci-bot"),
        ("severity", "normal"),
        ("feature", "wipe"),  # no title: the SOP id names the feature
        ("framework", "pytest-sop"),
    ]


def test_labels_name_the_account_that_ran_even_when_the_case_did_not_pin_one() -> None:
    labels = dict(labels_for(make_case(FULL_SOP, row="cat"), "pixel-a", "publisher-2", "alice", "social"))
    assert labels["account"] == "publisher-2"
    assert labels["story"] == "cat"


def test_labels_hold_ids_only_never_input_values() -> None:
    case = make_case(FULL_SOP, row="cat", caption="hunter2-caption")
    flat = json.dumps(labels_for(case, "pixel-a", "publisher-1", "alice", "social"))
    assert "hunter2" not in flat


# -- categories -------------------------------------------------------------------------------

# What allure-pytest writes as statusDetails.message for the outcomes the contract names.
SAMPLES: list[tuple[str, str, str | None]] = [
    ("failed", "pytest_sop.errors.StepFailed: text of {id: caption} is 'Dog', not 'Cat'", "Product failures"),
    ("failed", "pytest_sop.errors.StepFailed: done_when visible {id: post-published} did not hold", "Product failures"),
    ("failed", "pytest_sop.errors.StepFailed: rejected by bob: caption is wrong", "Product failures"),
    ("failed", "AssertionError: assert 1 == 2\n +  where 1 = f()", "Product failures"),
    (
        "broken",
        "pytest_sop.errors.DeviceError: pixel-a: session not created on http://127.0.0.1:4723: "
        "Could not find a connected Android device",
        "Infrastructure problems",
    ),
    (
        "broken",
        "pytest_sop.errors.StepBroken: Appium at http://127.0.0.1:4723 stopped answering: "
        "<urlopen error [Errno 111] Connection refused>",
        "Infrastructure problems",
    ),
    ("broken", "pytest_sop.errors.StepBroken: Appium: An element could not be located", "Infrastructure problems"),
    (
        "broken",
        "pytest_sop.errors.DeviceError: pixel-a: Appium at http://10.0.0.2:4723 cannot be reached: timed out",
        "Infrastructure problems",
    ),
    (
        "broken",
        "pytest_sop.errors.LeaseTimeout: no device matching platform=android became free within 300s",
        "Infrastructure problems",
    ),
    ("broken", "pytest_sop.errors.DeviceError: pool: no device matches platform=ios", "Infrastructure problems"),
    ("broken", "pytest_sop.errors.StepBroken: device pixel-c is offline\nsee adb devices", "Infrastructure problems"),
    ("broken", "pytest_sop.errors.StepBroken: SOP 'login' is not in the suite", "SOP errors"),
    ("broken", "pytest_sop.errors.StepBroken: ${inputs.caption} has no value in this case", "SOP errors"),
    ("broken", "pytest_sop.errors.StepBroken: ${vars.code} was not saved before this step", "SOP errors"),
    (
        "broken",
        "pytest_sop.runner.SecretMissing: environment variable SOCIAL_PUB1_PASSWORD is not set "
        "(it holds a secret in sop.yaml)",
        "SOP errors",
    ),
    (
        "broken",  # an SOP error that mentions Appium still is an SOP error, in both Allure 2 and 3
        "pytest_sop.errors.StepBroken: environment variable APPIUM_TOKEN is not set (it holds a secret in sop.yaml)",
        "SOP errors",
    ),
    ("broken", "pytest_sop.errors.StepBroken: uiautomator locators work on Android only, not on web", "SOP errors"),
    ("broken", "pytest_sop.errors.StepBroken: press_key is not available on the web driver", "SOP errors"),
    (
        "broken",
        "pytest_sop.errors.StepBroken: below: works on web devices only, not on fake: use inside:",
        "SOP errors",
    ),
    ("broken", "pytest_sop.errors.StepBroken: assert_url works on web devices only, not on android", "SOP errors"),
    (
        "broken",
        "pytest_sop.errors.StepBroken: a css locator cannot be refined on android (index, inside)",
        "SOP errors",
    ),
    (
        "broken",
        "pytest_sop.errors.StepBroken: the fake driver does not report whether an element is checked",
        "SOP errors",
    ),
    (
        "broken",
        "pytest_sop.errors.StepBroken: launch_app on a web device needs the app's url in sop.yaml",
        "SOP errors",
    ),
    ("skipped", "Skipped: awaiting approval: caption-ok", "Awaiting approval"),
    ("skipped", "Skipped: awaiting handoff: captcha", "Awaiting handoff"),
    ("skipped", "Skipped: not permitted: operator bob has no role that may run publish-post", "Not permitted"),
    ("broken", "ValueError: something else went wrong", None),  # Allure's default "Test defects"
    ("skipped", "Skipped: unconditional skip", None),
    ("passed", "", None),
]


def allure2_categories(status: str, message: str) -> list[str]:
    """Allure 2 (CategoriesPlugin.matches): every category whose regexes *fully* match, DOTALL."""
    found = []
    for cat in categories():
        statuses = cat.get("matchedStatuses") or []
        ok = not statuses or status in statuses
        for key in ("messageRegex", "traceRegex"):
            if key in cat:
                ok = ok and re.fullmatch(cat[key], message, re.DOTALL) is not None
        if ok:
            found.append(cat["name"])
    return found


def allure3_category(status: str, message: str) -> str | None:
    """Allure 3 (plugin-allure2 categories.ts): the *first* category whose regex is *found* ("s" flag)."""
    for cat in categories():
        statuses = cat.get("matchedStatuses") or []
        if statuses and status not in statuses:
            continue
        regex = cat.get("messageRegex")
        if regex and not (message and re.search(regex, message, re.DOTALL)):
            continue
        return str(cat["name"])
    return None


# pytest-sop says its errors in words: the class name is taken off before the result is written.
IN_WORDS = [(status, human_message(message) or "", expected) for status, message, expected in SAMPLES]


def test_messages_in_words_have_no_class_name() -> None:
    assert human_message("pytest_sop.errors.StepFailed: text of {id: a}\n") == "text of {id: a}"
    assert human_message("Skipped: awaiting approval: caption-ok") == "awaiting approval: caption-ok"
    assert human_message("ValueError: something else") == "ValueError: something else"  # not pytest-sop's own


@pytest.mark.parametrize(("status", "message", "expected"), SAMPLES + IN_WORDS)
def test_categories_sort_messages_in_allure2_and_allure3(status: str, message: str, expected: str | None) -> None:
    assert allure2_categories(status, message) == ([expected] if expected else [])
    assert allure3_category(status, message) == expected


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run JavaScript regular expressions")
def test_categories_sort_messages_with_javascript_regexes(tmp_path: Path) -> None:
    """The same classification with the JavaScript engine Allure 3 uses (categories.ts)."""
    script = tmp_path / "match.js"
    script.write_text(
        """
        const [cats, samples] = JSON.parse(require("fs").readFileSync(0, "utf8"));
        const match = (re, v) => !re || (!!v && new RegExp(re, "s").test(v));
        const full = (re, v) => !re || (!!v && new RegExp("^(?:" + re + ")$", "s").test(v));
        const out = samples.map(([status, msg]) => {
          const ok = (c, m) => (!c.matchedStatuses || c.matchedStatuses.includes(status)) && m(c.messageRegex, msg);
          const first = cats.find((c) => ok(c, match));
          return [first ? first.name : null, cats.filter((c) => ok(c, full)).map((c) => c.name)];
        });
        process.stdout.write(JSON.stringify(out));
        """
    )
    samples = [[s, m] for s, m, _ in SAMPLES + IN_WORDS]
    proc = subprocess.run(
        ["node", str(script)], input=json.dumps([categories(), samples]), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert [first for first, _ in got] == [expected for _, _, expected in SAMPLES + IN_WORDS]
    assert [all_ for _, all_ in got] == [[expected] if expected else [] for _, _, expected in SAMPLES + IN_WORDS]


def test_categories_are_allures_format() -> None:
    cats = categories()
    assert [c["name"] for c in cats] == [
        "Awaiting approval",
        "Awaiting handoff",
        "Not permitted",
        "SOP errors",
        "Infrastructure problems",
        "Product failures",
    ]
    allowed = {"name", "description", "descriptionHtml", "messageRegex", "traceRegex", "matchedStatuses", "flaky"}
    for cat in cats:
        assert set(cat) <= allowed
        assert set(cat["matchedStatuses"]) <= {"failed", "broken", "passed", "skipped", "unknown"}
        for key in ("messageRegex", "traceRegex"):
            if key in cat:
                re.compile(cat[key])
                # syntax Java and JavaScript share: no inline flags, no Python-only named groups
                assert "(?P" not in cat[key] and "(?i" not in cat[key] and "(?s" not in cat[key]
    assert json.loads(json.dumps(cats)) == cats


def test_categories_is_a_fresh_list_every_call() -> None:
    first = categories()
    first[0]["name"] = "changed"
    assert categories()[0]["name"] == "Awaiting approval"


# -- environment.properties -----------------------------------------------------------------


def load_java_properties(text: str) -> dict[str, str]:
    """A port of java.util.Properties.load: how Allure 2 reads environment.properties."""
    result: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].lstrip(" \t\f")
        i += 1
        if not line or line[0] in "#!":
            continue
        while _ends_in_continuation(line) and i < len(lines):
            line = line[:-1] + lines[i].lstrip(" \t\f")
            i += 1
        key, j = _unescape_until(line, 0, key=True)
        while j < len(line) and line[j] in " \t\f":
            j += 1
        if j < len(line) and line[j] in "=:":
            j += 1
        while j < len(line) and line[j] in " \t\f":
            j += 1
        value, _ = _unescape_until(line, j, key=False)
        result[key] = value
    return result


def _ends_in_continuation(line: str) -> bool:
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


def _unescape_until(line: str, j: int, *, key: bool) -> tuple[str, int]:
    out: list[str] = []
    while j < len(line):
        ch = line[j]
        if key and ch in "=: \t\f":
            break
        if ch == "\\":
            nxt = line[j + 1]
            if nxt == "u":
                out.append(chr(int(line[j + 2 : j + 6], 16)))
                j += 6
                continue
            out.append({"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(nxt, nxt))
            j += 2
            continue
        out.append(ch)
        j += 1
    joined = "".join(out)
    return joined.encode("utf-16", "surrogatepass").decode("utf-16"), j


def test_environment_properties_escapes_as_java_does() -> None:
    text = environment_properties(
        {
            "pytest-sop": "0.1.0",
            "OS": "Linux 6.1 (x86_64)",
            "a key": "x=y:z#!",
            "path": "C:\\appium\\logs",
            "two lines": "a\nb\tc",
            "lead": "  spaced",
            "Gerät": "Zürich ✓ 🙂",
            "#not-a-comment": "",
        }
    )
    assert text.splitlines() == [
        "pytest-sop=0.1.0",
        "OS=Linux 6.1 (x86_64)",
        "a\\ key=x\\=y\\:z\\#\\!",
        "path=C\\:\\\\appium\\\\logs",
        "two\\ lines=a\\nb\\tc",
        "lead=\\  spaced",
        "Ger\\u00e4t=Z\\u00fcrich \\u2713 \\ud83d\\ude42",
        "\\#not-a-comment=",
    ]
    assert text.isascii()
    assert text.endswith("\n")


@given(st.dictionaries(st.text(min_size=1), st.text()))
def test_environment_properties_reads_back_as_written(info: dict[str, str]) -> None:
    assert load_java_properties(environment_properties(info)) == info


def test_collect_environment_names_versions() -> None:
    status = {"value": {"ready": True, "message": "Appium is ready", "build": {"version": "3.0.2", "sha": None}}}
    env = collect_environment(status, {"uiautomator2": "4.2.1", "chromium": "1.5.0"})
    assert env["pytest-sop"] == pytest_sop.__version__
    assert env["pytest"] == pytest.__version__
    assert env["Python"].split()[-1] == ".".join(map(str, __import__("sys").version_info[:3]))
    assert env["OS"]
    assert env["Appium.server"] == "3.0.2"
    assert env["Appium.driver.uiautomator2"] == "4.2.1"
    assert env["Appium.driver.chromium"] == "1.5.0"
    assert all(isinstance(v, str) and v for v in env.values())


def test_collect_environment_without_appium() -> None:
    env = collect_environment(None, None)
    assert not any(k.startswith("Appium.") for k in env)
    assert collect_environment({"value": {"ready": True}}, {}).keys() == env.keys()
    assert collect_environment({"build": {"version": "3.1.0"}}, None)["Appium.server"] == "3.1.0"  # the bare value


# -- executor.json -----------------------------------------------------------------------------

GITHUB = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "acme/social-sops",
    "GITHUB_RUN_ID": "9876543210",
    "GITHUB_RUN_NUMBER": "42",
    "GITHUB_RUN_ATTEMPT": "1",
    "GITHUB_WORKFLOW": "nightly SOPs",
}
GITLAB = {
    "GITLAB_CI": "true",
    "CI_SERVER_URL": "https://gitlab.example.com",
    "CI_PROJECT_URL": "https://gitlab.example.com/ops/social-sops",
    "CI_PROJECT_NAME": "social-sops",
    "CI_PIPELINE_ID": "1234",
    "CI_PIPELINE_IID": "56",
    "CI_PIPELINE_URL": "https://gitlab.example.com/ops/social-sops/-/pipelines/1234",
    "CI_JOB_URL": "https://gitlab.example.com/ops/social-sops/-/jobs/777",
    "CI_JOB_NAME": "sops",
}


def test_executor_for_github_actions() -> None:
    assert executor(GITHUB) == {
        "name": "GitHub Actions",
        "type": "github",
        "url": "https://github.com/acme/social-sops",
        "buildOrder": 42,
        "buildName": "nightly SOPs #42",
        "buildUrl": "https://github.com/acme/social-sops/actions/runs/9876543210",
        "reportName": "pytest-sop: acme/social-sops",
    }
    rerun = executor({**GITHUB, "GITHUB_RUN_ATTEMPT": "2"})
    assert rerun is not None
    assert rerun["buildUrl"].endswith("/actions/runs/9876543210/attempts/2")


def test_executor_for_gitlab_ci() -> None:
    assert executor(GITLAB) == {
        "name": "GitLab CI",
        "type": "gitlab",
        "url": "https://gitlab.example.com/ops/social-sops",
        "buildOrder": 56,
        "buildName": "social-sops pipeline #1234 sops",
        "buildUrl": "https://gitlab.example.com/ops/social-sops/-/pipelines/1234",
        "reportUrl": "https://gitlab.example.com/ops/social-sops/-/jobs/777",
        "reportName": "pytest-sop: social-sops",
    }


def test_executor_with_sparse_ci_variables_writes_no_empty_fields() -> None:
    gh = executor({"GITHUB_ACTIONS": "true"})
    assert gh == {"name": "GitHub Actions", "type": "github", "url": "https://github.com", "reportName": "pytest-sop"}
    gl = executor({"GITLAB_CI": "true", "CI_PIPELINE_ID": "x1"})
    assert gl is not None and "buildOrder" not in gl and all(v != "" for v in gl.values())


def test_no_executor_outside_ci() -> None:
    assert executor({}) is None
    assert executor({"GITHUB_ACTIONS": "false", "CI": "true", "HOME": "/root"}) is None


# -- atomic writes ------------------------------------------------------------------------------


def test_write_json_atomic(tmp_path: Path) -> None:
    target = tmp_path / "results" / "categories.json"
    assert write_json_atomic(target, categories()) == target
    assert json.loads(target.read_text(encoding="utf-8")) == categories()
    write_json_atomic(target, {"name": "Zürich"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"name": "Zürich"}
    assert [p.name for p in target.parent.iterdir()] == ["categories.json"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_write_text_atomic_keeps_the_old_file_when_it_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "environment.properties"
    write_text_atomic(target, "old=1\n")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(target, "new=2\n")
    assert target.read_text() == "old=1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["environment.properties"]


def test_engine_modules_do_not_import_pytest() -> None:
    for name in ("allure_meta.py", "timeline.py"):
        tree = ast.parse((Path(pytest_sop.__file__).parent / name).read_text())
        imported = {
            alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        } | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert "pytest" not in imported and "_pytest" not in imported, name


def test_write_globals_declares_copies_in_one_file(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (tmp_path / "a.svg").write_text("<svg/>")
    written = write_globals(results, [("picture", str(tmp_path / "a.svg"), "image/svg+xml", "svg"),
                                      ("gone", str(tmp_path / "missing.log"), "text/plain", "log")])  # fmt: skip
    assert written is not None and written.name.endswith("-globals.json")
    data = json.loads(written.read_text())
    (attachment,) = data["attachments"]
    assert (attachment["name"], attachment["type"], data["errors"]) == ("picture", "image/svg+xml", [])
    assert attachment["source"].endswith("-attachment.svg") and isinstance(attachment["timestamp"], int)
    assert (results / attachment["source"]).read_text() == "<svg/>"
    assert sorted(p.name for p in results.iterdir()) == sorted([written.name, attachment["source"]])
    assert write_globals(results, [("gone", str(tmp_path / "missing.log"), "text/plain", "log")]) is None
