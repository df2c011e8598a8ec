"""A TinyDB Storage that is safe to share between processes and stays fast at 100k users.

- Every read-modify-write runs in `transaction()`, holding an exclusive `flock` on a separate
  lock file that is never replaced (a lock on the data file itself would lock an old inode once
  the file is swapped by rename).
- Writes go to a temp file in the same folder, are fsynced and renamed over the store, so a crash
  leaves the old file or the new one, never a torn one.
- The file is JSON Lines: the small tables on the first line, then one `[key, document]` line
  per user, then `{"end": <number of users>}`, so a file cut short at a line break is refused too.
  Users are kept in memory as their lines and parsed when read: a change re-serializes only the
  documents the transaction read, and the rest of the file is written back as it was.
- The file is re-read only when its identity changed. The fd of the version read stays open: its
  inode cannot be freed and handed to a newer file, so (device, inode, size, mtime) never
  matches a file we have not read. Lines equal to the ones already held are not parsed again.
- Every line is parsed when first read: a file with a damaged line, or with an unknown schema,
  is refused and never rewritten.
"""

from __future__ import annotations

import fcntl
import gc
import io
import os
import tempfile
import threading
from collections.abc import Iterator, MutableMapping
from typing import BinaryIO
from contextlib import contextmanager
from pathlib import Path

import orjson
from tinydb.storages import Storage

from .errors import StoreCorrupt, StoreError, StoreMissing

SCHEMA_VERSION = 2
META_TABLE = "meta"
META_ID = "1"
USERS_TABLE = "users"
_HINT = "it was left untouched; restore it from a backup"
_IOV_MAX = 1024  # buffers per writev call (Linux's limit)
_CHUNK = 1 << 22  # bytes read at a time


class _GcPause:
    """For building 100k objects at once, which the cyclic collector would otherwise scan
    again and again (it doubles the time); they hold no cycles. Threads may overlap it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pauses = 0
        self._enable_after = False

    def __enter__(self) -> None:
        with self._lock:
            if self._pauses == 0:
                self._enable_after = gc.isenabled()
                gc.disable()
            self._pauses += 1

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._pauses -= 1
            if self._pauses == 0 and self._enable_after:
                gc.enable()


gc_paused = _GcPause()


class LineTable(MutableMapping):
    """The users table as serialized lines; a document is parsed when it is read.

    TinyDB changes documents in place, so inside a transaction every document handed out is
    remembered and serialized again at commit; outside one, each read is a fresh copy.
    """

    def __init__(self, lines: dict[str, bytes], since: tuple[dict[str, bytes], set[str]] | None = None):
        self._lines = lines  # key -> its line, newline included
        # (the lines these came from, the keys added, changed or removed since): a caller that
        # derived something from those lines remakes only what these keys touch.
        self.since = since
        self._open: dict[str, dict | None] | None = None  # the transaction's documents; None: removed

    @staticmethod
    def parse(line: bytes) -> dict:
        return orjson.loads(line)[1]

    def lines(self) -> Iterator[tuple[str, bytes]]:
        """(key, line) as last committed. A line's bytes object stays the same while it is
        unchanged, here and across re-reads, so `is` tells a caller what it has seen before."""
        return iter(self._lines.items())

    # -- the Mapping TinyDB and the service use ------------------------------------------------
    def __getitem__(self, key: str) -> dict:
        opened = self._open
        if opened is not None and key in opened:
            doc = opened[key]
            if doc is None:
                raise KeyError(key)
            return doc
        doc = self.parse(self._lines[key])
        if opened is not None:
            opened[key] = doc
        return doc

    def __setitem__(self, key: str, doc: dict) -> None:
        if self._open is None:
            raise RuntimeError("store writes must run inside a transaction")
        self._open[key] = doc

    def add(self, docs: dict[str, dict]) -> None:
        """New documents in bulk (an import): TinyDB's insert_multiple copies each one twice."""
        if self._open is None:
            raise RuntimeError("store writes must run inside a transaction")
        taken = [key for key in docs if key in self]
        if taken:
            raise ValueError(f"documents {taken[:3]} already exist")
        self._open.update(docs)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self[key] = None

    def __contains__(self, key: object) -> bool:
        opened = self._open
        if opened is not None and key in opened:
            return opened[key] is not None
        return key in self._lines

    def __iter__(self) -> Iterator[str]:
        opened = self._open or {}
        yield from (k for k in self._lines if opened.get(k, True) is not None)
        yield from (k for k, doc in opened.items() if doc is not None and k not in self._lines)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    # -- transactions --------------------------------------------------------------------------
    def begin(self) -> None:
        self._open = {}

    def end(self) -> None:
        """The transaction is over (committed or not): its documents are forgotten."""
        self._open = None

    @property
    def version(self) -> object:
        """The same object as long as the lines are: what `since` names as their origin."""
        return self._lines

    def line(self, key: str) -> bytes | None:
        return self._lines.get(key)

    def commit(self) -> dict[str, bytes]:
        """The lines with the transaction's documents serialized (unchanged lines stay the same
        objects); `adopt` them once they are on disk."""
        if not self._open:
            return self._lines
        lines = dict(self._lines)
        for key, doc in self._open.items():
            if doc is None:
                lines.pop(key, None)
                continue
            line = _line(key, doc)
            if lines.get(key) != line:
                lines[key] = line
        return lines

    def adopt(self, lines: dict[str, bytes]) -> None:
        if lines is not self._lines:
            changed = {key for key in self._open if lines.get(key) is not self._lines.get(key)}
            self._lines, self.since = lines, (self._lines, changed)
        self.begin()  # what was read so far is written: later changes start afresh


class LockedAtomicStorage(Storage):
    def __init__(self, path: Path):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._data: dict | None = None
        self._head: bytes = b""  # the first line of the file in memory: the small tables
        self._parsed_fd: int | None = None
        self._identity: tuple[int, int, int, int] | None = None
        self._dirty = False
        self._depth = 0
        self._lock_fd: int | None = None
        # flock belongs to an open file, so threads of one process also need a lock of their own.
        self._mutex = threading.RLock()
        self.generation = 0  # bumped whenever the data changes, so callers can cache derived views

    # -- TinyDB's Storage interface ------------------------------------------------------------
    def read(self) -> dict:
        if self._depth == 0:
            self._refresh()
        return self._data

    def write(self, data: dict) -> None:
        if self._depth == 0:
            raise RuntimeError("store writes must run inside a transaction")
        self._data = data
        self._dirty = True
        self.generation += 1

    def head(self) -> dict:
        """The small tables from the file's first line, without reading the users."""
        raw = b""
        try:
            with open(self.path, "rb") as f:
                while b"\n" not in raw and (chunk := f.read(1 << 16)):
                    raw += chunk
        except FileNotFoundError as exc:
            raise StoreMissing(_missing(self.path)) from exc
        except OSError as exc:
            raise StoreError(f"cannot open store {self.path}: {exc.strerror}") from exc
        if not raw.strip():
            raise StoreCorrupt(f"store {self.path} is empty or truncated; {_HINT}")
        tables = _parse_head(raw[: raw.find(b"\n") + 1 or len(raw)], self.path)
        tables.pop(USERS_TABLE, None)  # a store of the first layout has them on that line
        return tables

    def close(self) -> None:
        with self._mutex:
            self._forget()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    # -- transactions --------------------------------------------------------------------------
    @contextmanager
    def reading(self) -> Iterator[dict]:
        """A consistent view without the file lock: renames make every file we open complete."""
        with self._mutex:
            if self._depth == 0:
                self._refresh()
            yield self._data

    @contextmanager
    def transaction(self) -> Iterator[dict]:
        with self._mutex:
            outermost = self._depth == 0
            if outermost:
                self._lock()
            self._depth += 1
            try:
                if outermost:
                    self._remove_stale_temps()
                    self._refresh()
                    self._data[USERS_TABLE].begin()
                yield self._data
                if outermost:
                    self.commit()
            except BaseException:
                if outermost and self._data is not None:
                    # Nothing reached the disk: back to the file as it is (TinyDB changed the
                    # small tables in place; the users' changes are only in the transaction).
                    if self._dirty:
                        self._data = {**orjson.loads(self._head), USERS_TABLE: self._data[USERS_TABLE]}
                        self.generation += 1
                    self._dirty = False
                raise
            finally:
                if outermost and self._data is not None:
                    self._data[USERS_TABLE].end()
                self._depth -= 1
                if outermost:
                    self._unlock()

    def commit(self) -> None:
        """Make the transaction's writes durable now (they also are at its end)."""
        if self._dirty:
            users: LineTable = self._data[USERS_TABLE]
            lines = users.commit()
            head = _head(self._data)
            self._replace_file(head, lines)
            users.adopt(lines)
            self._head = head
            self._dirty = False

    @classmethod
    def create(cls, path: Path, data: dict) -> LockedAtomicStorage:
        """A new store file; refuses to touch one that exists. `data` holds plain dict tables."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        storage = cls(path)
        with storage._mutex:
            storage._lock(creating=True)
            try:
                if path.exists():
                    raise StoreError(f"a store already exists at {path}; refusing to overwrite it")
                users = LineTable({key: _line(key, doc) for key, doc in data.get(USERS_TABLE, {}).items()})
                storage._data = {**data, USERS_TABLE: users}
                storage._head = _head(storage._data)
                storage._replace_file(storage._head, users._lines)
                storage.generation += 1
            finally:
                storage._unlock()
        return storage

    # -- internals -----------------------------------------------------------------------------
    def _lock(self, creating: bool = False) -> None:
        if self._lock_fd is None:
            if not creating and not self.path.exists():
                raise StoreMissing(_missing(self.path))
            try:
                self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            except FileNotFoundError as exc:
                raise StoreMissing(_missing(self.path)) from exc
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)

    def _unlock(self) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _refresh(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError as exc:
            raise StoreMissing(_missing(self.path)) from exc
        except OSError as exc:
            raise StoreError(f"cannot open store {self.path}: {exc.strerror}") from exc
        try:
            st = os.fstat(fd)
            identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if identity == self._identity:
                os.close(fd)
                return
            known = self._data[USERS_TABLE] if self._data is not None else None
            with open(fd, "rb", closefd=False) as f:
                data = parse_store(f, self.path, known)
        except BaseException:
            os.close(fd)
            raise
        if self._parsed_fd is not None:
            os.close(self._parsed_fd)
        self._parsed_fd, self._identity, self._data = fd, identity, data
        self._head = _head(data)
        self.generation += 1

    def _forget(self) -> None:
        if self._parsed_fd is not None:
            os.close(self._parsed_fd)
        self._parsed_fd, self._identity, self._data = None, None, None

    def _replace_file(self, head: bytes, lines: dict[str, bytes]) -> None:
        folder = self.path.parent
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{self.path.name}.", suffix=".tmp")  # 0600
        try:
            _write_all(fd, [head, *lines.values(), _end(len(lines))])
            os.fsync(fd)
            os.replace(tmp, self.path)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        _fsync_dir(folder)
        st = os.fstat(fd)
        # The file we just wrote is the one in memory: keep its fd as the version read.
        if self._parsed_fd is not None:
            os.close(self._parsed_fd)
        self._parsed_fd = fd
        self._identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def _remove_stale_temps(self) -> None:
        """Temp files left by a writer that died; safe to remove since we hold the lock."""
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            try:
                stale.unlink()
            except FileNotFoundError:
                pass


def _line(key: str, doc: dict) -> bytes:
    # A missing key reads as None (`doc.get`): leaving out None values keeps 100k lines small.
    if None in doc.values():
        doc = {k: v for k, v in doc.items() if v is not None}
    # Concatenated, not OPT_APPEND_NEWLINE: orjson's result keeps its whole buffer (about 4 KB),
    # so 100k kept lines took 390 MB and a page fault each; the copy is exactly the line's size.
    return orjson.dumps([key, doc]) + b"\n"


def _head(data: dict) -> bytes:
    return orjson.dumps({name: table for name, table in data.items() if name != USERS_TABLE},
                        option=orjson.OPT_APPEND_NEWLINE)


def _end(count: int) -> bytes:
    return orjson.dumps({"end": count}, option=orjson.OPT_APPEND_NEWLINE)


def _write_all(fd: int, buffers: list[bytes]) -> None:
    """Gathered writes: 100k lines go to the file without being joined into one copy first."""
    for start in range(0, len(buffers), _IOV_MAX):
        batch = buffers[start : start + _IOV_MAX]
        size = sum(map(len, batch))
        written = os.writev(fd, batch)
        if written < size:  # a short write (rare): finish this batch one buffer at a time
            view = memoryview(b"".join(batch))[written:]
            while view:
                view = view[os.write(fd, view) :]


def _missing(path: Path) -> str:
    return f"no store at {path} (create one with `mfa-console init` or `mfa-console demo`)"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def parse_store(source: bytes | BinaryIO, path: Path, known: LineTable | None = None) -> dict:
    """The tables of a store file; every user line is checked, except those equal to a line of
    `known` (the version held in memory, already checked) at the same place."""
    reader = _LineReader(io.BytesIO(source) if isinstance(source, bytes) else source)
    first = reader.next()
    if not first.strip():
        raise StoreCorrupt(f"store {path} is empty or truncated; {_HINT}")
    tables = _parse_head(first, path)
    if tables[META_TABLE][META_ID]["schema"] == 1:
        if reader.next().strip():
            raise StoreCorrupt(f"store {path} has data after its end; {_HINT}")
        return _from_schema_1(tables, path)
    if USERS_TABLE in tables:
        raise StoreCorrupt(f"store {path} is not in lines; {_HINT}")
    with gc_paused:
        lines, changed = _user_lines(reader, path, known)
        tables[USERS_TABLE] = LineTable(lines, (known.version, changed) if known is not None else None)
    return tables


def _parse_head(line: bytes, path: Path) -> dict:
    tables = _parse_line(line, path, "its first line")
    meta = tables.get(META_TABLE) if isinstance(tables, dict) else None
    meta = meta.get(META_ID) if isinstance(meta, dict) else None
    if not isinstance(meta, dict) or "schema" not in meta:
        raise StoreCorrupt(f"{path} is not an mfa-console store (no schema version); {_HINT}")
    if meta["schema"] not in (1, SCHEMA_VERSION):
        raise StoreError(
            f"store {path} has schema version {meta['schema']!r}; this mfa-console reads version "
            f"{SCHEMA_VERSION} (upgrade mfa-console to open it)"
        )
    return tables


class _LineReader:
    """A file's lines, read a few MB at a time: a 50 MB store is never in memory twice."""

    def __init__(self, f: BinaryIO):
        self._f, self._buf, self._at = f, b"", 0

    def _line_end(self) -> int:
        """Where the next line ends in the buffer (after its newline), reading on as needed;
        0 when the file ends without one."""
        while True:
            end = self._buf.find(b"\n", self._at) + 1
            if end:
                return end
            chunk = self._f.read(_CHUNK)
            if not chunk:
                return 0
            self._buf, self._at = self._buf[self._at :] + chunk, 0

    def skip(self, line: bytes) -> bool:
        """Moves past the next line if it is `line` (newline included) exactly."""
        end = self._line_end()
        if end - self._at == len(line) and self._buf.startswith(line, self._at):
            self._at = end
            return True
        return False

    def next(self) -> bytes:
        """The next line with its newline; at the end, what is left without one, then b""."""
        end = self._line_end() or len(self._buf)
        line, self._at = self._buf[self._at : end], end
        return line


def _user_lines(reader: _LineReader, path: Path, known: LineTable | None) -> tuple[dict[str, bytes], set[str]]:
    """The lines, and the keys not at the same place with the same line in `known`."""
    old = list(known.lines()) if known is not None else []
    lines: dict[str, bytes] = {}
    changed: set[str] = set()
    number = 1  # of the line, for messages
    while True:
        number += 1
        index = number - 2
        if index < len(old) and reader.skip(old[index][1]):
            key, line = old[index]
            if key in lines:
                raise StoreCorrupt(f"store {path} lists user {key!r} twice; {_HINT}")
            lines[key] = line
            continue
        line = reader.next()
        if not line:
            raise StoreCorrupt(f"store {path} is truncated (it ends before line {number}); {_HINT}")
        record = _parse_line(line, path, f"line {number}")
        if isinstance(record, dict):
            if record != {"end": len(lines)} or reader.next():
                raise StoreCorrupt(f"store {path} does not end as written (line {number}); {_HINT}")
            changed.update(key for key, _ in old if key not in lines)  # removed
            return lines, changed
        if not (isinstance(record, list) and len(record) == 2 and isinstance(record[0], str)
                and isinstance(record[1], dict) and isinstance(record[1].get("username"), str)
                and line.endswith(b"\n")):
            raise StoreCorrupt(f"store {path} has a damaged user on line {number}; {_HINT}")
        key = record[0]
        if key in lines:
            raise StoreCorrupt(f"store {path} lists user {key!r} twice; {_HINT}")
        lines[key] = line
        changed.add(key)


def _parse_line(line: bytes, path: Path, where: str):
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise StoreCorrupt(f"store {path} is corrupt or truncated at {where} ({exc}); {_HINT}") from exc


def _from_schema_1(data: dict, path: Path) -> dict:
    """A store of the first layout (one JSON object): read as is, written in lines next time."""
    users = data.get(USERS_TABLE)
    if not isinstance(users, dict) or not all(isinstance(doc, dict) for doc in users.values()):
        raise StoreCorrupt(f"store {path} has no users table; {_HINT}")
    data[META_TABLE][META_ID]["schema"] = SCHEMA_VERSION
    data[USERS_TABLE] = LineTable({key: _line(key, doc) for key, doc in users.items()})
    return data
