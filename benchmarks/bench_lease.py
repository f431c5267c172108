"""Benchmark: an uncontended lease + release, against a bare filelock acquire + release.

The claim under test: taking and releasing an uncontended lease of a device and an account
(``LeasePool.acquire`` + ``Lease.release``: two ``flock``s on lock files opened
``O_NOFOLLOW``, a holder record written into each lock file and cleared) takes at most 2 ms, median per operation.

Each round times N operations one by one (``time.perf_counter_ns``) in this process, for
four sides in turn, in a fresh lock folder under the temp dir:

- ``filelock (reused)``: one ``FileLock`` instance, ``acquire(blocking=False)`` + ``release()``;
- ``filelock (new)``: a new ``FileLock`` per operation (open, flock, unlock, close: the
  same system calls a lease makes for each of its locks);
- ``lease: device``: a lease of one device;
- ``lease: device + account``: a lease of a device and an account (the claim).

The median of each round is taken, and the verdict uses the median of the round medians.

Usage::

    python benchmarks/bench_lease.py [--iterations 2000] [--runs 5] [--write-docs]

Exit status: 0 if the device + account lease median is <= 2 ms, 1 if it is above.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import machine, write_section
from filelock import FileLock

from pytest_sop.leasing import LeasePool
from pytest_sop.model import Account, Device, Secret, SourcePos

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DOCS = REPO / "docs" / "benchmarks.md"
SECTION_RE = re.compile(r"^## Leases\b.*$", re.MULTILINE)
LIMIT_MS = 2.0
CLAIM = "lease: device + account"


@dataclass
class Side:
    name: str
    op: Callable[[], None]
    medians_us: list[float]
    means_us: list[float]


def time_ops(op: Callable[[], None], n: int) -> tuple[float, float]:
    """Median and mean of ``n`` single operations, in microseconds."""
    samples = []
    clock = time.perf_counter_ns
    for _ in range(n):
        start = clock()
        op()
        samples.append(clock() - start)
    return statistics.median(samples) / 1000, statistics.fmean(samples) / 1000


def sides(lock_dir: Path) -> list[Side]:
    pos = SourcePos("sop.yaml", 1, 1)
    device = Device("pixel-7-a", "android", pos, tags=("phone",))
    account = Account(
        "publisher-1", pos, role="publisher", devices=("pixel-7-a",), fields={"password": Secret("BENCH_PASSWORD")}
    )
    pool = LeasePool(lock_dir, "bench-run", "bench", "gw0")
    reused = FileLock(lock_dir / "bare-reused.lock", thread_local=False, preserve_lock_file=True)
    bare = lock_dir / "bare-new.lock"

    def filelock_reused() -> None:
        reused.acquire(blocking=False)
        reused.release()

    def filelock_new() -> None:
        lock = FileLock(bare, thread_local=False, preserve_lock_file=True)
        lock.acquire(blocking=False)
        lock.release()

    def lease_device() -> None:
        pool.acquire([(device, None)], case="bench.sop.yaml::d", timeout=0, requirement="bench").release()

    def lease_pair() -> None:
        pool.acquire([(device, account)], case="bench.sop.yaml::da", timeout=0, requirement="bench").release()

    return [
        Side("filelock (reused)", filelock_reused, [], []),
        Side("filelock (new)", filelock_new, [], []),
        Side("lease: device", lease_device, [], []),
        Side(CLAIM, lease_pair, [], []),
    ]


def render_section(iterations: int, runs: int, warmup: int, results: list[Side], fs: str) -> str:
    claim = next(s for s in results if s.name == CLAIM)
    median_ms = statistics.median(claim.medians_us) / 1000
    verdict = "PASS" if median_ms <= LIMIT_MS else "FAIL"
    baseline = next(s for s in results if s.name == "filelock (new)")
    head = "| Side | " + " | ".join(f"Round {i + 1} (µs)" for i in range(runs)) + " | **Median (µs)** | Mean (µs) |"
    rule = "|:--|" + "--:|" * runs + "--:|--:|"
    rows = "\n".join(
        f"| {s.name} | "
        + " | ".join(f"{m:.1f}" for m in s.medians_us)
        + f" | **{statistics.median(s.medians_us):.1f}** | {statistics.median(s.means_us):.1f} |"
        for s in results
    )
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    ratio = statistics.median(claim.medians_us) / statistics.median(baseline.medians_us)
    return f"""## Leases: uncontended acquire + release

Claim: an uncontended lease of a device and an account (`LeasePool.acquire` +
`Lease.release`: two `flock`s taken in global order on lock files opened `O_NOFOLLOW`, a
holder record written into each lock file while held and cleared before unlocking) takes
at most {LIMIT_MS:g} ms, median per operation.

- Date: {today}
- Machine: {machine()}; lock folder on {fs}
- Rounds: {runs} measured (+{warmup} warm-up, not counted), each timing {iterations:,} operations
  one by one per side with `time.perf_counter_ns`, sides in turn within a round; one process,
  one fresh lock folder. The table gives each round's median per operation.
- Baselines in the same run: a bare `FileLock` `acquire(blocking=False)` + `release()`, reusing
  one instance and with a new instance per operation (a lease opens its own descriptor per
  lock it takes, so that two holds in one process still exclude each other in the kernel).

{head}
{rule}
{rows}

Verdict: **{verdict}**: median device + account lease = {median_ms:.3f} ms (limit {LIMIT_MS:.3f} ms),
{ratio:.1f}x a bare new-instance `FileLock` acquire + release (a lease takes two locks and
writes and clears two holder records).

Reproduce:

```sh
python benchmarks/bench_lease.py --iterations {iterations} --runs {runs} --write-docs
```
"""


def filesystem(path: Path) -> str:
    """The mount's filesystem type (Linux), for the record."""
    best, kind = "", "unknown filesystem"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                parts = line.split()
                if len(parts) >= 3 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                    best, kind = parts[1], f"{parts[2]} (`{parts[1]}`)"
    except OSError:
        pass
    return kind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=2000, help="operations per side per round (default 2000)")
    parser.add_argument("--runs", type=int, default=5, help="measured rounds, at least 3 (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (default 1)")
    parser.add_argument("--write-docs", action="store_true", help="update this benchmark's section of the docs file")
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS, help=f"docs file (default {DEFAULT_DOCS})")
    args = parser.parse_args(argv)
    if args.runs < 3:
        parser.error("--runs must be at least 3")
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")

    with tempfile.TemporaryDirectory(prefix="bench-lease-") as tmp:
        lock_dir = Path(tmp) / "locks"
        results = sides(lock_dir)
        fs = filesystem(lock_dir.resolve())
        for round_ in range(args.warmup + args.runs):
            measured = round_ >= args.warmup
            for side in results:
                median_us, mean_us = time_ops(side.op, args.iterations)
                if measured:
                    side.medians_us.append(median_us)
                    side.means_us.append(mean_us)
            if measured:
                line = ", ".join(f"{s.name} {s.medians_us[-1]:.1f} µs" for s in results)
                print(f"round {round_ - args.warmup + 1}: {line}")
        leftovers = sorted(p.name for p in lock_dir.iterdir() if not p.name.endswith(".lock"))
        if leftovers:
            print(f"benchmark broken: files left in the lock folder: {leftovers}", file=sys.stderr)
            return 2

    print()
    print(f"machine: {machine()}; lock folder on {fs}")
    for side in results:
        print(f"{side.name:>26}: median {statistics.median(side.medians_us):8.1f} µs per acquire + release")
    claim = next(s for s in results if s.name == CLAIM)
    median_ms = statistics.median(claim.medians_us) / 1000
    ok = median_ms <= LIMIT_MS
    verdict = "PASS" if ok else "FAIL"
    print(f"VERDICT: {verdict}: device + account lease median {median_ms:.3f} ms (limit {LIMIT_MS} ms)")
    if args.write_docs:
        write_section(args.docs, render_section(args.iterations, args.runs, args.warmup, results, fs), SECTION_RE)
        print(f"wrote {args.docs}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
