"""Benchmark: how busy the example suite keeps its devices (issue 14).

Runs ``example_suite`` the way its README says (``pytest --sop -n auto --alluredir DIR``: one
xdist worker per device, the managed Appium, the Chromium demo phones) several times, and from
each run's records computes, per device:

- **busy (cases)** = the sum of that device's case durations in the Allure results
  (``stop - start`` of each ``*-result.json`` labelled with the device: allure-pytest times the
  case's call, its steps) over the wall time (the first case's start to the last case's stop, as
  the device timeline draws them);
- **busy (held)** = the sum of the device's lease -> release intervals in the audit log (the whole
  case on the device: session created, steps, release) over the same span of the audit log (the
  first lease to the last release).

The goal (issue 14) is busy >= 90% (median of 5+ runs); the verdict is on busy (cases), the
mean over the devices. What is not busy is the device's idle time: lease waits (a worker handed a
case whose account or device the other worker holds) and, in busy (cases), each case's setup
(its session created) and teardown.

Usage::

    python benchmarks/bench_busy.py [--runs 5] [--write-docs]

Exit status: 0 if the median busy (cases) >= 90%, 1 if below, 2 if the benchmark broke.
"""

from __future__ import annotations

import argparse
import datetime as dt
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

from common import appium_version, machine, write_section

REPO = Path(__file__).resolve().parent.parent
SUITE = REPO / "example_suite"
DEFAULT_DOCS = REPO / "docs" / "benchmarks.md"
SECTION_TITLE = "## Device busy time: the example suite with -n auto"
SECTION_RE = re.compile(r"^## Device busy\b.*$", re.MULTILINE)
GOAL = 0.90


class BenchBroken(RuntimeError):
    pass


@dataclass
class Run:
    wall: float  # the whole pytest process, s
    span: float  # first case start -> last case stop (Allure), s
    cases: dict[str, float]  # device -> busy (cases), 0..1
    held_span: float  # first lease -> last release (audit log), s
    held: dict[str, float]  # device -> busy (held), 0..1

    @property
    def busy(self) -> float:
        return statistics.mean(self.cases.values())

    @property
    def busy_held(self) -> float:
        return statistics.mean(self.held.values())


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def busy_from(results: Path) -> tuple[float, dict[str, float], float, dict[str, float]]:
    per_device: dict[str, float] = defaultdict(float)
    starts, stops = [], []
    for path in results.glob("*-result.json"):
        data = json.loads(path.read_text())
        labels = {label["name"]: label["value"] for label in data.get("labels", [])}
        if "device" not in labels or "start" not in data:
            continue
        start, stop = data["start"] / 1000, data.get("stop", data["start"]) / 1000
        per_device[labels["device"]] += stop - start
        starts.append(start)
        stops.append(stop)
    if not starts:
        raise BenchBroken(f"{results}: no Allure result names a device")
    span = max(stops) - min(starts)
    held: dict[str, float] = defaultdict(float)
    open_: dict[str, float] = {}
    first = last = None
    for line in (results / "sop-audit.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "lease":
            open_[event["case"]] = _ts(event["ts"])
            first = first if first is not None else _ts(event["ts"])
        elif event["event"] == "release" and event["case"] in open_:
            end = _ts(event["ts"])
            held[event["device"]] += end - open_.pop(event["case"])
            last = end
    held_span = (last or 0.0) - (first or 0.0)
    return (
        span,
        {d: t / span for d, t in per_device.items()},
        held_span,
        {d: t / held_span for d, t in held.items()} if held_span > 0 else {},
    )


def run_once(out: Path) -> Run:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [sys.executable, "-m", "pytest", "--sop", "-n", "auto", f"--alluredir={out}", "-q", "-p", "no:cacheprovider"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=SUITE, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchBroken(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    span, cases, held_span, held = busy_from(out)
    return Run(wall, span, cases, held_span, held)


def pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def render_section(args: argparse.Namespace, runs: list[Run], versions: str) -> str:
    devices = sorted({d for r in runs for d in r.cases})
    head = ["Run", "Wall (s)", "Span (s)"] + [f"{d} cases" for d in devices] + ["Busy (cases)"]
    head += [f"{d} held" for d in devices] + ["Busy (held)"]
    rows = []
    for i, r in enumerate(runs, 1):
        cells = [str(i), f"{r.wall:.1f}", f"{r.span:.1f}"] + [pct(r.cases.get(d, 0.0)) for d in devices]
        cells += [pct(r.busy)] + [pct(r.held.get(d, 0.0)) for d in devices] + [pct(r.busy_held)]
        rows.append("| " + " | ".join(cells) + " |")
    busy = statistics.median(r.busy for r in runs)
    held = statistics.median(r.busy_held for r in runs)
    verdict = "PASS" if busy >= GOAL else "FAIL"
    med = [
        "**Median**",
        f"{statistics.median(r.wall for r in runs):.1f}",
        f"{statistics.median(r.span for r in runs):.1f}",
    ]
    med += [pct(statistics.median(r.cases.get(d, 0.0) for r in runs)) for d in devices] + [f"**{pct(busy)}**"]
    med += [pct(statistics.median(r.held.get(d, 0.0) for r in runs)) for d in devices] + [f"**{pct(held)}**"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = "\n".join(["| " + " | ".join(head) + " |", "|" + "--:|" * len(head), *rows, "| " + " | ".join(med) + " |"])
    return f"""{SECTION_TITLE}

Goal (issue 14): in the example suite, each device is busy >= {GOAL:.0%} of the time (sum of its
case time over the wall time), median of 5+ runs.

- Date: {today}
- Machine: {machine()}; {versions}; load average at the end: {load}
- Command: `cd example_suite && python -m pytest --sop -n auto --alluredir DIR -q -p no:cacheprovider`
  (2 Chromium demo phones, so 2 workers; the managed Appium; 10 cases), {args.runs} runs.
- Busy (cases): per device, the sum of its cases' Allure `stop - start` (allure-pytest times the
  call: the steps, not the session's creation in setup) over the span from the first case's start
  to the last case's stop: what the device timeline shows. The verdict is on the mean over devices.
- Busy (held): per device, the sum of its lease -> release intervals in the audit log (the whole
  case on the device, the session's creation included) over the span from the first lease to the
  last release.
- Wall: the whole pytest process (start-up, the managed Appium, the demo app, the run's files).

{table}

Verdict: **{verdict}**: median busy (cases) {pct(busy)} (goal {GOAL:.0%}); busy (held) {pct(held)}.

Reproduce:

```sh
python benchmarks/bench_busy.py --runs {args.runs} --write-docs
```
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs of the example suite, at least 5 (default 5)")
    parser.add_argument("--write-docs", action="store_true", help="update this benchmark's section of the docs file")
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS, help=f"docs file (default {DEFAULT_DOCS})")
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error("--runs must be at least 5")
    runs: list[Run] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-busy-") as tmp:
            for i in range(args.runs):
                r = run_once(Path(tmp) / f"allure-{i}")
                runs.append(r)
                per = ", ".join(f"{d} {pct(b)}" for d, b in sorted(r.cases.items()))
                print(
                    f"run {i + 1}: wall {r.wall:.1f}s, span {r.span:.1f}s, busy (cases) {pct(r.busy)} ({per}),"
                    f" busy (held) {pct(r.busy_held)}; load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    except BenchBroken as e:
        print(f"benchmark broken: {e}", file=sys.stderr)
        return 2
    busy = statistics.median(r.busy for r in runs)
    ok = busy >= GOAL
    print(
        f"VERDICT: {'PASS' if ok else 'FAIL'}: median busy (cases) {pct(busy)} (goal {GOAL:.0%}), "
        f"busy (held) {pct(statistics.median(r.busy_held for r in runs))}"
    )
    if args.write_docs:
        write_section(args.docs, render_section(args, runs, appium_version(REPO)), SECTION_RE)
        print(f"wrote {args.docs}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
