"""The run's record beside the cases: run id, audit log, and the files Allure reads once per run.

The controlling process decides the run id and writes ``environment.properties``,
``executor.json``, ``categories.json`` and the device timeline; xdist workers only append
to the audit log and write their own results.
"""

from __future__ import annotations

import os
import platform
import socket
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .allure_meta import (
    UNSIGNED,
    categories,
    collect_environment,
    environment_properties,
    executor,
    write_json_atomic,
    write_text_atomic,
)
from .appium_server import status
from .appium_service import appium_key
from .audit import AuditLog, AuditQueue, QueuedLog
from .config import SIGNING_KEY_ENV, settings_key
from .errors import SopError
from .lease_backend import LeaseTarget, lease_target, open_pool
from .leasing import LeasePoolBase
from .model import Policy
from .signing import SigningError, Verified, fingerprint, proves

if TYPE_CHECKING:
    from .ledger import Ledger

RUN_ID_KEY = "sop_run_id"
run_id_key = pytest.StashKey[str]()
TIMELINE = "device-timeline.svg"


def init_run(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    config.stash[run_id_key] = (
        workerinput[RUN_ID_KEY] if workerinput and RUN_ID_KEY in workerinput else uuid.uuid4().hex
    )


pool_key = pytest.StashKey["LeasePoolBase[Any]"]()
target_key = pytest.StashKey[LeaseTarget]()
last_device_key = pytest.StashKey[str]()


def leases_target(config: pytest.Config) -> LeaseTarget:
    """Where this run leases: ``--sop-leases`` (ini ``sop_leases``), else sop.yaml's ``leases``, else
    the host's lock folder. :raises SopError: a bad DSN, or its variable unset."""
    if target_key not in config.stash:
        from .collect import get_suite

        settings = config.stash[settings_key]
        source = "--sop-leases" if config.getoption("sop_leases", None) else "ini sop_leases"
        leases = get_suite(config).config.leases if settings.config_path else None
        config.stash[target_key] = lease_target(settings.leases, source, leases, settings.lock_dir)
    return config.stash[target_key]


def lease_pool(config: pytest.Config) -> LeasePoolBase[Any]:
    """This process's lease pool: the host-wide lock folder, or the lease server."""
    if pool_key not in config.stash:
        signed_for_leases(config)
        who = who_where(config)
        target = leases_target(config)
        config.stash[pool_key] = open_pool(target, who["run"], who["operator"], who["worker"] or None)
    return config.stash[pool_key]


def ledger_path(config: pytest.Config) -> str:
    """``--sop-ledger PATH``, else ``.sop/ledger.sqlite`` beside sop.yaml (or in the rootdir)."""
    settings = config.stash[settings_key]
    if settings.ledger:
        return os.path.join(str(config.invocation_params.dir), settings.ledger)
    home = os.path.dirname(settings.config_path) if settings.config_path else str(config.rootpath)
    return os.path.join(home, ".sop", "ledger.sqlite")


def ledger_outcome(report: pytest.TestReport, assertion: bool) -> str | None:
    """What a report means for the ledger: None when the phase decides nothing."""
    if report.passed:
        return "passed" if report.when == "call" else None
    if report.skipped:
        text = str(report.longrepr)
        return "awaiting" if "awaiting approval:" in text or "awaiting handoff:" in text else "skipped"
    # A strict xfail that passed (XPASS(strict)) failed as a product failure does: the product changed.
    xpassed = str(report.longrepr).startswith("[XPASS(strict)]")
    return "failed" if report.when == "call" and (assertion or xpassed) else "broken"


def alluredir(config: pytest.Config) -> str | None:
    value = config.getoption("allure_report_dir", None)
    return str(value) if value else None


def audit_path(config: pytest.Config) -> str | None:
    """``--sop-audit PATH``, else ``sop-audit.jsonl`` in the alluredir, else no audit log."""
    settings = config.stash[settings_key]
    if settings.audit:
        return os.path.join(str(config.invocation_params.dir), settings.audit)
    results = alluredir(config)
    return os.path.join(results, "sop-audit.jsonl") if results else None


def open_audit(config: pytest.Config, mask: Callable[[str], str]) -> AuditLog | None:
    path = audit_path(config)
    if path is None:
        return None
    return AuditLog(path, mask=mask)  # which makes its folder at its first line


queue_key = pytest.StashKey[AuditQueue]()


def case_audit(config: pytest.Config, mask: Callable[[str], str]) -> QueuedLog | None:
    """The audit log as a case writes it: through this process's one background writer
    (:class:`~pytest_sop.audit.AuditQueue`), so a case never waits for a line it need not wait for."""
    log = open_audit(config, mask)
    if log is None:
        return None
    queue = config.stash.get(queue_key, None)
    if queue is None:
        queue = config.stash[queue_key] = AuditQueue()
    return QueuedLog(log, queue)


def flush_audit(config: pytest.Config, *, close: bool = False) -> None:
    """Every line this process's cases put is in the audit log (before the seal, and at the end)."""
    queue = config.stash.get(queue_key, None)
    if queue is not None:
        queue.close() if close else queue.flush()


ledger_key = pytest.StashKey["Ledger"]()


def run_ledger(config: pytest.Config) -> Ledger:
    """This process's ledger, with one connection kept for the run (closed by :func:`close_ledger`)."""
    from .ledger import Ledger

    if ledger_key not in config.stash:
        config.stash[ledger_key] = Ledger(ledger_path(config), keep_open=True)
    return config.stash[ledger_key]


def close_ledger(config: pytest.Config) -> None:
    ledger = config.stash.get(ledger_key, None)
    if ledger is not None:
        ledger.close()


def check_records(config: pytest.Config) -> None:
    """Before the first lease: the ledger, the audit log and the approvals file must be readable,
    intact and writable, so no case drives a phone whose outcome could not be recorded.

    :raises pytest.UsageError: naming the file and what is wrong with it.
    """
    from .approvals import decisions
    from .audit import VerifyResult, verify
    from .ledger import Ledger

    settings = config.stash[settings_key]
    problems: list[str] = []
    path = ledger_path(config)
    try:
        Ledger(path).check()
    except (SopError, OSError, sqlite3.Error) as e:
        problems.append(f"run ledger {path}: {e}")
    audit = audit_path(config)
    if audit is not None and os.path.lexists(audit):
        try:
            result = verify(audit)
        except OSError as e:
            result = VerifyResult(False, None, f"cannot be read: {e.strerror}")
        if not result.ok:
            where = f" (line {result.line})" if result.line else ""
            problems.append(
                f"audit log {audit}{where}: {result.reason}; check it with `pytest-sop audit verify {audit}`"
            )
        else:
            try:
                os.close(os.open(audit, os.O_WRONLY | os.O_APPEND))
            except OSError as e:
                problems.append(f"audit log {audit} cannot be written: {e.strerror}")
    approvals = os.path.join(str(config.invocation_params.dir), settings.approvals)
    try:
        decisions(approvals)
    except (SopError, OSError) as e:
        problems.append(f"approvals file {approvals}: {e}")
    if problems:
        raise pytest.UsageError("nothing was run, the run's records are not usable:\n  " + "\n  ".join(problems))


def who_where(config: pytest.Config) -> dict[str, str]:
    workerinput = getattr(config, "workerinput", None)
    return {
        "run": config.stash[run_id_key],
        "operator": config.stash[settings_key].operator,
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
        "worker": workerinput.get("workerid", "") if workerinput else "",
    }


def write_run_files(config: pytest.Config, appium_url: str | None) -> str | None:
    """Allure's run-level files and the timeline; returns the timeline's path."""
    from .timeline import write_timeline

    results = alluredir(config)
    if results is None or hasattr(config, "workerinput"):
        return None
    Path(results).mkdir(parents=True, exist_ok=True)
    appium = config.stash[appium_key].install  # the Appium this run started, if it started one
    env = collect_environment(status(appium_url) if appium_url else None, dict(appium.drivers) if appium else None)
    env["Host"] = platform.node()
    signer = run_signer(config)
    env["Operator"] = config.stash[settings_key].operator
    env["Operator.signed"] = signer.fingerprint if signer else UNSIGNED
    write_text_atomic(os.path.join(results, "environment.properties"), environment_properties(env))
    write_json_atomic(os.path.join(results, "categories.json"), categories())
    ci = executor(os.environ)
    if ci is not None:
        write_json_atomic(os.path.join(results, "executor.json"), ci)
    return str(write_timeline(results, os.path.join(results, TIMELINE), only_sops=True))


#: The run's verified signer: set by the controller at configure, handed to xdist workers.
signer_key = pytest.StashKey[Verified | None]()
SIGNER_KEY = "sop_signer"  # workerinput: {"principal": ..., "fingerprint": ...} or None
checked_key = pytest.StashKey[bool]()  # check_signature ran in this process


def run_signer(config: pytest.Config) -> Verified | None:
    """Who signed this run (the operator, proven by their key) and with which key; None: unsigned."""
    if signer_key not in config.stash:
        workerinput = getattr(config, "workerinput", None) or {}
        data = workerinput.get(SIGNER_KEY)
        config.stash[signer_key] = Verified(data["principal"], data["fingerprint"]) if data else None
    return config.stash[signer_key]


def check_signature(config: pytest.Config, policy: Policy | None) -> None:
    """Before anything else in the controller: prove the operator with their key, or refuse the run.

    A key that is given must prove ``--sop-operator``'s principal in ``policy.signers`` (a
    signature that is present and wrong is never accepted); with ``require_signatures`` a run
    without one is refused too. The key signs a fresh challenge: a copied public key proves nothing.

    :raises pytest.UsageError: naming the key, the operator and why.
    """
    settings = config.stash[settings_key]
    key, operator = settings.signing_key, settings.operator
    signers = policy.signers if policy else None
    required = bool(policy and policy.require_signatures)
    config.stash[signer_key] = None
    config.stash[checked_key] = True
    stop = "nothing was run: "
    if key is None:
        if required:
            raise pytest.UsageError(
                f"{stop}policy.require_signatures is true and this run is not signed: give operator {operator!r}'s "
                f"SSH key with --sop-signing-key PATH (ini sop_signing_key, env {SIGNING_KEY_ENV})"
            )
        return
    if signers is None:
        # No sop.yaml at all is often pytest's doing: `--sop-signing-key PATH` as two words makes
        # PATH look like a test path, and the rootdir (where sop.yaml is looked for) moves there.
        suite = (
            settings.config_path or f"no sop.yaml (none in the rootdir {config.rootpath}; write --sop-signing-key=PATH)"
        )
        raise pytest.UsageError(
            f"{stop}a signing key was given ({key}) but {suite} has no policy.signers to check it against: "
            "add an OpenSSH allowed_signers file naming each operator's key"
        )
    try:
        signer = proves(key, operator, signers)
        # ssh-keygen names the key in its answer; should a version word it otherwise, ask it directly.
        config.stash[signer_key] = signer if signer.fingerprint else Verified(operator, fingerprint(key))
    except SigningError as e:
        raise pytest.UsageError(f"{stop}{e}") from None


def signer_input(config: pytest.Config) -> dict[str, str] | None:
    """The run's signer as plain data for xdist workers (never the key's path)."""
    signer = run_signer(config)
    return {"principal": signer.principal, "fingerprint": signer.fingerprint} if signer else None


SIGNATURE_REFUSED = "sop_signature_refused"  # workerinput: why this run may not lease, if it may not
refused_key = pytest.StashKey[str | None]()


def prove_once(config: pytest.Config) -> str | None:
    """Without ``--sop`` (Python tests on the sop_* fixtures) pytest_configure proved nobody: prove
    the operator now, once per run, in the controller. Returns why leasing is refused, if it is."""
    from .collect import get_suite

    if refused_key not in config.stash:
        if checked_key in config.stash:
            config.stash[refused_key] = None  # proved at configure, or the run was stopped there
        else:
            try:
                check_signature(config, get_suite(config).config.policy)
                config.stash[refused_key] = None
            except pytest.UsageError as e:
                config.stash[refused_key] = str(e)
    return config.stash[refused_key]


def signed_for_leases(config: pytest.Config) -> None:
    """Before a process's first lease, a SOP case's or a Python test's: a run that could not prove
    its operator (a wrong key, or none under ``require_signatures``) takes no device or account.

    :raises SopError: saying why.
    """
    workerinput = getattr(config, "workerinput", None)
    why = workerinput.get(SIGNATURE_REFUSED) if workerinput is not None else prove_once(config)
    if why:
        raise SopError(why.replace("nothing was run: ", "no device or account leased: ", 1))
