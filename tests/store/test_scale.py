"""Behaviour at size: a 100,000-user store opens, filters and updates correctly.

One demo store is built for the whole run (conftest's `demo_100k`, a few seconds) and enrolled
for the module; each test works on a copy. No timing is
asserted here: `benchmarks/run.py` measures speed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pyotp
import pytest

from store.models import Status
from store.paths import StorePaths
from store.service import Service
from tests.support import copy_store, read_store, run_forked

USERS = 100_000


@pytest.fixture(scope="module")
def built(tmp_path_factory, demo_100k):
    """The demo store of 100k users, with `admin` enrolled an hour ago; (folder, admin's secret)."""
    folder = tmp_path_factory.mktemp("scale")
    paths = copy_store(demo_100k, StorePaths(folder / "store.db", folder / "store.key"))
    past = time.time() - 3600
    service = Service(paths, clock=lambda: past)
    op = service.operator("tester")
    enrollment = service.begin_enrollment(op, "admin")
    assert service.confirm_enrollment(op, "admin", pyotp.TOTP(enrollment.secret).at(past)).ok
    service.close()
    return folder, enrollment.secret


@pytest.fixture
def big(built, tmp_path) -> StorePaths:
    folder, _ = built
    for name in ("store.db", "store.key"):
        shutil.copy2(folder / name, tmp_path / name)  # with its mode: a store open to others is refused
    return StorePaths(tmp_path / "store.db", tmp_path / "store.key")


def raw_users(paths: StorePaths) -> dict[str, dict]:
    """The users as another reader of the file sees them: the brute-force reference."""
    return read_store(paths.db)["users"]


def status(doc: dict) -> Status:
    return Status.ACTIVATED if doc.get("secret") else Status.PENDING


def mfa(paths: StorePaths, *args: str, input: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MFA_CONSOLE_DB": str(paths.db), "MFA_CONSOLE_KEY": str(paths.key)}
    return run_forked(list(args), input=input, env=env, cwd=Path.cwd(), timeout=120)


def test_the_store_opens_with_every_user(big):
    service = Service(big)
    op = service.operator("tester")
    docs = raw_users(big)
    users = service.list_users(op)
    assert len(users) == len(docs) == USERS
    assert [u.username for u in users] == [d["username"] for d in docs.values()]
    assert {u.username: u.status for u in users} == {d["username"]: status(d) for d in docs.values()}
    rollout = service.rollout(op)
    assert (rollout.total, rollout.activated) == (USERS, sum(status(d) is Status.ACTIVATED for d in docs.values()))
    sample = list(docs)[:: USERS // 50]
    assert [service.get_user(op, key).name for key in sample] == [docs[key]["name"] for key in sample]
    service.close()


def test_a_change_touches_only_its_users(big):
    before = raw_users(big)
    activated = [k for k, d in before.items() if d.get("secret") and k != "admin"]
    targets = activated[0], activated[-1], activated[len(activated) // 2]
    service = Service(big)
    op = service.operator("tester")
    service.list_users(op)
    service.reset_2fa(op, targets[0])
    service.edit_user(op, targets[1], team="Moved")
    service.set_active(op, targets[2], False)
    after = raw_users(big)
    assert list(after) == list(before)  # same users, same order
    assert {k for k in before if before[k] != after[k]} == set(targets)
    assert after[targets[0]].get("secret") is None and after[targets[1]]["team"] == "Moved"
    users = {u.username: u for u in service.list_users(op)}  # the records of changed users are remade
    assert users[before[targets[0]]["username"]].status is Status.PENDING
    assert users[before[targets[1]]["username"]].team == "Moved"
    assert not users[before[targets[2]]["username"]].active
    service.close()
    fresh = Service(big)
    assert {u.username: u for u in fresh.list_users(fresh.operator("tester"))} == users
    fresh.close()


def test_changes_by_another_process_are_seen(big):
    service = Service(big)
    op = service.operator("tester")
    first = {u.username: u for u in service.list_users(op)}
    target = next(u for u in first.values() if u.status is Status.ACTIVATED and u.username != "admin")
    proc = mfa(big, "users", "reset-2fa", target.username)
    assert proc.returncode == 0, proc.stderr
    proc = mfa(big, "users", "add", "zz.newcomer", "--name", "Zz Newcomer", "--role", "agent", "--team", "Sales")
    assert proc.returncode == 0, proc.stderr
    now = {u.username: u for u in service.list_users(op)}
    assert now[target.username].status is Status.PENDING and "zz.newcomer" in now
    assert len(now) == USERS + 1
    assert {k: v for k, v in now.items() if k not in (target.username, "zz.newcomer")} == {
        k: v for k, v in first.items() if k != target.username
    }
    service.close()


def test_the_cli_lists_filters_and_verifies(big, built):
    docs = raw_users(big)
    proc = mfa(big, "users", "list", "--team", "Night Shift", "--status", "pending", "--json")
    assert proc.returncode == 0, proc.stderr
    expected = sorted(d["username"] for d in docs.values() if d.get("team") == "Night Shift" and not d.get("secret"))
    assert sorted(u["username"] for u in json.loads(proc.stdout)) == expected
    _, secret = built
    proc = mfa(big, "verify", "admin", input=pyotp.TOTP(secret).now() + "\n")
    assert proc.returncode == 0, proc.stderr
    proc = mfa(big, "verify", "admin", input=pyotp.TOTP(secret).now() + "\n")  # replayed
    assert proc.returncode == 1


def test_an_import_of_many_rows_lands_whole(big):
    rows = "".join(f"new.{i},New {i},new.{i}@acme.example,agent,Sales\n" for i in range(20_000))
    csv_path = big.db.parent / "new.csv"
    csv_path.write_text("username,name,email,role,team\n" + rows)
    proc = mfa(big, "users", "import", str(csv_path))
    assert proc.returncode == 0, proc.stderr
    docs = raw_users(big)
    assert len(docs) == USERS + 20_000
    assert [docs[f"new.{i}"]["name"] for i in (0, 9_999, 19_999)] == ["New 0", "New 9999", "New 19999"]
    proc = mfa(big, "users", "import", str(csv_path))  # all already there: refused, nothing written
    assert proc.returncode != 0 and "already exists" in proc.stdout + proc.stderr
    assert len(raw_users(big)) == USERS + 20_000
