"""What only the PostgreSQL engine has: a URL and its password, a server that is gone or never
answers, a connection cut mid-change, `migrate` between the engines. (The rules every store
keeps run on both engines: test_service, test_concurrency, test_storage.)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pyotp
import pytest

from store.errors import StoreError, StoreUnreachable
from store.migrate import migrate
from store.models import NewUser, Outcome, Role
from store.paths import StorePaths
from store.service import Service
from store.sql import redact
from store.sql.postgres import PostgresDatabase
from tests.postgres import end_sessions, store_schema
from tests.support import PERIOD, code, enroll, password, query, read_store, run_forked


@pytest.fixture
def engine() -> str:
    return "postgresql"  # the `paths` and `service` fixtures of this module: a schema of its own


@pytest.fixture
def op(service):
    return service.operator("tester")


def cli(paths: StorePaths, *args: str, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return run_forked(["--db", str(paths.db), "--key", str(paths.key), *args], input=stdin, env=env, cwd=Path.cwd(),
                      timeout=timeout)  # fmt: skip


def test_a_password_in_the_url_is_refused_before_connecting():
    with pytest.raises(StoreError, match="pgpass") as refused:
        PostgresDatabase.open("postgresql://mfa:s3cret-pw@127.0.0.1:1/directory")
    assert "s3cret-pw" not in str(refused.value)


def test_messages_name_the_store_without_a_password():
    url = "postgresql://mfa:s3cret-pw@db.example:5432/directory?sslmode=verify-full&password=other&options=-csearch_path%3Dmfa"
    assert redact(url) == "postgresql://mfa@db.example:5432/directory?sslmode=verify-full&options=-csearch_path%3Dmfa"


def test_the_command_line_runs_on_postgresql(paths):
    made = cli(paths, "init", "--issuer", "Acme", "--admin", "ada", "--password-stdin", stdin="ada-password-1\n")
    assert made.returncode == 0, made.stderr
    assert cli(paths, "users", "add", "bob", "--name", "Bob", "--role", "agent").returncode == 0
    listed = cli(paths, "users", "list", "--json")
    assert {u["username"] for u in json.loads(listed.stdout)} == {"ada", "bob"}
    assert cli(paths, "verify", "bob", stdin="123456\n").returncode == 4  # Pending: no 2FA yet
    again = cli(paths, "init", "--issuer", "Acme", "--admin", "ada", "--password-stdin", stdin="ada-password-1\n")
    assert again.returncode == 2 and "already exists" in again.stderr and again.stderr.count("\n") == 1


def test_a_server_that_is_not_there_fails_verify_closed_in_one_line(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    gone = StorePaths(db=f"postgresql://mfa@127.0.0.1:{port}/directory", key=tmp_path / "store.key")
    proc = cli(gone, "verify", "alice", stdin="123456\n")
    assert proc.returncode == 2
    assert proc.stderr.startswith("mfa-console: store postgresql://mfa@127.0.0.1:") and "unreachable" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_a_server_that_never_answers_fails_verify_closed_within_its_timeout(tmp_path):
    """A host that takes the connection and says nothing (a hung server, a broken proxy), with a
    URL that allows a minute to connect: verify still ends at its --timeout, in one line."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the handshake; nobody ever answers
        url = f"postgresql://mfa@127.0.0.1:{silent.getsockname()[1]}/directory?connect_timeout=60"
        started = time.monotonic()
        proc = cli(StorePaths(db=url, key=tmp_path / "store.key"), "verify", "alice", "--timeout", "3",
                   stdin="123456\n")  # fmt: skip
        took = time.monotonic() - started
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "did not answer within 3 s" in proc.stderr
    assert 3 <= took < 3 + 10


def test_a_connection_cut_mid_change_leaves_nothing_and_the_next_call_reconnects(service, paths, op, clock):
    before = read_store(paths.db)
    with pytest.raises(StoreUnreachable, match="unreachable"):
        with service.db.write() as w:
            w.execute("UPDATE users SET name = 'Half Done' WHERE key = 'alice'")
            end_sessions(paths.db)
            w.execute("UPDATE users SET name = 'Never' WHERE key = 'bob'")
    assert read_store(paths.db) == before
    service.edit_user(op, "alice", name="Alice Again")  # a new connection, by itself
    assert service.get_user(op, "alice").name == "Alice Again"


def listed_soon(service, op, shown, seconds: float = 10) -> None:
    """The listing shows what `shown` looks for within `seconds` (as the dashboard's polls would):
    the server sends notifications, and farewells, on their own time."""
    deadline = time.monotonic() + seconds
    while not shown({u.username: u for u in service.list_users(op)}):
        assert time.monotonic() < deadline, "never heard of"
        time.sleep(0.05)


def test_connections_the_server_ended_are_made_again_and_the_listing_catches_up(service, paths, op, clock):
    """The dashboard's listing hears other hosts through LISTEN. After a server restart (every
    session ended), its next calls connect again, and as changes may have been missed
    meanwhile, read everyone once."""
    assert "eve" not in {u.username for u in service.list_users(op)}
    end_sessions(paths.db)
    other = Service(paths, clock=clock)
    other.add_user(other.operator("elsewhere"), NewUser("eve", "Eve", Role.AGENT))
    other.close()
    listed_soon(service, op, lambda users: "eve" in users)
    other = Service(paths, clock=clock)
    other.edit_user(other.operator("elsewhere"), "bob", name="Robert")
    other.close()
    listed_soon(service, op, lambda users: users["bob"].name == "Robert")  # heard on the new listener


def test_migrate_round_trip_sqlite_postgresql_sqlite_leaves_every_user_identical(tmp_path, clock):
    first = StorePaths(db=tmp_path / "a" / "store.db", key=tmp_path / "a" / "store.key")
    service = Service.create(first, issuer="Acme", actor="tester", clock=clock)
    op = service.operator("tester")
    for name, role in (("ada", Role.ADMIN), ("alice", Role.AGENT), ("bob", Role.AGENT), ("carol", Role.AGENT)):
        service.add_user(op, NewUser(name, name.title(), role, team="Billing", email=f"{name}@example.com"),
                         password=password(name))  # fmt: skip
    secret = enroll(service, op, "alice", clock)  # secret, recovery codes, last accepted step
    recovery = service.begin_enrollment(op, "bob")
    bob_codes = service.confirm_enrollment(op, "bob", code(recovery.secret, clock)).recovery_codes
    for _ in range(5):
        service.login("carol", "wrong-password")  # a lock, with its count
    service.login("nobody.there", "wrong-password")  # an unknown name's failure (kept as a tag)
    service.add_user(op, NewUser("dan", "Dan", Role.SUPERVISOR))
    service.set_active(op, "dan", False)
    clock.advance(PERIOD)
    original = read_store(first.db)
    events = [e for e in service.audit(op)]

    with store_schema() as url:
        moved = migrate(service, url, actor="tester")
        assert moved.counts["users"] == 5 and not moved.key_copied and not moved.missed
        service.close()
        on_postgres = Service(StorePaths(db=url, key=first.key), clock=clock)
        assert read_store(url)["users"] == original["users"]
        back = StorePaths(db=tmp_path / "b" / "store.db", key=tmp_path / "b" / "store.key")
        assert migrate(on_postgres, back.db, actor="tester").key_copied
        on_postgres.close()

    assert read_store(back.db)["users"] == original["users"]
    assert read_store(back.db)["settings"] == original["settings"]
    returned = Service(back, clock=clock)
    back_op = returned.operator("tester")
    copied = [e for e in returned.audit(back_op)]
    assert [e.action for e in copied[:2]] == ["store.migrated", "store.migrated"] and copied[2:] == events
    assert returned.verify("alice", pyotp.TOTP(secret).at(clock.now)).ok  # the secret opens with the copied key
    assert returned.verify("bob", bob_codes[0]).ok and returned.get_user(back_op, "bob").recovery_codes_left == 9
    assert returned.login("carol", password("carol")).outcome is Outcome.LOCKED
    returned.close()


def test_a_migration_that_fails_leaves_no_folder_or_key_it_made(tmp_path, clock, monkeypatch):
    source = StorePaths(db=tmp_path / "src" / "store.db", key=tmp_path / "src" / "store.key")
    local = Service.create(source, issuer="Acme", actor="tester", clock=clock)

    def full_disk(*args):
        raise StoreError("no space left on the device")

    monkeypatch.setattr("store.migrate.create_store", full_disk)
    with pytest.raises(StoreError, match="no space"):
        migrate(local, tmp_path / "new" / "sub" / "store.db", actor="tester")
    assert not (tmp_path / "new").exists()  # neither the folders nor the key copied into them
    local.close()


def test_migrate_refuses_a_target_that_is_not_empty(service, paths, tmp_path, clock):
    source = StorePaths(db=tmp_path / "src" / "store.db", key=tmp_path / "src" / "store.key")
    local = Service.create(source, issuer="Acme", actor="tester", clock=clock)
    with pytest.raises(StoreError, match="already exists"):
        migrate(local, paths.db, actor="tester")  # the service fixture's store is there
    with store_schema() as url:
        query(url, "CREATE TABLE payroll (id INTEGER)")
        with pytest.raises(StoreError, match="not empty"):
            migrate(local, url, actor="tester")
        assert query(url, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")[1] == [("payroll",)]
    local.close()
    taken = cli(source, "migrate", "--to", str(source.db))
    assert taken.returncode == 2 and "never writes into one" in taken.stderr
