"""Benchmark: what a resume costs per case against a normal case start.

The claim under test (issue 11): a resume (find the pause, take the hold over, open a session on the
held device, restore vars, go on from the paused step) costs no more than a normal case start
(lease, open a session, run the first step).

One SOP, three steps: ``type`` (the first step), an ``approve`` checkpoint, ``tap``. One fake device
per case (a paused case holds its device), one managed Appium 3 server (fake driver). Each round
runs four measured subprocesses, the sides interleaved as in bench_case.py:

Before each measured run (not measured) a plain run pauses every case at the checkpoint and the
approval is recorded, so both sides find the same audit log, ledger and results to check and append to.

- ``start``: the pauses forgotten (records and holds removed), ``python -m pytest --sop ...`` runs
  every case from the start: lease, session, ``type``, ``approve`` (judged), ``tap``, release.
- ``resume``: ``python -m pytest --sop --sop-resume ...`` continues each: hold taken over, session,
  vars restored, ``approve`` (judged), ``tap``, release, pause record gone.

Both sides run ``approve`` and ``tap``; what differs is exactly the claim: the resume's own work
against the start's lease and first step. Per-case cost is the slope (T(N2) - T(N1)) / (N2 - N1) of
whole-process wall times, so start-up and the run's own files cancel out. Verdict: median resume
slope <= median start slope.

Usage::

    python benchmarks/bench_resume.py [--n1 2] [--n2 12] [--runs 5] [--write-docs]

Exit status: 0 if the claim holds, 1 if not, 2 if the benchmark itself broke.
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

from common import BenchBroken, appium_version, check_no_sessions, machine, write_section

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DOCS = REPO / "docs" / "benchmarks.md"
APP = REPO / "tests" / "apps" / "fake_app.xml"
SECTION_TITLE = "## Resume: continuing a paused case vs starting a case"
SECTION_RE = re.compile(r"^## Resume\b.*$", re.MULTILINE)
LIMIT = 1.0
COLUMNS = ("Round", "start N1 (s)", "start N2 (s)", "resume N1 (s)", "resume N2 (s)", "start per case (ms)",
           "resume per case (ms)", "Ratio")  # fmt: skip
HEAD = "| " + " | ".join(COLUMNS) + " |\n|" + "--:|" * len(COLUMNS)
OPERATOR, APPROVER = "bench-op", "bench-lead"
POLICY = f"""\
policy:
  roles: {{lead: {{may_approve: true}}, qa: {{sops: ["*"]}}}}
  operators: {{{OPERATOR}: [qa], {APPROVER}: [lead]}}
"""


def write_suite(folder: Path, cases: int) -> None:
    folder.mkdir(parents=True)
    (folder / "pytest.ini").write_text(f"[pytest]\nsop_lock_dir = {folder / 'locks'}\n")
    devices = "".join(
        f"  - id: fake-{i}\n    platform: fake\n    capabilities:\n      platformName: Fake\n"
        f"      appium:automationName: Fake\n      appium:app: {APP}\n"
        for i in range(cases)
    )
    (folder / "sop.yaml").write_text("devices:\n" + devices + POLICY)
    rows = "".join(f"  - {{id: c{i}, name: user-{i}}}\n" for i in range(cases))
    (folder / "case.sop.yaml").write_text(
        f"""\
id: checked
inputs:
{rows}steps:
  - type: {{into: {{id: username}}, text: "${{inputs.name}}"}}
  - approve: {{checkpoint: ok, role: lead}}
  - tap: {{id: login_button}}
"""
    )


def env() -> dict[str, str]:
    out = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    out.pop("PYTEST_ADDOPTS", None)
    return out


def run(cmd: list[str], cwd: Path, expect: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if expect not in proc.stdout:
        raise BenchBroken(f"{' '.join(cmd)} (in {cwd}) exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr}")
    return elapsed


def pytest_cmd(url: str, suite: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "--sop", "--sop-appium", url, "--sop-operator", OPERATOR,
            f"--alluredir={suite / 'allure'}", "-q", "-p", "no:cacheprovider", *extra]  # fmt: skip


def fresh(suite: Path) -> None:
    """No ledger, no pause, no results, no decision from the round before."""
    for leftover in (suite / ".sop", suite / "allure", suite / "locks"):
        shutil.rmtree(leftover, ignore_errors=True)
    (suite / "sop-approvals.yaml").unlink(missing_ok=True)


def run_side(side: str, url: str, cases: int, suites: dict[int, Path]) -> float:
    """Both sides start from the same history: a run that paused every case (its audit lines, ledger
    rows and results, which the next run checks and appends to), then the approval. ``start`` then
    forgets the pauses (records and holds gone) and runs every case from the beginning."""
    suite = suites[cases]
    fresh(suite)
    run(pytest_cmd(url, suite), suite, f"{cases} skipped")  # every case pauses: not measured
    approve = [sys.executable, "-m", "pytest_sop", "approve", "checked", "ok", "--by", APPROVER]
    subprocess.run(approve, cwd=suite, env=env(), capture_output=True, check=True)
    if side == "start":
        shutil.rmtree(suite / ".sop" / "holds")
        shutil.rmtree(suite / "locks")
        return run(pytest_cmd(url, suite), suite, f"{cases} passed")
    return run(pytest_cmd(url, suite, "--sop-resume"), suite, f"{cases} passed")


@dataclass
class Side:
    name: str
    times: dict[int, list[float]] = field(default_factory=dict)
    slopes_ms: list[float] = field(default_factory=list)


def schedule(round_: int, n1: int, n2: int) -> list[tuple[str, int]]:
    first, second = ("start", "resume") if round_ % 2 == 0 else ("resume", "start")
    runs = [(first, n1), (second, n1), (first, n2), (second, n2)]
    return runs if (round_ // 2) % 2 == 0 else runs[::-1]


def measure(args: argparse.Namespace, url: str, suites: dict[int, Path]) -> tuple[Side, Side]:
    start, resume = Side("start"), Side("resume")
    for s in (start, resume):
        s.times = {args.n1: [], args.n2: []}
    for round_ in range(args.warmup + args.runs):
        got = {}
        for name, n in schedule(round_, args.n1, args.n2):
            got[name, n] = run_side(name, url, n, suites)
            check_no_sessions(url)
        if round_ < args.warmup:
            print("warm-up round: " + ", ".join(f"{k[0]} N={k[1]} {v:.3f}s" for k, v in got.items()), flush=True)
            continue
        for side in (start, resume):
            for n in (args.n1, args.n2):
                side.times[n].append(got[side.name, n])
            side.slopes_ms.append((got[side.name, args.n2] - got[side.name, args.n1]) / (args.n2 - args.n1) * 1000)
        print(
            f"round {round_ - args.warmup + 1}: start {start.slopes_ms[-1]:.1f} ms/case, resume "
            f"{resume.slopes_ms[-1]:.1f} ms/case; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    return start, resume


def render_section(args: argparse.Namespace, start: Side, resume: Side, server: str) -> str:
    s, r = statistics.median(start.slopes_ms), statistics.median(resume.slopes_ms)
    ratio = r / s
    verdict = "PASS" if ratio <= LIMIT else "FAIL"
    n1, n2 = args.n1, args.n2
    rows = "\n".join(
        f"| {i + 1} | {start.times[n1][i]:.3f} | {start.times[n2][i]:.3f} | {resume.times[n1][i]:.3f} | "
        f"{resume.times[n2][i]:.3f} | {start.slopes_ms[i]:.1f} | {resume.slopes_ms[i]:.1f} | "
        f"{resume.slopes_ms[i] / start.slopes_ms[i]:.3f} |"
        for i in range(args.runs)
    )
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"""{SECTION_TITLE}

Claim (issue 11): a resume (pause found, hold taken over, session on the held device, vars restored,
on from the paused step) costs no more than a normal case start (lease, session, first step):
median resume slope / median start slope <= {LIMIT:.2f}.

- Date: {today}
- Machine: {machine()}; {server}
- One SOP of three steps (`type` first, an `approve` checkpoint, `tap`), one fake device per case,
  one managed Appium server. Before each measured run (not measured) a plain run paused every case
  and the approval was recorded, so both sides check and append to the same history. `start`: the
  pauses forgotten (records and holds removed), a plain `pytest --sop` runs every case from the
  start. `resume`: `pytest --sop --sop-resume` continues them. Both run `approve` and `tap`; what
  differs is the resume's own work against the start's lease and first step. Both with
  `--alluredir` (audit log, ledger, Allure results on).
- Per-case cost = (T(N2) - T(N1)) / (N2 - N1), N1 = {n1}, N2 = {n2}, whole-process wall times. Rounds:
  {args.runs} measured (+{args.warmup} warm-up), sides interleaved as in the case-cost benchmark.
  Load average at the end: {load}.

{HEAD}
{rows}

Verdict: **{verdict}**: median resume {r:.1f} ms per case vs start {s:.1f} ms, ratio {ratio:.3f}
(limit {LIMIT:.2f}).

Reproduce:

```sh
python benchmarks/bench_resume.py --n1 {n1} --n2 {n2} --runs {args.runs} --write-docs
```
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n1", type=int, default=2, help="cases in the small suite (default 2)")
    parser.add_argument("--n2", type=int, default=12, help="cases in the large suite (default 12)")
    parser.add_argument("--runs", type=int, default=5, help="measured rounds, at least 5 (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (default 1)")
    parser.add_argument("--write-docs", action="store_true", help="update this benchmark's section of the docs file")
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS, help=f"docs file (default {DEFAULT_DOCS})")
    args = parser.parse_args(argv)
    if not 0 < args.n1 < args.n2:
        parser.error("expected 0 < --n1 < --n2")
    if args.runs < 5:
        parser.error("--runs must be at least 5")

    from pytest_sop.appium_server import ManagedAppium, find_appium_home

    home = find_appium_home(REPO)
    if home is None:
        print("benchmark broken: no node_modules/appium (run npm ci)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-resume-") as tmp:
        suites = {n: Path(tmp) / f"suite-{n}" for n in (args.n1, args.n2)}
        for n, folder in suites.items():
            write_suite(folder, n)
        server = ManagedAppium(home, log_path=Path(tmp) / "appium.log")
        try:
            url = server.start()
            versions = appium_version(home)
            print(f"Appium: {url}; {versions}", flush=True)
            start, resume = measure(args, url, suites)
        except BenchBroken as e:
            print(f"benchmark broken: {e}", file=sys.stderr)
            return 2
        finally:
            server.stop()
    s, r = statistics.median(start.slopes_ms), statistics.median(resume.slopes_ms)
    ok = r / s <= LIMIT
    print(f"\nmachine: {machine()}")
    print(f"VERDICT: {'PASS' if ok else 'FAIL'}: resume {r:.1f} ms/case vs start {s:.1f} ms/case = {r / s:.3f}")
    if args.write_docs:
        write_section(args.docs, render_section(args, start, resume, versions), SECTION_RE)
        print(f"wrote {args.docs}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
