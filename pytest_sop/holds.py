"""Holds and pause records: what a paused case keeps, and what it needs to go on.

A case that stops at an ``approve`` checkpoint without a decision, or at a ``handoff`` step, is
*paused*. Two things keep it:

- a :class:`Hold`, written into the holder records of its device's and account's leases
  (:mod:`leasing`): the lease mechanism itself treats a device or account under an unexpired
  hold as busy for every case but the paused one, even after the pausing process ended and its
  kernel lock went with it;
- a :class:`PauseRecord`, one JSON file under the suite's ``.sop/holds/`` folder (written
  atomically), with what the resume needs: where it stopped (a path of step indexes, into
  ``run:`` sub-SOPs too), its ``vars`` (never a secret), the SOP file's sha256, device,
  account, operator, run id, what it waits for, and where the evidence so far is.

The hold is the guarantee (nothing else may take the device); the record is the memory. A
hold without its record cannot be resumed, so it is released with the record
(``pytest-sop handoff release``) or when it expires (ini ``sop_hold_timeout``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import SopError

#: Default ini ``sop_hold_timeout``: how long a paused case keeps its device and account.
DEFAULT_HOLD_TIMEOUT = "24h"
HOLDS_FOLDER = os.path.join(".sop", "holds")
_PERIOD = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_period(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``24h`` or ``7d``; ValueError otherwise."""
    m = _PERIOD.fullmatch(str(text).strip())
    if m is None:
        raise ValueError(text)
    return float(m.group(1)) * _UNIT[m.group(2)]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def stamp(when: dt.datetime) -> str:
    """UTC, ISO 8601 to the millisecond with a ``Z``, as approvals' ``at``: a done given a moment after
    the pause must not look as if it came in the same second, before it."""
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_stamp(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Hold:
    """What a lease's holder record carries while its case is paused: kept past the pausing process."""

    hold_id: str
    case: str  # the paused case's node id
    suite: str  # the folder of the suite's sop.yaml (absolute): a hold is one suite's
    waiting_for: str  # in words: "approval caption-ok (role lead)", "handoff id-check (role lead)"
    since: str
    expires: str

    def expired(self, at: dt.datetime | None = None) -> bool:
        try:
            return parse_stamp(self.expires) <= (at or now())
        except ValueError:
            return True  # an unreadable expiry holds nothing

    def is_for(self, suite: str, case: str) -> bool:
        return (self.suite, self.case) == (suite, case)

    def describe(self) -> str:
        return (
            f"on hold {self.hold_id[:12]} for paused case {self.case}, waiting for {self.waiting_for} "
            f"(since {self.since}, until {self.expires}; see pytest-sop handoff list)"
        )

    @classmethod
    def from_json(cls, data: Any) -> Hold | None:
        if not isinstance(data, dict):
            return None
        try:
            values = {name: data[name] for name in cls.__dataclass_fields__}
        except KeyError:
            return None
        if not all(isinstance(v, str) for v in values.values()):
            return None
        return cls(**values)


@dataclass(frozen=True)
class Waiting:
    """What a paused case waits for: a decision at an ``approve`` checkpoint, or a ``handoff`` done."""

    kind: str  # "approval" | "handoff"
    name: str  # the checkpoint, or the handoff's name
    role: str
    sop: str  # the SOP whose step it is (a run: sub-SOP's id, when it is in one)
    note: str = ""

    def describe(self) -> str:
        return f"{self.kind} {self.name} (role {self.role})"


@dataclass(frozen=True)
class PauseRecord:
    """Everything a resume needs, as plain data: one JSON file per paused case."""

    hold_id: str
    suite: str
    sop: str
    case: str  # node id
    case_id: str  # the case id as `--case` takes it (``cat-publisher-1``); the SOP id when it has none
    sop_file: str  # absolute
    sop_sha256: str
    # Where it stopped: one level per step list, outermost first; each {"sop", "index", "kind"}.
    position: list[dict[str, Any]]
    waiting: Waiting
    vars: dict[str, str]
    withheld_vars: list[str]  # vars left out because their value holds a secret of the run
    device: str
    account: str | None
    operator: str
    run_id: str
    lock_dir: str
    since: str
    expires: str
    url: str | None = None  # the page a web case paused on
    evidence: dict[str, Any] = field(default_factory=dict)  # allure uuid/history id/alluredir, audit path
    # Where the hold is: None, lock files in ``lock_dir``; else the lease server, as
    # ``postgresql://user:***@host:port/db`` (never its DSN, which may hold a password).
    lease_server: str | None = None

    @property
    def hold(self) -> Hold:
        return Hold(self.hold_id, self.case, self.suite, self.waiting.describe(), self.since, self.expires)

    def expired(self) -> bool:
        return self.hold.expired()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], path: str) -> PauseRecord:
        try:
            fields = dict(data)
            fields["waiting"] = Waiting(**fields["waiting"])
            return cls(**fields)
        except (TypeError, KeyError) as e:
            raise SopError(f"{path}: not a pause record ({e})") from None


def holds_folder(suite: str) -> Path:
    return Path(suite) / HOLDS_FOLDER


def new_hold_id() -> str:
    return uuid.uuid4().hex


def record_path(suite: str, hold_id: str) -> Path:
    return holds_folder(suite) / f"{hold_id}.json"


def write_record(record: PauseRecord) -> Path:
    """Atomically: a reader sees the whole record or none."""
    path = record_path(record.suite, record.hold_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record.to_json(), indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_record(path: str | os.PathLike[str]) -> PauseRecord:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SopError(f"{path}: cannot read the pause record: {e}") from None
    if not isinstance(data, dict):
        raise SopError(f"{path}: not a pause record")
    return PauseRecord.from_json(data, str(path))


def records(suite: str) -> Iterator[PauseRecord]:
    """Every pause record of the suite, oldest first; unreadable files are skipped (a write in progress)."""
    folder = holds_folder(suite)
    if not folder.is_dir():
        return
    found = []
    for path in folder.glob("*.json"):
        try:
            found.append(read_record(path))
        except SopError:
            continue
    yield from sorted(found, key=lambda r: (r.since, r.case))


def drop_record(record: PauseRecord) -> None:
    with contextlib.suppress(FileNotFoundError):
        record_path(record.suite, record.hold_id).unlink()


def vars_to_keep(values: Mapping[str, str], mask: Any) -> tuple[dict[str, str], list[str]]:
    """The vars a pause may write down: any whose value shows a secret of the run is withheld."""
    kept, withheld = {}, []
    for name, value in values.items():
        if mask(value) != value:
            withheld.append(name)
        else:
            kept[name] = value
    return kept, withheld


def matches(record: PauseRecord, sop: str, case: str | None) -> bool:
    """Whether ``--case`` (a case id, or the node id) names this record of SOP ``sop``."""
    if record.sop != sop:
        return False
    return case is None or case in (record.case_id, record.case)
