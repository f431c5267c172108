"""Benchmark: the marginal cost of one SOP step against a hand-written appium-python-client script.

The claim under test (issues 3, 13 and 14): with screenshots off (``--sop-evidence none``), the
marginal cost of one SOP step on Appium's fake driver is within 10% of what a person writes by
hand for the same step with appium-python-client (``driver.find_element(...).click()``), on
the same server (median of 5+ rounds, same run). The suite has a secret (an account password),
so the plugin's masking is on for every step, as in a real suite.

One managed Appium 3 server (``ManagedAppium``, the fake driver from ``node_modules``) serves
the whole benchmark. Each round runs four subprocesses, the sides interleaved (A N1, B N1, A N2, B N2; A alternates
every round, and every other pair of rounds runs backwards):

- ``sop``: ``python -m pytest --sop --sop-appium URL --sop-evidence none -q -p no:cacheprovider``
  in a fresh subprocess, once on a suite whose one SOP has N1 steps, once with N2 steps;
- ``user``: a fresh ``python`` subprocess (this file, ``--user-loop``) that creates a session
  with ``webdriver.Remote`` and the same capabilities, does each step the way a person writes it
  by hand, and quits the session; once with N1 steps, once with N2.

Wall time of the whole subprocess is measured. The marginal cost of one step is the slope
``(T(N2) - T(N1)) / (N2 - N1)``: interpreter start-up, plugin loading, collection of the
fixed part and session creation cancel out. The steps cycle through a realistic mix:

===============================================  ==============================================
SOP step                                         the hand-written line(s)
===============================================  ==============================================
``type: {into: {id: username}, text: user-K}``   ``el = find_element(...); el.clear(); el.send_keys(...)``
``assert_text: {in: {id: username}, ...}``       ``assert find_element(...).text == ...``
``tap: {id: login_button}``                      ``find_element(...).click()``
``assert_visible: {id: status_label}``           ``assert find_element(...).is_displayed()``
===============================================  ==============================================

Both sides should send the same Appium commands per step (find element + the action: 2.25 on
average over the mix); the benchmark counts them in the server's log for every run and reports
commands per step for each side, so a difference in commands shows next to a difference in time.

Usage::

    python benchmarks/bench_step.py [--n1 20] [--n2 520] [--runs 9] [--write-docs] [--profile]

Exit status: 0 if median(sop slope) / median(user slope) <= 1.10, 1 if it is above, 2 if the
benchmark itself broke (a run failed, or sessions were left open on the server).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import os
import pstats
import re
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
SECTION_TITLE = "## Step cost: one SOP step vs the same step written by hand with appium-python-client"
SECTION_RE = re.compile(r"^## Step cost\b.*$", re.MULTILINE)
# A request the server logs at debug level, with the session it belongs to.
REQUEST_RE = re.compile(r"\[([0-9a-f]{8})\]\[HTTP\] --> (?:GET|POST|DELETE) /session/")
COLUMNS = (
    "Round", "sop N1 (s)", "sop N2 (s)", "user N1 (s)", "user N2 (s)", "sop per step (ms)",
    "user per step (ms)", "Ratio", "sop CPU per step (ms)", "user CPU per step (ms)",
)  # fmt: skip
HEAD = "| " + " | ".join(COLUMNS) + " |\n|" + "--:|" * len(COLUMNS)
LIMIT = 1.10
# The plugin's capabilities for this device: DEFAULT_CAPABILITIES + the device's own.
CAPABILITIES: dict[str, object] = {
    "appium:newCommandTimeout": 120,
    "platformName": "Fake",
    "appium:automationName": "Fake",
    "appium:app": str(APP),
}
SOP_YAML = f"""\
devices:
  - id: bench-fake
    platform: fake
    capabilities:
      platformName: Fake
      appium:automationName: Fake
      appium:app: {APP}
accounts:
  - id: bench-user
    fields: {{username: bench, password: {{env: BENCH_PASSWORD}}}}
"""
# A suite with a secret, so masking runs on every step as it does in a real suite.
SECRET = "Bench-s3cret+/value"
MIX = ("type", "assert_text", "tap", "assert_visible")


def sop_step(i: int) -> str:
    """The i-th step of the SOP, as YAML."""
    kind = MIX[i % len(MIX)]
    k = i // len(MIX)
    if kind == "type":
        return f"  - type: {{into: {{id: username}}, text: user-{k}}}\n"
    if kind == "assert_text":
        return f"  - assert_text: {{in: {{id: username}}, equals: user-{k}}}\n"
    if kind == "tap":
        return "  - tap: {id: login_button}\n"
    return "  - assert_visible: {id: status_label}\n"


def write_suite(folder: Path, steps: int, lock_dir: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "pytest.ini").write_text(f"[pytest]\nsop_lock_dir = {lock_dir}\n")
    (folder / "sop.yaml").write_text(SOP_YAML)
    body = "".join(sop_step(i) for i in range(steps))
    (folder / "steps.sop.yaml").write_text(
        f"id: steps-{steps}\ntitle: {steps} steps\nrequires:\n  account: {{}}\nsteps:\n{body}"
    )


# -- the hand-written side (runs in its own subprocess) -------------------------------------


def user_loop(url: str, steps: int) -> int:
    """Create a session like the plugin, do each step as a person writes it by hand, quit."""
    from appium import webdriver
    from appium.options.common import AppiumOptions

    driver = webdriver.Remote(url, options=AppiumOptions().load_capabilities(dict(CAPABILITIES)))
    try:
        for i in range(steps):
            kind = MIX[i % len(MIX)]
            k = i // len(MIX)
            if kind == "type":
                el = driver.find_element("id", "username")
                el.clear()
                el.send_keys(f"user-{k}")
            elif kind == "assert_text":
                text = driver.find_element("id", "username").text
                if text != f"user-{k}":
                    raise AssertionError(f"step {i}: text {text!r}")
            elif kind == "tap":
                driver.find_element("id", "login_button").click()
            elif not driver.find_element("id", "status_label").is_displayed():
                raise AssertionError(f"step {i}: status_label not displayed")
    finally:
        driver.quit()
    print(f"user: {steps} steps passed")
    return 0


# -- measuring ---------------------------------------------------------------------------


@dataclass
class Side:
    name: str
    times: dict[int, list[float]] = field(default_factory=dict)
    slopes_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    commands: dict[int, list[int]] = field(default_factory=dict)  # per run, from the server's log

    def commands_per_step(self, n1: int, n2: int) -> float:
        return (statistics.median(self.commands[n2]) - statistics.median(self.commands[n1])) / (n2 - n1)


def commands_by_session(log: Path) -> list[int]:
    """Commands each session sent, sessions in the order they started (runs are one at a time)."""
    counts: dict[str, int] = {}
    for m in REQUEST_RE.finditer(log.read_text(errors="replace")):
        counts[m[1]] = counts.get(m[1], 0) + 1
    return list(counts.values())


def count_commands(log: Path, runs: list[tuple[str, int]], sop: Side, user: Side, deadline: float = 60) -> None:
    """Each run's commands (its one session's), read once Appium has written them all."""
    end = time.monotonic() + deadline
    while len(counts := commands_by_session(log)) < len(runs) and time.monotonic() < end:
        time.sleep(0.5)  # Appium writes its log asynchronously
    if len(counts) != len(runs):
        raise BenchBroken(f"{len(counts)} sessions in {log}, {len(runs)} runs")
    for (name, n), count in zip(runs, counts, strict=True):
        (sop if name == "sop" else user).commands.setdefault(n, []).append(count)


def sop_command(url: str) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "--sop", "--sop-appium", url, "--sop-evidence", "none",
        "-q", "-p", "no:cacheprovider",
    ]  # fmt: skip


def run_timed(cmd: list[str], cwd: Path, expect: str) -> float:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "BENCH_PASSWORD": SECRET}
    env.pop("PYTEST_ADDOPTS", None)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or expect not in proc.stdout:
        tail = proc.stdout[-3000:] + proc.stderr[-3000:]
        raise BenchBroken(f"{' '.join(cmd)} (in {cwd}) exited {proc.returncode}:\n{tail}")
    return elapsed


def run_side(side: str, url: str, steps: int, suites: dict[int, Path]) -> float:
    if side == "sop":
        return run_timed(sop_command(url), suites[steps], "1 passed")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--user-loop", url, "--steps", str(steps)]
    return run_timed(cmd, suites[steps], f"user: {steps} steps passed")


def profile_sop(url: str, suite: Path, top: int = 25) -> str:
    """cProfile of a whole pytest run on ``suite`` (in this process), the plugin's hotspots first."""
    import pytest

    prof = cProfile.Profile()
    cwd = os.getcwd()
    os.chdir(suite)
    try:
        prof.enable()
        code = pytest.main(["--sop", "--sop-appium", url, "--sop-evidence", "none", "-q", "-p", "no:cacheprovider"])
        prof.disable()
    finally:
        os.chdir(cwd)
    if code != 0:
        raise BenchBroken(f"profiled run exited {code}")
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(r"pytest_sop", top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


# -- reporting ---------------------------------------------------------------------------


def summary(sop: Side, user: Side) -> tuple[float, float, float]:
    s, p = statistics.median(sop.slopes_ms), statistics.median(user.slopes_ms)
    return s, p, s / p


def render_section(args: argparse.Namespace, sop: Side, user: Side, server: str) -> str:
    s, p, ratio = summary(sop, user)
    verdict = "PASS" if ratio <= LIMIT else "FAIL"
    n1, n2 = args.n1, args.n2
    cs, cu = sop.commands_per_step(n1, n2), user.commands_per_step(n1, n2)
    rows = []
    for r in range(args.runs):
        rows.append(
            f"| {r + 1} | {sop.times[n1][r]:.3f} | {sop.times[n2][r]:.3f} | {user.times[n1][r]:.3f} | "
            f"{user.times[n2][r]:.3f} | {sop.slopes_ms[r]:.2f} | {user.slopes_ms[r]:.2f} | "
            f"{sop.slopes_ms[r] / user.slopes_ms[r]:.3f} | {sop.cpu_ms[r]:.2f} | {user.cpu_ms[r]:.2f} |"
        )
    med = (
        f"| **Median** | {statistics.median(sop.times[n1]):.3f} | {statistics.median(sop.times[n2]):.3f} | "
        f"{statistics.median(user.times[n1]):.3f} | {statistics.median(user.times[n2]):.3f} | **{s:.2f}** | "
        f"**{p:.2f}** | **{ratio:.3f}** | {statistics.median(sop.cpu_ms):.2f} | {statistics.median(user.cpu_ms):.2f} |"
    )
    ratios = [a / b for a, b in zip(sop.slopes_ms, user.slopes_ms, strict=True)]
    per_round = statistics.median(ratios)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = "\n".join(rows)
    return f"""{SECTION_TITLE}

Claim (issues 3, 13 and 14): with screenshots off (`--sop-evidence none`), the marginal cost of one
SOP step on the fake driver is within {LIMIT - 1:.0%} of the same step written by hand with
appium-python-client (`driver.find_element(...).click()`) on the same server: ratio of median
slopes <= {LIMIT:.2f}, median of 5+ rounds. The suite holds a secret, so masking runs on every step.

- Date: {today}
- Machine: {machine()}; {server}
- One managed Appium server (`ManagedAppium`, log level debug, as the plugin starts it) for
  every run. Rounds: {args.runs} measured (+{args.warmup} warm-up, not counted). A round is four
  runs with the sides interleaved (A N1, B N1, A N2, B N2); which side is A alternates every
  round, and every other pair of rounds runs the sequence backwards, so load that drifts
  during a round (the host is shared) falls on both sides alike. Load average at the end: {load}.
- `sop`: `python -m pytest --sop --sop-appium URL --sop-evidence none -q -p no:cacheprovider` in a
  fresh subprocess on a suite whose one SOP has N1 = {n1} or N2 = {n2} steps (one case, one session).
- `user`: a fresh `python` subprocess that creates the session with `webdriver.Remote` and the
  same capabilities, does each step as a person writes it by hand and quits
  (`bench_step.py --user-loop`).
- Steps cycle through `type`, `assert_text`, `tap` and `assert_visible`; the hand-written side
  does the user-level thing: `el = find_element(...); el.clear(); el.send_keys(...)`,
  `find_element(...).text == ...`, `find_element(...).click()`,
  `find_element(...).is_displayed()`. Appium commands per step, counted in the server's log for
  every run (slope of the runs' median counts): sop {cs:.2f}, hand-written {cu:.2f}.
- Per-step cost = (T(N2) - T(N1)) / (N2 - N1) of whole-process wall times: start-up, plugin
  loading and session creation cancel out. The CPU columns are the same slope of the client
  process's own CPU time (user + system, from `getrusage`), which host load barely moves: the
  Python work each side does per step, not counting Appium's.

{HEAD}
{table}
{med}

Verdict: **{verdict}**: median SOP step {s:.2f} ms vs {p:.2f} ms for the same step written by hand
with appium-python-client, ratio {ratio:.3f} (limit {LIMIT:.2f}); per-round ratios: median
{per_round:.3f}, range {min(ratios):.3f} to {max(ratios):.3f}.

Reproduce:

```sh
python benchmarks/bench_step.py --n1 {n1} --n2 {n2} --runs {args.runs} --write-docs
```
"""


def measure(args: argparse.Namespace, url: str, suites: dict[int, Path], log: Path) -> tuple[Side, Side]:
    sop, user = Side("sop"), Side("user")
    for s in (sop, user):
        s.times = {args.n1: [], args.n2: []}
    runs: list[tuple[str, int]] = []
    for round_ in range(args.warmup + args.runs):
        measured = round_ >= args.warmup
        got: dict[tuple[str, int], float] = {}
        cpu: dict[tuple[str, int], float] = {}
        for name, n in schedule(round_, args.n1, args.n2):
            runs.append((name, n))
            before = rusage_children()
            got[name, n] = run_side(name, url, n, suites)
            cpu[name, n] = rusage_children() - before
            check_no_sessions(url)
        if not measured:
            print("warm-up round: " + ", ".join(f"{k[0]} N={k[1]} {v:.3f}s" for k, v in got.items()), flush=True)
            continue
        for side in (sop, user):
            for n in (args.n1, args.n2):
                side.times[n].append(got[side.name, n])
            delta = args.n2 - args.n1
            side.slopes_ms.append((got[side.name, args.n2] - got[side.name, args.n1]) / delta * 1000)
            side.cpu_ms.append((cpu[side.name, args.n2] - cpu[side.name, args.n1]) / delta * 1000)
        r = round_ - args.warmup + 1
        n1, n2 = args.n1, args.n2
        print(
            f"round {r}: sop {sop.slopes_ms[-1]:.2f} ms/step ({got['sop', n1]:.3f}s / {got['sop', n2]:.3f}s), "
            f"user {user.slopes_ms[-1]:.2f} ms/step ({got['user', n1]:.3f}s / {got['user', n2]:.3f}s), "
            f"ratio {sop.slopes_ms[-1] / user.slopes_ms[-1]:.3f}; client CPU/step sop {sop.cpu_ms[-1]:.2f} ms, "
            f"user {user.cpu_ms[-1]:.2f} ms; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    count_commands(log, runs, sop, user)
    return sop, user


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n1", type=int, default=20, help="steps of the short SOP (default 20)")
    parser.add_argument("--n2", type=int, default=520, help="steps of the long SOP (default 520)")
    parser.add_argument("--runs", type=int, default=9, help="measured rounds, at least 5 (default 9)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (default 1)")
    parser.add_argument("--write-docs", action="store_true", help="update this benchmark's section of the docs file")
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS, help=f"docs file (default {DEFAULT_DOCS})")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of a pytest run of N2 steps")
    parser.add_argument("--user-loop", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.user_loop:
        return user_loop(args.user_loop, args.steps)
    if args.runs < 5:
        parser.error("--runs must be at least 5")
    if not 0 < args.n1 < args.n2:
        parser.error("need 0 < --n1 < --n2")

    from pytest_sop.appium_server import ManagedAppium, find_appium_home

    home = find_appium_home(REPO)
    if home is None:
        print("benchmark broken: no node_modules/appium (run npm ci)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-step-") as tmp:
        root = Path(tmp)
        suites = {n: root / f"suite-{n}" for n in (args.n1, args.n2)}
        for n, folder in suites.items():
            write_suite(folder, n, root / "locks")
        server = ManagedAppium(home, log_path=root / "appium.log")
        try:
            url = server.start()
            print(f"Appium at {url}; {appium_version(home)}", flush=True)
            sop, user = measure(args, url, suites, root / "appium.log")
            profile = ""
            s, p, ratio = summary(sop, user)
            ok = ratio <= LIMIT
            if args.profile or not ok:
                profile = profile_sop(url, suites[args.n2])
        except BenchBroken as e:
            print(f"benchmark broken: {e}", file=sys.stderr)
            return 2
        finally:
            server.stop()

    print()
    print(f"machine: {machine()}")
    print(f"per step (median of {args.runs}): sop {s:.2f} ms, hand-written appium-python-client {p:.2f} ms")
    print(
        f"Appium commands per step: sop {sop.commands_per_step(args.n1, args.n2):.2f}, "
        f"hand-written {user.commands_per_step(args.n1, args.n2):.2f}"
    )
    verdict = "PASS" if ok else "FAIL"
    print(f"VERDICT: {verdict}: ratio {ratio:.3f} (limit {LIMIT:.2f})")
    if profile:
        print(f"\ncProfile of `pytest --sop` on {args.n2} steps:\n{profile}")
    if args.write_docs:
        write_section(args.docs, render_section(args, sop, user, appium_version(home)), SECTION_RE)
        print(f"wrote {args.docs}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
