"""Benchmark: 20 cases run by ``pytest --sop`` against the same cases in Robot Framework + AppiumLibrary.

The claim under test (issue 14): serially, a suite of SOPs takes no longer than the same cases
written in Robot Framework with AppiumLibrary, on the same Appium server (ratio of median wall
times <= 1.0, median of 5+ rounds, same run). Beside it, with 2 devices: ``pytest --sop -n 2``
against ``pabot --processes 2``.

One case list makes both suites, generated in a temp folder: 5 SOP files of 4 input rows (20
cases), and 5 Robot suite files of 4 tests. Every case opens its own session on the fake driver
with the same capabilities, waits for the username field, types a name into it, taps the login
button, checks the field's text, and closes the session. Each side does this as its users
write it:

==============================================================  ===========================================
SOP step                                                        Robot keyword (AppiumLibrary)
==============================================================  ===========================================
(lease, new session: the plugin)                                ``Test Setup  Open Application  URL  caps``
``wait_for: {id: username}``                                    ``Wait Until Element Is Visible  id=username``
``type: {into: {id: username}, text: "${inputs.name}"}``        ``Input Text  id=username  user-N-R``
``tap: {id: login_button}``                                     ``Click Element  id=login_button``
``assert_text: {in: {id: username}, equals: ...}``              ``Element Text Should Be  id=username  ...``
(session deleted, release: the plugin)                          ``Test Teardown  Close Application``
==============================================================  ===========================================

Each side keeps its defaults: the plugin takes screenshots on failure only and writes its run
ledger; Robot writes output.xml, log.html and report.html and screenshots on failure.

Four whole processes per round, in an order that rotates every round (load that drifts during
a round falls on every side alike), wall time of each:

- ``pytest --sop``: ``python -m pytest --sop --sop-appium URL -q -p no:cacheprovider -p no:hypothesispytest
  -p no:timeout`` (the last two are the dev extra's pytest plugins, which a user of pytest-sop does
  not have: Hypothesis's imports all of Hypothesis at the end of every run);
- ``pytest --sop -n 2``: the same with ``-n 2`` (``sop.yaml`` has 2 fake devices; leases);
- ``robot``: ``python -m robot --outputdir OUT SUITE``;
- ``pabot``: ``python -m pabot.pabot --no-pabotlib --processes 2 --outputdir OUT SUITE``: the 5 suite
  files split over 2 robot processes (pabot's default; ``--testlevelsplit`` starts a robot process
  per test and took 2-3x as long here).
  Both fake devices have the same capabilities, so pabot needs no device pool (PabotLib); on real
  phones it would need one, at a cost this benchmark does not charge it.

One managed Appium server (``ManagedAppium``, as the plugin starts it) serves every run. The
benchmark brackets each run with two marker requests (``GET /status?bench=...``) and counts the
HTTP commands between them in Appium's log (its ``[HTTP] -->`` lines), by kind. For the serial
sides the same log splits the wall time into: before the first session (start-up, collection),
inside sessions, between sessions (per-case work outside a session), after the last one.

Usage::

    python benchmarks/bench_robot.py [--runs 7] [--plugin HEAD|REF|worktree] [--write-docs]

The plugin is measured as committed (``git archive`` of ``--plugin``, HEAD by default, put first on
``PYTHONPATH``), so that edits under way in the work tree neither break a run nor go unrecorded.

Needs the ``bench`` extra (``pip install -e '.[bench]'``). Exit status: 0 if median(pytest --sop)
/ median(robot) <= 1.0, 1 if above, 2 if the benchmark itself broke.
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
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from common import (
    BenchBroken,
    appium_version,
    check_no_sessions,
    git,
    machine,
    rusage_children,
    snapshot_plugin,
    write_section,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DOCS = REPO / "docs" / "benchmarks.md"
APP = REPO / "tests" / "apps" / "fake_app.xml"
SECTION_TITLE = "## Peer: Robot Framework + AppiumLibrary (and pabot), 20 cases"
SECTION_RE = re.compile(r"^## Peer: Robot Framework\b.*$", re.MULTILINE)
LIMIT = 1.0
SOPS = 5
ROWS = 4
CASES = SOPS * ROWS
DEVICES = 2
SIDES = ("pytest --sop", "robot", "pytest --sop -n 2", "pabot")
PEER = {"pytest --sop": "robot", "pytest --sop -n 2": "pabot"}
SERIAL = ("pytest --sop", "robot")
RUN_TIMEOUT = 900.0
# pytest plugins of the dev extra (not pytest-sop's dependencies): a user's run does not load them.
NOT_DEV_PLUGINS = ("-p", "no:hypothesispytest", "-p", "no:timeout")
BENCH_PACKAGES = ("robotframework", "robotframework-appiumlibrary", "robotframework-pabot")


# -- the case list and the two suites made from it ------------------------------------------


@dataclass(frozen=True)
class Case:
    sop: int
    row: int

    @property
    def name(self) -> str:
        """The text the case types and then checks."""
        return f"user-{self.sop}-{self.row}"


def cases() -> list[Case]:
    return [Case(s, r) for s in range(1, SOPS + 1) for r in range(1, ROWS + 1)]


def sop_yaml() -> str:
    devices = "".join(
        f"""\
  - id: fake-{i}
    platform: fake
    capabilities:
      platformName: Fake
      appium:automationName: Fake
      appium:app: {APP}
"""
        for i in range(1, DEVICES + 1)
    )
    return f"devices:\n{devices}"


def sop_file(n: int, rows: list[Case]) -> str:
    inputs = "".join(f"  - {{id: r{c.row}, name: {c.name}}}\n" for c in rows)
    return f"""\
id: case-{n:02d}
title: Case {n}
owner: bench
requires:
  device: {{platform: fake}}
inputs:
{inputs}steps:
  - wait_for: {{id: username}}
  - type: {{into: {{id: username}}, text: "${{inputs.name}}"}}
  - tap: {{id: login_button}}
  - assert_text: {{in: {{id: username}}, equals: "${{inputs.name}}"}}
"""


def robot_file(n: int, rows: list[Case], url: str) -> str:
    # The plugin's capabilities for a fake device: its DEFAULT_CAPABILITIES + the device's own.
    caps = f"platformName=Fake    appium:automationName=Fake    appium:app={APP}    appium:newCommandTimeout=${{120}}"
    tests = "".join(
        f"""
Case {n} r{c.row}
    Wait Until Element Is Visible    id=username
    Input Text    id=username    {c.name}
    Click Element    id=login_button
    Element Text Should Be    id=username    {c.name}
"""
        for c in rows
    )
    return f"""\
*** Settings ***
Library           AppiumLibrary
Test Setup        Open Application    {url}    {caps}
Test Teardown     Close Application

*** Test Cases ***{tests}"""


def write_suites(root: Path, url: str) -> tuple[Path, Path]:
    """The SOP suite and the Robot suite, from the same case list."""
    sop, robot = root / "sop", root / "robot" / "cases"
    sop.mkdir(parents=True)
    robot.mkdir(parents=True)
    (sop / "pytest.ini").write_text(f"[pytest]\nsop_lock_dir = {root / 'locks'}\n")
    (sop / "sop.yaml").write_text(sop_yaml())
    for n in range(1, SOPS + 1):
        rows = [c for c in cases() if c.sop == n]
        (sop / f"case-{n:02d}.sop.yaml").write_text(sop_file(n, rows))
        (robot / f"case_{n:02d}.robot").write_text(robot_file(n, rows, url))
    return sop, robot


# -- running a side ----------------------------------------------------------------------


def command(side: str, url: str, robot_suite: Path, out: Path) -> list[str]:
    py = sys.executable
    if side.startswith("pytest"):
        cmd = [py, "-m", "pytest", "--sop", "--sop-appium", url, "-q", "-p", "no:cacheprovider", *NOT_DEV_PLUGINS]
        return [*cmd, "-n", str(DEVICES)] if side.endswith("-n 2") else cmd
    if side == "robot":
        return [py, "-m", "robot", "--outputdir", str(out), str(robot_suite)]
    # No PabotLib: the fake devices need no pool, and its remote server would cost pabot time. Suites
    # split over the processes (pabot's default): --testlevelsplit starts a robot per test, 2-3x slower here.
    return [py, "-m", "pabot.pabot", "--no-pabotlib", "--processes", str(DEVICES), "--outputdir", str(out),
            str(robot_suite)]  # fmt: skip


def expected_output(side: str) -> str:
    return f"{CASES} passed" if side.startswith("pytest") else f"{CASES} tests, {CASES} passed, 0 failed"


@dataclass
class Run:
    side: str
    wall: float
    commands: Counter[str]
    appium_ms: float
    cpu: float = 0.0  # user + system time of the process and the children it waited for
    before: float = 0.0  # start of the process to the first session
    inside: float = 0.0  # sum of the sessions' durations
    between: float = 0.0  # sum of the gaps between one session's end and the next one's start
    after: float = 0.0  # the last session's end to the end of the process

    @property
    def total_commands(self) -> int:
        return sum(self.commands.values())


# ``2026-12-02 16:11:20:257 - [9940f8f0][HTTP] --> POST /session/... {...}``
LOG_LINE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d:\d{3}) - (?:\[[^\]]*\])?\[HTTP\] (?P<dir>-->|<--) "
    r"(?P<method>[A-Z]+) (?P<path>\S+)(?: (?P<status>\d{3}) (?P<ms>\d+) ms)?"
)


def command_kind(method: str, path: str) -> str:
    """``POST /session/{s}/element/{e}/click``: the W3C command, session and element ids taken out."""
    path = re.sub(r"^/session/[^/]+", "/session/{s}", path)
    path = re.sub(r"/element/[^/]+", "/element/{e}", path)
    return f"{method} {path}"


def log_time(ts: str) -> float:
    # Appium writes local time with milliseconds after a colon.
    return dt.datetime.strptime(ts[:19], "%Y-%m-%d %H:%M:%S").timestamp() + int(ts[20:]) / 1000


class AppiumLog:
    """Appium's log file, read in the slices between this benchmark's marker requests."""

    def __init__(self, path: Path, url: str) -> None:
        self.path, self.url = path, url

    def mark(self, tag: str, timeout: float = 60.0) -> int:
        """Send a marker request; return the log's length once its line is in the file."""
        urllib.request.urlopen(f"{self.url}/status?bench={tag}", timeout=10).close()
        needle = f"--> GET /status?bench={tag}".encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = self.path.read_bytes()
            at = data.find(needle)
            if at >= 0:
                return data.index(b"\n", at) + 1 if b"\n" in data[at:] else len(data)
            time.sleep(0.05)
        raise BenchBroken(f"marker {tag} never reached {self.path}")

    def between(self, start: int, end: int) -> list[str]:
        """The lines after the start marker's and before the end marker's."""
        with self.path.open("rb") as f:
            f.seek(start)
            lines = f.read(end - start).decode(errors="replace").splitlines()
        return [line for line in lines if "GET /status?bench=" not in line]


def analyse(side: str, lines: list[str], t0: float, t1: float) -> Run:
    commands: Counter[str] = Counter()
    appium_ms = 0.0
    starts: list[float] = []
    ends: list[float] = []
    for line in lines:
        m = LOG_LINE.match(line)
        if not m:
            continue
        kind = command_kind(m["method"], m["path"])
        if m["dir"] == "-->":
            commands[kind] += 1
            if kind == "POST /session":
                starts.append(log_time(m["ts"]))
        else:
            appium_ms += float(m["ms"] or 0)
            if kind == "DELETE /session/{s}":
                ends.append(log_time(m["ts"]))
    run = Run(side, t1 - t0, commands, appium_ms)
    if len(starts) != CASES or len(ends) != CASES:
        raise BenchBroken(f"{side}: {len(starts)} sessions created and {len(ends)} deleted, expected {CASES}")
    if side in SERIAL:  # one session at a time: the wall time splits into the four parts
        starts.sort()
        ends.sort()
        run.before = starts[0] - t0
        run.inside = sum(e - s for s, e in zip(starts, ends, strict=True))
        run.between = sum(s - e for e, s in zip(ends, starts[1:], strict=False))
        run.after = t1 - ends[-1]
    return run


@dataclass
class Setup:
    url: str
    log: AppiumLog
    sop_suite: Path
    robot_suite: Path
    out: Path
    plugin: Path | None  # the snapshot of pytest_sop to import, or None for the installed one

    def env(self) -> dict[str, str]:
        # pabot starts `robot` from PATH: this interpreter's.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        env = {**os.environ, "PATH": path}
        env.pop("PYTEST_ADDOPTS", None)
        # Bytecode cached as on a user's machine: without it pytest rewrites the asserts of every plugin
        # module on every run, which Robot never pays (the warm-up round fills the caches).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        if self.plugin is not None:  # ahead of the editable install's finder, which comes last
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.plugin), os.environ.get("PYTHONPATH")]))
        return env

    def check_plugin(self) -> None:
        """The pytest runs import the plugin from where this benchmark says."""
        code = "import pytest_sop, sys; sys.stdout.write(pytest_sop.__file__)"
        proc = subprocess.run([sys.executable, "-c", code], cwd=self.sop_suite, env=self.env(), capture_output=True,
                              text=True, check=False)  # fmt: skip
        where = Path(proc.stdout).resolve()
        expected = (self.plugin or REPO).resolve()
        if proc.returncode != 0 or not where.is_relative_to(expected):
            raise BenchBroken(f"pytest_sop imports from {proc.stdout or proc.stderr!r}, not from {expected}")


def run_side(side: str, setup: Setup) -> Run:
    url, log, out = setup.url, setup.log, setup.out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = command(side, url, setup.robot_suite, out)
    cwd = setup.sop_suite if side.startswith("pytest") else setup.robot_suite.parent
    env = setup.env()
    tag = uuid.uuid4().hex
    start_at = log.mark(f"begin-{tag}")
    cpu0 = rusage_children()
    t0 = time.time()
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=RUN_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired as e:
        raise BenchBroken(f"{' '.join(cmd)} took over {RUN_TIMEOUT:.0f} s") from e
    t1 = time.time()
    cpu = rusage_children() - cpu0
    end_at = log.mark(f"end-{tag}")
    if proc.returncode != 0 or expected_output(side) not in proc.stdout:
        tail = proc.stdout[-3000:] + proc.stderr[-3000:]
        raise BenchBroken(f"{' '.join(cmd)} (in {cwd}) exited {proc.returncode}:\n{tail}")
    check_no_sessions(url)
    run = analyse(side, log.between(start_at, end_at), t0, t1)
    run.cpu = cpu
    return run


def order(round_: int) -> list[str]:
    """The round's sides, rotated each round so that every side runs in every position."""
    k = round_ % len(SIDES)
    return [*SIDES[k:], *SIDES[:k]]


@dataclass
class Results:
    runs: dict[str, list[Run]] = field(default_factory=lambda: {s: [] for s in SIDES})

    def median(self, side: str, attr: str = "wall") -> float:
        return statistics.median(float(getattr(r, attr)) for r in self.runs[side])

    def ratio(self, ours: str) -> float:
        return self.median(ours) / self.median(PEER[ours])

    def per_case(self, side: str) -> dict[str, float]:
        """Each command kind's count per case, over every measured run of the side."""
        total: Counter[str] = Counter()
        for r in self.runs[side]:
            total.update(r.commands)
        n = len(self.runs[side]) * CASES
        return {k: v / n for k, v in total.items()}


def measure(args: argparse.Namespace, setup: Setup) -> Results:
    res = Results()
    for round_ in range(args.warmup + args.runs):
        got = {}
        for side in order(round_):
            got[side] = run_side(side, setup)
        summary = ", ".join(f"{s} {r.wall:.2f}s (CPU {r.cpu:.2f}s, {r.total_commands} cmds)" for s, r in got.items())
        if round_ < args.warmup:
            print(f"warm-up round: {summary}", flush=True)
            continue
        for side in SIDES:
            res.runs[side].append(got[side])
        ratios = "; ".join(f"{ours} / {peer} {got[ours].wall / got[peer].wall:.3f}" for ours, peer in PEER.items())
        print(
            f"round {round_ - args.warmup + 1}: {summary}; {ratios}; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    return res


# -- reporting ---------------------------------------------------------------------------


def work_tree_state() -> str:
    try:
        return f"plugin source: the work tree at {git('describe', '--always', '--dirty')}"
    except (OSError, subprocess.CalledProcessError):
        return "plugin source: the work tree"


def versions() -> str:
    parts = []
    for name in BENCH_PACKAGES:
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def command_table(res: Results) -> str:
    per = {s: res.per_case(s) for s in SIDES}
    kinds = sorted({k for p in per.values() for k in p}, key=lambda k: (-per["pytest --sop"].get(k, 0), k))
    head = "| Command (per case) | " + " | ".join(f"`{s}`" for s in SIDES) + " |\n|:--|" + "--:|" * len(SIDES)
    rows = [f"| `{k}` | " + " | ".join(f"{per[s].get(k, 0):.2f}" for s in SIDES) + " |" for k in kinds]
    total = "| **All** | " + " | ".join(f"**{sum(per[s].values()):.2f}**" for s in SIDES) + " |"
    return "\n".join([head, *rows, total])


def parts_table(res: Results) -> str:
    head = (
        "| Serial side | Wall (s) | Before the first session (s) | Inside sessions (s) | Between sessions (s) "
        "| After the last session (s) | Per case inside + between (ms) | Appium's own time (s) |\n"
        "|:--|--:|--:|--:|--:|--:|--:|--:|"
    )
    rows = []
    for side in SERIAL:
        m = res.median
        per_case = (m(side, "inside") + m(side, "between")) / CASES * 1000
        rows.append(
            f"| `{side}` | {m(side):.2f} | {m(side, 'before'):.2f} | {m(side, 'inside'):.2f} | "
            f"{m(side, 'between'):.2f} | {m(side, 'after'):.2f} | {per_case:.0f} | {m(side, 'appium_ms') / 1000:.2f} |"
        )
    return "\n".join([head, *rows])


def render_section(args: argparse.Namespace, res: Results, appium: str, plugin: str, about: str) -> str:
    serial, parallel = res.ratio("pytest --sop"), res.ratio("pytest --sop -n 2")
    verdict = "PASS" if serial <= LIMIT else "FAIL"
    rows = "\n".join(
        f"| {i + 1} | " + " | ".join(f"{res.runs[s][i].wall:.2f}" for s in SIDES) + " | "
        f"{res.runs['pytest --sop'][i].wall / res.runs['robot'][i].wall:.3f} | "
        f"{res.runs['pytest --sop -n 2'][i].wall / res.runs['pabot'][i].wall:.3f} |"
        for i in range(args.runs)
    )
    medians = (
        "| **Median** | "
        + " | ".join(f"**{res.median(s):.2f}**" for s in SIDES)
        + f" | **{serial:.3f}** | **{parallel:.3f}** |"
    )
    cpu_ratio = {ours: res.median(ours, "cpu") / res.median(peer, "cpu") for ours, peer in PEER.items()}
    cpu = (
        "| CPU, median | "
        + " | ".join(f"{res.median(s, 'cpu'):.2f}" for s in SIDES)
        + f" | {cpu_ratio['pytest --sop']:.3f} | {cpu_ratio['pytest --sop -n 2']:.3f} |"
    )
    per_round = [a.wall / b.wall for a, b in zip(res.runs["pytest --sop"], res.runs["robot"], strict=True)]
    counts = {s: statistics.median(r.total_commands for r in res.runs[s]) for s in SIDES}
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    head = "| Round | " + " | ".join(f"`{s}` (s)" for s in SIDES) + " | sop / robot | sop -n 2 / pabot |"
    head += "\n|--:|" + "--:|" * (len(SIDES) + 2)
    return f"""{SECTION_TITLE}

Claim (issue 14): serially, {CASES} cases as SOPs (`pytest --sop`) take no longer than the same
cases in Robot Framework + AppiumLibrary (`robot`) on the same Appium server: ratio of median
wall times <= {LIMIT:.1f}. Beside it, with {DEVICES} fake devices: `pytest --sop -n 2` against
`pabot --no-pabotlib --processes 2`.

- Date: {today}
- Machine: {about}; {appium}; {versions()}; {plugin}; load average at the end: {load}
- Cases (one list makes both suites, in a temp folder): {SOPS} SOP files x {ROWS} input rows,
  and {SOPS} Robot suite files x {ROWS} tests. Each case: a new session (fake driver, the same
  capabilities), wait for the username field, type a name, tap login, check the field's text,
  session deleted. Robot: `Test Setup  Open Application`, `Wait Until Element Is Visible`,
  `Input Text`, `Click Element`, `Element Text Should Be`, `Test Teardown  Close Application`.
  `sop.yaml` has {DEVICES} fake devices; both sides keep their defaults (screenshots on failure
  only; the plugin writes its run ledger, Robot its output.xml, log.html and report.html).
- Commands, whole processes, cwd the suite's folder: `python -m pytest --sop --sop-appium URL -q
  -p no:cacheprovider -p no:hypothesispytest -p no:timeout` (and `-n 2`; the two plugins
  disabled are the dev extra's, which pytest-sop's users do not have); `python -m robot
  --outputdir OUT SUITE`; `python -m pabot.pabot --no-pabotlib --processes 2 --outputdir OUT
  SUITE`: the {SOPS} suite files split over 2 robot processes, pabot's default and its quicker way
  here (`--testlevelsplit`, a robot process per test, took 2-3x as long). Both fake devices have
  the same capabilities, so pabot runs without a device pool (PabotLib), which real phones would
  need.
- Bytecode is cached (`PYTHONDONTWRITEBYTECODE` unset), as on a user's machine.
- One managed Appium server (`ManagedAppium`) for every run. Rounds: {args.runs} measured
  (+{args.warmup} warm-up, not counted), the four sides in an order that rotates every round.
  Commands are counted in Appium's log (`[HTTP] -->` lines) between two marker requests around
  each run.

{head}
{rows}
{medians}
{cpu}

Verdict: **{verdict}**: serial, median `pytest --sop` {res.median("pytest --sop"):.2f} s vs `robot`
{res.median("robot"):.2f} s, ratio {serial:.3f} (limit {LIMIT:.1f}); per-round ratios: median
{statistics.median(per_round):.3f}, range {min(per_round):.3f} to {max(per_round):.3f}. With 2 devices,
`pytest --sop -n 2` {res.median("pytest --sop -n 2"):.2f} s vs `pabot` {res.median("pabot"):.2f} s,
ratio {parallel:.3f}. The CPU row is the client side's own CPU time (user + system of the
process and its children: pytest's workers, pabot's robot processes; Appium's not counted),
which the host's load moves far less than wall time.

Commands sent to Appium per run (median): `pytest --sop` {counts["pytest --sop"]:.0f}, `robot`
{counts["robot"]:.0f}, `pytest --sop -n 2` {counts["pytest --sop -n 2"]:.0f}, `pabot` {counts["pabot"]:.0f}
({CASES} cases). Per case, by kind:

{command_table(res)}

Where the serial wall time goes (medians, from the Appium log's timestamps: before the first
session is start-up and collection; between sessions is each case's work outside its session,
such as leases, records and the next case's set-up; Appium's own time is the sum of the
response times Appium logs):

{parts_table(res)}

Reproduce (needs the `bench` extra: `pip install -e '.[bench]'`):

```sh
python benchmarks/bench_robot.py --runs {args.runs} --plugin {args.plugin} --write-docs
```
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=7, help="measured rounds, at least 5 (default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (default 1)")
    parser.add_argument("--write-docs", action="store_true", help="update this benchmark's section of the docs file")
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS, help=f"docs file (default {DEFAULT_DOCS})")
    parser.add_argument(
        "--plugin", default="HEAD", metavar="REF",
        help="measure pytest_sop as committed at this git ref (default HEAD), or 'worktree' for the files as they are",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error("--runs must be at least 5")
    missing = []
    for name in BENCH_PACKAGES:
        try:
            version(name)
        except PackageNotFoundError:
            missing.append(name)
    if missing:
        print(f"benchmark broken: {', '.join(missing)} not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="bench-robot-") as tmp:
        root = Path(tmp)
        snapshot = None
        if args.plugin == "worktree":
            plugin = work_tree_state()
        else:
            snapshot = root / "plugin"
            try:
                plugin = snapshot_plugin(args.plugin, snapshot)
            except BenchBroken as e:
                print(f"benchmark broken: {e}", file=sys.stderr)
                return 2
            sys.path.insert(0, str(snapshot))  # this process's Appium helpers come from the same commit
        from pytest_sop.appium_server import ManagedAppium, find_appium_home

        home = find_appium_home(REPO)
        if home is None:
            print("benchmark broken: no node_modules/appium (run npm ci)", file=sys.stderr)
            return 2
        server = ManagedAppium(home, log_path=root / "appium.log")
        try:
            url = server.start()
            print(f"Appium at {url}; {appium_version(home)}; {versions()}; {plugin}", flush=True)
            sop_suite, robot_suite = write_suites(root, url)
            setup = Setup(url, AppiumLog(root / "appium.log", url), sop_suite, robot_suite, root / "out", snapshot)
            setup.check_plugin()
            res = measure(args, setup)
        except BenchBroken as e:
            print(f"benchmark broken: {e}", file=sys.stderr)
            return 2
        finally:
            server.stop()
        about = machine()

    serial, parallel = res.ratio("pytest --sop"), res.ratio("pytest --sop -n 2")
    ok = serial <= LIMIT
    print()
    print(f"machine: {about}")
    print("median wall: " + ", ".join(f"{s} {res.median(s):.2f}s" for s in SIDES))
    print(command_table(res))
    print(parts_table(res))
    print(f"with {DEVICES} devices: pytest --sop -n 2 / pabot = {parallel:.3f}")
    print(f"VERDICT: {'PASS' if ok else 'FAIL'}: pytest --sop / robot = {serial:.3f} (limit {LIMIT:.1f})")
    if args.write_docs:
        write_section(args.docs, render_section(args, res, appium_version(home), plugin, about), SECTION_RE)
        print(f"wrote {args.docs}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
