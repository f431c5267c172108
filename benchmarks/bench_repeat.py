"""Benchmark: what a ``repeat`` iteration costs beyond the steps it runs.

The claim under test (issue 10): a ``repeat`` of 1,000 iterations on Appium's fake driver costs per
iteration no more than the steps it runs plus 5%, compared with the same steps written out 1,000
times in one SOP (median of 5+ rounds, same run).

One managed Appium 3 server (``ManagedAppium``, the fake driver from ``node_modules``) serves the
whole benchmark. Each round runs four ``python -m pytest --sop`` subprocesses, the sides interleaved
(A N1, B N1, A N2, B N2; A alternates every round, every other pair of rounds runs backwards):

- ``repeat``: one SOP whose one step is ``repeat: {times: N, steps: BODY}``;
- ``written``: one SOP whose steps are BODY written out N times;

once with N1 and once with N2 iterations. BODY is ``tap: {id: login_button}`` and
``assert_visible: {id: status_label}``: two cheap steps, so the iteration's own cost weighs as much
as it can. The runs record as a real run does: ``--alluredir`` (each iteration is an Allure step,
its steps inside) and so the audit log; screenshots off (``--sop-evidence none``).

Wall time of the whole subprocess is measured. The cost of one iteration is the slope
``(T(N2) - T(N1)) / (N2 - N1)``: interpreter start-up, plugin loading, collection of the fixed
part and session creation cancel out (the written-out SOP's longer file is parsed in its slope).

Usage::

    python benchmarks/bench_repeat.py [--n1 10] [--n2 1000] [--runs 5] [--write-docs]

Exit status: 0 if median(repeat slope) / median(written slope) <= 1.05, 1 if it is above, 2 if the
benchmark itself broke (a run failed, or sessions were left open on the server).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import BenchBroken, appium_version, check_no_sessions, machine, rusage_children, schedule, write_section

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DOCS = REPO / "docs" / "benchmarks.md"
APP = REPO / "tests" / "apps" / "fake_app.xml"
SECTION_TITLE = "## Repeat: 1,000 iterations vs the same steps written out 1,000 times"
SECTION_RE = re.compile(r"^## Repeat\b.*$", re.MULTILINE)
LIMIT = 1.05
SOP_YAML = f"""\
devices:
  - id: bench-fake
    platform: fake
    capabilities:
      platformName: Fake
      appium:automationName: Fake
      appium:app: {APP}
"""
BODY = ("tap: {id: login_button}", "assert_visible: {id: status_label}")
COLUMNS = (
    "Round", "repeat N1 (s)", "repeat N2 (s)", "written N1 (s)", "written N2 (s)", "repeat per iteration (ms)",
    "written per iteration (ms)", "Ratio", "repeat CPU per iteration (ms)", "written CPU per iteration (ms)",
)  # fmt: skip
HEAD = "| " + " | ".join(COLUMNS) + " |\n|" + "--:|" * len(COLUMNS)


def write_suite(folder: Path, side: str, n: int, lock_dir: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "pytest.ini").write_text(f"[pytest]\nsop_lock_dir = {lock_dir}\n")
    (folder / "sop.yaml").write_text(SOP_YAML)
    if side == "repeat":
        body = "".join(f"        - {step}\n" for step in BODY)
        steps = f"  - repeat:\n      times: {n}\n      steps:\n{body}"
    else:
        steps = "".join(f"  - {step}\n" for _ in range(n) for step in BODY)
    (folder / "loop.sop.yaml").write_text(f"id: loop-{side}-{n}\nsteps:\n{steps}")


@dataclass
class Side:
    name: str
    times: dict[int, list[float]] = field(default_factory=dict)
    slopes_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)


def run_timed(url: str, suite: Path) -> float:
    cmd = [
        sys.executable, "-m", "pytest", "--sop", "--sop-appium", url, "--sop-evidence", "none",
        "--alluredir", str(suite / "allure-results"), "-q", "-p", "no:cacheprovider",
    ]  # fmt: skip
    shutil.rmtree(suite / "allure-results", ignore_errors=True)  # each run writes its own record
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=suite, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or "1 passed" not in proc.stdout:
        raise BenchBroken(f"{' '.join(cmd)} (in {suite}) exited {proc.returncode}:\n{proc.stdout[-3000:]}")
    return elapsed


def measure(args: argparse.Namespace, url: str, suites: dict[tuple[str, int], Path]) -> tuple[Side, Side]:
    rep, written = Side("repeat"), Side("written")
    for s in (rep, written):
        s.times = {args.n1: [], args.n2: []}
    for round_ in range(args.warmup + args.runs):
        got: dict[tuple[str, int], float] = {}
        cpu: dict[tuple[str, int], float] = {}
        for name, n in schedule(round_, args.n1, args.n2):
            side = "repeat" if name == "sop" else "written"
            before = rusage_children()
            got[side, n] = run_timed(url, suites[side, n])
            cpu[side, n] = rusage_children() - before
            check_no_sessions(url)
        if round_ < args.warmup:
            print("warm-up round: " + ", ".join(f"{k[0]} N={k[1]} {v:.3f}s" for k, v in got.items()), flush=True)
            continue
        delta = args.n2 - args.n1
        for s in (rep, written):
            for n in (args.n1, args.n2):
                s.times[n].append(got[s.name, n])
            s.slopes_ms.append((got[s.name, args.n2] - got[s.name, args.n1]) / delta * 1000)
            s.cpu_ms.append((cpu[s.name, args.n2] - cpu[s.name, args.n1]) / delta * 1000)
        print(
            f"round {round_ - args.warmup + 1}: repeat {rep.slopes_ms[-1]:.3f} ms/iteration, written "
            f"{written.slopes_ms[-1]:.3f} ms/iteration, ratio {rep.slopes_ms[-1] / written.slopes_ms[-1]:.3f}; "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    return rep, written


def render_section(args: argparse.Namespace, rep: Side, written: Side, server: str) -> str:
    r, w = statistics.median(rep.slopes_ms), statistics.median(written.slopes_ms)
    ratio = r / w
    verdict = "PASS" if ratio <= LIMIT else "FAIL"
    n1, n2 = args.n1, args.n2
    rows = [
        f"| {i + 1} | {rep.times[n1][i]:.3f} | {rep.times[n2][i]:.3f} | {written.times[n1][i]:.3f} | "
        f"{written.times[n2][i]:.3f} | {rep.slopes_ms[i]:.3f} | {written.slopes_ms[i]:.3f} | "
        f"{rep.slopes_ms[i] / written.slopes_ms[i]:.3f} | {rep.cpu_ms[i]:.3f} | {written.cpu_ms[i]:.3f} |"
        for i in range(args.runs)
    ]
    med = (
        f"| **Median** | {statistics.median(rep.times[n1]):.3f} | {statistics.median(rep.times[n2]):.3f} | "
        f"{statistics.median(written.times[n1]):.3f} | {statistics.median(written.times[n2]):.3f} | **{r:.3f}** | "
        f"**{w:.3f}** | **{ratio:.3f}** | {statistics.median(rep.cpu_ms):.3f} | "
        f"{statistics.median(written.cpu_ms):.3f} |"
    )
    ratios = [a / b for a, b in zip(rep.slopes_ms, written.slopes_ms, strict=True)]
    rc, wc = statistics.median(rep.cpu_ms), statistics.median(written.cpu_ms)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = "\n".join(rows)
    return f"""{SECTION_TITLE}

Claim (issue 10): a `repeat` of {n2:,} iterations on the fake driver costs per iteration no more than
the steps it runs plus {LIMIT - 1:.0%}: ratio of median slopes (repeat vs the same steps written out
{n2:,} times) <= {LIMIT:.2f}, median of 5+ rounds, same run.

- Date: {today}
- Machine: {machine()}; {server}
- One managed Appium server for every run. Rounds: {args.runs} measured (+{args.warmup} warm-up,
  not counted); the four runs of a round interleave the sides, which goes first alternating every
  round and every other pair of rounds running backwards. Load average at the end: {load}.
- Both sides: `python -m pytest --sop --sop-appium URL --sop-evidence none --alluredir DIR -q` in a
  fresh subprocess, one case, one session; each iteration is an Allure step on the repeat side
  (`iteration K of N`, its steps inside), and every step is in the audit log on both sides.
- `repeat`: `repeat: {{times: N, steps: [{BODY[0]}, {BODY[1]}]}}`; `written`: those two steps
  written out N times. N1 = {n1}, N2 = {n2}.
- Per-iteration cost = (T(N2) - T(N1)) / (N2 - N1) of whole-process wall times; the CPU columns
  are the same slope of the pytest process's own CPU time (user + system, `getrusage`).

{HEAD}
{table}
{med}

Verdict: **{verdict}**: median {r:.3f} ms per repeat iteration vs {w:.3f} ms for the same two steps
written out, ratio {ratio:.3f} (limit {LIMIT:.2f}); per-round ratios {min(ratios):.3f} to {max(ratios):.3f}.
The pytest process's CPU per iteration, which host load moves far less: repeat {rc:.3f} ms vs
written out {wc:.3f} ms, ratio {rc / wc:.3f}. A `times` repeat sends Appium no command of its
own; when the per-round ratios spread far wider than the limit, the wall verdict is the host's noise:
run it again on a quiet machine.

Reproduce:

```sh
python benchmarks/bench_repeat.py --n1 {n1} --n2 {n2} --runs {args.runs} --write-docs
```
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n1", type=int, default=10, help="iterations of the short runs (default 10)")
    parser.add_argument("--n2", type=int, default=1000, help="iterations of the long runs (default 1000)")
    parser.add_argument("--runs", type=int, default=5, help="measured rounds, at least 5 (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (default 1)")
    parser.add_argument("--write-docs", action="store_true", help="update this benchmark's section of the docs file")
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS, help=f"docs file (default {DEFAULT_DOCS})")
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error("--runs must be at least 5")
    if not 0 < args.n1 < args.n2:
        parser.error("need 0 < --n1 < --n2")

    from pytest_sop.appium_server import ManagedAppium, find_appium_home

    home = find_appium_home(REPO)
    if home is None:
        print("benchmark broken: no node_modules/appium (run npm ci)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-repeat-") as tmp:
        root = Path(tmp)
        suites = {(side, n): root / f"{side}-{n}" for side in ("repeat", "written") for n in (args.n1, args.n2)}
        for (side, n), folder in suites.items():
            write_suite(folder, side, n, root / "locks")
        server = ManagedAppium(home, log_path=root / "appium.log")
        try:
            url = server.start()
            print(f"Appium at {url}; {appium_version(home)}", flush=True)
            rep, written = measure(args, url, suites)
        except (BenchBroken, subprocess.SubprocessError) as e:
            print(f"benchmark broken: {e}", file=sys.stderr)
            return 2
        finally:
            server.stop()
    ratio = statistics.median(rep.slopes_ms) / statistics.median(written.slopes_ms)
    print(f"\nmachine: {machine()}")
    print(
        f"per iteration (median of {args.runs}): repeat {statistics.median(rep.slopes_ms):.3f} ms, "
        f"written out {statistics.median(written.slopes_ms):.3f} ms, ratio {ratio:.3f} (limit {LIMIT:.2f})"
    )
    if args.write_docs:
        write_section(args.docs, render_section(args, rep, written, appium_version(home)), SECTION_RE)
        print(f"wrote {args.docs}")
    return 0 if ratio <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
