"""The approvals file: decisions people took at checkpoints, and the checkpoints still waiting.

```yaml
decisions:
  - {sop: publish-post, checkpoint: caption-ok, case: cat-publisher-1, decision: approved,
     by: alice, at: "2026-11-25T10:00:00Z", note: Caption checked}
pending:
  - {sop: publish-post, checkpoint: caption-ok, case: cat-publisher-1, operator: bob, since: ...}
```
Writers hold a file lock and replace the file atomically, so runs and people can add to it
at the same time without losing a line.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock
import yaml

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


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


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
            raise SopError(f"{path}: decision {i} is not {{sop, checkpoint, decision, by, at, note, case}}") from None
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


def record_decision(
    path: str | os.PathLike[str], sop: str, checkpoint: str, *, by: str, approve: bool, note: str = "",
    case: str | None = None,
) -> Decision:  # fmt: skip
    decision = Decision(sop, checkpoint, APPROVED if approve else REJECTED, by, _now(), note, case)
    with _editing(path) as data:
        data["decisions"].append({k: v for k, v in decision.__dict__.items() if v is not None})
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


def find(
    path: str | os.PathLike[str], sop: str, checkpoint: str, case: str, *, usable: Callable[[Decision], bool]
) -> Decision | None:
    """The latest usable decision for this checkpoint: for this case, or for every case of the SOP."""
    found = [
        d for d in decisions(path)
        if d.sop == sop and d.checkpoint == checkpoint and d.case in (None, case) and usable(d)
    ]  # fmt: skip
    return found[-1] if found else None
