"""Benchmark: the marginal cost of one case against a hand-written appium-python-client script.

The claim under test (issue 14): a case with a session of its own (lease, session, 3 steps,
session deleted, release, and its records: audit lines, ledger row, Allure result) costs at
most 1.10x what a person's script costs for session + the same 3 steps + quit, on the same
Appium server (median of 5+ rounds, same run).

One managed Appium 3 server (``ManagedAppium``, the fake driver from ``node_modules``, log
level debug as the plugin starts it) serves the whole benchmark. Each round runs four
subprocesses, the sides interleaved (A N1, B N1, A N2, B N2; A alternates every round, and
every other pair of rounds runs backwards):

- ``sop``: ``python -m pytest --sop --sop-appium URL --alluredir DIR -q -p no:cacheprovider`` in
  a fresh subprocess, on a suite of N1 cases, then of N2 cases (one SOP file with N input rows:
  each row is a case, with its own lease and its own session). With ``--alluredir`` every record
  is on: the signed-chain audit log, the run ledger and Allure's results.
- ``user``: a fresh ``python`` subprocess (this file, ``--user-loop``) that, N times, creates a
  session with ``webdriver.Remote`` and the same capabilities, does the 3 steps as a person
  writes them by hand, and quits the session.

Wall time of the whole subprocess is measured. The marginal cost of one case is the slope
``(T(N2) - T(N1)) / (N2 - N1)``: interpreter start-up, plugin loading and the run's own
records (timeline, seal) cancel out. The steps and their hand-written lines are in ``FAKE`` and
``CHROMIUM`` below.

``--phone chromium`` runs the case on the example suite's demo phone instead: Debian's Chromium
with a Pixel 7's mobile emulation, through Appium's Chromium driver, signing in to the Snapgram
demo app that this process serves on a free port (launch, type two fields, tap, wait, check).

Usage::

    python benchmarks/bench_case.py [--phone fake|chromium] [--n1 5] [--n2 45] [--runs 5] [--write-docs] [--profile]

``--profile`` runs the N2 suite once under pyinstrument (``pip install pyinstrument``) in this
process and prints where the plugin's time goes, instead of measuring.

Exit status: 0 if median(sop slope) / median(user slope) <= 1.10, 1 if it is above, 2 if the
benchmark itself broke (a run failed, or sessions were left open on the server).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import itertools
import json
import os
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
COLUMNS = (
    "Round", "sop N1 (s)", "sop N2 (s)", "user N1 (s)", "user N2 (s)", "sop per case (ms)",
    "user per case (ms)", "Ratio", "sop CPU per case (ms)", "user CPU per case (ms)",
)  # fmt: skip
HEAD = "| " + " | ".join(COLUMNS) + " |\n|" + "--:|" * len(COLUMNS)
LIMIT = 1.10
# A suite with a secret, so masking runs on every record, as it does in a real suite.
SECRET = "Bench-s3cret+/value"
CHROME_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-quic", "--no-first-run",
]  # fmt: skip


@dataclass(frozen=True)
class Phone:
    """Where a case runs: its device's capabilities (the plugin's defaults included, so both sides
    ask Appium for the same session), the SOP's steps, and the same case as a person writes it."""

    name: str
    platform: str
    heading: str
    device_caps: dict[str, object]
    steps: str
    # The steps in the docs: (SOP step, the hand-written line(s)).
    step_table: tuple[tuple[str, str], ...]
    n1: int
    n2: int

    @property
    def capabilities(self) -> dict[str, object]:
        from pytest_sop.session import DEFAULT_CAPABILITIES

        return {**DEFAULT_CAPABILITIES, **self.device_caps}

    @property
    def heading_re(self) -> re.Pattern[str]:
        # Up to the colon: the wording after it may change without leaving the old section behind.
        return re.compile("^" + re.escape(self.heading.split(":")[0] + ":") + ".*$", re.MULTILINE)


FAKE = Phone(
    "fake",
    "fake",
    "## Case cost: one case (session + 3 steps) vs the same case written by hand",
    {"platformName": "Fake", "appium:automationName": "Fake", "appium:app": str(APP)},
    """\
  - type: {into: {id: username}, text: "${inputs.name}"}
  - assert_text: {in: {id: username}, equals: "${inputs.name}"}
  - tap: {id: login_button}
""",
    (
        ("type: {into: {id: username}, text: ...}", "el = find_element(...); el.clear(); el.send_keys(...)"),
        ("assert_text: {in: {id: username}, ...}", "assert find_element(...).text == ..."),
        ("tap: {id: login_button}", "find_element(...).click()"),
    ),
    5,
    45,
)
CHROMIUM = Phone(
    "chromium",
    "web",
    "## Case cost on the Chromium demo phone: sign in (session + 6 steps) vs the same case written by hand",
    {
        "platformName": "linux",
        "browserName": "chrome",
        "appium:automationName": "Chromium",
        "appium:executable": "/usr/bin/chromedriver",
        "appium:autodownloadEnabled": False,
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": CHROME_ARGS,
            "mobileEmulation": {"deviceName": "Pixel 7"},
        },
    },
    """\
  - launch_app
  - type: {into: {id: username}, text: "${account.username}"}
  - type: {into: {id: password}, text: "${account.password}"}
  - tap: {id: sign-in}
  - wait_for: {id: whoami}
  - assert_text: {in: {id: whoami}, equals: "${account.username}"}
""",
    (
        ("launch_app", "driver.get(app_url)"),
        ("type: {into: {id: username}, ...}", "el = find_element(...); el.clear(); el.send_keys(...)"),
        ("type: {into: {id: password}, ...}", "el = find_element(...); el.clear(); el.send_keys(...)"),
        ("tap: {id: sign-in}", "find_element(...).click()"),
        ("wait_for: {id: whoami}", "WebDriverWait(driver, 10).until(visibility_of_element_located(...))"),
        ("assert_text: {in: {id: whoami}, ...}", "assert find_element(...).text == ..."),
    ),
    2,
    12,
)
PHONES = {p.name: p for p in (FAKE, CHROMIUM)}


def write_suite(folder: Path, cases: int, lock_dir: Path, phone: Phone = FAKE, app_url: str = "") -> None:
    folder.mkdir(parents=True)
    (folder / "pytest.ini").write_text(f"[pytest]\nsop_lock_dir = {lock_dir}\n")
    web = phone.platform == "web"
    config: dict[str, object] = {
        "devices": [{"id": f"bench-{phone.name}", "platform": phone.platform, "capabilities": phone.device_caps}],
        "accounts": [{"id": "bench-user", "fields": {"username": "bench", "password": {"env": "BENCH_PASSWORD"}}}],
    }
    if web:
        config["apps"] = {"demo": {"url": app_url}}
    (folder / "sop.yaml").write_text(json.dumps(config, indent=2))  # JSON is YAML
    rows = "".join(f"  - {{id: c{i}, name: user-{i}}}\n" for i in range(cases))
    app = "app: demo\n" if web else ""
    (folder / "case.sop.yaml").write_text(
        f"id: {phone.name}-case\ntitle: One case\n{app}requires:\n  account: {{}}\ninputs:\n{rows}steps:\n{phone.steps}"
    )


# -- the hand-written side (runs in its own subprocess) -------------------------------------


def user_loop(url: str, phone: Phone, cases: int, app_url: str) -> int:
    """N times: create a session like the plugin, do the steps as a person writes them, quit."""
    from appium import webdriver
    from appium.options.common import AppiumOptions
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    for i in range(cases):
        driver = webdriver.Remote(url, options=AppiumOptions().load_capabilities(phone.capabilities))
        try:
            if phone is FAKE:
                el = driver.find_element("id", "username")
                el.clear()
                el.send_keys(f"user-{i}")
                expected = f"user-{i}"
                text = driver.find_element("id", "username").text
                driver.find_element("id", "login_button").click()
            else:
                driver.get(app_url)
                for field_id, value in (("username", "bench"), ("password", SECRET)):
                    el = driver.find_element("css selector", f"#{field_id}")
                    el.clear()
                    el.send_keys(value)
                driver.find_element("css selector", "#sign-in").click()
                WebDriverWait(driver, 10).until(
                    expected_conditions.visibility_of_element_located(("css selector", "#whoami"))
                )
                expected = "bench"
                text = driver.find_element("css selector", "#whoami").text
            if text != expected:
                raise AssertionError(f"case {i}: text {text!r}")
        finally:
            driver.quit()
    print(f"user: {cases} cases passed")
    return 0


# -- measuring ---------------------------------------------------------------------------


@dataclass
class Side:
    name: str
    times: dict[int, list[float]] = field(default_factory=dict)
    slopes_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)


def sop_args(url: str, alluredir: Path) -> list[str]:
    return [
        "--sop",
        "--sop-appium",
        url,
        f"--alluredir={alluredir}",
        "--clean-alluredir",
        "-q",
        "-p",
        "no:cacheprovider",
    ]


_fresh = itertools.count(1)


def fresh_records(folder: Path) -> tuple[Path, Path]:
    """A results folder and a ledger no run used before, left in place until the benchmark ends: a
    fresh ledger and audit log each time (the history a run appends to stays the same size), without
    deleting the last run's files just before the next run makes its own. On a disk like this one's
    (ext4 without a journal) every file made within 30 s of deletions scans past the deleted ones:
    the last run's 100+ results deleted made each Allure result of the next cost milliseconds, a cost
    of the benchmark's clean-up, not of a case."""
    n = next(_fresh)
    return folder / f"allure-{n}", folder / f"ledger-{n}.sqlite"


def bench_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "BENCH_PASSWORD": SECRET}
    env.pop("PYTEST_ADDOPTS", None)
    return env


def run_timed(cmd: list[str], cwd: Path, expect: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=bench_env(), capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or expect not in proc.stdout:
        tail = proc.stdout[-3000:] + proc.stderr[-3000:]
        raise BenchBroken(f"{' '.join(cmd)} (in {cwd}) exited {proc.returncode}:\n{tail}")
    return elapsed


def run_side(side: str, url: str, cases: int, suites: dict[int, Path], phone: Phone = FAKE, app_url: str = "") -> float:
    suite = suites[cases]
    if side == "sop":
        results, ledger = fresh_records(suite.parent / "records")
        cmd = [sys.executable, "-m", "pytest", *sop_args(url, results), f"--sop-ledger={ledger}"]
        return run_timed(cmd, suite, f"{cases} passed")
    here = str(Path(__file__).resolve())
    cmd = [sys.executable, here, "--user-loop", url, "--cases", str(cases), "--phone", phone.name, "--app-url", app_url]
    return run_timed(cmd, suite, f"user: {cases} cases passed")


def profile_sop(url: str, suite: Path) -> str:
    """pyinstrument's tree of a whole pytest run on ``suite``, in this process."""
    import pytest

    # Imported by name: pyinstrument is in the 'bench' extra, not in what CI type-checks against.
    Profiler = importlib.import_module("pyinstrument").Profiler

    os.environ["BENCH_PASSWORD"] = SECRET
    cwd = os.getcwd()
    os.chdir(suite)
    profiler = Profiler(interval=0.0005)
    try:
        profiler.start()
        code = pytest.main(sop_args(url, suite.parent / "allure-profile"))
        profiler.stop()
    finally:
        os.chdir(cwd)
    if code != 0:
        raise BenchBroken(f"profiled run exited {code}")
    return str(profiler.output_text(unicode=False, color=False, show_all=False))


# -- reporting ---------------------------------------------------------------------------


def versions_of(home: Path, phone: Phone) -> str:
    """Appium and what drives the phone: the fake driver, or the Chromium driver and Chromium."""
    versions = appium_version(home)
    if phone.platform != "web":
        return versions
    try:
        driver = json.loads((home / "node_modules" / "appium-chromium-driver" / "package.json").read_text())["version"]
        browser = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True, check=True)
    except (OSError, ValueError, KeyError, subprocess.CalledProcessError):
        return f"{versions}; Chromium driver (version unknown)"
    return f"{versions.split(', fake driver')[0]}, Chromium driver {driver}; {browser.stdout.strip()}"


def summary(sop: Side, user: Side) -> tuple[float, float, float]:
    s, p = statistics.median(sop.slopes_ms), statistics.median(user.slopes_ms)
    return s, p, s / p


def render_section(args: argparse.Namespace, sop: Side, user: Side, server: str) -> str:
    s, p, ratio = summary(sop, user)
    verdict = "PASS" if ratio <= LIMIT else "FAIL"
    n1, n2 = args.n1, args.n2
    rows = []
    for r in range(args.runs):
        rows.append(
            f"| {r + 1} | {sop.times[n1][r]:.3f} | {sop.times[n2][r]:.3f} | {user.times[n1][r]:.3f} | "
            f"{user.times[n2][r]:.3f} | {sop.slopes_ms[r]:.1f} | {user.slopes_ms[r]:.1f} | "
            f"{sop.slopes_ms[r] / user.slopes_ms[r]:.3f} | {sop.cpu_ms[r]:.1f} | {user.cpu_ms[r]:.1f} |"
        )
    med = (
        f"| **Median** | {statistics.median(sop.times[n1]):.3f} | {statistics.median(sop.times[n2]):.3f} | "
        f"{statistics.median(user.times[n1]):.3f} | {statistics.median(user.times[n2]):.3f} | **{s:.1f}** | "
        f"**{p:.1f}** | **{ratio:.3f}** | {statistics.median(sop.cpu_ms):.1f} | {statistics.median(user.cpu_ms):.1f} |"
    )
    ratios = [a / b for a, b in zip(sop.slopes_ms, user.slopes_ms, strict=True)]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = "\n".join(rows)
    phone = args.phone
    steps = "\n".join(f"| `{sop_step}` | `{by_hand}` |" for sop_step, by_hand in phone.step_table)
    where = "the fake driver" if phone is FAKE else "the Chromium demo phone"
    app = (
        ""
        if phone is FAKE
        else "\n- The phone: Debian's Chromium with a Pixel 7's mobile emulation, through Appium's Chromium\n"
        "  driver, as in the example suite. The app: Snapgram, the example suite's demo app, served by the\n"
        "  benchmark on a free loopback port; a case opens it, signs in with the account's username and\n"
        "  password, and checks who is signed in. Each session gets a new, empty browser profile: the\n"
        "  plugin makes it in the run's temporary folder and removes it at the run's end (a cost that grows\n"
        "  with N, so it is in the slope); for the script, chromedriver makes one, as for any person's script."
    )
    reproduce = f"--phone {phone.name} " if phone is not FAKE else ""
    return f"""{phone.heading}

Claim (issue 14): a case with a session of its own on {where} (lease, session, {len(phone.step_table)}
steps, session deleted, release, audit lines, ledger row, Allure result) costs at most {LIMIT:.2f}x a
hand-written appium-python-client script doing session + the same steps + quit on the same
server: ratio of median slopes <= {LIMIT:.2f}.

- Date: {today}
- Machine: {machine()}; {server}
- One managed Appium server (`ManagedAppium`, log level debug, as the plugin starts it) for
  every run. Rounds: {args.runs} measured (+{args.warmup} warm-up, not counted). A round is four
  runs with the sides interleaved (A N1, B N1, A N2, B N2); which side is A alternates every
  round, and every other pair of rounds runs the sequence backwards, so load that drifts
  during a round (the host is shared) falls on both sides alike. Load average at the end: {load}.{app}
- `sop`: `python -m pytest --sop --sop-appium URL --alluredir DIR --clean-alluredir --sop-ledger PATH -q
  -p no:cacheprovider` in a fresh subprocess on a suite of N1 = {n1} or N2 = {n2} cases (one SOP with N
  input rows; each case leases the device and an account, opens its own session and deletes it), with
  a results folder (so an audit log) and a ledger of its own each time, kept until the benchmark
  ends: on this VM's ext4 (no journal) a file made within 30 s of deletions scans past the deleted
  ones, so deleting the last run's results right before a run made its Allure results cost ms each.
  The suite holds a secret, so masking is on.
- `user`: a fresh `python` subprocess that N times creates a session with `webdriver.Remote` and
  the same capabilities, does the steps as a person writes them, and quits (`bench_case.py --user-loop`):

| SOP step | The hand-written line(s) |
|:--|:--|
{steps}

- Per-case cost = (T(N2) - T(N1)) / (N2 - N1) of whole-process wall times: start-up, plugin
  loading and the run's own files cancel out. The CPU columns are the same slope of the client
  processes' own CPU time (user + system, from `getrusage`): the Python work each side does per
  case, not counting Appium's.

{HEAD}
{table}
{med}

Verdict: **{verdict}**: median case {s:.1f} ms vs {p:.1f} ms for the hand-written script, ratio
{ratio:.3f} (limit {LIMIT:.2f}); per-round ratios: median {statistics.median(ratios):.3f}, range
{min(ratios):.3f} to {max(ratios):.3f}.

Reproduce:

```sh
python benchmarks/bench_case.py {reproduce}--n1 {n1} --n2 {n2} --runs {args.runs} --write-docs
```
"""


def measure(args: argparse.Namespace, url: str, suites: dict[int, Path]) -> tuple[Side, Side]:
    sop, user = Side("sop"), Side("user")
    for s in (sop, user):
        s.times = {args.n1: [], args.n2: []}
    for round_ in range(args.warmup + args.runs):
        measured = round_ >= args.warmup
        got: dict[tuple[str, int], float] = {}
        cpu: dict[tuple[str, int], float] = {}
        for name, n in schedule(round_, args.n1, args.n2):
            before = rusage_children()
            got[name, n] = run_side(name, url, n, suites, args.phone, args.app_url)
            cpu[name, n] = rusage_children() - before
            check_no_sessions(url)
        if not measured:
            print("warm-up round: " + ", ".join(f"{k[0]} N={k[1]} {v:.3f}s" for k, v in got.items()), flush=True)
            continue
        delta = args.n2 - args.n1
        for side in (sop, user):
            for n in (args.n1, args.n2):
                side.times[n].append(got[side.name, n])
            side.slopes_ms.append((got[side.name, args.n2] - got[side.name, args.n1]) / delta * 1000)
            side.cpu_ms.append((cpu[side.name, args.n2] - cpu[side.name, args.n1]) / delta * 1000)
        print(
            f"round {round_ - args.warmup + 1}: sop {sop.slopes_ms[-1]:.1f} ms/case, user {user.slopes_ms[-1]:.1f}"
            f" ms/case, ratio {sop.slopes_ms[-1] / user.slopes_ms[-1]:.3f}; CPU/case sop {sop.cpu_ms[-1]:.1f} ms,"
            f" user {user.cpu_ms[-1]:.1f} ms; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    return sop, user


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--phone",
        choices=sorted(PHONES),
        default="fake",
        help="the fake driver's app (default) or the Chromium demo phone",
    )
    parser.add_argument("--n1", type=int, default=0, help="cases in the small suite (default 5; 2 on Chromium)")
    parser.add_argument("--n2", type=int, default=0, help="cases in the large suite (default 45; 12 on Chromium)")
    parser.add_argument("--runs", type=int, default=5, help="measured rounds, at least 5 (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (default 1)")
    parser.add_argument("--write-docs", action="store_true", help="update this benchmark's section of the docs file")
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS, help=f"docs file (default {DEFAULT_DOCS})")
    parser.add_argument("--profile", action="store_true", help="profile the N2 suite once instead of measuring")
    parser.add_argument("--user-loop", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--cases", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--app-url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.phone = PHONES[args.phone]
    if args.user_loop:
        return user_loop(args.user_loop, args.phone, args.cases, args.app_url)
    args.n1 = args.n1 or args.phone.n1
    args.n2 = args.n2 or args.phone.n2
    if not 0 < args.n1 < args.n2:
        parser.error("expected 0 < --n1 < --n2")
    if args.runs < 5 and not args.profile:
        parser.error("--runs must be at least 5")

    from pytest_sop.appium_server import ManagedAppium, find_appium_home

    home = find_appium_home(REPO)
    if home is None:
        print("benchmark broken: no node_modules/appium (run npm ci)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-case-") as tmp, contextlib.ExitStack() as stack:
        if args.phone.platform == "web":
            from pytest_sop.demo import serve

            args.app_url = stack.enter_context(serve(accounts={"bench": SECRET})).url
        suites = {n: Path(tmp) / f"suite-{n}" for n in (args.n1, args.n2)}
        for n, folder in suites.items():
            write_suite(folder, n, Path(tmp) / "locks", args.phone, args.app_url)
        server = ManagedAppium(home, log_path=Path(tmp) / "appium.log")
        try:
            url = server.start()
            versions = versions_of(home, args.phone)
            print(f"Appium: {url}; {versions}", flush=True)
            if args.profile:
                print(profile_sop(url, suites[args.n2]))
                return 0
            sop, user = measure(args, url, suites)
        except BenchBroken as e:
            print(f"benchmark broken: {e}", file=sys.stderr)
            return 2
        finally:
            server.stop()

    s, p, ratio = summary(sop, user)
    ok = ratio <= LIMIT
    print()
    print(f"machine: {machine()}")
    verdict = "PASS" if ok else "FAIL"
    print(f"VERDICT: {verdict}: sop {s:.1f} ms/case vs user {p:.1f} ms/case = {ratio:.3f} (limit {LIMIT})")
    if args.write_docs:
        write_section(args.docs, render_section(args, sop, user, versions), args.phone.heading_re)
        print(f"wrote {args.docs}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
