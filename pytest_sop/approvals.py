"""The approvals file: decisions people took at checkpoints, and the checkpoints still waiting.

```yaml
decisions:
  - {sop: publish-post, checkpoint: caption-ok, case: cat-publisher-1, decision: approved,
     by: alice, at: "2026-11-25T10:00:00Z", note: Caption checked,
     sop_sha256: 9f86d0..., fingerprint: "SHA256:...", signature: "-----BEGIN SSH SIGNATURE-----..."}
pending:
  - {sop: publish-post, checkpoint: caption-ok, case: cat-publisher-1, operator: bob, since: ...}
```
Writers hold a file lock and replace the file atomically, so runs and people can add to it
at the same time without losing a line.

The file itself is plain YAML anyone with write access can edit, so a decision proves nothing
by being there: a signed one carries its approver's SSH signature (namespace
``pytest-sop-approval``) over every field but the signature, the SOP file's sha256 included,
so editing any of them, or the SOP, breaks it. :func:`signature_problem` and
:func:`sop_problem` say why a decision does not count; :func:`judge` finds the one that does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock
import yaml

from . import signing
from .errors import SopError

APPROVED, REJECTED = "approved", "rejected"


@dataclass(frozen=True)
class Decision:
    sop: str
    checkpoint: str
    decision: str
    by: str
    at: str
    note: str = ""
    case: str | None = None
    sop_sha256: str | None = None  # the SOP file when the decision was taken
    fingerprint: str | None = None  # the signing key's SHA256:... (signed with the rest)
    signature: str | None = None  # armored SSH signature of signed_data()

    @property
    def signed(self) -> bool:
        return bool(self.signature and self.signature.strip())

    @property
    def word(self) -> str:
        return "approval" if self.decision == APPROVED else "rejection"

    def signed_data(self) -> bytes:
        """The canonical bytes a signature covers: every field but the signature, in a fixed form."""
        fields = {k: v for k, v in self.__dict__.items() if k != "signature"}
        return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def as_record(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read(path: str | os.PathLike[str]) -> dict[str, list[dict[str, Any]]]:
    p = Path(path)
    if not p.exists():
        return {"decisions": [], "pending": []}
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise SopError(f"{path}: not a valid approvals file: {e}") from None
    if not isinstance(data, dict):
        raise SopError(f"{path}: expected a mapping with 'decisions' and 'pending'")
    return {"decisions": list(data.get("decisions") or []), "pending": list(data.get("pending") or [])}


def decisions(path: str | os.PathLike[str]) -> list[Decision]:
    out = []
    for i, raw in enumerate(read(path)["decisions"], 1):
        try:
            fields: dict[str, Any] = {k: (str(v) if v is not None else None) for k, v in raw.items()}
            out.append(Decision(**fields))
        except TypeError:
            raise SopError(
                f"{path}: decision {i} is not {{sop, checkpoint, decision, by, at, note, case, "
                "sop_sha256, fingerprint, signature}"
            ) from None
    return out


@contextmanager
def _editing(path: str | os.PathLike[str]) -> Iterator[dict[str, list[dict[str, Any]]]]:
    p = Path(path)
    with filelock.FileLock(str(p) + ".lock", timeout=30):
        data = read(p)
        yield data
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        os.replace(tmp, p)


def file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def record_decision(
    path: str | os.PathLike[str], sop: str, checkpoint: str, *, by: str, approve: bool, note: str = "",
    case: str | None = None, sop_sha256: str | None = None, key: str | None = None,
) -> Decision:  # fmt: skip
    """Add a decision (signed with ``key`` when given) and drop the pending checkpoints it answers.

    :raises signing.SigningError: the key cannot sign; nothing is written then.
    """
    decision = Decision(sop, checkpoint, APPROVED if approve else REJECTED, by, _now(), note, case, sop_sha256)
    if key is not None:
        decision = Decision(**{**decision.__dict__, "fingerprint": signing.fingerprint(key)})
        signature = signing.sign(decision.signed_data(), key, signing.APPROVAL)
        decision = Decision(**{**decision.__dict__, "signature": signature})
    with _editing(path) as data:
        data["decisions"].append(decision.as_record())
        data["pending"] = [p for p in data["pending"] if not _waits_for(p, sop, checkpoint, case)]
    return decision


def _waits_for(pending: dict[str, Any], sop: str, checkpoint: str, case: str | None) -> bool:
    same = pending.get("sop") == sop and pending.get("checkpoint") == checkpoint
    return same and (case is None or pending.get("case") == case)


def record_pending(path: str | os.PathLike[str], sop: str, checkpoint: str, case: str, operator: str) -> None:
    with _editing(path) as data:
        if not any(_waits_for(p, sop, checkpoint, case) for p in data["pending"]):
            data["pending"].append(
                {"sop": sop, "checkpoint": checkpoint, "case": case, "operator": operator, "since": _now()}
            )


def signature_problem(
    d: Decision, signers: str | None, *, required: bool
) -> tuple[signing.Verified | None, str | None]:
    """Who signed ``d`` (None: unsigned), or why its signature does not count.

    Unsigned counts only when signatures are not required; a signature that is present and
    does not verify as ``d.by``'s over exactly these fields never counts.
    """
    if not d.signed:
        return None, ("not signed" if required else None)
    assert d.signature is not None
    if signers is None:
        return None, "signed, but the policy names no signers file to check it against"
    verified = signing.verify(d.signed_data(), d.signature, signers, d.by, signing.APPROVAL)
    if verified is None:
        return None, signing.why_not(d.signed_data(), d.signature, signers, d.by, signing.APPROVAL)
    return verified, None


def sop_problem(d: Decision, sop_file: str | None) -> str | None:
    """Why ``d`` no longer holds for its SOP file (changed since, gone), or None."""
    if d.sop_sha256 is None:
        return None  # taken before decisions recorded it (unsigned: as it always counted)
    if sop_file is None:
        return "SOP file not found"
    try:
        now = file_sha256(sop_file)
    except OSError as e:
        return f"SOP file {sop_file} cannot be read: {e.strerror}"
    return None if now == d.sop_sha256 else "SOP changed since"


@dataclass(frozen=True)
class Judgement:
    """The decision that counts (if any), and the newest one for the checkpoint that does not, and why."""

    counted: Decision | None
    passed_over: tuple[Decision, str] | None

    def reason(self) -> str:
        """``alice's approval not counted: SOP changed since``, or "" when nothing was passed over."""
        if self.passed_over is None:
            return ""
        d, why = self.passed_over
        return f"{d.by}'s {d.word} not counted: {why}"


def judge(
    path: str | os.PathLike[str], sops: Sequence[str], checkpoint: str, case: str, *,
    why_not: Callable[[Decision], str | None],
) -> Judgement:  # fmt: skip
    """Newest first, the first decision at ``checkpoint`` of one of ``sops`` that counts.

    A decision for another case never counts; ``why_not`` says why any other does not (None: it counts).
    """
    passed_over: tuple[Decision, str] | None = None
    for d in reversed(decisions(path)):
        if d.sop not in sops or d.checkpoint != checkpoint:
            continue
        why = f"for case {d.case}" if d.case not in (None, case) else why_not(d)
        if why is None:
            return Judgement(d, passed_over)
        if passed_over is None:
            passed_over = (d, why)
    return Judgement(None, passed_over)


def find(
    path: str | os.PathLike[str], sop: str, checkpoint: str, case: str, *, usable: Callable[[Decision], bool]
) -> Decision | None:
    """The latest usable decision for this checkpoint: for this case, or for every case of the SOP."""
    return judge(path, (sop,), checkpoint, case, why_not=lambda d: None if usable(d) else "not usable").counted
