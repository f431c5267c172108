"""The audit record of real runs: secrets that never leak, Allure results, evidence, xdist.

Every test here runs pytest in a subprocess, as a person would, and reads what the run left
on disk and on the terminal.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

import pytest_sop
from pytest_sop.appium_server import ManagedAppium, find_appium_home, free_port, open_sessions
from pytest_sop.demo import DemoServer, serve

ROOT = Path(__file__).resolve().parents[1]
APPIUM_VERSION = json.loads((ROOT / "node_modules" / "appium" / "package.json").read_text())["version"]
sys.path.insert(0, str(ROOT / "tests"))
from test_engine_fake import FAKE_CONFIG  # noqa: E402
from test_example_suite import CHROMIUM_CONFIG, SIGN_IN  # noqa: E402
from test_secrets_attack import leaks_in  # noqa: E402

APPIUM_HOME = find_appium_home(ROOT)

# Characters that URL encoding changes, so its spellings differ from the raw value.
CANARY = "Canary-7f3a91+Zq/x9"
CANARY_APP = f"https://builds.example.com/snapgram.apk?sig={CANARY}"


# -- helpers ---------------------------------------------------------------------------------


def leak_forms(secret: str) -> dict[str, bytes]:
    """The spellings of ``secret`` that must never be written: raw, URL-encoded and base64.

    Base64 is checked at all three byte offsets a secret can have inside a longer encoded blob
    (only the characters that depend on the secret alone), standard and URL-safe alphabets.
    """
    raw = secret.encode()
    out = {"raw": raw, "url": quote(secret, safe="").encode(), "url-plus": quote_plus(secret).encode()}
    out["url-lower"] = out["url"].replace(b"%2B", b"%2b").replace(b"%2F", b"%2f")
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw)
        start = (0, 2, 3)[offset]  # the first characters mix in the bytes before the secret
        end = (offset + len(raw)) // 3 * 4  # the last group may mix in the bytes after it
        core = encoded[start:end]
        out[f"base64+{offset}"] = core
        out[f"base64url+{offset}"] = core.replace(b"+", b"-").replace(b"/", b"_")
    out["base64"] = base64.b64encode(raw).rstrip(b"=")
    return out


def find_leaks(secret: str, root: Path, *texts: str) -> list[str]:
    """Every spelling of ``secret`` (raw, JSON, Python repr, character arrays, URL, base64, hex,
    UTF-16: :func:`test_secrets_attack.leaks_in`) in any file under ``root`` or in ``texts``."""
    leaks = []
    for folder, _, files in os.walk(root):  # symbolic links are not followed out of root
        for name in files:
            path = Path(folder, name)
            if path.is_symlink() or not path.is_file():
                continue
            leaks += [f"{path.relative_to(root)}: {how}" for how in leaks_in(path.read_bytes(), secret)]
    for i, text in enumerate(texts):
        leaks += [f"output {i}: {how}" for how in leaks_in(text.encode(), secret)]
    return leaks


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk; fails unless ``data`` starts like a real PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def properties(path: Path) -> dict[str, str]:
    """A Java properties file as written by pytest-sop (``key=value`` lines, nothing escaped here)."""
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith(("#", "!")))


def results(alluredir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(alluredir.glob("*-result.json"))]


def by_sop(alluredir: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for res in results(alluredir):
        # A case's SOP id is its node name (``file.sop.yaml::ID``), whatever labels it carries.
        out[res["fullName"].rpartition("::")[2] if "::" in res.get("fullName", "") else res["name"]] = res
    return out


def labels_of(res: dict[str, Any], name: str) -> list[str]:
    return [label["value"] for label in res["labels"] if label["name"] == name]


def walk_steps(steps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for step in steps:
        yield step
        yield from walk_steps(step.get("steps", []))


def all_attachments(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Every attachment of a result, in the order they were taken (steps first, then the case's)."""
    found = []
    for step in walk_steps(res.get("steps", [])):
        found += step.get("attachments", [])
    return found + list(res.get("attachments", []))


def run_pytest(
    cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


# -- the secret canary -----------------------------------------------------------------------

# Chromium with a chromedriver port of its own: Appium's Chromium driver kills any chromedriver
# on the port it is about to use, so a fixed port would end another run's sessions on this host.
CHROMIUM = CHROMIUM_CONFIG.replace(
    "appium:autodownloadEnabled: false\n", "appium:autodownloadEnabled: false\n      appium:chromedriverPort: {port}\n"
)
CANARY_CONFIG = "appium: {{server: local}}\n" + CHROMIUM.replace("DEMO_PW", "CANARY_PW")

PUBLISH = """\
  - wait_for: {id: whoami}
  - tap: {id: compose}
  - type: {into: {id: caption}, text: "${account.password}"}
  - tap: {id: publish}
  - wait_for: {id: post-published}
    timeout: 10
"""

CANARY_SOPS = {
    "sign-in-ok.sop.yaml": "id: sign-in-ok\napp: snapgram\nrequires:\n  account: {}\nsteps:\n"
    + SIGN_IN
    + "  - assert_text: {in: {id: whoami}, equals: pub1}\n",
    # The secret is on screen (caption), in the page source and screenshots, then a step fails:
    # the failure lists the visible texts, and the page source at failure is attached.
    "publish-then-fail.sop.yaml": "id: publish-then-fail\napp: snapgram\nrequires:\n  account: {}\nsteps:\n"
    + SIGN_IN
    + PUBLISH
    + "  - screenshot: posted\n  - page_source: posted\n"
    + "  - assert_visible: {id: no-such-element}\n    timeout: 0.5\non_failure:\n  - page_source\n",
    # A failure message that would quote the secret: "found '<secret>'".
    "wrong-caption.sop.yaml": "id: wrong-caption\napp: snapgram\nrequires:\n  account: {}\nsteps:\n"
    + SIGN_IN
    + PUBLISH
    + "  - assert_text: {in: {id: posted-caption}, equals: something-else}\n    timeout: 0.5\n",
}


@pytest.fixture
def canary_app() -> Iterator[DemoServer]:
    with serve(accounts={"pub1": CANARY}, publish_delay=0.2) as server:
        yield server


@pytest.fixture
def short_tmpdir(tmp_path: Path) -> Iterator[Path]:
    """A TMPDIR inside tmp_path, reached through a short link: Chromium refuses a profile whose
    socket path is longer than a Unix socket allows (108 bytes), which tmp_path can exceed."""
    real = tmp_path / "tmp"
    real.mkdir()
    holder = Path(tempfile.mkdtemp(prefix="sop-"))
    (holder / "t").symlink_to(real, target_is_directory=True)
    yield holder / "t"
    shutil.rmtree(holder)


def canary_env(tmpdir: Path) -> dict[str, str]:
    """Every temporary file of the run (Appium's log, Chromium's profile) lands in ``tmpdir``."""
    return {
        "CANARY_PW": CANARY, "CANARY_APP": CANARY_APP, "SOP_APPIUM_HOME": str(APPIUM_HOME), "TMPDIR": str(tmpdir),
        "TEMP": str(tmpdir), "TMP": str(tmpdir), "PYTHONDONTWRITEBYTECODE": "1",
    }  # fmt: skip


def canary_run(tmp_path: Path, tmpdir: Path, config: str, sops: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A run with every kind of output: Allure results, JUnit XML, audit log, a managed Appium's log."""
    suite = write_suite(tmp_path / "suite", config, sops)
    out = tmp_path / "out"
    return run_pytest(
        suite, "--sop", "-rA", "-v", f"--alluredir={out / 'allure'}", f"--junitxml={out / 'junit.xml'}",
        f"--sop-audit={out / 'sop-audit.jsonl'}", "--sop-evidence", "step", "-o", f"sop_lock_dir={tmp_path / 'locks'}",
        env=canary_env(tmpdir),
    )  # fmt: skip


def chromium_canary_config(app: DemoServer) -> str:
    return CANARY_CONFIG.format(url=app.url, port=free_port())


def test_leak_forms_find_the_secret_in_every_spelling() -> None:
    """The canary's detector itself: each spelling, alone or inside a longer blob, is found."""
    forms = leak_forms(CANARY)
    assert forms["url"] == b"Canary-7f3a91%2BZq%2Fx9" and forms["raw"] != forms["url"]
    for prefix in (b"", b"a", b"ab", b"abc"):
        blob = base64.b64encode(prefix + CANARY.encode() + b"tail")
        assert any(form in blob for name, form in forms.items() if name.startswith("base64+")), prefix
        url_blob = base64.urlsafe_b64encode(prefix + CANARY.encode() + b"tail")
        assert any(form in url_blob for name, form in forms.items() if name.startswith("base64url")), prefix
    assert not any(form in base64.b64encode(b"Canary-7f3a90+Zq/x9") for form in forms.values())


@pytest.mark.appium
def test_secret_canary_appears_in_no_file_and_no_output(
    tmp_path: Path, short_tmpdir: Path, canary_app: DemoServer
) -> None:
    result = canary_run(tmp_path, short_tmpdir, chromium_canary_config(canary_app), CANARY_SOPS)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-4000:]
    assert "1 passed" in result.stdout and "2 failed" in result.stdout, output[-4000:]

    out = tmp_path / "out"
    sops = by_sop(out / "allure")
    assert {k: v["status"] for k, v in sops.items()} == {
        "sign-in-ok": "passed", "publish-then-fail": "failed", "wrong-caption": "failed",
    }  # fmt: skip
    # The run wrote what the canary is meant to search: Appium's log, page sources, screenshots.
    # The managed Appium's log folder and Chromium's profile were the run's own, and are gone.
    assert list(short_tmpdir.iterdir()) == []
    names = {a["name"] for res in sops.values() for a in all_attachments(res)}
    assert {"posted", "page source at failure", "screenshot at failure", "appium log"} <= names, names
    typed = [s for s in walk_steps(sops["sign-in-ok"]["steps"]) if s["name"].startswith("type into={id: password}")]
    assert typed and typed[0]["name"] == "type into={id: password} text='***'"
    # Failure messages show the mask where the secret would be.
    assert "found '***'" in sops["wrong-caption"]["statusDetails"]["message"]
    assert "expected it to equal 'something-else', found '***'" in result.stdout
    assert "'***'" in sops["publish-then-fail"]["statusDetails"]["trace"]
    assert "found '***'" in (out / "junit.xml").read_text()
    # The caption reached the page, and its page source shows the mask in its place.
    (posted,) = [
        a for a in all_attachments(sops["publish-then-fail"]) if a["name"] == "posted" and a["type"] == "text/html"
    ]
    assert b'id="posted-caption" class="caption">***<' in (out / "allure" / posted["source"]).read_bytes()
    verify = subprocess.run(
        [sys.executable, "-m", "pytest_sop", "audit", "verify", str(out / "sop-audit.jsonl")], capture_output=True
    )
    assert verify.returncode == 0, verify

    leaks = find_leaks(CANARY, tmp_path, result.stdout, result.stderr)
    assert leaks == []


@pytest.mark.appium
def test_secret_read_back_from_the_screen_is_masked_too(
    tmp_path: Path, short_tmpdir: Path, canary_app: DemoServer
) -> None:
    """The secret, typed as a caption, read back with save_text, then used in a note and a step."""
    sop = (
        "id: saved\napp: snapgram\nrequires:\n  account: {}\nsteps:\n" + SIGN_IN + PUBLISH
        + "  - save_text: {from: {id: posted-caption}, as: caption}\n  - note: 'posted ${vars.caption}'\n"
        + "  - assert_text: {in: {id: posted-caption}, equals: '${vars.caption}'}\n"
    )  # fmt: skip
    result = canary_run(tmp_path, short_tmpdir, chromium_canary_config(canary_app), {"saved.sop.yaml": sop})
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert find_leaks(CANARY, tmp_path, result.stdout, result.stderr) == []


@pytest.mark.appium
@pytest.mark.parametrize(
    "server",
    [
        "local",  # the session is refused: Appium says why
        "unreachable",  # nothing listens: the error comes from the HTTP client
    ],
)
def test_secret_capability_stays_out_of_a_session_error(tmp_path: Path, short_tmpdir: Path, server: str) -> None:
    """A session that cannot be created, on a device whose capabilities hold a secret (a signed app URL)."""
    url = "local" if server == "local" else f"'http://127.0.0.1:{free_port()}'"
    config = (
        f"appium: {{server: {url}}}\ndevices:\n  - id: android-1\n    platform: android\n    capabilities:\n"
        "      platformName: Android\n      appium:automationName: UiAutomator2\n      appium:udid: emulator-5554\n"
        "      appium:app: {env: CANARY_APP}\n"
    )
    result = canary_run(tmp_path, short_tmpdir, config, {"s.sop.yaml": "id: s\nsteps: [back]\n"})
    assert "1 error" in result.stdout, (result.stdout + result.stderr)[-4000:]
    if server == "local":
        assert "android-1: session not created on" in result.stdout
    assert list(short_tmpdir.iterdir()) == []  # the managed Appium's log folder is gone with the run
    assert find_leaks(CANARY, tmp_path, result.stdout, result.stderr) == []


# -- Allure results on the fake driver ---------------------------------------------------------

FAKE_SUITE = (
    FAKE_CONFIG
    + """\
  - id: pixel-real
    platform: android
    capabilities:
      platformName: Android
      appium:automationName: UiAutomator2
      appium:udid: emulator-5554
accounts:
  - id: tester-1
    role: tester
    fields: {username: alice}
policy:
  roles:
    runner: {sops: ["tag:fake"]}
  operators: {ops-bot: [runner]}
"""
)

FAKE_SOPS = {
    "tour.sop.yaml": """\
id: tour
title: A tour of the fake app
description: Signs in and looks around.
owner: fake-team
severity: critical
tags: [fake, smoke]
requires:
  device: {platform: fake}
  account: {role: tester}
steps:
  - launch_app
  - type: {into: {id: username}, text: "${account.username}"}
  - run: check
  - screenshot: explicit shot
  - note: hello ${account.username}
  - assert_text: {in: {id: username}, equals: "${account.username}"}
""",
    "check.sop.yaml": """\
id: check
tags: [fake]
requires:
  device: {platform: fake}
steps:
  - assert_visible: {id: username}
  - assert_visible: {text: Log in}
""",
    "flaky.sop.yaml": """\
id: flaky
tags: [fake]
requires:
  device: {platform: fake}
retry: {attempts: 2}
steps:
  - launch_app
  - wait_for: {id: nope}
    timeout: 0.2
on_failure:
  - note: cleaning up
  - page_source: source on failure
""",
    "checkpoint.sop.yaml": """\
id: checkpoint
tags: [fake]
requires:
  device: {platform: fake}
steps:
  - launch_app
  - approve: {checkpoint: caption-ok, role: lead}
  - back
""",
    "forbidden.sop.yaml": "id: forbidden\ntags: [other]\nrequires:\n  device: {platform: fake}\nsteps: [back]\n",
    "real-phone.sop.yaml": "id: real-phone\ntags: [fake]\nrequires:\n  device: {id: pixel-real}\nsteps: [back]\n",
}

GITHUB = {
    "GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/phone-sops",
    "GITHUB_RUN_ID": "4242", "GITHUB_RUN_NUMBER": "17", "GITHUB_RUN_ATTEMPT": "1", "GITHUB_WORKFLOW": "nightly",
}  # fmt: skip
CI_VARS = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", *GITHUB)


def write_suite(folder: Path, config: str, sops: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sop.yaml").write_text(config)
    for name, text in sops.items():
        (folder / name).write_text(text)
    return folder


def sop_run(
    suite: Path, alluredir: Path, *args: str, url: str | None = None, locks: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """pytest --sop in ``suite``, outside CI unless ``env`` says otherwise."""
    environ = {k: v for k, v in os.environ.items() if k not in CI_VARS}
    server = ("--sop-appium", url) if url else ()
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--sop", "-rA", f"--alluredir={alluredir}",
         *server, "-o", f"sop_lock_dir={locks}", "-o", "sop_hold_timeout=0", *args],  # a paused case holds nothing
        cwd=suite, env={**environ, **(env or {})}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str], alluredir: Path) -> None:
        self.proc = proc
        self.alluredir = alluredir
        self.output = proc.stdout + proc.stderr
        self.sops = by_sop(alluredir)

    def attachment(self, att: dict[str, Any]) -> bytes:
        return (self.alluredir / att["source"]).read_bytes()


@pytest.fixture(scope="session")  # run once per process, however xdist interleaves the tests
def fake_run(tmp_path_factory: pytest.TempPathFactory, appium_server: ManagedAppium) -> Iterator[Run]:
    """The fake-driver suite, run once in CI (GitHub Actions variables) with a screenshot after every step."""
    tmp = tmp_path_factory.mktemp("fake-run")
    suite = write_suite(tmp / "suite", FAKE_SUITE, FAKE_SOPS)
    proc = sop_run(
        suite, tmp / "allure", "--sop-operator", "ops-bot", "--sop-evidence", "step",
        url=appium_server.url, locks=tmp / "locks", env=GITHUB,
    )  # fmt: skip
    yield Run(proc, tmp / "allure")
    assert open_sessions(appium_server.url) == []


def step_names(steps: list[dict[str, Any]]) -> list[str]:
    return [s["name"] for s in steps]


@pytest.mark.appium
def test_fake_run_outcomes_match_the_contract_table(fake_run: Run) -> None:
    """passed / failed / broken (session not created) / skipped (approval, policy), in pytest and Allure."""
    assert "2 passed" in fake_run.proc.stdout and "1 failed" in fake_run.proc.stdout, fake_run.output[-3000:]
    assert "2 skipped" in fake_run.proc.stdout and "1 error" in fake_run.proc.stdout, fake_run.output[-3000:]
    sops = fake_run.sops
    assert {k: v["status"] for k, v in sops.items()} == {
        "tour": "passed", "check": "passed", "flaky": "failed", "real-phone": "broken",
        "checkpoint": "skipped", "forbidden": "skipped",
    }  # fmt: skip
    assert sops["checkpoint"]["statusDetails"]["message"].endswith("awaiting approval: caption-ok")
    assert "not permitted: 'ops-bot'" in sops["forbidden"]["statusDetails"]["message"]
    assert "pixel-real: session not created on" in sops["real-phone"]["statusDetails"]["message"]
    assert re.search(r"\{id: nope\} is not found after \d+\.\ds", sops["flaky"]["statusDetails"]["message"])
    # The checkpoint stopped the case: the step after it never ran.
    assert step_names(sops["checkpoint"]["steps"]) == ["launch_app", "approve checkpoint=caption-ok role=lead"]


@pytest.mark.appium
def test_fake_run_labels_name_sop_device_account_operator_owner_severity_tags(fake_run: Run) -> None:
    tour = fake_run.sops["tour"]
    for name, expected in {
        "sop": ["tour"], "device": ["fake-phone"], "account": ["tester-1"], "operator": ["ops-bot"],
        "owner": ["fake-team"], "severity": ["critical"], "tag": ["fake", "smoke"], "epic": ["suite"],
        "feature": ["A tour of the fake app"],
    }.items():  # fmt: skip
        assert sorted(labels_of(tour, name)) == expected, name
    assert [link["url"] for link in tour["links"]] == ["tour.sop.yaml"]  # relative to the project (sop.yaml)
    check = fake_run.sops["check"]
    assert labels_of(check, "sop") == ["check"] and labels_of(check, "account") == []  # it needs none
    assert labels_of(check, "severity") == ["normal"] and labels_of(check, "owner") == []
    # The case that could not get a session still says where it was meant to run.
    broken = fake_run.sops["real-phone"]
    assert (labels_of(broken, "sop"), labels_of(broken, "device")) == (["real-phone"], ["pixel-real"])
    history = {r["historyId"] for r in fake_run.sops.values()}
    assert len(history) == len(fake_run.sops)


@pytest.mark.appium
def test_fake_run_result_carries_the_sops_title_and_description(fake_run: Run) -> None:
    tour = fake_run.sops["tour"]
    shown = f"{tour['name']}\n{tour.get('description') or ''}"
    assert "A tour of the fake app" in shown and "Signs in and looks around." in shown, shown


@pytest.mark.appium
def test_fake_run_case_skipped_by_policy_still_names_its_sop_and_operator(fake_run: Run) -> None:
    forbidden = fake_run.sops["forbidden"]
    assert labels_of(forbidden, "sop") == ["forbidden"]
    assert labels_of(forbidden, "operator") == ["ops-bot"]


@pytest.mark.appium
def test_fake_run_has_one_step_per_sop_step_with_rendered_parameters(fake_run: Run) -> None:
    steps = fake_run.sops["tour"]["steps"]
    assert step_names(steps) == [
        "launch_app",
        "type into={id: username} text='alice'",
        "run check",
        "screenshot 'explicit shot'",
        "note 'hello alice'",
        "assert_text in={id: username} equals='alice'",
    ]
    assert all(s["status"] == "passed" for s in walk_steps(steps))
    params = {p["name"]: p["value"] for p in steps[1]["parameters"]}
    assert params == {"into": "{id: username}", "text": "alice"}  # ${account.username}, rendered
    # run: the other SOP's steps, nested under it.
    assert step_names(steps[2]["steps"]) == ["assert_visible {id: username}", "assert_visible {text: Log in}"]
    note = [a for a in steps[4]["attachments"] if a["name"] == "note"]
    assert [fake_run.attachment(a) for a in note] == [b"hello alice"]


@pytest.mark.appium
def test_fake_run_nests_retry_attempts_and_on_failure(fake_run: Run) -> None:
    flaky = fake_run.sops["flaky"]
    assert step_names(flaky["steps"]) == ["attempt 1 of 2", "attempt 2 of 2"]
    for attempt in flaky["steps"]:
        assert attempt["status"] == "failed"
        assert step_names(attempt["steps"]) == ["launch_app", "wait_for {id: nope}", "on_failure"]
        assert [s["status"] for s in attempt["steps"]] == ["passed", "failed", "passed"]
        on_failure = attempt["steps"][2]
        assert {a["name"] for a in all_attachments(on_failure)} >= {"note", "source on failure"}
        failure_evidence = {a["name"]: a["type"] for a in attempt["attachments"]}
        assert failure_evidence == {"screenshot at failure": "image/png", "page source at failure": "application/xml"}
    assert [a["name"] for a in flaky["attachments"]] == ["attempt 1 failed"]


@pytest.mark.appium
def test_fake_run_records_each_on_failure_step(fake_run: Run) -> None:
    on_failure = fake_run.sops["flaky"]["steps"][0]["steps"][2]
    assert step_names(on_failure.get("steps", [])) == ["note 'cleaning up'", "page_source 'source on failure'"]


@pytest.mark.appium
def test_fake_run_screenshots_are_real_pngs_after_every_step(fake_run: Run) -> None:
    """--sop-evidence step: one screenshot after each step (explicit screenshots and notes are their own)."""
    tour = fake_run.sops["tour"]
    for step in walk_steps(tour["steps"]):
        shots = [a for a in step.get("attachments", []) if a["type"] == "image/png"]
        expected = ["explicit shot"] if step["name"].startswith("screenshot") else []
        if not step["name"].startswith(("screenshot", "note")):
            expected = [f"after {step['name']}"]
        assert [a["name"] for a in shots] == expected, step["name"]
        for shot in shots:
            width, height = png_size(fake_run.attachment(shot))
            assert width > 0 and height > 0


@pytest.mark.appium
def test_fake_run_writes_environment_categories_and_executor(fake_run: Run) -> None:
    folder = fake_run.alluredir
    env = properties(folder / "environment.properties")
    assert env["pytest-sop"] == pytest_sop.__version__ and env["pytest"] == pytest.__version__
    assert env["Python"].endswith(platform.python_version()) and env["OS"].startswith(platform.system())
    names = [c["name"] for c in json.loads((folder / "categories.json").read_text())]
    assert {"Product failures", "Infrastructure problems", "SOP errors", "Awaiting approval", "Not permitted"} <= set(
        names
    )
    executor = json.loads((folder / "executor.json").read_text())
    assert executor["name"] == "GitHub Actions" and executor["type"] == "github"
    assert executor["buildUrl"] == "https://github.com/acme/phone-sops/actions/runs/4242"
    assert executor["buildOrder"] == 17
    verify = subprocess.run(
        [sys.executable, "-m", "pytest_sop", "audit", "verify", str(folder / "sop-audit.jsonl")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.appium
def test_fake_run_environment_names_the_version_of_the_server_it_used(fake_run: Run) -> None:
    assert properties(fake_run.alluredir / "environment.properties").get("Appium.server") == APPIUM_VERSION


@pytest.mark.appium
def test_each_input_row_has_its_own_history_id(tmp_path: Path, appium_url: str) -> None:
    rows = "id: rows\ninputs:\n  - {id: a, name: ann}\n  - {id: b, name: bob}\nsteps: [launch_app]\n"
    suite = write_suite(tmp_path / "suite", FAKE_CONFIG, {"rows.sop.yaml": rows})
    proc = sop_run(suite, tmp_path / "allure", url=appium_url, locks=tmp_path / "locks")
    found = results(tmp_path / "allure")
    assert sorted(r["name"] for r in found) == ["rows[a]", "rows[b]"], proc.stdout[-3000:]
    assert len({r["historyId"] for r in found}) == 2


# -- --sop-evidence --------------------------------------------------------------------------

EVIDENCE_SOPS = {
    "ok.sop.yaml": "id: ok\nsteps:\n  - launch_app\n  - type: {into: {id: username}, text: bob}\n"
    "  - screenshot: explicit\n",
    "bad.sop.yaml": "id: bad\nsteps:\n  - launch_app\n  - screenshot: explicit\n  - tap: {id: nope}\n"
    "    timeout: 0.2\n",
}


@pytest.mark.appium
@pytest.mark.parametrize(
    ("mode", "ok_shots", "bad_evidence"),
    [
        ("step", ["after launch_app", "after type into={id: username} text='bob'", "explicit"],
         ["after launch_app", "explicit", "screenshot at failure", "page source at failure"]),
        ("failure", ["explicit"], ["explicit", "screenshot at failure", "page source at failure"]),
        ("none", ["explicit"], ["explicit"]),
    ],
)  # fmt: skip
def test_evidence_option_decides_the_screenshots(
    tmp_path: Path, appium_url: str, mode: str, ok_shots: list[str], bad_evidence: list[str]
) -> None:
    suite = write_suite(tmp_path / "suite", FAKE_CONFIG, EVIDENCE_SOPS)
    proc = sop_run(suite, tmp_path / "allure", "--sop-evidence", mode, url=appium_url, locks=tmp_path / "locks")
    run = Run(proc, tmp_path / "allure")
    assert {k: v["status"] for k, v in run.sops.items()} == {"ok": "passed", "bad": "failed"}, run.output[-3000:]
    assert [a["name"] for a in all_attachments(run.sops["ok"])] == ok_shots
    assert [a["name"] for a in all_attachments(run.sops["bad"])] == bad_evidence
    for att in all_attachments(run.sops["ok"]) + all_attachments(run.sops["bad"]):
        if att["type"] == "image/png":
            assert min(png_size(run.attachment(att))) > 0
    assert not (tmp_path / "allure" / "executor.json").exists()  # not in CI


# -- Allure results on Chromium ----------------------------------------------------------------

CHROMIUM_SOPS = {
    "sign-in.sop.yaml": "id: sign-in\ntitle: Sign in\nowner: social-ops\nseverity: blocker\ntags: [smoke]\n"
    "app: snapgram\nrequires:\n  account: {}\nsteps:\n"
    + SIGN_IN
    + "  - wait_for: {id: whoami}\n  - assert_text: {in: {id: whoami}, equals: '${account.username}'}\n",
    "post.sop.yaml": "id: post\ntitle: Post a caption\nowner: social-ops\ntags: [social]\napp: snapgram\n"
    "requires:\n  account: {}\nsteps:\n  - run: sign-in\n  - tap: {id: compose}\n"
    "  - type: {into: {id: caption}, text: 'Hello from ${device.id}'}\n  - tap: {id: publish}\n"
    "  - wait_for: {id: post-published}\n  - screenshot: posted\n"
    "  - assert_text: {in: {id: posted-caption}, equals: Goodbye}\n    timeout: 0.5\non_failure:\n  - page_source\n",
}
SIGN_IN_STEPS = [
    "launch_app",
    "type into={id: username} text='pub1'",
    "type into={id: password} text='***'",
    "tap {text: Sign in}",
    "wait_for {id: whoami}",
    "assert_text in={id: whoami} equals='pub1'",
]


@pytest.mark.appium
def test_allure_results_on_chromium(tmp_path: Path) -> None:
    with serve(accounts={"pub1": "chromium-pw-1"}, publish_delay=0.2) as app:
        suite = write_suite(tmp_path / "suite", CANARY_CONFIG.format(url=app.url, port=free_port()), CHROMIUM_SOPS)
        proc = sop_run(
            suite, tmp_path / "allure", "--sop-operator", "qa-lead", "--sop-evidence", "step",
            locks=tmp_path / "locks", env={"CANARY_PW": "chromium-pw-1", "SOP_APPIUM_HOME": str(APPIUM_HOME)},
        )  # fmt: skip
    run = Run(proc, tmp_path / "allure")
    assert {k: v["status"] for k, v in run.sops.items()} == {"sign-in": "passed", "post": "failed"}, run.output[-4000:]
    sign_in, post = run.sops["sign-in"], run.sops["post"]
    for res, sop, severity, tags in ((sign_in, "sign-in", "blocker", ["smoke"]), (post, "post", "normal", ["social"])):
        assert labels_of(res, "sop") == [sop]
        assert (labels_of(res, "device"), labels_of(res, "account")) == (["pixel-7"], ["publisher-1"])
        assert (labels_of(res, "operator"), labels_of(res, "owner")) == (["qa-lead"], ["social-ops"])
        assert (labels_of(res, "severity"), labels_of(res, "tag")) == ([severity], tags)

    assert step_names(sign_in["steps"]) == SIGN_IN_STEPS
    password = {p["name"]: p["value"] for p in sign_in["steps"][2]["parameters"]}
    assert password == {"into": "{id: password}", "text": "***"}
    assert step_names(post["steps"]) == [
        "run sign-in",
        "tap {id: compose}",
        "type into={id: caption} text='Hello from pixel-7'",
        "tap {id: publish}",
        "wait_for {id: post-published}",
        "screenshot 'posted'",
        "assert_text in={id: posted-caption} equals='Goodbye'",
        "on_failure",
    ]
    assert step_names(post["steps"][0]["steps"]) == SIGN_IN_STEPS
    assert [s["status"] for s in post["steps"]] == ["passed"] * 6 + ["failed", "passed"]
    assert "expected it to equal 'Goodbye', found 'Hello from pixel-7'" in post["statusDetails"]["message"]

    # A screenshot after every step but the explicit one, each a real PNG of a phone-shaped screen.
    for res in (sign_in, post):
        for step in walk_steps([s for s in res["steps"] if s["name"] != "on_failure"]):
            shots = [a for a in step.get("attachments", []) if a["type"] == "image/png"]
            expected = [f"after {step['name']}"]
            if step["name"] == "screenshot 'posted'":
                expected = ["posted"]
            elif step["status"] == "failed":
                expected = []
            assert [a["name"] for a in shots] == expected
            for shot in shots:
                width, height = png_size(run.attachment(shot))
                assert 0 < width < height, (step["name"], width, height)
    evidence = {a["name"]: a for a in post["attachments"]}
    assert {"screenshot at failure", "page source at failure", "appium log"} <= set(evidence)
    assert evidence["screenshot at failure"]["type"] == "image/png"
    assert min(png_size(run.attachment(evidence["screenshot at failure"]))) > 0
    source = run.attachment(evidence["page source at failure"]).decode()
    assert evidence["page source at failure"]["type"] == "text/html" and "Hello from pixel-7" in source
    log = run.attachment(evidence["appium log"]).decode()
    assert "posted-caption" in log and "chromium-pw-1" not in log
    (on_failure,) = [s for s in post["steps"] if s["name"] == "on_failure"]
    assert [a["type"] for a in all_attachments(on_failure)] == ["text/html"]
    env = properties(run.alluredir / "environment.properties")
    assert env["Appium.server"] == APPIUM_VERSION
    driver = json.loads((ROOT / "node_modules" / "appium-chromium-driver" / "package.json").read_text())["version"]
    assert env["Appium.driver.chromium"] == driver


# -- xdist ----------------------------------------------------------------------------------------

TWO_FAKE_PHONES = FAKE_CONFIG + FAKE_CONFIG.split("devices:\n", 1)[1].replace("fake-phone", "fake-phone-2")
ROWS = "".join(f"  - {{id: row{i}, name: user{i}}}\n" for i in range(6))
XDIST_SOPS = {
    "rows.sop.yaml": "id: rows\ntags: [fake]\ninputs:\n" + ROWS + "steps:\n  - launch_app\n"
    "  - type: {into: {id: username}, text: '${inputs.name}'}\n  - wait: 0.3\n"
    "  - assert_text: {in: {id: username}, equals: '${inputs.name}'}\n",
    "other.sop.yaml": "id: other\nsteps:\n  - launch_app\n  - wait: 0.3\n  - assert_visible: {id: username}\n",
}


@pytest.mark.appium
def test_two_workers_with_clean_alluredir_lose_no_result(tmp_path: Path, appium_url: str) -> None:
    suite = write_suite(tmp_path / "suite", TWO_FAKE_PHONES, XDIST_SOPS)
    allure = tmp_path / "allure"
    allure.mkdir()
    stale = allure / "00000000-0000-0000-0000-000000000000-result.json"
    stale.write_text(json.dumps({"name": "stale", "status": "passed", "uuid": "0" * 32}))
    proc = sop_run(suite, allure, "-n", "2", "--clean-alluredir", url=appium_url, locks=tmp_path / "locks")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and " 7 passed" in proc.stdout, output[-4000:]

    found = results(allure)
    names = sorted(r["name"] for r in found)
    assert len(found) == 7 and len(set(names)) == 7, names  # the stale result is gone, no case lost or doubled
    assert all(r["status"] == "passed" for r in found)
    assert not stale.exists()
    devices = {label for r in found for label in labels_of(r, "device")}
    assert devices == {"fake-phone", "fake-phone-2"}
    for name in ("environment.properties", "categories.json", "device-timeline.svg"):
        assert (allure / name).is_file(), name

    log = allure / "sop-audit.jsonl"
    verify = subprocess.run([sys.executable, "-m", "pytest_sop", "audit", "verify", str(log)], capture_output=True)
    assert verify.returncode == 0, verify
    events = [json.loads(line) for line in log.read_text().splitlines()]
    outcomes = [e for e in events if e["event"] == "outcome" and e.get("phase") == "call"]
    assert sorted(e["case"] for e in outcomes) == sorted({e["case"] for e in outcomes}) and len(outcomes) == 7
    assert {e["worker"] for e in events if e["event"] == "outcome"} == {"gw0", "gw1"}


CRASH_ACTION = """\
import os

from pytest_sop.actions import ActionSpec


def pytest_sop_actions():
    return [ActionSpec("crash", "ends this worker process at once", run=lambda ctx: os._exit(3))]
"""


@pytest.mark.appium
def test_a_replacement_worker_keeps_the_results_and_the_audit_log(tmp_path: Path) -> None:
    """A worker dies mid-run (xdist starts another): what the other worker wrote before must stay.

    The dead worker leaves its session open, so the run uses a managed Appium server of its own."""
    crash = "id: crash\nsteps:\n  - launch_app\n  - wait: 2\n  - crash\n"  # first in collection order
    suite = write_suite(tmp_path / "suite", TWO_FAKE_PHONES, {**XDIST_SOPS, "crash.sop.yaml": crash})
    (suite / "conftest.py").write_text(CRASH_ACTION)
    allure = tmp_path / "allure"
    proc = sop_run(
        suite,
        allure,
        "-n",
        "2",
        "--clean-alluredir",
        locks=tmp_path / "locks",
        env={"SOP_APPIUM_HOME": str(APPIUM_HOME)},
    )
    assert "1 failed, 7 passed" in proc.stdout and "crashed while running 'crash.sop.yaml::crash'" in proc.stdout, (
        proc.stdout[-4000:]
    )
    assert sorted(r["name"] for r in results(allure) if r["status"] == "passed") == sorted(
        ["other", *(f"rows[row{i}]" for i in range(6))]
    )
    events = [json.loads(line) for line in (allure / "sop-audit.jsonl").read_text().splitlines()]
    passed = {e["case"] for e in events if e["event"] == "outcome" and e.get("outcome") == "passed"}
    assert len(passed) == 7
