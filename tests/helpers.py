"""Helpers shared by the store tests (the fixtures live in conftest.py).

Codes are computed with pyotp directly from the secret an Enrollment hands out, the way a
phone would, so the tests do not lean on store.totp to check store.totp.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyotp

from store.paths import StorePaths
from store.service import Outcome, Scope, Service, Session
from store.storage import LineTable, parse_store

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


def temp_files(paths: StorePaths) -> list[Path]:
    """Leftovers of an interrupted write (the storage's temp-file naming)."""
    return sorted(paths.db.parent.glob(f".{paths.db.name}.*.tmp"))


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


def read_store(path: Path) -> dict:
    """The store file's tables as plain dicts (users: key -> document), read as another program would."""
    data = parse_store(Path(path).read_bytes(), Path(path))
    data["users"] = {key: LineTable.parse(line) for key, line in data["users"].lines()}
    return data


def hand_edit_user(path: Path, key: str, **fields) -> None:
    """Changes one user's line in the store file, as a person with an editor would."""
    lines = Path(path).read_bytes().split(b"\n")
    at = next(i for i, line in enumerate(lines) if line.startswith(json.dumps([key]).encode()[:-1] + b","))
    line_key, doc = json.loads(lines[at])
    lines[at] = json.dumps([line_key, {**doc, **fields}]).encode()
    Path(path).write_bytes(b"\n".join(lines))
