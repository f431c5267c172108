"""The signed, anchored audit log under attack (issue 8).

Each run ends its part of the log with a ``signed`` line (the chain head signed with the run's
SSH key, made here by ssh-keygen) and leaves the same head in the run ledger. The attacks are an
insider's: they can edit the log and its head file and recompute every hash, but they do not have
the operators' keys nor write access to the ledger. ``audit.verify`` (the chain alone) is shown
to be fooled by each, and ``pytest-sop audit verify --signers`` to catch it, naming the line.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_parallel import clean_env, fake_device, pytest_cmd, summary_counts
from test_signing import make_key, write_signers

from pytest_sop import audit, signing
from pytest_sop.audit import GENESIS, AuditLog, verify
from pytest_sop.ledger import SCHEMA_VERSION, Ledger
from pytest_sop.seal import SIGNED, seal


class Suite:
    """Keys for alice, bob and mallory (only alice and bob in allowed_signers), a log and a ledger."""

    def __init__(self, root: Path) -> None:
        keys = root / "keys"
        keys.mkdir()
        self.key = {name: make_key(keys, name) for name in ("alice", "bob", "mallory")}
        self.signers = write_signers(root / "allowed_signers", {"alice": self.key["alice"], "bob": self.key["bob"]})
        self.log = root / "audit.jsonl"
        self.ledger = root / "ledger.sqlite"

    def run(self, run_id: str, operator: str, cases: int = 2, *, key_of: str | None = None) -> int:
        """A run's lines (lease with run and operator, steps without), then its seal; the signed line's number."""
        log = AuditLog(self.log)
        for i in range(cases):
            case = f"sops/c{i}.sop.yaml::c{i}"
            log.append("lease", case=case, run=run_id, operator=operator, device=f"phone-{i}")
            log.append("step_start", case=case, step="tap Sign in", params={})
            log.append("step_end", case=case, step="tap Sign in", status="passed")
            log.append("outcome", case=case, run=run_id, operator=operator, phase="call", outcome="passed")
        return self.seal(run_id, operator, key_of=key_of)

    def seal(self, run_id: str, signer: str, *, key_of: str | None = None) -> int:
        """Seal as ``signer`` with ``key_of``'s key (default: the signer's own)."""
        key = str(self.key[key_of or signer])
        head = seal(self.log, key, signing.Verified(signer, signing.fingerprint(key)), run_id, self.ledger)
        assert head is not None
        return head.line

    def verify(self, *more: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "pytest_sop", "audit", "verify", str(self.log), "--signers", str(self.signers)]
        return subprocess.run([*cmd, *more], capture_output=True, text=True, timeout=120)

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def suite(tmp_path: Path) -> Suite:
    return Suite(tmp_path)


def rewrite(path: Path, records: list[dict[str, object]]) -> None:
    """What an insider does: write these records as a log whose chain and head file are all recomputed."""
    prev, out = GENESIS, []
    for seq, rec in enumerate(records, 1):
        rec = {**rec, "seq": seq, "prev": prev}
        line = json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        out.append(line)
        prev = hashlib.sha256(line.encode()).hexdigest()
    path.write_text("".join(f"{line}\n" for line in out))
    head = path.with_name(path.name + ".head")
    head.write_text(json.dumps({"seq": len(records), "sha256": prev}, separators=(",", ":")) + "\n")


def failed(proc: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for text in expected:
        assert text in proc.stdout, proc.stdout


def test_an_untouched_signed_log_of_interleaved_runs_passes_naming_each_signer(suite: Suite) -> None:
    log = AuditLog(suite.log)
    log.append("lease", case="a", run="r1", operator="alice")
    log.append("lease", case="b", run="r2", operator="bob")  # another run writing at the same time
    log.append("step_start", case="a", step="x", params={})
    first = suite.seal("r1", "alice")
    log.append("outcome", case="b", run="r2", operator="bob", outcome="passed")
    second = suite.seal("r2", "bob")
    proc = suite.verify("--ledger", str(suite.ledger))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fp = {name: signing.fingerprint(str(suite.key[name])) for name in ("alice", "bob")}
    assert f"run r1: signed by alice ({fp['alice']}) at line {first}" in proc.stdout
    assert f"run r2: signed by bob ({fp['bob']}) at line {second}" in proc.stdout
    assert "OK: 6 lines, chain intact, 2 run(s) signed" in proc.stdout
    # What is signed is the head before the signed line: seq, sha256, run, signer, fingerprint.
    signed = suite.lines()[first - 1]
    assert signed["event"] == SIGNED and signed["signer"] == "alice" and signed["fingerprint"] == fp["alice"]


def test_a_line_edited_and_the_chain_and_head_recomputed_is_caught(suite: Suite) -> None:
    first = suite.run("r1", "alice")
    second = suite.run("r2", "bob")
    records = suite.lines()
    records[first + 2]["status"] = "failed"  # a step of run r2 that passed now says failed
    rewrite(suite.log, records)
    assert verify(suite.log).ok  # the chain alone cannot tell
    failed(
        suite.verify(),
        f"line {second}: run r2's signature (by bob) does not match the chain head at line {second - 1}: "
        f"a line from {first} to {second - 1} was changed and the chain recomputed after it was signed",
    )
    assert "run r1: signed by alice" in suite.verify().stdout  # the part before the edit still holds


def test_a_forged_signed_line_for_the_recomputed_head_is_caught(suite: Suite) -> None:
    """The insider re-signs the recomputed head as alice, with their own key: not alice's key."""
    suite.run("r1", "alice")
    records = suite.lines()
    records[1]["step"] = "something else"
    rewrite(suite.log, records[:-1])
    suite.seal("r1", "alice", key_of="mallory")
    failed(suite.verify(), f"line {len(records)}: run r1 is signed by alice (", "a key not in")


def test_the_tail_cut_and_the_head_file_removed_is_caught(suite: Suite) -> None:
    suite.run("r1", "alice")
    second = suite.run("r2", "bob")
    # Cut inside run r2: its signed line and last lines go, and the head file with them.
    lines = suite.log.read_text().splitlines(keepends=True)
    suite.log.write_text("".join(lines[: second - 3]))
    suite.log.with_name(suite.log.name + ".head").unlink()
    assert verify(suite.log).ok
    first_of_r2 = next(i for i, rec in enumerate(suite.lines(), 1) if rec.get("run") == "r2")
    failed(
        suite.verify(),
        f"line {first_of_r2}: run r2 is not signed",
        f"line {first_of_r2}: lines {first_of_r2} to {second - 3} follow the last signed line ({first_of_r2 - 1})",
    )


def test_a_tail_cut_at_a_runs_signature_is_caught_with_the_ledger(suite: Suite) -> None:
    first = suite.run("r1", "alice")
    suite.run("r2", "bob")
    lines = suite.log.read_text().splitlines(keepends=True)
    suite.log.write_text("".join(lines[:first]))  # exactly r1's part: a valid signed log on its own
    suite.log.with_name(suite.log.name + ".head").unlink()
    assert suite.verify().returncode == 0  # nothing in the log itself can tell
    failed(
        suite.verify("--ledger", str(suite.ledger)),
        f"line {first + 1}: the log ends at line {first} but the ledger remembers run r2's signed head (by bob",
        "the log was cut or rolled back to an older copy",
    )


def test_a_log_swapped_for_an_older_signed_copy_is_caught_with_the_ledger(suite: Suite, tmp_path: Path) -> None:
    suite.run("r1", "alice")
    older = tmp_path / "older.jsonl"
    older.write_bytes(suite.log.read_bytes())
    head = suite.log.with_name(suite.log.name + ".head")
    older_head = head.read_bytes()
    suite.run("r2", "bob")  # a run whose failures someone would rather forget
    suite.log.write_bytes(older.read_bytes())
    head.write_bytes(older_head)
    assert verify(suite.log).ok and suite.verify().returncode == 0
    failed(suite.verify("--ledger", str(suite.ledger)), "the ledger remembers run r2's signed head", "rolled back")


def test_lines_appended_after_the_signature_are_caught(suite: Suite) -> None:
    signed = suite.run("r1", "alice")
    log = AuditLog(suite.log)  # the head file is kept up to date: the chain holds
    log.append("outcome", case="sops/c0.sop.yaml::c0", run="r1", operator="alice", outcome="passed")
    log.append("step_end", case="sops/c1.sop.yaml::c1", step="tap", status="passed")
    assert verify(suite.log).ok
    failed(
        suite.verify(),
        f"line {signed + 1}: run r1 wrote line {signed + 1} after its signature at line {signed}",
        f"line {signed + 1}: lines {signed + 1} to {signed + 2} follow the last signed line ({signed})",
    )


def test_a_signature_copied_after_added_lines_is_caught(suite: Suite) -> None:
    """Replaying run r1's signed line after forged lines: it signed another head."""
    signed = suite.run("r1", "alice")
    original = suite.lines()[signed - 1]
    log = AuditLog(suite.log)
    log.append("outcome", case="sops/c0.sop.yaml::c0", run="r1", operator="alice", outcome="failed")
    copied = {k: original[k] for k in ("run", "signer", "fingerprint", "signature")}
    replay = json.loads(log.append(SIGNED, **copied))["seq"]
    failed(
        suite.verify(),
        f"line {replay}: run r1's signature (by alice) does not match the chain head at line {replay - 1}",
        f"line {replay}: run r1 is signed again (it was signed at line {signed})",
        f"line {signed + 1}: run r1 wrote line {signed + 1} after its signature at line {signed}",
    )


def test_a_run_of_one_operator_sealed_by_another_is_caught(suite: Suite) -> None:
    """bob is in the signers file, but the run is alice's: he cannot vouch for it as its signer."""
    signed = suite.run("r1", "alice", key_of="bob")  # claims alice, bob's key
    failed(suite.verify(), f"line {signed}: run r1 names signer alice but was signed with bob's key, not alice's")
    records = suite.lines()
    rewrite(suite.log, records[:-1])
    signed = suite.seal("r1", "bob")
    failed(suite.verify(), f"line {signed}: run r1 is signed by bob but its lines name operator alice (line 1)")


def test_a_signer_not_in_the_signers_file_is_caught(suite: Suite) -> None:
    signed = suite.run("r1", "mallory")
    fp = signing.fingerprint(str(suite.key["mallory"]))
    failed(suite.verify(), f"line {signed}: run r1 is signed by mallory ({fp}), a key not in {suite.signers}")


def test_a_log_without_any_signed_line_is_refused_with_signers(suite: Suite) -> None:
    AuditLog(suite.log).append("lease", case="a", run="r1", operator="alice")
    failed(suite.verify(), "no signed line: none of the 1 lines")
    plain = subprocess.run(
        [sys.executable, "-m", "pytest_sop", "audit", "verify", str(suite.log)], capture_output=True, text=True
    )
    assert plain.returncode == 0, plain.stdout  # without --signers: the chain only, as before


def test_an_older_ledger_gains_the_table_of_signed_heads(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path)
    with sqlite3.connect(path) as conn:  # as version 1 left it: no table of signed heads
        conn.execute("DROP TABLE audit_heads")
        conn.execute("PRAGMA user_version = 1")
    assert SCHEMA_VERSION >= 2
    assert Ledger(path).signed_heads(log_id="x", log_path="y") == []
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_sealing_writes_nothing_without_a_log(suite: Suite) -> None:
    key = str(suite.key["alice"])
    assert seal(suite.log, key, signing.Verified("alice", signing.fingerprint(key)), "r1", suite.ledger) is None
    assert not suite.log.exists() and not suite.ledger.exists()


# -- end to end: a real run under xdist, against Appium with the fake driver ---------------------------


def test_a_signed_run_under_xdist_leaves_a_log_that_verifies(tmp_path: Path, appium_url: str) -> None:
    suite_dir = tmp_path / "suite"
    suite_dir.mkdir()
    keys = tmp_path / "keys"
    keys.mkdir()
    key = make_key(keys, "alice")
    write_signers(suite_dir / "allowed_signers", {"alice": key})
    policy = "policy:\n  roles: {qa: {}}\n  operators: {alice: [qa]}\n  signers: allowed_signers\n"
    devices = "devices:\n" + fake_device("phone-0") + fake_device("phone-1")
    (suite_dir / "sop.yaml").write_text(devices + policy + "  require_signatures: true\n")
    (suite_dir / "pytest.ini").write_text("[pytest]\n")
    for i in range(4):
        (suite_dir / f"note{i}.sop.yaml").write_text(f"id: note{i}\nsteps:\n  - note: {i} on ${{device.id}}\n")
    audit = suite_dir / "audit.jsonl"
    cmd = pytest_cmd(
        "--sop-appium", appium_url, f"-o=sop_lock_dir={tmp_path / 'locks'}", f"--sop-audit={audit}",
        "-n", "2", "--sop-operator=alice", f"--sop-signing-key={key}",
    )  # fmt: skip
    env = clean_env(TMPDIR=str(tmp_path))
    env.pop("SOP_SIGNING_KEY", None)
    proc = subprocess.run(cmd, cwd=suite_dir, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary_counts(proc.stdout) == {"passed": 4}
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    workers = {r.get("worker") for r in records if r["event"] == "lease"}
    assert workers == {"gw0", "gw1"}, workers  # both workers wrote into the one log
    assert [r["event"] for r in records].count(SIGNED) == 1 and records[-1]["event"] == SIGNED
    ledger = suite_dir / ".sop" / "ledger.sqlite"
    check = [sys.executable, "-m", "pytest_sop", "audit", "verify", str(audit)]
    ok = subprocess.run(
        [*check, "--signers", str(suite_dir / "allowed_signers"), "--ledger", str(ledger)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stdout
    run_id = records[0]["run"]
    assert f"run {run_id}: signed by alice ({signing.fingerprint(str(key))}) at line {len(records)}" in ok.stdout


# -- the fast walk of an intact log says what the line-by-line walk says ----------------------------------


class _LineByLine(audit._Chain):
    def _intact_records(self) -> None:
        return None


def test_the_fast_check_agrees_with_the_line_by_line_check_on_damaged_logs(tmp_path: Path) -> None:
    """Every verdict, line and reason the same, on an intact log and on 400 damaged copies of it."""
    log = AuditLog(tmp_path / "a.jsonl")
    for i in range(30):
        log.append("step_start", case=f"c{i % 3}", step="tap", params={"prev": "x", "seq": i, "nested": {"a": [1]}})
    data = log.path.read_bytes()
    head = audit._read_head(log.path)
    rng = random.Random(8)
    variants = [data]
    for _ in range(400):
        lines = data.split(b"\n")[:-1]
        k = rng.randrange(len(lines))
        kind = rng.randrange(7)
        if kind == 0:  # one byte changed
            b = bytearray(lines[k])
            b[rng.randrange(len(b))] = rng.choice(b'{}[],:"0123456789abcdef \\')
            lines[k] = bytes(b)
        elif kind == 1:
            del lines[k]
        elif kind == 2:
            j = rng.randrange(len(lines))
            lines[k], lines[j] = lines[j], lines[k]
        elif kind == 3:
            lines.insert(k, lines[rng.randrange(len(lines))])
        elif kind == 4:  # two lines made one, and one split in two: as many JSON values as lines
            lines[k : k + 2] = [lines[k][:-1] + b',"x":' + lines[k + 1 : k + 2][0] + b"}"] if k + 1 < len(lines) else []
            j = rng.randrange(len(lines))
            lines[j : j + 1] = [lines[j] + b",{}"]
        elif kind == 5:
            lines[k] = lines[k].replace(b'"event"', b' "event"')
        else:
            lines[k] = "é".encode("latin-1") + lines[k]
        variants.append(b"".join(line + b"\n" for line in lines))
    assert audit._Chain(data, head).intact  # the fast walk is the one taken on an intact log
    verdicts = []
    for blob in variants:
        for h in (head, None):
            verdicts.append(audit._Chain(blob, h).check())
            assert verdicts[-1] == _LineByLine(blob, h).check()
    assert sum(not v.ok for v in verdicts) > 300, "the damage must be seen"


def test_a_run_whose_seal_cannot_be_written_fails_saying_why(tmp_path: Path) -> None:
    """The key proves the operator at the start, then is gone at the end: the run must not end green."""
    key = make_key(tmp_path, "alice")
    write_signers(tmp_path / "allowed_signers", {"alice": key})
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    policy = "policy:\n  roles: {qa: {}}\n  operators: {alice: [qa]}\n  signers: allowed_signers\n"
    (tmp_path / "sop.yaml").write_text("devices:\n  - id: p\n    platform: fake\n" + policy)
    (tmp_path / "test_x.py").write_text("import os\n\ndef test_x():\n    os.remove(os.environ['KEY_TO_LOSE'])\n")
    AuditLog(tmp_path / "audit.jsonl").append("lease", case="x", run="earlier", operator="alice")
    before = (tmp_path / "audit.jsonl").read_bytes()
    cmd = pytest_cmd("--sop-audit=audit.jsonl", "--sop-operator=alice", f"--sop-signing-key={key}")
    env = clean_env(KEY_TO_LOSE=str(key), TMPDIR=str(tmp_path))
    env.pop("SOP_SIGNING_KEY", None)
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, proc.stdout + proc.stderr
    assert f"audit log {tmp_path / 'audit.jsonl'} was NOT signed: signing key {key}: no such file" in proc.stdout
    assert (tmp_path / "audit.jsonl").read_bytes() == before


def test_a_step_of_a_run_written_after_its_seal_is_caught_even_before_another_seal(suite: Suite) -> None:
    """Step and evidence lines name their run, so a run's line after its own seal is caught mid-log."""
    log = AuditLog(suite.log)
    log.append("lease", case="a", run="r1", operator="alice")
    suite.seal("r1", "alice")
    log.append("lease", case="b", run="r2", operator="bob")
    late = log.append("step_start", case="a", run="r1", step="tap", params={})  # as AuditRecorder writes it
    suite.seal("r2", "bob")
    proc = suite.verify()
    assert proc.returncode == 1 and f"line {json.loads(late)['seq']}" in proc.stdout, proc.stdout
