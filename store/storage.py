"""A TinyDB Storage that is safe to share between processes.

- Every read-modify-write runs in `transaction()`, holding an exclusive `flock` on a separate
  lock file that is never replaced (a lock on the data file itself would lock an old inode once
  the file is swapped by rename).
- Writes go to a temp file in the same folder, are fsynced and renamed over the store, so a crash
  leaves the old file or the new one, never a torn one.
- The parsed file is kept in memory and re-read only when the file's identity changed. The fd of
  the parsed version stays open: its inode cannot be freed and handed to a newer file, so
  (device, inode, size, mtime) never matches a file we have not parsed.
- A file that does not parse, or that carries an unknown schema, is refused and never rewritten.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from tinydb.storages import Storage

from .errors import StoreCorrupt, StoreError, StoreMissing

SCHEMA_VERSION = 1
META_TABLE = "meta"
META_ID = "1"


class LockedAtomicStorage(Storage):
    def __init__(self, path: Path):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._data: dict | None = None
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
                yield self._data
                if outermost:
                    self.commit()
            except BaseException:
                if outermost:
                    # TinyDB mutates the cached documents in place: drop them, re-read next time.
                    self._forget()
                    self._dirty = False
                raise
            finally:
                self._depth -= 1
                if outermost:
                    self._unlock()

    def commit(self) -> None:
        """Make the transaction's writes durable now (they also are at its end)."""
        if self._dirty:
            self._replace_file(orjson.dumps(self._data))
            self._dirty = False

    @classmethod
    def create(cls, path: Path, data: dict) -> LockedAtomicStorage:
        """A new store file; refuses to touch one that exists."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        storage = cls(path)
        with storage._mutex:
            storage._lock(creating=True)
            try:
                if path.exists():
                    raise StoreError(f"a store already exists at {path}; refusing to overwrite it")
                storage._replace_file(orjson.dumps(data))
                storage._data = data
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
            with open(fd, "rb", closefd=False) as f:
                raw = f.read()
            data = parse_store(raw, self.path)
        except BaseException:
            os.close(fd)
            raise
        self._adopt(fd, identity, data)

    def _adopt(self, fd: int, identity: tuple[int, int, int, int], data: dict) -> None:
        if self._parsed_fd is not None:
            os.close(self._parsed_fd)
        self._parsed_fd, self._identity, self._data = fd, identity, data
        self.generation += 1

    def _forget(self) -> None:
        if self._parsed_fd is not None:
            os.close(self._parsed_fd)
        self._parsed_fd, self._identity, self._data = None, None, None

    def _replace_file(self, raw: bytes) -> None:
        folder = self.path.parent
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{self.path.name}.", suffix=".tmp")  # 0600
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
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
        # The file we just wrote is the one in memory: keep its fd as the parsed version.
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


def _missing(path: Path) -> str:
    return f"no store at {path} (create one with `mfa-console init` or `mfa-console demo`)"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def parse_store(raw: bytes, path: Path) -> dict:
    hint = "it was left untouched; restore it from a backup"
    if not raw.strip():
        raise StoreCorrupt(f"store {path} is empty or truncated; {hint}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise StoreCorrupt(f"store {path} is corrupt or truncated ({exc}); {hint}") from exc
    meta = data.get(META_TABLE) if isinstance(data, dict) else None
    meta = meta.get(META_ID) if isinstance(meta, dict) else None
    if not isinstance(meta, dict) or "schema" not in meta:
        raise StoreCorrupt(f"{path} is not an mfa-console store (no schema version); {hint}")
    if meta["schema"] != SCHEMA_VERSION:
        raise StoreError(
            f"store {path} has schema version {meta['schema']!r}; this mfa-console reads version "
            f"{SCHEMA_VERSION} (upgrade mfa-console to open it)"
        )
    if not isinstance(data.get("users"), dict):
        raise StoreCorrupt(f"store {path} has no users table; {hint}")
    return data
