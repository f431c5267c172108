"""Bad values are refused at collection with FILE:LINE:COLUMN: numbers, regexes, files, short secrets.

Each test reproduces an attack that passed lint on the code before it: a ``.nan`` timeout, a
catastrophic regex, a FIFO named like a SOP file, a 1-character secret.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sopsuite import SOP_YAML
from test_bad_input import lint
from test_engine_fake import allure_results, own_locks, run_sop, steps_of

from pytest_sop.actions import build_registry
from pytest_sop.errors import SopInvalid
from pytest_sop.model import Retry
from pytest_sop.schema import build_schema
from pytest_sop.suiteconfig import load_config
from pytest_sop.templates import parse, render

HEAD = "id: s\nsteps:\n"

# (SOP text, the error line it must give). Columns point at the value.
BAD_NUMBERS = {
    "timeout .nan": (
        HEAD + "  - back: null\n    timeout: .nan\n",
        "s.sop.yaml:4:14: steps[0].timeout: expected a finite number, got .nan",
    ),
    "timeout .inf": (
        HEAD + "  - back: null\n    timeout: .inf\n",
        "s.sop.yaml:4:14: steps[0].timeout: expected a finite number, got .inf",
    ),
    "timeout -.Inf": (
        HEAD + "  - back: null\n    timeout: -.Inf\n",
        "s.sop.yaml:4:14: steps[0].timeout: expected a finite number, got -.Inf",
    ),
    "wait .inf": (HEAD + "  - wait: .inf\n", "s.sop.yaml:3:11: steps[0].wait: expected a finite number, got .inf"),
    "wait .NaN": (HEAD + "  - wait: .NaN\n", "s.sop.yaml:3:11: steps[0].wait: expected a finite number, got .NaN"),
    "huge float timeout": (
        HEAD + "  - back: null\n    timeout: 1.0e+300\n",
        "s.sop.yaml:4:14: steps[0].timeout: expected at most 3600 (seconds), got 1e+300",
    ),
    "huge integer timeout": (
        HEAD + "  - back: null\n    timeout: 1000000000000000000000000\n",
        "s.sop.yaml:4:14: steps[0].timeout: expected at most 3600 (seconds), got 1000000000000000000000000",
    ),
    "timeout just over an hour": (
        HEAD + "  - back: null\n    timeout: 3600.5\n",
        "s.sop.yaml:4:14: steps[0].timeout: expected at most 3600 (seconds), got 3600.5",
    ),
    "negative timeout": (
        HEAD + "  - back: null\n    timeout: -0.5\n",
        "s.sop.yaml:4:14: steps[0].timeout: expected at least 0, got -0.5",
    ),
    "wait over an hour": (
        HEAD + "  - wait: 3601\n",
        "s.sop.yaml:3:11: steps[0].wait: expected at most 3600 (seconds), got 3601",
    ),
    "negative wait": (HEAD + "  - wait: -1\n", "s.sop.yaml:3:11: steps[0].wait: expected at least 0, got -1"),
    "step retry 0 attempts": (
        HEAD + "  - back: null\n    retry: {attempts: 0}\n",
        "s.sop.yaml:4:23: steps[0].retry.attempts: expected at least 1, got 0",
    ),
    "step retry 101 attempts": (
        HEAD + "  - back: null\n    retry: {attempts: 101}\n",
        "s.sop.yaml:4:23: steps[0].retry.attempts: expected at most 100, got 101",
    ),
    "SOP retry 0 attempts": (
        "id: s\nretry: {attempts: 0}\nsteps: [back]\n",
        "s.sop.yaml:2:19: retry.attempts: expected at least 1, got 0",
    ),
    "negative backoff": (
        "id: s\nretry: {attempts: 2, backoff: -1}\nsteps: [back]\n",
        "s.sop.yaml:2:31: retry.backoff: expected at least 0, got -1",
    ),
    "infinite backoff": (
        "id: s\nretry: {attempts: 2, backoff: .inf}\nsteps: [back]\n",
        "s.sop.yaml:2:31: retry.backoff: expected a finite number, got .inf",
    ),
    "backoff over 10 minutes": (
        "id: s\nretry: {attempts: 2, backoff: 601}\nsteps: [back]\n",
        "s.sop.yaml:2:31: retry.backoff: expected at most 600 (seconds), got 601",
    ),
    "schedule of zero": (
        "id: s\nschedule: {every: 0s}\nsteps: [back]\n",
        "s.sop.yaml:2:19: schedule.every: expected a period from 1s to 366d, got '0s'",
    ),
    "schedule of a huge number of days": (
        "id: s\nschedule: {every: 99999999999999999999999d}\nsteps: [back]\n",
        "s.sop.yaml:2:19: schedule.every: expected a period from 1s to 366d, got '99999999999999999999999d'",
    ),
    "schedule over a year": (
        "id: s\nschedule: {every: 367d}\nsteps: [back]\n",
        "s.sop.yaml:2:19: schedule.every: expected a period from 1s to 366d, got '367d'",
    ),
    "input value .nan": (
        "id: s\ninputs:\n  - {id: a, n: .nan}\nsteps:\n  - note: '${inputs.n}'\n",
        "s.sop.yaml:3:16: inputs[0].n: expected a finite number, got .nan",
    ),
    "input value beyond 2**53": (
        "id: s\ninputs:\n  - {id: a, n: 9007199254740993}\nsteps:\n  - note: '${inputs.n}'\n",
        "s.sop.yaml:3:16: inputs[0].n: expected a number from -9007199254740992 to 9007199254740992, got 9007199254740993",
    ),
}


@pytest.mark.parametrize("text, expected", list(BAD_NUMBERS.values()), ids=list(BAD_NUMBERS))
def test_bad_number_is_refused_at_its_position(tmp_path: Path, text: str, expected: str) -> None:
    assert lint(tmp_path, {"s.sop.yaml": text}) == [expected]


def test_numbers_at_the_bounds_are_accepted(tmp_path: Path) -> None:
    text = (
        "id: s\nretry: {attempts: 100, backoff: 600}\nschedule: {every: 366d}\n"
        "inputs:\n  - {id: a, n: 9007199254740992, m: -9007199254740992}\n"
        "steps:\n  - wait: 3600\n  - wait: 0\n  - back: null\n    timeout: 3600\n    retry: {attempts: 1, backoff: 0}\n"
        "  - back: null\n    timeout: 0\n  - note: '${inputs.n} ${inputs.m}'\n"
    )
    assert lint(tmp_path, {"s.sop.yaml": text}) == []
    assert lint(tmp_path, {"t.sop.yaml": "id: t\nschedule: {every: 1s}\nsteps: [back]\n"}) == []


def test_project_action_numbers_are_finite_and_bounded(tmp_path: Path) -> None:
    from pytest_sop.actions import ActionSpec, Param
    from pytest_sop.suite import Suite

    registry = build_registry([[ActionSpec("shake", "Shake.", "value", (Param("times", "integer", minimum=1),))]])
    (tmp_path / "sop.yaml").write_text(SOP_YAML)
    (tmp_path / "s.sop.yaml").write_text(HEAD + "  - shake: 0\n  - shake: 100000000000000000000\n  - shake: 5\n")
    suite = Suite(load_config(str(tmp_path / "sop.yaml")), registry, str(tmp_path), base=str(tmp_path))
    assert [e.format() for e in suite.result(str(tmp_path / "s.sop.yaml")).errors] == [
        "s.sop.yaml:3:12: steps[0].shake: expected at least 1, got 0",
        "s.sop.yaml:4:12: steps[1].shake: expected at most 9007199254740992, got 100000000000000000000",
    ]


def test_non_finite_number_in_suite_config_is_refused(tmp_path: Path) -> None:
    config = SOP_YAML.replace('"appium:appPackage": com.example.social', '"appium:newCommandTimeout": .inf')
    (tmp_path / "sop.yaml").write_text(config)
    with pytest.raises(SopInvalid) as info:
        load_config(str(tmp_path / "sop.yaml"))
    assert str(info.value).endswith(
        ":3:71: apps.social.capabilities.appium:newCommandTimeout: expected a finite number, got .inf"
    )


def test_retry_of_zero_attempts_cannot_be_built() -> None:
    """The runtime loop would run a step zero times and pass: no path may build such a Retry."""
    with pytest.raises(ValueError, match="attempts"):
        Retry(0)
    with pytest.raises(ValueError, match="backoff"):
        Retry(2, float("nan"))
    assert Retry(100, 600.0).attempts == 100


def test_schema_states_the_same_bounds() -> None:
    import jsonschema

    schema = build_schema(build_registry())
    validator = jsonschema.Draft202012Validator(schema)

    def valid(step: object, **top: object) -> bool:
        return validator.is_valid({"id": "s", "steps": [step], **top})

    assert valid({"back": None, "timeout": 3600})
    assert not valid({"back": None, "timeout": 3600.5})
    assert not valid({"back": None, "timeout": -1})
    assert valid({"wait": 3600}) and not valid({"wait": 3601}) and not valid({"wait": -1})
    assert valid({"back": None, "retry": {"attempts": 100, "backoff": 600}})
    assert not valid({"back": None, "retry": {"attempts": 101}})
    assert not valid({"back": None, "retry": {"attempts": 0}})
    assert not valid({"back": None, "retry": {"attempts": 2, "backoff": 601}})
    assert not valid("back", retry={"attempts": 2, "backoff": -1})


# -- $${ and the YAML limits: exact, so a looser or broken limit fails a test ----------------


def test_double_dollar_is_a_literal_reference_text(tmp_path: Path) -> None:
    t = parse("cost $${inputs.x} and $$${x}")
    assert t.refs == ()
    assert render(t, lambda ns, name: "WRONG") == "cost ${inputs.x} and $${x}"
    # In a SOP without inputs: not taken as a reference, so no "used but the SOP has no inputs".
    assert lint(tmp_path, {"s.sop.yaml": HEAD + "  - note: 'cost $${inputs.x}'\n"}) == []


def test_alias_expansion_limit_is_exactly_100000_values() -> None:
    from pytest_sop.errors import SopSyntaxError
    from pytest_sop.yamlsafe import load

    def doc(extra: int) -> str:
        # root mapping 1 + a: 1000 + b: 1 + 99 * 1000 = 100002 values; then trim or add scalars in c.
        row = "[" + ", ".join(["1"] * 999) + "]"
        c = "[" + ", ".join(["1"] * (extra + 1)) + "]" if extra >= 0 else ""
        return f"a: &a {row}\nb: [{', '.join(['*a'] * 98)}]\n" + (f"c: {c}\n" if c else "")

    # a: 1000, b: 1 + 98000, root 1 -> 99002; c: 1 + n scalars.
    assert load("f.yaml", doc(996)).data["c"] == [1] * 997  # 99002 + 998 = 100000
    with pytest.raises(SopSyntaxError, match="more than 100000 values after expanding aliases"):
        load("f.yaml", doc(997))


def test_nesting_limit_is_exactly_64_levels() -> None:
    from pytest_sop.errors import SopSyntaxError
    from pytest_sop.yamlsafe import load

    ok = "[" * 65 + "]" * 65  # the innermost list is at depth 64 (the outermost at 0)
    assert load("f.yaml", ok).data is not None
    with pytest.raises(SopSyntaxError, match="nested deeper than 64 levels"):
        load("f.yaml", "[" * 66 + "]" * 66)


# -- files that are not regular, or cannot be read ------------------------------------------


def lint_cli(folder: Path, *paths: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    # A hang is the bug: the timeout fails the test instead of hanging the suite.
    return subprocess.run(
        [*prefix, sys.executable, "-m", "pytest_sop", "lint", *paths],
        cwd=folder, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def fifo_suite(tmp_path: Path) -> None:
    (tmp_path / "sop.yaml").write_text(SOP_YAML)
    (tmp_path / "good.sop.yaml").write_text("id: good\nsteps: [back]\n")
    os.mkfifo(tmp_path / "pipe.sop.yaml")
    (tmp_path / "folder.sop.yaml").mkdir()


def test_fifo_and_folder_named_like_sop_files_are_errors_in_lint(tmp_path: Path) -> None:
    fifo_suite(tmp_path)
    result = lint_cli(tmp_path)
    assert result.returncode == 1, result
    assert result.stdout.splitlines() == [
        "folder.sop.yaml:1:1: is a folder, not a file",
        "pipe.sop.yaml:1:1: is a FIFO (named pipe), not a regular file",
    ]
    named = lint_cli(tmp_path, "pipe.sop.yaml")
    assert named.stdout.splitlines() == ["pipe.sop.yaml:1:1: is a FIFO (named pipe), not a regular file"]


def test_fifo_does_not_hang_collection(pytester: pytest.Pytester) -> None:
    fifo_suite(pytester.path)
    start = time.monotonic()
    result = pytester.runpytest_subprocess("--sop", "--co", "-q", "-p", "no:cacheprovider", timeout=60)
    assert time.monotonic() - start < 60
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*SOP files that cannot be used:", "*pipe.sop.yaml:1:1: is a FIFO (named pipe)*"])


def test_suite_reports_files_that_are_not_regular(tmp_path: Path) -> None:
    """What collection shows for names pytest itself skips (a FIFO, a folder)."""
    from pytest_sop.suite import Suite

    fifo_suite(tmp_path)
    suite = Suite(load_config(str(tmp_path / "sop.yaml")), build_registry(), str(tmp_path), base=str(tmp_path))
    assert [e.format() for e in suite.unusable_files()] == [
        "folder.sop.yaml:1:1: is a folder, not a file",
        "pipe.sop.yaml:1:1: is a FIFO (named pipe), not a regular file",
    ]


def test_fifo_as_suite_config_is_an_error_not_a_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "sop.yaml")
    (tmp_path / "good.sop.yaml").write_text("id: good\nsteps: [back]\n")
    result = lint_cli(tmp_path)
    assert result.returncode == 1
    assert "sop.yaml:1:1: is a FIFO (named pipe), not a regular file" in result.stdout


def _unreadable_prefix() -> tuple[str, ...]:
    """Root reads any file: drop the capabilities that let it, so a mode-000 file is unreadable."""
    if os.geteuid() != 0:
        return ()
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search")


def test_unreadable_files_are_errors_in_lint(tmp_path: Path) -> None:
    (tmp_path / "sop.yaml").write_text(SOP_YAML)
    (tmp_path / "good.sop.yaml").write_text("id: good\nsteps: [back]\n")
    secret = tmp_path / "secret.sop.yaml"
    secret.write_text("id: secret\nsteps: [back]\n")
    secret.chmod(0)
    result = lint_cli(tmp_path, prefix=_unreadable_prefix())
    assert result.stdout.splitlines() == ["secret.sop.yaml:1:1: cannot read file: Permission denied"]
    assert result.returncode == 1
    (tmp_path / "sop.yaml").chmod(0)
    result = lint_cli(tmp_path, prefix=_unreadable_prefix())
    assert result.stdout.splitlines() == ["sop.yaml:1:1: cannot read file: Permission denied"]


def test_fifo_as_suite_config_stops_collection(pytester: pytest.Pytester) -> None:
    (pytester.path / "good.sop.yaml").write_text("id: good\nsteps: [back]\n")
    os.mkfifo(pytester.path / "sop.yaml")
    result = pytester.runpytest_subprocess("--sop", "--co", "-p", "no:cacheprovider", timeout=60)
    result.stderr.fnmatch_lines(["*sop.yaml:1:1: is a FIFO (named pipe), not a regular file"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_unreadable_sop_file_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", sop=SOP_YAML)
    (pytester.path / "good.sop.yaml").write_text("id: good\nsteps: [back]\n")
    (pytester.path / "secret.sop.yaml").write_text("id: secret\nsteps: [back]\n")
    (pytester.path / "secret.sop.yaml").chmod(0)
    result = subprocess.run(
        [*_unreadable_prefix(), sys.executable, "-m", "pytest", "--sop", "--co", "-p", "no:cacheprovider"],
        cwd=pytester.path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "secret.sop.yaml:1:1: cannot read file: Permission denied" in result.stdout.splitlines()
    assert result.returncode == pytest.ExitCode.INTERRUPTED


def test_folder_that_cannot_be_listed_is_an_error_in_lint(tmp_path: Path) -> None:
    (tmp_path / "sop.yaml").write_text(SOP_YAML)
    (tmp_path / "good.sop.yaml").write_text("id: good\nsteps: [back]\n")
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "hidden.sop.yaml").write_text("id: hidden\nsteps: [tapp]\n")
    (tmp_path / "locked").chmod(0)
    try:
        result = lint_cli(tmp_path, prefix=_unreadable_prefix())
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert result.stdout.splitlines() == ["locked:1:1: cannot list folder: Permission denied"]
    assert result.returncode == 1


# -- secrets shorter than 4 characters -------------------------------------------------------


def test_short_secret_in_suite_config_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sop.yaml").write_text(SOP_YAML)
    monkeypatch.setenv("PUB1_PASSWORD", "x9z")
    monkeypatch.setenv("PUB2_PASSWORD", "long enough")
    with pytest.raises(SopInvalid) as info:
        load_config(str(tmp_path / "sop.yaml"))
    message = str(info.value)
    assert message.endswith(
        ":15:46: accounts[0].fields.password.env: $PUB1_PASSWORD holds a secret shorter than 4 characters;"
        " a secret must be at least 4 characters (a shorter one would be masked inside ordinary words)"
    )
    assert "x9z" not in message
    monkeypatch.setenv("PUB1_PASSWORD", "abcd")
    assert load_config(str(tmp_path / "sop.yaml")).accounts[0].id == "publisher-1"
    monkeypatch.delenv("PUB1_PASSWORD")  # unset: only a run that needs it fails, naming it
    assert load_config(str(tmp_path / "sop.yaml")).accounts[0].id == "publisher-1"


def test_short_secret_in_device_capabilities_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = SOP_YAML.replace(
        "    tags: [phone]\n", '    tags: [phone]\n    capabilities: {"appium:udid": {env: UDID}}\n', 1
    )
    (tmp_path / "sop.yaml").write_text(config)
    monkeypatch.setenv("UDID", "7")
    with pytest.raises(SopInvalid, match=r"devices\[0\].capabilities.appium:udid.env: \$UDID holds a secret shorter"):
        load_config(str(tmp_path / "sop.yaml"))


def test_short_secret_in_inputs_is_refused_at_collection(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makefile(".yaml", sop=SOP_YAML)
    (pytester.path / "s.sop.yaml").write_text(
        "id: s\ninputs:\n  - {id: a, pin: {env: SOP_TEST_PIN}}\nsteps:\n  - note: '${inputs.pin}'\n"
    )
    for name, value in {"SOP_TEST_PIN": "42", "PUB1_PASSWORD": "pw-one", "PUB2_PASSWORD": "pw-two"}.items():
        monkeypatch.setenv(name, value)
    result = pytester.runpytest("--sop", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["s.sop.yaml:3:24: inputs[[]0].pin.env: $SOP_TEST_PIN holds a secret shorter than 4*"])
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert " 42" not in result.stdout.str() and "'42'" not in result.stdout.str()


# -- regexes ---------------------------------------------------------------------------------

BAD_REGEXES = {
    "backreference": (
        r"(a)\\1",
        "s.sop.yaml:3:41: steps[0].assert_text.matches: not a pattern RE2 accepts: invalid escape sequence: \\1"
        " (RE2 has no backreferences)",
    ),
    "lookahead": (
        "a(?=b)",
        "s.sop.yaml:3:41: steps[0].assert_text.matches: not a pattern RE2 accepts: invalid perl operator: (?="
        " (RE2 has no lookahead or lookbehind)",
    ),
    "unclosed group": (
        "(abc",
        "s.sop.yaml:3:41: steps[0].assert_text.matches: not a pattern RE2 accepts: missing ): (abc",
    ),
}


@pytest.mark.parametrize("pattern, expected", list(BAD_REGEXES.values()), ids=list(BAD_REGEXES))
def test_literal_regex_is_compiled_at_collection(tmp_path: Path, pattern: str, expected: str) -> None:
    text = HEAD + f'  - assert_text: {{in: {{id: x}}, matches: "{pattern}"}}\n'
    assert lint(tmp_path, {"s.sop.yaml": text}) == [expected]


def test_literal_regex_in_done_when_is_compiled_at_collection(tmp_path: Path) -> None:
    text = HEAD + "  - back\ndone_when:\n  - text: {in: {id: x}, matches: 'a(?!b)'}\n"
    (error,) = lint(tmp_path, {"s.sop.yaml": text})
    assert error.startswith(
        "s.sop.yaml:5:34: done_when[0].text.matches: not a pattern RE2 accepts: invalid perl operator"
    )


def test_pattern_built_from_a_secret_fails_without_any_of_it() -> None:
    from pytest_sop.errors import StepBroken
    from pytest_sop.textmatch import search

    secret = "Zq9(hunter"
    with pytest.raises(StepBroken) as info:
        search(f"^{secret}", "text", lambda s: s.replace(secret, "***"))
    assert str(info.value) == "matches: pattern '^***' is not a pattern RE2 accepts: missing )"
    with pytest.raises(StepBroken) as info:  # no secret in it: RE2's whole reason
        search(r"(x)\1", "text", str)
    assert str(info.value).endswith(r"invalid escape sequence: \1 (RE2 has no backreferences)")


def test_textmatch_is_linear_time() -> None:
    from pytest_sop.textmatch import search

    text = "a" * 100_000 + "!"
    start = time.process_time()  # CPU time: a backtracking engine needs ages, a loaded host's waits do not count
    assert not search("(a+)+$", text, str)
    assert search("(a+)+!$", text, str)
    assert time.process_time() - start < 5


CATASTROPHIC = """\
id: catastrophic
steps:
  - type: {into: {id: username}, text: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA!"}
  - assert_text: {in: {id: username}, matches: "(A+)+$"}
    timeout: 1
"""

SECRET_PATTERN = """\
id: secret-pattern
inputs:
  - {id: row, pat: {env: SOP_TEST_PATTERN}}
steps:
  - type: {into: {id: username}, text: "hello"}
  - assert_text: {in: {id: username}, matches: "^${inputs.pat}"}
    timeout: 1
"""


@pytest.mark.timeout(300)
def test_regexes_on_the_fake_driver(
    pytester: pytest.Pytester, appium_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catastrophic pattern keeps its 1 s timeout; a secret's bad pattern fails masked, without a traceback."""
    secret = "Zq9(hunter-two"
    monkeypatch.setenv("SOP_TEST_PATTERN", secret)
    result = run_sop(
        pytester, appium_url, {"c.sop.yaml": CATASTROPHIC, "p.sop.yaml": SECRET_PATTERN},
        "--junitxml", str(pytester.path / "junit.xml"), "-p", "no:cacheprovider",
    )  # fmt: skip
    result.assert_outcomes(failed=2)
    results = {r["name"]: r for r in allure_results(pytester.path / "allure")}
    catastrophic = results["catastrophic"]
    (step,) = [s for s in catastrophic["steps"] if s["name"].startswith("assert_text")]
    assert step["status"] == "failed"
    assert step["stop"] - step["start"] < 10000, "the 1 s timeout was not kept"  # a backtracking match takes ages
    assert "'(A+)+$', found 'AAAA" in catastrophic["statusDetails"]["message"]

    pattern = results["secret-pattern[row]"]
    message = pattern["statusDetails"]["message"]
    assert "matches: pattern '^***' is not a pattern RE2 accepts: missing )" in message, message
    everything = result.stdout.str() + result.stderr.str() + (pytester.path / "junit.xml").read_text()
    everything += "".join(p.read_text(errors="replace") for p in (pytester.path / "allure").iterdir())
    for part in (secret, "hunter-two", "(hunter"):
        assert part not in everything
    assert "Traceback" not in everything and "re2.error" not in everything.lower()
    assert "assert_text in={id: username} matches='^***':broken" in steps_of(pattern)


def test_sop_run_refuses_bad_numbers_in_python_step_lists(pytester: pytest.Pytester, appium_url: str) -> None:
    """``sop_run`` parses step lists written in Python through the same checks as SOP files."""
    from test_engine_fake import FAKE_CONFIG

    pytester.makefile(".yaml", sop=FAKE_CONFIG)
    pytester.makepyfile(
        test_py="""
        import pytest
        from pytest_sop.errors import SopError, SopInvalid

        @pytest.mark.sop(device={"platform": "fake"})
        def test_bad_numbers(sop_run):
            with pytest.raises(SopInvalid, match=r"steps\\[0\\].retry.attempts: expected at least 1, got 0"):
                sop_run([{"tap": {"id": "login_button"}, "retry": {"attempts": 0}}])
            # Refused by the YAML loader, before the step checks: a SopSyntaxError, also a SopError.
            with pytest.raises(SopError, match=r"steps\\[0\\].timeout: expected a finite number, got .nan"):
                sop_run([{"tap": {"id": "login_button"}, "timeout": float("nan")}])
            with pytest.raises(SopInvalid, match=r"steps\\[0\\].wait: expected at most 3600 \\(seconds\\), got 1e\\+100"):
                sop_run([{"wait": 1e100}])
        """
    )
    result = pytester.runpytest("--sop-appium", appium_url, "-p", "no:cacheprovider", *own_locks(pytester.path))
    result.assert_outcomes(passed=1)
