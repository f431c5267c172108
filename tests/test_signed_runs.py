"""Signed runs under attack (issue 8): the operator proves who they are with their own SSH key.

Real keys made by ssh-keygen, real pytest runs against a real Appium 3 server with the fake
driver. Each run has its own suite folder, lock folder, ledger, audit log, alluredir and TMPDIR;
the keys live apart from all of them, so a copy of a key (or its path) anywhere the run writes
can be found.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_parallel import clean_env, fake_device, pytest_cmd, summary_counts
from test_signing import make_key, write_signers

from pytest_sop import signing
from pytest_sop.audit import verify

NOTE_SOP = {"note.sop.yaml": "id: note\nsteps:\n  - note: on ${device.id}\n"}


class Run:
    """One suite folder with sop.yaml pointing at an allowed_signers file for alice and bob."""

    def __init__(self, root: Path, require: bool, devices: int = 1, sops: dict[str, str] = NOTE_SOP) -> None:
        self.root = root
        self.keys = root / "keys"
        self.suite = root / "suite"
        self.tmp = root / "tmp"
        self.results = root / "allure-results"
        for folder in (self.keys, self.suite, self.tmp):
            folder.mkdir()
        self.key = {name: make_key(self.keys, name) for name in ("alice", "bob", "mallory")}
        write_signers(self.suite / "allowed_signers", {"alice": self.key["alice"], "bob": self.key["bob"]})
        policy = (
            "policy:\n  roles: {qa: {}}\n  operators: {alice: [qa], bob: [qa], mallory: [qa]}\n"
            "  signers: allowed_signers\n" + ("  require_signatures: true\n" if require else "")
        )
        (self.suite / "pytest.ini").write_text("[pytest]\n")
        config = "devices:\n" + "".join(fake_device(f"phone-{i}") for i in range(devices)) + policy
        (self.suite / "sop.yaml").write_text(config)
        for name, text in sops.items():
            (self.suite / name).write_text(text)

    def __call__(self, appium_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        cmd = pytest_cmd(
            "--sop-appium", appium_url, f"-o=sop_lock_dir={self.locks}", f"--alluredir={self.results}",
            f"--sop-audit={self.audit}", "-rA", *args,
        )  # fmt: skip
        return subprocess.run(cmd, cwd=self.suite, env=self.env(**env), capture_output=True, text=True, timeout=240)

    def env(self, **extra: str) -> dict[str, str]:
        env = clean_env(TMPDIR=str(self.tmp))
        env.pop("SOP_SIGNING_KEY", None)
        env.pop("SOP_OPERATOR", None)
        return {**env, **extra}

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def audit(self) -> Path:
        return self.suite / "audit.jsonl"

    def refused(self, proc: subprocess.CompletedProcess[str], why: str) -> None:
        """Stopped before anything: no lease, no session, no audit line, no ledger row, no lock folder."""
        assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
        assert "nothing was run" in proc.stderr and why in proc.stderr, proc.stderr
        assert "passed" not in proc.stdout, proc.stdout
        assert not self.locks.exists(), "a lease was taken"
        assert not self.audit.exists(), self.audit.read_text()
        assert not (self.suite / ".sop").exists(), "the ledger was opened"
        assert not list(self.results.glob("*-result.json")) if self.results.exists() else True

    def labels(self) -> list[dict[str, str]]:
        """Each result's labels, by name."""
        found = []
        for path in self.results.glob("*-result.json"):
            data = json.loads(path.read_text())
            found.append({label["name"]: label["value"] for label in data["labels"]})
        return found


@pytest.fixture
def required(tmp_path: Path) -> Run:
    return Run(tmp_path, require=True)


# -- refused before anything happens --------------------------------------------------------


def test_an_unsigned_run_is_refused_when_signatures_are_required(required: Run, appium_url: str) -> None:
    proc = required(appium_url, "--sop-operator=alice")
    required.refused(proc, "policy.require_signatures is true and this run is not signed")
    assert "--sop-signing-key" in proc.stderr


def test_a_run_with_another_operators_key_is_refused(required: Run, appium_url: str) -> None:
    """bob is in the signers file, but his key does not make him alice."""
    proc = required(appium_url, "--sop-operator=alice", f"--sop-signing-key={required.key['bob']}")
    required.refused(proc, "signed with bob's key, not alice's")
    assert "does not prove operator 'alice'" in proc.stderr


def test_a_key_not_in_the_signers_file_is_refused(required: Run, appium_url: str) -> None:
    proc = required(appium_url, "--sop-operator=mallory", f"--sop-signing-key={required.key['mallory']}")
    required.refused(proc, "signed with a key that is not in the signers file")


def test_a_copied_public_key_proves_nothing(required: Run, appium_url: str) -> None:
    """alice's .pub is no secret: without her private key (or her ssh-agent) it cannot sign."""
    copied = required.root / "copied.pub"
    copied.write_text(required.key["alice"].with_suffix(".pub").read_text())
    proc = required(appium_url, "--sop-operator=alice", f"--sop-signing-key={copied}")
    required.refused(proc, "cannot sign")


def test_a_wrong_key_is_refused_even_when_signatures_are_not_required(tmp_path: Path, appium_url: str) -> None:
    """A signature that is present and wrong is never accepted."""
    run = Run(tmp_path, require=False)
    proc = run(appium_url, "--sop-operator=alice", f"--sop-signing-key={run.key['mallory']}")
    run.refused(proc, "signed with a key that is not in the signers file")


def test_the_option_wins_over_the_environment(required: Run, appium_url: str) -> None:
    proc = required(
        appium_url, "--sop-operator=alice", f"--sop-signing-key={required.key['bob']}",
        SOP_SIGNING_KEY=str(required.key["alice"]),
    )  # fmt: skip
    required.refused(proc, "signed with bob's key, not alice's")


# -- signed runs --------------------------------------------------------------------------


def test_a_signed_run_passes_and_allure_shows_the_keys_fingerprint(required: Run, appium_url: str) -> None:
    # The key from the environment, relative to the current folder.
    key = os.path.relpath(required.key["alice"], required.suite)
    proc = required(appium_url, "--sop-operator=alice", SOP_SIGNING_KEY=key)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fingerprint = signing.fingerprint(str(required.key["alice"]))
    (labels,) = required.labels()
    assert labels["operator"] == "alice" and labels["operator_signed"] == fingerprint, labels
    env = (required.results / "environment.properties").read_text()
    escaped = fingerprint.replace(":", "\\:")  # as Java's Properties writes it
    assert "Operator=alice\n" in env and f"Operator.signed={escaped}\n" in env, env


def test_an_unsigned_run_says_so_when_signatures_are_not_required(tmp_path: Path, appium_url: str) -> None:
    run = Run(tmp_path, require=False)
    proc = run(appium_url, "--sop-operator=alice")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (labels,) = run.labels()
    assert labels["operator"] == "alice" and labels["operator_signed"] == "unsigned", labels
    assert "Operator.signed=unsigned\n" in (run.results / "environment.properties").read_text()


def test_the_ini_key_is_relative_to_the_ini_file(required: Run, appium_url: str) -> None:
    key = os.path.relpath(required.key["alice"], required.suite)
    (required.suite / "pytest.ini").write_text(f"[pytest]\nsop_signing_key = {key}\n")
    sub = required.suite / "sub"
    sub.mkdir()
    cmd_dir_run = subprocess.run(
        pytest_cmd(
            "--sop-appium", appium_url, f"-o=sop_lock_dir={required.locks}", f"--alluredir={required.results}",
            f"--sop-audit={required.audit}", "--sop-operator=alice", f"--rootdir={required.suite}",
            f"-c={required.suite / 'pytest.ini'}", f"--sop-config={required.suite / 'sop.yaml'}", str(required.suite),
        ),
        cwd=sub, env=required.env(), capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert cmd_dir_run.returncode == 0, cmd_dir_run.stdout + cmd_dir_run.stderr
    assert required.labels()[0]["operator_signed"] == signing.fingerprint(str(required.key["alice"]))


def test_signing_key_paths_resolve_from_where_they_were_given(tmp_path: Path) -> None:
    from pytest_sop.config import signing_key_setting, without_signing_key

    argv = ["pytest", "--sop-signing-key", "/k", "-n", "2", "--sop-signing-key=/k2", "--sop"]
    assert without_signing_key(argv) == ["pytest", "-n", "2", "--sop"]

    ini = tmp_path / "suite" / "pytest.ini"
    cwd = tmp_path / "here"
    assert signing_key_setting("k", "e", "i", ini, cwd) == str(cwd / "k")
    assert signing_key_setting(None, "e", "i", ini, cwd) == str(cwd / "e")
    assert signing_key_setting(None, None, "i", ini, cwd) == str(tmp_path / "suite" / "i")
    assert signing_key_setting(None, None, None, ini, cwd) is None
    assert signing_key_setting(None, None, "/abs/key", ini, cwd) == "/abs/key"


# -- under xdist, with a key whose passphrase only ssh-agent knows ---------------------------


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An ssh-agent of this test's own; its socket lives beside the keys, not in the run's TMPDIR."""
    sock = tmp_path / "agent.sock"
    out = subprocess.run(["ssh-agent", "-s", "-a", str(sock)], capture_output=True, text=True, check=True).stdout
    pid = int(out.split("SSH_AGENT_PID=")[1].split(";")[0])
    try:
        yield {"SSH_AUTH_SOCK": str(sock)}
    finally:
        os.kill(pid, signal.SIGTERM)


PASSPHRASE = "correct horse battery staple 8"
WORKERINPUT_DUMP = """\
import json, os

def pytest_configure(config):
    if hasattr(config, "workerinput"):
        with open(os.path.join(os.path.dirname(__file__), f"workerinput-{config.workerinput['workerid']}.json"), "w") as f:
            json.dump(config.workerinput, f, default=str)
"""


def test_under_xdist_workers_get_the_signer_and_no_file_holds_the_key(
    tmp_path: Path, appium_url: str, agent: dict[str, str]
) -> None:
    sops = {f"note-{i}.sop.yaml": f"id: note-{i}\nsteps:\n  - note: {i} on ${{device.id}}\n" for i in range(4)}
    run = Run(tmp_path, require=True, devices=2, sops=sops)
    # alice's key has a passphrase: it is unlocked in ssh-agent, and the run is given its .pub.
    for suffix in ("", ".pub"):
        run.key["alice"].with_name("alice" + suffix).unlink()
    key = make_key(run.keys, "alice", PASSPHRASE)
    write_signers(run.suite / "allowed_signers", {"alice": key, "bob": run.key["bob"]})
    askpass = run.keys / "askpass"
    askpass.write_text(f"#!/bin/sh\necho '{PASSPHRASE}'\n")
    askpass.chmod(0o700)
    subprocess.run(
        ["ssh-add", str(key)], env={**clean_env(), **agent, "SSH_ASKPASS": str(askpass),
        "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}, check=True, capture_output=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    public = key.with_suffix(".pub")
    # What each worker was handed, written where the scan below looks.
    (run.suite / "conftest.py").write_text(WORKERINPUT_DUMP)
    proc = run(appium_url, "-n", "2", "--sop-operator=alice", f"--sop-signing-key={public}", **agent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary_counts(proc.stdout) == {"passed": 4}, proc.stdout
    fingerprint = signing.fingerprint(str(public))
    handed = [json.loads(p.read_text()) for p in sorted(run.suite.glob("workerinput-*.json"))]
    assert [w["sop_signer"] for w in handed] == [{"principal": "alice", "fingerprint": fingerprint}] * 2, handed
    labels = run.labels()
    assert len(labels) == 4 and all(lab["operator_signed"] == fingerprint for lab in labels), labels
    assert verify(run.audit).ok

    secrets = [str(public), str(key), PASSPHRASE]
    # The private key file's body, line by line (the .pub is no secret: allowed_signers holds it).
    secrets += [line for line in key.read_text().splitlines() if line and not line.startswith("-----")]
    for folder in (run.results, run.suite, run.tmp):
        for path in folder.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                for secret in secrets:
                    assert secret.encode() not in data, f"{path} holds {secret!r}"


def test_the_controller_checks_the_key_once_under_xdist(required: Run, appium_url: str) -> None:
    """Workers are never given the key: a run refused by the controller starts no worker."""
    proc = required(appium_url, "-n", "2", "--sop-operator=alice", f"--sop-signing-key={required.key['bob']}")
    required.refused(proc, "signed with bob's key, not alice's")
    assert "created:" not in proc.stdout and "[gw" not in proc.stdout, proc.stdout


# -- the policy's signers in sop.yaml -------------------------------------------------------


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_a_missing_signers_file_stops_the_run_naming_where(tmp_path: Path) -> None:
    run = Run(tmp_path, require=True)
    (run.suite / "allowed_signers").unlink()
    proc = run("http://127.0.0.1:9", "--sop-operator=alice", f"--sop-signing-key={run.key['alice']}")
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    line = _line_of(run.suite / "sop.yaml", "signers:")
    where = f"sop.yaml:{line}:12: policy.signers: expected an OpenSSH allowed_signers file: "
    assert f"{where}{run.suite / 'allowed_signers'} does not exist" in proc.stderr, proc.stderr
    assert not run.locks.exists() and not run.audit.exists() and not (run.suite / ".sop").exists()


@pytest.mark.parametrize(
    ("policy", "error"),
    [
        (
            "  require_signatures: true\n",
            "2:23: policy.require_signatures: require_signatures: true needs policy.signers",
        ),
        (
            "  signers: keys\n",
            "2:12: policy.signers: expected an OpenSSH allowed_signers file: {folder}/keys is not a file",
        ),
        ("  signers: [a]\n", "2:12: policy.signers: expected the path of an OpenSSH allowed_signers file, got a list"),
        ("  signers: s\n  require_signatures: 1\n", "3:23: policy.require_signatures: expected true or false"),
    ],
)
def test_bad_signers_settings_name_the_line(tmp_path: Path, policy: str, error: str) -> None:
    from pytest_sop.errors import SopInvalid
    from pytest_sop.suiteconfig import load_config

    (tmp_path / "keys").mkdir()
    (tmp_path / "s").write_text("")
    (tmp_path / "sop.yaml").write_text("policy:\n" + policy)
    with pytest.raises(SopInvalid) as e:
        load_config(str(tmp_path / "sop.yaml"), "sop.yaml")
    assert f"sop.yaml:{error.format(folder=tmp_path)}" in str(e.value)


def test_signers_are_found_beside_sop_yaml(tmp_path: Path) -> None:
    from pytest_sop.suiteconfig import load_config

    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "allowed_signers").write_text("")
    (tmp_path / "suite" / "sop.yaml").write_text("policy:\n  signers: allowed_signers\n  require_signatures: true\n")
    policy = load_config(str(tmp_path / "suite" / "sop.yaml")).policy
    assert policy is not None and policy.require_signatures
    assert policy.signers == str(tmp_path / "suite" / "allowed_signers")


# -- Python tests on the sop_* fixtures (no --sop): the same rule before their first lease ----

FIXTURE_TEST = "def test_leases(sop_device):\n    assert sop_device.id.startswith('phone-')\n"


def fixture_run(run: Run, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", f"-o=sop_lock_dir={run.locks}",
        f"--sop-audit={run.audit}", "test_leases.py", *args,
    ]  # fmt: skip
    (run.suite / "test_leases.py").write_text(FIXTURE_TEST)
    return subprocess.run(cmd, cwd=run.suite, env=run.env(**env), capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["one-process", "xdist"])
def test_python_tests_lease_nothing_unsigned_when_signatures_are_required(required: Run, workers: tuple[str]) -> None:
    proc = fixture_run(required, "--sop-operator=alice", *workers)
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, proc.stdout + proc.stderr
    assert "no device or account leased: policy.require_signatures is true" in proc.stdout, proc.stdout
    assert not required.locks.exists(), "a lease was taken"

    proc = fixture_run(required, "--sop-operator=alice", f"--sop-signing-key={required.key['bob']}", *workers)
    assert "no device or account leased: signing key" in proc.stdout and "not alice's" in proc.stdout, proc.stdout
    assert not required.locks.exists(), "a lease was taken"

    proc = fixture_run(required, "--sop-operator=alice", f"--sop-signing-key={required.key['alice']}", *workers)
    assert proc.returncode == 0, proc.stdout + proc.stderr
