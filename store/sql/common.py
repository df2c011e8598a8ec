"""The statements both engines run, and what the service sees of a store: `Database`, `Writer`.

Statements are written once, with `?` and `:name` parameters; an engine that takes another
style (PostgreSQL's `%s`) converts them. What differs between engines is a few class
attributes and methods of the engine's own subclasses (store/sql/sqlite.py, postgres.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import repeat
from operator import attrgetter
from typing import Any, NamedTuple

from ..errors import StoreCorrupt, StoreError
from ..lockout import lock_schedule
from ..models import MODES, AuditEvent, NewUser, Policy, Role
from ..records import USER_COLUMNS, USER_FIELDS, Settings, UserRecord
from ..validation import username_key

SCHEMA_VERSION = 4  # 1 and 2 were the JSON layouts (store/legacy.py moves them to SQLite); 4 adds clients
FIRST_VERSION = 3  # the first in SQL: every version since is brought up to date when opened
HINT = "it was left untouched; restore it from a backup"
TABLES = ("settings", "users", "unknown_names", "clients", "audit")  # in the order a copy writes them

# Recovery codes are kept as their hashes in one column, each between spaces (" h1 h2 "): one
# is spent by a single conditional replace, and they are counted by their spaces.
RECOVERY_LEFT = "CASE WHEN recovery = '' THEN 0 ELSE length(recovery) - length(replace(recovery, ' ', '')) - 1 END"
_RECORD_COLUMNS = ", ".join(USER_FIELDS[:-1])  # all but recovery_left, which is counted
SUMMARY_COLUMNS = (
    "key, username, name, role, email, team, active, created_at, activated_at, last_login_at, reset_at, "
    f"CASE WHEN secret IS NULL THEN 0 ELSE 1 END, failures, locked_until, {RECOVERY_LEFT}"
)
_ACTIVE = USER_FIELDS.index("active")
# Every column of each table, in the order a copy (store/migrate.py) reads and writes them.
COLUMNS = {
    "settings": ("id", "mode", "enabled", "issuer", "key_check", "created_at"),
    "users": (*USER_FIELDS[:-1], "rev"),
    "unknown_names": ("tag", "failures", "lock_count", "locked_until", "seen_at"),
    "clients": ("name", "key_hash", "sources", "created_at", "revoked_at", "radius_secret", "radius_options"),
    "audit": ("id", "at", "actor", "action", "target", "outcome", "detail"),
}
_ORDER = {"settings": "id", "users": "key", "unknown_names": "tag", "clients": "name", "audit": "id"}



def check_version(name: str, version: int, *, newer_up_to: float = float("inf")) -> None:
    """Refuses a schema version this mfa-console cannot open: a later release's (up to
    `newer_up_to`; beyond it, a number that large is damage) or one never made."""
    if SCHEMA_VERSION < version <= newer_up_to:
        raise StoreError(f"store {name} has schema version {version}; this mfa-console reads version "
                         f"{SCHEMA_VERSION} (upgrade mfa-console to open it)")  # fmt: skip
    if not FIRST_VERSION <= version <= SCHEMA_VERSION:
        raise StoreCorrupt(f"store {name} has no known schema version ({version}); {HINT}")

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
    """One store, as the service sees it, whatever the engine. One connection, shared by a
    process's threads one at a time (the dashboard's listener is the only other)."""

    # What each engine sets.
    ROW_OK = "1"  # an SQL condition a user row must meet to be used (SQLite checks types here)
    FIND = "instr"  # the SQL function giving the position of a text in another (0: absent)

    def __init__(self, name: str):
        self.name = name  # the store as messages name it: a path, or a URL without its password
        self._mutex = threading.RLock()
        self._batch: _Batch | None = None  # the write transaction open between writes, if any
        self._queued = 0  # threads waiting for the mutex to write
        self._queue_lock = threading.Lock()
        self._writing: int | None = None  # the thread running a write's block

    # -- what each engine provides -------------------------------------------------------------
    def _execute(self, sql: str, params: tuple | dict = ()) -> Any:
        """A DB-API cursor over `sql` run with `params` (`?` and `:name` style)."""
        raise NotImplementedError

    def _executemany(self, sql: str, rows: Iterable[tuple], *, validated: bool = False) -> None:
        """`validated`: rows the service built from checked records, which the table's CHECK
        constraints need not check again (an engine may skip them where they are costly)."""
        raise NotImplementedError

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """The engine's errors, as StoreError with a message for people."""
        raise NotImplementedError
        yield

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Reads in the block see one state of the store."""
        raise NotImplementedError
        yield

    def _begin(self) -> Writer:
        """Opens a write transaction."""
        raise NotImplementedError

    def _commit(self, writer: Writer) -> None:
        """Commits the open transaction, durably, and tells who listens what it changed."""
        raise NotImplementedError

    def _rollback(self) -> None:
        """Ends the open transaction, if the connection still has one, keeping nothing of it."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def wait_at_most(self, seconds: float) -> None:
        """Waits for another's hold on the store end within `seconds` (if under the engine's
        bound): a caller with a deadline (`verify`) gets StoreBusy by then. PostgreSQL's waits
        end at a signal (the caller's timer) already; SQLite's sleep in C, deaf to one."""

    @property
    def generation(self) -> Any:
        """Changes whenever the data changed, in this process or another, since the last call."""
        raise NotImplementedError

    def changes(self, cursor: Any) -> tuple[list[UserSummary], Any]:
        """Users changed since `cursor` (every user for None), and the cursor they bring us to.
        Rows are not checked here (100k a second): a damaged one shows when its values are used."""
        raise NotImplementedError

    def integrity_problem(self) -> str | None:
        """The engine's own check of the store's pages, where it has one, or None."""
        return None

    # -- reading -------------------------------------------------------------------------------
    def settings(self) -> Settings:
        with self._mutex, self._guard():
            return read_settings(self, self._execute)

    def user(self, key: str) -> UserRecord | None:
        with self._mutex, self._guard():
            return read_user(self, self._execute, key)

    def user_keys(self) -> set[str]:
        with self._mutex, self._guard():
            return {key for (key,) in self._execute("SELECT key FROM users")}

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
        where, params = ["1 = 1"], []
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
            rows = self._execute(sql, tuple(params)).fetchall()
        try:
            return [AuditEvent(datetime.fromtimestamp(at, UTC), actor, action_, target, outcome, detail, id_)
                    for id_, at, actor, action_, target, outcome, detail in rows]  # fmt: skip
        except (TypeError, ValueError, OverflowError, OSError) as exc:
            raise StoreCorrupt(f"store {self.name} has a damaged audit event; {HINT}") from exc

    def clients(self) -> list[tuple]:
        """Every client's row (name, key_hash, sources, created_at, revoked_at), by name."""
        with self._mutex, self._guard():
            return self._execute(f"SELECT {', '.join(COLUMNS['clients'])} FROM clients ORDER BY name").fetchall()

    def client_by_key_hash(self, key_hash: str) -> tuple | None:
        with self._mutex, self._guard():
            return self._execute(
                f"SELECT {', '.join(COLUMNS['clients'])} FROM clients WHERE key_hash = ?", (key_hash,)
            ).fetchone()

    def audit_head(self) -> int:
        """The newest event's id: it changes whenever an event is recorded."""
        with self._mutex, self._guard():
            return self._execute("SELECT coalesce(max(id), 0) FROM audit").fetchone()[0]

    def tables(self, *tables: str) -> dict[str, list[tuple]]:
        """Every row of each table named (all of TABLES if none), every column (COLUMNS), as of
        one moment: what a copy moves."""
        with self._mutex, self._guard(), self._snapshot():
            return {
                table: self._execute(f"SELECT {', '.join(COLUMNS[table])} FROM {table} ORDER BY {_ORDER[table]}").fetchall()
                for table in tables or TABLES
            }  # fmt: skip

    # -- writing -------------------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[Writer]:
        """Changes made together: durable when the block ends, nothing of them kept if it raises.

        Group commit: writes that queue up behind one another (the service's threads, checks
        arriving at once) run their blocks in turn in one transaction, each in a savepoint of
        its own, and the last of them commits it for all: one commit (one fsync, one round trip)
        instead of one each. No block returns before that commit; if it fails, every block of
        the batch raises its error. A write with none queued behind it commits at once. Every
        rule is a conditional statement decided inside the transaction that commits it; reads
        of this process between two writes of a batch see the batch's changes."""
        if self._writing == threading.get_ident():
            raise RuntimeError("a write inside a write")  # it would commit the outer one half done
        with self._queue_lock:
            self._queued += 1
        with self._mutex:
            with self._queue_lock:
                self._queued -= 1
            batch, joined = self._batch, self._batch is not None
            if batch is None:
                with self._guard():
                    batch = self._batch = _Batch(self._begin())
            try:
                if joined:
                    self._in_batch(batch, "SAVEPOINT batch_member")
                self._writing = threading.get_ident()
                try:
                    with self._guard():  # the engine's errors in the block, as StoreError too
                        yield batch.writer
                except BaseException:
                    if joined:  # undone alone; a first block's error ends the batch, below
                        self._in_batch(batch, "ROLLBACK TO SAVEPOINT batch_member", "RELEASE SAVEPOINT batch_member")
                    raise
                finally:
                    self._writing = None
                if joined:
                    self._in_batch(batch, "RELEASE SAVEPOINT batch_member")
                batch.members += 1
            except BaseException as exc:
                if self._batch is batch and not batch.members:
                    self._end(batch, exc)  # nothing of anyone's in it: rolled back
                raise
            finally:
                if self._batch is batch and (batch.members >= MAX_BATCH or not self._queued):
                    self._end(batch)
        batch.done.wait()
        if batch.error is not None:
            raise batch.error

    def _in_batch(self, batch: _Batch, *statements: str) -> None:
        """Savepoint statements; if one fails, the connection or its transaction is gone, and
        with it the whole batch: ended, its blocks told."""
        try:
            with self._guard():
                for statement in statements:
                    self._execute(statement)
        except BaseException as exc:
            self._end(batch, exc)
            raise

    def _end(self, batch: _Batch, failed: BaseException | None = None) -> None:
        """Commits `batch` (or rolls it back, if `failed`), then wakes every block waiting for it."""
        self._batch = None
        try:
            if failed is None:
                with self._guard():
                    self._commit(batch.writer)
        except BaseException as exc:
            failed = exc
        if failed is not None:
            batch.error = failed if isinstance(failed, StoreError) else StoreError(f"store {self.name}: {failed}")
            try:
                with self._guard():
                    self._rollback()
            except StoreError:
                pass  # the connection is gone, and with it the transaction
        batch.done.set()

    def _select_record(self) -> str:
        return f"SELECT {_RECORD_COLUMNS}, {RECOVERY_LEFT}, coalesce(({self.ROW_OK}), 0) FROM users WHERE key = ?"


MAX_BATCH = 32  # writes in one transaction at most: a batch is committed once it has this many


class _Batch:
    """A write transaction several writes share, and whether its commit is done (and how)."""

    def __init__(self, writer: Writer):
        self.writer = writer
        self.members = 0  # the writes that completed their block in it
        self.done = threading.Event()
        self.error: StoreError | None = None


class Writer:
    """The statements of one write transaction (see `Database.write`)."""

    LOCK_ROW = ""  # what a read of a user's row in a transaction adds, to hold the row until the end

    def __init__(self, db: Database):
        self._db = db
        self.execute = db._execute
        self._rev: int | None = None

    @property
    def rev(self) -> int:
        """This transaction's revision: the users it changes carry it."""
        raise NotImplementedError

    def changed(self, key: str | None) -> None:
        """Notes that the user `key` (None: any number of users) changed, for other processes."""

    # -- reads within the transaction ----------------------------------------------------------
    def settings(self) -> Settings:
        return read_settings(self._db, self.execute)

    def user(self, key: str) -> UserRecord | None:
        """The user's row, held (on engines with row locks) until the transaction ends."""
        return read_user(self._db, self.execute, key, self.LOCK_ROW)

    def user_count(self) -> int:
        return self.execute("SELECT count(*) FROM users").fetchone()[0]

    def user_keys(self) -> set[str]:
        return {key for (key,) in self.execute("SELECT key FROM users")}

    def active_admins(self) -> set[str]:
        """Read by a change that must leave an active administrator."""
        return {key for (key,) in self.execute("SELECT key FROM users WHERE role = 'admin' AND active = 1")}

    # -- users ---------------------------------------------------------------------------------
    def add_users(self, records: Iterable[UserRecord]) -> None:
        """New users; their keys must be new (the caller checked, inside this transaction)."""
        columns = USER_FIELDS[:-1]
        rev, records = self.rev, list(records)
        self._db._executemany(
            f"INSERT INTO users ({', '.join(columns)}, rev) VALUES ({', '.join('?' * len(columns))}, ?)",
            ((*(int(r.active) if c == "active" else getattr(r, c) for c in columns), rev) for r in records),
            validated=True,
        )
        self.changed(records[0].key if len(records) == 1 else None)

    def add_new_users(self, users: list[NewUser], now: float) -> None:
        """New accounts from their given fields alone (an import: 100k rows, no record each)."""
        self._db._executemany(
            "INSERT INTO users (key, username, name, role, created_at, email, team, rev) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            new_user_rows(users, now, self.rev),
            validated=True,
        )
        self.changed(None)

    def copy_rows(self, table: str, rows: Iterable[tuple]) -> None:
        """Rows of `table` as `Database.tables` reads them, written as they are (a copy)."""
        columns = COLUMNS[table]
        self._db._executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows
        )
        self.changed(None)

    def touch_user(self, key: str) -> None:
        """Marks the user's row changed, and nothing else."""
        self.execute("UPDATE users SET rev = :rev WHERE key = :key", {"rev": self.rev, "key": key})
        self.changed(key)

    def update_user(self, key: str, **changes) -> None:
        unknown = set(changes) - USER_COLUMNS
        if unknown:
            raise ValueError(f"not user columns: {sorted(unknown)}")
        if "active" in changes:
            changes["active"] = int(changes["active"])
        sets = ", ".join(f"{column} = :{column}" for column in changes)
        self.execute(f"UPDATE users SET {sets}, rev = :rev WHERE key = :key", {**changes, "rev": self.rev, "key": key})
        self.changed(key)

    # -- the conditional statements of authentication -----------------------------------------
    def accept_step(self, key: str, step: int, now: float, *, sealed_secret: str, login: bool) -> bool:
        """Records `step` as the newest accepted for the user, and clears their failures: only if
        it is newer than every step accepted before, the secret is still the one checked, and the
        account is active and not locked. True: this caller's code is the one accepted."""
        changed = self.execute(
            f"UPDATE users SET last_step = :step, {_SUCCESS_SETS}, rev = :rev "
            "WHERE key = :key AND secret = :secret AND active = 1 AND (last_step IS NULL OR last_step < :step) "
            "AND (locked_until IS NULL OR locked_until <= :now)",
            {"step": step, "login": int(login), "now": now, "rev": self.rev, "key": key, "secret": sealed_secret},
        ).rowcount
        self.changed(key)
        return changed == 1

    def use_recovery_code(self, key: str, hashes: tuple[str, ...], now: float, *, login: bool) -> int | None:
        """Spends the user's recovery code whose hash is one of `hashes`, and clears failures;
        None if there is none (or another caller spent it first), else how many are left."""
        spend, found = "recovery", []
        params = {"login": int(login), "now": now, "rev": self.rev, "key": key}
        for i, hash_ in enumerate(hashes):
            params[f"h{i}"] = f" {hash_} "
            spend = f"replace({spend}, :h{i}, ' ')"
            found.append(f"{self._db.FIND}(recovery, :h{i}) > 0")
        row = self.execute(
            f"UPDATE users SET recovery = {spend}, {_SUCCESS_SETS}, rev = :rev "
            f"WHERE key = :key AND ({' OR '.join(found)}) RETURNING {RECOVERY_LEFT}",
            params,
        ).fetchone()
        self.changed(key)
        return None if row is None else row[0]

    def clear_failures(self, key: str, now: float, *, login: bool) -> None:
        self.execute(
            f"UPDATE users SET {_SUCCESS_SETS}, rev = :rev WHERE key = :key",
            {"login": int(login), "now": now, "rev": self.rev, "key": key},
        )
        self.changed(key)

    def count_failure(self, key: str, now: float, policy: Policy) -> tuple[bool, float | None]:
        """One more consecutive failure, unless the account is locked at `now`; the one reaching
        the policy's count locks it for the next lock's length (store.lockout).
        (counted, locked_until): the lock running after this call, if any."""
        row = self.execute(
            f"UPDATE users SET {_FAILURE_SETS}, rev = :rev WHERE key = :key "
            "AND (locked_until IS NULL OR locked_until <= :now) RETURNING locked_until",
            {**_failure_params(now, policy), "rev": self.rev, "key": key},
        ).fetchone()
        self.changed(key)
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
    def add_settings(self, settings: Settings) -> None:
        """The settings row of a new store."""
        self.execute(
            "INSERT INTO settings (id, mode, enabled, issuer, key_check, created_at) VALUES (1, ?, ?, ?, ?, ?)",
            (settings.mode.value, int(settings.enabled), settings.issuer, settings.key_check, settings.created_at),
        )

    def update_settings(self, **changes) -> None:
        allowed = {"mode", "enabled", "issuer"}
        if not set(changes) <= allowed:
            raise ValueError(f"not settings: {sorted(set(changes) - allowed)}")
        values = {k: (v.value if hasattr(v, "value") else int(v) if isinstance(v, bool) else v) for k, v in changes.items()}
        self.execute(f"UPDATE settings SET {', '.join(f'{k} = :{k}' for k in values)} WHERE id = 1", values)
        self.changed(None)  # every user's status depends on the policy

    def add_client(self, name: str, key_hash: str, sources: str, now: float, radius_secret: str | None,
                   radius_options: str) -> bool:  # fmt: skip
        """A new client; False if one of that name exists (revoked ones too: names are never reused)."""
        return self.execute(
            "INSERT INTO clients (name, key_hash, sources, created_at, radius_secret, radius_options) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
            (name, key_hash, sources, now, radius_secret, radius_options),
        ).rowcount == 1

    def revoke_client(self, name: str, now: float) -> bool:
        """False if there is no such client, or it was revoked already."""
        return self.execute(
            "UPDATE clients SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (now, name)
        ).rowcount == 1

    def record(self, events: Iterable[AuditEvent]) -> None:
        self._db._executemany(
            "INSERT INTO audit (at, actor, action, target, outcome, detail) VALUES (?, ?, ?, ?, ?, ?)",
            ((e.at.timestamp(), e.actor, e.action, e.target, e.outcome, e.detail) for e in events),
        )


_ROLE_VALUES = {role: role.value for role in Role}


def new_user_rows(users: list[NewUser], now: float, rev: int) -> Iterator[tuple]:
    """The users table's (key, username, name, role, created_at, email, team, rev) of new users."""
    names = list(map(attrgetter("username"), users))
    roles = map(_ROLE_VALUES.__getitem__, map(attrgetter("role"), users))  # Enum's .value is slow at 100k
    return zip(map(username_key, names), names, map(attrgetter("name"), users), roles,
               repeat(now), map(attrgetter("email"), users), map(attrgetter("team"), users), repeat(rev))  # fmt: skip


def recovery_column(hashes: Iterable[str]) -> str:
    """Recovery-code hashes as the users.recovery column keeps them."""
    joined = " ".join(hashes)
    return f" {joined} " if joined else ""


def read_settings(db: Database, execute) -> Settings:
    row = execute("SELECT mode, enabled, issuer, key_check, created_at FROM settings WHERE id = 1").fetchone()
    if row is None or row[0] not in MODES or row[1] not in (0, 1) or not isinstance(row[2], str) \
            or not isinstance(row[3], str) or not isinstance(row[4], float):  # fmt: skip
        raise StoreCorrupt(f"store {db.name} has damaged settings; {HINT}")
    return Settings(MODES[row[0]], row[1] == 1, row[2], row[3], row[4])


def read_user(db: Database, execute, key: str, lock: str = "") -> UserRecord | None:
    row = execute(f"{db._select_record()}{lock}", (key,)).fetchone()
    if row is None:
        return None
    if not row[-1]:
        raise StoreCorrupt(f"store {db.name} has a damaged user row ({key!r}); {HINT}")
    values = list(row[:-1])
    values[_ACTIVE] = values[_ACTIVE] == 1
    return UserRecord(*values)


# A success (a code, a recovery code, a password with 2FA off) ends the run of failures.
_SUCCESS_SETS = (
    "failures = 0, lock_count = 0, locked_until = NULL, "
    "last_login_at = CASE WHEN :login = 1 THEN :now ELSE last_login_at END"
)


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
    cap = float(schedule[-1])
    steps = {f"lock_{i}": float(schedule[i]) if i < len(schedule) else cap for i in range(_SCHEDULE_CASES)}
    return {"now": now, "max_failures": policy.max_failures, "lock_cap": cap, **steps}


def _running(until: float | None, now: float) -> float | None:
    return until if until is not None and until > now else None
