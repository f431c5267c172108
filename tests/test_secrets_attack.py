"""Attacks on the promise that a secret never reaches a file the run writes, in any encoding.

The unit tests feed the masking every spelling a secret takes on its way through JSON, HTTP,
Selenium and Appium; the runs are real pytest processes on a real Appium 3 server (fake
driver), searched afterwards byte by byte: the alluredir, TMPDIR, the suite folder (ledger,
.pytest_cache) and the terminal.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from test_engine_fake import APP, FAKE_CONFIG

from pytest_sop import masking
from pytest_sop.appium_server import ManagedAppium, find_appium_home
from pytest_sop.audit import AuditLog, verify
from pytest_sop.masking import MASK, MIN_BASE64_CORE, mask_text

ROOT = Path(__file__).resolve().parents[1]
APPIUM_HOME = find_appium_home(ROOT)

# Each of these characters changes under some encoding: '"' and '\\' under JSON, '+', '/' and
# ' ' under URL encoding, 'é' under ensure_ascii JSON (\u00e9), UTF-16 and URL encoding.
CANARY = 'Cz7"q+/9 é\\k-Wx'
PIN = 'Pin-4k2+Q/é"w'  # a secret in a SOP's inputs


# -- the spellings ------------------------------------------------------------------------------


def _char_array(secret: str) -> re.Pattern[bytes]:
    """Selenium's ``"value": ["C", "z", ...]``: JSON strings of one character, any whitespace between."""
    items = []
    for ch in secret:
        spellings = {json.dumps(ch)[1:-1], json.dumps(ch, ensure_ascii=False)[1:-1]}
        items.append(b'"(?:' + b"|".join(re.escape(s.encode()) for s in spellings) + b')"')
    return re.compile(rb"\s*,\s*".join(items))


def leak_forms(secret: str) -> dict[str, bytes]:
    """Every spelling of ``secret`` that must never be written, as bytes to search files for."""
    raw = secret.encode()
    out = {
        "raw": raw,
        "json": json.dumps(secret, ensure_ascii=False)[1:-1].encode(),
        "json-ascii": json.dumps(secret)[1:-1].encode(),
        "url": quote(secret, safe="").encode(),
        "url-path": quote(secret).encode(),
        "url-plus": quote_plus(secret).encode(),
        "py-repr": repr(secret)[1:-1].encode(),
        "py-ascii": ascii(secret)[1:-1].encode(),
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
        "utf-16-le": secret.encode("utf-16-le"),
        "utf-16-be": secret.encode("utf-16-be"),
        "base64": base64.b64encode(raw).rstrip(b"="),
        "base64url": base64.urlsafe_b64encode(raw).rstrip(b"="),
    }
    out["url-lower"] = re.sub(rb"%[0-9A-F]{2}", lambda m: m.group().lower(), out["url"])
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw)
        start = (0, 2, 3)[offset]  # the first characters mix in the bytes before the secret
        end = (offset + len(raw)) // 3 * 4  # the last group may mix in the bytes after it
        if end - start >= MIN_BASE64_CORE:  # shorter runs are found by chance in any base64 text
            out[f"base64+{offset}"] = encoded[start:end]
            out[f"base64url+{offset}"] = encoded[start:end].replace(b"+", b"-").replace(b"/", b"_")
    return out


@pytest.fixture(autouse=True)
def _fresh_maskers() -> None:
    """Each test builds its own maskers: a cached one would hide from mutation testing which test checks what."""
    masking._masker.cache_clear()


def leaks_in(data: bytes, secret: str) -> list[str]:
    found = [name for name, form in leak_forms(secret).items() if form in data]
    if _char_array(secret).search(data):
        found.append("char-array")
    return found


def find_leaks(secret: str, roots: list[Path], *texts: str) -> list[str]:
    leaks = []
    for root in roots:
        for folder, _, files in os.walk(root):
            for name in files:
                path = Path(folder, name)
                if path.is_symlink() or not path.is_file():
                    continue
                leaks += [f"{path}: {how}" for how in leaks_in(path.read_bytes(), secret)]
    for i, text in enumerate(texts):
        leaks += [f"output {i}: {how}" for how in leaks_in(text.encode(), secret)]
    return leaks


def test_leak_forms_tell_the_spellings_apart() -> None:
    """The detector itself: the spellings differ from each other, and a near miss is not a leak."""
    forms = leak_forms(CANARY)
    assert all(form != forms["raw"] for name, form in forms.items() if name != "raw")
    assert leaks_in(b'{"value": ["C","z", "7", "\\"", "q","+","/","9"," ","\\u00e9","\\\\","k","-","W","x"]}', CANARY)
    assert leaks_in(json.dumps("pw=" + CANARY.replace("x", "y")).encode(), CANARY) == []


# -- masking every spelling ----------------------------------------------------------------------


def spelled(secret: str) -> dict[str, str]:
    """Texts that carry ``secret`` in one spelling each, inside other text as it is found in logs."""
    forms = {
        k: v.decode("utf-8")
        for k, v in leak_forms(secret).items()
        if not k.startswith(("raw", "json", "utf-16", "py-"))
    }
    texts = {name: f"before {form} after" for name, form in forms.items()}
    texts["raw"] = f"typed {secret}!"
    texts["json"] = json.dumps({"text": "pw:" + secret}, ensure_ascii=False)
    texts["json-ascii"] = json.dumps({"text": secret + "!"})
    texts["char-array"] = json.dumps({"value": list("pw:" + secret)})
    texts["char-array-tight"] = json.dumps({"value": list(secret)}, separators=(",", ":"), ensure_ascii=False)
    texts["char-array-lines"] = json.dumps({"value": list(secret)}, indent=2)
    for prefix in ("", "a", "ab"):
        blob = (prefix + secret + "tail").encode()
        texts[f"in base64 after {len(prefix)}"] = "data:" + base64.b64encode(blob).decode()
        texts[f"in base64url after {len(prefix)}"] = "data:" + base64.urlsafe_b64encode(blob).decode()
        texts[f"in hex after {len(prefix)}"] = blob.hex()
    texts["python repr"] = repr({"password": secret, "other": 'it\'s "quoted"'})
    texts["python ascii"] = ascii(["pw", secret])
    texts["utf-16 decoded"] = (secret + " from a UTF-16 file").encode("utf-16").decode("utf-16")
    return texts


@pytest.mark.parametrize("secret", [CANARY, PIN, "2026"])
def test_every_spelling_of_a_secret_is_masked(secret: str) -> None:
    for name, text in spelled(secret).items():
        masked = mask_text(text, [secret])
        assert leaks_in(masked.encode(), secret) == [], (name, text, masked)
        assert MASK in masked or not leaks_in(text.encode(), secret), name


@pytest.mark.parametrize("form", ["json", "json-ascii", "base64", "base64url", "url", "url-plus", "url-path"])
def test_dropping_a_spelling_from_masking_is_caught(form: str) -> None:
    """Mutation guard: the JSON-escaped, base64 and URL forms each need masking of their own."""
    text = f"x {leak_forms(CANARY)[form].decode()} y"
    assert mask_text(text, [CANARY]) == f"x {MASK} y"


def test_masking_leaves_text_without_secrets_alone() -> None:
    text = "2025-12-31T23:59:59Z step 7 Pin-4k2 Cz7 "
    assert mask_text(text, [CANARY, PIN]) == text
    assert mask_text("", [CANARY]) == ""


def test_longer_secret_wins_over_the_shorter_one_inside_it() -> None:
    assert mask_text("pw=abcd-efgh;", ["abcd", "abcd-efgh"]) == f"pw={MASK};"


def test_a_longer_secret_wins_in_character_arrays_and_bytes_too() -> None:
    short, long = "abcd", "abcd-efgh"
    assert mask_text(json.dumps({"value": list(long)}), [short, long]) == '{"value": ["***"]}'
    for encoding in ("utf-8", "utf-16-le"):
        assert masking.mask_bytes(f"pw={long};".encode(encoding), [short, long]) == "pw=***;".encode(encoding)


@pytest.mark.parametrize("secret", [CANARY, PIN, 'it\'s "q" 9!'])
def test_python_spellings_are_masked_whole(secret: str) -> None:
    """What ``-l`` locals and assertion messages show: repr() and ascii() of the secret, quotes escaped."""
    for shown in (repr(secret), ascii(secret), repr([secret]), repr({"pw": secret})):
        masked = mask_text(shown, [secret])
        assert masked.count("***") == 1 and secret[-1] not in masked.split("***")[1][:1], (shown, masked)


def test_secrets_in_device_and_app_capabilities_are_known() -> None:
    from pytest_sop.model import App, Device, Secret, SourcePos, SuiteConfig

    env = {"DEV_TOKEN": "dev-token-1", "APP_TOKEN": "app-token-2"}
    at = SourcePos("sop.yaml", 1, 1)
    config = SuiteConfig(
        path="sop.yaml",
        devices=(Device("d", "web", at, capabilities={"appium:token": Secret("DEV_TOKEN")}),),
        apps={"a": App("a", {"x": [Secret("APP_TOKEN"), {"y": Secret("UNSET")}]}, at)},
    )
    assert masking.suite_secret_values(config, env.get) == {"dev-token-1", "app-token-2"}


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16-le", "utf-16-be", "utf-16"])
def test_bytes_are_masked_in_utf8_and_utf16(encoding: str) -> None:
    data = b"\x89PNG\x00" + f"pw={CANARY};".encode(encoding) + b"\x00end"
    masked = masking.mask_bytes(data, [CANARY])
    assert CANARY.encode(encoding).removeprefix(b"\xff\xfe") not in masked
    assert leaks_in(masked, CANARY) == []
    assert masked.startswith(b"\x89PNG\x00") and masked.endswith(b"\x00end")


def test_allure_ids_and_file_names_are_never_masked() -> None:
    """A secret like "2026" may be part of a uuid: masking it would cut a result from its attachments."""
    from allure_commons.model2 import Attachment, StatusDetails, TestResult, TestStepResult

    from pytest_sop.report_masking import mask_value

    step = TestStepResult(
        id="step-2026", name="type 2026", attachments=[Attachment("2026 shot", "a2026-attachment.png")]
    )
    result = TestResult(uuid="c0ffee-2026", historyId="h2026", name="pin 2026", steps=[step])
    result.statusDetails = StatusDetails(message="found '2026'", trace="x = '2026'")
    mask_value(result, lambda text: mask_text(text, ["2026"]))
    assert (result.uuid, result.historyId, step.id) == ("c0ffee-2026", "h2026", "step-2026")
    assert step.attachments[0].source == "a2026-attachment.png" and step.attachments[0].name == "*** shot"
    assert (result.name, step.name, result.statusDetails.message) == ("pin ***", "type ***", "found '***'")


# -- the audit log: structural fields are never masked --------------------------------------------


def test_a_secret_that_is_part_of_the_timestamp_does_not_break_the_audit_log(tmp_path: Path) -> None:
    """A 4-digit secret equal to this year: ts, seq and prev keep their digits, free text is masked."""
    year = "2026"
    path = tmp_path / "sop-audit.jsonl"
    log = AuditLog(path, mask=lambda text: mask_text(text, [year]))
    for k in range(12):  # seq 10, 11, 12 and a prev hash may hold the digits too
        log.append("step_start", case=f"a.sop.yaml::pin[{k}]", step=f"type text={year}", params={"text": year})
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(1, 13))
    assert all(r["ts"].startswith(("2026-", "2027-", "2025-")) for r in records)
    assert all(r["step"] == f"type text={MASK}" and r["params"] == {"text": MASK} for r in records)
    assert verify(path).ok


# -- real runs ----------------------------------------------------------------------------------

FAKE_DEVICE = f"""\
appium: {{server: local}}
{FAKE_CONFIG}accounts:
  - id: tester-1
    role: tester
    fields: {{username: alice, password: {{env: CANARY_PW}}}}
"""

TYPED = """\
id: typed
requires:
  account: {role: tester}
inputs:
  - {id: row1, pin: {env: CANARY_PIN}}
steps:
  - type: {into: {id: username}, text: "${account.password}"}
  - assert_text: {in: {id: username}, equals: "${account.password}"}
  - type: {into: {id: password}, text: "${inputs.pin}"}
  - note: "typed ${inputs.pin} and ${account.password}"
  - assert_text: {in: {id: password}, equals: something-else}
    timeout: 0.3
"""

# A project action that fails in a way nobody planned: its exception quotes the secret.
EXPLODE_CONFTEST = """\
from pytest_sop import ActionSpec, Param


def explode(ctx, text):
    secret_here = text
    raise RuntimeError("the backend refused " + secret_here)


def pytest_sop_actions():
    return [ActionSpec("explode", "Fail unexpectedly.", shape="fields", params=(Param("text", "text"),), run=explode)]
"""
EXPLODE = """\
id: explode
requires:
  account: {role: tester}
steps:
  - explode: {text: "pw ${account.password}"}
"""

PYTHON_TEST = """\
import os

import pytest


@pytest.mark.sop(device={"platform": "fake"}, account={"role": "tester"})
def test_sign_in_by_hand(sop_driver, sop_account):
    password = os.environ["CANARY_PW"]
    sop_driver.find_element("id", "username").send_keys(password)
    print("typed", password)
    assert sop_driver.find_element("id", "username").text == password + "!"
"""


@pytest.fixture
def private_tmpdir() -> Iterator[Path]:
    """An empty TMPDIR of the run's own, with a short path (Chromium's sockets must fit 108 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="sa-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def write_suite(folder: Path, config: str, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sop.yaml").write_text(config)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def run_suite(
    suite: Path, tmpdir: Path, out: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``pytest --sop`` as a person runs it (cache provider on), writing Allure, JUnit and the audit log."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "GITHUB_", "CI"))}
    environ.update({
        "CANARY_PW": CANARY, "CANARY_PIN": PIN, "SOP_APPIUM_HOME": str(APPIUM_HOME), "TMPDIR": str(tmpdir),
        "TEMP": str(tmpdir), "TMP": str(tmpdir), "PYTHONDONTWRITEBYTECODE": "1", **(env or {}),
    })  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--sop", "-rA", "-v", f"--alluredir={out / 'allure'}",
         f"--junitxml={out / 'junit.xml'}", "-o", f"sop_lock_dir={out / 'locks'}", *args],
        cwd=suite, env=environ, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.appium
def test_canary_typed_and_from_inputs_reaches_no_file_in_any_encoding(tmp_path: Path, private_tmpdir: Path) -> None:
    files = {
        "typed.sop.yaml": TYPED, "explode.sop.yaml": EXPLODE, "conftest.py": EXPLODE_CONFTEST,
        "test_by_hand.py": PYTHON_TEST,
    }  # fmt: skip
    suite = write_suite(tmp_path / "suite", FAKE_DEVICE, files)
    out = tmp_path / "out"
    before = listing(private_tmpdir)
    result = run_suite(suite, private_tmpdir, out, "-l", "--sop-evidence", "failure")
    output = result.stdout + result.stderr
    assert "3 failed" in result.stdout, output[-6000:]
    assert "INTERNALERROR" not in output, output[-6000:]

    # What the run is meant to show is there, with the mask where the secret was.
    assert "found '***'" in result.stdout
    assert "RuntimeError: the backend refused pw ***" in result.stdout  # the unexpected exception
    assert re.search(r"^password +?= '\*\*\*'$", result.stdout, re.MULTILINE)  # -l shows the local, masked
    allure = out / "allure"
    res = {json.loads(p.read_text())["name"]: json.loads(p.read_text()) for p in allure.glob("*-result.json")}
    assert "refused pw ***" in res["explode"]["statusDetails"]["message"]
    attachments = {a["name"] for r in res.values() for a in r.get("attachments", [])}
    assert {"appium log", "page source at failure"} <= attachments, attachments
    assert "refused pw ***" in (out / "junit.xml").read_text()

    # Nothing the run made is left in TMPDIR.
    assert listing(private_tmpdir) == before, listing(private_tmpdir)
    roots = [allure, out, private_tmpdir, suite]
    assert (suite / ".pytest_cache").is_dir()
    for secret in (CANARY, PIN):
        assert find_leaks(secret, roots, result.stdout, result.stderr) == [], secret


CLEAN_SCREEN = {
    "a-type.sop.yaml": """\
id: a-type
requires:
  account: {role: tester}
steps:
  - type: {into: {id: username}, text: "${account.password}"}
  - type: {into: {id: password}, text: "${account.password}"}
""",
    # Another case on the same session (the session is kept for a case taking the same device and
    # account), typing nothing: it must find the fields empty.
    "b-read.sop.yaml": """\
id: b-read
requires:
  device: {platform: fake}
  account: {role: tester}
steps:
  - assert_text: {in: {id: username}, matches: "^$"}
    timeout: 0.3
  - assert_text: {in: {id: password}, matches: "^$"}
    timeout: 0.3
""",
}


@pytest.mark.appium
def test_a_reused_session_starts_from_a_cleared_screen(tmp_path: Path, private_tmpdir: Path) -> None:
    suite = write_suite(tmp_path / "suite", FAKE_DEVICE, CLEAN_SCREEN)
    out = tmp_path / "out"
    result = run_suite(suite, private_tmpdir, out, "--sop-session", "worker", "-p", "no:cacheprovider")
    output = result.stdout + result.stderr
    sessions = [json.loads(line) for line in (out / "allure" / "sop-audit.jsonl").read_text().splitlines()]
    reused = [r["reused"] for r in sessions if r["event"] == "session"]
    assert reused == [False, True], reused  # the second case really ran on the first one's session
    assert result.returncode == 0 and "2 passed" in result.stdout, output[-4000:]
    assert find_leaks(CANARY, [out, suite, private_tmpdir], result.stdout, result.stderr) == []


YEAR_SOPS = {
    f"pin-{k}.sop.yaml": f"""\
id: pin-{k}
requires:
  account: {{role: tester}}
steps:
  - type: {{into: {{id: username}}, text: "${{account.password}}"}}
  - note: "pin is ${{account.password}}"
  - assert_text: {{in: {{id: username}}, equals: "${{account.password}}"}}
"""
    for k in range(3)
}


@pytest.mark.appium
def test_a_secret_equal_to_the_year_runs_every_case_and_keeps_the_audit_chain(
    tmp_path: Path, private_tmpdir: Path
) -> None:
    suite = write_suite(tmp_path / "suite", FAKE_DEVICE, YEAR_SOPS)
    out = tmp_path / "out"
    result = run_suite(suite, private_tmpdir, out, "-p", "no:cacheprovider", env={"CANARY_PW": "2026"})
    output = result.stdout + result.stderr
    assert "INTERNALERROR" not in output, output[-4000:]
    assert result.returncode == 0 and "3 passed" in result.stdout, output[-4000:]
    audit = out / "allure" / "sop-audit.jsonl"
    assert verify(audit).ok
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert all(r["ts"][:4].isdigit() for r in records)
    notes = [r["step"] for r in records if r["event"] == "step_start" and r["step"].startswith("note")]
    assert notes == ["note 'pin is ***'"] * 3, notes
    outcomes = [r for r in records if r["event"] == "outcome" and r["phase"] == "call"]
    assert [r["outcome"] for r in outcomes] == ["passed"] * 3
    with sqlite3.connect(suite / ".sop" / "ledger.sqlite") as db:
        rows = db.execute("select count(*) from runs").fetchone()[0]
    assert rows == 3


# -- Appium is told which requests carry a secret ------------------------------------------------


@pytest.mark.appium
def test_appium_masks_requests_that_carry_a_secret_in_its_own_log(appium_server: ManagedAppium) -> None:
    """The test server's log is written unmasked: only Appium's own masking (the header) hides the secret."""
    from pytest_sop.model import Device, SourcePos
    from pytest_sop.session import DeviceSession

    secret = "Hdr-" + CANARY
    before = masking.known_values()
    masking.remember([secret])
    caps = {"platformName": "Fake", "appium:automationName": "Fake", "appium:app": str(APP)}
    device = Device("fake-phone", "fake", SourcePos("sop.yaml", 1, 1), capabilities=caps)
    session = DeviceSession.create(device, None, appium_server.url, caps)
    try:
        field = session.driver.find_element("id", "username")
        field.send_keys("plain-words-" + session.session_id)
        field.send_keys(secret)
    finally:
        session.quit()
        masking.forget_since(before)
    tag = f"[{session.session_id[:8]}]"
    lines = [line for line in appium_server.log_path.read_text().splitlines() if tag in line]
    requests = [line for line in lines if "--> POST" in line and "/value" in line]
    assert len(requests) == 2, lines
    assert "plain-words-" in requests[0]  # a request without a secret stays readable
    assert requests[1].endswith("**SECURE**"), requests[1]
    calls = [line for line in lines if "Calling AppiumDriver.setValue()" in line]
    assert calls[-1].endswith("with args: **SECURE**"), calls
    assert leaks_in(appium_server.log_path.read_bytes(), secret) == []


def test_values_shorter_than_four_characters_are_never_masked() -> None:
    """Collection refuses them; masking one would garble every message, hash and timestamp."""
    before = masking.known_values()
    try:
        masking.remember(["7", "ab", "xyz"])
        assert masking.mask("step 7 of ab-xyz") == "step 7 of ab-xyz"
    finally:
        masking.forget_since(before)


def test_a_run_inside_another_forgets_its_secrets_when_it_ends(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytester runs share this process: an inner run's secret must not be masked in the outer run."""
    pytester.makefile(".yaml", sop="accounts:\n  - id: a\n    fields: {password: {env: INNER_PW}}\n")
    pytester.makepyfile("import os\n\ndef test_x():\n    assert os.environ['INNER_PW'] == 'x'\n")
    monkeypatch.setenv("INNER_PW", "inner-secret-42")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert "inner-secret-42" not in result.stdout.str()  # masked while the inner run lasted
    assert "inner-secret-42" not in masking.known_values()
    assert masking.mask("inner-secret-42") == "inner-secret-42"


@pytest.mark.appium
def test_the_managed_appium_log_masks_inputs_secrets_from_its_start(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret that only a SOP's inputs name, sent by a client that does not tell Appium it is one."""
    from appium import webdriver
    from appium.options.common import AppiumOptions

    from pytest_sop.appium_service import AppiumService

    monkeypatch.setenv("SOP_APPIUM_HOME", str(APPIUM_HOME))
    monkeypatch.setenv("CANARY_PW", CANARY)
    monkeypatch.setenv("CANARY_PIN", PIN)
    pytester.makefile(".yaml", sop=FAKE_DEVICE)
    (pytester.path / "typed.sop.yaml").write_text(TYPED)
    config = pytester.parseconfigure("--sop", "-p", "no:cacheprovider")
    service = AppiumService(config)
    try:
        url = service.local_url()
        caps = {"platformName": "Fake", "appium:automationName": "Fake", "appium:app": str(APP)}
        driver = webdriver.Remote(url, options=AppiumOptions().load_capabilities(caps))
        try:
            driver.find_element("id", "username").send_keys(PIN)
            assert driver.find_element("id", "username").text == PIN  # Appium logs what it answers
        finally:
            driver.quit()
        assert service.log_path is not None
        log = service.log_path.read_bytes()
        assert b"Calling AppiumDriver.getText()" in log
        assert leaks_in(log, PIN) == [] and leaks_in(log, CANARY) == []
        temp = service.temp_dir()
    finally:
        service.stop()
    assert not temp.exists()  # the log's folder goes with the run


def test_chromium_on_this_host_gets_a_profile_folder_the_run_removes(pytester: pytest.Pytester) -> None:
    from pytest_sop.appium_service import AppiumService
    from pytest_sop.session import with_profile

    config = pytester.parseconfigure("-p", "no:cacheprovider")
    service = AppiumService(config)
    caps = {"appium:automationName": "Chromium", "goog:chromeOptions": {"args": ["--headless=new"]}}
    try:
        local = with_profile(caps, "http://127.0.0.1:4723")
        args = local["goog:chromeOptions"]["args"]
        assert args[0] == "--headless=new" and args[1].startswith("--user-data-dir=")
        profile = Path(args[1].split("=", 1)[1])
        assert profile.is_dir() and service.temp_dir() in profile.parents
        assert caps["goog:chromeOptions"]["args"] == ["--headless=new"]  # the suite's own caps are left alone
        assert with_profile(caps, "https://grid.example.com/wd/hub") == caps  # not this host's folder to make
        own = {**caps, "goog:chromeOptions": {"args": ["--user-data-dir=/mine"]}}
        assert with_profile(own, "http://localhost:4723") == own
        assert with_profile({"appium:automationName": "UiAutomator2", "browserName": "chrome"}, "http://[::1]:1") == {
            "appium:automationName": "UiAutomator2", "browserName": "chrome"
        }  # fmt: skip
    finally:
        service.stop()
    assert not profile.exists()
