"""Where the store and its key live: the platform's user data folder unless told otherwise."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP = "mfa-console"


@dataclass(frozen=True, slots=True)
class StorePaths:
    db: Path
    key: Path


def data_dir() -> Path:
    return platformdirs.user_data_path(APP)


def resolve(db: str | None = None, key: str | None = None, *, demo: bool = False) -> StorePaths:
    """--db / --key first, then MFA_CONSOLE_DB / MFA_CONSOLE_KEY, then the default folder."""
    db = db or (None if demo else os.environ.get("MFA_CONSOLE_DB"))
    db_path = Path(db).expanduser() if db else data_dir() / ("demo" if demo else "") / "store.db"
    key = key or (None if demo else os.environ.get("MFA_CONSOLE_KEY"))
    key_path = Path(key).expanduser() if key else db_path.with_suffix(".key")
    return StorePaths(db=db_path.absolute(), key=key_path.absolute())
