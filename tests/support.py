"""What the tests share; the fixtures that use it live in conftest.py.

- time: the fixed instant T0 and the FakeClock every store and app in a test runs on;
- codes: computed with pyotp straight from the secret an Enrollment hands out, the way a phone
  would, so the tests do not lean on store.totp to check store.totp;
- the store read and damaged as another program (or a person with sqlite3 or psql) would;
- the command line run as a subprocess (`Cli`);
- the dashboard driven with Pilot: the app factory, sign-in, settling, the screen as text, and
  SVG snapshots several to a test;
- the hand-checked data sets more than one module tests against.

No test module imports another: what two of them need lives here.
"""

from __future__ import annotations

import inspect
import json
import errno
import os
import pickle
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pyotp

from store.models import Outcome, PolicyMode, Role, Scope, Session, Status, User
from store.paths import StorePaths
from store.service import Service
from store.sql import is_url

ROOT = Path(__file__).resolve().parent.parent  # the checkout: store/, tui/, tests/

# -- time ----------------------------------------------------------------------------------------
T0 = 1_796_000_000.0  # a fixed instant, 2026-11-30 00:53:20 UTC: 20 s into a 30 s TOTP step
PERIOD = 30


class FakeClock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- codes and sign-ins through the service ------------------------------------------------------
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


def activate(service: Service, username: str, clock) -> str:
    """Enrolls `username` as the operator; the clock moves to the next step (no replay later).
    Returns the secret."""
    secret = enroll(service, service.operator("tester"), username, clock)
    clock.advance(PERIOD - clock() % PERIOD)
    return secret


def make_optional(service: Service, enabled: bool = True) -> None:
    op = service.operator("tester")
    service.set_mode(op, PolicyMode.OPTIONAL)
    service.set_enabled(op, enabled)


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


def sign_in_again(service: Service, clock, username: str, secret: str) -> Session:
    """An Activated user's sign-in: password, then the TOTP code. Moves the clock one step on."""
    result = service.login(username, password(username))
    assert result.outcome is Outcome.CODE_REQUIRED, result
    done = service.login_code(result.session, code(secret, clock))
    assert done.outcome is Outcome.OK, done
    clock.advance(PERIOD)
    return done.session


def users_csv(names, role: str = "agent") -> bytes:
    return CSV_HEADER + b"".join(f"{n},{n.title()},,{role},Team\n".encode() for n in names)


# -- other processes, and the store's files as they are on disk -----------------------------------
def run_python(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `script` in a fresh interpreter (a separate process on the same files)."""
    proc = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


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


def last_json_line(proc: subprocess.CompletedProcess):
    return json.loads(proc.stdout.strip().splitlines()[-1])


def connect(path: Path) -> sqlite3.Connection:
    """The store file opened with Python's sqlite3, as another program (or a person) would."""
    conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


def query(db: Path | str, sql: str, params: tuple = ()) -> tuple[list[str], list[tuple]]:
    """(columns, rows) of one statement on the store (a file or a PostgreSQL URL), run as
    another program would, committed at once."""
    if is_url(db):
        with psycopg.connect(db, autocommit=True) as conn:
            cursor = conn.execute(sql.replace("?", "%s"), params)
            return ([c.name for c in cursor.description] if cursor.description else []), \
                (cursor.fetchall() if cursor.description else [])  # fmt: skip
    conn = connect(db)
    try:
        cursor = conn.cursor()
        cursor.row_factory = None  # plain tuples: sqlite3.Row made into dicts costs seconds at 100k users
        cursor.execute(sql, params)
        return ([c[0] for c in cursor.description] if cursor.description else []), cursor.fetchall()
    finally:
        conn.close()


def tables(db: Path | str) -> list[str]:
    if is_url(db):
        return [name for (name,) in query(db, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")[1]]
    return [name for (name,) in query(db, "SELECT name FROM sqlite_master WHERE type = 'table'")[1]]


def read_store(db: Path | str) -> dict:
    """The store's settings and users (key -> row as a dict)."""
    columns, rows = query(db, "SELECT * FROM users")
    key = columns.index("key")
    users = {row[key]: dict(zip(columns, row)) for row in rows}
    columns, rows = query(db, "SELECT * FROM settings")
    return {"settings": dict(zip(columns, rows[0])), "users": users}


def written(path: Path) -> dict[str, bytes]:
    """The store file and its WAL as bytes (the -shm is only an index, rewritten by readers):
    equal means nothing was written, not even a change still waiting in the WAL."""
    files = (path, path.with_name(path.name + "-wal"))
    return {f.name: f.read_bytes() for f in files if f.exists() and f.stat().st_size}


def store_state(db: Path | str) -> dict[str, list[tuple]]:
    """Every table but the audit log, each as its sorted rows: equal means nothing changed."""
    return {t: sorted(query(db, f"SELECT * FROM {t}")[1], key=repr) for t in tables(db) if t != "audit"}


def everything_stored(paths: StorePaths) -> bytes:
    """All the store holds, as bytes to search: the files of a SQLite store (the WAL too), the
    rows of every table of a PostgreSQL one."""
    if is_url(paths.db):
        return repr({t: query(paths.db, f"SELECT * FROM {t}")[1] for t in tables(paths.db)}).encode()
    return b"".join(file.read_bytes() for file in sorted(paths.db.parent.iterdir()))


def hand_edit_user(db: Path | str, key: str, **fields) -> None:
    """Changes one user's row in the store directly, as a person with sqlite3 or psql would."""
    sets = ", ".join(f"{column} = ?" for column in fields)
    columns, rows = query(db, f"UPDATE users SET {sets} WHERE key = ? RETURNING key", (*fields.values(), key))
    assert len(rows) == 1


def copy_store(folder: Path, paths: StorePaths) -> StorePaths:
    """A closed store's file and key from `folder` to `paths` (modes kept: a store open to others
    is refused); returns `paths`."""
    paths.db.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths.key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copy2(folder / "store.db", paths.db)
    shutil.copy2(folder / "store.key", paths.key)
    return paths


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


# -- the command line ----------------------------------------------------------------------------
MFA = (sys.executable, "-m", "cli")


def run_forked(args: list[str], *, input: str = "", env: dict[str, str], cwd: Path,
               timeout: float = 30) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """`mfa-console args` as a process of its own, forked from this one with the command line
    already imported: its own stdin, stdout and stderr (files, as a pipe's reader sees them), its
    environment, folder, umask and exit code, as `python -m cli` would give, without paying the
    interpreter's start and the imports hundreds of times in a run. It inherits this process's
    monkeypatches (the tests' cheap scrypt); a test about the real process starts one."""
    from cli.main import main

    stdin, stdout, stderr = (os.memfd_create(name) for name in ("stdin", "stdout", "stderr"))
    os.write(stdin, input.encode())
    os.lseek(stdin, 0, os.SEEK_SET)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: nothing of it returns into pytest
        code = 70
        try:
            for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
                os.dup2(fd, target)
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update(env)
            sys.stdin = open(0, encoding="utf-8", closefd=False)
            sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
            sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
            sys.argv = ["mfa-console", *args]
            try:
                code = main(list(args))
            except SystemExit as exit:  # as the interpreter ends on one
                code = exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 1
                if isinstance(exit.code, str):
                    print(exit.code, file=sys.stderr)
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(stdin)
    pidfd = os.pidfd_open(pid)
    try:
        if not select.select([pidfd], [], [], timeout)[0]:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise subprocess.TimeoutExpired(["mfa-console", *args], timeout)
        returncode = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    finally:
        os.close(pidfd)
    outputs = []
    for fd in (stdout, stderr):
        os.lseek(fd, 0, os.SEEK_SET)
        with open(fd, encoding="utf-8", errors="replace") as file:
            outputs.append(file.read())
    return subprocess.CompletedProcess(["mfa-console", *args], returncode, *outputs)


@dataclass(frozen=True)
class Enrolled:
    secret: str
    recovery_codes: tuple[str, ...]


class Cli:
    """Runs `mfa-console` against one store (MFA_CONSOLE_DB) in its own environment, as a process
    forked with the command line imported (`run_forked`)."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.db = tmp_path / "store" / "store.db"
        self.key = tmp_path / "store" / "store.key"
        # The autouse fixture's XDG_DATA_HOME/HOME are in os.environ, so the child inherits them.
        self.env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "MFA_CONSOLE_KEY")}
        self.env["MFA_CONSOLE_DB"] = str(self.db)

    def run(self, *args: str, input: str = "", code: int | None = None) -> subprocess.CompletedProcess[str]:
        """One command; stdin is `input` (never the test's terminal). `code`: the exit code expected."""
        proc = run_forked(list(args), input=input, env=self.env, cwd=self.tmp)
        out = proc.stdout + proc.stderr
        assert "Traceback" not in out, out
        assert "\x1b" not in out, f"raw escape in the output of {args}: {out!r}"
        if code is not None:
            assert proc.returncode == code, f"{args}: exit {proc.returncode}, expected {code}\n{out}"
        return proc

    def fails(self, *args: str, code: int, input: str = "") -> str:
        """A refused command: nothing on stdout, ONE line on stderr (returned)."""
        proc = self.run(*args, input=input, code=code)
        assert proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("mfa-console"), proc.stderr
        return lines[0]

    def add(self, username: str, *, role: str = "agent", name: str | None = None, team: str | None = None,
            password: str | None = None) -> None:  # fmt: skip
        args = ["users", "add", username, "--name", name or username.title(), "--role", role]
        if team:
            args += ["--team", team]
        if password:
            args.append("--password-stdin")
        self.run(*args, input=f"{password}\n" if password else "", code=0)

    def users(self, *filters: str) -> dict[str, dict]:
        proc = self.run("users", "list", "--json", *filters, code=0)
        return {u["username"]: u for u in json.loads(proc.stdout)}

    def audit(self, *filters: str) -> list[dict]:
        return [json.loads(line) for line in self.run("audit", "--json", *filters, code=0).stdout.splitlines()]

    def verify(self, username: str, code: str, expect: int) -> str:
        return self.run("verify", username, input=f"{code}\n", code=expect).stderr.strip()

    def login(self, username: str, password: str, code: str = "", expect: int | None = None):
        return self.run("login", username, input=f"{password}\n{code}\n", code=expect)

    def enroll(self, username: str) -> Enrolled:
        """Activates `username` through the Python API, as a phone would.

        The service's clock is one step in the past, so the confirming code's step (which a later
        code must exceed) is behind every code computed from now on.
        """
        past = time.time() - PERIOD
        service = Service(StorePaths(self.db, self.key), clock=lambda: past)
        try:
            op = service.operator("tester")
            enrollment = service.begin_enrollment(op, username)
            result = service.confirm_enrollment(op, username, pyotp.TOTP(enrollment.secret).at(past))
        finally:
            service.close()
        assert result.ok
        return Enrolled(enrollment.secret, result.recovery_codes)

    def dump(self) -> list[str]:
        """The whole store, audit log included, as SQL text: equal means nothing was written."""
        conn = connect(self.db)
        try:
            return list(conn.iterdump())
        finally:
            conn.close()


# -- the verification service, as a process -----------------------------------------------------
@dataclass
class Served:
    url: str
    proc: subprocess.Popen
    radius_port: int | None = None

    def stop(self) -> str:
        """SIGTERM, as systemd stops it; its stderr."""
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        return err


def start_service(paths: StorePaths, *options: str) -> Served:
    """`mfa-console serve` on an ephemeral port of loopback, once it says where it listens."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    where = [] if "--socket" in options else ["--listen", "127.0.0.1:0"]
    proc = subprocess.Popen([sys.executable, "-m", "cli", "--db", str(paths.db), "--key", str(paths.key), "serve",
                             *where, *options], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.startswith(("listening on http://", "listening on https://")), \
            proc.stderr.read() if proc.poll() is not None else line  # fmt: skip
        served = Served(line.split()[-1], proc)
        if "--radius" in options:
            line = proc.stdout.readline()
            assert line.startswith("listening on radius://"), line
            served.radius_port = int(line.rsplit(":", 1)[1])
    except BaseException:
        proc.kill()  # a service that did not start as expected is not left running
        proc.communicate()
        raise
    return served



# -- the dashboard, driven with Pilot -------------------------------------------------------------
def make_app(paths: StorePaths, clock, *, poll_seconds: float = 0.1, **kwargs):
    """The dashboard on `paths`, on the test's clock; it polls the store every 0.1 s (1 s for real)."""
    from tui.app import MfaConsoleApp

    return MfaConsoleApp(paths, clock=clock, poll_seconds=poll_seconds, **kwargs)


async def settle(pilot, rounds: int = 3) -> None:
    """Lets workers finish and their results reach the screen."""
    for _ in range(rounds):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def fill(pilot, field: str, value: str) -> None:
    """Puts `value` in the Input `#field` of the screen at once and presses Enter there."""
    from textual.widgets import Input

    widget = pilot.app.screen.query_one(f"#{field}", Input)
    widget.value = value
    widget.focus()
    await pilot.pause()
    await pilot.press("enter")


async def sign_in(pilot, username: str, password: str, otp: str | None = None) -> None:
    """The sign-in screen, its fields filled in at once (not typed key by key), each sent with Enter."""
    from textual.widgets import Input

    await settle(pilot)
    pilot.app.screen.query_one("#username", Input).value = username
    await fill(pilot, "password", password)
    await settle(pilot)
    if otp is not None:
        await fill(pilot, "code", otp)
        await settle(pilot)


async def type_sign_in(pilot, username: str, password: str, otp: str | None = None) -> None:
    """The sign-in screen typed key by key, as a person does: Enter moves on from the username."""
    await settle(pilot)
    await pilot.press(*username)
    await pilot.press("enter")
    await pilot.press(*password)
    await pilot.press("enter")
    await settle(pilot)
    if otp is not None:
        await pilot.press(*otp)
        await pilot.press("enter")
        await settle(pilot)


def screen_text(app) -> str:
    """The screen as plain text, line by line (what a person reads)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


class Screenshots:
    """SVG snapshots of a running app, several to a test, each its own file in `__snapshots__`.

    What pytest-textual-snapshot's `snap_compare` does for the one screenshot of its app run:
    syrupy's `snapshot` with the SVG extension compares (`pytest --snapshot-update` writes), and
    each comparison is recorded for the HTML report of mismatches.
    """

    def __init__(self, snapshot, request):
        from pytest_textual_snapshot import SVGImageExtension

        self.snapshot = snapshot.use_extension(SVGImageExtension)
        self.request = request
        self.differ: list[str] = []

    async def take(self, pilot, name: str) -> bool:
        """The screen now, as `<test>[<name>].svg`, once animations are over (as snap_compare waits)."""
        from pytest_textual_snapshot import PseudoApp, PseudoConsole, node_to_report_path
        from rich.console import Console

        app = pilot.app
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()
        svg = app.export_screenshot(title=app.title, simplify=True)
        matches = self.snapshot(name=name) == svg
        result = self.snapshot.executions[self.snapshot.num_executions - 1]
        node = self.request.node
        path, _, test_name = node.reportinfo()
        console = Console(legacy_windows=False, force_terminal=True)
        data = (
            matches,
            str(result.final_data) if result.final_data is not None else "",
            svg,
            PseudoApp(PseudoConsole(console.legacy_windows, console.size)),
            path,
            inspect.currentframe().f_back.f_lineno - 1,  # the caller's line (inspect.stack() read every file: 1.8 s a walk)
            f"{test_name}[{name}]",
            inspect.getdoc(node.function) or "",
            "",
            result.recalled_data is not None,
        )
        report = node_to_report_path(node)
        report.with_name(f"{report.name}_{name}").write_bytes(pickle.dumps(data))
        if not matches:
            self.differ.append(name)
        return matches

    def check(self) -> None:
        """Fails the test if a screen differed from its snapshot (all of them are taken first)."""
        assert not self.differ, f"screens that differ from their snapshots: {', '.join(self.differ)}"


# -- data sets more than one module checks against -----------------------------------------------
# Values that sit on the edge of some rule, for every field (store/test_validation, store/test_csvio).
TRICKY = [
    "", " ", " \t ", "alice", "Bob.S", " Bob.S ", "7up", "a" * 64, "a" * 65, "n" * 100, "n" * 101,
    "a" * 242 + "@example.com", "a" * 243 + "@example.com",  # 254 and 255 characters
    "José Núñez", "Zoë", "日本語", "e\u0301", "\u0301lead", "K\u212a", "ß", "ǅ",  # letters, combining marks
    "a\u200bb", "\u200b", "a\u202eb", "a\u2066b", "\ufeffa", "a\u00adb", "a\U000e0001",  # Cf: zero-width, bidi, tags
    "a\x00b", "a\x07b", "a\tb", "a\nb", "a\rb", "\x1b[31m", "a\x7fb", "a\x85b", "a\x9bb",  # C0, DEL, C1
    "a\u2028b", "a\u2029b", "\ud800",  # Zl, Zp, lone surrogate
    "a\u00a0b", "\u00a0a\u00a0", "a\u3000b", "\u3000a", "a\ue000b", "a\u0378b",  # allowed but not printable
    "=1+1", "+33 1", "-2", "@SUM(A1)", " =x", "\t=cmd", "a=b", "a-b", "[red]x[/red]", "a:b",
    "a@b.co", "x@y.io ", "first.last+tag@mail.example.org", "é@exämple.com", "a@b@c.com", "a@localhost",
    "a b@c.com", "a@c.com.", "a@.c.com", "a@c..com", "=cmd@evil.example", "-a@b.co", "@b.co", "a@b.c\u200b",
    "admin", "Agent", " SUPERVISOR ", "\u017fupervisor", "root", "agent\u200b",
]

# The rollout's hand-checked users (store/test_report, tui/test_rollout). NOW is T0:
# 2026-11-30 00:53:20 UTC, so "today" is 30 Nov and has run for 53 minutes; the 30-day series
# starts on 1 Nov, the 7 days are 24-30 Nov.
NOW = datetime.fromtimestamp(T0, UTC)
A, P, D = Status.ACTIVATED, Status.PENDING, Status.DISABLED


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def person(username, name, team, status, *, activated=None, pending=None, active=True) -> User:
    return User(username, name, Role.AGENT, status, email=f"{username}@acme.example", team=team, active=active,
                created_at=at("2026-09-01T09:00"), activated_at=activated, pending_since=pending)  # fmt: skip


def people() -> tuple[User, ...]:
    """13 active accounts in 4 teams (one is "no team") and 2 deactivated ones."""
    return (
        person("ben.okafor", "Ben Okafor", "Billing", A, activated=at("2026-11-30T00:43")),  # today
        person("ana.silva", "Ana Silva", "Billing", A, activated=at("2026-11-29T23:59:59")),  # yesterday
        person("bea.costa", "Bea Costa", "Billing", P, pending=at("2026-11-20T12:00")),  # 9 d 12:53 -> 9
        person("bo.chen", "Bo Chen", "Billing", P, pending=at("2026-11-29T01:00")),  # 23:53 -> 0
        person("sam.ricci", "Sam Ricci", "Sales", A, activated=at("2026-11-24T00:00")),  # first of the 7 days
        person("sia.novak", "Sia Novak", "Sales", A, activated=at("2026-11-23T23:00")),  # just before them
        person("sol.kim", "Sol Kim", "Sales", A),  # Activated, no date: before every day
        person("nia.haddad", "Nia Haddad", None, P, pending=at("2026-10-01T00:00")),  # 31+29 d 00:53 -> 60
        person("ned.sato", "Ned Sato", None, A, activated=at("2026-10-15T10:00")),  # before 1 Nov
        person("tom.walsh", "Tom Walsh", "Tech", P, pending=at("2026-11-20T12:00")),  # as bea.costa: 9
        person("tia.moreau", "Tia Moreau", "Tech", A, activated=at("2026-12-01T08:00")),  # ahead: counts today
        person("ted.klein", "Ted Klein", "Tech", D),
        person("tao.lopez", "Tao Lopez", "Tech", P),  # Pending since unknown: chased last
        # Deactivated: out of every number, even the team that has nobody else.
        person("xia.yilmaz", "Xia Yilmaz", "Billing", A, activated=at("2026-11-30T00:30"), active=False),
        person("gus.bauer", "Gus Bauer", "Ghost", P, pending=at("2026-01-01T00:00"), active=False),
    )


def fill_disk(disk: Path, leave: int = 0) -> Path:
    """Writes a file until the disk has not one byte left, then gives `leave` bytes back; returns it."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 16, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        f.truncate(f.tell() - leave)
    return filler
