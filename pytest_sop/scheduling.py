"""Which case an xdist worker runs next, so that it never waits for a device or account another
worker holds while some other case could run (``pytest --sop -n N``, xdist's ``--dist load``).

xdist's load scheduler hands each worker a few cases in collection order. A case whose device or
account another worker holds then waits for its lease with nothing leased: its device lane stays
idle. :class:`LeaseScheduling` knows each case's acceptable (device, account) pairs (the same
``pairs_for`` and ``allowed_pairs`` the worker's lease uses) and what every worker holds or will
hold, and sends a worker one case at a time: one that can run beside the cases of the other
workers, the most constrained first (the cases that can run anywhere are left to fill the gaps at
the end). When nothing can, it sends the case that should become runnable soonest; it never holds
a worker back. Python tests and other items are sent as they come.

An xdist worker starts a case only once it knows the case after it (pytest tears down by the next
item), so a worker is kept at two cases: the one it runs and the next. The controller learns what
each case leased from its setup report (the ``sop_lease`` user property) and until then predicts
it: a worker keeps its last pair for a case that accepts it (the lease is held on from case to
case), else takes the first pair free, its last device first.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pytest
from xdist.remote import Producer  # type: ignore[import-untyped]  # xdist ships no type hints
from xdist.scheduler import LoadScheduling  # type: ignore[import-untyped]
from xdist.workermanage import WorkerController  # type: ignore[import-untyped]

from .config import settings_key
from .leasing import pairs_for
from .plugin import LEASE_PROPERTY
from .policy import allowed_pairs, check_sop

#: Cases a worker holds: the one it runs and the next (xdist starts a case only once it has the next).
KEEP = 2
#: How many pending items a choice looks at: enough for any suite's contention, bounded for 10,000 cases.
WINDOW = 200

Ids = tuple[str, str | None]  # (device id, account id or None)


def make_scheduler(config: pytest.Config, log: Producer) -> LeaseScheduling | None:
    """The lease-aware scheduler for ``pytest --sop`` with xdist's ``--dist load``; None otherwise."""
    settings = config.stash[settings_key]
    if not settings.enabled or settings.dry_run or config.getvalue("dist") != "load":
        return None
    scheduler = LeaseScheduling(config, log)
    config.pluginmanager.register(scheduler, "sop-scheduler")  # to see the workers' setup reports
    return scheduler


class LeaseScheduling(LoadScheduling):  # type: ignore[misc]
    def __init__(self, config: pytest.Config, log: Producer | None = None) -> None:
        super().__init__(config, log)
        self._pairs: dict[int, tuple[Ids, ...] | None] = {}  # item -> acceptable pairs; None: leases nothing
        self._holds: dict[int, Ids | None] = {}  # item sent to a worker -> what it holds (leased, else predicted)
        self._last: dict[WorkerController, Ids | None] = {}  # what a worker held last: it holds that on
        self._index: dict[str, int] | None = None
        self._any_sop: bool | None = None

    # -- what xdist calls ------------------------------------------------------------------

    def _send_tests(self, node: WorkerController, num: int) -> None:
        if not self._has_sop_cases():
            super()._send_tests(node, num)  # no SOP case in this run: xdist's chunks
            return
        for _ in range(min(num, KEEP - len(self.node2pending[node]))):
            if not self.pending:
                return
            index, holds = self._choose(node)
            self.pending.remove(index)
            self.node2pending[node].append(index)
            self._holds[index] = holds
            if holds is not None:  # an item that leases nothing leaves the worker's last pair as it was
                self._last[node] = holds
            node.send_runtest_some([index])

    def mark_test_complete(self, node: WorkerController, item_index: int, duration: float = 0) -> None:
        self._holds.pop(item_index, None)
        super().mark_test_complete(node, item_index, duration)

    def remove_node(self, node: WorkerController) -> str | None:
        for index in self.node2pending.get(node, ()):
            self._holds.pop(index, None)  # a dead worker's leases are freed by the kernel
        self._last.pop(node, None)
        crashed: str | None = super().remove_node(node)
        return crashed

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """A case's setup report on the controller: what it really leased (or that it leased nothing)."""
        if report.when != "setup" or self.collection is None:
            return
        index = self._index_of(report.nodeid)
        if index is None or index not in self._holds:
            return
        leased = next((v for k, v in report.user_properties if k == LEASE_PROPERTY), None)
        holds: Ids | None = None
        if isinstance(leased, dict) and isinstance(leased.get("device"), str):
            account = leased.get("account")
            holds = (leased["device"], account if isinstance(account, str) else None)
        self._holds[index] = holds
        node = getattr(report, "node", None)
        pending = self.node2pending.get(node) if node is not None else None
        if holds is not None and node is not None and pending and pending[-1] == index:
            self._last[node] = holds

    # -- choosing --------------------------------------------------------------------------

    def _choose(self, node: WorkerController) -> tuple[int, Ids | None]:
        """The pending item to send ``node`` next, and the pair it will hold."""
        busy_devices: dict[str, int] = {}  # held by another worker's case -> how soon it lets go (0: running)
        busy_accounts: dict[str, int] = {}
        for other, indices in self.node2pending.items():
            if other is node:
                continue
            for position, index in enumerate(indices):
                holds = self._holds.get(index)
                if holds is not None:
                    device, account = holds
                    busy_devices[device] = max(busy_devices.get(device, 0), position)
                    if account is not None:
                        busy_accounts[account] = max(busy_accounts.get(account, 0), position)
        last = self._last.get(node)
        best: tuple[tuple[int, int, int], int, Ids | None] | None = None
        for position, index in enumerate(self.pending[:WINDOW]):
            pairs = self._pairs_of(index)
            if pairs is None:  # a Python test, or a case that will not lease: sent in its turn
                rank, holds = (0, 0, position), None
            else:
                ordered = _worker_order(pairs, last)
                free = [p for p in ordered if p[0] not in busy_devices and (p[1] is None or p[1] not in busy_accounts)]
                if free:
                    # The most constrained first: cases that can run anywhere fill the gaps at the end.
                    rank, holds = (0, len(pairs), position), free[0]
                else:
                    # Nothing free: the case whose pair is let go soonest (held by a running case, not a queued one).
                    def soon(p: Ids) -> int:
                        account = busy_accounts.get(p[1], -1) if p[1] is not None else -1
                        return max(busy_devices.get(p[0], -1), account)

                    rank, holds = (1, min(soon(p) for p in ordered), position), ordered[0]
            if best is None or rank < best[0]:
                best = (rank, index, holds)
                if rank[:2] == (0, 0):
                    break  # nothing ranks before an item sent in its turn
        assert best is not None  # self.pending is not empty
        return best[1], best[2]

    def _has_sop_cases(self) -> bool:
        if self._any_sop is None:
            if self.collection is None:
                return False
            self._any_sop = any(self._pairs_of(i) is not None for i in range(len(self.collection)))
        return self._any_sop

    def _index_of(self, nodeid: str) -> int | None:
        if self._index is None:
            self._index = {nodeid: i for i, nodeid in enumerate(self.collection or ())}
        return self._index.get(nodeid)

    def _pairs_of(self, index: int) -> tuple[Ids, ...] | None:
        if index not in self._pairs:
            assert self.collection is not None
            self._pairs[index] = case_pairs(self.config, self.collection[index])
        return self._pairs[index]


def _worker_order(pairs: Sequence[Ids], last: Ids | None) -> list[Ids]:
    """The pairs in the order a worker tries them: the pair it holds on (when the case accepts it),
    then its last device's (``take_lease``'s ``prefer_device``), then the rest as listed."""
    if last is None:
        return list(pairs)
    ordered = sorted(pairs, key=lambda p: p[0] != last[0])
    if last in ordered:
        ordered.remove(last)
        ordered.insert(0, last)
    return ordered


def case_pairs(config: pytest.Config, nodeid: str) -> tuple[Ids, ...] | None:
    """The (device, account) ids the case ``nodeid`` may lease, as its worker would choose from them;
    None for an item that is no SOP case, or a case the policy skips before any lease."""
    from .collect import get_suite

    path, sep, name = nodeid.partition("::")
    suite = get_suite(config)
    if not sep or not suite.matches(os.path.basename(path)):
        return None
    try:
        result = suite.result(os.path.join(str(config.rootpath), path))
    except (OSError, ValueError):
        return None
    case = next((c for c in result.cases if c.name == name), None)
    if case is None:
        return None
    settings: Any = config.stash[settings_key]
    policy = suite.config.policy
    roles, reason = check_sop(policy, settings.operator, case.sop, suite.get_sop)
    if reason:
        return None
    try:
        pairs = pairs_for(suite.config, case.sop.device, case.sop.account, account_id=case.account_id)
    except Exception:  # a requirement no device can meet: the worker reports it, the case holds nothing
        return None
    allowed = allowed_pairs(policy, roles, pairs)
    return tuple((d.id, a.id if a else None) for d, a in allowed) or None
