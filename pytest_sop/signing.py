"""Signatures with the operators' own SSH keys, through OpenSSH's ``ssh-keygen -Y`` (as git signs).

No cryptography of our own: ``ssh-keygen -Y sign`` signs bytes with a key (a private key
file, or a public key file whose private half is in ``ssh-agent``), ``ssh-keygen -Y verify``
checks a signature against an OpenSSH ``allowed_signers`` file for one principal (an operator
name). Each kind of signed thing has its own namespace, so a signature made for one can never
be replayed as another.

A key's contents never pass through this process: ``ssh-keygen`` reads the key file itself.
Signatures are not secret; they are written to a private temporary file only because
``ssh-keygen -Y verify`` reads them from a file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from .errors import SopError

RUN = "pytest-sop-run"
APPROVAL = "pytest-sop-approval"
AUDIT = "pytest-sop-audit"
NAMESPACES = (RUN, APPROVAL, AUDIT)

_TIMEOUT = 30.0
_GOOD = re.compile(r'^Good "[^"]*" signature for (?P<principal>.+?) with (?P<alg>\S+) key (?P<fp>SHA256:\S+)', re.M)


class SigningError(SopError):
    """A key cannot sign, or ssh-keygen is missing; the message says which key and why."""


@dataclass(frozen=True)
class Verified:
    """A signature that holds: who made it (the principal in allowed_signers) and with which key."""

    principal: str
    fingerprint: str  # SHA256:...


def _ssh_keygen() -> str:
    path = shutil.which("ssh-keygen")
    if path is None:
        raise SigningError("ssh-keygen is not on PATH: install OpenSSH's client (apt-get install openssh-client)")
    return path


def _run(args: list[str], data: bytes | None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            [_ssh_keygen(), *args],
            input=data,
            capture_output=True,
            timeout=_TIMEOUT,
            stdin=None if data else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise SigningError(f"ssh-keygen {args[0]} {args[1]} did not finish within {_TIMEOUT:g} s") from None


def sign(data: bytes, key: str, namespace: str) -> str:
    """An armored SSH signature of ``data`` by ``key`` (a private key file, or a public one held by ssh-agent)."""
    if namespace not in NAMESPACES:
        raise ValueError(f"unknown signing namespace {namespace!r}")
    if not os.path.isfile(key):
        raise SigningError(f"signing key {key}: no such file")
    proc = _run(["-Y", "sign", "-q", "-f", key, "-n", namespace], data)
    if proc.returncode != 0 or b"BEGIN SSH SIGNATURE" not in proc.stdout:
        reason = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        said = reason[-1] if reason else f"exit {proc.returncode}"
        raise SigningError(
            f"signing key {key} cannot sign: {said} (a key with a passphrase must be in ssh-agent: "
            "ssh-add it and give its .pub file)"
        )
    return proc.stdout.decode("ascii")


def _with_signature(signature: str, args: list[str], data: bytes | None) -> subprocess.CompletedProcess[bytes]:
    with tempfile.TemporaryDirectory(prefix="pytest-sop-sig-") as folder:
        path = os.path.join(folder, "data.sig")
        with open(path, "w", encoding="ascii") as f:
            f.write(signature)
        return _run([*args, "-s", path], data)


def verify(data: bytes, signature: str, signers: str, principal: str, namespace: str) -> Verified | None:
    """The signer when ``signature`` is ``principal``'s signature of ``data`` per the ``signers`` file, else None."""
    if not signature.strip() or not os.path.isfile(signers):
        return None
    proc = _with_signature(signature, ["-Y", "verify", "-f", signers, "-I", principal, "-n", namespace], data)
    if proc.returncode != 0:
        return None
    found = _GOOD.search(proc.stdout.decode("utf-8", "replace") + proc.stderr.decode("utf-8", "replace"))
    return Verified(principal, found["fp"] if found else "")


def why_not(data: bytes, signature: str, signers: str, principal: str, namespace: str) -> str:
    """In words, why ``signature`` is not ``principal``'s: no signature, a key not in the file, another's key..."""
    if not signature.strip():
        return "not signed"
    if not os.path.isfile(signers):
        return f"no signers file {signers}"
    found = principals(signature, signers)
    if not found:
        return "signed with a key that is not in the signers file"
    if principal not in found:
        return f"signed with {', '.join(sorted(found))}'s key, not {principal}'s"
    return "the signature does not match what was signed (changed since)"


def principals(signature: str, signers: str) -> list[str]:
    """The principals of ``signers`` whose key made ``signature`` (whatever it signed)."""
    proc = _with_signature(signature, ["-Y", "find-principals", "-f", signers], None)
    if proc.returncode != 0:
        return []
    return [line.strip() for line in proc.stdout.decode("utf-8", "replace").splitlines() if line.strip()]


def fingerprint(key: str) -> str:
    """``SHA256:...`` of a key file (private or public)."""
    proc = _run(["-l", "-f", key], None)
    parts = proc.stdout.decode("utf-8", "replace").split()
    if proc.returncode != 0 or len(parts) < 2:
        raise SigningError(f"signing key {key}: not an SSH key ({proc.stderr.decode('utf-8', 'replace').strip()})")
    return parts[1]


def proves(key: str, principal: str, signers: str) -> Verified:
    """Check that ``key`` is ``principal``'s key in ``signers`` by signing a fresh challenge with it.

    :raises SigningError: naming why not (cannot sign, not in the file, another principal's key).
    """
    challenge = f"pytest-sop proves {principal} {os.urandom(16).hex()}".encode()
    signature = sign(challenge, key, RUN)
    verified = verify(challenge, signature, signers, principal, RUN)
    if verified is None:
        raise SigningError(
            f"signing key {key} does not prove operator {principal!r}: "
            f"{why_not(challenge, signature, signers, principal, RUN)} ({signers})"
        )
    return verified
