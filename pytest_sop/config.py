"""Options and ini keys from one table -> a frozen :class:`Settings` in ``config.stash``.

Each option ``--sop-x-y`` is also the ini key ``sop_x_y``; the command line wins. A bad
value (a number that is not finite or out of range included) is a usage error naming
where it came from. The lock folder is decided by :func:`lock_dir_setting`, which
``pytest-sop leases`` shares.
"""

from __future__ import annotations

import dataclasses
import getpass
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .holds import DEFAULT_HOLD_TIMEOUT, parse_period
from .leasing import DEFAULT_LOCK_DIR, LockDirError, check_lock_dir
from .starter import CONFIG_NAME, find_config, no_config_message

#: The longest a case may wait for a device or account: a day.
MAX_LEASE_TIMEOUT = 86400.0
MAX_ESCALATE_AFTER = 1000


def _seconds(raw: str) -> float:
    """Seconds from 0 to MAX_LEASE_TIMEOUT; ValueError for anything else (nan and inf too)."""
    value = float(raw)
    if not (math.isfinite(value) and 0 <= value <= MAX_LEASE_TIMEOUT):
        raise ValueError(raw)
    return value


def _whole(raw: str, low: int, high: int) -> int:
    value = int(raw)
    if not low <= value <= high:
        raise ValueError(raw)
    return value


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
    expected: str = ""  # what ``type`` accepts, in words, for errors

    @property
    def ini(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


OPTIONS = (
    Option("--sop", "collect SOP files (ini sop_files) as test items", False, is_flag=True),
    Option(
        "--sop-config",
        "suite config file (default: sop.yaml in the rootdir, else the nearest at or above the paths given)",
    ),
    Option("--sop-operator", "who runs this (default: env SOP_OPERATOR, then the CI actor, then the OS user)"),
    Option("--sop-approvals", "approvals file (default: sop-approvals.yaml)", "sop-approvals.yaml"),
    Option("--sop-evidence", "screenshots after every step, on failure only, or none", "failure", choices=EVIDENCE),
    Option(
        "--sop-lease-timeout",
        "seconds to wait for a device or account",
        300.0,
        type=_seconds,
        expected=f"seconds from 0 to {MAX_LEASE_TIMEOUT:g}",
    ),
    Option(
        "--sop-leases",
        "where devices and accounts are leased: 'file' (lock files, this host) or a PostgreSQL DSN shared by "
        "several hosts (overrides sop.yaml leases)",
    ),
    Option("--sop-appium", "Appium server URL, or 'local' to start a managed one (overrides sop.yaml)"),
    Option("--sop-audit", "audit log path (default: sop-audit.jsonl in the alluredir)"),
    Option("--sop-ledger", "run ledger path (default: .sop/ledger.sqlite beside sop.yaml)"),
    Option(
        "--sop-session",
        "a new Appium session per case, or one per worker reused by its next case of the same app, device and account",
        "case",
        choices=SESSION_SCOPES,
    ),
    Option("--sop-dry-run", "print each case's plan instead of running it", False, is_flag=True),
    Option("--sop-due", "deselect cases that passed within their schedule", False, is_flag=True),
    Option(
        "--sop-resume",
        "run only paused cases whose decision is in, each from where it paused, on its held device",
        False,
        is_flag=True,
    ),
    Option(
        "--sop-signing-key",
        "the operator's SSH key (a private key file, or the .pub of a key in ssh-agent); env SOP_SIGNING_KEY",
    ),
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
    leases: str | None = None  # --sop-leases / ini sop_leases: 'file' or a DSN; None: sop.yaml decides
    # The controller's only: never handed to xdist workers nor written anywhere.
    signing_key: str | None = None
    resume: bool = False
    hold_timeout: float = 86400.0  # ini sop_hold_timeout: seconds a paused case keeps its device and account


settings_key = pytest.StashKey[Settings]()
WORKER_SETTINGS_KEY = "sop_settings"
SIGNING_KEY_ENV = "SOP_SIGNING_KEY"


def worker_settings(settings: Settings) -> dict[str, Any]:
    """The settings as plain data for xdist workers: everything but the signing key's path."""
    data = dataclasses.asdict(settings)
    del data["signing_key"]
    return data


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
    parser.addini(
        "sop_source_url",
        "web address of a SOP file in its repository, for the report's SOP link; placeholders {commit}, "
        "{path} (from the repository root), {line}, {sop}; without {path}, '{path}#L{line}' is appended "
        "(e.g. https://github.com/org/repo/blob/{commit}/)",
    )
    parser.addini("sop_escalate_after", "failures in a row before an exception is escalated", default="3")
    parser.addini(
        "sop_hold_timeout",
        "how long a paused case keeps its device and account (seconds, or 30m, 24h, 7d; 0: it keeps nothing)",
        default=DEFAULT_HOLD_TIMEOUT,
    )


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
        expected = opt.expected or f"a {opt.type.__name__}"
        raise pytest.UsageError(f"{source}: expected {expected}, got {raw!r}") from None


def default_operator() -> str:
    for var in ("SOP_OPERATOR", "GITHUB_ACTOR", "GITLAB_USER_LOGIN", "BUILD_USER_ID"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def default_lock_dir() -> str:
    """The host's one lock folder: the same for every user and every TMPDIR."""
    return DEFAULT_LOCK_DIR


def lock_dir_setting(flag: str | None, ini_value: str | None, inipath: Path | None, cwd: Path) -> str:
    """The lock folder, for pytest and ``pytest-sop leases`` alike.

    ``flag`` (``--lock-dir``, relative to ``cwd``) wins; then ini ``sop_lock_dir``, relative
    to the folder of the ini file it is in (``inipath``); else :func:`default_lock_dir`.
    """
    if flag:
        return os.path.join(cwd, flag)
    if ini_value:
        return os.path.join(inipath.parent if inipath else cwd, ini_value)
    return default_lock_dir()


def suite_ini_lock_dir(start: Path) -> tuple[str | None, Path | None]:
    """Ini ``sop_lock_dir`` and the ini file, found from ``start`` upwards as pytest finds its ini.

    pytest.ini, .pytest.ini, pyproject.toml ([tool.pytest.ini_options]), tox.ini ([pytest])
    or setup.cfg ([tool:pytest]): pytest's own search, so both always agree.
    """
    try:  # pytest's private search: the only way to find exactly the ini file pytest would use
        from _pytest.config.findpaths import locate_config

        found = locate_config(start, [])
        inipath, values = found[1], found[2]
    except (ImportError, TypeError, IndexError, AttributeError) as e:
        raise pytest.UsageError(
            f"cannot find the suite's ini file with pytest {pytest.__version__} ({e}): give the lock folder "
            "with --lock-dir"
        ) from None
    value: object = values.get("sop_lock_dir")
    value = getattr(value, "value", value)  # pytest >= 9 wraps values
    return (str(value) if value else None), inipath


def without_signing_key(argv: list[str]) -> list[str]:
    """``argv`` without ``--sop-signing-key PATH``: what xdist may show workers of the command line."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--sop-signing-key":
            skip = True
        elif not arg.startswith("--sop-signing-key="):
            out.append(arg)
    return out


def signing_key_setting(
    flag: str | None, env: str | None, ini_value: str | None, inipath: Path | None, cwd: Path
) -> str | None:
    """The signing key's absolute path: ``--sop-signing-key``, then env SOP_SIGNING_KEY (both
    relative to ``cwd``), then ini ``sop_signing_key`` (relative to its ini file's folder)."""
    if flag:
        return os.path.abspath(os.path.join(cwd, os.path.expanduser(flag)))
    if env:
        return os.path.abspath(os.path.join(cwd, os.path.expanduser(env)))
    if ini_value:
        return os.path.abspath(os.path.join(inipath.parent if inipath else cwd, os.path.expanduser(ini_value)))
    return None


def suite_config(rootdir: Path, args: list[str], invocation_dir: Path) -> tuple[str | None, list[str]]:
    """pytest's suite config: ``sop.yaml`` in the rootdir, else the nearest at or above the paths
    pytest was given (the invocation folder when none), and the folders that were looked in.

    Paths whose nearest configs differ are a usage error: a run has one suite.
    """
    in_root = os.path.join(rootdir, CONFIG_NAME)
    if os.path.exists(in_root):
        return in_root, [str(rootdir)]
    looked = [str(rootdir)]
    found: dict[str, str] = {}  # config -> the path it was found from
    for arg in args or [str(invocation_dir)]:
        path = os.path.join(invocation_dir, arg.split("::")[0])  # a node id: its file
        start = path if os.path.isdir(path) else os.path.dirname(path)
        if start not in looked:
            looked.append(start)
        nearest = find_config(start)
        if nearest is not None:
            found.setdefault(nearest, arg)
    if len(found) > 1:
        suites = "; ".join(f"{arg} -> {cfg}" for cfg, arg in found.items())
        raise pytest.UsageError(
            f"the paths given belong to different suites ({suites}): run each suite on its own, "
            "or name one with --sop-config"
        )
    return next(iter(found), None), looked


def resolve(config: pytest.Config) -> Settings:
    workerinput = getattr(config, "workerinput", None) or {}
    if WORKER_SETTINGS_KEY in workerinput:
        # The controller's settings win: a worker may infer another rootdir and ini file
        # (e.g. with ``--alluredir DIR`` written as two words).
        data = dict(workerinput[WORKER_SETTINGS_KEY])
        return Settings(**{**data, "patterns": tuple(data["patterns"])})
    values = {opt.ini: _value(config, opt) for opt in OPTIONS}
    config_path = values["sop_config"]
    looked: list[str] = []
    if config_path is None:
        config_path, looked = suite_config(config.rootpath, config.args, config.invocation_params.dir)
    else:
        config_path = os.path.join(str(config.invocation_params.dir), config_path)
        if not os.path.exists(config_path):
            raise pytest.UsageError(f"--sop-config: {config_path} does not exist")
    escalate_after = config.getini("sop_escalate_after")
    try:
        _whole(escalate_after, 1, MAX_ESCALATE_AFTER)
    except ValueError:
        raise pytest.UsageError(
            f"ini sop_escalate_after: expected a whole number from 1 to {MAX_ESCALATE_AFTER}, got {escalate_after!r}"
        ) from None
    hold_timeout = config.getini("sop_hold_timeout")
    try:
        hold_seconds = parse_period(hold_timeout)
    except ValueError:
        raise pytest.UsageError(
            f"ini sop_hold_timeout: expected seconds or a period such as 30m, 24h or 7d, got {hold_timeout!r}"
        ) from None
    lock_dir = lock_dir_setting(None, config.getini("sop_lock_dir"), config.inipath, config.invocation_params.dir)
    if values["sop"] and not values["sop_dry_run"]:
        try:
            # Before any case, an unsafe folder stops the run; a missing one is made (01777)
            # by the first lease, so a run stopped for another reason leaves nothing behind.
            check_lock_dir(lock_dir, create=False)
        except LockDirError as e:
            raise pytest.UsageError(str(e)) from None
    if config_path is None and values["sop"]:
        # After the options' own checks: a bad value is named first, whatever the folder holds.
        raise pytest.UsageError(no_config_message(looked))
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
        lock_dir=lock_dir,
        leases=values["sop_leases"],
        resume=values["sop_resume"],
        hold_timeout=hold_seconds,
        signing_key=signing_key_setting(
            config.getoption("sop_signing_key"),
            os.environ.get(SIGNING_KEY_ENV),
            config.getini("sop_signing_key") or None,
            config.inipath,
            config.invocation_params.dir,
        ),
    )
