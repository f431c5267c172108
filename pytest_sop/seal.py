"""The signed, anchored audit log: each run seals its part with a ``signed`` line, and the check of them.

A ``signed`` line is an ordinary audit line (it is chained like any other)::

    {"event":"signed","fingerprint":"SHA256:...","prev":"<sha256 of line N-1>","run":"7b5a...",
     "seq":N,"signature":"-----BEGIN SSH SIGNATURE-----\\n...","signer":"alice","ts":"..."}

``signature`` is ``ssh-keygen -Y sign`` in the ``pytest-sop-audit`` namespace over :func:`head_message`:
the chain head (seq N-1 and its sha256, which is the line's own ``prev``), the run id, the signer's
principal and key fingerprint. Whoever edits any line before it and recomputes the chain changes that
sha256, and cannot sign the new one as the signer without their key. The controller writes one
``signed`` line per run, at the very end of the run, and the run ledger keeps it too
(:class:`~pytest_sop.ledger.SignedHead`), so a log cut back or swapped for an older copy is caught.

Rules :func:`check_signed` holds a log to (``pytest-sop audit verify PATH --signers FILE``):

- the chain and head file hold (as without ``--signers``), and the log has at least one ``signed`` line;
- every ``signed`` line verifies for its ``signer`` in the signers file with the fingerprint it names;
- each run is signed once; every line naming ``run: R`` comes before R's ``signed`` line (the lines
  of other runs may come between: xdist workers of one run and separate runs share a log), and lines
  that name the run's operator name the signer;
- no line follows the last ``signed`` line (a line without ``run`` is covered by the next signature);
- with ``--ledger``: every signed head the ledger holds for this log is in it, unchanged, and every
  ``signed`` line of the log is in the ledger.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import signing
from .audit import AuditLog, read_chain
from .ledger import Ledger, SignedHead

if TYPE_CHECKING:
    import pytest

SIGNED = "signed"
_FIELDS = ("run", "signer", "fingerprint", "signature")
_SIGNED_MARK = b'"event":"signed"'  # how a signed line spells its event (keys sorted, compact)


def head_message(*, run: str, signer: str, fingerprint: str, seq: int, sha256: str) -> bytes:
    """The bytes a run signs: the chain head (line ``seq`` has ``sha256``), the run and who signs it."""
    head = {"fingerprint": fingerprint, "run": run, "seq": seq, "sha256": sha256, "signer": signer}
    return json.dumps(head, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _first_line_sha(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.sha256(f.readline().rstrip(b"\n")).hexdigest()


def seal(
    audit_path: str | os.PathLike[str],
    key: str,
    signer: signing.Verified,
    run_id: str,
    ledger_path: str | os.PathLike[str] | None,
) -> SignedHead | None:
    """End the run's part of the log at ``audit_path`` with a ``signed`` line, and remember it in the ledger.

    The head is read, signed and appended under the writers' lock, so no line comes between. Nothing
    is written when there is no log (the run wrote no line). Raises SigningError when the key cannot
    sign, AuditError when the log's end is damaged.
    """
    path = Path(audit_path)
    if not path.is_file() or path.stat().st_size == 0:
        return None
    log = AuditLog(path)  # no mask: the signed line holds no free text, and a masked signature is no signature

    def signed(seq: int, sha: str) -> dict[str, Any]:
        message = head_message(run=run_id, signer=signer.principal, fingerprint=signer.fingerprint, seq=seq, sha256=sha)
        signature = signing.sign(message, key, signing.AUDIT)
        return {"run": run_id, "signer": signer.principal, "fingerprint": signer.fingerprint, "signature": signature}

    line = log.append_at_head(SIGNED, signed)
    record = json.loads(line)
    head = SignedHead(
        log_id=_first_line_sha(path),
        log_path=os.path.abspath(path),
        run_id=run_id,
        line=record["seq"],
        sha256=hashlib.sha256(line.encode("utf-8")).hexdigest(),
        head_sha256=record["prev"],
        signer=signer.principal,
        fingerprint=signer.fingerprint,
        at=datetime.now(UTC),
    )
    if ledger_path is not None:
        Ledger(ledger_path).record_signed_head(head)
    return head


def seal_run(session: pytest.Session) -> SignedHead | None:
    """At the end of a run, in the controller: seal the run's part of the audit log when the run has a key.

    A seal that cannot be written (the key no longer signs, the log's end is damaged, the ledger is
    locked) fails the run: its log would not verify, and the run says why rather than ending green.
    """
    import filelock
    import pytest

    from .config import settings_key
    from .errors import SopError
    from .runrecord import audit_path, ledger_path, run_id_key, run_signer

    config = session.config
    key = config.stash[settings_key].signing_key
    if hasattr(config, "workerinput") or key is None or config.option.collectonly:
        return None
    signer = run_signer(config)
    path = audit_path(config)
    if signer is None or path is None:
        return None
    try:
        return seal(path, key, signer, config.stash[run_id_key], ledger_path(config))
    except (SopError, OSError, filelock.Timeout) as e:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("")  # end the progress line
            reporter.write_line(f"audit log {path} was NOT signed: {e}", red=True, bold=True)
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return None


# --- checking ----------------------------------------------------------------------------------------


@dataclass
class Report:
    """What :func:`check_signed` found: one line per signed run, and the problems, each naming a line."""

    signed: list[str] = field(default_factory=list)
    problems: list[tuple[int | None, str]] = field(default_factory=list)
    summary: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def bad(self, line: int | None, reason: str) -> None:
        self.problems.append((line, reason))


@dataclass(frozen=True)
class _Signed:
    line: int
    run: str
    signer: str
    fingerprint: str
    signature: str
    message: bytes


def _parse_signed(k: int, rec: dict[str, Any]) -> _Signed | str:
    """Line ``k``'s signature and what it signs, or what the signed line lacks."""
    values = [rec.get(name) for name in _FIELDS]
    if not all(isinstance(v, str) and v for v in values):
        missing = ", ".join(n for n, v in zip(_FIELDS, values, strict=True) if not (isinstance(v, str) and v))
        return f"line {k} is a signed line without {missing}"
    run, signer, fp, signature = (str(v) for v in values)
    message = head_message(run=run, signer=signer, fingerprint=fp, seq=int(rec["seq"]) - 1, sha256=str(rec["prev"]))
    return _Signed(k, run, signer, fp, signature, message)


class _Verifier:
    """One ``ssh-keygen -Y verify`` per signed line, several at once (each is a process of its own), started
    as soon as the signed lines are found: they run beside the parsing of the rest of the log."""

    def __init__(self, signers: str) -> None:
        self.signers = signers
        self.pool = ThreadPoolExecutor(max_workers=min(8, 2 * (os.cpu_count() or 1)))
        self.started: dict[_Signed, Future[signing.Verified | None]] = {}

    def start(self, s: _Signed) -> None:
        if s not in self.started:
            self.started[s] = self.pool.submit(
                signing.verify, s.message, s.signature, self.signers, s.signer, signing.AUDIT
            )

    def result(self, s: _Signed) -> signing.Verified | None:
        self.start(s)  # a line the early look did not see (or saw otherwise) is checked as it is now
        return self.started[s].result()

    def start_early(self, path: str | os.PathLike[str]) -> None:
        """Find the signed lines by their mark, without parsing the log, and start checking them."""
        try:
            data = Path(path).read_bytes()
        except OSError:
            return
        line, counted, at = 1, 0, data.find(_SIGNED_MARK)
        while at >= 0:
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            end = len(data) if end < 0 else end
            line += data.count(b"\n", counted, start)
            counted = start
            with contextlib.suppress(ValueError):
                rec = json.loads(data[start:end])
                if isinstance(rec, dict) and rec.get("event") == SIGNED and type(rec.get("seq")) is int:
                    found = _parse_signed(line, rec)
                    if isinstance(found, _Signed):
                        self.start(found)
            at = data.find(_SIGNED_MARK, end)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def check_signed(path: str | os.PathLike[str], signers: str, ledger: str | None = None) -> Report:
    """Check the chain of the log at ``path``, every run's signature against ``signers``, and with
    ``ledger`` the signed heads it remembers (see the module doc for the rules)."""
    report = Report()
    if not os.path.isfile(signers):
        report.bad(None, f"no signers file {signers}")
        return report
    verifier = _Verifier(signers)
    try:
        verifier.start_early(path)
        chain = read_chain(path)
        if not chain.result.ok:
            report.bad(chain.result.line, chain.result.reason)
            return report
        _check_lines(Path(path), chain.records, chain.hashes, verifier, ledger, report)
    finally:
        verifier.close()
    report.problems.sort(key=lambda p: (p[0] is None, p[0] or 0))
    return report


def _check_lines(
    path: Path,
    records: Sequence[dict[str, Any] | None],
    hashes: Sequence[str],
    verifier: _Verifier,
    ledger: str | None,
    report: Report,
) -> None:
    n = len(records)
    found: list[_Signed] = []
    last_of_run: dict[str, int] = {}  # the last line naming each run
    first_of_run: dict[str, int] = {}
    operator_of_run: dict[str, tuple[str, int]] = {}
    for k, rec in enumerate(records, 1):
        assert rec is not None  # the chain holds, so every line is a record
        if rec["event"] == SIGNED:
            s = _parse_signed(k, rec)
            if isinstance(s, str):
                report.bad(k, s)
            else:
                found.append(s)
            continue
        run = rec.get("run")
        if isinstance(run, str):
            last_of_run[run] = k
            first_of_run.setdefault(run, k)
            operator = rec.get("operator")
            if isinstance(operator, str) and run not in operator_of_run:
                operator_of_run[run] = (operator, k)
    if not found and not report.problems:
        report.bad(None, f"no signed line: none of the {n} lines of {path} is signed, so nothing vouches for them")
        return
    _check_signatures(found, [verifier.result(s) for s in found], verifier.signers, report)
    _check_coverage(found, n, first_of_run, last_of_run, operator_of_run, report)
    if ledger is not None:
        _check_ledger(path, ledger, found, hashes, report)
    report.summary = f"{n} lines, chain intact, {len(found)} run(s) signed"


def _check_signatures(
    found: Sequence[_Signed], verified: Sequence[signing.Verified | None], signers: str, report: Report
) -> None:
    last_good = 0  # the last signed line whose signature holds: the lines up to it are as signed
    for s, ok in zip(found, verified, strict=True):
        if ok is not None and ok.fingerprint == s.fingerprint:
            report.signed.append(f"run {s.run}: signed by {s.signer} ({s.fingerprint}) at line {s.line}")
            last_good = s.line
            continue
        k = s.line
        if ok is not None:
            report.bad(
                k, f"line {k}: run {s.run}'s signed line names key {s.fingerprint} but {ok.fingerprint} signed it"
            )
            continue
        why = signing.why_not(s.message, s.signature, signers, s.signer, signing.AUDIT)
        if why == "signed with a key that is not in the signers file":
            report.bad(k, f"line {k}: run {s.run} is signed by {s.signer} ({s.fingerprint}), a key not in {signers}")
        elif why.startswith("signed with "):
            report.bad(k, f"line {k}: run {s.run} names signer {s.signer} but was {why}")
        else:
            span = f"line {last_good}" if last_good == k - 1 else f"a line from {last_good or 1} to {k - 1}"
            report.bad(
                k,
                f"line {k}: run {s.run}'s signature (by {s.signer}) does not match the chain head at line {k - 1}: "
                f"{span} was changed and the chain recomputed after it was signed",
            )


def _check_coverage(
    found: Sequence[_Signed],
    n: int,
    first_of_run: dict[str, int],
    last_of_run: dict[str, int],
    operator_of_run: dict[str, tuple[str, int]],
    report: Report,
) -> None:
    signed_at: dict[str, _Signed] = {}
    for s in found:
        if s.run in signed_at:
            report.bad(
                s.line, f"line {s.line}: run {s.run} is signed again (it was signed at line {signed_at[s.run].line})"
            )
            continue
        signed_at[s.run] = s
        operator = operator_of_run.get(s.run)
        if operator is not None and operator[0] != s.signer:
            report.bad(
                s.line,
                f"line {s.line}: run {s.run} is signed by {s.signer} but its lines name operator {operator[0]} "
                f"(line {operator[1]})",
            )
    for run, last in last_of_run.items():
        sealed = signed_at.get(run)
        if sealed is None:
            first = first_of_run[run]
            report.bad(first, f"line {first}: run {run} is not signed: no signed line of that run follows its lines")
        elif last > sealed.line:
            report.bad(last, f"line {last}: run {run} wrote line {last} after its signature at line {sealed.line}")
    end = max(s.line for s in found) if found else 0
    if found and end < n:
        tail = f"line {n} follows" if end + 1 == n else f"lines {end + 1} to {n} follow"
        report.bad(end + 1, f"line {end + 1}: {tail} the last signed line ({end}): no signature covers them")


def _check_ledger(
    path: Path, ledger_path: str, found: Sequence[_Signed], hashes: Sequence[str], report: Report
) -> None:
    n = len(hashes)
    log_id = hashes[0] if hashes else ""
    heads = Ledger(ledger_path, create=False).signed_heads(log_id=log_id, log_path=os.path.abspath(path))
    known: set[tuple[int, str]] = set()
    for h in heads:
        known.add((h.line, h.sha256))
        who = f"run {h.run_id}'s signed head (by {h.signer} at {h.at:%Y-%m-%d %H:%M:%SZ})"
        if h.log_id != log_id:
            report.bad(1, f"line 1: the ledger remembers another log at {h.log_path}, with {who} at line {h.line}: "
                       "this log was replaced")  # fmt: skip
        elif h.line > n:
            report.bad(
                n + 1,
                f"line {n + 1}: the log ends at line {n} but the ledger remembers {who} at line {h.line}: "
                "the log was cut or rolled back to an older copy",
            )
        elif hashes[h.line - 1] != h.sha256:
            report.bad(h.line, f"line {h.line} is not {who} that the ledger remembers there: the log was replaced")
    for s in found:
        if (s.line, hashes[s.line - 1]) not in known:
            report.bad(s.line, f"line {s.line}: run {s.run}'s signed head is not in the ledger {ledger_path}")


def audit_verify_main(path: str, signers: str | None = None, ledger: str | None = None) -> int:
    """``pytest-sop audit verify PATH [--signers FILE] [--ledger PATH]``: 0 when everything holds, else 1."""
    from .audit import audit_main
    from .errors import SopError

    if signers is None:
        if ledger is not None:
            print("FAILED: --ledger checks signed heads: give the signers file too (--signers FILE)")
            return 1
        return audit_main(path)
    try:
        report = check_signed(path, signers, ledger)
    except (SopError, OSError) as e:
        print(f"FAILED: {e}")
        return 1
    for line in report.signed:
        print(line)
    if report.ok:
        print(f"OK: {report.summary}")
        return 0
    for at, reason in report.problems:
        where = f"line {at}: " if at is not None and not reason.startswith(f"line {at}") else ""
        print(f"FAILED: {where}{reason}")
    return 1
