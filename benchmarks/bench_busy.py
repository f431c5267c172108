"""Benchmark: how busy the example suite keeps its devices (issue 14).

Runs ``example_suite`` the way its README says (``pytest --sop -n auto --alluredir DIR``: one
xdist worker per device, the managed Appium, the Chromium demo phones) several times, and from
each run's records computes, per device:

- **busy** = the sum of the device's lease -> release intervals in the audit log (the whole case
  on the device: its session created, its steps, its release) over the span from the run's first
  lease to its last release. This is what the device timeline draws (a bar per case from its
  lease to its release) and what the goal is about;
- **steps only** = the sum of the device's cases' Allure ``stop - start`` (allure-pytest times the
  call: the steps, not the session's creation in setup) over the span of those times;
- **lease waits** = the seconds cases waited for a lease (``waited`` in the audit log's lease
  lines): a worker handed a case whose device or account another worker holds.

The goal (issue 14) is busy >= 90% (median of 5+ runs of the mean over the devices). What keeps a
device from it: lease waits, the gaps between a worker's cases, and the end of the run, when one
device has finished its cases and the other has not. The **packing bound** says how far the end
alone can go: this run's cases, each held as long as it was, placed on the devices the best way
their (device, account) pairs allow (two cases at once need two devices and two accounts), with no
gaps and no waits.

The plugin is measured as committed (``git archive`` of ``--plugin``, HEAD by default, first on
``PYTHONPATH``): edits under way in the work tree neither break a run nor go unrecorded.

Usage::

    python benchmarks/bench_busy.py [--runs 5] [--plugin HEAD|REF|worktree] [--write-docs]

Exit status: 0 if the median busy >= 90%, 1 if below, 2 if the benchmark broke.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from common import BenchBroken, appium_version, machine, snapshot_plugin, write_section

REPO = Path(__file__).resolve().parent.parent
SUITE = REPO / "example_suite"
DEFAULT_DOCS = REPO / "docs" / "benchmarks.md"
SECTION_TITLE = "## Device busy time: the example suite with -n auto"
SECTION_RE = re.compile(r"^## Device busy\b.*$", re.MULTILINE)
GOAL = 0.90


@dataclass
class Run:
    wall: float  # the whole pytest process, s
    span: float  # first lease -> last release (audit log), s
    held: dict[str, float]  # device -> busy, 0..1
    steps_span: float  # first case start -> last case stop (Allure), s
    steps: dict[str, float]  # device -> steps only, 0..1
    waited: float  # seconds cases waited for leases
    bound: float  # the packing bound, 0..1

    @property
    def busy(self) -> float:
        return statistics.mean(self.held.values())

    @property
    def busy_steps(self) -> float:
        return statistics.mean(self.steps.values())


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class Hold:
    case: str
    device: str
    account: str | None
    seconds: float


def holds_from(audit: Path) -> tuple[list[Hold], float, float]:
    """Each case's lease -> release, the span from the first lease to the last release, and the lease waits."""
    holds: list[Hold] = []
    open_: dict[str, tuple[float, str, str | None]] = {}
    first: float | None = None
    last: float | None = None
    waited = 0.0
    for line in audit.read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "lease":
            at = _ts(event["ts"])
            open_[event["case"]] = (at, event["device"], event.get("account"))
            first = at if first is None else min(first, at)
            waited += float(event.get("waited") or 0.0)
        elif event["event"] == "release" and event["case"] in open_:
            at = _ts(event["ts"])
            start, device, account = open_.pop(event["case"])
            holds.append(Hold(event["case"], device, account, at - start))
            last = at if last is None else max(last, at)
    if not holds or first is None or last is None:
        raise BenchBroken(f"{audit}: no lease -> release in the audit log")
    if open_:
        raise BenchBroken(f"{audit}: leases never released: {sorted(open_)}")
    return holds, last - first, waited


def packing_bound(holds: list[Hold], accepts: dict[str, set[str]]) -> float:
    """The best busy these cases allow: every way of placing them on the lanes (``accepts``: lane ->
    the cases that may run there), no gaps, no waits; busy = total / (lanes x the longest lane)."""
    lanes = sorted(accepts)
    options = [[i for i, lane in enumerate(lanes) if h.case in accepts[lane]] for h in holds]
    if any(not o for o in options):
        return float("nan")
    best = float("inf")
    for choice in itertools.product(*options):
        loads = [0.0] * len(lanes)
        for h, lane in zip(holds, choice, strict=True):
            loads[lane] += h.seconds
        best = min(best, max(loads))
    return sum(h.seconds for h in holds) / (len(lanes) * best)


# The example suite's lanes: publisher-2 may only use iphone-14, and every case needs a publisher, so
# while both phones run, iphone-14 works with publisher-2 and pixel-7 with publisher-1.
EXAMPLE_LANES = {"pixel-7": ("pixel-7", "publisher-1"), "iphone-14": ("iphone-14", "publisher-2")}


def busy_from(results: Path, pairs: dict[str, set[tuple[str, str | None]]] | None = None) -> Run:
    """A run's numbers from its alluredir (Allure results and ``sop-audit.jsonl``); ``pairs`` (case ->
    the pairs it accepts) for the packing bound."""
    holds, span, waited = holds_from(results / "sop-audit.jsonl")
    held: dict[str, float] = defaultdict(float)
    for h in holds:
        held[h.device] += h.seconds
    steps: dict[str, float] = defaultdict(float)
    starts, stops = [], []
    for path in results.glob("*-result.json"):
        data = json.loads(path.read_text())
        labels = {label["name"]: label["value"] for label in data.get("labels", [])}
        if "device" not in labels or "start" not in data:
            continue
        start, stop = data["start"] / 1000, data.get("stop", data["start"]) / 1000
        steps[labels["device"]] += stop - start
        starts.append(start)
        stops.append(stop)
    if not starts:
        raise BenchBroken(f"{results}: no Allure result names a device")
    steps_span = max(stops) - min(starts)
    bound = float("nan")
    if pairs is not None:
        accepts = {lane: {case for case, p in pairs.items() if pair in p} for lane, pair in EXAMPLE_LANES.items()}
        bound = packing_bound(holds, accepts)
    return Run(
        wall=0.0,
        span=span,
        held={d: t / span for d, t in held.items()},
        steps_span=steps_span,
        steps={d: t / steps_span for d, t in steps.items()},
        waited=waited,
        bound=bound,
    )


def example_pairs(plugin: Path | None) -> dict[str, set[tuple[str, str | None]]]:
    """case -> the (device, account) pairs it accepts, as the scheduler sees them (scheduling.case_pairs)."""
    code = """
import json, sys
import pytest
from pytest_sop.scheduling import case_pairs

class Grab:
    def pytest_collection_modifyitems(self, config, items):
        found = {i.nodeid: case_pairs(config, i.nodeid) for i in items}
        items[:] = []
        sys.stderr.write("PAIRS " + json.dumps(found) + "\\n")

pytest.main(["--sop", "-q", "-p", "no:cacheprovider", "--collect-only"], plugins=[Grab()])
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=SUITE, env=env_for(plugin), capture_output=True,
                          text=True, check=False)  # fmt: skip
    line = next((x for x in proc.stderr.splitlines() if x.startswith("PAIRS ")), None)
    if line is None:
        raise BenchBroken(f"cannot read the example suite's pairs:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    found = json.loads(line.removeprefix("PAIRS "))
    return {case: {(d, a) for d, a in pairs or ()} for case, pairs in found.items()}


def env_for(plugin: Path | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    if plugin is not None:  # ahead of the editable install's finder
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin), os.environ.get("PYTHONPATH")]))
    return env


def check_plugin(plugin: Path | None) -> None:
    """The pytest runs import the plugin from where this benchmark says."""
    code = "import pytest_sop, sys; sys.stdout.write(pytest_sop.__file__)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=SUITE, env=env_for(plugin), capture_output=True,
                          text=True, check=False)  # fmt: skip
    expected = (plugin or REPO).resolve()
    if proc.returncode != 0 or not Path(proc.stdout).resolve().is_relative_to(expected):
        raise BenchBroken(f"pytest_sop imports from {proc.stdout or proc.stderr!r}, not from {expected}")


def run_once(out: Path, plugin: Path | None, pairs: dict[str, set[tuple[str, str | None]]]) -> Run:
    # Its own lock folder: the host's is shared with every other run of the example suite on it, whose
    # leases would show here as waits that no scheduling of this run could avoid.
    cmd = [sys.executable, "-m", "pytest", "--sop", "-n", "auto", f"--alluredir={out}", "-q", "-p", "no:cacheprovider",
           f"-o=sop_lock_dir={out.parent / 'locks'}"]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=SUITE, env=env_for(plugin), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchBroken(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    run = busy_from(out, pairs)
    run.wall = wall
    return run


def pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def render_section(args: argparse.Namespace, runs: list[Run], versions: str, plugin: str) -> str:
    devices = sorted({d for r in runs for d in r.held})
    head = ["Run", "Wall (s)", "Span (s)"] + devices + ["**Busy**", "Packing bound", "Lease waits (s)", "Steps only"]
    rows = []
    for i, r in enumerate(runs, 1):
        cells = [str(i), f"{r.wall:.1f}", f"{r.span:.1f}"] + [pct(r.held.get(d, 0.0)) for d in devices]
        cells += [pct(r.busy), pct(r.bound), f"{r.waited:.1f}", pct(r.busy_steps)]
        rows.append("| " + " | ".join(cells) + " |")
    busy = statistics.median(r.busy for r in runs)
    verdict = "PASS" if busy >= GOAL else "FAIL"
    med = [
        "**Median**",
        f"{statistics.median(r.wall for r in runs):.1f}",
        f"{statistics.median(r.span for r in runs):.1f}",
    ]
    med += [pct(statistics.median(r.held.get(d, 0.0) for r in runs)) for d in devices] + [f"**{pct(busy)}**"]
    med += [pct(statistics.median(r.bound for r in runs)), f"{statistics.median(r.waited for r in runs):.1f}"]
    med += [pct(statistics.median(r.busy_steps for r in runs))]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = "\n".join(["| " + " | ".join(head) + " |", "|" + "--:|" * len(head), *rows, "| " + " | ".join(med) + " |"])
    return f"""{SECTION_TITLE}

Goal (issue 14): in the example suite, each device is busy >= {GOAL:.0%} of the time (the sum of its
cases' lease -> release time over the wall time from the run's first lease to its last release),
median of 5+ runs.

- Date: {today}
- Machine: {machine()}; {versions}; {plugin}; load average at the end: {load}
- Command: `cd example_suite && python -m pytest --sop -n auto --alluredir DIR -q -p no:cacheprovider
  -o sop_lock_dir=DIR2` (2 Chromium demo phones, so 2 workers; the managed Appium; 10 cases; a lock
  folder of its own, so that other runs of the example suite on the host do not hold its phones),
  {args.runs} runs.
- Per device and **Busy** (their mean): the sum of the device's lease -> release intervals in the
  audit log (the whole case on the device: its session created, its steps, its release) over the
  span from the first lease to the last release. The device timeline draws these bars.
- Packing bound: the best busy this run's cases allow, each held as long as it was: every way of
  placing them on the two phones (while both run, pixel-7 works with publisher-1 and iphone-14 with
  publisher-2, the only phone publisher-2 may use; a case goes where its pairs allow), no gaps, no
  waits. What is left between Busy and the bound is idle time the scheduling could still remove;
  what is left above the bound is the end of the run: one phone done, the other not.
- Lease waits: the seconds cases waited for a lease (the audit log's `waited`): a worker handed a
  case whose device or account the other worker holds.
- Steps only: busy counted from allure-pytest's `start`/`stop` (the call, not the session's
  creation in setup), as the timeline drew it before; for comparison.
- Wall: the whole pytest process (start-up, the managed Appium, the demo app, the run's files).

{table}

Verdict: **{verdict}**: median busy {pct(busy)} (goal {GOAL:.0%}).

Reproduce:

```sh
python benchmarks/bench_busy.py --runs {args.runs} --plugin {args.plugin} --write-docs
```
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs of the example suite, at least 5 (default 5)")
    parser.add_argument(
        "--plugin", default="HEAD", metavar="REF",
        help="measure pytest_sop as committed at this git ref (default HEAD), or 'worktree' for the files as they are",
    )  # fmt: skip
    parser.add_argument("--write-docs", action="store_true", help="update this benchmark's section of the docs file")
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS, help=f"docs file (default {DEFAULT_DOCS})")
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error("--runs must be at least 5")
    runs: list[Run] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-busy-") as tmp:
            plugin: Path | None = None
            if args.plugin == "worktree":
                about = "plugin source: the work tree"
            else:
                plugin = Path(tmp) / "plugin"
                about = snapshot_plugin(args.plugin, plugin)
            check_plugin(plugin)
            pairs = example_pairs(plugin)
            print(about, flush=True)
            for i in range(args.runs):
                r = run_once(Path(tmp) / f"allure-{i}", plugin, pairs)
                runs.append(r)
                per = ", ".join(f"{d} {pct(b)}" for d, b in sorted(r.held.items()))
                print(
                    f"run {i + 1}: wall {r.wall:.1f}s, span {r.span:.1f}s, busy {pct(r.busy)} ({per}), "
                    f"packing bound {pct(r.bound)}, lease waits {r.waited:.1f}s, steps only {pct(r.busy_steps)}; "
                    f"load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    except BenchBroken as e:
        print(f"benchmark broken: {e}", file=sys.stderr)
        return 2
    busy = statistics.median(r.busy for r in runs)
    ok = busy >= GOAL
    print(
        f"VERDICT: {'PASS' if ok else 'FAIL'}: median busy {pct(busy)} (goal {GOAL:.0%}), "
        f"packing bound {pct(statistics.median(r.bound for r in runs))}"
    )
    if args.write_docs:
        write_section(args.docs, render_section(args, runs, appium_version(REPO), about), SECTION_RE)
        print(f"wrote {args.docs}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
