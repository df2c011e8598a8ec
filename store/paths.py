"""Where the store and its key live: the platform's user data folder unless told otherwise."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from .sql import is_url, redact

APP = "mfa-console"


@dataclass(frozen=True, slots=True)
class StorePaths:
    db: Path | str  # a file, or a PostgreSQL URL (store.sql.is_url)
    key: Path  # always a file of this host: the key never goes into the database

    @property
    def shown(self) -> str:
        """The store as messages name it (a URL without its password)."""
        return redact(self.db) if is_url(self.db) else str(self.db)


def data_dir() -> Path:
    return platformdirs.user_data_path(APP)


def resolve(db: str | None = None, key: str | None = None, *, demo: bool = False) -> StorePaths:
    """--db / --key first, then MFA_CONSOLE_DB / MFA_CONSOLE_KEY, then the default folder. A
    PostgreSQL URL is kept as it is: libpq reads it."""
    db = db or (None if demo else os.environ.get("MFA_CONSOLE_DB"))
    if db and is_url(db):
        key = key or os.environ.get("MFA_CONSOLE_KEY")
        # The default store's key: a local store copied to PostgreSQL (`migrate`) keeps using it.
        return StorePaths(db=db, key=(Path(key).expanduser() if key else data_dir() / "store.key").absolute())
    db_path = Path(db).expanduser() if db else data_dir() / ("demo" if demo else "") / "store.db"
    key = key or (None if demo else os.environ.get("MFA_CONSOLE_KEY"))
    key_path = Path(key).expanduser() if key else db_path.with_suffix(".key")
    return StorePaths(db=db_path.absolute(), key=key_path.absolute())
