"""The TinyDB storage under the service: processes, crashes, bad files, permissions, secrets, caching."""

from __future__ import annotations

import gc
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import threading

import orjson
import pytest
from tests.helpers import (
    PERIOD,
    code,
    enroll,
    last_json_line,
    password,
    read_store,
    run_python,
    temp_files,
    users_csv,
)

import store.storage
from store.errors import KeyFileError, StoreCorrupt, StoreError, StoreMissing
from store.models import NewUser, Role, Status
from store.paths import StorePaths
from store.service import Outcome, Service
from store.storage import SCHEMA_VERSION, LockedAtomicStorage, gc_paused, parse_store
from store.totp import group_secret

FIXTURE_USERS = {"ada", "sam", "alice", "bob"}


@pytest.fixture
def op(service):
    return service.operator("tester")


def usernames(service, op) -> set[str]:
    return {u.username for u in service.list_users(op)}


# -- several processes at once ---------------------------------------------------------------

WORKER = """
import json, sys
from pathlib import Path
from store.errors import InvalidInput
from store.models import NewUser, Role
from store.paths import StorePaths
from store.service import Outcome, Service
db, key, tag = sys.argv[1:]
service = Service(StorePaths(Path(db), Path(key)), clock=lambda: 1_796_000_000.0)
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


def start_together(script: str, argsets: list[list[str]]) -> list[dict]:
    """Start one process per argset, let them all get ready, release them at once, collect results."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in argsets
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_processes_writing_at_once_lose_no_update(service, paths, op):
    service.list_users(op)  # this instance has the store parsed and cached before the others write
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
    assert temp_files(paths) == []


COUNTER = """
import json, sys
from pathlib import Path
from store.storage import LockedAtomicStorage
path, tag = sys.argv[1:]
storage = LockedAtomicStorage(Path(path))
storage.read()
print("ready", flush=True)
sys.stdin.readline()
for _ in range(50):
    with storage.transaction() as data:
        counter = data["meta"]["1"]
        counter["n"] += 1
        counter.setdefault(tag, 0)
        counter[tag] += 1
        storage.write(data)
print(json.dumps("done"))
"""


def test_read_modify_write_transactions_of_several_processes_serialize(tmp_path):
    path = tmp_path / "bare.json"
    LockedAtomicStorage.create(path, {"meta": {"1": {"schema": SCHEMA_VERSION, "n": 0}}, "users": {}}).close()
    start_together(COUNTER, [[path, f"p{i}"] for i in range(4)])
    counter = parse_store(path.read_bytes(), path)["meta"]["1"]
    assert counter["n"] == 200
    assert [counter[f"p{i}"] for i in range(4)] == [50] * 4


def test_threads_and_instances_in_one_process(service, paths, op):
    other = Service(paths)
    other_op = other.operator("tester")
    errors = []

    def add(svc, session, tag):
        try:
            for i in range(15):
                svc.add_user(session, NewUser(f"{tag}-{i:02d}", f"{tag} {i}", Role.AGENT))
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


# -- a writer killed mid-write ---------------------------------------------------------------


def _writer(paths: StorePaths, report_fd: int) -> None:
    """The forked child: writes as fast as it can, one byte on the pipe after each commit."""
    service = Service(paths)
    op = service.operator("writer")
    for i in range(10**6):
        service.edit_user(op, "u0000", name=f"Name {i}")
        os.write(report_fd, b".")


def test_writer_killed_again_and_again_never_breaks_the_store(service, paths, op):
    service.import_users(op, users_csv([f"u{i:04d}" for i in range(2000)]))
    users_before = len(service.list_users(op))
    rng = random.Random(6238)
    leftovers_seen = 0
    for round_ in range(30):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child never returns into pytest
            try:
                os.close(read_end)
                _writer(paths, write_end)
            finally:
                os._exit(1)
        os.close(write_end)
        committed = rng.randint(1, 4)
        try:
            for _ in range(committed):  # let it commit a few times
                assert os.read(read_end, 1) == b".", "the writer died on its own"
            # A reader meanwhile never sees a torn file; the reads also vary when the kill lands.
            for _ in range(rng.randint(1, 4)):
                parse_store(paths.db.read_bytes(), paths.db)
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_end)
        data = parse_store(paths.db.read_bytes(), paths.db)  # the store always opens and parses
        assert len(data["users"]) == users_before
        assert int(data["users"]["u0000"]["name"].removeprefix("Name ")) >= committed - 1  # nothing committed lost
        leftovers_seen += bool(temp_files(paths))
        service.edit_user(op, "u0001", team=f"Round {round_}")  # the next transaction
        assert temp_files(paths) == []
    assert leftovers_seen, "no kill landed mid-write: the test proved nothing"
    fresh = Service(paths)
    try:
        fresh_op = fresh.operator("tester")
        assert len(fresh.list_users(fresh_op)) == users_before
        assert fresh.get_user(fresh_op, "u0001").team == "Round 29"
        events = fresh.audit(fresh_op, user="u0001")  # torn audit lines (if any) are skipped
        assert events[0].action == "user.edit"
    finally:
        fresh.close()


# -- files that are not a store --------------------------------------------------------------

BAD_FILES = {
    "garbage": lambda raw: b"\x00\x01 this is not json {{{" + bytes(range(256)),
    "truncated": lambda raw: raw[: len(raw) // 2],
    "empty": lambda raw: b"",
    "blank": lambda raw: b" \n\n",
    "a json list": lambda raw: b"[1, 2, 3]",
    "no schema": lambda raw: b'{"users": {}}',
    "meta not a table": lambda raw: b'{"meta": [], "users": {}}',
    "meta record not an object": lambda raw: b'{"meta": {"1": "schema"}, "users": {}}',
    "no users table": lambda raw: raw.split(b"\n", 1)[0],
    "cut at a line break": lambda raw: raw[: raw.rindex(b"\n", 0, -1) + 1],
    "a user line damaged": lambda raw: raw.replace(b'["alice",{', b'["alice",{"x', 1),
    "a user line not a user": lambda raw: raw.replace(b'["alice",{', b'["alice",7,{', 1),
    "a user twice": lambda raw: raw.replace(b"\n", b"\n" + raw.split(b"\n")[1] + b"\n", 1),
    "lines after the end": lambda raw: raw + raw.split(b"\n")[1] + b"\n",
}


@pytest.mark.parametrize("damage", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_damaged_store_is_refused_clearly_and_left_untouched(service, paths, op, clock, damage):
    paths.db.write_bytes(damage(paths.db.read_bytes()))
    before = paths.db.read_bytes()
    stamp = paths.db.stat().st_mtime_ns
    fresh = Service(paths, clock=clock)
    attempts = [
        fresh.policy,
        lambda: fresh.operator("tester"),
        lambda: fresh.login("alice", password("alice")),
        lambda: service.list_users(op),  # the instance that had the good file parsed
        lambda: service.add_user(op, NewUser("eve", "Eve", Role.AGENT)),  # a write
        lambda: service.set_issuer(op, "Elsewhere"),
        lambda: service.verify("alice", "123456"),
    ]
    for attempt in attempts:
        with pytest.raises(StoreCorrupt) as refused:
            attempt()
        message = str(refused.value)
        assert str(paths.db) in message and "restore it from a backup" in message
    fresh.close()
    assert paths.db.read_bytes() == before
    assert paths.db.stat().st_mtime_ns == stamp
    assert temp_files(paths) == []


def test_an_unknown_schema_version_is_refused(service, paths, op):
    head, rest = paths.db.read_bytes().split(b"\n", 1)
    tables = orjson.loads(head)
    tables["meta"]["1"]["schema"] = SCHEMA_VERSION + 1
    paths.db.write_bytes(orjson.dumps(tables) + b"\n" + rest)
    before = paths.db.read_bytes()
    for attempt in (lambda: Service(paths).policy(), lambda: service.add_user(op, NewUser("eve", "Eve", Role.AGENT))):
        with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}") as refused:
            attempt()
        assert not isinstance(refused.value, StoreCorrupt)
        assert str(paths.db) in str(refused.value) and "upgrade mfa-console" in str(refused.value)
    assert paths.db.read_bytes() == before


def test_a_missing_store_is_reported_and_nothing_is_created(tmp_path):
    folder = tmp_path / "nowhere"
    folder.mkdir()
    paths = StorePaths(db=folder / "store.json", key=folder / "store.key")
    service = Service(paths)
    for attempt in (service.policy, lambda: service.operator("tester"), lambda: service.login("ada", "x" * 8)):
        with pytest.raises(StoreMissing, match="mfa-console init") as missing:
            attempt()
        assert str(paths.db) in str(missing.value)
    assert list(folder.iterdir()) == []


def test_create_refuses_to_replace_a_store_or_a_key(service, paths, clock):
    store_bytes, key_bytes = paths.db.read_bytes(), paths.key.read_bytes()
    with pytest.raises(StoreError, match="already exists"):
        Service.create(paths, issuer="Other", actor="tester", clock=clock)
    paths.db.unlink()
    with pytest.raises(KeyFileError, match="already exists"):
        Service.create(paths, issuer="Other", actor="tester", clock=clock)
    assert paths.key.read_bytes() == key_bytes and not paths.db.exists()
    paths.db.write_bytes(store_bytes)


def test_writes_outside_a_transaction_are_refused(paths, service):
    storage = LockedAtomicStorage(paths.db)
    with pytest.raises(RuntimeError, match="inside a transaction"):
        storage.write(storage.read())


def test_a_failed_commit_leaves_nothing_behind(service, paths, op, monkeypatch):
    """The disk refuses the new file (full, say): no change on disk, none in memory, no temp file."""
    before = paths.db.read_bytes()

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(store.storage.os, "replace", disk_full)
        with pytest.raises(OSError, match="No space left"):
            service.add_user(op, NewUser("eve", "Eve", Role.AGENT))
        with pytest.raises(OSError, match="No space left"):
            service.edit_user(op, "alice", name="Changed")
    assert paths.db.read_bytes() == before
    assert temp_files(paths) == []
    assert "eve" not in usernames(service, op)
    assert service.get_user(op, "alice").name == "Alice"
    assert not service.audit(op, action="user.edit")  # nothing recorded for a change that did not happen


def test_stale_temp_files_go_at_the_next_transaction(service, paths, op):
    stale = paths.db.parent / f".{paths.db.name}.k1ll3d.tmp"
    stale.write_bytes(b'{"half a st')
    service.list_users(op)  # reading leaves it (no lock held)
    service.set_issuer(op, "Acme Night Shift")
    assert not stale.exists()


# -- permissions and what is on disk ---------------------------------------------------------


def test_files_are_private_even_with_a_permissive_umask(tmp_path, clock):
    paths = StorePaths(db=tmp_path / "private" / "store.json", key=tmp_path / "private" / "store.key")
    old = os.umask(0o022)
    try:
        service = Service.create(paths, issuer="Acme", actor="tester", clock=clock)
        op = service.operator("tester")
        service.add_user(op, NewUser("eve", "Eve", Role.AGENT))
        service.set_issuer(op, "Acme Night Shift")  # the store file replaced again
        service.close()
    finally:
        os.umask(old)
    lock = paths.db.with_name(paths.db.name + ".lock")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (paths.db, paths.key, paths.audit, lock)}
    assert modes == dict.fromkeys(modes, 0o600) and len(modes) == 4
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
    for path in (paths.db, paths.audit):
        text = path.read_text()
        assert [form for form in forbidden if form in text] == [], path
    assert service.get_user(op, "alice").status is Status.ACTIVATED  # it is in there, encrypted


def test_the_real_password_hash_cost(tmp_path):
    """Run without the tests' cheap scrypt: what the store writes is scrypt N=2^14, r=8, p=1."""
    script = """
import sys, orjson
from pathlib import Path
from store.models import NewUser, Role
from store.paths import StorePaths
from store.service import Service
from store.storage import parse_store
folder = Path(sys.argv[1])
service = Service.create(StorePaths(folder / "s.json", folder / "s.key"), issuer="Acme", actor="t")
service.add_user(service.operator("t"), NewUser("eve", "Eve", Role.AGENT), password="eve-password")
print(orjson.dumps(parse_store((folder / "s.json").read_bytes(), folder / "s.json")["users"]["eve"]["password"]).decode())
"""
    stored = last_json_line(run_python(script, tmp_path))
    assert stored.startswith("scrypt$16384$8$1$")
    from store import crypto

    assert crypto.verify_password("eve-password", stored)
    assert not crypto.verify_password("eve-passwort", stored)


# -- the key file ----------------------------------------------------------------------------


@pytest.fixture
def alice_secret(service, op, clock):
    secret = enroll(service, op, "alice", clock)
    clock.advance(PERIOD)
    return secret


def test_a_store_copied_without_its_key_reveals_nothing(service, paths, op, alice_secret, clock, tmp_path):
    copy = StorePaths(db=tmp_path / "copy" / "store.json", key=tmp_path / "copy" / "store.key")
    copy.db.parent.mkdir()
    shutil.copy(paths.db, copy.db)
    before = copy.db.read_bytes()
    stolen = Service(copy, clock=clock)
    thief = stolen.operator("thief")
    assert "alice" in usernames(stolen, thief)  # what needs no secret still works
    challenge = stolen.login("alice", password("alice"))
    assert challenge.outcome is Outcome.CODE_REQUIRED
    for attempt in (
        lambda: stolen.verify("alice", code(alice_secret, clock)),
        lambda: stolen.login_code(challenge.session, code(alice_secret, clock)),
        lambda: stolen.begin_enrollment(thief, "bob"),
    ):
        with pytest.raises(KeyFileError, match="missing") as refused:
            attempt()
        assert str(copy.key) in str(refused.value)
    assert copy.db.read_bytes() == before
    stolen.close()


def test_another_stores_key_does_not_belong(service, paths, op, alice_secret, clock, tmp_path):
    other = StorePaths(db=tmp_path / "other" / "store.json", key=tmp_path / "other" / "store.key")
    Service.create(other, issuer="Other", actor="tester").close()
    before = paths.db.read_bytes()
    mixed = Service(StorePaths(db=paths.db, key=other.key), clock=clock)
    for attempt in (
        lambda: mixed.verify("alice", code(alice_secret, clock)),
        lambda: mixed.begin_enrollment(mixed.operator("tester"), "bob"),
    ):
        with pytest.raises(KeyFileError, match="does not belong") as refused:
            attempt()
        assert str(other.key) in str(refused.value) and str(paths.db) in str(refused.value)
    assert paths.db.read_bytes() == before
    mixed.close()
    assert service.verify("alice", code(alice_secret, clock)).ok  # with its own key it still works


def test_a_key_file_that_is_not_a_key(service, paths, op, tmp_path, clock):
    bad_key = tmp_path / "bad.key"
    bad_key.write_bytes(b"not a key\n")
    odd = Service(StorePaths(db=paths.db, key=bad_key), clock=clock)
    with pytest.raises(KeyFileError, match="not an mfa-console key"):
        odd.begin_enrollment(odd.operator("tester"), "bob")
    odd.close()


# -- parsing only what changed ---------------------------------------------------------------


def test_an_unchanged_file_is_parsed_once(service, paths, op, clock, monkeypatch):
    other = Service(paths, clock=clock)
    other_op = other.operator("tester")  # parses now, before counting starts
    parsed = []
    real = store.storage.parse_store
    monkeypatch.setattr(store.storage, "parse_store", lambda raw, path, known: parsed.append(path) or real(raw, path, known))

    def read_a_lot(svc, session):
        for _ in range(30):
            svc.policy()
            svc.list_users(session)
            svc.get_user(session, "alice")
            svc.generation  # noqa: B018

    read_a_lot(service, op)
    assert parsed == []  # the fixture's own writes left it parsed
    service.add_user(op, NewUser("eve", "Eve", Role.AGENT))
    service.set_issuer(op, "Acme Night Shift")
    read_a_lot(service, op)
    assert parsed == []  # own writes need no re-parse
    other.add_user(other_op, NewUser("frank", "Frank", Role.AGENT))
    assert len(parsed) == 1  # `other` was behind: it re-read the file once, inside its transaction
    read_a_lot(other, other_op)
    assert len(parsed) == 1  # and its own write left it up to date
    read_a_lot(service, op)
    assert len(parsed) == 2  # someone else wrote: exactly one more parse for `service`
    assert "frank" in usernames(service, op)
    other.close()


def test_the_user_list_is_not_rebuilt_while_nothing_changes(service, op):
    first = service.list_users(op)
    assert service.list_users(op) is first
    service.add_user(op, NewUser("eve", "Eve", Role.AGENT))
    assert "eve" in {u.username for u in service.list_users(op)}


def test_after_a_change_elsewhere_only_the_changed_lines_are_parsed(service, paths, op, clock, monkeypatch):
    service.import_users(op, users_csv([f"u{i:03d}" for i in range(300)]))
    before = {u.username: u for u in service.list_users(op)}
    other = Service(paths, clock=clock)
    other_op = other.operator("tester")
    other.edit_user(other_op, "u123", name="Renamed")
    other.add_user(other_op, NewUser("eve", "Eve", Role.AGENT))
    other.close()
    parsed = []
    real = store.storage._parse_line
    monkeypatch.setattr(store.storage, "_parse_line", lambda line, path, where: parsed.append(where) or real(line, path, where))
    after = {u.username: u for u in service.list_users(op)}
    # The first line, the changed user, the new one and the end: not the 303 unchanged users.
    assert len(parsed) == 4
    assert after["u123"].name == "Renamed" and "eve" in after
    unchanged = set(before) - {"u123"}
    assert all(after[name] is before[name] for name in unchanged)  # their records were not remade


def test_a_refused_transaction_changes_nothing_in_memory(service, paths, op):
    before = paths.db.read_bytes()
    with pytest.raises(RuntimeError, match="refused"):
        with service._storage.transaction() as data:
            data["users"]["alice"]["name"] = "Changed"
            data["meta"]["1"]["policy"]["issuer"] = "Changed"
            service._storage.write(data)
            raise RuntimeError("refused")
    assert service.get_user(op, "alice").name == "Alice"
    assert service.policy().issuer != "Changed"
    assert paths.db.read_bytes() == before


def test_a_store_of_the_first_layout_opens_and_is_written_in_lines(service, paths, op, clock):
    old = read_store(paths.db)
    old["meta"]["1"]["schema"] = 1
    paths.db.write_bytes(orjson.dumps(old))  # one JSON object, as the first mfa-console wrote it
    fresh = Service(paths, clock=clock)
    fresh_op = fresh.operator("tester")
    assert {u.username for u in fresh.list_users(fresh_op)} == FIXTURE_USERS
    fresh.edit_user(fresh_op, "bob", team="Night Shift")
    fresh.close()
    now = read_store(paths.db)
    assert now["meta"]["1"]["schema"] == SCHEMA_VERSION
    assert now["users"]["bob"]["team"] == "Night Shift"
    assert {k: d for k, d in now["users"].items() if k != "bob"} == {
        k: {f: v for f, v in d.items() if v is not None} for k, d in old["users"].items() if k != "bob"
    }
    assert paths.db.read_bytes().count(b"\n") == len(FIXTURE_USERS) + 2


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
    clock.advance(3600)  # the lock ends: alice's record changes with no change to the file
    assert service.list_users(op)[list(after).index("alice")].locked_until is None
