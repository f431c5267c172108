"""A big suite fits in memory: equal steps are shared, parse-time structures are dropped.

Budgets are bytes per SOP file measured with tracemalloc (allocation sizes, not timing, so the
numbers do not depend on the machine's load). benchmarks/bench_collect.py measures the whole
process against pytest's Python files; these tests pin what the plugin itself keeps.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

from sopsuite import SOP_YAML

from pytest_sop.actions import build_registry
from pytest_sop.model import Locator, Template
from pytest_sop.suite import Suite
from pytest_sop.suiteconfig import load_config

# Ten steps, as in the benchmark: repeated by every file but for the screenshot name and caption.
SOP = """\
id: sop-{n}
title: Procedure {n}
owner: qa-team
tags: [bench, smoke]
severity: critical
app: social
requires:
  device: {{platform: android, tags: [phone]}}
  account: {{role: publisher}}
inputs:
  - {{id: main, caption: "Caption {n}"}}
steps:
  - launch_app
  - wait_for: {{id: login_screen}}
    timeout: 15
  - type: {{into: {{id: username}}, text: "${{account.username}}"}}
  - type: {{into: {{id: password}}, text: "${{account.password}}"}}
  - tap: {{id: sign_in}}
  - tap: {{accessibility_id: new_post}}
  - type: {{into: {{id: caption}}, text: "${{inputs.caption}}"}}
  - tap: {{id: publish}}
    name: publish the post
  - assert_text: {{in: {{id: status}}, contains: "${{inputs.caption}}"}}
  - screenshot: posted-{n}
"""
FILES = 300
# Measured when this test was written: 8.8 KiB per file at the peak and 4.0 KiB kept. Before,
# 38 KiB at the peak (every file's YAML data and position tables held until the first file was
# checked) and 10 KiB kept (each step its own copy of names, templates, locators, parameters).
PEAK_PER_FILE = 16 * 1024
KEPT_PER_FILE = 6 * 1024


def write_files(root: Path, files: int) -> None:
    (root / "sop.yaml").write_text(SOP_YAML, encoding="utf-8")
    for i in range(files):
        folder = root / f"area-{i // 100}"
        folder.mkdir(exist_ok=True)
        (folder / f"sop-{i:04d}.sop.yaml").write_text(SOP.format(n=f"{i:04d}"), encoding="utf-8")


def collect(root: Path) -> tuple[Suite, list[str]]:
    suite = Suite(load_config(str(root / "sop.yaml")), build_registry(), str(root), base=str(root))
    paths = list(suite.scan())
    for path in paths:
        result = suite.result(path)
        assert not result.errors, [e.format() for e in result.errors]
        assert len(result.cases) == 1
    return suite, paths


def test_identical_steps_in_different_files_share_their_parts(tmp_path: Path) -> None:
    write_files(tmp_path, 2)
    suite, paths = collect(tmp_path)
    a, b = (suite.result(p).cases[0].sop for p in paths)
    assert a.id != b.id
    for one, other in zip(a.steps[:-1], b.steps[:-1], strict=True):
        assert one.params is other.params  # the same parameters, locators and templates
        assert one.action is other.action
        assert one.pos is not other.pos and one.pos.file != other.pos.file  # each step knows its own file
    for step in a.steps[:-1]:
        for value in step.params.values():
            assert isinstance(value, Locator | Template)
    assert a.steps[-1].params == {"name": Template("posted-0000", ("posted-0000",))}
    assert a.steps[-1].params is not b.steps[-1].params
    assert a.steps[1].timeout == 15 and isinstance(a.steps[1].timeout, int)
    assert a.steps[7].name is b.steps[7].name == "publish the post"
    assert a.owner is b.owner and a.tags is b.tags and a.device is b.device and a.account is b.account
    assert a.inputs[0].values["caption"] == "Caption 0000"


def test_equal_values_of_different_types_are_not_merged(tmp_path: Path) -> None:
    (tmp_path / "sop.yaml").write_text(SOP_YAML, encoding="utf-8")
    for name, seconds in (("a", "2"), ("b", "2.0")):
        (tmp_path / f"{name}.sop.yaml").write_text(f"id: wait-{name}\nsteps:\n  - wait: {seconds}\n", encoding="utf-8")
    suite, paths = collect(tmp_path)
    waits = [suite.result(p).cases[0].sop.steps[0].params["seconds"] for p in paths]
    assert [type(w) for w in waits] == [int, float]


def test_a_suite_of_many_files_stays_within_its_memory_budget(tmp_path: Path) -> None:
    write_files(tmp_path, FILES)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        suite, paths = collect(tmp_path)
        gc.collect()
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(paths) == FILES
    per_file_peak = (peak - before) / FILES
    per_file_kept = (kept - before) / FILES
    assert per_file_peak < PEAK_PER_FILE, f"peak {per_file_peak:.0f} bytes per SOP file"
    assert per_file_kept < KEPT_PER_FILE, f"kept {per_file_kept:.0f} bytes per SOP file"
    assert suite.get_sop("sop-0000") is not None
