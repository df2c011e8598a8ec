"""Files the front ends write for people: exports of staff data, always private."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from store.csvio import users_to_json, write_users_csv
from store.models import User


def open_private(path: str | Path) -> TextIO:
    """`path` for writing text, created or truncated, mode 0600 (names and emails of staff)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
    return open(fd, "w", encoding="utf-8", newline="")


def write_users(users: Iterable[User], out: TextIO, fmt: str) -> None:
    """The users export, as `fmt` "json" or "csv"."""
    if fmt == "json":
        json.dump(users_to_json(users), out, indent=2)
        out.write("\n")
    else:
        write_users_csv(users, out)
