"""``pytest-sop handoff list|done|release``: the paused cases of a suite, and what people do about them.

- ``list`` shows each paused case: SOP, case, device, account, what it waits for, since when,
  until when its hold lasts.
- ``done SOP [--case ID] --by NAME`` records that a person did the handoff a case waits at: only
  someone who holds the handoff's role, signed like an approval when the policy requires
  signatures (a decision at checkpoint ``handoff:NAME`` in the approvals file, SOP sha256
  included). ``pytest --sop --sop-resume`` then continues the case.
- ``release SOP [--case ID] --by NAME`` ends a pause: the hold on its device and account is
  released and its record removed; the case starts from the beginning next time. The release is
  a line in the pausing run's audit log, as a run of its own, sealed with ``--key`` (needed when
  the policy requires signatures).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import uuid
from typing import TYPE_CHECKING, Any

from . import holds
from .errors import SopError
from .holds import PauseRecord
from .model import SuiteConfig

if TYPE_CHECKING:
    from .signing import Verified


class Refused(Exception):
    """Nothing written: the message says why (exit 2)."""


def _suite(args: argparse.Namespace) -> tuple[str, SuiteConfig]:
    """The suite's folder and config: ``--config``, else the nearest sop.yaml at or above here."""
    from .errors import SopInvalid
    from .starter import find_config
    from .suiteconfig import load_config

    path = args.config or find_config(".")
    if path is None or not os.path.isfile(path):
        raise Refused(f"no suite config {path or 'sop.yaml'} here or above (give --config PATH)")
    try:
        config = load_config(path)
    except SopInvalid as e:
        raise Refused(f"invalid suite config:\n{e}") from None
    return os.path.dirname(os.path.abspath(path)), config


def _chosen(folder: str, sop: str, case: str | None, kind: str | None = None) -> list[PauseRecord]:
    found = [r for r in holds.records(folder) if holds.matches(r, sop, case)]
    if kind is not None:
        found = [r for r in found if r.waiting.kind == kind]
    if not found:
        what = f" at a {kind}" if kind else ""
        which = f" (case {case})" if case else ""
        raise Refused(f"no case of SOP {sop!r}{which} is paused{what} (see pytest-sop handoff list)")
    return found


def as_json(record: PauseRecord) -> dict[str, Any]:
    w = record.waiting
    return {
        "sop": record.sop, "case": record.case_id, "nodeid": record.case, "device": record.device,
        "account": record.account, "waiting_for": w.describe(), "kind": w.kind, "name": w.name, "role": w.role,
        "note": w.note, "since": record.since, "expires": record.expires,
        "state": "expired" if record.expired() else "held", "operator": record.operator, "run_id": record.run_id,
        "hold": record.hold_id, "vars": sorted(record.vars),
    }  # fmt: skip


def cmd_list(args: argparse.Namespace) -> int:
    try:
        folder, _ = _suite(args)
    except Refused as e:
        print(f"pytest-sop handoff list: {e}", file=sys.stderr)
        return 2
    rows = [as_json(r) for r in holds.records(folder)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no paused cases")
        return 0
    header = ("SOP", "CASE", "DEVICE", "ACCOUNT", "WAITING FOR", "SINCE", "UNTIL", "STATE")
    lines = [header] + [
        (r["sop"], r["case"], r["device"], r["account"] or "-", r["waiting_for"], r["since"], r["expires"], r["state"])
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    for r in rows:
        if r["note"]:
            print(f"{r['sop']} [{r['case']}]: {r['note']}")
    return 0


def _key(args: argparse.Namespace, config: SuiteConfig) -> tuple[str, Verified] | None:
    """The signing key that proves ``--by``, and who it proves (None: unsigned, when the policy allows it)."""
    from .signing import SigningError, proves

    policy = config.policy
    key = args.key or os.environ.get("SOP_SIGNING_KEY") or None
    if key is None:
        if policy is not None and policy.require_signatures:
            raise Refused("policy.require_signatures is true: sign with --key PATH (or SOP_SIGNING_KEY)")
        return None
    key = os.path.abspath(os.path.expanduser(key))
    if policy is None or policy.signers is None:
        raise Refused(f"a signing key was given ({key}) but the suite config has no policy.signers to check it")
    try:
        return key, proves(key, args.by, policy.signers)
    except SigningError as e:
        raise Refused(str(e)) from None


def cmd_done(args: argparse.Namespace) -> int:
    from .approvals import file_sha256, record_decision
    from .decisions import handoff_checkpoint, holds_role
    from .signing import SigningError

    try:
        folder, config = _suite(args)
        chosen = _chosen(folder, args.sop, args.case, "handoff")
        for r in chosen:
            if not holds_role(config.policy, args.by, r.waiting.role):
                raise Refused(
                    f"{args.by!r} may not mark handoff {r.waiting.name!r} done: the policy gives them no role "
                    f"{r.waiting.role!r}"
                )
        signed = _key(args, config)
        key = signed[0] if signed else None
        done = []
        for r in chosen:
            sop_file = r.sop_file if r.waiting.sop == r.sop else _sop_file(folder, config, r.waiting.sop)
            done.append(
                record_decision(
                    args.approvals,
                    r.waiting.sop,
                    handoff_checkpoint(r.waiting.name),
                    by=args.by,
                    approve=True,
                    note=args.note or "",
                    case=r.case_id,
                    sop_sha256=file_sha256(sop_file),
                    key=key,
                )
            )
    except (Refused, SigningError, OSError) as e:
        print(f"pytest-sop handoff done: refused: {e}", file=sys.stderr)
        return 2
    for d in done:
        how = f"signed with {d.fingerprint}" if d.signature else "not signed"
        print(f"done: {d.sop} / {d.checkpoint} (case {d.case}) by {d.by} at {d.at}, {how} -> {args.approvals}")
    print("continue it with: pytest --sop --sop-resume")
    return 0


def _sop_file(folder: str, config: SuiteConfig, sop_id: str) -> str:
    """The file of a SOP a paused case runs (its handoff is in a ``run:`` sub-SOP)."""
    from .actions import build_registry
    from .suite import Suite

    sop = Suite(config, build_registry(), folder).get_sop(sop_id)
    if sop is None:
        raise Refused(f"SOP {sop_id!r} is no longer in the suite")
    return os.path.abspath(sop.path)


def _audit_release(record: PauseRecord, by: str, signed: tuple[str, Verified] | None) -> str | None:
    """The release as a line in the pausing run's audit log, a run of its own (sealed when ``signed``),
    so the log says who ended the pause; returns that log, or None when it is gone (say, a cleaned
    alluredir)."""
    from .audit import AuditLog
    from .masking import mask
    from .seal import seal

    path = record.evidence.get("audit")
    if not path or not os.path.isfile(path):
        return None
    run = uuid.uuid4().hex
    AuditLog(path, mask=mask).append(
        "hold_released", case=record.case, sop=record.sop, device=record.device, account=record.account,
        run=run, operator=by, host=socket.gethostname(), pid=str(os.getpid()), worker="",
        hold=record.hold_id, paused_run=record.run_id, reason="handoff release",
    )  # fmt: skip
    if signed is not None:
        seal(path, signed[0], signed[1], run, record.evidence.get("ledger"))
    return str(path)


def cmd_release(args: argparse.Namespace) -> int:
    from .lease_backend import lease_target
    from .masking import mask
    from .resume import end_hold

    try:
        folder, config = _suite(args)
        chosen = _chosen(folder, args.sop, args.case)
        signed = _key(args, config)
        # A hold on a lease server is released there: its DSN from --leases or sop.yaml (a pause
        # record never keeps one); holds in lock files are released in their run's lock folder.
        target = (
            lease_target(args.leases, "--leases", config.leases, "") if any(r.lease_server for r in chosen) else None
        )
        for r in chosen:
            end_hold(r, target)
            print(f"released: {r.sop} [{r.case_id}] on {r.device}" + (f" with {r.account}" if r.account else "")
                  + f", paused at {r.waiting.describe()} since {r.since}, by {args.by}")  # fmt: skip
            logged = _audit_release(r, args.by, signed)
            print(f"  recorded in {logged}" if logged else "  not in an audit log: the pausing run's log is gone")
    except (Refused, SopError, OSError) as e:
        print(f"pytest-sop handoff release: refused: {mask(str(e))}", file=sys.stderr)
        return 2
    return 0


def add_parser(sub: Any) -> None:
    handoff = sub.add_parser("handoff", help="paused cases: list them, mark a handoff done, release a hold")
    hs = handoff.add_subparsers(dest="handoff_command", required=True)
    listing = hs.add_parser("list", help="paused cases, what they wait for, and their holds")
    listing.add_argument("--json", action="store_true", help="a JSON list of objects")
    listing.set_defaults(func=cmd_list)
    done = hs.add_parser("done", help="record that a person did the handoff a case waits at")
    done.add_argument("sop", help="the SOP id")
    done.add_argument("--case", help="only this case (e.g. cat-publisher-1); default: every paused case of the SOP")
    done.add_argument("--by", required=True, help="who did it (an operator with the handoff's role)")
    done.add_argument("--note", help="what was done")
    done.add_argument("--approvals", default="sop-approvals.yaml", help="approvals file (default: %(default)s)")
    done.add_argument("--key", help="sign it with this SSH key; env SOP_SIGNING_KEY")
    done.set_defaults(func=cmd_done)
    release = hs.add_parser("release", help="end a pause: free its device and account")
    release.add_argument("sop", help="the SOP id")
    release.add_argument("--case", help="only this case; default: every paused case of the SOP")
    release.add_argument("--by", required=True, help="who releases it")
    release.add_argument("--key", help="sign the release with this SSH key; env SOP_SIGNING_KEY")
    release.add_argument(
        "--leases", help="the PostgreSQL DSN of the lease server a hold is on (default: sop.yaml's leases)"
    )
    release.set_defaults(func=cmd_release)
    for p in (listing, done, release):
        p.add_argument("--config", help="suite config (default: the nearest sop.yaml)")
