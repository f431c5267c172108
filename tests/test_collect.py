"""Valid SOP layouts become the pytest items users expect."""

from __future__ import annotations

import pytest
from sopsuite import write_suite

PUBLISH = """\
id: publish-post
title: Publish a post
tags: [smoke, social]
app: social
requires:
  device: {platform: android, tags: [phone]}
  account: {role: publisher, each: true}
inputs:
  - {id: cat, caption: Cat of the day}
  - {id: dog, caption: Dog}
steps:
  - launch_app
  - tap: {id: compose}
  - type: {into: {id: caption}, text: "${inputs.caption}"}
  - type: {into: {id: password}, text: "${account.password}"}
  - wait_for: {text: Posted}
    timeout: 10
"""

CHECK = """\
id: check-settings
tags: [regression]
steps:
  - tap: {accessibility_id: settings}
  - assert_visible: {text: Settings}
"""


def test_one_item_per_case_with_input_and_account_ids(pytester: pytest.Pytester) -> None:
    write_suite(pytester, {"publish.sop.yaml": PUBLISH, "check.sop.yaml": CHECK})
    result = pytester.runpytest("--sop", "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "check.sop.yaml::check-settings",
            "publish.sop.yaml::publish-post[[]cat-publisher-1]",
            "publish.sop.yaml::publish-post[[]cat-publisher-2]",
            "publish.sop.yaml::publish-post[[]dog-publisher-1]",
            "publish.sop.yaml::publish-post[[]dog-publisher-2]",
            "5 tests collected*",
        ]
    )
    assert result.ret == 0


def test_each_account_only_expands_over_matching_accounts(pytester: pytest.Pytester) -> None:
    sop = PUBLISH.replace("role: publisher, each: true", "role: viewer, each: true").replace(
        '  - type: {into: {id: password}, text: "${account.password}"}\n', ""
    )
    write_suite(pytester, {"publish.sop.yaml": sop})
    result = pytester.runpytest("--sop", "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        ["*publish-post[[]cat-viewer-1]", "*publish-post[[]dog-viewer-1]", "2 tests collected*"]
    )


def test_affinity_limits_accounts_to_their_devices(pytester: pytest.Pytester) -> None:
    # publisher-1 may only use pixel-a, which lacks the eu tag.
    sop = PUBLISH.replace("tags: [phone]}", "tags: [eu]}")
    write_suite(pytester, {"publish.sop.yaml": sop})
    result = pytester.runpytest("--sop", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*cat-publisher-2]", "*dog-publisher-2]", "2 tests collected*"])
    assert "publisher-1" not in result.stdout.str()


def test_without_sop_flag_nothing_is_collected(pytester: pytest.Pytester) -> None:
    write_suite(pytester, {"check.sop.yaml": CHECK, "broken.sop.yaml": "id: [\n"})
    pytester.makepyfile(test_plain="def test_ok():\n    pass\n")
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["test_plain.py::test_ok", "1 test collected*"])


def test_sop_items_live_beside_python_tests(pytester: pytest.Pytester) -> None:
    write_suite(pytester, {"check.sop.yaml": CHECK})
    pytester.makepyfile(test_plain="def test_ok():\n    pass\n")
    result = pytester.runpytest("--sop", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["check.sop.yaml::check-settings", "test_plain.py::test_ok"], consecutive=False)


def test_tags_are_marks_and_work_with_strict_markers(pytester: pytest.Pytester) -> None:
    write_suite(pytester, {"publish.sop.yaml": PUBLISH, "check.sop.yaml": CHECK})
    result = pytester.runpytest("--sop", "--collect-only", "-q", "-m", "regression", "--strict-markers")
    result.stdout.fnmatch_lines(["check.sop.yaml::check-settings", "1/5 tests collected (4 deselected)*"])
    assert result.ret == 0


def test_k_selects_on_sop_id(pytester: pytest.Pytester) -> None:
    write_suite(pytester, {"publish.sop.yaml": PUBLISH, "check.sop.yaml": CHECK})
    result = pytester.runpytest("--sop", "--collect-only", "-q", "-k", "publish-post and cat")
    result.stdout.fnmatch_lines(["*cat-publisher-1]", "*cat-publisher-2]", "2/5 tests collected (3 deselected)*"])


def test_sop_files_ini_changes_the_pattern(pytester: pytest.Pytester) -> None:
    write_suite(pytester, {"flows/check.procedure.yaml": CHECK})
    pytester.makeini("[pytest]\nsop_files = *.procedure.yaml\n")
    result = pytester.runpytest("--sop", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["flows/check.procedure.yaml::check-settings"])


def test_dry_run_prints_plan_with_secrets_masked(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUB1_PASSWORD", "hunter2-canary")
    write_suite(pytester, {"publish.sop.yaml": PUBLISH})
    result = pytester.runpytest("--sop", "--sop-dry-run", "-k", "cat-publisher-1")
    result.stdout.fnmatch_lines(
        [
            "publish.sop.yaml::publish-post[[]cat-publisher-1]  Publish a post",
            "  device:  platform=android tags=[[]phone] -> pixel-a",
            "  account: publisher-1",
            "  app:     social",
            "  steps:",
            "     1. launch_app  (publish.sop.yaml:12)",
            "     2. tap {id: compose}  (publish.sop.yaml:13)",
            "     3. type into={id: caption} text='Cat of the day'  (publish.sop.yaml:14)",
            "     4. type into={id: password} text='***'  (publish.sop.yaml:15)",
            "     5. wait_for {text: Posted}  [[]timeout=10s]  (publish.sop.yaml:16)",
            "dry run: 1 case(s) planned, nothing was run",
        ]
    )
    assert "hunter2-canary" not in result.stdout.str()
    assert result.ret == 0


def test_project_actions_from_a_hook(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from pytest_sop import ActionSpec, Param

        def pytest_sop_actions():
            return [ActionSpec("shake", "Shake the phone.", "value", (Param("times", "integer", minimum=1),))]
        """
    )
    write_suite(
        pytester,
        {"s.sop.yaml": "id: shaker\nallowed_actions: [shake]\nsteps:\n  - shake: 2\n  - shake: two\n"},
    )
    result = pytester.runpytest("--sop", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["s.sop.yaml:5:12: steps[1].shake: expected a whole number, got text"])


def test_project_actions_from_an_entry_point(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package's ``pytest_sop.actions`` entry point adds actions without any conftest."""
    site = pytester.path / "site"
    (site / "shake_actions").mkdir(parents=True)
    (site / "shake_actions" / "__init__.py").write_text(
        "from pytest_sop import ActionSpec\nSHAKE = ActionSpec('shake', 'Shake the phone.')\n"
    )
    dist = site / "shake_actions-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: shake-actions\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pytest_sop.actions]\nshake = shake_actions:SHAKE\n")
    write_suite(pytester, {"s.sop.yaml": "id: shaker\nallowed_actions: [shake]\nsteps: [shake]\n"})
    monkeypatch.setenv("PYTHONPATH", str(site))
    result = pytester.runpytest_subprocess("--sop", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["s.sop.yaml::shaker", "1 test collected*"])
