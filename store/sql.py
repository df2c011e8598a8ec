"""Every SQL statement of mfa-console, and the SQLite engine that runs them.

The service sees records (`Settings`, `UserRecord`, `UserSummary`, `AuditEvent`); only this
module knows tables, columns and statements. How SQLite is used:

- WAL with synchronous=FULL: a commit is on disk when it returns, and readers never wait for
  a writer. Changes are made in place: the file is never replaced, so its owner and mode stay.
- A write takes the write lock at BEGIN IMMEDIATE and keeps it for one short transaction. Every
  wait for it is bounded (BUSY_SECONDS); then `StoreBusy` says so.
- Security state changes in single conditional statements whose row count or RETURNING tells
  whether this caller won: accepting a time step, counting a failure, spending a recovery code.
  Correct across processes with no lock of our own.
- A change and the audit events that record it commit in one transaction.
- A store is checked before any write: its folder and files (store.fs), its header, schema
  version and tables; rows are checked as they are read. A damaged store is refused, untouched.
"""

from __future__ import annotations

import functools
import os
from itertools import repeat
from operator import attrgetter
import sqlite3
import stat
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from . import fs
from .errors import JsonLayout, StoreBusy, StoreCorrupt, StoreError, StoreMissing
from .fs import UnsafePath
from .lockout import lock_schedule
from .models import MODES, AuditEvent, NewUser, Policy
from .records import USER_COLUMNS, USER_FIELDS, Settings, UserRecord
from .validation import username_key

APPLICATION_ID = 0x6D666163  # "mfac" in the file's header: an SQLite file that is a store of ours
SCHEMA_VERSION = 3  # 1 and 2 were the JSON layouts (store/legacy.py moves them here)
BUSY_SECONDS = 5.0  # the longest any call waits for another process's write
_NEWER_VERSIONS = 1000  # a version this far beyond ours is taken for a newer release, not damage
_HINT = "it was left untouched; restore it from a backup"
_MAX_TIME = 2.5e11  # seconds: timestamps beyond year 9999 are damage, not dates

SCHEMA = """
CREATE TABLE settings (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    mode TEXT NOT NULL CHECK (mode IN ('mandatory', 'optional')),
    enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    issuer TEXT NOT NULL,
    key_check TEXT NOT NULL,
    created_at REAL NOT NULL
) STRICT;
CREATE TABLE users (
    key TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'supervisor', 'agent')),
    created_at REAL NOT NULL,
    email TEXT,
    team TEXT,
    active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    password TEXT,
    secret TEXT,
    pending_secret TEXT,
    activated_at REAL,
    last_login_at REAL,
    reset_at REAL,
    last_step INTEGER,
    failures INTEGER NOT NULL DEFAULT 0,
    lock_count INTEGER NOT NULL DEFAULT 0,
    locked_until REAL,
    recovery TEXT NOT NULL DEFAULT '',
    rev INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX users_by_rev ON users (rev);
CREATE TABLE unknown_names (
    tag TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    lock_count INTEGER NOT NULL,
    locked_until REAL,
    seen_at REAL NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX unknown_names_by_seen_at ON unknown_names (seen_at);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL,
    detail TEXT
) STRICT;
"""


@functools.cache
def expected_schema() -> frozenset[tuple]:
    """What sqlite_master lists for SCHEMA, definitions included (made once, in memory). A file
    listing anything else — a trigger or view planted, a table gone, a definition changed by a
    flipped bit — is not a store of ours."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(SCHEMA)
        return frozenset(conn.execute(_SCHEMA_QUERY))
    finally:
        conn.close()


_SCHEMA_QUERY = "SELECT type, name, tbl_name, sql FROM sqlite_master"

# A read row is used only if every column has the type and range the schema gives it: a bit
# flipped on disk can change a value's type, which SQLite does not check again when reading.
_TIME_OK = "(typeof({0}) = 'null' OR (typeof({0}) = 'real' AND {0} BETWEEN 0 AND {1}))"
_TEXT_OK = "typeof({0}) IN ('text', 'null')"
_USER_OK = " AND ".join([
    "typeof(key) = 'text'", "typeof(username) = 'text'", "typeof(name) = 'text'",
    "role IN ('admin', 'supervisor', 'agent')", "active IN (0, 1)",
    f"typeof(created_at) = 'real' AND created_at BETWEEN 0 AND {_MAX_TIME}",
    *(_TEXT_OK.format(c) for c in ("email", "team", "password", "secret", "pending_secret")),
    *(_TIME_OK.format(c, _MAX_TIME) for c in ("activated_at", "last_login_at", "reset_at", "locked_until")),
    "typeof(last_step) IN ('integer', 'null')", "typeof(failures) = 'integer' AND failures >= 0",
    "typeof(lock_count) = 'integer' AND lock_count >= 0", "typeof(rev) = 'integer'", "typeof(recovery) = 'text'",
])  # fmt: skip
_ACTIVE = USER_FIELDS.index("active")
# Recovery codes are kept as their hashes in one column, each between spaces (" h1 h2 "): one
# is spent by a single conditional replace, and they are counted by their spaces, in C.
_RECOVERY_LEFT = "max(length(recovery) - length(replace(recovery, ' ', '')) - 1, 0)"
_RECORD_COLUMNS = ", ".join(USER_FIELDS[:-1])  # all but recovery_left, which is counted
_SELECT_RECORD = f"SELECT {_RECORD_COLUMNS}, {_RECOVERY_LEFT}, coalesce(({_USER_OK}), 0) FROM users"
_SUMMARY_COLUMNS = (
    "key, username, name, role, email, team, active, created_at, activated_at, last_login_at, reset_at, "
    f"secret IS NOT NULL, failures, locked_until, {_RECOVERY_LEFT}"
)


class UserSummary(NamedTuple):
    """A user as listed: no secret, no hash. A tuple, as 100k of them are made at once."""

    key: str
    username: str
    name: str
    role: str  # a Role value
    email: str | None
    team: str | None
    active: int  # 1 or 0
    created_at: float
    activated_at: float | None
    last_login_at: float | None
    reset_at: float | None
    enrolled: int  # 1: has a confirmed TOTP secret
    failures: int
    locked_until: float | None
    recovery_left: int


class Database:
    """One connection to one store, shared by a process's threads (one at a time)."""

    def __init__(self, path: Path, conn: sqlite3.Connection):
        self.path = path
        self._conn = conn
        self._mutex = threading.RLock()
        self._own_writes = 0  # PRAGMA data_version does not move for this connection's commits

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, settings: Settings, populate: Callable[[Writer], None]) -> Database:
        """A new store holding what `populate` writes. It is built under a temporary name and
        linked into place whole: nobody sees half a store, an existing file is never touched, and
        a store that could not be made whole leaves nothing behind."""
        fs.make_private_folder(path.parent)
        folder = fs.check_folder(path.parent)
        if os.path.lexists(path):
            raise StoreError(f"a store already exists at {path}; refusing to overwrite it")
        building = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.new")
        made = []  # what this call created, and only that, goes if it fails
        try:
            for suffix in ("-wal", "-shm", "-journal"):  # SQLite's files beside it, never a planted link
                if fs.check_file(Path(f"{building}{suffix}"), folder, secret=True) is not None:
                    raise UnsafePath(f"{building}{suffix} is in the way of a new store; remove it")
            os.close(fs.create_private_file(building, folder))
            made = [Path(f"{building}{suffix}") for suffix in ("", "-wal", "-shm")]
            conn = _connect(building)
            try:
                db = cls(building, conn)
                with db._guard():
                    conn.execute("PRAGMA journal_mode = WAL")
                with db.write() as w:
                    w.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    for statement in filter(str.strip, SCHEMA.split(";")):
                        w.execute(statement)
                    w.execute(
                        "INSERT INTO settings (id, mode, enabled, issuer, key_check, created_at) "
                        "VALUES (1, ?, ?, ?, ?, ?)",
                        (settings.mode.value, int(settings.enabled), settings.issuer, settings.key_check,
                         settings.created_at),
                    )  # fmt: skip
                    populate(w)
                    w.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            finally:
                conn.close()  # the last connection: its WAL is checkpointed into the file and removed
            _link_into_place(building, path)
        except FileExistsError as exc:
            raise StoreError(f"a store already exists at {path}; refusing to overwrite it") from exc
        except OSError as exc:
            raise StoreError(f"cannot create store {path}: {exc.strerror}") from exc
        finally:
            for file in made:
                file.unlink(missing_ok=True)
        fs.fsync_folder(path.parent)
        return cls.open(path)

    @classmethod
    def open(cls, path: Path) -> Database:
        """Opens a store after checking, without writing, that it is safe and ours."""
        header = read_header(path)
        if not header.startswith(b"SQLite format 3\0"):
            if header.startswith(b"{"):
                raise JsonLayout(f"store {path} is in the JSON layout of earlier versions")
            if not header:
                raise StoreCorrupt(f"store {path} is empty (0 bytes); {_HINT}")
            raise StoreCorrupt(f"{path} is not an mfa-console store (not an SQLite database); {_HINT}")
        if len(header) < 100 or int.from_bytes(header[68:72], "big") != APPLICATION_ID:
            raise StoreCorrupt(f"{path} is an SQLite database but not an mfa-console store; {_HINT}")
        _check_size(path, header)
        db = cls(path, _connect(path))
        try:
            db._check()
        except BaseException:
            db.close()
            raise
        return db

    def _check(self) -> None:
        with self._guard():
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if SCHEMA_VERSION < version <= SCHEMA_VERSION + _NEWER_VERSIONS:
                raise StoreError(
                    f"store {self.path} has schema version {version}; this mfa-console reads version "
                    f"{SCHEMA_VERSION} (upgrade mfa-console to open it)"
                )
            if version != SCHEMA_VERSION:  # 0, or far beyond any release: a damaged header
                raise StoreCorrupt(f"store {self.path} has no known schema version ({version}); {_HINT}")
            if frozenset(self._conn.execute(_SCHEMA_QUERY)) != expected_schema():
                raise StoreCorrupt(f"store {self.path} does not have mfa-console's tables; {_HINT}")
            if self._conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self._conn.execute("PRAGMA journal_mode = WAL")

    def close(self) -> None:
        with self._mutex:
            self._conn.close()

    # -- reading -------------------------------------------------------------------------------
    @property
    def generation(self) -> tuple[int, int]:
        """Changes whenever the data changed, in this process or another, since the last call."""
        with self._mutex, self._guard():
            return self._conn.execute("PRAGMA data_version").fetchone()[0], self._own_writes

    def settings(self) -> Settings:
        with self._mutex, self._guard():
            return _settings(self.path, self._conn)

    def user(self, key: str) -> UserRecord | None:
        with self._mutex, self._guard():
            return _user(self.path, self._conn, key)

    def summaries(self, since_rev: int = -1) -> tuple[list[UserSummary], int]:
        """Users changed since `since_rev` (every user, in the file's order, for -1), and the
        revision they bring us to. Unlike `user`, rows are not checked here (100k a second): a
        damaged row shows when its values are used, and `integrity_problem` finds them all."""
        where = "WHERE rev > ?" if since_rev >= 0 else "WHERE ? IS NOT NULL"  # the index, or a scan
        with self._mutex, self._guard(), self._snapshot():
            top = self._conn.execute("SELECT ifnull(max(rev), 0) FROM users").fetchone()[0]
            rows = self._conn.execute(f"SELECT {_SUMMARY_COLUMNS} FROM users {where}", (since_rev,)).fetchall()
        return list(map(UserSummary._make, rows)), top

    def user_keys(self) -> set[str]:
        with self._mutex, self._guard():
            return {key for (key,) in self._conn.execute("SELECT key FROM users")}

    def audit(
        self,
        *,
        user: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditEvent]:
        """Events newest first. `user` (case-folded) matches the actor or the target; `action`
        is a prefix."""
        where, params = ["1"], []
        if user is not None:
            where.append("(lower(actor) = ? OR target = ?)")
            params += [user, user]
        if action is not None:
            where.append("substr(action, 1, ?) = ?")
            params += [len(action), action]
        if since is not None:
            where.append("at >= ?")
            params.append(since.timestamp())
        sql = f"SELECT id, at, actor, action, target, outcome, detail FROM audit WHERE {' AND '.join(where)} ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._mutex, self._guard():
            rows = self._conn.execute(sql, params).fetchall()
        try:
            return [AuditEvent(datetime.fromtimestamp(at, UTC), actor, action_, target, outcome, detail, id_)
                    for id_, at, actor, action_, target, outcome, detail in rows]  # fmt: skip
        except (TypeError, ValueError, OverflowError, OSError) as exc:
            raise StoreCorrupt(f"store {self.path} has a damaged audit event; {_HINT}") from exc

    def audit_head(self) -> int:
        """The newest event's id: it changes whenever an event is recorded."""
        with self._mutex, self._guard():
            return self._conn.execute("SELECT ifnull(max(id), 0) FROM audit").fetchone()[0]

    def integrity_problem(self) -> str | None:
        """SQLite's own check of every page and index (seconds on a large store), or None."""
        with self._mutex, self._guard():
            rows = self._conn.execute("PRAGMA quick_check(1)").fetchall()
        return None if rows == [("ok",)] else str(rows[0][0])

    # -- writing -------------------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[Writer]:
        """One transaction holding the write lock; committed (durably) when the block ends."""
        with self._mutex, self._guard():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield Writer(self)
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._own_writes += 1

    # -- internals -----------------------------------------------------------------------------
    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Several reads that see one state of the store (WAL keeps it for us meanwhile)."""
        if self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise _translate(exc, self.path) from exc


class Writer:
    """The statements of one write transaction (see `Database.write`)."""

    def __init__(self, db: Database):
        self._db = db
        self._conn = db._conn
        self._rev: int | None = None

    def execute(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, params)

    @property
    def rev(self) -> int:
        """This transaction's revision: users it changes carry it, so a reader that saw up to the
        previous one fetches only them. Writes are serialized, so revisions only grow."""
        if self._rev is None:
            self._rev = self.execute("SELECT ifnull(max(rev), 0) + 1 FROM users").fetchone()[0]
        return self._rev

    # -- reads within the transaction ----------------------------------------------------------
    def settings(self) -> Settings:
        return _settings(self._db.path, self._conn)

    def user(self, key: str) -> UserRecord | None:
        return _user(self._db.path, self._conn, key)

    def user_count(self) -> int:
        return self.execute("SELECT count(*) FROM users").fetchone()[0]

    def active_admins(self) -> set[str]:
        return {key for (key,) in self.execute("SELECT key FROM users WHERE role = 'admin' AND active = 1")}

    # -- users ---------------------------------------------------------------------------------
    def add_users(self, records: Iterable[UserRecord]) -> None:
        """New users; their keys must be new (the caller checked, inside this transaction)."""
        columns = USER_FIELDS[:-1]
        rev = self.rev
        self._conn.executemany(
            f"INSERT INTO users ({', '.join(columns)}, rev) VALUES ({', '.join('?' * len(columns))}, ?)",
            ((*(getattr(r, c) for c in columns), rev) for r in records),
        )

    def add_new_users(self, users: list[NewUser], now: float) -> None:
        """New accounts from their given fields alone (an import: 100k rows, no record each)."""
        rev, role = self.rev, attrgetter("role.value")
        self._conn.executemany(
            "INSERT INTO users (key, username, name, role, created_at, email, team, rev) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            zip(map(username_key, map(attrgetter("username"), users)), map(attrgetter("username"), users),
                map(attrgetter("name"), users), map(role, users), repeat(now), map(attrgetter("email"), users),
                map(attrgetter("team"), users), repeat(rev)),
        )  # fmt: skip

    def touch_user(self, key: str) -> None:
        """Marks the user's row changed, and nothing else."""
        self.execute("UPDATE users SET rev = :rev WHERE key = :key", {"rev": self.rev, "key": key})

    def update_user(self, key: str, **changes) -> None:
        unknown = set(changes) - USER_COLUMNS
        if unknown:
            raise ValueError(f"not user columns: {sorted(unknown)}")
        sets = ", ".join(f"{column} = :{column}" for column in changes)
        self.execute(f"UPDATE users SET {sets}, rev = :rev WHERE key = :key", {**changes, "rev": self.rev, "key": key})

    # -- the conditional statements of authentication -----------------------------------------
    def accept_step(self, key: str, step: int, now: float, *, sealed_secret: str, login: bool) -> bool:
        """Records `step` as the newest accepted for the user, and clears their failures: only if
        it is newer than every step accepted before, the secret is still the one checked, and the
        account is active and not locked. True: this caller's code is the one accepted."""
        changed = self.execute(
            "UPDATE users SET last_step = :step, failures = 0, lock_count = 0, locked_until = NULL, "
            "last_login_at = CASE WHEN :login THEN :now ELSE last_login_at END, rev = :rev "
            "WHERE key = :key AND secret = :secret AND active = 1 AND (last_step IS NULL OR last_step < :step) "
            "AND (locked_until IS NULL OR locked_until <= :now)",
            {"step": step, "login": int(login), "now": now, "rev": self.rev, "key": key, "secret": sealed_secret},
        ).rowcount
        return changed == 1

    def use_recovery_code(self, key: str, hashes: tuple[str, ...], now: float, *, login: bool) -> int | None:
        """Spends the user's recovery code whose hash is one of `hashes`, and clears failures;
        None if there is none (or another caller spent it first), else how many are left."""
        spend, found = "recovery", []
        params = {"login": int(login), "now": now, "rev": self.rev, "key": key}
        for i, hash_ in enumerate(hashes):
            params[f"h{i}"] = f" {hash_} "
            spend = f"replace({spend}, :h{i}, ' ')"
            found.append(f"instr(recovery, :h{i}) > 0")
        row = self.execute(
            f"UPDATE users SET recovery = {spend}, failures = 0, lock_count = 0, locked_until = NULL, "
            "last_login_at = CASE WHEN :login THEN :now ELSE last_login_at END, rev = :rev "
            f"WHERE key = :key AND ({' OR '.join(found)}) RETURNING {_RECOVERY_LEFT}",
            params,
        ).fetchone()
        return None if row is None else row[0]

    def clear_failures(self, key: str, now: float, *, login: bool) -> None:
        self.execute(
            "UPDATE users SET failures = 0, lock_count = 0, locked_until = NULL, "
            "last_login_at = CASE WHEN :login THEN :now ELSE last_login_at END, rev = :rev WHERE key = :key",
            {"login": int(login), "now": now, "rev": self.rev, "key": key},
        )

    def count_failure(self, key: str, now: float, policy: Policy) -> tuple[bool, float | None]:
        """One more consecutive failure, unless the account is locked at `now`; the one reaching
        the policy's count locks it for the next lock's length (store.lockout).
        (counted, locked_until): the lock running after this call, if any."""
        row = self.execute(
            f"UPDATE users SET {_FAILURE_SETS}, rev = :rev WHERE key = :key "
            "AND (locked_until IS NULL OR locked_until <= :now) RETURNING locked_until",
            {**_failure_params(now, policy), "rev": self.rev, "key": key},
        ).fetchone()
        if row is not None:
            return True, _running(row[0], now)
        lock = self.execute("SELECT locked_until FROM users WHERE key = ?", (key,)).fetchone()
        return False, _running(lock[0], now) if lock else None

    def count_unknown_failure(self, tag: str, now: float, policy: Policy) -> tuple[bool, float | None]:
        """`count_failure` for a name that is no user's, kept under its tag (crypto.name_tag), so
        a series of attempts gets the answers a real account's would. Old tags are forgotten."""
        params = {**_failure_params(now, policy), "tag": tag}
        row = self.execute(
            "INSERT INTO unknown_names (tag, failures, lock_count, locked_until, seen_at) "
            "VALUES (:tag, 0, 0, NULL, :now) ON CONFLICT (tag) DO UPDATE SET seen_at = :now "
            "RETURNING failures, lock_count, locked_until",
            params,
        ).fetchone()
        counted = row[2] is None or row[2] <= now
        if counted:
            row = self.execute(
                f"UPDATE unknown_names SET {_FAILURE_SETS} WHERE tag = :tag RETURNING locked_until", params
            ).fetchone()
        # Tags whose last attempt is a day old (and any lock long over) go: the table stays small.
        self.execute("DELETE FROM unknown_names WHERE seen_at < ?", (now - 86400,))
        return counted, _running(row[-1], now)

    def unknown_lock(self, tag: str, now: float) -> float | None:
        row = self.execute("SELECT locked_until FROM unknown_names WHERE tag = ?", (tag,)).fetchone()
        return _running(row[0], now) if row else None

    # -- settings and the audit log ------------------------------------------------------------
    def update_settings(self, **changes) -> None:
        allowed = {"mode", "enabled", "issuer"}
        if not set(changes) <= allowed:
            raise ValueError(f"not settings: {sorted(set(changes) - allowed)}")
        values = {k: (v.value if hasattr(v, "value") else int(v) if isinstance(v, bool) else v) for k, v in changes.items()}
        self.execute(f"UPDATE settings SET {', '.join(f'{k} = :{k}' for k in values)} WHERE id = 1", values)

    def record(self, events: Iterable[AuditEvent]) -> None:
        self._conn.executemany(
            "INSERT INTO audit (at, actor, action, target, outcome, detail) VALUES (?, ?, ?, ?, ?, ?)",
            ((e.at.timestamp(), e.actor, e.action, e.target, e.outcome, e.detail) for e in events),
        )


def recovery_column(hashes: Iterable[str]) -> str:
    """Recovery-code hashes as the users.recovery column keeps them."""
    joined = " ".join(hashes)
    return f" {joined} " if joined else ""


def _failure_sets() -> str:
    """The SET clause counting one failure (see Writer.count_failure); right-hand sides all see
    the row as it was, so the statement is one atomic step."""
    reached = "failures + 1 >= :max_failures"
    return (
        f"failures = CASE WHEN {reached} THEN 0 ELSE failures + 1 END, "
        f"lock_count = CASE WHEN {reached} THEN lock_count + 1 ELSE lock_count END, "
        f"locked_until = CASE WHEN {reached} THEN :now + CASE "
        + " ".join(f"WHEN lock_count = {i} THEN :lock_{i}" for i in range(_SCHEDULE_CASES))
        + " ELSE :lock_cap END ELSE locked_until END"
    )


_SCHEDULE_CASES = 8  # locks told apart before the cap (5 min doubling reaches 60 in 4)
_FAILURE_SETS = _failure_sets()


def _failure_params(now: float, policy: Policy) -> dict:
    schedule = lock_schedule(policy)
    cap = schedule[-1]
    steps = {f"lock_{i}": schedule[i] if i < len(schedule) else cap for i in range(_SCHEDULE_CASES)}
    return {"now": now, "max_failures": policy.max_failures, "lock_cap": cap, **steps}


def _running(until: float | None, now: float) -> float | None:
    return until if until is not None and until > now else None


def _settings(path: Path, conn: sqlite3.Connection) -> Settings:
    row = conn.execute("SELECT mode, enabled, issuer, key_check, created_at FROM settings WHERE id = 1").fetchone()
    if row is None or row[0] not in MODES or row[1] not in (0, 1) or not isinstance(row[2], str) \
            or not isinstance(row[3], str) or not isinstance(row[4], float):  # fmt: skip
        raise StoreCorrupt(f"store {path} has damaged settings; {_HINT}")
    return Settings(MODES[row[0]], row[1] == 1, row[2], row[3], row[4])


def _user(path: Path, conn: sqlite3.Connection, key: str) -> UserRecord | None:
    row = conn.execute(f"{_SELECT_RECORD} WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    if not row[-1]:
        raise StoreCorrupt(f"store {path} has a damaged user row ({key!r}); {_HINT}")
    values = list(row[:-1])
    values[_ACTIVE] = values[_ACTIVE] == 1
    return UserRecord(*values)


def _link_into_place(built: Path, path: Path) -> None:
    """`built` appears at `path` whole, and only if nothing is there (FileExistsError)."""
    try:
        os.link(built, path)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: a rename, after a last look
        if os.path.lexists(path):
            raise FileExistsError(path) from None
        os.rename(built, path)


def read_header(path: Path) -> bytes:
    """The first 100 bytes of the store (SQLite's header), after checking its folder and files
    (store.fs): nothing is opened through a link or in a place another user controls."""
    try:
        folder = fs.check_folder(path.parent)
    except FileNotFoundError as exc:
        raise StoreMissing(_missing(path)) from exc
    for suffix in ("", "-wal", "-shm", "-journal"):
        if fs.check_file(Path(f"{path}{suffix}"), folder, secret=True) is None and not suffix:
            raise StoreMissing(_missing(path))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise StoreError(f"cannot open store {path}: {exc.strerror}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StoreCorrupt(f"{path} is not a file")
        return os.pread(fd, 100, 0)
    finally:
        os.close(fd)


def _check_size(path: Path, header: bytes) -> None:
    """A file shorter than its header says (cut by a copy, a full disk) is refused at once.
    The header's page count is current only when no WAL holds newer pages."""
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    size = os.stat(path).st_size
    wal = Path(f"{path}-wal")
    if size % page_size or (pages and size < pages * page_size and not (wal.exists() and wal.stat().st_size)):
        raise StoreCorrupt(f"store {path} is truncated ({size} bytes of {pages * page_size}); {_HINT}")


def _missing(path: Path) -> str:
    return f"no store at {path} (create one with `mfa-console init` or `mfa-console demo`)"


MIN_SQLITE = (3, 37)  # STRICT tables (3.37) and RETURNING (3.35)


def _connect(path: Path) -> sqlite3.Connection:
    """A connection that never creates the file (mode=rw) and waits at most BUSY_SECONDS."""
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise StoreError(f"this Python's SQLite is {sqlite3.sqlite_version}; mfa-console needs 3.37 or newer")
    uri = f"file:{urllib.parse.quote(str(path))}?mode=rw"
    conn = None
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_SECONDS, isolation_level=None, check_same_thread=False)
        # FULL: in WAL mode NORMAL may lose the last commits at a power cut; an accepted code must stay spent.
        # trusted_schema OFF: nothing in the file (a view, a trigger) may call functions with side effects.
        conn.executescript(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA trusted_schema = OFF; "
            "PRAGMA temp_store = MEMORY; PRAGMA cell_size_check = ON;"
        )
    except (sqlite3.Error, UnicodeDecodeError) as exc:
        if conn is not None:
            conn.close()
        raise _translate(exc, path) from exc
    return conn


# SQLite's primary result codes (sqlite3.h) that call for their own message.
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB, _PERM = 5, 6, 8, 10, 11, 13, 14, 26, 3


def _translate(exc: sqlite3.Error | UnicodeDecodeError, path: Path) -> StoreError:
    if isinstance(exc, UnicodeDecodeError) or "Could not decode to UTF-8" in str(exc):
        # SQLite quoting damaged text (a table's definition, a value) that is not UTF-8.
        return StoreCorrupt(f"store {path} is damaged (text in it is not UTF-8); {_HINT}")
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    said = " ".join(str(exc).split())[:200]  # SQLite may quote a damaged schema, line breaks and all
    if code in (_BUSY, _LOCKED):
        return StoreBusy(
            f"store {path} is busy: another process has held it for over {BUSY_SECONDS:g} s "
            "(a stopped `mfa-console`, or a long import); nothing was changed, try again"
        )
    if code in (_CORRUPT, _NOTADB):
        return StoreCorrupt(f"store {path} is damaged ({said}); {_HINT}")
    if _read_only(path) or code == _READONLY:
        return StoreError(f"store {path} cannot be written (read-only file system or file); nothing was changed")
    if code == _FULL or (code == _IOERR and _disk_full(path)):  # making the -shm file on a full disk is an IOERR
        return StoreError(f"no space left on the disk of store {path}; nothing was changed")
    if code == _IOERR:
        return StoreError(f"store {path}: the disk failed to read or write ({said}); nothing was changed")
    if code in (_CANTOPEN, _PERM):
        return StoreError(f"cannot open store {path} ({said}): check its folder's permissions")
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError | sqlite3.IntegrityError):
        return StoreCorrupt(f"store {path} is damaged ({said}); {_HINT}")
    return StoreError(f"store {path}: {said}")


def _disk_full(path: Path) -> bool:
    try:
        return os.statvfs(path.parent).f_bavail == 0
    except OSError:
        return False


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False
