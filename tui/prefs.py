"""A person's dashboard preferences: the theme, the tab they were on, the Users grid's sort and
status filter. Remembered per OS user, whatever the store, in a small TinyDB document file in
the XDG config folder (`~/.config/mfa-console/preferences.json`).

One process and a few small documents is what TinyDB is made for. Two dashboards of one person
at once may each keep their own last choice (the last written wins); the file is written whole
under a temporary name and renamed, so it is never seen half written. A damaged file is set
aside (renamed `.damaged`) with a notice, and defaults are used: never fatal. A value of the
wrong type or out of range is dropped, with a notice, and its default used.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import platformdirs
from tinydb import Query, TinyDB
from tinydb.storages import Storage

from store import fs
from store.errors import StoreError
from store.models import Status
from store.paths import APP

from .widgets.user_grid import COLUMNS

# What each kept value may be. The file is the person's to edit (or another version's to write):
# a value of the wrong type or out of range is dropped here, never handed to the widgets.
VALID: dict[str, Callable[[Any], bool]] = {
    "theme": lambda value: isinstance(value, str),  # a theme this Textual lacks: the app keeps its own
    "tab": lambda value: isinstance(value, str),  # a tab the main screen lacks: it opens its default
    "sort_column": lambda value: type(value) is int and 0 <= value < len(COLUMNS),  # bool is no column
    "sort_reverse": lambda value: isinstance(value, bool),
    "status_filter": lambda value: value in (None, *(status.value for status in Status)),
}
KEYS = tuple(VALID)


def default_path() -> Path:
    return platformdirs.user_config_path(APP) / "preferences.json"


class AtomicJSONStorage(Storage):
    """TinyDB's storage interface over one JSON file, written by rename, 0600, never through a link."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> dict[str, dict[str, Any]] | None:
        try:
            raw = fs.read_private_file(self.path, secret=False, what="your preferences")
        except FileNotFoundError:
            return None
        if not raw.strip():
            return None
        data = json.loads(raw)  # a damaged file raises here: Preferences sets it aside
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        folder = self.path.parent
        fd, name = tempfile.mkstemp(dir=folder, prefix=f".{self.path.name}.", suffix=".tmp")  # 0600, O_EXCL
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(name, self.path)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise


class Preferences:
    """Read once at start; `save` writes what changed. Failures are notices, never errors."""

    def __init__(self, path: Path | None = None):
        self.path = path or default_path()
        self.notice: str | None = None  # for the person: why the preferences were not read or kept
        self._values: dict[str, Any] = {}
        try:
            fs.make_private_folder(self.path.parent, what="your preferences")
            fs.check_folder(self.path.parent, what="your preferences")
            fs.check_file(self.path, os.stat(self.path.parent), secret=False)
            self._db = TinyDB(storage=AtomicJSONStorage, path=self.path)
            self._values = self._read()
        except (OSError, StoreError) as exc:  # an unsafe or unreadable folder: defaults, not saved
            self._db = None
            self.notice = f"Preferences are not kept: {exc}"

    def _read(self) -> dict[str, Any]:
        try:
            found = self._db.get(Query().kind == "dashboard")
        # JSON that is not TinyDB's, or not JSON (nested past the parser's recursion limit too)
        except (ValueError, TypeError, AttributeError, RecursionError):
            aside = self.path.with_name(self.path.name + ".damaged")
            os.replace(self.path, aside)
            self.notice = f"Your preferences file was damaged: set aside as {aside}; defaults are used."
            return {}
        kept = {k: v for k, v in (found or {}).items() if k in KEYS}
        bad = [k for k, v in kept.items() if not VALID[k](v)]
        if bad:
            self.notice = f"Your preferences file had values that cannot be used ({', '.join(bad)}): defaults are used."

            def drop(document: dict[str, Any]) -> None:  # from the file too: said once, not at every start
                for key in bad:
                    del document[key]

            self._db.update(drop, Query().kind == "dashboard")
        return {k: v for k, v in kept.items() if k not in bad}

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    @property
    def sort(self) -> tuple[int, bool]:
        """The Users grid's (column, reverse) last chosen: a column sorted but never reversed is
        kept without a `sort_reverse` (it was lost at the next start)."""
        return self.get("sort_column", 0), self.get("sort_reverse", False)

    def save(self, **changes: Any) -> None:
        changes = {k: v for k, v in changes.items() if k in KEYS and self._values.get(k) != v}
        if not changes or self._db is None:
            return
        self._values.update(changes)
        try:
            self._db.upsert({"kind": "dashboard", **self._values}, Query().kind == "dashboard")
        except OSError as exc:
            self.notice = f"Preferences were not saved: {exc.strerror or exc}"
