"""The JSON Schema and the lint command are derived from the registry and agree with the validator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from pytest_sop.actions import ActionSpec, Param, build_registry
from pytest_sop.schema import build_schema

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "example_suite").rglob("*.sop.yaml"))

BAD = {
    "unknown action": "id: s\nsteps:\n  - tapp: {id: x}\n",
    "unknown key": "id: s\nowners: me\nsteps: [back]\n",
    "bad locator": "id: s\nsteps:\n  - tap: {name: x}\n",
    "two actions": "id: s\nsteps:\n  - {back: null, tap: {id: x}}\n",
    "wrong type": "id: s\nsteps:\n  - wait: soon\n",
    "bad id": "id: Bad_Id\nsteps: [back]\n",
    "no steps": "id: s\n",
    "bare tap": "id: s\nsteps: [tap]\n",
    "assert_text without a match": "id: s\nsteps:\n  - assert_text: {in: {id: x}}\n",
    "assert_text with two matches": "id: s\nsteps:\n  - assert_text: {in: {id: x}, equals: a, contains: b}\n",
    "bad retry": "id: s\nsteps:\n  - back: null\n    retry: {attempts: 0}\n",
}


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = build_schema(build_registry())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_there_are_example_sops() -> None:
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_schema_accepts_every_example(validator: jsonschema.Draft202012Validator, path: Path) -> None:
    errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
    assert not errors, [e.message for e in errors]


@pytest.mark.parametrize("text", list(BAD.values()), ids=list(BAD))
def test_schema_rejects_bad_sops(validator: jsonschema.Draft202012Validator, text: str) -> None:
    assert list(validator.iter_errors(yaml.safe_load(text)))


def test_schema_knows_project_actions() -> None:
    registry = build_registry([ActionSpec("shake", "Shake.", "value", (Param("times", "integer"),))])
    validator = jsonschema.Draft202012Validator(build_schema(registry))
    assert not list(validator.iter_errors({"id": "s", "steps": [{"shake": 2}]}))
    assert list(validator.iter_errors({"id": "s", "steps": [{"shake": "two"}]}))


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_sop", *args], cwd=cwd, capture_output=True, text=True)


def test_schema_command_prints_json(tmp_path: Path) -> None:
    result = run_cli("schema", cwd=tmp_path)
    assert result.returncode == 0
    assert json.loads(result.stdout)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_lint_exit_codes_and_lines(tmp_path: Path) -> None:
    (tmp_path / "sop.yaml").write_text("devices:\n  - {id: a, platform: android}\n")
    (tmp_path / "good.sop.yaml").write_text("id: good\nsteps: [back]\n")
    assert run_cli("lint", ".", cwd=tmp_path).returncode == 0
    (tmp_path / "bad.sop.yaml").write_text("id: bad\nsteps:\n  - tapp: {id: x}\n")
    result = run_cli("lint", ".", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "bad.sop.yaml:3:5: steps[0].tapp: unknown action 'tapp' (did you mean 'tap'?)"
    ]


def test_lint_loads_project_actions_with_plugin(tmp_path: Path) -> None:
    (tmp_path / "sop.yaml").write_text("devices:\n  - {id: a, platform: android}\n")
    (tmp_path / "myactions.py").write_text(
        "from pytest_sop import ActionSpec\n\ndef pytest_sop_actions():\n    return ActionSpec('shake', 'Shake.')\n"
    )
    (tmp_path / "s.sop.yaml").write_text("id: s\nsteps: [shake]\n")
    assert run_cli("lint", "s.sop.yaml", cwd=tmp_path).returncode == 1
    env_run = subprocess.run(
        [sys.executable, "-m", "pytest_sop", "lint", "-p", "myactions", "s.sop.yaml"],
        cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert env_run.returncode == 0, env_run.stdout + env_run.stderr


def test_the_schema_the_examples_point_at_is_current() -> None:
    """Example SOPs name docs/sop.schema.json for their editors; it must match the registry."""
    committed = json.loads((ROOT / "docs" / "sop.schema.json").read_text())
    assert committed == build_schema(build_registry()), "run: pytest-sop schema -o docs/sop.schema.json"


def test_lint_checks_each_file_against_the_sop_yaml_beside_it(tmp_path: Path) -> None:
    """Two suites under one folder: lint from above both uses each file's own sop.yaml (and its apps)."""
    for name in ("web", "android"):
        suite = tmp_path / name
        (suite / "sops").mkdir(parents=True)
        (suite / "sop.yaml").write_text(f"apps:\n  {name}-app: {{}}\ndevices:\n  - {{id: {name}-phone, platform: android}}\n")
        (suite / "sops" / f"{name}.sop.yaml").write_text(
            f"id: {name}\napp: {name}-app\nrequires:\n  device: {{id: {name}-phone}}\nsteps: [back]\n"
        )
    result = run_cli("lint", ".", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, ""), result.stdout
    assert "2 SOP file(s), 2 case(s): all valid" in result.stderr
    # files given one by one, and from inside a suite, find theirs too
    result = run_cli("lint", "web/sops/web.sop.yaml", "android", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, ""), result.stdout
    assert run_cli("lint", "../../android/sops", cwd=tmp_path / "web" / "sops").returncode == 0
    # --config still names one config for every file
    result = run_cli("lint", "--config", "web/sop.yaml", ".", cwd=tmp_path)
    assert result.returncode == 1
    assert "android/sops/android.sop.yaml:2:6: app: unknown app 'android-app'" in result.stdout


def test_lint_of_a_file_without_sop_yaml_says_so_once_not_on_its_id(tmp_path: Path) -> None:
    (tmp_path / "s.sop.yaml").write_text("id: s\nsteps:\n  - tapp: {id: x}\n")
    result = run_cli("lint", ".", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"s.sop.yaml:1:1: no sop.yaml found (looked in {tmp_path} and every folder above it); run pytest-sop init",
        "s.sop.yaml:3:5: steps[0].tapp: unknown action 'tapp' (did you mean 'tap'?)",
    ]


@pytest.mark.parametrize("path", ["example_suite", "."])
def test_lint_from_the_repo_root_gives_no_false_errors(path: str) -> None:
    result = run_cli("lint", path, cwd=ROOT)
    assert (result.returncode, result.stdout) == (0, ""), result.stdout
    assert "all valid" in result.stderr
