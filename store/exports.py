"""Files the front ends write for people: exports of staff data, always private."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

from store import fs
from store.csvio import users_to_json, write_users_csv
from store.models import User


def write_private(path: str | Path, write: Callable[[TextIO], None], *, force: bool = False) -> None:
    """Text written by `write` to `path`, mode 0600 (names and emails of staff).

    Never through a symbolic link; an existing file only with `force` (FileExistsError
    otherwise), and then replaced whole by rename, never written through.
    """

    def to_fd(fd: int) -> None:
        with open(fd, "w", encoding="utf-8", newline="", closefd=False) as out:
            write(out)

    fs.write_new_file(Path(path), to_fd, force=force)


def write_users(users: Iterable[User], out: TextIO, fmt: str) -> None:
    """The users export, as `fmt` "json" or "csv"."""
    if fmt == "json":
        json.dump(users_to_json(users), out, indent=2)
        out.write("\n")
    else:
        write_users_csv(users, out)
