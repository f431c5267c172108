"""Options and ini keys from one table -> a frozen :class:`Settings` in ``config.stash``.

Each option ``--sop-x-y`` is also the ini key ``sop_x_y``; the command line wins.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

EVIDENCE = ("step", "failure", "none")
SESSION_SCOPES = ("case", "worker")


@dataclass(frozen=True)
class Option:
    flag: str
    help: str
    default: Any = None
    type: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None
    is_flag: bool = False

    @property
    def ini(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


OPTIONS = (
    Option("--sop", "collect SOP files (ini sop_files) as test items", False, is_flag=True),
    Option("--sop-config", "suite config file (default: sop.yaml in the rootdir)"),
    Option("--sop-operator", "who runs this (default: env SOP_OPERATOR, then the CI actor, then the OS user)"),
    Option("--sop-approvals", "approvals file (default: sop-approvals.yaml)", "sop-approvals.yaml"),
    Option("--sop-evidence", "screenshots after every step, on failure only, or none", "failure", choices=EVIDENCE),
    Option("--sop-lease-timeout", "seconds to wait for a device or account", 300.0, type=float),
    Option("--sop-appium", "Appium server URL, or 'local' to start a managed one (overrides sop.yaml)"),
    Option("--sop-audit", "audit log path (default: sop-audit.jsonl in the alluredir)"),
    Option("--sop-ledger", "run ledger path (default: .sop/ledger.sqlite beside sop.yaml)"),
    Option(
        "--sop-session",
        "a new Appium session per case, or one per worker and device reused across cases of the same app",
        "case",
        choices=SESSION_SCOPES,
    ),
    Option("--sop-dry-run", "print each case's plan instead of running it", False, is_flag=True),
    Option("--sop-due", "deselect cases that passed within their schedule", False, is_flag=True),
)


@dataclass(frozen=True)
class Settings:
    enabled: bool
    config_path: str | None  # None: no sop.yaml, an empty pool
    operator: str
    approvals: str
    evidence: str
    lease_timeout: float
    appium: str | None
    audit: str | None
    ledger: str | None
    session: str
    dry_run: bool
    due: bool
    patterns: tuple[str, ...]
    lock_dir: str


settings_key = pytest.StashKey[Settings]()
WORKER_SETTINGS_KEY = "sop_settings"


def addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sop", "standard operating procedures (pytest-sop)")
    for opt in OPTIONS:
        if opt.is_flag:
            group.addoption(opt.flag, action="store_true", default=None, dest=opt.ini, help=opt.help)
            parser.addini(opt.ini, opt.help, type="bool", default=opt.default)
        else:
            group.addoption(
                opt.flag,
                dest=opt.ini,
                default=None,
                choices=opt.choices,
                metavar=opt.ini.upper()[4:] or None,
                help=opt.help,
            )
            parser.addini(opt.ini, opt.help, default=None)
    parser.addini("sop_files", "glob patterns of SOP files", type="args", default=["*.sop.yaml", "*.sop.yml"])
    parser.addini("sop_lock_dir", "folder for device and account lease locks, shared by every run on the host")
    parser.addini("sop_escalate_after", "failures in a row before an exception is escalated", default="3")


def _value(config: pytest.Config, opt: Option) -> Any:
    """Command line, then ini; a bad value names where it came from."""
    raw = config.getoption(opt.ini)
    source = opt.flag
    if raw is None:
        raw = config.getini(opt.ini)
        source = f"ini {opt.ini}"
        if raw is None or raw == "" or raw == []:
            return opt.default
    if opt.is_flag:
        return bool(raw)
    if opt.choices and raw not in opt.choices:
        raise pytest.UsageError(f"{source}: expected one of {', '.join(opt.choices)}, got {raw!r}")
    try:
        return opt.type(raw)
    except ValueError:
        raise pytest.UsageError(f"{source}: expected a {opt.type.__name__}, got {raw!r}") from None


def default_operator() -> str:
    for var in ("SOP_OPERATOR", "GITHUB_ACTOR", "GITLAB_USER_LOGIN", "BUILD_USER_ID"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def default_lock_dir() -> str:
    import tempfile

    user = getpass.getuser() if hasattr(os, "getuid") else "user"
    return os.path.join(tempfile.gettempdir(), f"pytest-sop-{user}", "locks")


def resolve(config: pytest.Config) -> Settings:
    workerinput = getattr(config, "workerinput", None) or {}
    if WORKER_SETTINGS_KEY in workerinput:
        # The controller's settings win: a worker may infer another rootdir and ini file
        # (e.g. with ``--alluredir DIR`` written as two words).
        data = dict(workerinput[WORKER_SETTINGS_KEY])
        return Settings(**{**data, "patterns": tuple(data["patterns"])})
    values = {opt.ini: _value(config, opt) for opt in OPTIONS}
    root = str(config.rootpath)
    config_path = values["sop_config"]
    if config_path is None:
        default = os.path.join(root, "sop.yaml")
        config_path = default if os.path.exists(default) else None
    else:
        config_path = os.path.join(str(config.invocation_params.dir), config_path)
        if not os.path.exists(config_path):
            raise pytest.UsageError(f"--sop-config: {config_path} does not exist")
    if values["sop_lease_timeout"] < 0:
        raise pytest.UsageError(f"--sop-lease-timeout: expected seconds >= 0, got {values['sop_lease_timeout']}")
    return Settings(
        enabled=values["sop"],
        config_path=config_path,
        operator=values["sop_operator"] or default_operator(),
        approvals=values["sop_approvals"],
        evidence=values["sop_evidence"],
        lease_timeout=values["sop_lease_timeout"],
        appium=values["sop_appium"],
        audit=values["sop_audit"],
        ledger=values["sop_ledger"],
        session=values["sop_session"],
        dry_run=values["sop_dry_run"],
        due=values["sop_due"],
        patterns=tuple(config.getini("sop_files")),
        lock_dir=config.getini("sop_lock_dir") or default_lock_dir(),
    )
