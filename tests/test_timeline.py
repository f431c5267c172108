"""The device timeline picture, from synthetic Allure result files."""

from __future__ import annotations

import datetime as dt
import json
import os
import struct
import subprocess
import uuid
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from typing import Any

import pytest

from pytest_sop.timeline import (
    NO_DEVICE,
    STATUS_COLOURS,
    build_timeline,
    format_duration,
    read_results,
    write_timeline,
)

SVG = "{http://www.w3.org/2000/svg}"
T0 = 1_760_000_000_000  # ms since the epoch
CHROMIUM = Path("/usr/bin/chromium")


def write_result(
    results: Path,
    name: str,
    status: str,
    start: float,
    stop: float,
    *,
    device: str | None = None,
    account: str | None = None,
    message: str | None = None,
    held: tuple[float | str, float | str] | None = None,
) -> None:
    """One ``*-result.json`` as allure-pytest writes it; ``start``/``stop`` in seconds after T0;
    ``held``: the lease and release labels pytest-sop adds (seconds after T0, or the label's text)."""
    labels = [{"name": "sop", "value": name.split("[")[0]}, {"name": "host", "value": "ci-runner"}]
    for label, at in zip(("leased", "released"), held or (), strict=False):
        labels.append({"name": label, "value": at if isinstance(at, str) else iso(at)})
    if device:
        labels.append({"name": "device", "value": device})
    if account:
        labels.append({"name": "account", "value": account})
    data: dict[str, Any] = {
        "name": name,
        "status": status,
        "uuid": str(uuid.uuid4()),
        "start": T0 + int(start * 1000),
        "stop": T0 + int(stop * 1000),
        "labels": labels,
    }
    if message is not None:
        data["statusDetails"] = {"message": message, "trace": "..."}
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{data['uuid']}-result.json").write_text(json.dumps(data), encoding="utf-8")


def iso(seconds: float) -> str:
    """T0 + ``seconds`` as the lease labels write it."""
    return dt.datetime.fromtimestamp(T0 / 1000 + seconds, tz=dt.UTC).isoformat(timespec="milliseconds")


def example_run(results: Path) -> None:
    write_result(results, "publish-post[cat-publisher-1]", "passed", 0, 42, device="pixel-a", account="publisher-1")
    write_result(
        results,
        "publish-post[dog-publisher-1]",
        "failed",
        43,
        95,
        device="pixel-a",
        account="publisher-1",
        message="pytest_sop.errors.StepFailed: text of {id: caption} is 'Dog'",
    )
    write_result(results, "login[eu]", "passed", 96, 99, device="pixel-a", account="publisher-2")
    write_result(
        results,
        "delete-account[a]",
        "broken",
        2,
        30,
        device="pixel-b",
        account="admin-1",
        message="session not created",
    )
    write_result(
        results, "approve-post", "skipped", 31, 48, device="pixel-b", message="Skipped: awaiting approval: caption-ok"
    )
    write_result(results, "settings-smoke", "passed", 5, 65, device="iphone-15")
    write_result(results, "publish-post[not-allowed]", "skipped", 0, 0, message="Skipped: not permitted: role qa")


def lanes(svg: str) -> dict[str, list[ET.Element]]:
    root = ET.fromstring(svg)
    out: dict[str, list[ET.Element]] = {}
    for lane in root.iter(f"{SVG}g"):
        if lane.get("class") == "lane":
            out[lane.get("data-device", "")] = [g for g in lane.iter(f"{SVG}g") if "bar" in g.get("class", "").split()]
    return out


def bar_rect(bar: ET.Element) -> ET.Element:
    rect = bar.find(f"{SVG}rect")
    assert rect is not None
    return rect


def tooltip(bar: ET.Element) -> str:
    return bar.findtext(f"{SVG}title") or ""


def test_one_lane_per_device_and_a_bar_per_case(tmp_path: Path) -> None:
    example_run(tmp_path)
    svg = build_timeline(tmp_path)
    root = ET.fromstring(svg)  # valid XML
    assert root.tag == f"{SVG}svg"
    by_lane = lanes(svg)
    assert list(by_lane) == ["iphone-15", "pixel-a", "pixel-b", NO_DEVICE]  # devices sorted, "no device" last
    names = {dev: [b.get("data-case") for b in bars] for dev, bars in by_lane.items()}
    assert names == {
        "iphone-15": ["settings-smoke"],
        "pixel-a": ["publish-post[cat-publisher-1]", "publish-post[dog-publisher-1]", "login[eu]"],
        "pixel-b": ["delete-account[a]", "approve-post"],
        NO_DEVICE: ["publish-post[not-allowed]"],
    }


def test_bars_are_coloured_by_status(tmp_path: Path) -> None:
    example_run(tmp_path)
    bars = [b for bs in lanes(build_timeline(tmp_path)).values() for b in bs]
    expected = {
        "publish-post[cat-publisher-1]": "passed",
        "publish-post[dog-publisher-1]": "failed",
        "delete-account[a]": "broken",
        "approve-post": "skipped",
    }
    for bar in bars:
        status = bar.get("data-status")
        assert bar_rect(bar).get("fill") == STATUS_COLOURS[str(status)][0]
        if bar.get("data-case") in expected:
            assert status == expected[str(bar.get("data-case"))]
    assert STATUS_COLOURS["passed"][0] == "#2f9e44"  # green
    assert STATUS_COLOURS["failed"][0] == "#e03131"  # red
    assert STATUS_COLOURS["broken"][0] == "#f59f00"  # amber
    assert STATUS_COLOURS["skipped"][0] == "#adb5bd"  # grey


def test_bars_sit_on_the_time_axis(tmp_path: Path) -> None:
    example_run(tmp_path)
    pixel_a = lanes(build_timeline(tmp_path))["pixel-a"]
    rects = [bar_rect(b) for b in pixel_a]
    xs = [float(r.get("x", "nan")) for r in rects]
    widths = [float(r.get("width", "nan")) for r in rects]
    assert xs == sorted(xs)
    assert all(x0 + w <= x1 for x0, w, x1 in zip(xs, widths, xs[1:], strict=False))  # one case at a time
    assert widths[0] / widths[1] == pytest.approx(42 / 52, rel=0.02)  # lengths follow durations


def test_tooltips_name_case_account_status_and_duration(tmp_path: Path) -> None:
    example_run(tmp_path)
    bar = lanes(build_timeline(tmp_path))["pixel-a"][1]
    tip = tooltip(bar)
    assert "publish-post[dog-publisher-1]" in tip
    assert "account: publisher-1" in tip
    assert "status: failed" in tip
    assert "duration: 52.0s" in tip
    assert "text of {id: caption} is 'Dog'" in tip


def bar_labels(svg: str) -> dict[str, tuple[str, str]]:
    """case -> (label text, where: inside/right/left)."""
    out = {}
    for bars in lanes(svg).values():
        for bar in bars:
            text = bar.find(f"{SVG}text")
            if text is None:
                continue
            rect = bar_rect(bar)
            x, x0 = float(text.get("x", "nan")), float(rect.get("x", "nan"))
            where = (
                "left"
                if text.get("text-anchor") == "end"
                else "inside"
                if x < x0 + float(rect.get("width", 0))
                else "right"
            )
            out[str(bar.get("data-case"))] = (text.text or "", where)
    return out


def test_case_names_are_written_on_or_next_to_bars(tmp_path: Path) -> None:
    """Each bar carries its legend number, and its case name where the whole name fits."""
    example_run(tmp_path)
    labels = bar_labels(build_timeline(tmp_path))
    assert labels["publish-post[cat-publisher-1]"] == ("2 publish-post[cat-publisher-1]", "inside")
    assert labels["publish-post[dog-publisher-1]"] == ("6 publish-post[dog-publisher-1]", "inside")
    assert labels["publish-post[not-allowed]"] == ("1 publish-post[not-allowed]", "right")  # an instant
    # too short a bar between its neighbour and the end for its name: its number, the name in the legend
    assert labels["login[eu]"] == ("7", "inside")
    assert tooltip(lanes(build_timeline(tmp_path))["pixel-a"][2]).startswith("login[eu]\n")


def case_key(svg: str) -> dict[str, str]:
    """case -> its line in the cases' legend."""
    root = ET.fromstring(svg)
    return {
        str(g.get("data-case")): "".join(g.itertext())
        for g in root.iter(f"{SVG}g")
        if g.get("class") == "case-key-item"
    }


def test_no_name_is_ever_cut_short(tmp_path: Path) -> None:
    """A name that does not fit is not cut: the bar shows its number, the legend the whole name."""
    long_name = "very-long-sop-name-for-checking-truncation[row-with-a-long-id-admin-1]"
    long_device = "emulator-5554-on-the-lab-rack-in-building-7-second-floor-left"
    write_result(tmp_path, "a", "passed", 0, 30, device=long_device)
    write_result(tmp_path, long_name, "passed", 30.5, 50, device=long_device)
    write_result(tmp_path, "c", "passed", 50.5, 100, device=long_device)
    svg = build_timeline(tmp_path)
    assert "…" not in svg
    assert bar_labels(svg)[long_name] == ("2", "inside")
    assert case_key(svg)[long_name] == f"2 {long_name} · {long_device} · passed · 19.5s"
    root = ET.fromstring(svg)
    assert [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "lane-label"] == [long_device]


def test_the_legend_lists_every_case_by_number(tmp_path: Path) -> None:
    example_run(tmp_path)
    svg = build_timeline(tmp_path)
    key = case_key(svg)
    assert len(key) == 7
    assert key["login[eu]"] == "7 login[eu] · pixel-a · passed · 3.0s"
    assert key["publish-post[not-allowed]"].startswith(f"1 publish-post[not-allowed] · {NO_DEVICE} · skipped")
    numbers = {bar.get("data-case"): bar.get("data-key") for bars in lanes(svg).values() for bar in bars}
    assert numbers == {case: line.split(" ", 1)[0] for case, line in key.items()}
    # the legend is inside the picture
    root = ET.fromstring(svg)
    height = float(root.get("height", "0"))
    ys = [
        float(t.get("y", "0"))
        for g in root.iter(f"{SVG}g")
        if g.get("class") == "case-key"
        for t in g.iter(f"{SVG}text")
    ]
    assert ys and max(ys) < height


def test_labels_go_left_when_the_right_is_taken(tmp_path: Path) -> None:
    write_result(tmp_path, "first-case", "passed", 0, 50, device="pixel-a")
    write_result(tmp_path, "short-one", "failed", 80, 81, device="pixel-a")
    write_result(tmp_path, "last-case", "passed", 81.5, 120, device="pixel-a")
    labels = bar_labels(build_timeline(tmp_path))
    assert labels["short-one"] == ("2 short-one", "left")
    assert labels["first-case"] == ("1 first-case", "inside")


def test_axis_legend_and_summary(tmp_path: Path) -> None:
    example_run(tmp_path)
    root = ET.fromstring(build_timeline(tmp_path))
    ticks = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert ticks[0] == "0s"
    assert "1m" in ticks and "30s" in ticks
    legend = {
        g.get("data-status"): "".join(g.itertext()) for g in root.iter(f"{SVG}g") if g.get("class") == "legend-item"
    }
    assert legend == {"passed": "passed 3", "failed": "failed 1", "broken": "broken 1", "skipped": "skipped 2"}
    summary = next(t.text for t in root.iter(f"{SVG}text") if t.get("class") == "summary")
    assert summary is not None and summary.startswith("7 cases on 3 devices")
    assert "1m 39s" in summary


def test_long_runs_get_hour_ticks(tmp_path: Path) -> None:
    write_result(tmp_path, "soak[1]", "passed", 0, 3 * 3600, device="pixel-a")
    root = ET.fromstring(build_timeline(tmp_path))
    ticks = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert {"1h", "2h", "3h"} <= set(ticks)


def test_no_results_gives_a_clear_picture(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "missing"):
        svg = build_timeline(folder)
        root = ET.fromstring(svg)
        assert lanes(svg) == {}
        assert any("No cases" in (t.text or "") for t in root.iter(f"{SVG}text"))


def test_files_that_are_not_results_are_left_out(tmp_path: Path) -> None:
    write_result(tmp_path, "ok", "passed", 0, 1, device="pixel-a")
    (tmp_path / "torn-result.json").write_text('{"name": "half', encoding="utf-8")  # a writer mid-way
    (tmp_path / "list-result.json").write_text("[]", encoding="utf-8")
    (tmp_path / "nostart-result.json").write_text('{"name": "never started", "status": "broken"}', encoding="utf-8")
    (tmp_path / "x-container.json").write_text('{"start": 1, "stop": 2}', encoding="utf-8")
    (tmp_path / "y-attachment.png").write_bytes(b"\x89PNG")
    (tmp_path / "categories.json").write_text("[]", encoding="utf-8")
    assert [r.name for r in read_results(tmp_path)] == ["ok"]


def test_plain_python_tests_can_be_left_out(tmp_path: Path) -> None:
    example_run(tmp_path)
    plain = {"name": "test_parser", "status": "passed", "start": T0, "stop": T0 + 10, "labels": []}
    (tmp_path / "plain-result.json").write_text(json.dumps(plain), encoding="utf-8")
    assert "test_parser" in [r.name for r in read_results(tmp_path)]  # lane "no device"
    only = [r.name for r in read_results(tmp_path, only_sops=True)]
    assert "test_parser" not in only and "publish-post[not-allowed]" in only and len(only) == 7


def test_odd_values_are_drawn_safely(tmp_path: Path) -> None:
    write_result(
        tmp_path,
        'weird <&> "quoted" [row]',
        "in-progress",  # not an Allure status
        0,
        2,
        device='dev<&">',
        message="\x1b[31mred\x1b[0m & <b>",
    )
    data = json.loads(next(tmp_path.glob("*-result.json")).read_text())
    data["stop"] = data["start"] - 5  # stop before start: drawn as an instant
    next(tmp_path.glob("*-result.json")).write_text(json.dumps(data))
    svg = build_timeline(tmp_path)
    by_lane = lanes(svg)
    (bar,) = by_lane['dev<&">']
    assert bar.get("data-status") == "unknown"
    assert bar.get("data-case") == 'weird <&> "quoted" [row]'
    assert "[31mred" in tooltip(bar) and "\x1b" not in svg
    assert float(bar_rect(bar).get("width", "0")) >= 3  # an instant is still visible


def test_overlapping_cases_without_a_device_get_their_own_rows(tmp_path: Path) -> None:
    write_result(tmp_path, "a", "skipped", 0, 10)
    write_result(tmp_path, "b", "skipped", 5, 15)
    write_result(tmp_path, "c", "skipped", 11, 20)
    y = {
        bar.get("data-case"): float(bar_rect(bar).get("y", "nan")) for bar in lanes(build_timeline(tmp_path))[NO_DEVICE]
    }
    ya, yb, yc = y["a"], y["b"], y["c"]
    assert ya != yb  # a and b overlap in time
    assert yc == ya  # c starts after a ended: back on the first row


def test_a_bar_spans_the_lease_to_the_release(tmp_path: Path) -> None:
    """The device is busy with a case from its lease (its session created first) to its release, not
    only while allure-pytest times its steps: the bar shows that span, the tooltip both."""
    write_result(tmp_path, "first", "passed", 2, 8, device="pixel-a", held=(0, 9))
    write_result(tmp_path, "second", "failed", 12, 19, device="pixel-a", held=(9.5, 20))
    write_result(tmp_path, "plain", "passed", 3, 5, device="pixel-b")  # no lease labels: its steps
    runs = {r.name: r for r in read_results(tmp_path)}
    assert (runs["first"].start, runs["first"].stop, runs["first"].steps_ms) == (T0, T0 + 9000, 6000)
    assert (runs["second"].start, runs["second"].stop) == (T0 + 9500, T0 + 20_000)
    assert (runs["plain"].start, runs["plain"].stop, runs["plain"].held) == (T0 + 3000, T0 + 5000, False)

    svg = build_timeline(tmp_path)
    bars = lanes(svg)
    first, second = (bar_rect(b) for b in bars["pixel-a"])
    (plain,) = (bar_rect(b) for b in bars["pixel-b"])
    x, w = float(first.get("x", "nan")), float(first.get("width", "nan"))
    x2, w2 = float(second.get("x", "nan")), float(second.get("width", "nan"))
    px, pw = float(plain.get("x", "nan")), float(plain.get("width", "nan"))
    assert w / w2 == pytest.approx(9 / 10.5, rel=0.01)  # lease -> release, not the steps' 6 / 7
    assert (x2 - x) / w == pytest.approx(9.5 / 9, rel=0.01)  # the axis starts at the first lease
    assert (px - x) / w == pytest.approx(3 / 9, rel=0.01) and pw / w == pytest.approx(2 / 9, rel=0.01)
    tip = tooltip(bars["pixel-a"][1])
    assert "duration: 10.5s on the device, lease to release" in tip and "steps: 7.0s" in tip, tip
    assert "leased: " in tip
    assert case_key(svg)["second"] == "3 second · pixel-a · failed · 10.5s"  # numbered by when it took its device


def test_unusable_lease_labels_fall_back_to_the_steps(tmp_path: Path) -> None:
    write_result(tmp_path, "backwards", "passed", 2, 4, device="d", held=(9, 1))  # released before leased
    write_result(tmp_path, "garbled", "passed", 5, 6, device="d", held=("yesterday", "today"))
    write_result(tmp_path, "no-offset", "passed", 7, 8, device="d", held=("2025-10-09T08:53:20", iso(9)))
    runs = {r.name: (r.start, r.stop, r.held) for r in read_results(tmp_path)}
    assert runs == {
        "backwards": (T0 + 2000, T0 + 4000, False),
        "garbled": (T0 + 5000, T0 + 6000, False),
        "no-offset": (T0 + 7000, T0 + 8000, False),
    }


def run_on_one_fake_device(tmp_path: Path, appium_url: str, files: dict[str, str]) -> Path:
    """Run the suite ``files`` on one fake device, with an alluredir; it must pass. Its results folder."""
    from test_parallel import clean_env, fake_device, pytest_cmd, write_suite

    write_suite(tmp_path, "devices:\n" + fake_device("dev-a"), files)
    results = tmp_path / "allure"
    proc = subprocess.run(
        pytest_cmd("--sop-appium", appium_url, f"-o=sop_lock_dir={tmp_path / 'locks'}", f"--alluredir={results}"),
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return results


def test_a_real_runs_bars_span_its_audit_logs_lease_and_release(tmp_path: Path, appium_url: str) -> None:
    """A run with the fake driver: each case's bar begins no later than its lease line and ends no
    earlier than its release line (the labels are taken around them), and holds its steps."""
    from test_parallel import holds_from, read_events

    results = run_on_one_fake_device(
        tmp_path, appium_url, {"s.sop.yaml": "id: s\ninputs: [{id: one}, {id: two}]\nsteps:\n  - wait: 0.3\n"}
    )
    holds = {h.case.split("::")[1]: h for h in holds_from("run", read_events(results / "sop-audit.jsonl"))}
    runs = {r.name: r for r in read_results(results, only_sops=True)}
    assert set(runs) == set(holds) == {"s[one]", "s[two]"}
    for name, run in runs.items():
        hold = holds[name]
        assert hold.end is not None and run.held and run.steps_ms is not None
        lease, release = hold.start.timestamp() * 1000, hold.end.timestamp() * 1000
        assert run.start <= lease + 1 and run.stop >= release - 1, (run, hold)
        assert lease - run.start < 2000 and run.stop - release < 2000, (run, hold)
        assert run.stop - run.start >= run.steps_ms >= 300


def test_the_timeline_waits_for_results_still_being_written(tmp_path: Path, appium_url: str) -> None:
    """Allure results are written off the case's thread; the run's end waits for them before it draws
    the timeline from them. Here writing a result takes 0.5 s, so without that wait the last cases
    would be missing from the picture."""
    slow_writer = (
        "import time\nfrom allure_commons.logger import AllureFileLogger\n"
        "_write = AllureFileLogger._report_item\n\n\n"
        "def slow(self, item):\n    time.sleep(0.5)\n    _write(self, item)\n\n\n"
        "AllureFileLogger._report_item = slow\n"
    )
    sop = "id: s\ninputs: [{id: first}, {id: second}, {id: third}]\nsteps:\n  - wait: 0\n"
    results = run_on_one_fake_device(tmp_path, appium_url, {"s.sop.yaml": sop, "conftest.py": slow_writer})
    svg = (results / "device-timeline.svg").read_text()
    assert all(f"s[{name}]" in svg for name in ("first", "second", "third")), svg[-2000:]


def test_format_duration() -> None:
    assert format_duration(850) == "850ms"
    assert format_duration(12_340) == "12.3s"
    assert format_duration(125_000) == "2m 05s"
    assert format_duration(3_725_000) == "1h 02m"


def test_write_timeline(tmp_path: Path) -> None:
    example_run(tmp_path / "allure-results")
    out = write_timeline(tmp_path / "allure-results", tmp_path / "report" / "device-timeline.svg")
    assert out == tmp_path / "report" / "device-timeline.svg"
    assert out.read_text(encoding="utf-8") == build_timeline(tmp_path / "allure-results")


# -- looking at it ------------------------------------------------------------------------------


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit, non-interlaced RGB/RGBA PNG (what Chromium writes): width, height, rows."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0
    bpp = 4 if colour == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line) if bpp == 3 else _rgb(bytes(line)))
        prev = line
    return width, height, rows


def _rgb(rgba: bytes) -> bytes:
    return b"".join(rgba[i : i + 3] for i in range(0, len(rgba), 4))


def count_colour(rows: list[bytes], hex_colour: str) -> int:
    want = bytes.fromhex(hex_colour.lstrip("#"))
    return sum(row[i : i + 3] == want for row in rows for i in range(0, len(row), 3))


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_timeline_renders_to_a_real_picture(tmp_path: Path) -> None:
    example_run(tmp_path / "results")
    svg = write_timeline(tmp_path / "results", tmp_path / "timeline.svg")
    png = tmp_path / "timeline.png"
    subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={png}",
            "--window-size=1200,400",
            svg.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert png.exists(), "chromium wrote no screenshot"
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, rows = png_pixels(data)
    assert (width, height) == (1200, 400)
    # every status on the picture shows as a solid area of its colour, not a blank page
    for status in ("passed", "failed", "broken", "skipped"):
        assert count_colour(rows, STATUS_COLOURS[status][0]) > 500, status
