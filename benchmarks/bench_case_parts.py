"""Benchmark: what one case costs in parts, beside ``bench_case.py``'s verdict (issue 14).

``bench_case.py`` compares a SOP case with a bare appium-python-client loop. This one adds the
step between them, so the gap can be told apart: the same hand-written client calls as a pytest
test (``pytest --alluredir``: pytest's and allure-pytest's own work per test, which a SOP case
pays as well), and optionally the plugin as committed at an earlier ref (``--before REF``), so a
change is measured against what it replaced in the same run. Per side and round: the slope
(T(N2) - T(N1)) / (N2 - N1) of whole-process wall time and of the process's CPU time (user + system).

Usage::

    python benchmarks/bench_case_parts.py [--n1 5] [--n2 45] [--runs 5] [--before REF] [--write-docs]

Exit status: 0 when measured, 2 if the benchmark itself broke.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_case
from common import (
    BenchBroken,
    appium_version,
    check_no_sessions,
    machine,
    rusage_children,
    snapshot_plugin,
    write_section,
)

# Not "## Case cost ...": bench_case.py finds its own section by that prefix.
SECTION_TITLE = "## Per-case cost in parts: client loop, the same calls as a pytest test, a SOP case"
SECTION_RE = re.compile(r"^## Per-case cost in parts\b.*$", re.MULTILINE)
PYTEST_CASE = f"""\
import os

import pytest
from appium import webdriver
from appium.options.common import AppiumOptions

CAPABILITIES = {bench_case.FAKE.capabilities!r}


@pytest.mark.parametrize("i", range(int(os.environ["BENCH_CASES"])))
def test_case(i):
    driver = webdriver.Remote(os.environ["BENCH_URL"], options=AppiumOptions().load_capabilities(dict(CAPABILITIES)))
    try:
        el = driver.find_element("id", "username")
        el.clear()
        el.send_keys(f"user-{{i}}")
        assert driver.find_element("id", "username").text == f"user-{{i}}"
        driver.find_element("id", "login_button").click()
    finally:
        driver.quit()
"""


def run_pytest_side(url: str, cases: int, folder: Path) -> float:
    results, _ = bench_case.fresh_records(folder / "records")  # as the SOP side's (see fresh_records)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--alluredir={results}"]
    env = {**bench_case.bench_env(), "BENCH_CASES": str(cases), "BENCH_URL": url}
    start = rusage_children()
    proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or f"{cases} passed" not in proc.stdout:
        raise BenchBroken(f"pytest side exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return rusage_children() - start


def measure(args: argparse.Namespace, url: str, tmp: Path) -> dict[str, tuple[list[float], list[float]]]:
    suites = {n: tmp / f"suite-{n}" for n in (args.n1, args.n2)}
    for n, folder in suites.items():
        bench_case.write_suite(folder, n, tmp / "locks")
    hand = tmp / "pytest-side"
    hand.mkdir()
    (hand / "test_case.py").write_text(PYTEST_CASE)
    plugins = {"sop": str(bench_case.REPO)}
    if args.before:
        plugins[f"sop@{args.before}"] = str(tmp / "before")
        print(snapshot_plugin(args.before, tmp / "before"), flush=True)
    sides = ["user", "pytest", *plugins]
    out: dict[str, tuple[list[float], list[float]]] = {s: ([], []) for s in sides}

    def once(side: str, n: int) -> tuple[float, float]:
        wall_start, cpu_start = time.perf_counter(), rusage_children()
        if side == "user":
            bench_case.run_side("user", url, n, suites)
        elif side == "pytest":
            run_pytest_side(url, n, hand)
        else:
            os.environ["PYTHONPATH"] = plugins[side]  # the sop side's subprocess imports this copy
            try:
                bench_case.run_side("sop", url, n, suites)
            finally:
                os.environ["PYTHONPATH"] = plugins["sop"]
        check_no_sessions(url)
        return time.perf_counter() - wall_start, rusage_children() - cpu_start

    for round_ in range(args.warmup + args.runs):
        order = sides if round_ % 2 == 0 else sides[::-1]
        got = {(s, n): once(s, n) for n in (args.n1, args.n2) for s in order}
        if round_ < args.warmup:
            continue
        delta = args.n2 - args.n1
        for s in sides:
            out[s][0].append((got[s, args.n2][0] - got[s, args.n1][0]) / delta * 1000)
            out[s][1].append((got[s, args.n2][1] - got[s, args.n1][1]) / delta * 1000)
        line = "; ".join(f"{s} {out[s][0][-1]:.1f} ms wall, {out[s][1][-1]:.1f} ms CPU" for s in sides)
        print(f"round {round_ - args.warmup + 1}: {line}; load {os.getloadavg()[0]:.1f}", flush=True)
    return out


def render(args: argparse.Namespace, out: dict[str, tuple[list[float], list[float]]], server: str) -> str:
    user_wall, user_cpu = (statistics.median(v) for v in out["user"])
    rows = []
    for side, (wall, cpu) in out.items():
        w, c = statistics.median(wall), statistics.median(cpu)
        rows.append(f"| `{side}` | {w:.1f} | {w / user_wall:.2f} | {c:.1f} | {c - user_cpu:+.1f} |")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    before = f" `sop@{args.before}` is the plugin as committed at `{args.before}`." if args.before else ""
    before_arg = f" --before {args.before}" if args.before else ""
    table = "\n".join(rows)
    return f"""{SECTION_TITLE}

What the gap in the section above is made of (informational, no verdict). Sides: `user` is
`bench_case.py --user-loop`; `pytest` is the same client calls written as a parametrized pytest
test run with `--alluredir` (pytest's and allure-pytest's own work per test); `sop` is the SOP
case of the section above, with this tree's plugin.{before} Medians of {args.runs} rounds (+{args.warmup}
warm-up), N1 = {args.n1}, N2 = {args.n2}, sides interleaved, order reversed every other round.

- Date: {today}; load average at the end: {load}
- Machine: {machine()}; {server}

| Side | Wall per case (ms) | Wall / `user` | CPU per case (ms) | CPU beyond `user` (ms) |
|--|--:|--:|--:|--:|
{table}

Reproduce:

```sh
python benchmarks/bench_case_parts.py --n1 {args.n1} --n2 {args.n2} --runs {args.runs}{before_arg} --write-docs
```
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n1", type=int, default=5)
    parser.add_argument("--n2", type=int, default=45)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--before", metavar="REF", help="also measure the plugin as committed at this git ref")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--docs", type=Path, default=bench_case.DEFAULT_DOCS)
    args = parser.parse_args(argv)
    if not 0 < args.n1 < args.n2 or args.runs < 1:
        parser.error("expected 0 < --n1 < --n2 and --runs >= 1")
    from pytest_sop.appium_server import ManagedAppium, find_appium_home

    home = find_appium_home(bench_case.REPO)
    if home is None:
        print("benchmark broken: no node_modules/appium (run npm ci)", file=sys.stderr)
        return 2
    os.environ["PYTHONPATH"] = str(bench_case.REPO)
    with tempfile.TemporaryDirectory(prefix="bench-parts-") as tmp:
        server = ManagedAppium(home, log_path=Path(tmp) / "appium.log")
        try:
            url = server.start()
            versions = appium_version(home)
            out = measure(args, url, Path(tmp))
        except BenchBroken as e:
            print(f"benchmark broken: {e}", file=sys.stderr)
            return 2
        finally:
            server.stop()
    section = render(args, out, versions)
    print(section)
    if args.write_docs:
        write_section(args.docs, section, SECTION_RE)
        print(f"wrote {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
