"""What a run tells Allure besides its results: labels, history ids, categories, environment, executor.

Pure functions over the model and plain data: no pytest, no global state. The plugin decides
when to call them and where the files go; :func:`write_json_atomic` and
:func:`write_text_atomic` write them so that a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from allure_commons.types import LabelType

from .model import Case

# Labels Allure has no constant for; the report shows them as given, and filters and groups by them.
SOP_LABEL = "sop"
DEVICE_LABEL = "device"
ACCOUNT_LABEL = "account"
OPERATOR_LABEL = "operator"
# Whether the operator proved who they are with their SSH key: the key's fingerprint, or UNSIGNED.
OPERATOR_SIGNED_LABEL = "operator_signed"
UNSIGNED = "unsigned"
OWNER_LABEL = "owner"  # Allure's own name for the owner of a test
FRAMEWORK = "pytest-sop"

Labels = list[tuple[str, str]]


def labels_for(
    case: Case,
    device_id: str | None,
    account_id: str | None,
    operator: str,
    suite_name: str,
    signed_by: str | None = None,
) -> Labels:
    """The Allure labels of one case, in a stable order.

    ``device_id`` and ``account_id`` are the ones the case actually ran with (None when it had
    none, or stopped before a lease). ``suite_name`` becomes the epic, the SOP the feature and
    the case (input row and account) the story, so the Behaviors tab reads suite > SOP > case.
    Only ids go into labels, never input or account values, so no secret can reach them.
    ``signed_by`` is the fingerprint of the key that proved the operator, or :data:`UNSIGNED`
    (None: say nothing about it).
    """
    sop = case.sop
    labels: Labels = [(SOP_LABEL, sop.id)]
    if device_id:
        labels.append((DEVICE_LABEL, device_id))
    if account_id:
        labels.append((ACCOUNT_LABEL, account_id))
    labels.append((OPERATOR_LABEL, operator))
    if signed_by is not None:
        labels.append((OPERATOR_SIGNED_LABEL, signed_by))
    if sop.owner:
        labels.append((OWNER_LABEL, sop.owner))
    labels.append((LabelType.SEVERITY, sop.severity))
    labels += [(LabelType.TAG, tag) for tag in sop.tags]
    if suite_name:
        labels.append((LabelType.EPIC, suite_name))
    labels.append((LabelType.FEATURE, sop.title or sop.id))
    if case.case_id:
        labels.append((LabelType.STORY, case.case_id))
    labels.append((LabelType.FRAMEWORK, FRAMEWORK))
    return labels


# -- categories.json ------------------------------------------------------------------------
#
# Allure 2 keeps a result in every category whose messageRegex *fully* matches its message
# (java Pattern.DOTALL + matches()); Allure 3 keeps it in the *first* category whose regex is
# *found* in it (JS RegExp with the "s" flag). Each regex below therefore starts and ends with
# ``.*``, uses only syntax the three engines share, and the broken categories exclude each
# other, so both reports sort a result the same way. allure-pytest writes the message as
# ``module.ExceptionType: text`` (``Skipped: text`` for a skip); pytest-sop then takes the class
# name off its own errors and skips (recorders.clean_messages), so each phrase matches both forms.

SOP_ERROR_PHRASES = (
    r"is not in the suite",
    r"has no value",
    r"this case has no account",
    r"was not saved before this step",
    r"environment variable \S+ is not set",
    r"is registered without a run function",
    r"locators work on \S+ only",
    r"needs the app's url",
    r"unknown key \S+; known:",
    r"is not available on the \S+ driver",
    r"works? on web devices only",
    r"cannot be refined on",
    r"does not report whether",
    r"SecretMissing",
    r"TemplateError",
    r"UnsupportedHere",
    r"SopSyntaxError",
    r"SopInvalid",
)
INFRASTRUCTURE_PHRASES = (
    r"Appium",
    r"[Ss]ession not created",
    r"SessionNotCreated",
    r"cannot be reached",
    r"stopped answering",
    r"LeaseTimeout",
    r"[Ll]ease timeout",
    r"[Ll]ease timed out",
    r"DeviceError",
    r"no device (?:matches|for|matching)",
    r"[Dd]evice \S+ (?:is )?(?:unavailable|offline|not found|disconnected|not connected)",
    r"[Cc]onnection (?:refused|reset|aborted)",
)


def _any(phrases: tuple[str, ...]) -> str:
    return "(?:" + "|".join(phrases) + ")"


def categories() -> list[dict[str, Any]]:
    """The content of ``categories.json``: how the report sorts what did not pass.

    Failed and broken results that match nothing here fall into Allure's default "Product
    defects" and "Test defects"."""
    sop_errors = _any(SOP_ERROR_PHRASES)
    infrastructure = _any(INFRASTRUCTURE_PHRASES)
    return [
        {
            "name": "Awaiting approval",
            "description": "Stopped at an approve checkpoint nobody has approved yet (pytest-sop approve).",
            "matchedStatuses": ["skipped"],
            "messageRegex": r".*awaiting approval: .*",
        },
        {
            "name": "Awaiting handoff",
            "description": "Paused at a handoff step until a person with its role acts (pytest-sop handoff done).",
            "matchedStatuses": ["skipped"],
            "messageRegex": r".*awaiting handoff: .*",
        },
        {
            "name": "Not permitted",
            "description": "The operator's roles in the suite policy do not allow this case.",
            "matchedStatuses": ["skipped"],
            "messageRegex": r".*not permitted: .*",
        },
        {
            "name": "SOP errors",
            "description": "The SOP or sop.yaml asks for what the run cannot give: fix the SOP or the environment.",
            "matchedStatuses": ["broken"],
            "messageRegex": f".*{sop_errors}.*",
        },
        {
            "name": "Infrastructure problems",
            "description": "A device, account lease, Appium server or session was not available.",
            "matchedStatuses": ["broken"],
            "messageRegex": f"^(?!.*{sop_errors}).*{infrastructure}.*",
        },
        {
            "name": "Product failures",
            "description": "A step's expectation or done_when did not hold, or a checkpoint was rejected.",
            "matchedStatuses": ["failed"],
        },
    ]


# -- environment.properties ----------------------------------------------------------------


def _escape_property(text: str, *, key: bool) -> str:
    """java.util.Properties.store escaping, ASCII only (Allure 2 reads the file as ISO-8859-1)."""
    out: list[str] = []
    for i, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\f":
            out.append("\\f")
        elif ch in "=:#!":
            out.append("\\" + ch)
        elif ch == " " and (key or i == 0):
            out.append("\\ ")
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out += [f"\\u{unit:04x}" for unit in _utf16_units(ch)]
    return "".join(out)


def _utf16_units(ch: str) -> list[int]:
    data = ch.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def environment_properties(info: Mapping[str, str]) -> str:
    """``environment.properties`` text: one ``key=value`` line per entry, escaped as Java does."""
    return "".join(f"{_escape_property(k, key=True)}={_escape_property(v, key=False)}\n" for k, v in info.items())


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _appium_version(status: Mapping[str, Any]) -> str | None:
    """``build.version`` from Appium's ``GET /status`` body (``{"value": {...}}``) or its value."""
    value = status.get("value", status)
    build = value.get("build") if isinstance(value, Mapping) else None
    version = build.get("version") if isinstance(build, Mapping) else None
    return str(version) if version else None


def collect_environment(appium_status: Mapping[str, Any] | None, drivers: Mapping[str, str] | None) -> dict[str, str]:
    """What the run ran on, for ``environment.properties``.

    ``appium_status`` is the JSON body of the server's ``GET /status``; ``drivers`` maps an Appium
    driver name to its installed version (``appium driver list --installed --json``).
    """
    from . import __version__  # late: this module may be imported while the package initialises

    env: dict[str, str] = {"pytest-sop": __version__}
    for dist in ("pytest", "allure-pytest", "Appium-Python-Client"):
        version = _version(dist)
        if version:
            env[dist] = version
    env["Python"] = f"{platform.python_implementation()} {platform.python_version()}"
    env["OS"] = f"{platform.system()} {platform.release()} ({platform.machine()})"
    server = _appium_version(appium_status) if appium_status else None
    if server:
        env["Appium.server"] = server
    for name, version in sorted((drivers or {}).items()):
        env[f"Appium.driver.{name}"] = version
    return env


# -- executor.json ---------------------------------------------------------------------------


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isascii() and text.isdigit() else None


def _drop_empty(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v not in (None, "")}


def executor(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """``executor.json`` for GitHub Actions or GitLab CI (from their standard variables), else None."""
    if environ.get("GITHUB_ACTIONS") == "true":
        server = environ.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        repo = environ.get("GITHUB_REPOSITORY", "")
        run_id = environ.get("GITHUB_RUN_ID", "")
        number = environ.get("GITHUB_RUN_NUMBER", "")
        workflow = environ.get("GITHUB_WORKFLOW", "")
        build_url = f"{server}/{repo}/actions/runs/{run_id}" if repo and run_id else None
        attempt = environ.get("GITHUB_RUN_ATTEMPT", "")
        if build_url and attempt and attempt != "1":
            build_url += f"/attempts/{attempt}"
        return _drop_empty(
            {
                "name": "GitHub Actions",
                "type": "github",
                "url": f"{server}/{repo}" if repo else server,
                "buildOrder": _int(number),
                "buildName": " ".join(p for p in (workflow or repo, f"#{number}" if number else "") if p),
                "buildUrl": build_url,
                "reportName": f"pytest-sop: {repo}" if repo else "pytest-sop",
            }
        )
    if environ.get("GITLAB_CI") == "true":
        project = environ.get("CI_PROJECT_NAME", "")
        pipeline = environ.get("CI_PIPELINE_ID", "")
        job = environ.get("CI_JOB_NAME", "")
        return _drop_empty(
            {
                "name": "GitLab CI",
                "type": "gitlab",
                "url": environ.get("CI_PROJECT_URL") or environ.get("CI_SERVER_URL"),
                "buildOrder": _int(environ.get("CI_PIPELINE_IID")) or _int(pipeline),
                "buildName": " ".join(p for p in (project, f"pipeline #{pipeline}" if pipeline else "", job) if p),
                "buildUrl": environ.get("CI_PIPELINE_URL"),
                "reportUrl": environ.get("CI_JOB_URL"),
                "reportName": f"pytest-sop: {project}" if project else "pytest-sop",
            }
        )
    return None


# -- writing ------------------------------------------------------------------------------------


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same folder and
    ``os.replace``: readers and parallel writers see the old file or the new one, never a part."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a report is for others to read
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """:func:`write_text_atomic` of ``obj`` as indented UTF-8 JSON."""
    return write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


# -- run-level ("global") attachments ----------------------------------------------------------


def write_globals(results_dir: str | os.PathLike[str], files: list[tuple[str, str, str, str]]) -> Path | None:
    """Copy each ``(name, path, mime, extension)`` into ``results_dir`` as an attachment and declare
    them in one ``<uuid>-globals.json``: Allure 3 shows them under "Global Attachments".

    One file for all: Allure 3.18 lists every attachment once per globals file it reads. Files
    that do not exist are left out; None when none does.
    """
    results = Path(results_dir)
    attachments: list[dict[str, Any]] = []
    for name, path, mime, extension in files:
        if not os.path.isfile(path):
            continue
        source = f"{uuid.uuid4()}-attachment.{extension}"
        tmp = results / f".{source}.tmp"
        shutil.copyfile(path, tmp)
        os.replace(tmp, results / source)
        attachments.append({"name": name, "source": source, "type": mime, "timestamp": int(time.time() * 1000)})
    if not attachments:
        return None
    return write_json_atomic(results / f"{uuid.uuid4()}-globals.json", {"attachments": attachments, "errors": []})
