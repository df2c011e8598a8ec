"""The SQLite engine: the embedded default, one file on one host.

- WAL with synchronous=FULL: a commit is on disk when it returns, and readers never wait for
  a writer. Changes are made in place: the file is never replaced, so its owner and mode stay.
- A write takes the write lock at BEGIN IMMEDIATE and keeps it for one short transaction. Every
  wait for it is bounded (BUSY_SECONDS); then `StoreBusy` says so. Writers are serialized, so
  each transaction sees the store as the last one left it.
- A store is checked before any write: its folder and files (store.fs), its header, schema
  version and tables; rows are checked as they are read. A damaged store is refused, untouched.
"""

from __future__ import annotations

import functools
import math
import os
import sqlite3
import stat
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .. import fs
from ..errors import JsonLayout, StoreBusy, StoreCorrupt, StoreError, StoreMissing
from ..fs import UnsafePath
from ..records import Settings
from .common import HINT as _HINT
from .common import SCHEMA_VERSION, SUMMARY_COLUMNS, Database, UserSummary, Writer, check_version

APPLICATION_ID = 0x6D666163  # "mfac" in the file's header: an SQLite file that is a store of ours
BUSY_SECONDS = 5.0  # the longest any call waits for another process's write
_NEWER_VERSIONS = 1000  # a version this far beyond ours is taken for a newer release, not damage
_MAX_TIME = 2.5e11  # seconds: timestamps beyond year 9999 are damage, not dates

SCHEMA_V3 = """
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
# Each version's statements after the one before: a store of an older version is brought up to
# date when opened (one transaction), and SCHEMA is all of them.
UPGRADES = {
    4: """
CREATE TABLE clients (
    name TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    sources TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    revoked_at REAL,
    radius_secret TEXT,
    radius_options TEXT NOT NULL DEFAULT ''
) STRICT;
""",
}
SCHEMA = SCHEMA_V3 + "".join(UPGRADES.values())


@functools.cache
def expected_schema(version: int = SCHEMA_VERSION) -> frozenset[tuple]:
    """What sqlite_master lists for the schema of `version`, definitions included (made once, in
    memory). A file listing anything else — a trigger or view planted, a table gone, a
    definition changed by a flipped bit — is not a store of ours."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(SCHEMA_V3 + "".join(s for v, s in UPGRADES.items() if v <= version))
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


class SQLiteDatabase(Database):
    """A store in one SQLite file."""

    ROW_OK = _USER_OK
    FIND = "instr"

    def __init__(self, path: Path, conn: sqlite3.Connection, *, name: Path | None = None):
        super().__init__(str(name or path))  # a store being built is named as the one it becomes
        self.path = path
        self._conn = conn
        self._own_writes = 0  # PRAGMA data_version does not move for this connection's commits
        self._busy_seconds = BUSY_SECONDS

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, settings: Settings, populate: Callable[[Writer], None]) -> SQLiteDatabase:
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
            conn = _connect(building, path)
            try:
                db = cls(building, conn, name=path)
                with db._guard():
                    conn.execute("PRAGMA journal_mode = WAL")
                with db.write() as w:
                    w.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    for statement in filter(str.strip, SCHEMA.split(";")):
                        w.execute(statement)
                    w.add_settings(settings)
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
    def open(cls, path: Path) -> SQLiteDatabase:
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
            # 0, or far beyond any release: a damaged header, not a newer store
            check_version(str(self.path), version, newer_up_to=SCHEMA_VERSION + _NEWER_VERSIONS)
            if frozenset(self._conn.execute(_SCHEMA_QUERY)) != expected_schema(version):
                raise StoreCorrupt(f"store {self.path} does not have mfa-console's tables; {_HINT}")
            if self._conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self._conn.execute("PRAGMA journal_mode = WAL")
        if version < SCHEMA_VERSION:
            self._upgrade()

    def _upgrade(self) -> None:
        """The statements of each newer version, and the version, in one transaction: a store is
        of one version or the next, never between (another process may have done it meanwhile)."""
        with self.write() as w:
            version = w.execute("PRAGMA user_version").fetchone()[0]
            for statement in (s for v, text in UPGRADES.items() if v > version for s in text.split(";")):
                if statement.strip():
                    w.execute(statement)
            w.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._mutex:
            self._conn.close()

    # -- reading -------------------------------------------------------------------------------
    @property
    def generation(self) -> tuple[int, int]:
        with self._mutex, self._guard():
            return self._conn.execute("PRAGMA data_version").fetchone()[0], self._own_writes

    def changes(self, cursor: int | None) -> tuple[list[UserSummary], int]:
        """The cursor is a revision: each write transaction gives the users it changes the next
        one (writers are serialized, so revisions only grow, in commit order)."""
        where = "WHERE rev > ?" if cursor is not None else "WHERE ? IS NULL"  # the index, or a scan
        with self._mutex, self._guard(), self._snapshot():
            top = self._conn.execute("SELECT coalesce(max(rev), 0) FROM users").fetchone()[0]
            rows = self._conn.execute(f"SELECT {SUMMARY_COLUMNS} FROM users {where}", (cursor,)).fetchall()
        return list(map(UserSummary._make, rows)), top

    def integrity_problem(self) -> str | None:
        """SQLite's own check of every page and index (seconds on a large store), or None."""
        with self._mutex, self._guard():
            rows = self._conn.execute("PRAGMA quick_check(1)").fetchall()
        return None if rows == [("ok",)] else str(rows[0][0])

    # -- the engine ----------------------------------------------------------------------------
    def _execute(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, params)

    def _executemany(self, sql: str, rows: Iterable[tuple], *, validated: bool = False) -> None:
        if not validated:
            self._conn.executemany(sql, rows)
            return
        # SQLite evaluates `role IN (...)` by building a table of the list for every row: 40% of
        # a 100k-user import. The pragma expires prepared statements, so none outlives it.
        self._conn.execute("PRAGMA ignore_check_constraints = ON")
        try:
            self._conn.executemany(sql, rows)
        finally:
            self._conn.execute("PRAGMA ignore_check_constraints = OFF")

    def _begin(self) -> Writer:
        self._conn.execute("BEGIN IMMEDIATE")
        return SQLiteWriter(self)

    def _commit(self, writer: Writer) -> None:
        self._conn.execute("COMMIT")
        self._own_writes += 1

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

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
            raise _translate(exc, Path(self.name), self._busy_seconds) from exc

    def wait_at_most(self, seconds: float) -> None:
        if seconds < self._busy_seconds:
            self._busy_seconds = max(seconds, 0.001)
            with self._mutex:
                self._conn.execute(f"PRAGMA busy_timeout = {math.ceil(self._busy_seconds * 1000)}")


class SQLiteWriter(Writer):
    @property
    def rev(self) -> int:
        if self._rev is None:
            self._rev = self.execute("SELECT coalesce(max(rev), 0) + 1 FROM users").fetchone()[0]
        return self._rev


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


def _connect(path: Path, name: Path | None = None) -> sqlite3.Connection:
    """A connection that never creates the file (mode=rw) and waits at most BUSY_SECONDS; its
    failures name the store `name` (a store being built: the one it becomes)."""
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
        raise _translate(exc, name or path) from exc
    return conn


# SQLite's primary result codes (sqlite3.h) that call for their own message.
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB, _PERM = 5, 6, 8, 10, 11, 13, 14, 26, 3


def _translate(exc: sqlite3.Error | UnicodeDecodeError, path: Path, busy_seconds: float = BUSY_SECONDS) -> StoreError:
    if isinstance(exc, UnicodeDecodeError) or "Could not decode to UTF-8" in str(exc):
        # SQLite quoting damaged text (a table's definition, a value) that is not UTF-8.
        return StoreCorrupt(f"store {path} is damaged (text in it is not UTF-8); {_HINT}")
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    said = " ".join(str(exc).split())[:200]  # SQLite may quote a damaged schema, line breaks and all
    if code in (_BUSY, _LOCKED):
        return StoreBusy(
            f"store {path} is busy: another process has held it for over {busy_seconds:.2g} s "
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
