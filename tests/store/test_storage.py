"""The SQLite store under the service: processes and threads, bad files, what is on disk, keys,
and the user list's cache."""

from __future__ import annotations

import gc
import os
import shutil
import sqlite3
import stat
import threading

import pytest

from store import crypto
from store.errors import KeyFileError, StoreCorrupt, StoreError, StoreMissing
from store.gcpause import gc_paused
from store.models import NewUser, Outcome, Role, Status
from store.paths import StorePaths
from store.service import Service
from store.sql import SCHEMA_VERSION
from store.sql.sqlite import APPLICATION_ID
from store.totp import group_secret
from tests.support import (
    PERIOD,
    code,
    connect,
    damage_table,
    enroll,
    everything_stored,
    last_json_line,
    password,
    query,
    read_store,
    run_python,
    start_together,
    store_state,
    tables,
    users_csv,
    written,
)

ON_BOTH_ENGINES = True

FIXTURE_USERS = {"ada", "sam", "alice", "bob"}


@pytest.fixture
def op(service):
    return service.operator("tester")


def usernames(service, op) -> set[str]:
    return {u.username for u in service.list_users(op)}


# -- several processes and threads at once ---------------------------------------------------

WORKER = """
import json, sys
from pathlib import Path
from store.errors import InvalidInput
from store.models import NewUser, Outcome, Role
from store.paths import resolve
from store.service import Service
db, key, tag = sys.argv[1:]
service = Service(resolve(db, key), clock=lambda: 1_796_000_000.0)
op = service.operator("worker")
print("ready", flush=True)
sys.stdin.readline()  # all workers start together
wrong = []
for i in range(20):
    service.add_user(op, NewUser(f"{tag}-{i:02d}", f"User {tag} {i}", Role.AGENT))
    if i % 5 == 0:  # one wrong password for each of the fixture's users, between the adds
        name = ("ada", "sam", "alice", "bob")[i // 5]
        wrong.append(service.login(name, "wrong-password").outcome is Outcome.INVALID)
try:
    service.add_user(op, NewUser("dup", "Everyone adds me", Role.AGENT))
    won = True
except InvalidInput:
    won = False
print(json.dumps({"won": won, "wrong": wrong}))
"""


def test_processes_writing_at_once_lose_no_update(service, paths, op):
    service.list_users(op)  # this instance has the users cached before the others write
    tags = ["p0", "p1", "p2", "p3"]
    results = start_together(WORKER, [[paths.db, paths.key, tag] for tag in tags])
    assert all(all(r["wrong"]) and len(r["wrong"]) == 4 for r in results)
    assert sum(r["won"] for r in results) == 1  # "dup": one process adds it, the others are told it exists
    expected = FIXTURE_USERS | {"dup"} | {f"{tag}-{i:02d}" for tag in tags for i in range(20)}
    assert usernames(service, op) == expected
    users = {u.username: u for u in service.list_users(op)}
    assert {name: users[name].failures for name in FIXTURE_USERS} == dict.fromkeys(FIXTURE_USERS, 4)
    fresh = Service(paths)
    try:
        assert usernames(fresh, fresh.operator("tester")) == expected
    finally:
        fresh.close()


def test_threads_and_instances_in_one_process(service, paths, op):
    other = Service(paths)
    other_op = other.operator("tester")
    errors = []

    def add(svc, session, tag):
        try:
            for i in range(15):
                svc.add_user(session, NewUser(f"{tag}-{i:02d}", f"{tag} {i}", Role.AGENT))
                svc.list_users(session)
        except Exception as exc:  # reported below: a thread's exception would be lost
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(service, op, f"t{i}")) for i in range(3)]
    threads += [threading.Thread(target=add, args=(other, other_op, f"o{i}")) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.close()
    assert errors == []
    expected = FIXTURE_USERS | {f"{tag}-{i:02d}" for tag in ("t0", "t1", "t2", "o0", "o1") for i in range(15)}
    assert usernames(service, op) == expected


def test_a_change_and_its_event_commit_together_or_not_at_all(service, paths, op):
    before = store_state(paths.db)
    events = len(service.audit(op))
    with pytest.raises(RuntimeError, match="refused"):
        with service.db.write() as w:
            w.update_user("alice", name="Changed")
            w.record([service._event("os:tester", "user.edit", "alice", "ok", "name")])
            raise RuntimeError("refused")
    assert store_state(paths.db) == before and len(service.audit(op)) == events
    assert service.get_user(op, "alice").name == "Alice"


# -- files that are not a store --------------------------------------------------------------


def _sqlite_file(path, *statements):
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()
    path.chmod(0o600)


def _rewrite(path, change):
    conn = connect(path)
    try:
        for statement in change:
            conn.execute(statement)
    finally:
        conn.close()


BAD_FILES = {
    "garbage": lambda p: p.write_bytes(b"\x00\x01 this is not a store" + bytes(range(256)) * 40),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 3]),
    "empty": lambda p: p.write_bytes(b""),
    "json": lambda p: p.write_bytes(b"[1, 2, 3]"),
    "another program's SQLite": lambda p: (p.unlink(), _sqlite_file(p, "CREATE TABLE t (x)")),
    "header cut": lambda p: p.write_bytes(p.read_bytes()[:60]),
    "a trigger planted": lambda p: _rewrite(p, ["CREATE TRIGGER t AFTER UPDATE ON users BEGIN SELECT 1; END"]),
    "a table gone": lambda p: _rewrite(p, ["DROP TABLE unknown_names"]),
    "the users' pages damaged": lambda p: damage_table(p, "users"),
    "the settings damaged": lambda p: _rewrite(p, ["PRAGMA ignore_check_constraints = ON",
                                                   "UPDATE settings SET mode = 'sometimes'"]),
    "no schema version": lambda p: _rewrite(p, ["PRAGMA user_version = 0"]),
}


@pytest.mark.sqlite_only  # the file itself
@pytest.mark.parametrize("damage", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_damaged_store_is_refused_clearly_and_left_untouched(service, paths, clock, damage):
    service.close()
    damage(paths.db)
    before = written(paths.db)
    stamp = paths.db.stat().st_mtime_ns
    fresh = Service(paths, clock=clock)
    attempts = [  # each refuses, or answers without touching the damage (reading the policy, say)
        fresh.policy,
        lambda: fresh.operator("tester"),
        lambda: fresh.login("alice", password("alice")),
        lambda: fresh.verify("alice", "123456"),
        lambda: fresh.list_users(fresh.operator("tester")),
    ]
    refusals = []
    for attempt in attempts:
        try:
            attempt()
        except StoreCorrupt as refused:
            refusals.append(str(refused))
    with pytest.raises(StoreCorrupt) as whole:
        fresh.preload()  # the dashboard's check of every page finds it, wherever it is
    fresh.close()
    for message in [*refusals, str(whole.value)]:
        assert str(paths.db) in message and ("untouched" in message or "restore it from a backup" in message)
    assert written(paths.db) == before  # nothing, not even in a WAL
    assert paths.db.stat().st_mtime_ns == stamp


def test_a_newer_schema_is_refused_as_such(service, paths, engine, op):
    service.close()
    if engine == "sqlite":
        _rewrite(paths.db, [f"PRAGMA user_version = {SCHEMA_VERSION + 1}"])
    else:
        query(paths.db, "UPDATE mfa_console SET version = ?", (SCHEMA_VERSION + 1,))
    before = store_state(paths.db)
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}") as refused:
        Service(paths).policy()
    assert not isinstance(refused.value, StoreCorrupt)
    assert paths.shown in str(refused.value) and "upgrade mfa-console" in str(refused.value)
    assert store_state(paths.db) == before


def test_a_store_of_an_older_schema_is_brought_up_to_date_when_opened(service, paths, engine, op, alice_secret, clock):
    """Version 3 (before the service's clients) opened by this version: upgraded in place, once,
    with every user as it was."""
    service.close()
    if engine == "sqlite":
        _rewrite(paths.db, ["DROP TABLE clients", "PRAGMA user_version = 3"])
    else:
        query(paths.db, "DROP TABLE clients")
        query(paths.db, "UPDATE mfa_console SET version = 3")
    users = read_store(paths.db)["users"]
    upgraded = Service(paths, clock=clock)
    assert upgraded.verify("alice", code(alice_secret, clock)).ok
    assert "clients" in tables(paths.db) and read_store(paths.db)["users"].keys() == users.keys()
    version = query(paths.db, "PRAGMA user_version" if engine == "sqlite" else "SELECT version FROM mfa_console")[1]
    assert version == [(SCHEMA_VERSION,)]
    upgraded.close()
    Service(paths, clock=clock).close()  # opened again: nothing left to do, nothing refused


@pytest.mark.sqlite_only  # the file itself
def test_the_header_names_the_store_as_ours(service, paths):
    header = paths.db.read_bytes()[:100]
    assert header.startswith(b"SQLite format 3\0") and int.from_bytes(header[68:72], "big") == APPLICATION_ID


def test_a_missing_store_is_reported_and_nothing_is_created(tmp_path):
    folder = tmp_path / "nowhere"
    folder.mkdir()
    paths = StorePaths(db=folder / "store.db", key=folder / "store.key")
    service = Service(paths)
    for attempt in (service.policy, lambda: service.operator("tester"), lambda: service.login("ada", "x" * 8)):
        with pytest.raises(StoreMissing, match="mfa-console init") as missing:
            attempt()
        assert str(paths.db) in str(missing.value)
    assert list(folder.iterdir()) == []


@pytest.mark.sqlite_only  # the file itself
def test_create_refuses_to_replace_a_store_or_a_key(service, paths, clock, tmp_path):
    service.close()
    state, key_bytes = store_state(paths.db), paths.key.read_bytes()
    with pytest.raises(StoreError, match="already exists"):
        Service.create(paths, issuer="Other", actor="tester", clock=clock)
    aside = tmp_path / "aside.db"
    paths.db.rename(aside)
    with pytest.raises(KeyFileError, match="already exists"):
        Service.create(paths, issuer="Other", actor="tester", clock=clock)
    assert paths.key.read_bytes() == key_bytes and not paths.db.exists()
    aside.rename(paths.db)
    assert store_state(paths.db) == state


def test_a_store_that_could_not_be_made_leaves_nothing(tmp_path, clock, monkeypatch):
    paths = StorePaths(db=tmp_path / "new" / "store.db", key=tmp_path / "new" / "store.key")

    def fails(writer, events):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr("store.service.Writer.record", fails)
    with pytest.raises(StoreError):
        Service.create(paths, issuer="Acme", actor="tester", clock=clock)
    assert not paths.db.parent.exists()  # no half store, no orphan key, not even the folder made for them
    monkeypatch.undo()
    Service.create(paths, issuer="Acme", actor="tester", clock=clock).close()  # and the next try works


# -- what is on disk -------------------------------------------------------------------------


def test_files_are_private_whatever_the_umask(tmp_path, clock):
    paths = StorePaths(db=tmp_path / "a" / "b" / "store.db", key=tmp_path / "a" / "b" / "store.key")
    old = os.umask(0o000)
    try:
        service = Service.create(paths, issuer="Acme", actor="tester", clock=clock)
        op = service.operator("tester")
        service.add_user(op, NewUser("eve", "Eve", Role.AGENT))
        other = Service(paths)  # a second connection: the WAL files stay while both are open
        other.list_users(other.operator("tester"))
        files = sorted(p.name for p in paths.db.parent.iterdir())
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in paths.db.parent.iterdir()}
        other.close()
        service.close()
    finally:
        os.umask(old)
    assert files == ["store.db", "store.db-shm", "store.db-wal", "store.key"]
    assert modes == dict.fromkeys(files, 0o600)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700  # the parents made on the way too
    assert stat.S_IMODE(paths.db.parent.stat().st_mode) == 0o700


def test_secrets_and_recovery_codes_never_reach_the_disk(service, paths, op, clock):
    enrollment = service.begin_enrollment(op, "alice")
    codes = service.confirm_enrollment(op, "alice", code(enrollment.secret, clock)).recovery_codes
    pending = service.begin_enrollment(op, "bob")  # a secret shown but not yet confirmed
    clock.advance(PERIOD)
    assert service.verify("alice", codes[0]).ok
    service.login("alice", password("alice"))
    secrets = [enrollment.secret, pending.secret]
    forbidden = [form for s in secrets for form in (s, s.lower(), group_secret(s))]
    forbidden += [form for c in codes for form in (c, c.replace("-", ""))]
    forbidden.append(password("alice"))

    def leaks() -> list[str]:  # in the database, its WAL and shared memory, the key; or the tables
        data = everything_stored(paths)
        return [form for form in forbidden if form.encode() in data]

    assert leaks() == []  # with the WAL in use
    assert service.get_user(op, "alice").status is Status.ACTIVATED  # it is in there, encrypted
    service.close()
    assert leaks() == []  # and once checkpointed into the database


def test_the_real_password_hash_cost(tmp_path):
    """Run without the tests' cheap scrypt: what the store writes is scrypt N=2^14, r=8, p=1."""
    script = """
import json, sys
from pathlib import Path
from store.models import NewUser, Role
from store.paths import StorePaths
from store.service import Service
folder = Path(sys.argv[1])
service = Service.create(StorePaths(folder / "s.db", folder / "s.key"), issuer="Acme", actor="t")
service.add_user(service.operator("t"), NewUser("eve", "Eve", Role.AGENT), password="eve-password")
print(json.dumps(service.db.user("eve").password))
"""
    stored = last_json_line(run_python(script, tmp_path))
    assert stored.startswith("scrypt$16384$8$1$")
    assert crypto.verify_password("eve-password", stored)
    assert not crypto.verify_password("eve-passwort", stored)


@pytest.mark.parametrize("cost", ["scrypt$1024$8$1", "scrypt$16384$1$1", "scrypt$1048576$8$1", "scrypt$16384$8$64"])
def test_a_hash_cheaper_or_dearer_than_allowed_is_refused(monkeypatch, cost):
    """A store edited to hold a cheap hash (fast to guess) or a huge one (memory, time) gets no check."""
    monkeypatch.setattr(crypto, "MIN_SCRYPT_N", 2**14)  # the real bounds, not the tests' cheap ones
    monkeypatch.setattr(crypto, "SCRYPT_N", 2**14)
    crypto._dummy_hash.cache_clear()
    n, r, p = (int(x) for x in cost.split("$")[1:])
    salt = os.urandom(16)
    digest = __import__("hashlib").scrypt(b"pw-12345", salt=salt, n=min(n, 2**14), r=min(r, 8), p=min(p, 1), dklen=32)
    encoded = f"{cost}${crypto._b64(salt)}${crypto._b64(digest)}"
    assert not crypto.verify_password("pw-12345", encoded)
    good = crypto.hash_password("pw-12345")
    assert crypto.verify_password("pw-12345", good)  # the control: the right cost passes


# -- the key file ----------------------------------------------------------------------------


@pytest.fixture
def alice_secret(service, op, clock):
    secret = enroll(service, op, "alice", clock)
    clock.advance(PERIOD)
    return secret


def _copy_store(paths: StorePaths, folder) -> StorePaths:
    folder.mkdir(mode=0o700)
    copy = StorePaths(db=folder / "store.db", key=folder / "store.key")
    shutil.copy2(paths.db, copy.db)
    return copy


@pytest.mark.sqlite_only  # the file itself
def test_a_store_copied_without_its_key_reveals_nothing(service, paths, op, alice_secret, clock, tmp_path):
    service.close()
    copy = _copy_store(paths, tmp_path / "copy")
    stolen = Service(copy, clock=clock)
    thief = stolen.operator("thief")
    assert "alice" in usernames(stolen, thief)  # what needs no secret still works
    before = store_state(copy.db)
    for attempt in (
        lambda: stolen.verify("alice", code(alice_secret, clock)),
        lambda: stolen.login("alice", password("alice")),
        lambda: stolen.begin_enrollment(thief, "bob"),
    ):
        with pytest.raises(KeyFileError, match="missing") as refused:
            attempt()
        assert str(copy.key) in str(refused.value)
    assert store_state(copy.db) == before
    stolen.close()


def test_another_stores_key_does_not_belong(service, paths, op, alice_secret, clock, tmp_path):
    other = StorePaths(db=tmp_path / "other" / "store.db", key=tmp_path / "other" / "store.key")
    Service.create(other, issuer="Other", actor="tester").close()
    before = store_state(paths.db)
    mixed = Service(StorePaths(db=paths.db, key=other.key), clock=clock)
    for attempt in (
        lambda: mixed.verify("alice", code(alice_secret, clock)),
        lambda: mixed.begin_enrollment(mixed.operator("tester"), "bob"),
    ):
        with pytest.raises(KeyFileError, match="does not belong") as refused:
            attempt()
        assert str(other.key) in str(refused.value) and paths.shown in str(refused.value)
    assert store_state(paths.db) == before
    mixed.close()
    assert service.verify("alice", code(alice_secret, clock)).ok  # with its own key it still works


def test_a_key_file_that_is_not_a_key(service, paths, op, tmp_path, clock):
    bad_key = tmp_path / "bad.key"
    bad_key.write_bytes(b"not a key\n")
    bad_key.chmod(0o600)
    odd = Service(StorePaths(db=paths.db, key=bad_key), clock=clock)
    with pytest.raises(KeyFileError, match="not an mfa-console key"):
        odd.begin_enrollment(odd.operator("tester"), "bob")
    odd.close()


def test_a_secret_moved_onto_another_user_does_not_decrypt(service, paths, op, alice_secret, clock):
    """Secrets are sealed to their user: copying alice's onto bob (a store edited by hand) fails."""
    query(paths.db, "UPDATE users SET secret = (SELECT secret FROM users WHERE key = 'alice') WHERE key = 'bob'")
    with pytest.raises(KeyFileError, match="'bob'"):
        service.verify("bob", code(alice_secret, clock))


# -- the user list: remade only where the store changed ---------------------------------------


def test_the_user_list_is_not_rebuilt_while_nothing_changes(service, op):
    first = service.list_users(op)
    service.policy()
    service.get_user(op, "alice")
    assert service.list_users(op) is first
    service.add_user(op, NewUser("eve", "Eve", Role.AGENT))
    assert "eve" in {u.username for u in service.list_users(op)}


def test_after_a_change_elsewhere_only_the_changed_users_are_read(service, paths, op, clock, monkeypatch):
    service.import_users(op, users_csv([f"u{i:03d}" for i in range(300)]))
    before = {u.username: u for u in service.list_users(op)}
    other = Service(paths, clock=clock)
    other_op = other.operator("tester")
    other.edit_user(other_op, "u123", name="Renamed")
    other.add_user(other_op, NewUser("eve", "Eve", Role.AGENT))
    other.close()
    read = []
    engine = type(service.db)
    real = engine.changes
    monkeypatch.setattr(engine, "changes", lambda db, cursor: read.append(r := real(db, cursor)) or r)
    after = {u.username: u for u in service.list_users(op)}
    assert [sorted(s.key for s in summaries) for summaries, _ in read] == [["eve", "u123"]]
    assert after["u123"].name == "Renamed" and "eve" in after
    unchanged = set(before) - {"u123"}
    assert all(after[name] is before[name] for name in unchanged)  # their records were not remade


def test_after_a_change_here_only_its_users_records_are_remade(service, op, clock):
    before = {u.username: u for u in service.list_users(op)}
    service.edit_user(op, "bob", team="Night Shift")
    service.add_user(op, NewUser("eve", "Eve", Role.AGENT))
    for _ in range(5):  # a lockout of alice's, in several commits
        service.login("alice", "wrong-password")
    after = {u.username: u for u in service.list_users(op)}
    assert list(after) == [*before, "eve"]
    assert after["bob"].team == "Night Shift" and after["alice"].locked_until is not None
    assert all(after[name] is before[name] for name in before if name not in ("bob", "alice"))
    clock.advance(3600)  # the lock ends: alice's record changes with no change to the store
    assert service.list_users(op)[list(after).index("alice")].locked_until is None


def test_a_policy_change_remakes_every_status(service, op, alice_secret):
    service.set_mode(op, service.policy().mode.OPTIONAL)
    assert {u.status for u in service.list_users(op)} == {Status.ACTIVATED, Status.PENDING}
    service.set_enabled(op, False)
    assert {u.status for u in service.list_users(op)} == {Status.DISABLED}


def test_the_rows_on_disk_match_the_records(service, paths, op, alice_secret):
    """What another program reads (sqlite3) is what the service says: one row a user, its key the
    folded name, its secret sealed, its status nowhere."""
    rows = read_store(paths.db)["users"]
    assert set(rows) == FIXTURE_USERS
    assert rows["alice"]["secret"].startswith("v1.") and rows["bob"]["secret"] is None
    assert rows["alice"]["recovery"].count(" ") == 11  # ten hashes between spaces
    assert service.verify("alice", "000000").outcome is Outcome.INVALID
    assert read_store(paths.db)["users"]["alice"]["failures"] == 1


@pytest.mark.parametrize("enabled", [True, False])
def test_pausing_the_collector_leaves_it_as_it_was_even_when_threads_overlap(enabled):
    (gc.enable if enabled else gc.disable)()
    try:
        first_in, second_out = threading.Event(), threading.Event()

        def second():
            first_in.wait()
            with gc_paused:
                assert not gc.isenabled()
            second_out.set()

        thread = threading.Thread(target=second)
        thread.start()
        with gc_paused:
            first_in.set()
            second_out.wait()  # the other pause ended first: still paused for this one
            assert not gc.isenabled()
        thread.join()
        assert gc.isenabled() == enabled
    finally:
        gc.enable()


def test_the_tables_checks_hold_again_after_an_import(service, op):
    """An import skips the users table's CHECK constraints for rows the service checked (SQLite
    builds a table per row for `role IN (...)`); the same connection checks the next row again."""
    service.import_users(op, users_csv(["dora"]))
    with pytest.raises(StoreError), service.db.write() as w:
        w.execute("INSERT INTO users (key, username, name, role, created_at) VALUES ('eve', 'eve', 'Eve', 'root', 0)")
    assert "eve" not in usernames(service, op) and "dora" in usernames(service, op)
