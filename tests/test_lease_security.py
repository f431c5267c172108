"""Leases under attack: another user, planted folders, symlinks, hard links and lock files.

Every test here starts real processes or plants real files. Tests that need a second user
start tests/lease_worker.py as root and let it become uid 65534 (``nobody``) after its
imports; they are skipped when this suite does not run as root.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_leasing import D1, D2, Workers, account, device, finish, release

from pytest_sop.config import default_lock_dir
from pytest_sop.errors import LeaseTimeout, SopError
from pytest_sop.leasing import LeasePool, lease_table, lock_path

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="starting another user's process needs root")


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder every user may write (for the results of workers running as another user)."""
    path = Path(tempfile.mkdtemp(prefix="sop-lease-security-"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def phones() -> Iterator[list[str]]:
    """Fresh device ids for the default (host-wide) lock folder; their lock files go at teardown."""
    ids = [f"sec-{uuid.uuid4().hex[:12]}" for _ in range(3)]
    yield ids
    for id in ids:
        with contextlib.suppress(OSError):
            lock_path(default_lock_dir(), "device", id).unlink()


def run_worker(workers: Workers, out: Path, **spec: Any) -> dict[str, Any]:
    proc = workers.start("try", out=str(out), **spec)
    finish(proc, 30)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def user_env(name: str, tmpdir: Path) -> dict[str, str]:
    tmpdir.mkdir(mode=0o777, exist_ok=True)
    tmpdir.chmod(0o777)
    return {"USER": name, "LOGNAME": name, "TMPDIR": str(tmpdir)}


# -- one host-wide folder --------------------------------------------------------------


@as_root
def test_two_users_with_their_own_tmpdir_never_drive_one_phone(shared_tmp: Path, phones: list[str]) -> None:
    phone = phones[0]
    devices = [{"id": phone}]
    alice, bob = user_env("alice", shared_tmp / "alice"), user_env("bob", shared_tmp / "bob")
    workers = Workers(shared_tmp)
    try:
        # root (as alice) holds the phone, in the default folder: nothing says where.
        holder, _ = workers.hold(
            shared_tmp, [[phone, None]], "a.sop.yaml::alice", devices=devices, lock_dir=None, env=alice
        )
        # uid 65534 (as bob, another TMPDIR) may not have it.
        got = run_worker(workers, shared_tmp / "bob-1.json", pairs=[[phone, None]], devices=devices, lock_dir=None,
                         env=bob, uid=NOBODY)  # fmt: skip
        assert not got["got"], "two users hold one phone at once"
        assert f"pid {holder.pid}" in got["message"]
        release(holder)

        # Now bob may, and then alice may not: the same lock, whoever created it.
        bob_holds, _ = workers.hold(shared_tmp, [[phone, None]], "b.sop.yaml::bob", devices=devices, lock_dir=None,
                                    env=bob, uid=NOBODY)  # fmt: skip
        got = run_worker(workers, shared_tmp / "alice-2.json", pairs=[[phone, None]], devices=devices, lock_dir=None,
                         env=alice)  # fmt: skip
        assert not got["got"], "two users hold one phone at once"
        (row,) = [r for r in lease_table(default_lock_dir(), [device(phone)], []) if r.id == phone]
        assert row.held and row.holder is not None and row.holder.pid == bob_holds.pid
        release(bob_holds)
    finally:
        workers.close()
    folder = os.lstat(default_lock_dir())
    assert stat.S_IMODE(folder.st_mode) == 0o1777 and folder.st_uid == 0
    assert stat.S_IMODE(os.lstat(lock_path(default_lock_dir(), "device", phone)).st_mode) == 0o666


def test_default_folder_is_one_path_whoever_and_wherever(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    first = default_lock_dir()
    monkeypatch.setenv("USER", "someone-else")
    monkeypatch.setenv("LOGNAME", "someone-else")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    tempfile.tempdir = None  # forget the cached one
    try:
        assert default_lock_dir() == first
    finally:
        tempfile.tempdir = None


def test_a_new_folder_and_lock_file_are_shared_modes_whatever_the_umask(tmp_path: Path) -> None:
    lock_dir = tmp_path / "new" / "locks"
    old = os.umask(0o077)
    try:
        LeasePool(lock_dir, "r", "o").acquire([(D1, None)], case="c", timeout=0, requirement="r").release()
    finally:
        os.umask(old)
    assert stat.S_IMODE(lock_dir.stat().st_mode) == 0o1777
    assert stat.S_IMODE(lock_path(lock_dir, "device", "d1").stat().st_mode) == 0o666


# -- a planted folder ------------------------------------------------------------------


def plant_folder(tmp_path: Path, how: str) -> Path:
    lock_dir = tmp_path / "locks"
    if how == "symlink":
        real = tmp_path / "elsewhere"
        real.mkdir()
        real.chmod(0o1777)
        lock_dir.symlink_to(real)
    elif how == "file":
        lock_dir.write_text("")
    else:
        lock_dir.mkdir()
        lock_dir.chmod({"world-writable": 0o777, "group-writable": 0o770, "other-owner": 0o1777}[how])
        if how == "other-owner":
            os.chown(lock_dir, NOBODY, NOBODY)
    return lock_dir


PLANTS = {
    "world-writable": "mode 0777",
    "group-writable": "mode 0770",
    "other-owner": "owned by nobody",
    "symlink": "symbolic link",
    "file": "not a directory",
}


@pytest.mark.parametrize("how", list(PLANTS))
def test_a_planted_lock_folder_is_refused_with_the_fix(tmp_path: Path, how: str) -> None:
    if how == "other-owner" and os.geteuid() != 0:
        pytest.skip("chown needs root")
    lock_dir = plant_folder(tmp_path, how)
    with pytest.raises(SopError) as info:
        pool = LeasePool(lock_dir, "r", "o")
        pool.acquire([(D1, None)], case="c", timeout=0, requirement="r").release()
    message = str(info.value)
    assert str(lock_dir) in message and PLANTS[how] in message, message
    assert "sop_lock_dir" in message and f"sudo install -d -m 1777 -o root {lock_dir}" in message, message
    if lock_dir.is_dir():
        assert list(lock_dir.iterdir()) == [], "nothing is written into a refused folder"
    with pytest.raises(SopError, match=r"symbolic link|mode 07|owned by|not a directory"):
        lease_table(lock_dir, [D1], [])


def test_the_plugin_refuses_a_planted_folder_before_any_case(pytester: pytest.Pytester, tmp_path: Path) -> None:
    lock_dir = plant_folder(tmp_path, "world-writable")
    pytester.makefile(".yaml", sop="devices:\n  - {id: pixel-a, platform: android}\n")
    pytester.makeini(f"[pytest]\nsop_lock_dir = {lock_dir}\n")
    pytester.makepyfile(test_uses="def test_phone(sop_device):\n    print('RAN', sop_device.id)\n")
    result = pytester.runpytest_subprocess("--sop", "-s", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines([f"*{lock_dir}*mode 0777*sudo install -d -m 1777 -o root*"])
    assert "RAN" not in result.stdout.str()
    assert list(lock_dir.iterdir()) == []


# -- symlinks and hard links -----------------------------------------------------------


@pytest.fixture
def lock_dir(tmp_path: Path) -> Path:
    path = tmp_path / "locks"
    path.mkdir()
    path.chmod(0o1777)
    return path


@pytest.fixture
def precious(tmp_path: Path) -> Iterator[Path]:
    """A file no lease may touch (as /etc/shadow would be)."""
    path = tmp_path / "precious"
    path.write_text("root:secret-hash:19000:0:99999:7:::\n")
    path.chmod(0o600)
    before = path.stat()
    yield path
    after = path.stat()
    assert path.read_text() == "root:secret-hash:19000:0:99999:7:::\n", "written through a planted link"
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)


def test_planted_symlinks_and_hard_links_are_never_written_through(lock_dir: Path, precious: Path) -> None:
    sym, hard = device("sym"), device("hard")
    lock_path(lock_dir, "device", "sym").symlink_to(precious)
    os.link(precious, lock_path(lock_dir, "device", "hard"))
    # Records beside the lock, and the temporary name a record would be written under.
    for name in ("device-d1.holder.json", f".device-d1.holder.json.{os.getpid()}.tmp"):
        (lock_dir / name).symlink_to(precious)
    pool = LeasePool(lock_dir, "r", "o")
    with pool.acquire([(sym, None), (hard, None), (D1, None)], case="c", timeout=0, requirement="r") as lease:
        assert lease.device == D1
    with pytest.raises(LeaseTimeout) as info:
        pool.acquire([(sym, None), (hard, None)], case="c", timeout=0, requirement="sym or hard")
    message = str(info.value)
    assert f"{lock_path(lock_dir, 'device', 'sym')} (owner root" in message and "symbolic link" in message, message
    assert f"{lock_path(lock_dir, 'device', 'hard')} (owner root" in message and "hard link" in message, message


# -- lock files that cannot be used ----------------------------------------------------


def test_an_unusable_lock_file_does_not_stop_other_devices(lock_dir: Path) -> None:
    fifo, folder = device("fifo"), device("folder")
    os.mkfifo(lock_path(lock_dir, "device", "fifo"))
    lock_path(lock_dir, "device", "folder").mkdir()
    pool = LeasePool(lock_dir, "r", "o")
    with pool.acquire([(fifo, None), (folder, None), (D1, None)], case="c", timeout=0, requirement="r") as lease:
        assert lease.device == D1
        with pytest.raises(LeaseTimeout) as info:
            pool.acquire([(fifo, None), (folder, None), (D1, None)], case="c2", timeout=0, requirement="any phone")
    message = str(info.value)
    assert f"device fifo: lock file {lock_path(lock_dir, 'device', 'fifo')} (owner root" in message, message
    assert "a fifo" in message and "a directory" in message, message
    assert "device d1: held by case c " in message, message
    rows = lease_table(lock_dir, [fifo, folder, D1], [])
    assert [r.state for r in rows] == ["unusable", "unusable", "free"]
    assert "a fifo" in (rows[0].problem or "") and "a directory" in (rows[1].problem or "")


@as_root
def test_another_users_private_lock_file_is_skipped(shared_tmp: Path) -> None:
    lock_dir = shared_tmp / "locks"
    lock_dir.mkdir(mode=0o1777)
    lock_dir.chmod(0o1777)
    private = lock_path(lock_dir, "device", "d1")
    private.write_text("")
    private.chmod(0o600)  # root's, and only root may open it
    workers = Workers(lock_dir)
    try:
        devices = [{"id": "d1"}, {"id": "d2"}]
        got = run_worker(
            workers, shared_tmp / "1.json", pairs=[["d1", None], ["d2", None]], devices=devices, uid=NOBODY
        )
        assert got["got"] and got["device"] == "d2"
        got = run_worker(workers, shared_tmp / "2.json", pairs=[["d1", None]], devices=devices, uid=NOBODY)
        assert not got["got"]
        assert (
            f"device d1: lock file {private} (owner root, mode 0600) cannot be used: permission denied"
            in got["message"]
        ), got["message"]
    finally:
        workers.close()


# -- the kernel's word over a planted record -------------------------------------------


HOLD_SCRIPT = textwrap.dedent(
    """
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("held", flush=True)
    sys.stdin.read()
    """
)


def test_a_planted_record_does_not_blame_someone_else(lock_dir: Path) -> None:
    # An intruder holds d1's lock and plants a record naming alice's case and this process.
    path = lock_path(lock_dir, "device", "d1")
    intruder = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert intruder.stdout is not None and intruder.stdout.readline() == "held\n"
        lie = {"kind": "device", "id": "d1", "run_id": "r", "host": os.uname().nodename, "pid": os.getpid(),
               "worker": None, "case": "alice.sop.yaml::framed", "operator": "alice", "since": "2026-01-01T00:00:00Z"}  # fmt: skip
        for where in (path, lock_dir / "device-d1.holder.json"):
            where.write_text(json.dumps(lie))
        with pytest.raises(LeaseTimeout) as info:
            LeasePool(lock_dir, "r", "o").acquire([(D1, None)], case="c", timeout=0, requirement="d1")
        message = str(info.value)
        user = pwd.getpwuid(os.geteuid()).pw_name
        assert f"device d1: held by pid {intruder.pid} (user {user})" in message, message
        assert "held by case alice.sop.yaml::framed" not in message, message
        (row,) = lease_table(lock_dir, [D1], [])
        assert row.held and row.holder is None and row.pid == intruder.pid
    finally:
        intruder.kill()
        intruder.communicate()


# -- order and time --------------------------------------------------------------------


def test_locks_are_taken_in_the_one_global_order(lock_dir: Path) -> None:
    # account-a1 sorts before device-d1: a case wanting both tries the account first, and
    # while the account is busy it never touches the device's lock (nor creates it).
    a1 = account("a1")
    busy = os.open(lock_path(lock_dir, "account", "a1"), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(busy, fcntl.LOCK_EX | fcntl.LOCK_NB)
        pool = LeasePool(lock_dir, "r", "o")
        for pair in [(D1, a1), (D2, a1)]:
            with pytest.raises(LeaseTimeout):
                pool.acquire([pair], case="c", timeout=0, requirement="r")
        assert not lock_path(lock_dir, "device", "d1").exists()
        assert not lock_path(lock_dir, "device", "d2").exists()
    finally:
        os.close(busy)


def test_a_lease_timeout_gives_up_on_time(workers: Workers, tmp_path: Path) -> None:
    holder, _ = workers.hold(tmp_path, [["d1", None]], "a.sop.yaml::hold")
    pool = LeasePool(workers.lock_dir, "r", "o")
    started = time.monotonic()
    with pytest.raises(LeaseTimeout):
        pool.acquire([(D1, None)], case="c", timeout=1.0, requirement="d1")
    assert 1.0 <= time.monotonic() - started < 4.5  # gives up: neither early nor after waiting 5x as long
    release(holder)


def test_a_nan_lease_timeout_is_refused_not_waited_forever(lock_dir: Path) -> None:
    with pytest.raises(ValueError, match="timeout"):
        LeasePool(lock_dir, "r", "o").acquire([(D1, None)], case="c", timeout=float("nan"), requirement="r")


@pytest.fixture
def workers(lock_dir: Path) -> Iterator[Workers]:
    w = Workers(lock_dir)
    yield w
    w.close()


# -- the same settings for pytest and pytest-sop leases ---------------------------------


HOLD_TEST = """\
import os, time
from pathlib import Path

def test_hold(sop_device):
    Path(os.environ["READY"]).write_text(sop_device.id)
    while not Path(os.environ["GO"]).exists():
        time.sleep(0.01)
"""

INI = {
    "pytest.ini": "[pytest]\nsop_lock_dir = held-locks\n",
    "pyproject.toml": '[tool.pytest.ini_options]\nsop_lock_dir = "held-locks"\n',
    "tox.ini": "[pytest]\nsop_lock_dir = held-locks\n",
    "setup.cfg": "[tool:pytest]\nsop_lock_dir = held-locks\n",
}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_ADDOPTS"))}
    return {**env, **extra}


def leases_cli(cwd: Path, *args: str) -> dict[tuple[str, str], list[str]]:
    proc = subprocess.run([sys.executable, "-m", "pytest_sop", "leases", *args], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()[1:]]
    return {(r[0], r[1]): r[2:] for r in rows}


@pytest.mark.parametrize("ini", list(INI))
def test_leases_command_shows_a_real_run_in_the_ini_lock_folder(tmp_path: Path, ini: str) -> None:
    suite = tmp_path / "suite"
    (suite / "sub").mkdir(parents=True)
    (suite / "sop.yaml").write_text(
        "devices:\n  - {id: pixel-a, platform: android}\n  - {id: pixel-b, platform: android}\n"
    )
    (suite / ini).write_text(INI[ini])
    (suite / "test_hold.py").write_text(HOLD_TEST)
    ready, go = tmp_path / "ready", tmp_path / "go"
    run = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--sop-operator=op-ini",
                            "test_hold.py"], cwd=suite, env=clean_env(READY=str(ready), GO=str(go)),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert run.poll() is None, run.communicate()[0]
            assert time.monotonic() < deadline, "the run never leased a phone"
            time.sleep(0.01)
        assert (suite / "held-locks" / "device-pixel-a.lock").exists()  # relative to the ini file
        # From the suite, from a folder below it, and from elsewhere with --config.
        for cwd, args in ((suite, ()), (suite / "sub", ()), (tmp_path, ("--config", "suite/sop.yaml"))):
            table = leases_cli(cwd, *args)
            state, case, operator, pid, *_ = table[("device", "pixel-a")]
            assert (state, case, operator, int(pid)) == ("held", "test_hold.py::test_hold", "op-ini", run.pid), table
            assert table[("device", "pixel-b")][0] == "free"
        # --lock-dir wins over the ini.
        assert leases_cli(suite, "--lock-dir", str(tmp_path / "other"))[("device", "pixel-a")][0] == "free"
    finally:
        go.touch()
        out, _ = run.communicate(timeout=60)
    assert run.returncode == 0, out


# -- numbers in options and ini --------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "ini", "expected"),
    [
        (["--sop-lease-timeout=nan"], "", "--sop-lease-timeout: expected seconds from 0 to 86400, got 'nan'"),
        (["--sop-lease-timeout", "inf"], "", "--sop-lease-timeout: expected seconds from 0 to 86400, got 'inf'"),
        (["--sop-lease-timeout=-1"], "", "--sop-lease-timeout: expected seconds from 0 to 86400, got '-1'"),
        (["--sop-lease-timeout=1e12"], "", "--sop-lease-timeout: expected seconds from 0 to 86400, got '1e12'"),
        ([], "sop_lease_timeout = nan", "ini sop_lease_timeout: expected seconds from 0 to 86400, got 'nan'"),
        ([], "sop_escalate_after = 0", "ini sop_escalate_after: expected a whole number from 1 to 1000, got '0'"),
        ([], "sop_escalate_after = 2.5", "ini sop_escalate_after: expected a whole number from 1 to 1000, got '2.5'"),
        ([], "sop_escalate_after = 1e9", "ini sop_escalate_after: expected a whole number from 1 to 1000, got '1e9'"),
    ],
)
def test_bad_numbers_are_refused_naming_where_they_came_from(
    pytester: pytest.Pytester, args: list[str], ini: str, expected: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_x="def test_x():\n    print('RAN')\n")
    result = pytester.runpytest_subprocess("--sop", "-s", "-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    assert expected in result.stderr.str(), result.stderr.str()
    assert "RAN" not in result.stdout.str()
