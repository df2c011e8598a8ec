"""Many processes at once, processes killed mid-write, a writer stopped holding the lock; on
both engines (on PostgreSQL, processes that could be on different hosts: nothing is shared but
the server).

The children are forked from the test process after the store is made: each opens its own
Service (never the parent's connection), waits on a shared pipe so they all start together,
does its part and sends back a JSON answer.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable

import pyotp
import pytest

from store.models import NewUser, Outcome, Role
from store.service import Service
from store.sql import postgres, sqlite
from tests.support import PERIOD, enroll, query, users_csv

ON_BOTH_ENGINES = True


@pytest.fixture
def op(service):
    return service.operator("tester")


@pytest.fixture
def alice_secret(service, op, clock) -> str:
    secret = enroll(service, op, "alice", clock)
    clock.advance(PERIOD)  # the confirming code's step is spent
    return secret


def run_together(count: int, paths, body: Callable[[Service, int], object], *, now: float) -> list:
    """`count` forked processes, each running body(its own Service, its index) at the same moment."""
    go_read, go_write = os.pipe()
    children = []
    for index in range(count):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            status = 1
            try:
                os.close(read_end)
                os.close(go_write)
                service = Service(paths, clock=lambda: now)
                service.db  # noqa: B018 -- opened before the start, as a waiting process would be
                os.write(write_end, b"R")
                os.read(go_read, 1)
                answer = json.dumps(body(service, index)).encode()
                os.write(write_end, answer)
                status = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(status)
        os.close(write_end)
        children.append((pid, read_end))
    os.close(go_read)
    try:
        for _, read_end in children:
            assert os.read(read_end, 1) == b"R", "a child failed before the start"
        os.write(go_write, b"G" * count)
        answers = []
        for pid, read_end in children:
            chunks = []
            while chunk := os.read(read_end, 65536):
                chunks.append(chunk)
            _, status = os.waitpid(pid, 0)
            assert status == 0, "a child failed (its traceback is on stderr)"
            answers.append(json.loads(b"".join(chunks)))
        return answers
    finally:
        os.close(go_write)
        for pid, read_end in children:
            os.close(read_end)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def test_fifty_wrong_codes_at_once_count_exactly_five(service, paths, op, alice_secret, clock):
    wrong = f"{(int(pyotp.TOTP(alice_secret).at(clock.now)) + 500_000) % 1_000_000:06d}"
    answers = run_together(50, paths, lambda s, i: s.verify("alice", wrong).outcome.value, now=clock.now)
    assert Counter(answers) == {Outcome.INVALID.value: 4, Outcome.LOCKED.value: 46}
    verifies = Counter(e.outcome for e in service.audit(op, user="alice", action="verify"))
    assert verifies == {"failed": 5, "locked": 45}  # five counted; the rest found the account locked
    assert [e.detail for e in service.audit(op, action="lock")] == ["5 min"]
    assert service.get_user(op, "alice").locked_until is not None


def test_twenty_copies_of_one_code_are_accepted_once(service, paths, op, alice_secret, clock):
    right = pyotp.TOTP(alice_secret).at(clock.now)
    answers = run_together(20, paths, lambda s, i: s.verify("alice", right).outcome.value, now=clock.now)
    assert answers.count(Outcome.OK.value) == 1
    assert [e.outcome for e in service.audit(op, user="alice", action="verify")].count("ok") == 1


def test_a_recovery_code_used_by_ten_at_once_works_once(service, paths, op, clock):
    enrollment = service.begin_enrollment(op, "bob")
    codes = service.confirm_enrollment(op, "bob", pyotp.TOTP(enrollment.secret).at(clock.now)).recovery_codes
    answers = run_together(10, paths, lambda s, i: s.verify("bob", codes[0]).ok, now=clock.now)
    assert answers.count(True) == 1
    assert service.get_user(op, "bob").recovery_codes_left == 9


def test_mixed_writers_lose_nothing_acknowledged(service, paths, op, clock):
    """Eight processes add users, change their own user and count failures, all at once."""
    service.import_users(op, users_csv([f"own{i}" for i in range(8)]))

    def writer(s: Service, i: int) -> dict:
        me = s.operator(f"w{i}")
        added, failures = [], 0
        for n in range(15):
            added.append(s.add_user(me, NewUser(f"w{i}-{n:02d}", f"W {i} {n}", Role.AGENT)).username)
            s.edit_user(me, f"own{i}", name=f"Own {i} v{n}", team=f"T{i}")
            if n < 4:  # fewer than a lock's worth: every one must be counted
                failures += s.login(f"own{i}", "wrong-password").outcome is Outcome.INVALID
        s.set_password(me, f"own{i}", f"own{i}-password")
        return {"added": added, "failures": failures}

    answers = run_together(8, paths, writer, now=clock.now)
    users = {u.username: u for u in service.list_users(op)}
    assert all(name in users for answer in answers for name in answer["added"])
    assert len(users) == 4 + 8 + 8 * 15
    assert [users[f"own{i}"].name for i in range(8)] == [f"Own {i} v14" for i in range(8)]
    assert [a["failures"] for a in answers] == [4] * 8
    assert [users[f"own{i}"].failures for i in range(8)] == [4] * 8
    for i in range(8):
        assert service.login(f"own{i}", f"own{i}-password").outcome is Outcome.ENROLLMENT_REQUIRED
    events = Counter((e.action, e.outcome) for e in service.audit(op))
    assert events[("user.add", "ok")] == 4 + 8 * 15 and events[("user.edit", "ok")] == 8 * 15


def _keep_writing(paths, acknowledge: int) -> None:
    """A forked child: renames u0 to "Name N+1", "Name N+2", ... and says each N once committed."""
    service = Service(paths)
    op = service.operator("writer")
    n = int(service.get_user(op, "u0").name.removeprefix("Name "))
    while True:
        n += 1
        service.edit_user(op, "u0", name=f"Name {n}")
        os.write(acknowledge, n.to_bytes(4, "big"))


def test_killed_at_random_moments_nothing_acknowledged_is_lost(service, paths, op):
    """SIGKILL mid-write, 100 times: the store always opens, no acknowledged change is lost, and
    every committed change has exactly its event (none more, none less)."""
    service.import_users(op, users_csv(["u0", "u1"]))
    service.edit_user(op, "u0", name="Name 0")
    rng = random.Random(6238)
    for _ in range(100):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(read_end)
                _keep_writing(paths, write_end)
            finally:
                os._exit(1)
        os.close(write_end)
        acknowledged = 0
        try:
            for _ in range(rng.randint(1, 3)):
                acknowledged = int.from_bytes(os.read(read_end, 4), "big")
            time.sleep(rng.random() / 500)  # 0-2 ms: the kill lands anywhere in the next commit
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_end)
        # One statement, one snapshot: on PostgreSQL the server may still be committing what the
        # killed child sent last, and a commit landing between two reads is no loss.
        (name, edits), = query(paths.db, "SELECT name, (SELECT count(*) FROM audit WHERE target = 'u0' AND "
                                         "action = 'user.edit') FROM users WHERE key = 'u0'")[1]  # fmt: skip
        committed = int(name.removeprefix("Name "))
        assert committed >= acknowledged
        assert edits == committed + 1  # "Name 0" and one event for each committed rename
    fresh = Service(paths)
    assert fresh.get_user(fresh.operator("tester"), "u1").name == "U1"
    fresh.close()


def test_a_writer_stopped_holding_the_lock_makes_verify_fail_closed_in_time(
    service, paths, engine, op, alice_secret, clock
):
    """Ctrl-Z on a writer holds a lock that verify needs (SQLite's write lock; on PostgreSQL the
    user's row): a verify waits BUSY_SECONDS at most, then says the store is busy (exit 2), and
    works again once the writer is gone."""
    busy_seconds = {"sqlite": sqlite.BUSY_SECONDS, "postgresql": postgres.BUSY_SECONDS}[engine]
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_read)
            holder = Service(paths)
            with holder.db.write() as writer:
                writer.execute("UPDATE users SET name = name WHERE key = 'alice'")
                os.write(ready_write, b"R")
                os.kill(os.getpid(), signal.SIGSTOP)
        finally:
            os._exit(1)
    os.close(ready_write)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(MFA_CONSOLE_DB=str(paths.db), MFA_CONSOLE_KEY=str(paths.key))
    code = pyotp.TOTP(alice_secret).now()
    try:
        assert os.read(ready_read, 1) == b"R"
        # A shorter --timeout is kept whatever the engine (SQLite waits in C, deaf to the timer).
        started = time.monotonic()
        hurried = subprocess.run([sys.executable, "-m", "cli", "verify", "--timeout", "2", "alice"], input=f"{code}\n",
                                 env=env, capture_output=True, text=True, timeout=30)  # fmt: skip
        assert hurried.returncode == 2 and time.monotonic() - started < 2 + 2, hurried.stderr
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "cli", "verify", "alice"], input=f"{code}\n", env=env,
                              capture_output=True, text=True, timeout=busy_seconds + 30)  # fmt: skip
        waited = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(ready_read)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("mfa-console: store ") and "busy" in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1
    assert busy_seconds <= waited < busy_seconds + 10
    again = subprocess.run([sys.executable, "-m", "cli", "verify", "alice"], input=f"{code}\n", env=env,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert again.returncode == 0, again.stderr
