"""A hostile host (issue 9): links planted where the store writes, files and folders another user
could change, a store shared by root and a service account, a full or read-only disk, a password
typed as a username, exports, core dumps.

These run as root, as pam_exec runs `verify` and as CI runs the suite: they chown files to other
users, fork children that become one, and mount small file systems. Each test cleans up what it
made (mounts in fixture finalizers, folders outside tmp_path removed) and depends on no other.
The command line runs as a process only where it is the point (its one-line refusals, exit 2).
"""

from __future__ import annotations

import csv
import gc
import importlib
import io
import json
import os
import pwd
import re
import resource
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pyotp
import pytest

from store import crypto
from store.errors import StoreError
from store.exports import write_private
from store.fs import UnsafePath
from store.models import NewUser, Outcome, Role
from store.paths import StorePaths
from store.service import Service
from tests.support import (
    PERIOD,
    ROOT,
    FakeClock,
    code,
    enroll,
    fill_disk,
    hand_edit_user,
    password,
    run_forked,
    store_state,
    users_csv,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: chown, setuid children and mounts")

OTHER = 65534  # nobody: the service account sharing a store with root, or the attacker
THIRD = 65533  # a third account, neither root nor OTHER
TYPED = "Tr0ub4dor&3xyzzy-pw"  # a password, typed into the username field


@pytest.fixture
def op(service):
    return service.operator("tester")


# -- helpers -------------------------------------------------------------------------------------
def mfa(paths: StorePaths, *args: str, input: str = "") -> subprocess.CompletedProcess[str]:
    """`mfa-console ARGS` as root on `paths`' store: never a traceback, never a raw escape."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(MFA_CONSOLE_DB=str(paths.db), MFA_CONSOLE_KEY=str(paths.key))
    proc = run_forked(list(args), input=input, env=env, cwd=paths.db.parent.parent)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert "\x1b" not in out, f"raw escape in the output of {args}: {out!r}"
    return proc


def refused(paths: StorePaths, *args: str, input: str = "") -> str:
    """A command refused as scripts and pam_exec need it: exit 2, nothing on stdout, one line on
    stderr (returned)."""
    proc = mfa(paths, *args, input=input)
    assert proc.returncode == 2, f"{args}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mfa-console: "), proc.stderr
    return lines[0]


def _load_lazy_imports() -> None:
    """What the store imports on first use, imported now: a child that became another user runs
    the service in-process and should not depend on reading modules as that user."""
    box = crypto.SecretBox(bytes(32))
    box.decrypt(box.encrypt("A" * 32, "x"), "x")
    importlib.import_module("store.csvio")  # import_users's parser


class AsUser:
    """A forked child that becomes `uid` at once and runs `fn` in-process when `result()` says go.

    Forked before the parent opens the store it will use: SQLite's state must not cross a fork.
    """

    def __init__(self, uid: int, fn: Callable[[], object]):
        _load_lazy_imports()
        go_read, self._go = os.pipe()
        self._out, out_write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns into pytest
            try:
                os.close(self._go)
                os.close(self._out)
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                os.read(go_read, 1)
                try:
                    out = {"value": fn()}
                except Exception as exc:  # reported to the parent, which fails the test with it
                    out = {"error": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}
                with open(out_write, "w") as pipe:
                    json.dump(out, pipe)
            finally:
                os._exit(0)
        os.close(go_read)
        os.close(out_write)

    def result(self, timeout: float = 30) -> dict:
        """Lets the child run; what it returned ({"value": ...}) or raised ({"error": name, ...}).
        A child still running after `timeout` seconds is killed and the test fails."""
        os.write(self._go, b"g")
        os.close(self._go)
        chunks, deadline = [], time.monotonic() + timeout
        with open(self._out, "rb", buffering=0) as pipe:
            while select.select([pipe], [], [], max(deadline - time.monotonic(), 0))[0]:
                if not (chunk := pipe.read(1 << 16)):
                    break
                chunks.append(chunk)
            else:
                os.kill(self.pid, signal.SIGKILL)
        _, status = os.waitpid(self.pid, 0)
        assert status == 0 and chunks, f"the child died or hung (status {status})"
        return json.loads(b"".join(chunks))


def as_user(uid: int, fn: Callable[[], object]):
    """`fn()` run by a child that became `uid`; its value, or the test fails with its error."""
    out = AsUser(uid, fn).result()
    assert "error" not in out, out.get("traceback")
    return out["value"]


def who(uid: int) -> str:
    """A user as messages name them: the account's name, else its uid."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def owners(folder: Path) -> dict[str, int]:
    return {p.name: p.lstat().st_uid for p in folder.iterdir()}


@pytest.fixture
def shared_folder():
    """A folder owned by the service account (OTHER) in a folder of root's alone (0755), as
    /var/lib/mfa-console sits in /var/lib; reachable by OTHER, unlike tmp_path (root's, 0700)."""
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="mfa-shared-"))
    base.chmod(0o755)
    folder = base / "mfa-console"
    folder.mkdir(mode=0o700)
    os.chown(folder, OTHER, OTHER)
    yield folder
    shutil.rmtree(base)


def test_root_does_not_trust_a_service_folder_anyone_could_have_made(clock):
    """Directly in /tmp, another user's folder could be anyone's: root refuses it (where its
    parent is root's alone, as in the fixture above, root trusts it)."""
    folder = Path(tempfile.mkdtemp(dir="/tmp", prefix="mfa-anyone-"))
    try:
        os.chown(folder, OTHER, OTHER)
        with pytest.raises(UnsafePath) as refusal:
            Service(StorePaths(db=folder / "store.db", key=folder / "store.key"), clock=clock).policy()
        assert f"folder {folder} is owned by {who(OTHER)}" in str(refusal.value)
    finally:
        shutil.rmtree(folder)


def _made_as_service_account(paths: StorePaths, clock: FakeClock) -> str:
    """In a child that is OTHER: a store with alice enrolled; returns her secret."""
    service = Service.create(paths, issuer="Acme Contact Center", actor="svc", clock=clock)
    try:
        op = service.operator("svc")
        service.add_user(op, NewUser("alice", "Alice", Role.AGENT), password=password("alice"))
        return enroll(service, op, "alice", clock)
    finally:
        service.close()


def _add_user_as(paths: StorePaths, username: str) -> str:
    service = Service(paths)
    try:
        return service.add_user(service.operator("svc"), NewUser(username, username.title(), Role.AGENT)).username
    finally:
        service.close()


# -- links planted where the store reads and writes ----------------------------------------------
VERIFY = (["verify", "alice"], "123456\n")
ADD = (["users", "add", "eve", "--name", "Eve", "--role", "agent"], "")
LINK_COMMANDS = {  # for each file, commands that open it (store.key: only those that need a secret)
    "store.db": [VERIFY, ADD],
    "store.db-wal": [VERIFY, ADD],
    "store.db-shm": [VERIFY, (["users", "list"], "")],
    "store.key": [VERIFY, (["login", "alice"], "alice-password\n123456\n")],
}


@pytest.mark.parametrize("name", LINK_COMMANDS)
def test_a_link_planted_at_a_store_file_is_refused_and_its_target_untouched(service, paths, op, clock, tmp_path,
                                                                            name):  # fmt: skip
    """The store and key move away and a link to them takes their place, so following it would
    "work"; -wal and -shm lead to a file an attacker wants overwritten. Root refuses them all."""
    enroll(service, op, "alice", clock)
    service.close()  # the WAL is checkpointed and removed: nothing stands where the links go
    planted = paths.db.parent / name
    target = tmp_path / "target"
    if planted.exists():
        planted.rename(target)
    else:
        target.write_bytes(b"a file root must not write\n" * 200)
    planted.symlink_to(target)
    before = target.read_bytes()
    for args, input in LINK_COMMANDS[name]:
        message = refused(paths, *args, input=input)
        assert str(planted) in message and "symbolic link" in message and "remove it" in message, message
    assert target.read_bytes() == before and planted.is_symlink()
    if name == "store.key":
        with pytest.raises(StoreError, match="symbolic link"):
            Service(paths, clock=clock).verify("alice", "123456")
        assert target.read_bytes() == before


@pytest.mark.parametrize("name", ["store.db", "store.key"])
def test_init_refuses_a_link_where_it_would_create_a_file(tmp_path, name):
    """`init` makes the store and the key: a link at either name, even one leading nowhere, is
    refused by name, and nothing is created where it leads."""
    paths = StorePaths(db=tmp_path / "store" / "store.db", key=tmp_path / "store" / "store.key")
    paths.db.parent.mkdir(mode=0o700)
    target = tmp_path / "elsewhere" / name
    target.parent.mkdir()
    (paths.db.parent / name).symlink_to(target)
    message = refused(paths, "init", "--issuer", "Acme", "--admin", "root", "--password-stdin",
                      input="root-password\n")  # fmt: skip
    assert str(paths.db.parent / name) in message and "symbolic link" in message, message
    assert list(target.parent.iterdir()) == []
    assert sorted(p.name for p in paths.db.parent.iterdir()) == [name]  # the link alone, as it was


def _plant_at_the_building_name(tmp_path, suffix: str) -> tuple[StorePaths, Path, Path]:
    """A link at the temporary name Database.create builds a store under in this thread
    (.store.db.PID.THREAD.new), or beside it where SQLite makes -wal and -shm. Returns the
    store's paths, the link and its target."""
    paths = StorePaths(db=tmp_path / "new" / "store.db", key=tmp_path / "new" / "store.key")
    paths.db.parent.mkdir(mode=0o700)
    link = paths.db.parent / f".store.db.{os.getpid()}.{threading.get_ident()}.new{suffix}"
    target = tmp_path / "target"
    target.write_bytes(TARGET_BYTES)
    link.symlink_to(target)
    return paths, link, target


TARGET_BYTES = b"a file root must not write\n" * 200


def test_a_link_at_the_name_a_new_store_is_built_under_is_refused(tmp_path, clock):
    """Database.create builds the store under a temporary name, then links it into place: a link
    planted at that name is refused by name, and nothing half-made is left (no orphan key)."""
    paths, link, target = _plant_at_the_building_name(tmp_path, "")
    with pytest.raises(UnsafePath) as refusal:
        Service.create(paths, issuer="Acme", actor="tester", clock=clock)
    assert str(link) in str(refusal.value) and "symbolic link" in str(refusal.value)
    assert target.read_bytes() == TARGET_BYTES
    assert [p for p in paths.db.parent.iterdir() if not p.is_symlink()] == []


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
def test_a_link_beside_the_name_a_new_store_is_built_under_is_not_followed(tmp_path, clock, suffix):
    """SQLite makes -wal and -shm beside the temporary name: a link planted there leads nowhere
    we write. The store is made whole (SQLite removed the link) or refused in one line naming
    the temporary name; its target is untouched either way, and nothing half-made is left."""
    paths, link, target = _plant_at_the_building_name(tmp_path, suffix)
    try:
        Service.create(paths, issuer="Acme", actor="tester", clock=clock).close()
    except StoreError as exc:
        assert str(link).removesuffix(suffix) in str(exc) and "\n" not in str(exc), exc
        assert [p for p in paths.db.parent.iterdir() if not p.is_symlink()] == []
    else:
        assert sorted(p.name for p in paths.db.parent.iterdir()) == ["store.db", "store.key"]
        made = Service(paths, clock=clock)
        assert made.policy().issuer == "Acme"
        made.close()
    assert target.read_bytes() == TARGET_BYTES


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
def test_a_link_beside_the_name_a_new_store_is_built_under_is_refused_by_name(tmp_path, clock, suffix):
    """What the test above accepts, as it should be: refused, the message naming the link."""
    paths, link, target = _plant_at_the_building_name(tmp_path, suffix)
    with pytest.raises(UnsafePath) as refusal:
        Service.create(paths, issuer="Acme", actor="tester", clock=clock)
    assert str(link) in str(refusal.value) and "symbolic link" in str(refusal.value)
    assert link.is_symlink() and target.read_bytes() == TARGET_BYTES  # a file it did not make, left alone


def test_init_through_a_folder_link_leading_nowhere_is_one_line(tmp_path):
    """Root's own link as the store's folder, its target gone (a volume not mounted, say): one
    line naming the link, and nothing made where it leads."""
    paths = StorePaths(db=tmp_path / "store" / "store.db", key=tmp_path / "store" / "store.key")
    paths.db.parent.symlink_to(tmp_path / "not-mounted")
    message = refused(paths, "init", "--issuer", "Acme", "--admin", "root", "--password-stdin",
                      input="root-password\n")  # fmt: skip
    assert message.startswith(f"mfa-console: {paths.db.parent} is a symbolic link to a folder that does not exist")
    assert not (tmp_path / "not-mounted").exists()


@pytest.fixture
def theirs(tmp_path, clock):
    """A store made by OTHER, with its key, in a folder of OTHER's: alice's code is one OTHER
    knows. Returns (folder, alice's secret)."""
    folder = tmp_path / "theirs"
    paths = StorePaths(db=folder / "store.db", key=folder / "store.key")
    service = Service.create(paths, issuer="Not yours", actor="attacker", clock=clock)
    op = service.operator("attacker")
    service.add_user(op, NewUser("alice", "Alice", Role.AGENT))
    secret = enroll(service, op, "alice", clock)
    service.close()
    for path in (folder, paths.db, paths.key):
        os.chown(path, OTHER, OTHER)
    return folder, secret


@pytest.mark.parametrize("leads_to", ["the real store's folder", "a store of the link owner's", "nothing"])
def test_a_store_folder_that_is_another_users_link_is_refused(service, paths, op, clock, tmp_path, theirs,
                                                              leads_to):  # fmt: skip
    """The store's folder swapped for a link by another user (chown -h): refused whatever it
    leads to. Followed to a folder of theirs, their store and key would accept their code: a
    full 2FA bypass for root's verify."""
    secret = enroll(service, op, "alice", clock)
    service.close()
    real = tmp_path / "real"
    paths.db.parent.rename(real)
    target = {"the real store's folder": real, "a store of the link owner's": theirs[0],
              "nothing": tmp_path / "gone"}[leads_to]  # fmt: skip
    if leads_to == "a store of the link owner's":
        secret = theirs[1]
    link = paths.db.parent
    link.symlink_to(target)
    os.chown(link, OTHER, OTHER, follow_symlinks=False)
    clock.advance(PERIOD)
    with pytest.raises(UnsafePath) as refusal:
        Service(paths, clock=clock).verify("alice", code(secret, clock))
    assert str(refusal.value) == (f"{link} is a symbolic link owned by {who(OTHER)}: refusing to follow it; "
                                  "use the real path, or remove the link")  # fmt: skip
    message = refused(paths, "verify", "alice", input=pyotp.TOTP(secret).now() + "\n")
    assert str(link) in message and "symbolic link" in message, message
    message = refused(paths, "init", "--issuer", "Acme", "--admin", "root", "--password-stdin",
                      input="root-password\n")  # fmt: skip
    assert str(link) in message and "symbolic link" in message, message
    assert not (tmp_path / "gone").exists()
    assert sorted(p.name for p in real.iterdir()) == ["store.db", "store.key"]


# -- other users' files and folders (sshd's StrictModes) -----------------------------------------
@pytest.mark.parametrize("name", ["store.db", "store.key"])
def test_a_store_file_owned_by_another_user_is_refused(service, paths, op, clock, name):
    """Root trusts files of its own and of the folder's owner: one of OTHER's, in root's folder,
    was put there by someone root does not trust."""
    secret = enroll(service, op, "alice", clock)
    service.close()
    path = paths.db.parent / name
    os.chown(path, OTHER, OTHER)
    before = store_state(paths.db)
    clock.advance(PERIOD)
    with pytest.raises(UnsafePath) as refusal:
        Service(paths, clock=clock).verify("alice", code(secret, clock))
    message = str(refusal.value)
    assert str(path) in message and f"owned by {who(OTHER)}" in message and f"`chown root {path}`" in message, message
    assert store_state(paths.db) == before


def test_a_store_folder_owned_by_another_user_is_refused():
    """As any user but root (which trusts the folder's owner: see the sharing tests below), a
    store folder of another user's is refused: they could swap the store under it."""
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="mfa-third-"))
    try:
        base.chmod(0o755)
        paths = StorePaths(db=base / "store" / "store.db", key=base / "store" / "store.key")
        Service.create(paths, issuer="Acme", actor="tester").close()
        for path in (paths.db.parent, paths.db, paths.key):
            os.chown(path, THIRD, THIRD)

        def policy() -> str:
            return Service(paths).policy().issuer

        out = AsUser(OTHER, policy).result()
        assert out.get("error") == "UnsafePath", out
        folder = paths.db.parent
        assert f"folder {folder} is owned by {who(THIRD)}" in out["message"], out
        assert f"`chown {who(OTHER)} {folder}`" in out["message"], out
    finally:
        shutil.rmtree(base)


def test_a_folder_above_the_store_owned_by_another_user_is_refused(service, paths, op, clock, tmp_path):
    """Root trusts the store folder's owner only: the owner of a folder above could rename the
    store's folder away and put another in its place."""
    service.close()
    above = tmp_path / "above"
    store_folder = above / "store"
    above.mkdir(mode=0o755)
    paths.db.parent.rename(store_folder)
    os.chown(above, OTHER, OTHER)
    moved = StorePaths(db=store_folder / "store.db", key=store_folder / "store.key")
    with pytest.raises(UnsafePath) as refusal:
        Service(moved, clock=clock).policy()
    message = str(refusal.value)
    assert f"folder {above} is owned by {who(OTHER)}" in message and f"`chown root {above}`" in message, message


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o720, 0o702], ids=lambda mode: f"{mode:04o}")
def test_a_store_folder_others_may_write_is_refused(service, paths, op, clock, mode):
    """Whoever may write the folder may swap the store and key for theirs, or plant links beside them."""
    secret = enroll(service, op, "alice", clock)
    service.close()
    before = store_state(paths.db)
    paths.db.parent.chmod(mode)
    clock.advance(PERIOD)
    with pytest.raises(UnsafePath) as refusal:
        Service(paths, clock=clock).verify("alice", code(secret, clock))
    folder = paths.db.parent
    assert f"folder {folder} is writable by other users (mode {mode:04o})" in str(refusal.value)
    assert f"`chmod go-w {folder}`" in str(refusal.value)
    if mode == 0o770:  # and the command line says it in one line (once: the same message)
        message = refused(paths, "verify", "alice", input=pyotp.TOTP(secret).now() + "\n")
        assert f"`chmod go-w {folder}`" in message
    paths.db.parent.chmod(0o700)
    assert store_state(paths.db) == before


@pytest.mark.parametrize(("mode", "accepted"), [(0o777, False), (0o775, False), (0o1777, True), (0o1755, True)],
                         ids=["0777", "0775", "1777", "1755"])
def test_a_folder_above_others_may_write_is_refused_unless_sticky(service, paths, op, clock, tmp_path, mode,
                                                                   accepted):  # fmt: skip
    """Like /tmp: world-writable with the sticky bit, nobody else can move what is ours in it."""
    secret = enroll(service, op, "alice", clock)
    service.close()
    clock.advance(PERIOD)
    tmp_path.chmod(mode)
    try:
        fresh = Service(paths, clock=clock)
        if accepted:
            assert fresh.verify("alice", code(secret, clock)).ok
            fresh.close()
        else:
            with pytest.raises(UnsafePath) as refusal:
                fresh.verify("alice", code(secret, clock))
            assert f"folder {tmp_path} is writable by other users" in str(refusal.value)
            assert f"`chmod go-w {tmp_path}`" in str(refusal.value)
    finally:
        tmp_path.chmod(0o700)


@pytest.mark.parametrize(
    ("name", "mode"),
    [("store.key", 0o644), ("store.key", 0o640), ("store.key", 0o604), ("store.db", 0o644)],
    ids=["key-0644", "key-0640", "key-0604", "db-0644"],
)
def test_a_store_file_others_may_read_is_refused(service, paths, op, clock, name, mode):
    """The key decrypts every secret; the store holds their sealed forms and the password hashes."""
    secret = enroll(service, op, "alice", clock)
    service.close()
    path = paths.db.parent / name
    path.chmod(mode)
    clock.advance(PERIOD)
    with pytest.raises(UnsafePath) as refusal:
        Service(paths, clock=clock).verify("alice", code(secret, clock))
    assert f"{path} is open to other users (mode {mode:04o})" in str(refusal.value)
    assert f"`chmod 600 {path}`" in str(refusal.value)
    if mode == 0o644:  # and the command line says it in one line
        message = refused(paths, "verify", "alice", input=pyotp.TOTP(secret).now() + "\n")
        assert f"`chmod 600 {path}`" in message


def test_a_key_file_that_is_a_fifo_is_refused_at_once(service, paths, op, clock):
    """A FIFO at the key's name must not hold `verify` (and the SSH login with it) forever."""
    service.close()
    paths.key.unlink()
    os.mkfifo(paths.key, 0o600)
    started = time.monotonic()
    message = refused(paths, "verify", "alice", input="123456\n")
    assert time.monotonic() - started < 10
    assert str(paths.key) in message and "not a regular file" in message


# -- a store shared by root (pam_exec) and a service account -------------------------------------
def test_a_store_made_by_the_service_account_works_for_root_and_stays_the_accounts(shared_folder, clock):
    """The supported sharing: the service account owns the folder and made the store; root's
    verify (pam_exec) works on it, and whatever root's SQLite creates there (-wal, -shm) belongs to
    the account, which keeps writing meanwhile and afterwards."""
    paths = StorePaths(db=shared_folder / "store.db", key=shared_folder / "store.key")
    secret = as_user(OTHER, lambda: _made_as_service_account(paths, clock))
    assert owners(shared_folder) == {"store.db": OTHER, "store.key": OTHER}
    clock.advance(PERIOD)
    meanwhile = AsUser(OTHER, lambda: _add_user_as(paths, "bob"))  # forked before root opens the store
    root = Service(paths, clock=clock)
    try:
        assert root.verify("alice", code(secret, clock), actor="verify:root").outcome is Outcome.OK
        assert owners(shared_folder) == dict.fromkeys(["store.db", "store.db-wal", "store.db-shm", "store.key"], OTHER)
        assert meanwhile.result() == {"value": "bob"}  # writing while root has the store open
        assert owners(shared_folder) == dict.fromkeys(["store.db", "store.db-wal", "store.db-shm", "store.key"], OTHER)
    finally:
        root.close()
    assert set(owners(shared_folder).values()) == {OTHER}
    assert as_user(OTHER, lambda: _add_user_as(paths, "carol")) == "carol"
    assert {stat.S_IMODE(p.stat().st_mode) for p in shared_folder.iterdir()} == {0o600}


def test_root_making_a_store_in_the_service_accounts_folder_gives_it_the_files(shared_folder, clock):
    """`init` by root in the account's folder: the store and key are the account's, so it can use them."""
    paths = StorePaths(db=shared_folder / "store.db", key=shared_folder / "store.key")
    service = Service.create(paths, issuer="Acme", actor="root", clock=clock)
    try:
        op = service.operator("root")
        service.add_user(op, NewUser("alice", "Alice", Role.AGENT))
        assert owners(shared_folder) == dict.fromkeys(["store.db", "store.db-wal", "store.db-shm", "store.key"], OTHER)
    finally:
        service.close()
    assert owners(shared_folder) == {"store.db": OTHER, "store.key": OTHER}
    assert {stat.S_IMODE(p.stat().st_mode) for p in shared_folder.iterdir()} == {0o600}

    def enroll_alice() -> str:  # writes, and reads the key
        svc = Service(paths, clock=clock)
        try:
            return enroll(svc, svc.operator("svc"), "alice", clock)
        finally:
            svc.close()

    secret = as_user(OTHER, enroll_alice)
    clock.advance(PERIOD)
    root = Service(paths, clock=clock)
    try:
        assert root.verify("alice", code(secret, clock)).ok
    finally:
        root.close()


# -- a full disk, a read-only disk ---------------------------------------------------------------




def _store_with_alice(paths: StorePaths) -> tuple[Service, str]:
    """A store whose clock is a minute behind, so the CLI's verify at the real time takes alice's
    codes; returns it open, and her secret."""
    clock = FakeClock(time.time() - 2 * PERIOD)
    service = Service.create(paths, issuer="Acme", actor="tester", clock=clock)
    op = service.operator("tester")
    service.add_user(op, NewUser("alice", "Alice", Role.AGENT), password=password("alice"))
    return service, enroll(service, op, "alice", clock)


def test_a_full_disk_refuses_each_change_clearly_and_loses_nothing(small_disk):
    """With the store open (a dashboard, say), the disk fills up: an import, an add and a verify
    each fail whole with one clear line; verify fails closed, its right code not accepted. Once
    space is back the store holds exactly what it held, and that code still works."""
    paths = StorePaths(db=small_disk / "store" / "store.db", key=small_disk / "store" / "store.key")
    service, secret = _store_with_alice(paths)
    try:
        op = service.operator("tester")
        before = store_state(paths.db)
        filler = fill_disk(small_disk)
        for change in (lambda: service.import_users(op, users_csv([f"agent{i:04d}" for i in range(3000)])),
                       lambda: service.add_user(op, NewUser("bob", "Bob", Role.AGENT))):  # fmt: skip
            with pytest.raises(StoreError) as full:
                change()
            assert str(full.value) == f"no space left on the disk of store {paths.db}; nothing was changed"
        right_code = pyotp.TOTP(secret).now()
        message = refused(paths, "verify", "alice", input=f"{right_code}\n")
        assert message == f"mfa-console: no space left on the disk of store {paths.db}; nothing was changed"
        filler.unlink()
        assert store_state(paths.db) == before
    finally:
        service.close()
    fresh = Service(paths)
    try:
        fresh.preload()  # every page checked
        assert store_state(paths.db) == before
        assert fresh.verify("alice", right_code).ok  # not spent by the verify that failed
    finally:
        fresh.close()


def test_a_full_disk_with_the_store_closed_says_no_space(small_disk):
    """Nobody has the store open, so a verify must first make the -shm file: that fails for want
    of space too, and should say so rather than blame the disk."""
    paths = StorePaths(db=small_disk / "store" / "store.db", key=small_disk / "store" / "store.key")
    service, secret = _store_with_alice(paths)
    service.close()
    before = store_state(paths.db)
    filler = fill_disk(small_disk)
    message = refused(paths, "verify", "alice", input=pyotp.TOTP(secret).now() + "\n")
    filler.unlink()
    assert store_state(paths.db) == before
    assert message == f"mfa-console: no space left on the disk of store {paths.db}; nothing was changed"


def test_init_on_a_full_disk_is_one_line_and_leaves_nothing(small_disk):
    """The key is the first file init writes: a full disk there is one line, and no key half
    written (nor an empty one) is left to be taken for the store's."""
    paths = StorePaths(db=small_disk / "store" / "store.db", key=small_disk / "store" / "store.key")
    paths.db.parent.mkdir(mode=0o700)
    fill_disk(small_disk)
    message = refused(paths, "init", "--issuer", "Acme", "--admin", "root", "--password-stdin",
                      input="root-password\n")  # fmt: skip
    assert "No space left on device" in message or "no space left" in message, message
    assert list(paths.db.parent.iterdir()) == []


def test_a_read_only_disk_is_one_clear_line_and_loses_nothing(small_disk):
    """A file system remounted read-only (errors=remount-ro after a disk fault, say): a verify and
    a change are each one line, exit 2, and the store is as it was once the disk is back."""
    paths = StorePaths(db=small_disk / "store" / "store.db", key=small_disk / "store" / "store.key")
    service, secret = _store_with_alice(paths)
    service.close()
    before = store_state(paths.db)
    gc.collect()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    expected = f"mfa-console: store {paths.db} cannot be written (read-only file system or file); nothing was changed"
    assert refused(paths, "verify", "alice", input=pyotp.TOTP(secret).now() + "\n") == expected
    assert refused(paths, "users", "add", "bob", "--name", "Bob", "--role", "agent") == expected
    subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert store_state(paths.db) == before


# -- a password typed as a username --------------------------------------------------------------
def test_a_password_typed_as_a_username_is_written_nowhere(service, paths, op, clock):
    """Typed into the name field, over and over (until that "name" is locked out like an
    account), at the dashboard, the command line and a verify: it reaches no file of the store's
    folder and no line of the audit log."""
    enroll(service, op, "alice", clock)
    for _ in range(6):
        assert service.login(TYPED, "correct horse").outcome in (Outcome.INVALID, Outcome.LOCKED)
        assert service.verify(TYPED, "123456").outcome in (Outcome.INVALID, Outcome.LOCKED)
    assert service.login(TYPED, "correct horse").outcome is Outcome.LOCKED  # counted, under a tag
    assert mfa(paths, "login", TYPED, input="correct horse\n").returncode in (1, 3)
    forms = {TYPED, TYPED.casefold(), TYPED.upper()}

    def leaks() -> dict[str, list[str]]:
        found = {}
        for path in paths.db.parent.iterdir():  # the database, its WAL and shared memory, the key
            data = path.read_bytes()
            found.update({path.name: hits} if (hits := [f for f in forms if f.encode() in data]) else {})
        return found

    assert {p.name for p in paths.db.parent.iterdir()} >= {"store.db", "store.db-wal", "store.db-shm", "store.key"}
    assert leaks() == {}  # with the WAL in use
    audit = mfa(paths, "audit").stdout
    assert "unknown name #" in audit and not [f for f in forms if f in audit]
    service.close()
    assert leaks() == {}  # and once checkpointed into the database


# -- exports -------------------------------------------------------------------------------------
def test_an_export_does_not_replace_a_file_without_force(service, paths, tmp_path):
    """A typo in -o must not destroy a file: without --force it is left exactly as it was."""
    out = tmp_path / "users.csv"
    out.write_text("keep me\n")
    before = out.stat()
    message = refused(paths, "users", "export", "-o", str(out))
    assert message == f"mfa-console: {out} already exists (--force replaces it)"
    after = out.stat()
    assert out.read_text() == "keep me\n" and (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_an_export_with_force_replaces_the_name_not_what_it_is_linked_to(service, paths, tmp_path):
    """A hard link at the name (to a file of someone else's, say) is replaced, never written into."""
    other = tmp_path / "someone-elses.txt"
    other.write_text("not an export\n")
    other.chmod(0o644)
    out = tmp_path / "users.csv"
    os.link(other, out)
    proc = mfa(paths, "users", "export", "-o", str(out), "--force")
    assert proc.returncode == 0 and proc.stderr == f"Exported 4 users to {out}.\n"
    assert other.read_text() == "not an export\n" and other.stat().st_nlink == 1
    assert out.read_text().startswith("username,name,")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and not out.samefile(other)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
def test_an_export_refuses_a_link_at_its_name(service, paths, tmp_path, force):
    """Root exporting to a name in a shared folder: a link planted there would make root write any file."""
    target = tmp_path / "target"
    target.write_text("root must not write here\n")
    out = tmp_path / "users.csv"
    out.symlink_to(target)
    message = refused(paths, "users", "export", "-o", str(out), *force)
    assert message == f"mfa-console: {out} is a symbolic link: refusing to write through it"
    assert target.read_text() == "root must not write here\n" and out.is_symlink()


def test_an_export_is_created_0600_whatever_the_umask(service, op, tmp_path):
    """Staff names and emails: a new export and one replacing a file are the operator's alone."""
    old = os.umask(0)
    try:
        write_private(tmp_path / "new.csv", lambda out: out.write("x\n"))
        (tmp_path / "old.csv").write_text("old\n")
        write_private(tmp_path / "old.csv", lambda out: out.write("x\n"), force=True)
    finally:
        os.umask(old)
    for name in ("new.csv", "old.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
        assert (tmp_path / name).read_text() == "x\n"


FORMULAS = {"ada": "=HYPERLINK(\"http://x\",\"y\")", "sam": "+1+1", "alice": "-2+3", "bob": "@SUM(A1:A2)"}


def test_an_export_neutralises_formulas_and_escapes_from_a_hand_edited_store(service, paths, tmp_path):
    """Validation keeps these out; a store edited by hand still gets them in. A spreadsheet must
    show a name, not run it (OWASP: a leading '), and a terminal must not run an escape."""
    for key, formula in FORMULAS.items():
        hand_edit_user(paths.db, key, name=formula)
    hand_edit_user(paths.db, "ada", email="\t=cmd|' /C calc'!A0", team="\r=1+1")
    hand_edit_user(paths.db, "sam", team="\x1b]0;owned\x07\x1b[2J")
    out = tmp_path / "users.csv"
    assert mfa(paths, "users", "export", "-o", str(out)).returncode == 0
    text = out.read_text()
    stdout = mfa(paths, "users", "export").stdout
    assert stdout == text and "\x1b" not in text
    rows = {row["username"]: row for row in csv.DictReader(io.StringIO(text))}
    assert {key: rows[key]["name"] for key in FORMULAS} == {key: "'" + f for key, f in FORMULAS.items()}
    assert rows["ada"]["email"].startswith("'") and rows["ada"]["team"].startswith("'")
    assert "\x1b" not in mfa(paths, "users", "export", "--format", "json").stdout  # json escapes it: \u001b
    weird = tmp_path / "users-\x1b[2J.csv"
    proc = mfa(paths, "users", "export", "-o", str(weird))  # the name the operator typed, echoed
    assert proc.returncode == 0 and weird.exists()


# -- core dumps ----------------------------------------------------------------------------------
def test_a_command_holding_secrets_cannot_dump_core(service, paths):
    """`login` waits for the password with the store open: its core limit is 0, even when it was
    started with core dumps allowed."""

    def allow_core_dumps():
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(MFA_CONSOLE_DB=str(paths.db), MFA_CONSOLE_KEY=str(paths.key), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "cli", "login", "alice"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=allow_core_dumps)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not _has_open(proc.pid, paths.db):  # the store open: the password is read next
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        assert proc.poll() is None  # still waiting on its stdin
        assert re.search(r"^Max core file size\s+0\s+0\s+bytes", limits, re.M), limits
    finally:
        proc.kill()
        proc.communicate()


def _has_open(pid: int, path: Path) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
        except FileNotFoundError:
            continue
    return False
