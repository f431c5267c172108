"""Whether a paused step's decision is in: an approval at an ``approve`` checkpoint, or a ``handoff`` done.

Both are decisions in the approvals file (a handoff's checkpoint is ``handoff:NAME``) and count by
the same rules: signed by their author when signed (always, with ``require_signatures``), on the
SOP file as it is now. An approval also needs four eyes and ``may_approve`` for the step's role;
a handoff needs its author to hold the role, and to have been done after the case paused there,
since it is something a person did on the held device.

Used by the steps themselves (runner) and by ``--sop-resume`` to collect only cases that can go on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from . import holds
from .approvals import Decision, Judgement, judge, signature_problem, sop_problem
from .model import Policy
from .policy import may_approve, roles_of
from .signing import Verified

HANDOFF_PREFIX = "handoff:"


def handoff_checkpoint(name: str) -> str:
    """The checkpoint a handoff's ``done`` is recorded at in the approvals file."""
    return HANDOFF_PREFIX + name


def holds_role(policy: Policy | None, operator: str, role: str) -> bool:
    return policy is not None and any(r.name == role for r in roles_of(policy, operator))


@dataclass
class Verdict:
    """A judgement, and who signed each decision that was looked at."""

    judged: Judgement | None  # None: no approvals file
    signed_by: dict[Decision, Verified | None] = field(default_factory=dict)

    @property
    def decision(self) -> Decision | None:
        return self.judged.counted if self.judged else None

    def reason(self) -> str:
        return self.judged.reason() if self.judged else ""


def _judge(
    policy: Policy | None, path: str | None, sop_id: str, sop_file: str, checkpoint: str, case_id: str,
    rule: Callable[[Decision], str | None],
) -> Verdict:  # fmt: skip
    files = {sop_id: os.path.abspath(sop_file)}
    signers = policy.signers if policy else None
    required = bool(policy and policy.require_signatures)
    verdict = Verdict(None)

    def why_not(d: Decision) -> str | None:
        problem = rule(d)
        if problem:
            return problem
        signer, problem = signature_problem(d, signers, required=required)
        verdict.signed_by[d] = signer
        return problem or sop_problem(d, files.get(d.sop))

    if path:
        verdict.judged = judge(path, tuple(files), checkpoint, case_id, why_not=why_not)
    return verdict


def approval(
    policy: Policy | None, operator: str, path: str | None, sop_id: str, sop_file: str, checkpoint: str, role: str,
    case_id: str,
) -> Verdict:  # fmt: skip
    """The decision at an ``approve`` checkpoint that counts for ``operator``'s run of the case, if any."""

    def rule(d: Decision) -> str | None:
        if not may_approve(policy, d.by, role):
            return f"{d.by} may not approve for role {role}"
        if d.by == operator:
            return f"{d.by} is the operator running the case"
        return None

    return _judge(policy, path, sop_id, sop_file, checkpoint, case_id, rule)


def handoff(
    policy: Policy | None, path: str | None, sop_id: str, sop_file: str, name: str, role: str, case_id: str,
    since: str | None,
) -> Verdict:  # fmt: skip
    """The ``done`` of a handoff that counts: by a holder of ``role``, at or after ``since`` (the pause).

    Without ``since`` (the case reaches the handoff now) nothing counts: the person acts on the
    device while the case holds it.
    """

    def rule(d: Decision) -> str | None:
        if not holds_role(policy, d.by, role):
            return f"{d.by} does not hold role {role}"
        if since is None or not _after(d.at, since):
            return "done before the case paused there"
        return None

    if since is None:
        return Verdict(None)
    return _judge(policy, path, sop_id, sop_file, handoff_checkpoint(name), case_id, rule)


def _after(at: str, since: str) -> bool:
    """``at`` is at or after ``since`` (times, not strings: a stamp to the second and one to the
    millisecond compare right); a time that cannot be read is not after anything."""
    try:
        return holds.parse_stamp(at) >= holds.parse_stamp(since)
    except (TypeError, ValueError):
        return False
