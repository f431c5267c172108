"""Signing with real SSH keys made by ssh-keygen here: what counts, and why not."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pytest_sop import signing


def make_key(folder: Path, name: str, passphrase: str = "") -> Path:
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f", str(key)], check=True)
    return key


def write_signers(path: Path, keys: dict[str, Path]) -> Path:
    """An OpenSSH allowed_signers file: one ``principal key-type key`` line per operator."""
    lines = [f"{name} {' '.join(key.with_suffix('.pub').read_text().split()[:2])}" for name, key in keys.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    found = {name: make_key(tmp_path, name) for name in ("alice", "bob", "mallory")}
    found["signers"] = write_signers(tmp_path / "allowed_signers", {"alice": found["alice"], "bob": found["bob"]})
    return found


def test_a_signature_verifies_for_its_principal_only(keys: dict[str, Path]) -> None:
    sig = signing.sign(b"data", str(keys["alice"]), signing.RUN)
    good = signing.verify(b"data", sig, str(keys["signers"]), "alice", signing.RUN)
    assert good is not None and good.fingerprint == signing.fingerprint(str(keys["alice"]))
    assert signing.verify(b"data", sig, str(keys["signers"]), "bob", signing.RUN) is None
    assert (
        signing.why_not(b"data", sig, str(keys["signers"]), "bob", signing.RUN) == "signed with alice's key, not bob's"
    )


def test_changed_data_another_namespace_or_an_unknown_key_do_not_verify(keys: dict[str, Path]) -> None:
    signers = str(keys["signers"])
    sig = signing.sign(b"data", str(keys["alice"]), signing.APPROVAL)
    assert signing.verify(b"datA", sig, signers, "alice", signing.APPROVAL) is None
    assert "changed since" in signing.why_not(b"datA", sig, signers, "alice", signing.APPROVAL)
    assert signing.verify(b"data", sig, signers, "alice", signing.RUN) is None  # no replay across kinds
    forged = signing.sign(b"data", str(keys["mallory"]), signing.APPROVAL)
    assert signing.verify(b"data", forged, signers, "alice", signing.APPROVAL) is None
    assert signing.why_not(b"data", forged, signers, "alice", signing.APPROVAL) == (
        "signed with a key that is not in the signers file"
    )
    assert signing.why_not(b"data", "", signers, "alice", signing.APPROVAL) == "not signed"


def test_a_key_proves_its_principal_and_not_another(keys: dict[str, Path]) -> None:
    assert signing.proves(str(keys["bob"]), "bob", str(keys["signers"])).principal == "bob"
    with pytest.raises(signing.SigningError, match="does not prove operator 'alice': signed with bob's key"):
        signing.proves(str(keys["bob"]), "alice", str(keys["signers"]))
    with pytest.raises(signing.SigningError, match="not in the signers file"):
        signing.proves(str(keys["mallory"]), "mallory", str(keys["signers"]))


def test_a_key_that_cannot_sign_is_named(tmp_path: Path) -> None:
    locked = make_key(tmp_path, "locked", passphrase="secret-pass")
    with pytest.raises(signing.SigningError, match=r"cannot sign.*ssh-agent"):
        signing.sign(b"data", str(locked), signing.RUN)
    with pytest.raises(signing.SigningError, match="no such file"):
        signing.sign(b"data", str(tmp_path / "missing"), signing.RUN)
