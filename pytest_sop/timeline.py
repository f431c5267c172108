"""The device timeline: which device ran which case when, and how it ended, as one SVG picture.

It reads the Allure results a run wrote (``*-result.json``: labels ``device``, ``sop`` and
``account``, ``status``, ``name``) and draws one lane per device with a bar per case, coloured by
status, on a shared time axis. A bar spans the time the case held its device: from its lease to
its release (labels ``leased`` and ``released``, UTC ISO 8601), its session's creation and end
included; allure-pytest's ``start``/``stop`` time only the steps. A result without those labels
(a Python test that leased nothing, results of an older run) is drawn from ``start`` to ``stop``. Stdlib only, and the
picture is self-contained: open it in a browser, attach it to a report, put it in a PR comment.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape

from .allure_meta import write_text_atomic

NO_DEVICE = "no device"

# status -> (bar fill, text on the bar); Allure's meaning, colours that stay apart for most eyes.
STATUS_COLOURS: dict[str, tuple[str, str]] = {
    "passed": ("#2f9e44", "#ffffff"),
    "failed": ("#e03131", "#ffffff"),
    "broken": ("#f59f00", "#1f2328"),
    "skipped": ("#adb5bd", "#1f2328"),
    "unknown": ("#7048e8", "#ffffff"),
}
STATUS_ORDER = ("passed", "failed", "broken", "skipped", "unknown")

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
CHAR_W = 6.6  # a generous average glyph width at 11px, for fitting labels without measuring
PAD = 16
TOP = 72  # title, subtitle and legend above the lanes
ROW_H = 26
BAR_H = 18
LANE_PAD = 5
AXIS_H = 34
MIN_BAR_W = 3.0
MIN_PLOT_W = 360  # the time axis never gets narrower than this
KEY_HEAD = 26  # the cases' legend: its heading, then one line per case
KEY_ROW_H = 16
KEY_SWATCH = 14
KEY_GAP = 24


@dataclass(frozen=True)
class CaseRun:
    """One Allure result, as the timeline needs it."""

    name: str
    device: str
    sop: str | None
    account: str | None
    status: str
    start: int  # ms since the epoch: the lease (else Allure's start)
    stop: int  # the release (else Allure's stop)
    message: str = ""
    steps_ms: int | None = None  # Allure's start -> stop, when the bar is the lease -> release

    @property
    def held(self) -> bool:
        """The bar is the device's lease -> release, not only the steps."""
        return self.steps_ms is not None

    @property
    def duration_ms(self) -> int:
        return self.stop - self.start


def _number(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


def _ms(v: str | None) -> int | None:
    """An ISO 8601 time with its offset, as ms since the epoch; None when it is not one."""
    if v is None:
        return None
    try:
        when = datetime.fromisoformat(v)
    except ValueError:
        return None
    return round(when.timestamp() * 1000) if when.tzinfo is not None else None


def _parse_result(data: object, fallback_name: str) -> CaseRun | None:
    if not isinstance(data, dict):
        return None
    start, stop = _number(data.get("start")), _number(data.get("stop"))
    if start is None:
        return None  # never started: nothing to place on a time axis
    if stop is None or stop < start:
        stop = start
    labels: dict[str, str] = {}
    for label in data.get("labels") or ():
        if isinstance(label, dict) and isinstance(label.get("name"), str) and isinstance(label.get("value"), str):
            labels.setdefault(label["name"], label["value"])
    status = data.get("status")
    details = data.get("statusDetails")
    message = details.get("message") if isinstance(details, dict) else None
    name = data.get("name") or data.get("fullName") or labels.get("sop") or fallback_name
    steps_ms = None
    leased, released = _ms(labels.get("leased")), _ms(labels.get("released"))
    if leased is not None and released is not None and released >= leased:
        steps_ms = int(stop - start)
        start, stop = leased, released
    return CaseRun(
        name=str(name),
        device=labels.get("device") or NO_DEVICE,
        sop=labels.get("sop"),
        account=labels.get("account"),
        status=status if isinstance(status, str) and status in STATUS_COLOURS else "unknown",
        start=int(start),
        stop=int(stop),
        message=message.strip().splitlines()[0] if isinstance(message, str) and message.strip() else "",
        steps_ms=steps_ms,
    )


def read_results(results_dir: str | os.PathLike[str], *, only_sops: bool = False) -> list[CaseRun]:
    """Every readable ``*-result.json`` in ``results_dir``, oldest first. A file that is not
    (yet) valid JSON, or a result without a start time, is left out rather than failing the run.
    With ``only_sops``, so are results with neither a ``sop`` nor a ``device`` label (plain
    Python tests that share the results folder)."""
    runs: list[CaseRun] = []
    for path in sorted(Path(results_dir).glob("*-result.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        run = _parse_result(data, path.name.removesuffix("-result.json"))
        if run is not None and not (only_sops and run.sop is None and run.device == NO_DEVICE):
            runs.append(run)
    runs.sort(key=lambda r: (r.start, r.stop, r.name))
    return runs


# -- formatting -------------------------------------------------------------------------------


def _clean(text: str) -> str:
    """Only characters XML 1.0 allows (a failure message may carry ANSI escapes)."""
    return "".join(
        ch
        for ch in text
        if ch in "\t\n\r" or ("\x20" <= ch <= "\ud7ff") or ("\ue000" <= ch <= "\ufffd") or ch >= "\U00010000"
    )


def _text(text: str) -> str:
    return escape(_clean(text))


def _attr(text: str) -> str:
    return escape(_clean(text), {'"': "&quot;", "\n": "&#10;", "\t": "&#9;", "\r": "&#13;"})


def _n(v: float) -> str:
    return f"{v:.1f}".removesuffix(".0")


def format_duration(ms: float) -> str:
    """``850ms``, ``12.3s``, ``2m 05s``, ``1h 02m``."""
    if ms < 1000:
        return f"{ms:.0f}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    total = round(ms / 1000)
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s"


def _tick_label(ms: int, step: int) -> str:
    if step < 1000:
        return f"{ms / 1000:.1f}s"
    total = round(ms / 1000)
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    parts = [f"{h}h" if h else "", f"{m}m" if m else "", f"{s}s" if s else ""]
    return " ".join(p for p in parts if p) or "0s"


_STEPS_MS = [
    n * unit
    for unit, ns in ((1, (100, 200, 500)), (1000, (1, 2, 5, 10, 15, 30)), (60_000, (1, 2, 5, 10, 15, 30)))
    for n in ns
] + [h * 3_600_000 for h in (1, 2, 3, 6, 12, 24, 48)]


def _tick_step(span_ms: int, max_ticks: int) -> int:
    for step in _STEPS_MS:
        if span_ms / step <= max_ticks:
            return step
    return _STEPS_MS[-1] * math.ceil(span_ms / (_STEPS_MS[-1] * max_ticks))


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


# -- layout -----------------------------------------------------------------------------------


@dataclass
class _Bar:
    run: CaseRun
    x0: float
    x1: float
    key: int  # the case's number in the legend (in start order)
    row: int = 0


def _pack(bars: list[_Bar]) -> int:
    """Give each bar the first row of its lane where it overlaps nothing; return the row count.
    One device runs one case at a time, so a device lane is one row; "no device" may need more."""
    ends: list[float] = []
    for bar in bars:
        for i, end in enumerate(ends):
            if end + 1 <= bar.x0:
                bar.row, ends[i] = i, bar.x1
                break
        else:
            bar.row = len(ends)
            ends.append(bar.x1)
    return max(1, len(ends))


def _lane_order(device: str) -> tuple[int, str]:
    return (device == NO_DEVICE, device)


def _svg_open(width: int, height: int, label: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="{_attr(FONT)}" role="img" aria-label="{_attr(label)}">',
        f"<title>{_text(label)}</title>",
        "<style>"
        ".bar rect{stroke:#ffffff;stroke-width:1}"
        ".bar:hover rect{stroke:#1f2328;stroke-width:1.5}"
        ".tick{font-size:11px;fill:#57606a}"
        "</style>",
        f'<rect class="background" x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]


def _empty_svg(width: int) -> str:
    height = 120
    out = _svg_open(width, height, "Device timeline: no cases")
    out += [
        f'<text x="{PAD}" y="30" font-size="16" font-weight="600" fill="#1f2328">Device timeline</text>',
        f'<text class="empty" x="{width / 2:.0f}" y="74" font-size="14" fill="#57606a" text-anchor="middle">'
        "No cases in this run: the results hold no case with a start time.</text>",
        "</svg>",
    ]
    return "\n".join(out) + "\n"


def _legend(counts: dict[str, int], right: float, y: float) -> list[str]:
    items = [(s, counts[s]) for s in STATUS_ORDER if counts.get(s) or s != "unknown"]
    out: list[str] = ['<g class="legend">']
    x = right
    for status, count in reversed(items):
        label = f"{status} {count}"
        w = 14 + len(label) * CHAR_W + 14
        x -= w
        fill = STATUS_COLOURS[status][0]
        out.append(
            f'<g class="legend-item" data-status="{status}">'
            f'<rect x="{_n(x)}" y="{_n(y - 9)}" width="10" height="10" rx="2" fill="{fill}"/>'
            f'<text x="{_n(x + 14)}" y="{_n(y)}" font-size="11" fill="#1f2328">{_text(label)}</text></g>'
        )
    out.append("</g>")
    return out


def render_timeline(runs: Sequence[CaseRun], *, width: int = 1200) -> str:
    """The SVG for ``runs`` (see :func:`read_results`)."""
    if not runs:
        return _empty_svg(width)
    width = max(width, 480)
    t0 = min(r.start for r in runs)
    t1 = max(r.stop for r in runs)
    span = max(t1 - t0, 1000)

    lanes: dict[str, list[CaseRun]] = {}
    for run in runs:
        lanes.setdefault(run.device, []).append(run)
    devices = sorted(lanes, key=_lane_order)

    # Device names are written whole: the lane labels are as wide as the longest, and the
    # picture wider when they would leave the bars too little room.
    label_w = max(max(len(d) for d in devices) * 7.2 + 24, 96)
    width = max(width, int(PAD + label_w + MIN_PLOT_W + PAD + 12))
    keys = {id(run): k for k, run in enumerate(runs, start=1)}
    key_lines, key_w = _case_key_lines(runs)
    width = max(width, int(2 * PAD + key_w))  # a legend line is never cut either
    x_left = PAD + label_w
    x_right = width - PAD - 12
    plot_w = x_right - x_left

    def x_of(ms: int) -> float:
        return x_left + (ms - t0) / span * plot_w

    lane_bars: dict[str, list[_Bar]] = {}
    lane_rows: dict[str, int] = {}
    for device in devices:
        bars = [
            _Bar(r, x_of(r.start), max(x_of(r.stop), x_of(r.start) + MIN_BAR_W), keys[id(r)]) for r in lanes[device]
        ]
        lane_rows[device] = _pack(bars)
        lane_bars[device] = bars

    lanes_h = sum(lane_rows[d] * ROW_H + 2 * LANE_PAD for d in devices)
    columns = max(1, int((width - 2 * PAD + KEY_GAP) // (key_w + KEY_GAP)))
    key_rows = math.ceil(len(runs) / columns)
    key_top = TOP + lanes_h + AXIS_H + 14
    height = key_top + KEY_HEAD + key_rows * KEY_ROW_H + 8
    counts = {s: sum(1 for r in runs if r.status == s) for s in STATUS_ORDER}
    n_dev = sum(1 for d in devices if d != NO_DEVICE)
    summary = (
        f"{len(runs)} case{'s' if len(runs) != 1 else ''} on {n_dev} device{'s' if n_dev != 1 else ''}"
        f" · started {_utc(t0):%Y-%m-%d %H:%M:%S} UTC · {format_duration(t1 - t0)}"
    )
    out = _svg_open(width, height, f"Device timeline: {summary}")
    out.append(f'<text x="{PAD}" y="28" font-size="16" font-weight="600" fill="#1f2328">Device timeline</text>')
    out.append(f'<text class="summary" x="{PAD}" y="48" font-size="12" fill="#57606a">{_text(summary)}</text>')
    out += _legend(counts, width - PAD, 28)

    # time axis: grid lines behind the lanes' bars, labels under them
    step = _tick_step(span, max(2, int(plot_w // 90)))
    axis_y = TOP + lanes_h
    grid: list[str] = ['<g class="axis">']
    for k in range(0, span // step + 1):
        ms = k * step
        x = x_of(t0 + ms)
        grid.append(f'<line x1="{_n(x)}" y1="{TOP}" x2="{_n(x)}" y2="{axis_y + 4}" stroke="#d0d7de" stroke-width="1"/>')
        anchor = "start" if k == 0 else "middle"
        tick = _text(_tick_label(ms, step))
        grid.append(f'<text class="tick" x="{_n(x)}" y="{axis_y + 18}" text-anchor="{anchor}">{tick}</text>')
    grid.append(
        f'<line x1="{_n(x_left)}" y1="{axis_y}" x2="{_n(x_right)}" y2="{axis_y}" stroke="#8c959f" stroke-width="1"/>'
    )
    caption = "time since the first case took its device"
    grid.append(f'<text class="tick" x="{_n(x_right)}" y="{axis_y + 31}" text-anchor="end">{caption}</text>')
    grid.append("</g>")

    stripes: list[str] = ['<g class="lane-backgrounds">']
    body: list[str] = []
    y = TOP
    for i, device in enumerate(devices):
        lane_h = lane_rows[device] * ROW_H + 2 * LANE_PAD
        if i % 2 == 0:
            stripes.append(f'<rect x="0" y="{y}" width="{width}" height="{lane_h}" fill="#f6f8fa"/>')
        stripes.append(f'<line x1="0" y1="{y + lane_h}" x2="{width}" y2="{y + lane_h}" stroke="#eaeef2"/>')
        body.append(f'<g class="lane" data-device="{_attr(device)}">')
        body += _lane_label(device, len(lane_bars[device]), y + lane_h / 2, label_w)
        body += _lane_bars(lane_bars[device], y + LANE_PAD, x_left, x_right + 12)
        body.append("</g>")
        y += lane_h
    stripes.append("</g>")

    # stripes under the grid, bars over it, the cases' legend under the axis
    out += stripes + grid + body
    out += _case_key(runs, key_lines, key_top, key_w, key_rows)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _lane_label(device: str, n_cases: int, mid: float, label_w: float) -> list[str]:
    name = device
    colour, style = ("#57606a", ' font-style="italic"') if device == NO_DEVICE else ("#1f2328", "")
    return [
        f'<text class="lane-label" x="{PAD}" y="{_n(mid - 2)}" font-size="12" font-weight="600" '
        f'fill="{colour}"{style}>{_text(name)}<title>{_text(device)}</title></text>',
        f'<text x="{PAD}" y="{_n(mid + 12)}" font-size="10" fill="#57606a">'
        f"{n_cases} case{'s' if n_cases != 1 else ''}</text>",
    ]


def _lane_bars(bars: list[_Bar], top: float, x_left: float, x_limit: float) -> list[str]:
    out: list[str] = []
    by_row: dict[int, list[_Bar]] = {}
    for bar in bars:
        by_row.setdefault(bar.row, []).append(bar)
    for row_bars in by_row.values():
        row_bars.sort(key=lambda b: b.x0)
        used = x_left  # right-most x taken by a bar or label so far in this row
        for j, bar in enumerate(row_bars):
            next_x = row_bars[j + 1].x0 if j + 1 < len(row_bars) else x_limit
            svg, used = _bar(bar, top + bar.row * ROW_H + (ROW_H - BAR_H) / 2, bar.x0 - used - 8, next_x - bar.x1 - 8)
            out.append(svg)
    return out


def _tooltip(run: CaseRun) -> str:
    tip = [
        run.name,
        f"device: {run.device}",
        f"account: {run.account or '—'}",
        f"status: {run.status}",
        f"duration: {format_duration(run.duration_ms)}" + (" on the device, lease to release" if run.held else ""),
    ]
    if run.steps_ms is not None:
        tip.append(f"steps: {format_duration(run.steps_ms)}")
    tip.append(f"{'leased' if run.held else 'started'}: {_utc(run.start):%H:%M:%S} UTC")
    if run.message:
        tip.append(run.message if len(run.message) <= 200 else run.message[:199] + "…")
    return "\n".join(tip)


def _bar(bar: _Bar, y: float, room_left: float, room_right: float) -> tuple[str, float]:
    """A bar with its tooltip and its label, never cut short: its legend number and case name where
    they fit (inside the bar, else right of it, else left of it), else the number alone (the legend
    has the name), placed the same way or, with no room anywhere, where there is most.
    Returns the SVG and the right-most x used."""
    run = bar.run
    fill, ink = STATUS_COLOURS[run.status]
    w = bar.x1 - bar.x0
    parts = [
        f'<g class="bar status-{run.status}" data-status="{run.status}" data-device="{_attr(run.device)}" '
        f'data-case="{_attr(run.name)}" data-key="{bar.key}">',
        f"<title>{_text(_tooltip(run))}</title>",
        f'<rect x="{_n(bar.x0)}" y="{_n(y)}" width="{_n(w)}" height="{BAR_H}" rx="3" fill="{fill}"/>',
    ]
    text_y = _n(y + BAR_H / 2 + 4)
    rooms = {"inside": w - 8, "right": room_right, "left": room_left}
    for text in (f"{bar.key} {run.name}", str(bar.key)):
        where = next((side for side, room in rooms.items() if len(text) * CHAR_W <= room), None)
        if where is not None:
            break
    else:
        where = max(rooms, key=lambda side: rooms[side])
    used = bar.x1
    if where == "inside":
        parts.append(f'<text x="{_n(bar.x0 + 4)}" y="{text_y}" font-size="11" fill="{ink}">{_text(text)}</text>')
    elif where == "right":
        parts.append(f'<text x="{_n(bar.x1 + 4)}" y="{text_y}" font-size="11" fill="#1f2328">{_text(text)}</text>')
        used = bar.x1 + 4 + len(text) * CHAR_W
    else:
        parts.append(
            f'<text x="{_n(bar.x0 - 4)}" y="{text_y}" font-size="11" fill="#1f2328" text-anchor="end">'
            f"{_text(text)}</text>"
        )
    parts.append("</g>")
    return "".join(parts), used


def _case_key_lines(runs: Sequence[CaseRun]) -> tuple[list[str], float]:
    """Each case's legend line (number, full name, device, status, duration) and the widest one's width."""
    lines = [
        f"{k} {run.name} · {run.device} · {run.status} · {format_duration(run.duration_ms)}"
        for k, run in enumerate(runs, start=1)
    ]
    return lines, KEY_SWATCH + max(len(line) for line in lines) * CHAR_W


def _case_key(runs: Sequence[CaseRun], lines: list[str], top: float, key_w: float, rows: int) -> list[str]:
    """The cases' legend: every case by its bar's number, with its whole name, in columns."""
    out = [
        '<g class="case-key">',
        f'<text x="{PAD}" y="{_n(top + 10)}" font-size="12" font-weight="600" fill="#1f2328">Cases</text>',
    ]
    for i, (run, line) in enumerate(zip(runs, lines, strict=True)):
        col, row = divmod(i, rows)
        x = PAD + col * (key_w + KEY_GAP)
        y = top + KEY_HEAD + row * KEY_ROW_H
        out.append(
            f'<g class="case-key-item" data-key="{i + 1}" data-case="{_attr(run.name)}" data-status="{run.status}">'
            f'<rect x="{_n(x)}" y="{_n(y - 9)}" width="10" height="10" rx="2" fill="{STATUS_COLOURS[run.status][0]}"/>'
            f'<text x="{_n(x + KEY_SWATCH)}" y="{_n(y)}" font-size="11" fill="#1f2328">{_text(line)}</text></g>'
        )
    out.append("</g>")
    return out


def build_timeline(results_dir: str | os.PathLike[str], *, width: int = 1200, only_sops: bool = False) -> str:
    """The device timeline of the Allure results in ``results_dir``, as SVG text."""
    return render_timeline(read_results(results_dir, only_sops=only_sops), width=width)


def write_timeline(
    results_dir: str | os.PathLike[str], out_path: str | os.PathLike[str], *, width: int = 1200, only_sops: bool = False
) -> Path:
    """Write :func:`build_timeline` to ``out_path`` (atomically) and return that path."""
    return write_text_atomic(out_path, build_timeline(results_dir, width=width, only_sops=only_sops))
