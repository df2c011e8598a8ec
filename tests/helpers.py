"""Helpers shared by the store tests (the fixtures live in conftest.py).

Codes are computed with pyotp directly from the secret an Enrollment hands out, the way a
phone would, so the tests do not lean on store.totp to check store.totp.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyotp

from store.paths import StorePaths
from store.models import Outcome, Scope, Session
from store.service import Service

PERIOD = 30
CSV_HEADER = b"username,name,email,role,team\n"


def password(username: str) -> str:
    """The password conftest's `service` fixture gives each of its users."""
    return f"{username}-password"


def code(secret: str, clock, steps: int = 0) -> str:
    """What an authenticator shows for `secret` at the fake clock's time, `steps` periods later."""
    return pyotp.TOTP(secret).at(int(clock()) + steps * PERIOD)


def wrong_code(secret: str, clock) -> str:
    """A 6-digit code that matches no step near now (not even by chance)."""
    near = {code(secret, clock, s) for s in range(-3, 4)}
    candidate = int(code(secret, clock))
    while f"{candidate:06d}" in near:
        candidate = (candidate + 1) % 10**6
    return f"{candidate:06d}"


def enroll(service: Service, session: Session, username: str, clock) -> str:
    """Begin and confirm `username`'s enrollment with `session`; returns the secret.

    The confirming code's step is spent afterwards: log in after `clock.advance(PERIOD)`.
    """
    enrollment = service.begin_enrollment(session, username)
    result = service.confirm_enrollment(session, username, code(enrollment.secret, clock))
    assert result.outcome is Outcome.OK, result
    return enrollment.secret


def first_sign_in(service: Service, clock, username: str) -> tuple[Session, str]:
    """A Pending user's first sign-in: password, enrollment, full session. Returns (session, secret).

    Moves the clock one step on, so the next code the user types is a fresh one.
    """
    result = service.login(username, password(username))
    assert result.outcome is Outcome.ENROLLMENT_REQUIRED, result
    assert result.session.scope is Scope.ENROLL
    enrollment = service.begin_enrollment(result.session, username)
    confirmed = service.confirm_enrollment(result.session, username, code(enrollment.secret, clock))
    assert confirmed.outcome is Outcome.OK, confirmed
    assert confirmed.session is not None and confirmed.session.scope is Scope.FULL
    clock.advance(PERIOD)
    return confirmed.session, enrollment.secret


def sign_in(service: Service, clock, username: str, secret: str) -> Session:
    """An Activated user's sign-in: password, then the TOTP code. Moves the clock one step on."""
    result = service.login(username, password(username))
    assert result.outcome is Outcome.CODE_REQUIRED, result
    done = service.login_code(result.session, code(secret, clock))
    assert done.outcome is Outcome.OK, done
    clock.advance(PERIOD)
    return done.session


def users_csv(names, role: str = "agent") -> bytes:
    return CSV_HEADER + b"".join(f"{n},{n.title()},,{role},Team\n".encode() for n in names)


def run_python(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `script` in a fresh interpreter (a separate process on the same files)."""
    proc = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def last_json_line(proc: subprocess.CompletedProcess):
    return json.loads(proc.stdout.strip().splitlines()[-1])


def connect(path: Path) -> sqlite3.Connection:
    """The store file opened with Python's sqlite3, as another program (or a person) would."""
    conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


def read_store(path: Path) -> dict:
    """The store's settings and users (key -> row as a dict)."""
    conn = connect(path)
    try:
        users = {row["key"]: dict(row) for row in conn.execute("SELECT * FROM users")}
        settings = dict(conn.execute("SELECT * FROM settings").fetchone())
    finally:
        conn.close()
    return {"settings": settings, "users": users}


def written(path: Path) -> dict[str, bytes]:
    """The store file and its WAL as bytes (the -shm is only an index, rewritten by readers):
    equal means nothing was written, not even a change still waiting in the WAL."""
    files = (path, path.with_name(path.name + "-wal"))
    return {f.name: f.read_bytes() for f in files if f.exists() and f.stat().st_size}


def store_state(path: Path) -> dict[str, list[tuple]]:
    """Every table but the audit log, each as its sorted rows: equal means nothing changed."""
    conn = connect(path)
    try:
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: sorted(map(tuple, conn.execute(f"SELECT * FROM {t}"))) for t in tables if t != "audit"}
    finally:
        conn.close()


def hand_edit_user(path: Path, key: str, **fields) -> None:
    """Changes one user's row in the store file directly, as a person with sqlite3 would."""
    conn = connect(path)
    try:
        sets = ", ".join(f"{column} = ?" for column in fields)
        assert conn.execute(f"UPDATE users SET {sets} WHERE key = ?", (*fields.values(), key)).rowcount == 1
    finally:
        conn.close()


def damage_table(path: Path, table: str) -> None:
    """Overwrites the first page of `table` in the store file with noise, as a failing disk might."""
    conn = connect(path)
    try:
        page = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    with open(path, "r+b") as f:
        f.seek((page - 1) * size + 8)  # past the page header's first bytes, into its cells
        f.write(bytes(range(256)) * (size // 256 - 1))
